"""engine.features.build.build_features: spec -> cleaned, scaled float32 matrix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.preprocessing import RobustScaler, StandardScaler

from engine.errors import InputError
from engine.features.build import build_features
from engine.input.files import open_input
from engine.features.spec import Categorical, Feature, FeatureSpec, load_spec, spec_from_columns


def write(tmp_path: Path, frame: pl.DataFrame, fmt: str = "parquet", name: str = "data") -> Path:
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator="\t" if fmt == "tsv" else ",")
    return path


def build(path: Path, spec: FeatureSpec, fitted=None):
    return build_features(open_input([path]), spec, fitted=fitted)


def spec_of(*features: Feature, **options) -> FeatureSpec:
    return FeatureSpec(features=tuple(features), source="test").with_options(**options)


def random_frame(n: int = 500, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "customer_id": np.arange(100, 100 + n),
        "x": rng.lognormal(3.0, 1.0, n),
        "y": rng.integers(0, 20, n).astype(np.int32),
        "z": rng.normal(-5.0, 2.0, n),
    })


# ----------------------------------------------------------------------------- reading columns

def test_plain_columns_of_every_type_read_as_their_cast(tmp_path: Path) -> None:
    """A feature that is an integer or float column as it is is read in its own type and converted
    by the copy (``put_series``), chunk by chunk: the same float64 values as Polars' cast, nulls
    and NaN included, over several row groups."""
    rng = np.random.default_rng(3)
    n = 3_000
    values = rng.integers(-2**40, 2**40, n)
    frame = pl.DataFrame({
        "i8": rng.integers(-128, 128, n).astype(np.int8), "u16": rng.integers(0, 2**16, n).astype(np.uint16),
        "i32": rng.integers(-2**31, 2**31, n).astype(np.int32), "i64": values * 4099,  # beyond 2**53: rounded
        "u64": (np.abs(values) * 8191).astype(np.uint64), "f32": rng.normal(0, 1e6, n).astype(np.float32),
        "f64": rng.lognormal(0, 3, n), "nulls": pl.Series(rng.integers(0, 9, n)).set(pl.Series(rng.random(n) < 0.1), None),
    }).with_columns(pl.when(pl.col("f64") > 20).then(float("nan")).otherwise(pl.col("f64")).alias("f64"))
    path = tmp_path / "types.parquet"
    frame.write_parquet(path, row_group_size=700)
    columns = frame.columns
    plain = build(path, spec_of(*[Feature(c, c) for c in columns], scale="none", missing="median"))
    cast = build(path, spec_of(*[Feature(c, f"CAST({c} AS DOUBLE) * 1") for c in columns], scale="none",
                               missing="median"))
    assert plain.missing == cast.missing and plain.non_finite == cast.non_finite
    assert plain.missing["nulls"] == frame["nulls"].null_count() and plain.non_finite["f64"] > 0
    np.testing.assert_array_equal(plain.X, cast.X)
    read = pl.read_parquet(path).select(pl.all().cast(pl.Float64)).fill_null(float("nan")).to_numpy()
    data = build_features(open_input([path]), spec_of(*[Feature(c, c) for c in columns], scale="none"),
                          keep_columns=True)
    np.testing.assert_array_equal(data.columns, read)


# ----------------------------------------------------------------------------- expressions

@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_derived_expressions(tmp_path: Path, fmt: str) -> None:
    frame = pl.DataFrame({"a": [1, 2, 3, 4], "b": [10.0, 20.0, 30.0, 40.5], "yb": [1980, 1990, 1970, 2000]})
    spec = spec_of(
        Feature("sum", "a + 2 * b"),
        Feature("prod", "a * b"),
        Feature("age", "2014 - yb"),
        Feature("flag", "CASE WHEN a > 2 THEN 1 ELSE 0 END"),
        Feature("ratio", "b / a"),
        scale="none",
    )
    data = build(write(tmp_path, frame, fmt), spec)
    a, b, yb = (frame[c].to_numpy().astype(np.float64) for c in ("a", "b", "yb"))
    expected = np.column_stack([a + 2 * b, a * b, 2014 - yb, (a > 2).astype(float), b / a]).astype(np.float32)
    assert data.fitted.names == ("sum", "prod", "age", "flag", "ratio")
    np.testing.assert_array_equal(data.X, expected)
    assert data.rows_dropped == 0 and data.kept is None


def test_clip_uses_the_declared_linear_quantiles(tmp_path: Path) -> None:
    frame = random_frame(997)
    x = frame["x"].to_numpy()
    data = build(write(tmp_path, frame), spec_of(Feature("x", "x", clip=(0.05, 0.9)), scale="none"))
    lo, hi = np.quantile(x, [0.05, 0.9], method="linear")
    assert data.fitted.clip["x"] == pytest.approx((lo, hi), rel=1e-6)  # values are float32
    np.testing.assert_allclose(data.X[:, 0], np.clip(x, lo, hi).astype(np.float32), rtol=1e-6)
    assert data.X.max() == pytest.approx(hi, rel=1e-6) and data.X.min() == pytest.approx(lo, rel=1e-6)


def test_clip_quantiles_ignore_missing_values(tmp_path: Path) -> None:
    values = [5.0, None, 1.0, 100.0, 3.0, None, 2.0, 4.0, 1000.0]
    frame = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    data = build(write(tmp_path, frame), spec_of(Feature("x", "x", clip=(0.1, 0.8)), scale="none"))
    present = np.array([v for v in values if v is not None])
    assert data.fitted.clip["x"] == pytest.approx(tuple(np.quantile(present, [0.1, 0.8])), rel=1e-6)
    np.testing.assert_allclose(data.X[:, 0], np.clip(present, *np.quantile(present, [0.1, 0.8])), rtol=1e-6)


def test_log1p(tmp_path: Path) -> None:
    frame = random_frame()
    x = frame["x"].to_numpy()
    data = build(write(tmp_path, frame), spec_of(Feature("lx", "x", log1p=True), Feature("y", "y"), scale="none"))
    np.testing.assert_allclose(data.X[:, 0], np.log1p(x), rtol=1e-6)
    # profiles get the feature in original units, before log1p
    np.testing.assert_allclose(data.original["lx"].to_numpy(), x.astype(np.float32), rtol=1e-6)


def test_clip_then_log1p(tmp_path: Path) -> None:
    frame = random_frame()
    x = frame["x"].to_numpy()
    data = build(write(tmp_path, frame), spec_of(Feature("lx", "x", clip=(0.0, 0.5), log1p=True), scale="none"))
    hi = np.quantile(x, 0.5)
    np.testing.assert_allclose(data.X[:, 0], np.log1p(np.minimum(x, hi)), rtol=1e-6)


def test_log1p_below_minus_one_names_the_feature(tmp_path: Path) -> None:
    frame = pl.DataFrame({"v": [0.0, 1.0, -3.0, 2.0]})
    with pytest.raises(InputError, match="'lv'.*log1p"):
        build(write(tmp_path, frame), spec_of(Feature("lv", "v", log1p=True)))


# ----------------------------------------------------------------------------- scaling

def test_standard_scaling_matches_sklearn(tmp_path: Path) -> None:
    frame = random_frame()
    raw = frame.select("x", "y", "z").to_numpy().astype(np.float64)
    data = build(write(tmp_path, frame), spec_from_columns("x,y,z"))
    ref = StandardScaler().fit(raw)
    np.testing.assert_allclose(data.fitted.scaler.center, ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(data.fitted.scaler.scale, ref.scale_, rtol=1e-6)
    np.testing.assert_allclose(data.X, ref.transform(raw), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(data.X.astype(np.float64).mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.X.astype(np.float64).std(axis=0, ddof=0), 1.0, atol=1e-5)
    assert data.fitted.scaler.method == "standard"


def test_robust_scaling_matches_sklearn(tmp_path: Path) -> None:
    frame = random_frame(501)
    raw = frame.select("x", "y", "z").to_numpy().astype(np.float64)
    data = build(write(tmp_path, frame), spec_from_columns("x,y,z", scale="robust"))
    ref = RobustScaler().fit(raw)
    np.testing.assert_allclose(data.fitted.scaler.center, ref.center_, rtol=1e-6)  # feature values are float32
    np.testing.assert_allclose(data.fitted.scaler.scale, ref.scale_, rtol=1e-6)
    np.testing.assert_allclose(data.X, ref.transform(raw), atol=2e-5, rtol=1e-5)


def test_robust_scaling_with_zero_iqr_falls_back_to_one(tmp_path: Path) -> None:
    frame = pl.DataFrame({"c": [0.0] * 20 + [5.0, 9.0]})
    data = build(write(tmp_path, frame), spec_from_columns("c", scale="robust"))
    ref = RobustScaler().fit(frame.to_numpy())
    np.testing.assert_allclose(data.X, ref.transform(frame.to_numpy()), atol=1e-6)


def test_no_scaling(tmp_path: Path) -> None:
    frame = random_frame()
    data = build(write(tmp_path, frame), spec_from_columns("x,z", scale="none"))
    np.testing.assert_array_equal(data.X, frame.select("x", "z").to_numpy().astype(np.float32))


# ----------------------------------------------------------------------------- missing values

def frame_with_gaps() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6, 7, 8],
            "a": [1.0, None, 3.0, float("nan"), 5.0, float("inf"), 7.0, float("-inf")],
            "b": [2.0, 4.0, None, 8.0, 9.0, 10.0, 1.0, 3.0],
        },
        schema={"id": pl.Int64, "a": pl.Float64, "b": pl.Float64},
    )


def test_missing_drop_counts_rows_and_treats_nan_and_inf_as_missing(tmp_path: Path) -> None:
    data = build(write(tmp_path, frame_with_gaps()), spec_from_columns("a,b", scale="none"))
    assert data.missing == {"a": 4, "b": 1}
    assert data.n_rows == 8
    assert data.rows_dropped == 5
    assert data.kept.tolist() == [True, False, False, False, True, False, True, False]
    np.testing.assert_array_equal(data.X, np.array([[1, 2], [5, 9], [7, 1]], dtype=np.float32))
    assert data.ids.to_list() == [1, 2, 3, 4, 5, 6, 7, 8]  # ids of every input row, for segments.parquet
    assert data.original["a"].to_list() == [1.0, 5.0, 7.0]
    assert np.isfinite(data.X).all()


def test_missing_median_fills_with_the_polars_median(tmp_path: Path) -> None:
    frame = frame_with_gaps()
    data = build(write(tmp_path, frame), spec_from_columns("a,b", missing="median", scale="none"))
    finite = frame.select(pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in ("a", "b"))
    med_a, med_b = finite["a"].median(), finite["b"].median()
    assert data.fitted.medians == pytest.approx({"a": med_a, "b": med_b})
    assert data.rows_dropped == 0
    assert data.X.shape == (8, 2)
    expected_a = [1.0, med_a, 3.0, med_a, 5.0, med_a, 7.0, med_a]
    expected_b = [2.0, 4.0, med_b, 8.0, 9.0, 10.0, 1.0, 3.0]
    np.testing.assert_allclose(data.X, np.column_stack([expected_a, expected_b]), rtol=1e-6)


def test_missing_error_names_the_feature_and_count(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        build(write(tmp_path, frame_with_gaps()), spec_from_columns("a,b", missing="error"))
    message = str(info.value)
    assert "a (4)" in message and "b (1)" in message


def test_missing_error_passes_without_gaps(tmp_path: Path) -> None:
    data = build(write(tmp_path, random_frame()), spec_from_columns("x,y", missing="error"))
    assert data.rows_dropped == 0 and data.missing == {}


def test_all_rows_missing_is_an_input_error(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [None, None], "b": [1.0, 2.0]}, schema={"a": pl.Float64, "b": pl.Float64})
    with pytest.raises(InputError):
        build(write(tmp_path, frame), spec_from_columns("a,b"))


def test_median_is_reapplied_from_the_fit_for_new_data(tmp_path: Path) -> None:
    """predict fills gaps with the *training* medians, even for features that had no gaps in training."""
    train = pl.DataFrame({"a": [1.0, 2.0, 3.0, 10.0], "b": [1.0, 5.0, 2.0, 3.0]})
    new = pl.DataFrame({"a": [None, 2.0], "b": [1.0, None]}, schema={"a": pl.Float64, "b": pl.Float64})
    spec = spec_from_columns("a,b", missing="median", scale="none")
    fit = build(write(tmp_path, train, name="train"), spec)
    data = build(write(tmp_path, new, name="new"), fit.spec, fitted=fit.fitted)
    np.testing.assert_array_equal(data.X, np.array([[2.5, 1.0], [2.0, 2.5]], dtype=np.float32))


# ----------------------------------------------------------------------------- column types

def test_text_numbers_with_stray_spaces(tmp_path: Path) -> None:
    frame = pl.DataFrame({"t": [" 1", "2 ", " 3  ", "4"], "n": [1, 2, 3, 5]})
    spec = replace(spec_from_columns("t,n", scale="none"), numeric=("t",))
    for fmt in ("parquet", "csv"):
        data = build(write(tmp_path, frame, fmt, name=f"t_{fmt}"), spec)
        np.testing.assert_array_equal(data.X[:, 0], np.array([1, 2, 3, 4], dtype=np.float32))


def test_text_numbers_that_are_not_numbers(tmp_path: Path) -> None:
    frame = pl.DataFrame({"t": ["1", "two", "3"], "n": [1, 2, 3]})
    spec = replace(spec_from_columns("t,n"), numeric=("t",))
    with pytest.raises(InputError, match="numeric"):
        build(write(tmp_path, frame), spec)


def test_non_numeric_column_in_an_expression_names_it(tmp_path: Path) -> None:
    frame = pl.DataFrame({"word": ["a", "b", "c"], "n": [1, 2, 3]})
    with pytest.raises(InputError, match="'word'.*not numeric"):
        build(write(tmp_path, frame), spec_of(Feature("f", "n + word")))


def test_unknown_column_suggests_a_name(tmp_path: Path) -> None:
    frame = pl.DataFrame({"Income": [1.0, 2.0, 3.0], "Recency": [1, 2, 3]})
    with pytest.raises(InputError, match=r"'Incme'.*did you mean 'Income'"):
        build(write(tmp_path, frame), spec_from_columns("Incme,Recency"))


def test_unparsable_expression_is_an_input_error(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(InputError, match="'f'"):
        build(write(tmp_path, frame), spec_of(Feature("f", "a + * (")))


def test_categorical_keeps_the_most_frequent_levels(tmp_path: Path) -> None:
    levels = ["PhD"] * 5 + ["Master"] * 2 + ["Basic"] * 1 + ["Graduation"] * 7 + [None]
    rng = np.random.default_rng(1)
    order = rng.permutation(len(levels))
    edu = [levels[i] for i in order]
    frame = pl.DataFrame({"Education": edu, "n": rng.normal(size=len(edu))})
    spec = FeatureSpec(features=(Feature("n", "n"),), categorical=(Categorical("Education", 2),), scale="none")
    data = build(write(tmp_path, frame), spec)
    assert data.fitted.levels == {"Education": ("Graduation", "PhD")}
    assert data.fitted.names == ("n", "Education=Graduation", "Education=PhD")
    expected = np.column_stack([[e == "Graduation" for e in edu], [e == "PhD" for e in edu]]).astype(np.float32)
    np.testing.assert_array_equal(data.X[:, 1:], expected)


def test_constant_feature_is_dropped_with_a_warning(tmp_path: Path) -> None:
    frame = random_frame().with_columns(pl.lit(3).alias("const"))
    data = build(write(tmp_path, frame), spec_from_columns("x,const,y"))
    assert data.fitted.names == ("x", "y")
    assert data.fitted.dropped == ("const",)
    assert data.X.shape[1] == 2
    assert any("const" in w for w in data.warnings)


def test_only_constant_features_is_an_input_error(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [1.0, 1.0, 1.0], "b": [2, 2, 2]})
    with pytest.raises(InputError, match="constant"):
        build(write(tmp_path, frame), spec_from_columns("a,b"))


# ----------------------------------------------------------------------------- auto mode and ids

def test_auto_mode_uses_every_numeric_column_but_the_id_and_truth(generated_parquet: Path) -> None:
    schema = pl.read_parquet_schema(generated_parquet)
    assert "true_segment" in schema and "ID" in schema
    data = build(generated_parquet, FeatureSpec())
    expected = [n for n, t in schema.items() if t.is_numeric() and n not in ("ID", "true_segment")]
    assert [f.name for f in data.spec.features] == expected
    assert "true_segment" not in data.fitted.names and "ID" not in data.fitted.names
    assert set(data.fitted.names) | set(data.fitted.dropped) == set(expected)
    assert data.id_col == "ID"


def test_auto_mode_respects_exclude(generated_parquet: Path) -> None:
    data = build(generated_parquet, FeatureSpec(exclude=("Income", "Recency")))
    names = [f.name for f in data.spec.features]
    assert "Income" not in names and "Recency" not in names and "MntWines" in names


def test_auto_mode_on_the_shared_csv(data_csv: Path, data_frame: pl.DataFrame) -> None:
    data = build(data_csv, FeatureSpec())
    expected = [n for n, t in data_frame.schema.items() if t.is_numeric() and n != "ID"]
    assert [f.name for f in data.spec.features] == expected
    assert "Response" not in expected  # text, because of the stray spaces
    assert set(data.fitted.dropped) == {"Z_CostContact", "Z_Revenue"}  # constant columns
    assert data.ids.name == "ID"
    assert data.rows_dropped == 24


@pytest.mark.parametrize("name", ["ID", "id", "Customer_ID"])
def test_id_column_is_detected(tmp_path: Path, name: str) -> None:
    frame = random_frame(20).rename({"customer_id": name})
    data = build(write(tmp_path, frame), FeatureSpec())
    assert data.ids.name == name
    assert data.ids.to_list() == frame[name].to_list()
    assert name not in data.fitted.names
    assert data.fitted.names == ("x", "y", "z")


def test_without_an_id_column_ids_are_row_numbers(tmp_path: Path) -> None:
    frame = random_frame(37).drop("customer_id")
    data = build(write(tmp_path, frame), FeatureSpec())
    assert data.ids.name == "row_id"
    assert data.ids.to_list() == list(range(37))
    assert data.fitted.names == ("x", "y", "z")


def test_named_id_column_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'custmer_id'.*did you mean 'customer_id'"):
        build(write(tmp_path, random_frame()), FeatureSpec(id_col="custmer_id"))


def test_matrix_is_float32_c_contiguous(data_csv: Path, generated_parquet: Path) -> None:
    for path in (data_csv, generated_parquet):
        data = build(path, load_spec("customers"))
        assert data.X.dtype == np.float32
        assert data.X.flags["C_CONTIGUOUS"]
        assert data.X.ndim == 2 and data.X.shape[1] == 11
        assert np.isfinite(data.X).all()


# ----------------------------------------------------------------------------- the shared dataset

def test_customers_spec_on_the_shared_csv(data_csv: Path, data_frame: pl.DataFrame) -> None:
    data = build(data_csv, load_spec("customers"))
    income_present = data_frame["Income"].is_not_null().to_numpy()
    assert data.n_rows == 2240
    assert data.X.shape == (2216, 11)
    assert data.missing == {"income": 24}
    assert data.kept.tolist() == income_present.tolist()
    assert data.ids.to_list() == data_frame["ID"].to_list()
    income = data_frame["Income"].drop_nulls().to_numpy()
    assert data.fitted.clip["income"] == pytest.approx(tuple(np.quantile(income, [0.0, 0.99])), rel=1e-6)
    # the five earlier campaigns only: Response is the business response, never a feature
    kept = data_frame.filter(pl.col("Income").is_not_null())
    accepted = kept.select(pl.sum_horizontal([pl.col(f"AcceptedCmp{i}") for i in range(1, 6)])).to_series().to_numpy()
    np.testing.assert_allclose(data.original["campaigns_accepted"].to_numpy(), accepted)


# ----------------------------------------------------------------------------- fitted statistics

@pytest.mark.parametrize("scale", ["standard", "robust", "none"])
def test_fitted_statistics_reapplied_give_the_same_matrix(data_csv: Path, scale: str) -> None:
    spec = load_spec("customers").with_options(scale=scale)
    first = build(data_csv, spec)
    again = build(data_csv, first.spec, fitted=first.fitted)
    assert again.fitted == first.fitted
    np.testing.assert_array_equal(again.X, first.X)


def test_fitted_statistics_are_not_refitted_on_new_data(tmp_path: Path, data_csv: Path, data_frame: pl.DataFrame) -> None:
    spec = FeatureSpec(
        features=load_spec("customers").features,
        categorical=(Categorical("Education", 3),),
        numeric=("Response",),
        id_col="ID",
    )
    first = build(data_csv, spec)
    subset = write(tmp_path, data_frame.head(300), "tsv", name="subset")
    part = build(subset, first.spec, fitted=first.fitted)
    assert part.fitted == first.fitted
    kept_in_subset = int(first.kept[:300].sum())
    np.testing.assert_array_equal(part.X, first.X[:kept_in_subset])


# ------------------------------------------------------------- regressions from the code review

def test_integer_expressions_do_not_wrap_around(tmp_path: Path) -> None:
    big = np.int32(2**31 - 1)
    frame = pl.DataFrame({"a": pl.Series([big, big - 5, 7], dtype=pl.Int32),
                          "b": pl.Series([3, 4, 5], dtype=pl.Int32)})
    data = build(write(tmp_path, frame), spec_of(Feature("s", "a + a"), Feature("p", "a * b"), scale="none"))
    np.testing.assert_allclose(data.original["s"].to_numpy(), [2.0 * big, 2.0 * (big - 5), 14.0])
    np.testing.assert_allclose(data.original["p"].to_numpy(), [3.0 * big, 4.0 * (big - 5), 35.0])


def test_large_values_keep_their_precision_before_centring(tmp_path: Path) -> None:
    # Near 2**31 float32 holds only multiples of 128: these values would all look equal.
    x = 2**31 + np.arange(0, 100, dtype=np.int64)
    data = build(write(tmp_path, pl.DataFrame({"x": x})), spec_of(Feature("x", "x")))
    assert data.warnings == [] and data.fitted.names == ("x",)
    np.testing.assert_allclose(data.X[:, 0], (x - x.mean()) / x.std(), rtol=1e-5, atol=1e-5)


def test_log1p_of_minus_one_is_refused(tmp_path: Path) -> None:
    frame = pl.DataFrame({"y": [3.0, 5.0, 9.0]})
    with pytest.raises(InputError, match="'lg'.*above -1"):
        build(write(tmp_path, frame), spec_of(Feature("lg", "y - 4", log1p=True)))


def test_categorical_text_is_profiled_by_level_shares(tmp_path: Path) -> None:
    frame = pl.DataFrame({"Education": ["PhD", "Basic", "PhD", "Master"] * 10, "n": np.arange(40.0)})
    spec = FeatureSpec(features=(Feature("n", "n"),), categorical=(Categorical("Education", 3),))
    data = build(write(tmp_path, frame), spec)
    assert "Education" not in data.original.columns
    assert data.original["Education=PhD"].mean() == pytest.approx(0.5)


def test_auto_mode_warns_about_text_columns_it_leaves_out(tmp_path: Path) -> None:
    frame = pl.DataFrame({"ID": [1, 2, 3, 4], "a": [1.0, 2.0, 3.0, 5.0], "city": ["x", "y", "x", "z"]})
    data = build(write(tmp_path, frame), FeatureSpec())
    assert data.fitted.names == ("a",)
    assert any("city" in w for w in data.warnings)
