"""The dashboard's DuckDB side: one read-only connection per browser session, and the fixed
queries of the Explore, Export and Compare views.

* The connection is opened ``read_only`` (on an empty database file of its own), then
  sandboxed (``connect.sandbox``): only the run's files and its declared input files are
  readable, nothing can be written, and the configuration is locked.
* No SQL text comes from the user. Filter values are bound ``?`` parameters; column names come
  from the run (its feature and measure names) and are quoted with ``ident``; file paths are
  the run's own, written with ``literal`` as everywhere in ``engine.duck``.
* Rows are matched by position: ``segments.parquet`` holds one row per input row, in input
  order, so the filters run over ``segments.parquet`` (its ``file_row_number`` is the input row)
  positionally joined with the filter columns the app computed, and only the rows of the page
  shown are then read from the input files (Parquet: by ``file_row_number``, which DuckDB uses to
  skip row groups). Nothing reads the whole input into the app.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from engine.duck import connect as duck
from engine.errors import InputError

COLUMNS_VIEW = "filter_columns"  # the filter columns the app computed, one row per input row
INPUT_VIEW = "input_rows"  # an input held in memory (a SQL source's result), one row per input row
ROW = "file_row_number"
ID_TEXT = "@id"  # the filter column of the ids as text, for the id search (computed once, not per query)
BATCH_ROWS = 64 * 1024

_lock = threading.Lock()
_template: dict[str, Path] = {}


def private_database() -> Path:
    """A new empty DuckDB database file for one connection, in a private temporary directory
    made once per process (removed at exit). Connections to one file share its settings, the
    sandbox's allowed paths included, so each connection gets its own; it is opened read-only,
    so nothing can be created in it."""
    with _lock:
        if "path" not in _template:
            folder = Path(tempfile.mkdtemp(prefix="segment-dashboard-"))
            template = folder / "empty.duckdb"
            duckdb.connect(str(template)).close()
            atexit.register(shutil.rmtree, folder, True)
            _template["path"] = template
        template = _template["path"]
    path = template.with_name(f"session-{uuid.uuid4().hex}.duckdb")
    shutil.copyfile(template, path)
    return path


def read_only_connection(readable: Sequence[Path]) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A read-only connection that can read ``readable`` and nothing else, and its database file."""
    path = private_database()
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET enable_progress_bar = false")
    duck.sandbox(con, list(readable))
    return con, path


def close_connection(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    con.close()
    path.unlink(missing_ok=True)


@dataclass(frozen=True)
class RowSource:
    """Where a run's rows are read: ``segments.parquet`` and the input (``fmt`` parquet or csv:
    the input files; memory: an Arrow table aligned with the segments; none: no input)."""

    segments: Path
    id_col: str
    fmt: str
    files: tuple[Path, ...] = ()
    separator: str | None = None
    file_rows: tuple[int, ...] = ()  # Parquet: rows per input file
    id_is_text: bool = False  # the id column of segments.parquet holds text (searched ignoring case)
    table: pa.Table | None = None  # fmt memory

    def readable(self) -> list[Path]:
        return [self.segments, *self.files]


@dataclass(frozen=True)
class RowFilter:
    """Which rows the Explore and Export views show. ``segments`` None: every segmented row;
    ``unsegmented``: also the rows dropped for missing values; ``ranges``: (column, low, high)
    over the filter columns; ``id_text``: a case-insensitive substring of the id."""

    segments: tuple[int, ...] | None = None
    unsegmented: bool = False
    ranges: tuple[tuple[str, float, float], ...] = ()
    id_text: str = ""

    def columns(self) -> tuple[str, ...]:
        """The filter columns these rows need: the range columns, and the ids as text for a search."""
        return tuple(c for c, _, _ in self.ranges) + ((ID_TEXT,) if self.id_text else ())


def input_scan(source: RowSource) -> str:
    """The input as a relation in input order: ``read_parquet`` over its files, or ``read_csv``
    with every column as text, exactly as written (ids keep their leading zeros)."""
    if source.fmt == "memory":
        return duck.ident(INPUT_VIEW)
    if source.fmt == "parquet":
        return duck.scan_sql(source.files, "parquet")
    if source.fmt == "csv":
        paths = "[" + ", ".join(duck.literal(Path(f).resolve()) for f in source.files) + "]"
        sep = f", delim = {duck.literal(source.separator)}" if source.separator else ""
        nulls = "[" + ", ".join(duck.literal(v) for v in duck.CSV_NULLS) + "]"
        return f"read_csv({paths}, header = true{sep}, nullstr = {nulls}, all_varchar = true)"
    raise InputError("the run's input cannot be read here (it was a --sql query without INPUT files)")


def like_pattern(text: str) -> str:
    """``%text%`` for LIKE, with ``%``, ``_`` and the escape character in ``text`` matched literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def where_sql(rows: RowFilter, source: RowSource, known: Sequence[str]) -> tuple[str, list]:
    """The WHERE clause of ``rows`` over ``s`` (segments) and ``c`` (filter columns: the range
    columns, and ``ID_TEXT`` for an id search), and its parameters. Range columns must be among
    ``known``."""
    parts: list[str] = []
    params: list = []
    if rows.segments is not None or rows.unsegmented:
        either = []
        if rows.segments is None:
            either.append("s.segment IS NOT NULL")
        elif rows.segments:
            either.append("list_contains(?::INTEGER[], s.segment)")
            params.append([int(j) for j in rows.segments])
        if rows.unsegmented:
            either.append("s.segment IS NULL")
        parts.append("(" + " OR ".join(either) + ")" if either else "FALSE")
    else:
        parts.append("s.segment IS NOT NULL")
    for column, low, high in rows.ranges:
        if column not in known:
            raise InputError(f"unknown filter column {column!r}")
        parts.append(f"c.{duck.ident(column)} BETWEEN ? AND ?")
        params += [float(low), float(high)]
    if rows.id_text:
        like = "ILIKE" if source.id_is_text else "LIKE"  # a number's text has no case
        parts.append(f"c.{duck.ident(ID_TEXT)} {like} ? ESCAPE '\\'")
        params.append(like_pattern(rows.id_text))
    return " AND ".join(parts), params


def locked(method):
    """Run ``method`` holding the connection's lock: a session's script runs can overlap (a widget
    changed while the last run still queries), and a DuckDB connection refuses a second call
    while one is in progress instead of waiting."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return wrapper


@dataclass
class DashboardDB:
    """One session's read-only connection over a run's rows: one per session, its calls one at a
    time (``locked``)."""

    source: RowSource
    extra_readable: Sequence[Path] = ()
    con: duckdb.DuckDBPyConnection = field(init=False)
    database: Path = field(init=False)
    columns: tuple[str, ...] = field(init=False, default=())
    lock: threading.RLock = field(init=False, default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.con, self.database = read_only_connection([*self.source.readable(), *self.extra_readable])
        self._closer = weakref.finalize(self, close_connection, self.con, self.database)  # a session that ends
        if self.source.fmt == "memory":
            self.con.register(INPUT_VIEW, self.source.table)

    def close(self) -> None:
        self._closer()

    @locked
    def set_columns(self, table: pa.Table | None) -> None:
        """The filter columns (one row per input row), replacing the earlier ones."""
        if self.columns:
            self.con.unregister(COLUMNS_VIEW)
        self.columns = tuple(table.column_names) if table is not None else ()
        if table is not None:
            self.con.register(COLUMNS_VIEW, table)

    def relation(self, rows: RowFilter, with_input: bool = False) -> tuple[str, list]:
        """``FROM ... WHERE ...`` of the rows ``rows`` selects, and its parameters."""
        segments = f"read_parquet({duck.literal(self.source.segments)}, file_row_number = true)"
        sql = f"{input_scan(self.source)} AS i POSITIONAL JOIN {segments} AS s" if with_input else f"{segments} AS s"
        if rows.columns():
            missing = [c for c in rows.columns() if c not in self.columns]
            if missing:
                raise InputError(f"filter column {missing[0]!r} is not loaded")
            sql += f" POSITIONAL JOIN {duck.ident(COLUMNS_VIEW)} AS c"
        where, params = where_sql(rows, self.source, self.columns)
        return f"FROM {sql} WHERE {where}", params

    @locked
    def input_count(self) -> int:
        """Rows of the input as DuckDB reads it (must equal the run's, for rows to match by position)."""
        if self.source.fmt == "parquet":
            return sum(self.source.file_rows)
        with duck.duck_errors("dashboard input"):
            return int(self.con.execute(f"SELECT count(*) FROM {input_scan(self.source)}").fetchone()[0])

    @locked
    def segment_counts(self, rows: RowFilter) -> dict[int | None, int]:
        """Matching rows per segment (None: rows without a segment)."""
        body, params = self.relation(rows)
        with duck.duck_errors("dashboard filter"):
            found = self.con.execute(f"SELECT s.segment, count(*) {body} GROUP BY s.segment", params).fetchall()
        return {seg: int(n) for seg, n in found}

    @locked
    def page_rows(self, rows: RowFilter, offset: int, limit: int) -> pa.Table:
        """Input row number, segment and distance of one page of matching rows, in input order
        (DuckDB keeps the scan's order: ``preserve_insertion_order`` is on by default)."""
        body, params = self.relation(rows)
        query = f"SELECT s.{ROW} AS row, s.segment, s.distance {body} LIMIT ? OFFSET ?"
        with duck.duck_errors("dashboard page"):
            return self.con.sql(query, params=[*params, int(limit), int(offset)]).to_arrow_table()

    @locked
    def input_rows(self, rows: Sequence[int]) -> pa.Table:
        """The input's rows at positions ``rows`` (ascending), every column as in the input."""
        source = self.source
        if source.fmt == "memory":
            return source.table.take(pa.array(rows, pa.int64()))
        if source.fmt == "csv":
            query = (f"SELECT * EXCLUDE (\"@row\") FROM (SELECT *, row_number() OVER () - 1 AS \"@row\" "
                     f"FROM {input_scan(source)}) WHERE list_contains(?::BIGINT[], \"@row\")")
            with duck.duck_errors("dashboard input rows"):
                return self.con.sql(query, params=[list(rows)]).to_arrow_table()
        parts, start = [], 0
        for path, count in zip(source.files, source.file_rows):
            local = [r - start for r in rows if start <= r < start + count]
            start += count
            if not local:
                continue
            scan = f"read_parquet({duck.literal(Path(path).resolve())}, file_row_number = true)"
            query = f"SELECT * EXCLUDE ({ROW}) FROM {scan} WHERE {ROW} = ANY(?::BIGINT[]) ORDER BY {ROW}"
            with duck.duck_errors("dashboard input rows"):
                parts.append(self.con.sql(query, params=[local]).to_arrow_table())
        return pa.concat_tables(parts) if parts else pa.table({})

    @locked
    def export_reader(self, rows: RowFilter, batch_rows: int = BATCH_ROWS) -> pa.RecordBatchReader:
        """Every matching row: the input's columns, then ``@segment`` and ``@distance``, as a stream
        of record batches (read while it is consumed; the connection must stay open until then)."""
        body, params = self.relation(rows, with_input=True)
        query = f'SELECT i.*, s.segment AS "@segment", s.distance AS "@distance" {body}'
        with duck.duck_errors("dashboard export"):
            return self.con.sql(query, params=params).to_arrow_reader(batch_rows)


def parquet_rows(files: Sequence[Path]) -> tuple[int, ...]:
    """Rows per Parquet file, from the footers."""
    return tuple(pq.read_metadata(f).num_rows for f in files)


def migration(a: Path, b: Path, id_col: str, readable: Sequence[Path] = ()) -> pa.Table:
    """Customers per (segment in run A, segment in run B), joined on the id: ``from_segment``
    and ``to_segment`` as text, ``new`` for ids only in B, ``gone`` for ids only in A, and
    ``unsegmented`` for rows a run dropped for missing values."""
    con, database = read_only_connection([a, b, *readable])
    try:
        key = duck.ident(id_col)

        def side(alias: str, absent: str) -> str:
            return (f"CASE WHEN {alias}.{key} IS NULL THEN '{absent}' WHEN {alias}.segment IS NULL "
                    f"THEN 'unsegmented' ELSE CAST({alias}.segment AS VARCHAR) END")

        query = (f"SELECT {side('a', 'new')} AS from_segment, {side('b', 'gone')} AS to_segment, "
                 f"count(*) AS customers FROM read_parquet({duck.literal(a)}) AS a "
                 f"FULL OUTER JOIN read_parquet({duck.literal(b)}) AS b ON a.{key} = b.{key} "
                 "GROUP BY ALL ORDER BY ALL")
        with duck.duck_errors("compare"):
            return con.sql(query).to_arrow_table()
    finally:
        close_connection(con, database)
