"""Inputs made by a DuckDB query: ``--sql``, a spec's ``[source] sql``, and the RFM preset.

The query's result reaches the engine as an ``Input`` of format ``"sql"``, like a Parquet or CSV
input, so every command that takes INPUT takes a query too. DuckDB streams the result as Arrow
record batches and Polars wraps them without a copy (``engine.duck.connect.arrow_frame``).

Who may read what:

* ``--sql QUERY`` with no INPUT is the user's own query on the command line: it may read any file
  the user can (``read_parquet('tx/*.parquet')``), like the DuckDB CLI would. It must still be a
  single SELECT, so it cannot write, attach or install anything.
* ``--sql QUERY`` together with the RFM preset is the transaction table the preset reads: with
  INPUT files it runs on the sandboxed connection as the sub-query ``transactions``; alone, it
  runs first on its own connection, and its result becomes the view ``input`` of a sandboxed one
  (``transaction_connection``), so the preset's column expressions, which a spec may declare,
  never run where any file is readable.
* ``--sql QUERY`` with INPUT, a spec's ``[source] sql`` and the RFM preset read the INPUT files as
  the view ``input`` (and the one-row table ``params``), on a sandboxed connection: no other file
  is readable and nothing can be written. A spec can come from someone else; it cannot read
  ``/etc/passwd``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.duck import connect as duck
from engine.errors import InputError
from engine.input.files import Input, open_input
from engine.features.spec import FeatureSpec

INPUT_VIEW = "input"
PARAMS_TABLE = "params"
TRANSACTIONS = "transactions"  # --sql with --preset rfm and INPUT: the query's result, as a sub-query


def parse_as_of(as_of: str | dt.date | None) -> dt.date | None:
    if as_of is None or isinstance(as_of, dt.date):
        return as_of
    try:
        return dt.date.fromisoformat(str(as_of).strip())
    except ValueError:
        raise InputError(f"--as-of must be a date such as 2024-12-31, not {as_of!r}") from None


def params_table(as_of: dt.date | None) -> pa.Table:
    """The values a source query may use, bound as data: ``params.as_of`` (a DATE, null = default)."""
    return pa.table({"as_of": pa.array([as_of], pa.date32())})


def input_view_sql(files: Sequence[Path], fmt: str, separator: str | None) -> str:
    return f"CREATE VIEW {duck.ident(INPUT_VIEW)} AS SELECT * FROM {duck.scan_sql(files, fmt, separator)}"


def register_inputs(con, inp: Input, as_of: dt.date | None) -> None:
    """``input`` over the INPUT files and ``params``; then nothing else is readable."""
    con.execute(input_view_sql(inp.files, inp.format, inp.separator))
    con.register(PARAMS_TABLE, params_table(as_of))
    duck.sandbox(con, inp.files)


def run_query(query: str, inputs: Sequence[str | Path] = (), separator: str | None = None,
              as_of: dt.date | None = None, where: str = "--sql", threads: int | None = None,
              checks=None, spill: Path | None = None) -> Input:
    """Run ``query`` (over ``inputs`` as the view ``input`` when given) into a ``"sql"`` Input:
    its result held in memory, or written to ``spill`` (``engine.duck.connect.query_input``).

    ``checks(con)`` runs on the same connection before the query and returns the facts to report
    (the RFM preset's counts of refunds and null ids)."""
    duck.check_read_only(query, where)
    files: tuple[Path, ...] = ()
    con = duck.connect(threads)
    try:
        fmt, sep = None, None
        if inputs:
            opened = open_input(inputs, separator)
            files, fmt, sep = opened.files, opened.format, opened.separator
            with duck.duck_errors(opened.label):
                register_inputs(con, opened, as_of)
        with duck.duck_errors(where):
            info = checks(con) if checks else {}
            relation = con.sql(query)
            if relation is None or not relation.columns:
                raise InputError(f"{where}: the query returned no columns")
            frame, rows = duck.query_input(relation, spill)
    finally:
        con.close()
    info = {"query": query, "as_of": as_of.isoformat() if as_of else None, "input_format": fmt,
            "separator": sep, **info}
    return Input(frame, files, "sql", sep, query=query, rows=rows, info=info)


@dataclass(frozen=True)
class Relation:
    """Where a preset's rows are: ``name``, after the common table expressions ``with_sql`` (empty,
    or ``"transactions" AS (...),`` ready to open a WITH list)."""

    name: str
    with_sql: str = ""
    files: tuple[Path, ...] = ()
    input_format: str | None = None
    separator: str | None = None


@contextlib.contextmanager
def transaction_connection(inputs: Sequence[str | Path], separator: str | None, as_of: dt.date | None,
                           threads: int | None = None, sql: str | None = None,
                           where: str = "--preset rfm") -> Iterator[tuple[object, Relation]]:
    """A sandboxed connection and the relation of its transactions: the INPUT files (view
    ``input``), the ``--sql`` query over them, or the result of ``--sql`` alone."""
    if sql is not None:
        duck.check_read_only(sql, "--sql")
    if not inputs and sql is None:
        raise InputError(f"{where} needs transaction files as INPUT (or --sql \"SELECT ...\")")
    con = duck.connect(threads)
    try:
        if inputs:
            opened = open_input(inputs, separator)
            with duck.duck_errors(opened.label):
                register_inputs(con, opened, as_of)
            relation = Relation(duck.ident(INPUT_VIEW), "", opened.files, opened.format, opened.separator)
            if sql is not None:
                sub = f"{duck.ident(TRANSACTIONS)} AS (\n{duck.statement_text(sql)}\n),"
                relation = Relation(duck.ident(TRANSACTIONS), sub, *(opened.files, opened.format, opened.separator))
        else:
            with duck.duck_errors("--sql"):  # the user's own query on their command line: it may read any file
                table = con.sql(sql).to_arrow_reader(duck.BATCH_ROWS).read_all()
            con.close()
            con = duck.connect(threads)
            con.register(INPUT_VIEW, table)
            con.register(PARAMS_TABLE, params_table(as_of))
            duck.sandbox(con)
            relation = Relation(duck.ident(INPUT_VIEW))
        yield con, relation
    finally:
        con.close()
