"""The Explore view's data: where a run's rows are read, the filter columns (features and
business measures in their own units, computed by the run's own expressions), pages of the
customer table, and per-segment distributions.

Nothing here imports Streamlit: ``app.py`` caches these functions (``st.cache_data`` /
``st.cache_resource``, keyed on the run directory's stamp). DuckDB is reached only through
``engine.duck.dashboard``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine.api import fingerprint
from engine.dashboard.rundata import Run
from engine.duck.dashboard import ID_TEXT, DashboardDB, RowFilter, RowSource, parquet_rows
from engine.duck.open import open_source
from engine.errors import InputError
from engine.input.files import Input, open_input
from engine.insight.onepass import sampled_rows
from engine.insight.profiles import profile_frame

PAGE_SIZES = (25, 50, 100)
HIST_BINS = 30
MEASURE_PREFIX = "@"  # profile_frame's name of a business measure column


@dataclass(frozen=True)
class FilterColumn:
    name: str  # the column in profile_frame: a feature's name, or "@revenue" for a measure
    label: str


def filter_columns(run: Run) -> list[FilterColumn]:
    """Every numeric feature, then every business measure that is not also a feature."""
    features = [f.name for f in run.spec.features]
    out = [FilterColumn(f, f) for f in features]
    out += [FilterColumn(f"{MEASURE_PREFIX}{m}", f"{m} (business)")
            for m in run.spec.business.measures() if m not in features]
    return out


def input_files(run: Run) -> tuple[Path, ...]:
    """The run's input files. A relative path (as given to ``segment run``) is taken from the
    working directory, else from the run directory's parent (where the run was likely made)."""
    found = []
    for name in run.input_info().get("files", []):
        if not isinstance(name, str):
            continue
        path = Path(name)
        if not path.is_absolute():
            path = next((p for p in (Path.cwd() / path, run.path.parent / path) if p.is_file()), Path.cwd() / path)
        found.append(path)
    return tuple(found)


def row_source(run: Run) -> RowSource:
    """Where the run's rows are read, checked against the run: the input files must still be
    there and unchanged (same fingerprint), and hold the run's rows."""
    info = run.input_info()
    files, fmt = input_files(run), info.get("format")
    if not files:
        raise InputError("the run's input was a --sql query without INPUT files; it is not run again here")
    gone = [f for f in files if not f.is_file()]
    if gone:
        raise InputError(f"input file {gone[0]} is gone")
    if fmt == "sql":
        return memory_source(run)
    if fmt not in ("parquet", "csv"):
        raise InputError(f"unknown input format {fmt!r} in metrics.json")
    inp = open_input(list(files), info.get("separator"))
    if info.get("fingerprint") and fingerprint(inp) != info["fingerprint"]:
        raise InputError(f"the input {inp.label} changed since the run (its fingerprint differs)")
    source = RowSource(run.segments_file, run.id_col, fmt, files, info.get("separator"),
                       parquet_rows(files) if fmt == "parquet" else (), id_is_text=id_is_text(run))
    db = DashboardDB(source)
    try:
        rows = db.input_count()
    finally:
        db.close()
    if rows != run.metrics.get("rows"):
        raise InputError(f"the input {inp.label} holds {rows:,} rows, the run had {run.metrics.get('rows')!r}")
    return source


def memory_source(run: Run) -> RowSource:
    """A SQL-fed run (``[source] sql``, ``--preset rfm``, ``--sql`` with INPUT): its query again,
    on the sandboxed connection of ``engine.duck.source``, in the order of ``segments.parquet``."""
    info = run.input_info()
    sql = None if (run.spec.sql or run.spec.preset) else info.get("query")
    inp = open_source(list(input_files(run)), info.get("separator"),
                      run.model.spec, sql, info.get("as_of") or run.outputs.option("input", "as_of"))
    if info.get("fingerprint") and fingerprint(inp) != info["fingerprint"]:
        raise InputError(f"the input {inp.label} changed since the run (its fingerprint differs)")
    ids = pl.read_parquet(run.segments_file, columns=[run.id_col])
    frame = inp.frame.collect()
    if run.id_col not in frame.columns:
        raise InputError(f"the run's query no longer returns its id column {run.id_col!r}")
    aligned = ids.join(frame, on=run.id_col, how="left", maintain_order="left")
    return RowSource(run.segments_file, run.id_col, "memory", input_files(run), table=aligned.to_arrow(),
                     id_is_text=id_is_text(run))


def id_is_text(run: Run) -> bool:
    """Whether ``segments.parquet`` holds the ids as text."""
    field = pq.read_schema(run.segments_file).field(run.id_col)
    return any(test(field.type) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view))


def feature_input(run: Run, source: RowSource) -> Input:
    """The input as an ``Input`` for the run's own feature expressions (``profile_frame``)."""
    if source.fmt == "memory":
        return Input(pl.from_arrow(source.table).lazy(), source.files, "sql")
    return open_input(list(source.files), source.separator)


def segment_labels(run: Run) -> pl.Series:
    """One segment per input row (null where the row was dropped for missing values)."""
    return pl.read_parquet(run.segments_file, columns=["segment"])["segment"]


def column_values(run: Run, source: RowSource, name: str) -> pa.Array:
    """One filter column over every input row (float64, null where missing), computed by the
    run's own expressions (``engine.insight.profiles.profile_frame``); ``ID_TEXT``: the ids as text."""
    if name == ID_TEXT:
        ids = pl.read_parquet(run.segments_file, columns=[run.id_col]).to_series()
        return ids.cast(pl.String).to_arrow()
    if name not in {c.name for c in filter_columns(run)}:
        raise InputError(f"unknown filter column {name!r}")
    frame = profile_frame(feature_input(run, source), run.spec, run.model.fitted.levels, segment_labels(run))
    try:
        values = frame.select(pl.col(name).cast(pl.Float64)).collect().to_series()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot compute {name}: {str(exc).splitlines()[0]}") from exc
    return values.to_arrow()


def value_range(values: pa.Array) -> tuple[float, float]:
    """Smallest and largest value (0, 0 when there is none)."""
    found = pl.Series(values).drop_nulls().drop_nans()
    if found.is_empty():
        return 0.0, 0.0
    return float(found.min()), float(found.max())


def matching(db: DashboardDB, rows: RowFilter, run: Run) -> dict[int | None, int]:
    """Matching rows per segment (None: the rows dropped for missing values). Segments alone need
    no query: the profiles hold their sizes, the metrics the rows dropped."""
    if rows.columns():
        return db.segment_counts(rows)
    sizes = dict(zip(run.profiles["segment"].to_list(), run.profiles["size"].to_list()))
    chosen = sorted(sizes) if rows.segments is None else rows.segments
    counts = {j: int(sizes[j]) for j in chosen if sizes.get(j)}
    dropped = int(run.metrics.get("rows_dropped") or 0)
    if rows.unsegmented and dropped:
        counts[None] = dropped
    return counts


def page(db: DashboardDB, rows: RowFilter, number: int, size: int, names: dict[int, str]) -> pl.DataFrame:
    """Page ``number`` (from 1) of the matching customers: the id, the segment, its name and the
    distance to its centre, then the input's other columns."""
    if size not in PAGE_SIZES:
        raise InputError(f"page size must be one of {', '.join(map(str, PAGE_SIZES))}, not {size}")
    if number < 1:
        raise InputError(f"page must be 1 or more, not {number}")
    found = db.page_rows(rows, (number - 1) * size, size)
    id_col = db.source.id_col
    positions = found.column("row").to_pylist()
    customers = pl.from_arrow(db.input_rows(positions)) if positions else pl.DataFrame()
    labels = pl.from_arrow(found.select(["segment", "distance"]))
    labels = labels.with_columns(pl.col("segment").replace_strict(names, default=None, return_dtype=pl.String)
                                 .alias("segment_name")).select("segment", "segment_name", "distance")
    taken = set(customers.columns)
    labels = labels.rename({c: f"{c}_run" for c in labels.columns if c in taken})
    if not customers.width:
        return labels
    first = [c for c in (id_col,) if c in customers.columns]
    return pl.concat([customers.select(first), labels, customers.drop(first)], how="horizontal")


def run_sample(n_rows: int, seed: int) -> np.ndarray | None:
    """The rows the run's medians came from (``engine.insight.onepass.sampled_rows``): None for
    every row (up to ``profiles.SAMPLE_ROWS`` input rows), else those of its hash sample."""
    return sampled_rows(n_rows, seed)


def distribution(values: pa.Array, segments: pl.Series, segment: int, sample: np.ndarray | None,
                 bins: int = HIST_BINS) -> pl.DataFrame:
    """Histogram of one column in ``segment`` against the population (segmented rows of the run's
    sample): bin edges and each side's share of its rows per bin."""
    frame = pl.DataFrame({"v": pl.Series(values), "s": segments})
    if sample is not None:
        frame = frame[sample]
    frame = frame.filter(pl.col("s").is_not_null() & pl.col("v").is_not_null() & pl.col("v").is_finite())
    pop = frame["v"].to_numpy()
    if pop.size == 0:
        return pl.DataFrame(schema={"low": pl.Float64, "high": pl.Float64, "population": pl.Float64,
                                    "segment": pl.Float64})
    low, high = float(pop.min()), float(pop.max())
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    seg = frame.filter(pl.col("s") == segment)["v"].to_numpy()
    pop_counts = np.histogram(pop, edges)[0]
    seg_counts = np.histogram(seg, edges)[0]
    return pl.DataFrame({"low": edges[:-1], "high": edges[1:], "population": pop_counts / pop.size,
                         "segment": seg_counts / seg.size if seg.size else np.zeros(bins)})
