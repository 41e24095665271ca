"""The insight's one pass (engine/insight/onepass.py): the same profiles, offers, sample and EDA
summary, to the bit, for any block layout and thread count; the figures of the old group-by
code (tests/naive.py); and a run that never reads its input a second time."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import naive
import numpy as np
import polars as pl
import pytest

from conftest import invoke, num_threads, read_json
from engine.duck.open import open_source
from engine.features.build import build_features
from engine.features.spec import load_spec
from engine.insight import profiles
from engine.insight.onepass import InsightPass, feed_input, row_labels, sampled_rows
from engine.insight.stage import Insight, used_columns
from kernels.segments import CHUNK_ROWS

ROWS = 200_000
K = 6  # segment 5 stays empty
SPEC = """
id = "ID"
[features]
age = "2014 - Year_Birth"
income = { expr = "Income", clip = [0.0, 0.99] }
spending = { expr = "MntWines + MntFruits + MntMeatProducts", log1p = true }
web_share = "NumWebPurchases / GREATEST(NumWebPurchases + NumCatalogPurchases + NumStorePurchases, 1)"
recency = "Recency"
[categorical]
Marital_Status = { max_levels = 3 }
[business]
revenue = "MntWines + MntFruits + MntMeatProducts + MntGoldProds"
response = "Response"
frequency = "NumWebPurchases + NumCatalogPurchases + NumStorePurchases"
cost_per_contact = "Z_CostContact"
revenue_per_response = 11
[business.offers.categories]
Wines = "MntWines"
Fruits = "MntFruits"
Gold = "MntGoldProds"
[business.offers.channels]
Web = "NumWebPurchases"
Store = "NumStorePurchases"
"""


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> tuple[Path, Path]:
    """200,000 generated customers with missing incomes (rows dropped), missing fruit spend (revenue
    missing), missing responses and a categorical; and the spec above."""
    from engine.synth.customers import generate_customers

    folder = tmp_path_factory.mktemp("messy")
    path, spec = folder / "customers.parquet", folder / "spec.toml"
    generate_customers(path, ROWS, segments=5, seed=3)
    rng = np.random.default_rng(8)
    frame = pl.read_parquet(path)
    frame = frame.with_columns(*(pl.when(pl.Series(rng.random(ROWS) < share)).then(None).otherwise(pl.col(c)).alias(c)
                                 for c, share in (("Income", 0.03), ("MntFruits", 0.02), ("Response", 0.01))))
    frame.write_parquet(path)
    spec.write_text(SPEC, encoding="utf-8")
    return path, spec


@pytest.fixture(scope="module")
def built(messy):
    """The input, its features and one label per kept row (income bands: segments 0..4)."""
    path, spec_file = messy
    spec = load_spec(str(spec_file))
    inp = open_source([str(path)], None, spec)
    data = build_features(inp, spec)
    income = data.X[:, 1]
    labels = np.searchsorted(np.quantile(income, [0.2, 0.4, 0.6, 0.8]), income).astype(np.int32)
    assert data.rows_dropped > 0 and set(np.unique(labels)) == {0, 1, 2, 3, 4}
    return inp, data, labels


def passed(built, block_rows: int, known: bool = False, features: np.ndarray | None = None,
           sampled: pl.DataFrame | None = None):
    inp, data, labels = built
    acc = InsightPass(inp.schema(), inp.label, data.spec, data.fitted.levels, K, 0, data.n_rows if known else None)
    every = row_labels(labels, data.kept)
    moments = None if features is None else acc.feature_moments(features, every, block_rows)
    feed_input(acc, inp, every, block_rows, moments, sampled)
    return acc.finish()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def assert_same(a, b) -> None:
    assert a.profiles.table.equals(b.profiles.table)
    assert parquet_bytes(a.profiles.table) == parquet_bytes(b.profiles.table)
    assert a.profiles.overall == b.profiles.overall and a.profiles.warnings == b.profiles.warnings
    sums = a.profiles.offer_sums, b.profiles.offer_sums
    assert sums == (None, None) if sums[0] is None else sums[0].equals(sums[1])
    assert a.sample.equals(b.sample) and a.rows == b.rows


@pytest.mark.parametrize("sample_rows", [profiles.SAMPLE_ROWS, 30_000])
def test_the_same_bits_for_any_blocks_and_threads(built, monkeypatch, sample_rows: int) -> None:
    """Blocks of 1, 2 and 3 chunks and one block, on 1 and 2 threads: the same profile table
    (its Parquet bytes), population figures, offer sums and sample; with every row in the sample
    and with a sample of 30,000."""
    monkeypatch.setattr(profiles, "SAMPLE_ROWS", sample_rows)
    whole = passed(built, 1 << 20)
    assert whole.sample.height == min(sample_rows, ROWS)
    for threads in (1, 2):
        with num_threads(threads):
            for chunks in (1, 2, 3):
                assert_same(passed(built, chunks * CHUNK_ROWS), whole)
    # the row count given up front: the sample found once (KnownSample), not merged block by block
    assert_same(passed(built, 2 * CHUNK_ROWS, known=True), whole)


def test_the_run_s_feature_columns_give_the_same_bits(built) -> None:
    """An in-memory run hands the pass the feature columns it read (``keep_columns``) instead of
    the features being evaluated on each block again: derived, clipped and logged features,
    missing values, one-hot levels, measures and offers, the same profile table to the bit."""
    inp, data, _ = built
    kept = build_features(inp, data.spec, keep_columns=True)
    assert kept.columns.shape == (data.n_rows, len(data.spec.features)) and np.isnan(kept.columns).any()
    assert np.array_equal(kept.X, data.X) and build_features(inp, data.spec).columns is None
    for block_rows in (2 * CHUNK_ROWS, 1 << 20):
        assert_same(passed(built, block_rows, features=kept.columns), passed(built, block_rows))


@pytest.mark.parametrize("sample_rows", [profiles.SAMPLE_ROWS, 30_000])
def test_the_run_s_sampled_columns_give_the_same_bits(built, monkeypatch, sample_rows: int) -> None:
    """The run's read also takes the raw values of the features that are columns as they are at
    the pass's sampled rows (``FeatureData.sampled``): the pass then reads only the other columns,
    and gives the same bits (profiles, sample, offers), with every row sampled or 30,000."""
    import engine.input.blocks as layout

    monkeypatch.setattr(profiles, "SAMPLE_ROWS", sample_rows)
    inp, data, _ = built
    kept = build_features(inp, data.spec, keep_columns=True, sample_size=sample_rows)
    assert kept.sampled.columns == ["Income", "Recency", "@row"]
    assert kept.sampled.height == min(sample_rows, ROWS) and kept.sampled["Income"].null_count() > 0
    assert kept.sampled.schema["Recency"] == inp.schema()["Recency"]  # the input's own type
    read, columns = layout.read_block, []
    monkeypatch.setattr(layout, "read_block", lambda inp, start, rows, cols: columns.append(cols) or
                        read(inp, start, rows, cols))
    for block_rows in (2 * CHUNK_ROWS, 1 << 20):
        columns.clear()
        given = passed(built, block_rows, known=True, features=kept.columns, sampled=kept.sampled)
        assert columns and all("Recency" not in c and "Income" not in c and "MntWines" in c for c in columns)
        assert_same(given, passed(built, block_rows, known=True, features=kept.columns))
        assert_same(given, passed(built, block_rows))
    # a pass that does not know the row count up front reads every column, as before
    columns.clear()
    assert_same(passed(built, 1 << 20, features=kept.columns, sampled=kept.sampled), passed(built, 1 << 20))
    assert "Recency" in columns[0]


@pytest.mark.parametrize("business", ["", '[business]\nrevenue = "Income + Recency + MntWines"\n'])
def test_a_run_whose_profile_reads_only_plain_features_reads_the_input_once(messy, tmp_path: Path, business) -> None:
    """Features that are columns as they are, no measures or categorical columns: the in-memory
    pass reads nothing more (the input may be gone), and its figures are those of a pass that
    reads the input. With a measure that reads every one of those columns, the pass reads them
    all, the same figures."""
    path, _ = messy
    spec_file = tmp_path / "plain.toml"
    spec_file.write_text('id = "ID"\n[features]\nincome = "Income"\nrecency = "Recency"\nwines = "MntWines"\n'
                         + business)
    spec = load_spec(str(spec_file))
    copy = tmp_path / "copy.parquet"
    shutil.copy(path, copy)
    inp = open_source([str(copy)], None, spec)
    data = build_features(inp, spec, keep_columns=True, sample_size=profiles.SAMPLE_ROWS)
    labels = np.searchsorted(np.quantile(data.X[:, 0], [0.25, 0.5, 0.75]), data.X[:, 0]).astype(np.int32)
    every = row_labels(labels, data.kept)

    def fed(sampled):
        acc = InsightPass(inp.schema(), inp.label, data.spec, data.fitted.levels, 4, 0, data.n_rows)
        feed_input(acc, inp, every, 2 * CHUNK_ROWS, acc.feature_moments(data.columns, every, 2 * CHUNK_ROWS), sampled)
        return acc.finish()

    read = fed(None)
    if business:
        assert_same(fed(data.sampled), read)
        return
    copy.unlink()
    with pytest.raises(Exception):
        fed(None)
    assert_same(fed(data.sampled), read)


def test_the_figures_of_the_old_group_by(built) -> None:
    """Sizes, sums and counts exact; means, deviations and z-scores within 1e-9; medians and
    revenue concentration exact (every row is in the sample), against one Polars group-by."""
    inp, data, labels = built
    result = passed(built, 2 * CHUNK_ROWS)
    table = result.profiles.table
    segments = pl.Series(row_labels(labels, data.kept)).set(pl.Series(~data.kept), None)
    frame = profiles.profile_frame(inp, data.spec, data.fitted.levels, segments).collect()
    names = [f.name for f in data.spec.features] + [f"Marital_Status={lvl}" for lvl in data.fitted.levels["Marital_Status"]]
    names += ["@frequency", "@revenue", "@response"]
    ref, pop = naive.profile_figures(frame, names, profiles.SEGMENT)
    got = table.filter(pl.col("size") > 0)
    assert table["size"].to_list()[:5] == ref["size"].to_list() and table["size"][5] == 0
    assert got["responses"].to_list() == ref["@response_sum"].cast(pl.Int64).to_list()
    assert got["revenue_sum"].to_list() == ref["@revenue_sum"].to_list()  # integers: exact
    for name in names[:-1]:
        out = name.lstrip("@")
        assert got[f"{out}_median"].to_list() == ref[f"{name}_median"].to_list(), name
        np.testing.assert_allclose(got[f"{out}_mean"].to_numpy(), ref[f"{name}_mean"].to_numpy(), rtol=1e-9)
        z = (ref[f"{name}_mean"].to_numpy() - pop[f"{name}_mean"]) / pop[f"{name}_std"]
        np.testing.assert_allclose(got[f"{out}_z"].to_numpy(), z, rtol=1e-9, atol=1e-12)
    seg = frame.filter(pl.col(profiles.SEGMENT).is_not_null())
    for p in profiles.TOP_SHARES:
        assert result.profiles.overall["revenue_concentration"][f"top{p}"] == pytest.approx(
            naive.top_share(seg["@revenue"].drop_nulls(), p), rel=1e-12)
        for j in range(5):
            values = seg.filter(pl.col(profiles.SEGMENT) == j)["@revenue"].drop_nulls()
            assert got[f"revenue_top{p}_share"][j] == pytest.approx(naive.top_share(values, p), rel=1e-12)
    everyone = frame.select(pl.col("@response").fill_null(0).sum(), pl.col("@response").null_count().alias("missing"))
    assert result.profiles.overall["responses"] == everyone.item(0, 0)
    assert any(f"missing in {everyone.item(0, 1):,} rows" in w for w in result.profiles.warnings)


def test_sampled_medians_are_those_of_the_hash_sample(built, monkeypatch) -> None:
    """Above SAMPLE_ROWS input rows the medians are exactly those of the sampled rows."""
    inp, data, labels = built
    monkeypatch.setattr(profiles, "SAMPLE_ROWS", 20_000)
    result = passed(built, 3 * CHUNK_ROWS)
    rows = sampled_rows(data.n_rows, 0)
    segments = pl.Series(row_labels(labels, data.kept)).set(pl.Series(~data.kept), None)
    frame = profiles.profile_frame(inp, data.spec, data.fitted.levels, segments).collect()[rows]
    ref, _ = naive.profile_figures(frame, ["income", "@revenue"], profiles.SEGMENT)
    got = result.profiles.table.filter(pl.col("size") > 0)
    assert got["income_median"].to_list() == ref["income_median"].to_list()
    assert got["revenue_median"].to_list() == ref["@revenue_median"].to_list()
    assert result.profiles.overall["median_sample"] == int(data.kept[rows].sum())


def test_the_insight_never_reads_the_input_after_the_pass(built, tmp_path: Path) -> None:
    """Feed the pass, then delete the input: the insight stage (profiles, offers, impact, describe)
    still comes out, the same as the one that read the input itself."""
    inp, data, labels = built
    copy = tmp_path / "copy.parquet"
    shutil.copy(inp.files[0], copy)
    moved = open_source([str(copy)], None, data.spec)
    acc = InsightPass(moved.schema(), inp.label, data.spec, data.fitted.levels, K, 0)
    feed_input(acc, moved, row_labels(labels, data.kept), CHUNK_ROWS)
    copy.unlink()
    centers = np.stack([data.X[labels == j].mean(axis=0) for j in range(5)] + [np.zeros(data.X.shape[1])])
    after = Insight(moved, data, labels, centers, K, 0, passed=acc)
    before = Insight(inp, data, labels, centers, K, 0)
    assert after.profiles.equals(before.profiles) and after.impact.equals(before.impact)
    assert after.offers.table.equals(before.offers.table)
    assert {**after.describe, "seconds": 0, "input": ""} == {**before.describe, "seconds": 0, "input": ""}
    assert [c["column"] for c in after.describe["columns"]] == used_columns(data.spec, data.fitted.levels)


def test_the_shared_data_end_to_end_reads_the_input_once_for_the_insight(data_csv: Path, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """`segment run --spec marketing`: profiles, impact and offers are there and add up, and while
    the insight stage runs exactly one query scans the CSV (the in-memory pass's read of its
    columns; the old group-bys and describe scanned it many times)."""
    import engine.api

    scans, inside = [], []
    collect, batches = pl.LazyFrame.collect, pl.LazyFrame.collect_batches

    def counting(self, *args, **kwargs):
        if inside and data_csv.name in self.explain(optimized=False):
            scans.append(1)
        return collect(self, *args, **kwargs)

    def counting_batches(self, *args, **kwargs):  # a CSV is read front to back in batches
        if inside and data_csv.name in self.explain(optimized=False):
            scans.append(1)
        return batches(self, *args, **kwargs)

    class Watched(Insight):
        def __init__(self, *args, **kwargs):
            inside.append(1)
            try:
                super().__init__(*args, **kwargs)
            finally:
                inside.clear()

    monkeypatch.setattr(pl.LazyFrame, "collect", counting)
    monkeypatch.setattr(pl.LazyFrame, "collect_batches", counting_batches)
    monkeypatch.setattr(engine.api, "Insight", Watched)
    out = tmp_path / "run"
    result = invoke(["run", data_csv, "--spec", "marketing", "--k", "4", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(scans) == 1
    metrics = read_json(out / "metrics.json")
    p = pl.read_parquet(out / "profiles.parquet")
    assert p["size"].sum() == metrics["rows_used"] == 2216 and sum(p["share"]) == pytest.approx(1.0)
    assert sum(p["revenue_share"]) == pytest.approx(1.0) and p["revenue_sum"].sum() == 1_345_279
    assert p["responses"].sum() == metrics["insight"]["overall"]["responses_segmented"]
    impact = pl.read_parquet(out / "impact.parquet")
    assert impact.height == 6 and set(range(4)) <= set(impact["segment"].drop_nulls().to_list())
    offers = pl.read_parquet(out / "offers.parquet")
    assert set(offers["kind"]) == {"category", "channel"} and offers["segment"].n_unique() == 4
    assert read_json(out / "describe.json")["rows"] == 2240
