"""Who moved, and how the segments drifted: period A (an earlier run) against period B (a refresh
of it, or another run).

**Migration.** The two runs' ``segments.parquet`` are joined on their id columns (a full join, so
every customer of either period is counted once): ``migration.parquet`` holds ``from_segment``,
``to_segment`` and ``customers`` per pair, where a segment is its number as text, ``new`` (only
in B), ``gone`` (only in A) or ``unsegmented`` (in that period's input, but dropped for missing
values). The counts add up to the union of the customers.

**Pairing.** B's segment ``j`` is "the same segment" as A's ``i`` when B kept A's ids (a
``segment refresh``, or the same model); otherwise segments are paired by minimum total distance
between their mean feature values, in A's standard deviations (``engine.fit.match``). A customer
moved when B's segment is not the one paired with A's.

**Drift** (``drift.parquet``), per A segment and for all customers: the sizes and shares in both
periods, the shift of the mean of each feature in its own units (B's paired segment minus A's),
and each feature's population stability index, PSI = sum over bins of (b - a) ln(b / a), over
the deciles of A's values (shares floored at 0.0001). PSI below 0.1 is usually read as stable,
above 0.25 as a real shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.duck.open import reopen_source
from engine.errors import InputError
from engine.features.build import ROW_ID, cleaned_frame, parse_expr
from engine.features.spec import Feature, FeatureSpec
from engine.fit.match import match_centres
from engine.fit.model import Model, load_model
from engine.input.files import Input
from engine.options import CompareOptions
from engine.outputs import charts, rundir

KEY = "@id"
SEGMENT = "@segment"
NEW, GONE, UNSEGMENTED = "new", "gone", "unsegmented"
DECILES = tuple(q / 10 for q in range(1, 10))
PSI_FLOOR = 1e-4


@dataclass
class Period:
    """One side of a comparison: its customers' segments and features in their own units."""

    label: str  # "A" or "B"
    where: str  # what error messages name: the run directory or the INPUT
    id_col: str
    segments: pl.DataFrame  # the id (as @id) and segment of every input row
    names: list[str]
    features: tuple[Feature, ...]
    values: pl.DataFrame  # segmented rows only: one column per feature (null where missing), @segment
    k: int
    model_hash: str | None = None
    derived_from: str | None = None  # a refresh: the model hash of the run it refreshed
    spec_source: str = ""
    warnings: list[str] = field(default_factory=list)


def keyed(ids: pl.Series, segment: pl.Series, where: str) -> pl.DataFrame:
    """``@id`` and ``segment``; the ids must be present and unique (a migration counts customers)."""
    check_keys(ids, where)
    return pl.DataFrame([ids.alias(KEY), segment.cast(pl.Int32).alias("segment")])


def check_keys(ids: pl.Series, where: str) -> None:
    """An id column that names each customer once: not the row number, none missing, none repeated."""
    if ids.name == ROW_ID:
        raise InputError(f"{where}: the run has no id column (segments are keyed by row number); migration "
                         "joins customers by id: give the runs an id column (--id-col)")
    if ids.null_count():
        raise InputError(f"{where}: id column {ids.name!r} has {ids.null_count():,} missing values")
    if ids.n_unique() < ids.len():
        example = ids.filter(ids.is_duplicated())[0]
        raise InputError(f"{where}: id column {ids.name!r} has repeated values (e.g. {example!r}); a migration "
                         "matches each customer once")


def feature_values(inp: Input, spec: FeatureSpec, segment: pl.Series) -> pl.DataFrame:
    """The spec's features in their own units (null where missing or not finite) of the
    segmented rows, with ``@segment``."""
    schema, numeric = inp.schema(), set(spec.numeric)
    exprs = [parse_expr(f, schema, numeric, inp.label) for f in spec.features]
    frame = cleaned_frame(inp.frame, schema, numeric, exprs).select(
        [pl.when(e.is_finite()).then(e).alias(e.meta.output_name()) for e in exprs])
    try:
        values = frame.with_columns(segment.alias(SEGMENT)).collect()
    except pl.exceptions.ShapeError:
        raise InputError(f"{inp.label}: the input has changed since the run: its rows are not the "
                         f"{segment.len():,} the run segmented") from None
    return values.filter(pl.col(SEGMENT).is_not_null())


def load_period(run_dir: str | Path, label: str) -> tuple[Period, Model]:
    """A run directory as one side of a comparison (its input is read again for the features)."""
    where = f"run {label} ({run_dir})"
    run = rundir.read_run(run_dir, need=rundir.RUN_FILES)
    model = load_model(run.path)
    frame = rundir.read_parquet(run.path / rundir.SEGMENTS)
    ids, segment = frame[frame.columns[0]], frame["segment"]
    if model.spec.id_col is None:
        ids = ids.alias(ROW_ID)
    segments = keyed(ids, segment, where)
    inp = reopen_source(run.metrics.get("input"), model.spec, where)
    refreshed = run.metrics.get("refresh") or {}
    period = Period(label, where, ids.name, segments, run.profiles["name"].to_list(), model.spec.features,
                    feature_values(inp, model.spec, segment), model.k, model.digest(),
                    refreshed.get("from_model_hash"), model.spec.source)
    return period, model


def side(segment: str, present: str, absent: str) -> pl.Expr:
    """A customer's segment in one period as text: its number, ``unsegmented``, or ``absent``."""
    return (pl.when(pl.col(present).is_null()).then(pl.lit(absent))
            .when(pl.col(segment).is_null()).then(pl.lit(UNSEGMENTED)).otherwise(pl.col(segment).cast(pl.String)))


def migration_table(a: Period, b: Period) -> pl.DataFrame:
    """Customers per (from_segment, to_segment), every customer of either period once."""
    left, right = a.segments, b.segments
    if left.schema[KEY] != right.schema[KEY]:  # e.g. 5524 in one file, "5524" in the other
        left, right = left.with_columns(pl.col(KEY).cast(pl.String)), right.with_columns(pl.col(KEY).cast(pl.String))
    left = left.with_columns(pl.lit(True).alias("@in_a"))
    right = right.rename({"segment": "@segment_b"}).with_columns(pl.lit(True).alias("@in_b"))
    joined = left.join(right, on=KEY, how="full", coalesce=True)
    counts = (joined.select(side("segment", "@in_a", NEW).alias("from_segment"),
                            side("@segment_b", "@in_b", GONE).alias("to_segment"))
              .group_by("from_segment", "to_segment").len("customers"))
    rows = sorted(counts.iter_rows(), key=lambda r: (order_of(r[0]), order_of(r[1])))
    return pl.DataFrame(rows, schema={"from_segment": pl.String, "to_segment": pl.String, "customers": pl.Int64},
                        orient="row")


def order_of(label: str) -> int:
    """Segments in number order, then unsegmented, new and gone."""
    return int(label) if label.isdigit() else {UNSEGMENTED: 10**6, NEW: 10**6 + 1, GONE: 10**6 + 2}[label]


def matrix(migration: pl.DataFrame) -> pl.DataFrame:
    """The migration as a wide table: one row per from_segment, one column per to_segment."""
    rows = sorted(set(migration["from_segment"]), key=order_of)
    cols = sorted(set(migration["to_segment"]), key=order_of)
    cells = {(r["from_segment"], r["to_segment"]): r["customers"] for r in migration.iter_rows(named=True)}
    return pl.DataFrame({"from_segment": rows, **{c: [cells.get((r, c), 0) for r in rows] for c in cols}},
                        schema={"from_segment": pl.String, **{c: pl.Int64 for c in cols}})


def pairing(a: Period, b: Period) -> tuple[list[tuple[int, int]], str]:
    """Which B segment is which A segment: the same ids when B keeps A's (a refresh of A, or A's
    own model), else the nearest mean feature values (Hungarian), in A's standard deviations."""
    if b.k == a.k and (b.derived_from == a.model_hash or b.model_hash == a.model_hash):
        return [(j, j) for j in range(a.k)], "ids"
    common = [f.name for f in a.features if f in b.features]
    if not common:
        return [], "none"
    means = {p.label: p.values.group_by(SEGMENT).agg([pl.col(f).mean() for f in common]) for p in (a, b)}
    scale = a.values.select([pl.col(f).std() for f in common]).row(0)
    scale = np.array([s if s and s > 0 else 1.0 for s in scale])

    def centres(p: Period) -> np.ndarray:
        found = {r[SEGMENT]: [r[f] for f in common] for r in means[p.label].iter_rows(named=True)}
        return np.array([found.get(j, [np.nan] * len(common)) for j in range(p.k)], dtype=np.float64) / scale

    return match_centres(np.nan_to_num(centres(a), nan=1e6), np.nan_to_num(centres(b), nan=-1e6)), "centroid distance"


def moves(migration: pl.DataFrame, pairs: list[tuple[int, int]], a: Period, b: Period, top: int) -> list[dict]:
    """The largest movements between segments (a customer whose B segment is not the one paired
    with their A segment), largest first, each with its sentence."""
    paired = {str(i): str(j) for i, j in pairs}
    found = [r for r in migration.iter_rows(named=True)
             if r["from_segment"].isdigit() and r["to_segment"].isdigit() and paired.get(r["from_segment"]) != r["to_segment"]]
    found.sort(key=lambda r: (-r["customers"], order_of(r["from_segment"]), order_of(r["to_segment"])))
    out = []
    for r in found[:top]:
        i, j = int(r["from_segment"]), int(r["to_segment"])
        out.append({**r, "text": f"{r['customers']:,} customers moved from {a.names[i]} (segment {i}) to "
                                 f"{b.names[j]} (segment {j})"})
    return out


def psi(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> float | None:
    """Population stability index of ``b`` against ``a`` over the bins ``edges`` cut."""
    if a.size == 0 or b.size == 0:
        return None
    bins = edges.size + 1
    pa = np.bincount(np.searchsorted(edges, a, side="left"), minlength=bins) / a.size
    pb = np.bincount(np.searchsorted(edges, b, side="left"), minlength=bins) / b.size
    pa, pb = np.maximum(pa, PSI_FLOOR), np.maximum(pb, PSI_FLOOR)
    return float(((pb - pa) * np.log(pb / pa)).sum())


def column(values: pl.DataFrame, name: str, segment: int | None) -> np.ndarray:
    rows = values if segment is None else values.filter(pl.col(SEGMENT) == segment)
    return rows[name].drop_nulls().to_numpy().astype(np.float64)


def drift_row(a: Period, b: Period, i: int | None, j: int | None, features: list[str],
              edges: dict[str, np.ndarray]) -> dict[str, Any]:
    """One row of drift.parquet: A's segment ``i`` (None: all customers) against B's ``j``."""
    size_a = a.values.height if i is None else int((a.values[SEGMENT] == i).sum())
    size_b = (b.values.height if i is None else 0) if j is None else int((b.values[SEGMENT] == j).sum())
    share_a, share_b = size_a / max(a.values.height, 1), size_b / max(b.values.height, 1)
    row: dict[str, Any] = {"segment": i, "name": "all customers" if i is None else a.names[i],
                           "matched_segment": j, "matched_name": None if j is None else b.names[j],
                           "customers_a": size_a, "customers_b": size_b, "customers_change": size_b - size_a,
                           "share_a": share_a, "share_b": share_b, "share_change": share_b - share_a}
    missing_b = i is not None and j is None
    for f in features:
        va, vb = column(a.values, f, i), (np.empty(0) if missing_b else column(b.values, f, j))
        row[f"{f}_shift"] = float(vb.mean() - va.mean()) if va.size and vb.size else None
        row[f"{f}_psi"] = psi(va, vb, edges[f])
    return row


def drift_table(a: Period, b: Period, pairs: list[tuple[int, int]]) -> tuple[pl.DataFrame, list[str]]:
    """Per A segment and for all customers: sizes, shares, mean shift and PSI per common feature."""
    features = [f.name for f in a.features if f in b.features]
    edges = {f: np.unique(np.quantile(v, DECILES)) if (v := column(a.values, f, None)).size else np.empty(0)
             for f in features}
    paired = dict(pairs)
    rows = [drift_row(a, b, i, paired.get(i), features, edges) for i in range(a.k)]
    rows.append(drift_row(a, b, None, None, features, edges))
    schema = {"segment": pl.Int32, "name": pl.String, "matched_segment": pl.Int32, "matched_name": pl.String,
              "customers_a": pl.Int64, "customers_b": pl.Int64, "customers_change": pl.Int64, "share_a": pl.Float64,
              "share_b": pl.Float64, "share_change": pl.Float64,
              **{f"{f}_{kind}": pl.Float64 for f in features for kind in ("shift", "psi")}}
    return pl.DataFrame(rows, schema=schema), features


def spec_warnings(a: Period, b: Period) -> list[str]:
    only_a = [f.name for f in a.features if f not in b.features]
    only_b = [f.name for f in b.features if f not in a.features]
    if not only_a and not only_b:
        return []
    return [f"runs A and B use different feature specs ({a.spec_source} and {b.spec_source}): drift covers the "
            f"features both define the same way; A only: {', '.join(only_a) or '-'}; B only: {', '.join(only_b) or '-'}"]


@dataclass
class Comparison:
    migration: pl.DataFrame
    drift: pl.DataFrame
    summary: dict[str, Any]


def compare_periods(a: Period, b: Period, top: int, pairs: list[tuple[int, int]] | None = None) -> Comparison:
    """Migration, drift and a summary of two periods (``pairs``: which B segment is which A one;
    None: ``pairing``)."""
    how = "ids" if pairs is not None else None
    if pairs is None:
        pairs, how = pairing(a, b)
    migration = migration_table(a, b)
    drift, features = drift_table(a, b, pairs)
    summary = {"customers_a": a.segments.height, "customers_b": b.segments.height,
               "customers": int(migration["customers"].sum()), **tally(migration, pairs),
               "pairing": how, "pairs": [list(p) for p in pairs], "features": features,
               "moves": moves(migration, pairs, a, b, top), "warnings": spec_warnings(a, b)}
    return Comparison(migration, drift, summary)


def tally(migration: pl.DataFrame, pairs: list[tuple[int, int]]) -> dict[str, int]:
    """Customers who stayed (in the paired segment), moved, are new, gone, or unsegmented in either period."""
    paired = {str(i): str(j) for i, j in pairs}
    found = {"stayed": 0, "moved": 0, NEW: 0, GONE: 0, UNSEGMENTED: 0}
    for r in migration.iter_rows(named=True):
        a, b = r["from_segment"], r["to_segment"]
        kind = (NEW if a == NEW else GONE if b == GONE else UNSEGMENTED if UNSEGMENTED in (a, b)
                else "stayed" if paired.get(a) == b else "moved")
        found[kind] += r["customers"]
    return found


def write_comparison(out: rundir.RunWriter, comparison: Comparison) -> None:
    """migration.parquet and drift.parquet into a run (or compare) directory being written."""
    out.parquet(rundir.MIGRATION, comparison.migration)
    out.parquet(rundir.DRIFT, comparison.drift)


def compare(run_a: str | Path, run_b: str | Path, options: CompareOptions | None = None, log=lambda _m: None,
            **given: Any) -> Comparison:
    """``segment compare``: migration and drift from run A to run B; with ``out``, written there."""
    unknown = sorted(set(given) - {f.name for f in fields(CompareOptions)})
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r}")
    opts = options or CompareOptions(**{k: v for k, v in given.items() if v is not None})
    check_top(opts.top)
    target = Path(opts.out) if opts.out is not None else None
    if target is not None:
        rundir.check_run_target(target, opts.overwrite)
    a, _ = load_period(run_a, "A")
    b, _ = load_period(run_b, "B")
    comparison = compare_periods(a, b, opts.top)
    comparison.summary.update(run_a=str(Path(run_a).resolve()), run_b=str(Path(run_b).resolve()),
                              names_a=a.names, names_b=b.names)
    for w in comparison.summary["warnings"]:
        log(f"warning: {w}")
    if target is not None:
        with rundir.write_run_dir(target, opts.overwrite) as out:
            write_comparison(out, comparison)
            out.json(rundir.COMPARE_JSON, comparison.summary)
            charts.write_figure(charts.migration_figure(matrix(comparison.migration), a.names, b.names),
                                out.path(rundir.COMPARE_HTML))
            comparison.summary["written"] = out.listing()
        log(f"wrote {target}")
    return comparison


def check_top(top: Any) -> None:
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise InputError(f"--top must be 0 or more, not {top!r}")

