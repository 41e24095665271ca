"""A run's outputs in DuckDB: ``segment sql DIR "SELECT ..."`` and ``segment run --db FILE.duckdb``.

The relations, the same in both:

* ``segments``: the labels (``segments.parquet``, or the hive partitions under ``segments/`` when
  the run wrote them, so a filter on ``segment`` reads only the partitions it needs);
* ``profiles``: ``profiles.parquet``;
* ``centroids``: one row per segment, ``segment`` then every feature in its own units;
* ``metrics``: ``metrics.json`` as one row (nested objects as JSON text);
* ``migration`` and ``drift``: in a ``segment refresh`` directory, its two files;
* ``customers``: the input joined with its segment, a view over the original input files (nothing
  copied). For a run fed by SQL over files (``[source] sql``, ``--preset rfm``, ``--sql`` with
  INPUT) it is the recorded query's result joined with its segment. A run fed by ``--sql`` alone
  has no ``customers``: its query may read any file, so it is not re-run.

``segment sql`` opens everything read-only: the views read the run's files and the input files
only, external access is then off and the configuration locked, and only one SELECT (or EXPLAIN)
is accepted. ``--db`` writes a database file where ``segments``, ``profiles``, ``centroids`` and
``metrics`` are tables and ``customers`` a view that reads the input files by absolute path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from engine.duck import connect as duck
from engine.errors import InputError
from engine.fit.model import load_model
from engine import present
from engine.outputs import rundir
from engine.outputs.write import atomic_file
from engine.duck.source import INPUT_VIEW, PARAMS_TABLE, input_view_sql, params_table, parse_as_of

if TYPE_CHECKING:
    import duckdb  # the type of the connections, in the signatures

RELATIONS = ("segments", "profiles", "centroids", "metrics", "customers")
OPTIONAL_RELATIONS = {"migration": rundir.MIGRATION, "drift": rundir.DRIFT}  # in a segment refresh directory
FEATURES_VIEW = "features"


def open_run(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The run directory and its metrics, or a one-line error (``engine.outputs.rundir``)."""
    run = rundir.read_run(run_dir, need=rundir.RUN_FILES)
    return run.path, run.metrics


def centroids_table(run_dir: Path) -> pa.Table:
    model = load_model(run_dir)
    values = model.original_centers()
    columns = {"segment": pa.array(range(model.k), pa.int32())}
    columns.update({name: pa.array(values[:, j].astype(float)) for j, name in enumerate(model.fitted.names)})
    return pa.table(columns)


def metrics_table(metrics: dict[str, Any]) -> pa.Table:
    """One row: scalars as they are, lists of scalars as lists, objects as JSON text."""
    row: dict[str, pa.Array] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            row[key] = pa.array([json.dumps(value)], pa.string())
        elif isinstance(value, list) and all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
            row[key] = pa.array([value])
        elif isinstance(value, list):
            row[key] = pa.array([json.dumps(value)], pa.string())
        elif value is None:
            row[key] = pa.array([None], pa.string())
        else:
            row[key] = pa.array([value])
    seconds = metrics.get("seconds")
    if isinstance(seconds, dict) and "total" in seconds:
        row["seconds_total"] = pa.array([float(seconds["total"])])
    return pa.table(row)


def segments_sql(run_dir: Path) -> tuple[str, bool]:
    """The ``segments`` relation's SELECT, and whether it reads the hive partitions."""
    parts = run_dir / rundir.PARTITIONS
    if parts.is_dir():
        glob = duck.literal(parts / "**" / "*.parquet")
        return (f"SELECT * EXCLUDE (segment), CAST(segment AS INTEGER) AS segment "
                f"FROM read_parquet({glob}, hive_partitioning = true)"), True
    files = rundir.segment_files(run_dir / rundir.SEGMENTS) or [run_dir / rundir.SEGMENTS]  # a file or a dataset
    listed = ", ".join(duck.literal(f) for f in files)
    return f"SELECT * FROM read_parquet([{listed}])", False


def input_of(metrics: dict[str, Any]) -> dict[str, Any]:
    found = metrics.get("input")
    return found if isinstance(found, dict) else {}


def customers_sql(metrics: dict[str, Any], id_col: str | None) -> list[str] | str:
    """The statements that define ``customers`` (``input``, maybe ``features``, then ``customers``),
    or the reason there is none."""
    info = input_of(metrics)
    files = [Path(f) for f in info.get("files", []) if isinstance(f, str)]
    fmt = info.get("format")
    if not files:
        return "the run's input was a --sql query without INPUT files, which is not re-run"
    missing = [f for f in files if not f.is_file()]
    if missing:
        return f"input file {missing[0]} is gone"
    statements = []
    if fmt == "sql":
        query = info.get("query")
        if not isinstance(query, str):
            return "metrics.json records no query for the SQL input"
        duck.check_read_only(query, "metrics.json input.query")
        statements.append(input_view_sql(files, info.get("input_format") or "parquet", info.get("separator")))
        statements.append(f"CREATE VIEW {duck.ident(FEATURES_VIEW)} AS {query}")
        source = duck.ident(FEATURES_VIEW)
    elif fmt in ("parquet", "csv"):
        statements.append(input_view_sql(files, fmt, info.get("separator")))
        source = duck.ident(INPUT_VIEW)
    else:
        return f"unknown input format {fmt!r}"
    if id_col is None:  # segments.parquet has row_id: the row number in input order
        source = f"(SELECT *, CAST(row_number() OVER () - 1 AS BIGINT) AS row_id FROM {source})"
        id_col = "row_id"
    key = duck.ident(id_col)
    statements.append(f"CREATE VIEW customers AS SELECT i.*, s.segment, s.distance FROM {source} AS i "
                      f"LEFT JOIN segments AS s ON i.{key} = s.{key}")
    return statements


def build(con: duckdb.DuckDBPyConnection, run_dir: Path, metrics: dict[str, Any], *, tables: bool) -> str | None:
    """Create the relations on ``con``: views over the files, or (``tables``) copies in a database
    file. Returns why ``customers`` is missing, or None."""
    kind = "TABLE" if tables else "VIEW"
    select, _ = segments_sql(run_dir)
    con.execute(f"CREATE {kind} segments AS {select}")
    con.execute(f"CREATE {kind} profiles AS SELECT * FROM read_parquet({duck.literal(run_dir / rundir.PROFILES)})")
    for name, file in OPTIONAL_RELATIONS.items():  # a refresh's migration and drift, when there
        if (run_dir / file).is_file():
            con.execute(f"CREATE {kind} {name} AS SELECT * FROM read_parquet({duck.literal(run_dir / file)})")
    for name, table in (("centroids", centroids_table(run_dir)), ("metrics", metrics_table(metrics))):
        if tables:
            con.register(f"_{name}", table)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}")
            con.unregister(f"_{name}")
        else:
            con.register(name, table)
    as_of = parse_as_of(input_of(metrics).get("as_of"))
    if tables:
        con.register("_params", params_table(as_of))
        con.execute(f"CREATE TABLE {PARAMS_TABLE} AS SELECT * FROM _params")
        con.unregister("_params")
    else:
        con.register(PARAMS_TABLE, params_table(as_of))
    model_id = load_model(run_dir).spec.id_col
    statements = customers_sql(metrics, model_id)
    if isinstance(statements, str):
        return statements
    for statement in statements:
        con.execute(statement)
    return None


def readable_files(run_dir: Path, metrics: dict[str, Any]) -> tuple[list[Path], list[Path]]:
    """The files (and directories) a ``segment sql`` query may read."""
    files = [*(rundir.segment_files(run_dir / rundir.SEGMENTS) or [run_dir / rundir.SEGMENTS]), run_dir / rundir.PROFILES]
    files += [run_dir / f for f in OPTIONAL_RELATIONS.values() if (run_dir / f).is_file()]
    files += [Path(f) for f in input_of(metrics).get("files", []) if isinstance(f, str)]
    dirs = [run_dir / rundir.PARTITIONS] if (run_dir / rundir.PARTITIONS).is_dir() else []
    return files, dirs


def query_run(run_dir: str | Path, query: str, threads: int | None = None) -> pl.DataFrame:
    """Run one SELECT over a run's relations, read-only; the result as a Polars frame."""
    path, metrics = open_run(run_dir)
    duck.check_read_only(query, "query")
    con = duck.connect(threads)
    try:
        files, dirs = readable_files(path, metrics)
        with duck.duck_errors(str(path)):
            missing = build(con, path, metrics, tables=False)
            duck.sandbox(con, files, dirs)
        try:
            with duck.duck_errors("query"):
                return duck.arrow_frame(con.sql(query))
        except InputError as exc:
            if missing and "customers" in str(exc):
                raise InputError(f"{exc} (no customers view: {missing})") from None
            raise
    finally:
        con.close()


def write_database(run_dir: str | Path, target: Path, overwrite: bool) -> None:
    """``--db``: the run's relations in a DuckDB file (written beside, then renamed into place)."""
    path, metrics = open_run(run_dir)
    with atomic_file(target, overwrite) as tmp:
        con = duck.connect(database=tmp)
        try:
            with duck.duck_errors(str(target)):
                build(con, path, metrics, tables=True)
                con.execute("CHECKPOINT")
        finally:
            con.close()


def render(frame: pl.DataFrame, fmt: str, ids: tuple[str, ...] = ()) -> str:
    """A query's answer as a terminal table (ids as written, see ``engine.present``), CSV, or a
    JSON array of row objects."""
    if fmt == "csv":
        return frame.write_csv().rstrip("\n")
    if fmt == "json":
        rows = [{k: clean_json(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
        return json.dumps(rows, indent=2, default=str)
    return present.table(frame, ids)


def id_columns(run_dir: str | Path) -> tuple[str, ...]:
    """The run's id column (``row_id`` when the input had none), for ``render``."""
    return (load_model(run_dir).spec.id_col or "row_id",)


def clean_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
