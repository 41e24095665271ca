"""Spec -> Polars expressions -> one float32 matrix.

The input is read once, lazily, projecting only the columns the spec needs. Cleaning
(text numbers, NaN/inf), quantile clipping, log1p, the missing-value policy, one-hot
encoding and scaling then run as column expressions over that frame, and the scaled
features are collected straight into one C-ordered float32 matrix.

Fitted statistics (clip bounds, medians, category levels, scaler) are returned in
``FittedFeatures`` and saved with the model, so ``predict`` rebuilds the same matrix.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from engine.errors import InputError, did_you_mean
from engine.scaling import Scaler, fit_scaler
from engine.source import Input, first_line
from engine.spec import Feature, FeatureSpec

ROW_ID = "row_id"
ID_GUESSES = ("id", "customer_id", "customerid", "client_id", "user_id")
NEVER_AUTO = ("true_segment",)  # `segment generate`'s ground truth must never leak into features


@dataclass(frozen=True)
class FittedFeatures:
    """Statistics learned from the training data and reused by ``predict``."""

    names: tuple[str, ...]  # matrix columns, in order
    clip: dict[str, tuple[float, float]]
    medians: dict[str, float]
    levels: dict[str, tuple[str, ...]]
    scaler: Scaler
    dropped: tuple[str, ...] = ()  # constant features left out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scaler"] = self.scaler.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> FittedFeatures:
        """Fitted statistics from a model file: right types, finite numbers, positive scales."""
        try:
            names = tuple(data["names"])
            sc = data["scaler"]
            scaler = Scaler(sc["method"], finite_tuple(sc["center"]), finite_tuple(sc["scale"]))
            fitted = cls(
                names=names,
                clip={str(k): finite_tuple(v, 2) for k, v in data["clip"].items()},
                medians={str(k): finite_tuple([v])[0] for k, v in data["medians"].items()},
                levels={str(k): tuple(v) for k, v in data["levels"].items()},
                scaler=scaler,
                dropped=tuple(data.get("dropped", ())),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InputError(f"model feature statistics are malformed: {exc}") from exc
        texts = [*names, *fitted.dropped, *(x for v in fitted.levels.values() for x in v)]
        if not names or not all(isinstance(x, str) for x in texts):
            raise InputError("model feature statistics are malformed: names and levels must be strings")
        if scaler.method not in ("standard", "robust", "none"):
            raise InputError(f"model scaler method {scaler.method!r} is not one of standard, robust, none")
        if len(scaler.center) != len(names) or len(scaler.scale) != len(names):
            raise InputError("model scaler has the wrong number of features")
        if not all(x > 0.0 for x in scaler.scale):
            raise InputError("model scaler scales must be positive")
        return fitted


def finite_tuple(values: Any, length: int | None = None) -> tuple[float, ...]:
    """Finite floats from a JSON list (booleans and strings are refused)."""
    if not isinstance(values, list) or (length is not None and len(values) != length):
        raise TypeError(f"expected a list of {length or 'some'} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError("expected finite numbers")
    return tuple(float(v) for v in values)


@dataclass
class FeatureData:
    """The built matrix and what goes with it."""

    X: np.ndarray  # (rows kept, features) float32, C order, scaled
    ids: pl.Series  # one per input row
    kept: np.ndarray | None  # bool mask over input rows; None when every row was kept
    original: pl.DataFrame  # kept rows, features in original units (for profiles)
    spec: FeatureSpec  # resolved: explicit features, id column
    fitted: FittedFeatures
    n_rows: int
    missing: dict[str, int]  # missing (null, NaN or inf) values per feature
    non_finite: dict[str, int]  # NaN or inf values per feature (counted in ``missing`` too)
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return self.n_rows - self.X.shape[0]

    @property
    def id_col(self) -> str:
        return self.ids.name


def is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean


def resolve_id(spec: FeatureSpec, schema: pl.Schema, where: str) -> str | None:
    """The id column: the one named, else a column called id/customer_id/..., else none (row_id)."""
    if spec.id_col is not None:
        if spec.id_col not in schema:
            raise InputError(f"{where}: id column {spec.id_col!r} not found{did_you_mean(spec.id_col, schema.names())}")
        return spec.id_col
    lowered = {name.lower(): name for name in schema.names()}
    for guess in ID_GUESSES:
        if guess in lowered:
            return lowered[guess]
    return None


def resolve_spec(spec: FeatureSpec, schema: pl.Schema, where: str) -> FeatureSpec:
    """Fill in the id column and, with no declared features, every numeric column except the id."""
    id_col = resolve_id(spec, schema, where)
    for col in (*spec.numeric, *spec.exclude):
        if col not in schema:
            raise InputError(f"{where}: column {col!r} not found{did_you_mean(col, schema.names())}")
    if not spec.auto:
        return replace(spec, id_col=id_col)
    skip = {id_col, *spec.exclude, *NEVER_AUTO}
    names = [n for n, t in schema.items() if n not in skip and (is_numeric(t) or n in spec.numeric)]
    if not names:
        raise InputError(f"{where}: no numeric columns to use as features (name them with --features or --spec)")
    text = tuple(n for n in schema.names() if n not in skip and n not in names)
    return replace(spec, id_col=id_col, features=tuple(Feature(n, n) for n in names), skipped=text)


def parse_expr(feature: Feature, schema: pl.Schema, numeric: set[str], where: str) -> pl.Expr:
    """A feature's SQL expression as a Polars expression, checked against the input's columns."""
    try:
        expr = pl.sql_expr(feature.expr)
        roots = expr.meta.root_names()
    except Exception as exc:  # Polars raises several types for SQL parse errors
        raise InputError(f"{where}: feature {feature.name!r}: cannot parse {feature.expr!r}: {first_line(exc)}") from exc
    for col in roots:
        if col not in schema:
            raise InputError(
                f"{where}: feature {feature.name!r} uses unknown column {col!r}{did_you_mean(col, schema.names())}"
            )
        if not is_numeric(schema[col]) and col not in numeric and not yields_number(expr, schema):
            raise InputError(
                f"{where}: column {col!r} used by feature {feature.name!r} is {schema[col]}, not numeric "
                "(list it in numeric = [...] to parse text numbers, or one-hot it under [categorical])"
            )
    return expr.cast(pl.Float64).alias(feature.name)


def yields_number(expr: pl.Expr, schema: pl.Schema) -> bool:
    """True when an expression over text columns gives a number, such as days parsed from a date
    with ``STRPTIME`` (checked on the schema alone, nothing is read)."""
    try:
        dtype = pl.LazyFrame(schema=schema).select(expr.alias("_")).collect_schema()["_"]
    except Exception:  # Polars raises several types for type errors
        return False
    return is_numeric(dtype)


def blank_text_columns(inp: Input, spec: FeatureSpec, schema: pl.Schema, numeric: set[str]) -> set[str]:
    """Text-typed columns used by features that hold no value at all: a CSV reader types a column
    that is blank in every row (or a header-only file) as text. Treated as numbers, they give
    the right error ("no rows", "feature has no values") instead of "not numeric"."""
    roots: set[str] = set()
    for f in spec.features:
        try:
            roots |= set(pl.sql_expr(f.expr).meta.root_names())
        except Exception:  # parse errors are reported by parse_expr, with the feature's name
            continue
    text = sorted(c for c in roots if c in schema and not is_numeric(schema[c]) and c not in numeric)
    if not text:
        return set()
    try:
        counts = inp.frame.select([pl.col(c).drop_nulls().len().alias(c) for c in text]).collect().row(0, named=True)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {inp.label}: {first_line(exc)}") from exc
    return {c for c, n in counts.items() if n == 0}


def text_numbers(columns: tuple[str, ...] | set[str], schema: pl.Schema) -> list[pl.Expr]:
    """Text columns declared numeric: strip stray spaces, then parse."""
    return [
        pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64).alias(c)
        for c in columns
        if not is_numeric(schema[c])
    ]


def cleaned_frame(frame: pl.LazyFrame, schema: pl.Schema, numeric: set[str], exprs: list[pl.Expr]) -> pl.LazyFrame:
    """The input with text numbers parsed and the numeric columns ``exprs`` use widened to float64
    (expressions run in float64: integer arithmetic must not wrap around)."""
    roots = {r for e in exprs for r in e.meta.root_names()}
    widened = [pl.col(c).cast(pl.Float64) for c in sorted(roots) if is_numeric(schema[c]) and c not in numeric]
    cleaned = text_numbers(sorted(numeric), schema) + widened
    return frame.with_columns(cleaned) if cleaned else frame


def read_frame(inp: Input, spec: FeatureSpec) -> pl.DataFrame:
    """The one read of the input: id, raw feature values and categorical columns."""
    schema = inp.schema()
    where = inp.label
    numeric = set(spec.numeric)
    for cat in spec.categorical:
        if cat.column not in schema:
            raise InputError(f"{where}: categorical column {cat.column!r} not found{did_you_mean(cat.column, schema.names())}")
    names = [f.name for f in spec.features] + [c.column for c in spec.categorical]
    dupes = sorted({n for n in names if names.count(n) > 1} | ({spec.id_col} & set(names)))
    if dupes:
        raise InputError(f"{where}: feature name used twice (or equal to the id column): {', '.join(map(str, dupes))}")
    numeric |= blank_text_columns(inp, spec, schema, numeric)
    id_expr = pl.col(spec.id_col) if spec.id_col else pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_ID)
    exprs = [parse_expr(f, schema, numeric, where) for f in spec.features]
    cats = [pl.col(c.column).cast(pl.String) for c in spec.categorical]
    frame = cleaned_frame(inp.frame, schema, numeric, exprs)
    try:
        return frame.select([id_expr, *exprs, *cats]).collect()
    except pl.exceptions.InvalidOperationError as exc:
        raise InputError(f"{where}: a column listed in numeric holds text that is not a number: {first_line(exc)}") from exc
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {where}: {first_line(exc)}") from exc


def null_non_finite(raw: pl.DataFrame, names: list[str]) -> tuple[pl.DataFrame, dict[str, int]]:
    """NaN and +-inf become missing values; returns the frame and how many there were per feature."""
    row = raw.select([(pl.col(n).is_nan() | pl.col(n).is_infinite()).sum().alias(n) for n in names]).row(0, named=True)
    bad = {n: int(c) for n, c in row.items() if c}
    if bad:
        raw = raw.with_columns([pl.when(pl.col(n).is_finite()).then(pl.col(n)).alias(n) for n in bad])
    return raw, bad


def check_ids(ids: pl.Series, where: str) -> None:
    """Ids must be present and unique: a duplicated id makes the output impossible to join back."""
    nulls = ids.null_count()
    if nulls:
        raise InputError(f"{where}: id column {ids.name!r} has {nulls:,} missing values")
    if ids.n_unique() < len(ids):
        dupes = ids.filter(ids.is_duplicated())
        example = dupes[0]
        raise InputError(
            f"{where}: id column {ids.name!r} has {dupes.n_unique():,} duplicated values (e.g. {example!r}); "
            "fix the input or pass --allow-duplicate-ids"
        )


def fit_clip_bounds(frame: pl.DataFrame, features: tuple[Feature, ...]) -> dict[str, tuple[float, float]]:
    clipped = [f for f in features if f.clip]
    if not clipped:
        return {}
    exprs = []
    for f in clipped:
        exprs += [pl.col(f.name).quantile(f.clip[0], "linear").alias(f"{f.name}__lo")]
        exprs += [pl.col(f.name).quantile(f.clip[1], "linear").alias(f"{f.name}__hi")]
    row = frame.select(exprs).row(0, named=True)
    bounds = {}
    for f in clipped:
        lo, hi = row[f"{f.name}__lo"], row[f"{f.name}__hi"]
        if lo is None:
            raise InputError(f"feature {f.name!r} has no values to compute clip quantiles from")
        bounds[f.name] = (float(lo), float(hi))
    return bounds


def transform_exprs(features: tuple[Feature, ...], clip: dict[str, tuple[float, float]]) -> list[pl.Expr]:
    out = []
    for f in features:
        e = pl.col(f.name)
        if f.name in clip:
            lo, hi = clip[f.name]
            e = e.clip(lo, hi)
        if f.log1p:
            e = e.log1p()
        out.append(e.alias(f.name))
    return out


def check_log1p(frame: pl.DataFrame, features: tuple[Feature, ...], clip: dict, where: str) -> None:
    """log1p needs values > -1 after clipping (log1p(-1) is -inf); say which feature breaks that."""
    logged = [f.name for f in features if f.log1p]
    if not logged:
        return
    lows = frame.select([pl.col(n).min() for n in logged]).row(0, named=True)
    for name in logged:
        low = lows[name]
        if low is not None and name in clip:
            low = max(low, clip[name][0])
        if low is not None and low <= -1.0:
            raise InputError(f"{where}: feature {name!r}: log1p needs values above -1, found {low:g}")


def apply_missing(
    frame: pl.DataFrame, names: list[str], spec: FeatureSpec, medians: dict[str, float] | None, where: str
) -> tuple[pl.DataFrame, np.ndarray | None, dict[str, float]]:
    """Apply the missing-value policy. Returns the frame, the kept-row mask and the medians.

    With the median policy, a fit learns the median of every feature (not only of those with gaps
    in the training data), so ``predict`` can fill gaps that only new data has.
    """
    if spec.missing == "median" and medians is None:
        row = frame.select([pl.col(n).median() for n in names]).row(0, named=True)
        empty = [n for n, v in row.items() if v is None]
        if empty:
            raise InputError(f"{where}: feature {empty[0]!r} has no values at all, so it has no median")
        medians = {n: float(v) for n, v in row.items()}
    medians = medians or {}
    nulls = frame.select([pl.col(n).null_count() for n in names]).row(0, named=True)
    missing = {n: c for n, c in nulls.items() if c}
    if not missing:
        return frame, None, medians
    listed = ", ".join(f"{n} ({c})" for n, c in missing.items())
    if spec.missing == "error":
        raise InputError(f"{where}: missing values in feature(s) {listed} (use missing = drop or median)")
    if spec.missing == "median":
        unknown = [n for n in missing if n not in medians]
        if unknown:
            raise InputError(f"{where}: the model holds no median for feature {unknown[0]!r}")
        return frame.with_columns([pl.col(n).fill_null(medians[n]) for n in missing]), None, medians
    kept = frame.select(pl.all_horizontal([pl.col(n).is_not_null() for n in names])).to_series().to_numpy()
    return frame.filter(pl.Series(kept)), kept, medians


def fit_levels(frame: pl.DataFrame, spec: FeatureSpec) -> dict[str, tuple[str, ...]]:
    levels = {}
    for cat in spec.categorical:
        counts = (
            frame.group_by(cat.column)
            .len()
            .drop_nulls(cat.column)
            .sort(["len", cat.column], descending=[True, False])
            .head(cat.max_levels)
        )
        levels[cat.column] = tuple(counts[cat.column].to_list())
    return levels


def one_hot_exprs(levels: dict[str, tuple[str, ...]]) -> list[pl.Expr]:
    return [
        (pl.col(col) == lvl).fill_null(False).cast(pl.Float32).alias(f"{col}={lvl}")
        for col, lvls in levels.items()
        for lvl in lvls
    ]


def build_features(
    inp: Input, spec: FeatureSpec, fitted: FittedFeatures | None = None, allow_duplicate_ids: bool = False
) -> FeatureData:
    """Read the input once and build the scaled float32 matrix.

    With ``fitted`` (from a saved model) no statistics are learned: the same clip bounds,
    medians, levels and scaler are applied, so ``predict`` sees the training transform.
    """
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    where = inp.label
    spec = resolve_spec(spec, inp.schema(), where)
    raw = read_frame(inp, spec)
    seconds["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_rows = raw.height
    if n_rows == 0:
        raise InputError(f"{where}: no rows")
    ids = raw.get_column(raw.columns[0])
    if spec.id_col and not allow_duplicate_ids:
        check_ids(ids, where)
    names = [f.name for f in spec.features]
    raw, non_finite = null_non_finite(raw, names)
    warnings: list[str] = []
    if non_finite:
        listed = ", ".join(f"{n} ({c:,})" for n, c in non_finite.items())
        warnings.append(f"NaN or infinite values treated as missing in feature(s) {listed}")
    nulls = raw.select([pl.col(n).null_count() for n in names]).row(0, named=True)
    missing = {n: int(c) for n, c in nulls.items() if c}
    empty = [n for n, c in missing.items() if c == n_rows]
    if empty and fitted is None:
        raise InputError(f"{where}: feature {empty[0]!r} has no values (all {n_rows:,} rows are missing or not finite)")
    clip = fitted.clip if fitted else fit_clip_bounds(raw, spec.features)
    check_log1p(raw, spec.features, clip, where)
    work = raw.with_columns(transform_exprs(spec.features, clip))
    work, kept, medians = apply_missing(work, names, spec, fitted.medians if fitted else None, where)
    if work.height == 0:
        raise InputError(f"{where}: no rows left after dropping rows with missing values (see missing = median)")
    original = raw if kept is None else raw.filter(pl.Series(kept))
    levels = fitted.levels if fitted else fit_levels(work, spec)
    hot = one_hot_exprs(levels)
    if hot:
        work = work.with_columns(hot)
        original = original.with_columns(hot)
    columns = names + [e.meta.output_name() for e in hot]
    if spec.skipped:
        warnings.append(f"non-numeric column(s) left out: {', '.join(spec.skipped)} "
                        "(list text numbers in a spec's numeric = [...], or one-hot them under [categorical])")
    if fitted:
        scaler, dropped = fitted.scaler, list(fitted.dropped)
        columns = list(fitted.names)
    else:
        scaler, dropped = fit_scaler(work, spec.scale, columns)
        columns = [c for c in columns if c not in dropped]
        if dropped:
            warnings.append(f"constant feature(s) dropped: {', '.join(dropped)}")
        if not columns:
            raise InputError(f"{where}: every feature is constant; nothing to segment on")
    missing_cols = [c for c in columns if c not in work.columns]
    if missing_cols:
        raise InputError(f"{where}: model feature {missing_cols[0]!r} cannot be built from this input")
    X = work.select(scaler.exprs(columns)).to_numpy(order="c")
    X = np.ascontiguousarray(X, dtype=np.float32)
    seconds["features"] = time.perf_counter() - t0
    fitted = FittedFeatures(tuple(columns), clip, medians, levels, scaler, tuple(dropped))
    original = original.drop([raw.columns[0], *(c.column for c in spec.categorical)])
    return FeatureData(X, ids, kept, original, spec, fitted,
                       n_rows, missing, non_finite, warnings, seconds)
