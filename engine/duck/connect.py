"""The one place that talks to DuckDB: connections, quoting, sandboxing, Arrow hand-off.

Rules kept here so the rest of the engine cannot get them wrong:

* Identifiers are always written with ``ident`` (double quotes doubled). Values are bound as
  ``?`` parameters. DuckDB cannot bind parameters in DDL (``CREATE VIEW``), so the only values
  written into SQL text are file paths in view definitions, through ``literal`` (single quotes
  doubled); they are paths we resolved, never SQL.
* User SQL that may come from someone else (a spec's ``[source] sql``, ``segment sql``) runs on a
  connection where only the declared files are readable: their paths are listed in
  ``allowed_paths`` / ``allowed_directories``, then ``enable_external_access`` is switched off and
  the configuration locked (``sandbox``). ``read_csv('/etc/passwd')``, ``COPY ... TO``,
  ``ATTACH`` and ``INSTALL``/``LOAD`` then fail with a permission error.
* A column option that is not a column name is an SQL *expression* (``--amount-col "Quantity *
  UnitPrice"``): ``expression`` parses it with DuckDB's own parser as exactly one expression, and
  what is written into a query is that checked text in parentheses, closed on a new line, so a
  trailing ``--`` comment cannot swallow the rest of the query. It then runs on the sandboxed
  connection like any other part of the query.
* ``duckdb`` is imported by the functions that use it, not at the top: a run from files never
  starts DuckDB (about 0.1 s of start-up saved); the type hints name it under ``TYPE_CHECKING``.
* Results reach Polars as Arrow record batches (``relation.to_arrow_reader``): no pandas, and
  ``pl.from_arrow`` wraps the batches without copying them. A streamed run's result is not held:
  ``query_input`` writes the batches, as they come, into a scratch Parquet file it then scans.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InputError
from engine.errors import first_line

if TYPE_CHECKING:
    import duckdb

BATCH_ROWS = 1 << 20
#: Statements a read-only query may consist of.
READ_STATEMENTS = ("SELECT", "EXPLAIN")


def ident(name: str) -> str:
    """A quoted SQL identifier: ``a"b`` -> ``"a""b"``."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(text: str | Path) -> str:
    """A quoted SQL string literal, for file paths in view definitions (DDL takes no parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


@contextlib.contextmanager
def duck_errors(where: str) -> Iterator[None]:
    """DuckDB errors as one-line ``InputError``s naming ``where``."""
    import duckdb  # heavy: only the commands that query start DuckDB

    try:
        yield
    except duckdb.PermissionException as exc:
        raise InputError(f"{where}: refused: {first_line(exc).removeprefix('Permission Error: ')} "
                         "(only the declared inputs can be read, and nothing can be written)") from exc
    except duckdb.Error as exc:
        raise InputError(f"{where}: {first_line(exc)}") from exc


def connect(threads: int | None = None, database: str | Path = ":memory:") -> duckdb.DuckDBPyConnection:
    import duckdb  # heavy: only the commands that query start DuckDB

    con = duckdb.connect(str(database), config={"threads": threads} if threads else {})
    con.execute("SET enable_progress_bar = false")  # stderr carries our own progress lines
    return con


def sandbox(con: duckdb.DuckDBPyConnection, files: Sequence[str | Path] = (),
            directories: Sequence[str | Path] = ()) -> None:
    """From now on ``con`` can read only ``files`` and the files under ``directories``; no other
    file, no network, no extension, no attached database; and the setting cannot be undone."""
    if files:
        con.execute("SET allowed_paths = ?", [[str(Path(f).resolve()) for f in files]])
    if directories:
        con.execute("SET allowed_directories = ?", [[str(Path(d).resolve()) + "/" for d in directories]])
    con.execute("SET enable_external_access = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def check_read_only(query: str, where: str) -> None:
    """``query`` is one SELECT (or EXPLAIN) statement: no COPY, ATTACH, SET, INSERT, DROP..."""
    import duckdb  # heavy: only the commands that query start DuckDB

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise InputError(f"{where}: {first_line(exc)}") from exc
    if len(statements) != 1:
        raise InputError(f"{where}: give exactly one SELECT statement, not {len(statements)}")
    kind = statements[0].type.name
    if kind not in READ_STATEMENTS:
        raise InputError(f"{where}: only a SELECT query is allowed here, not a {kind} statement")


def expression(text: str, where: str) -> str:
    """``text`` as one parenthesised SQL expression; an ``InputError`` starting with ``where`` if it is
    not exactly one (two expressions, a FROM clause, a second statement, an alias, an open comment
    or string)."""
    import duckdb  # heavy: only the commands that query start DuckDB

    checked = f"({text}\n)"
    try:
        duckdb.SQLExpression(checked)
    except duckdb.Error as exc:
        raise InputError(f"{where}: {first_line(exc)}") from None
    return checked


def statement_text(query: str) -> str:
    """The one SELECT of ``query`` (checked with ``check_read_only``) without trailing semicolons,
    for use as a sub-query: ``(`` + text + newline + ``)``."""
    import duckdb  # heavy: only the commands that query start DuckDB

    text = duckdb.extract_statements(query)[0].query
    return re.sub(r"[\s;]+$", "", text)


CSV_NULLS = ("", "NA", "N/A", "null", "NULL", "NaN", "nan")  # as engine/input/files.py reads CSV


def scan_sql(files: Sequence[Path], fmt: str, separator: str | None = None, hive: bool = False,
             text_columns: Sequence[str] = ()) -> str:
    """``read_parquet([...])`` or ``read_csv([...], ...)`` over ``files``; a CSV's ``text_columns``
    are read as VARCHAR (DuckDB would type ``04-09-2012`` as a DATE, where Polars keeps text)."""
    paths = "[" + ", ".join(literal(Path(f).resolve()) for f in files) + "]"
    if fmt == "parquet":
        return f"read_parquet({paths}, hive_partitioning = {'true' if hive else 'false'})"
    if fmt == "csv":
        sep = f", delim = {literal(separator)}" if separator else ""
        nulls = "[" + ", ".join(literal(v) for v in CSV_NULLS) + "]"
        types = ", ".join(f"{literal(c)}: 'VARCHAR'" for c in text_columns)
        return f"read_csv({paths}, header = true{sep}, nullstr = {nulls}{f', types = {{{types}}}' if types else ''})"
    raise InputError(f"cannot scan {fmt} input in SQL")


def query_input(relation: duckdb.DuckDBPyRelation, spill: Path | None = None) -> tuple[pl.LazyFrame, int]:
    """The relation's rows as a lazy frame and their count: held in memory (``arrow_frame``), or,
    with ``spill`` (a streamed run's scratch file), written there batch by batch from DuckDB's
    Arrow reader, one row group per ``BATCH_ROWS`` rows, and scanned: the memory held is one
    batch, and every pass of the run reads the same rows in the same order (a query with no
    ORDER BY may give another order each time it runs)."""
    if spill is None:
        frame = arrow_frame(relation)
        return frame.lazy(), frame.height
    reader = relation.to_arrow_reader(BATCH_ROWS)
    rows, pending, held = 0, [], 0
    with pq.ParquetWriter(spill, reader.schema, compression="zstd", compression_level=1) as writer:
        for batch in reader:
            pending.append(batch)
            held += batch.num_rows
            if held >= BATCH_ROWS:
                writer.write_table(pa.Table.from_batches(pending, reader.schema), row_group_size=held)
                rows, pending, held = rows + held, [], 0
        if held or not rows:
            writer.write_table(pa.Table.from_batches(pending, reader.schema), row_group_size=max(held, 1))
            rows += held
    return pl.scan_parquet(spill), rows


def arrow_frame(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """The relation's rows as a Polars frame, streamed as Arrow record batches (no pandas hop;
    Polars wraps the Arrow buffers without copying them)."""
    table = relation.to_arrow_reader(BATCH_ROWS).read_all()  # the batches, side by side: no copy
    return pl.from_arrow(table, rechunk=False)
