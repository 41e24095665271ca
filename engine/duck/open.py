"""The INPUT of every command: files, a ``--sql`` query, a spec's ``[source] sql``, or the RFM preset.

One dispatcher over ``engine.input.files`` (Parquet and CSV), ``engine.duck.source`` (queries) and
``engine.duck.rfm`` (the preset), so that none of those needs another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.duck.rfm import open_rfm, preset_labels
from engine.duck.source import parse_as_of, run_query
from engine.errors import InputError
from engine.features.spec import FeatureSpec
from engine.input.files import Input, open_input


def open_source(inputs: Sequence[str | Path], separator: str | None, spec: FeatureSpec,
                sql: str | None = None, as_of: str | dt.date | None = None, threads: int | None = None,
                spill: Path | None = None) -> Input:
    """The INPUT of every command: files, a ``--sql`` query, or the spec's ``[source]``. With the RFM
    preset, ``--sql`` is the transaction table the preset reads. A query's result is held in
    memory, or written to ``spill`` (a streamed run's scratch file) and read from there."""
    as_of = parse_as_of(as_of)
    given = [name for name, v in (("--sql", sql), ("the spec's [source] sql", spec.sql)) if v]
    if len(given) > 1:
        raise InputError(f"give one source of features: {' and '.join(given)} both define one")
    if as_of is not None and not (spec.preset or spec.sql or sql):
        raise InputError("--as-of applies only to SQL sources and --preset rfm")
    if spec.preset:
        return open_rfm(inputs, separator, spec.preset, as_of, threads, sql=sql,
                        labels=preset_labels(spec.source, spec.flagged), spill=spill)
    query = sql or spec.sql
    if query is None:
        if not inputs:
            raise InputError("no input given (name INPUT files or give --sql \"SELECT ...\")")
        return open_input(inputs, separator)
    if spec.sql and not inputs:
        raise InputError(f"{spec.source}: [source] sql reads the INPUT files as the view 'input'; name them")
    where = "--sql" if sql else f"{spec.source}: [source] sql"
    return run_query(query, inputs, separator, as_of, where, threads, spill=spill)


def source_facts(inp: Input) -> dict[str, Any]:
    """What ``metrics.json``/``model.json`` record about an input under ``"input"``."""
    facts: dict[str, Any] = {"files": [str(p) for p in inp.files], "format": inp.format}
    if inp.format == "csv":
        facts["separator"] = inp.separator
    if inp.info:
        facts.update(inp.info)
    return facts


def reopen_source(facts: Any, spec: FeatureSpec, where: str) -> Input:
    """A run's input opened again from what ``metrics.json`` recorded under ``"input"`` (``source_facts``):
    its files (Parquet or CSV), or the recorded query over them. A ``--sql`` query without INPUT
    files is not re-run (it may read any file), as in ``segment sql``."""
    facts = facts if isinstance(facts, dict) else {}
    files = [Path(f) for f in facts.get("files", []) if isinstance(f, str)]
    fmt = facts.get("format")
    if not files:
        raise InputError(f"{where}: the run's input was a --sql query without INPUT files, which is not re-run")
    gone = [f for f in files if not f.is_file()]
    if gone:
        raise InputError(f"{where}: the run's input file {gone[0]} is gone")
    if fmt in ("parquet", "csv"):
        return open_input(files, facts.get("separator"))
    if fmt != "sql" or not isinstance(facts.get("query"), str):
        raise InputError(f"{where}: metrics.json records no readable input (format {fmt!r})")
    query = None if (spec.sql or spec.preset) else facts["query"]
    return open_source(files, facts.get("separator"), spec, query, facts.get("as_of"))
