"""``rules.sql``: a run's segment rules (``engine.insight.rules``) as SQL a CRM or DuckDB can run.

Everything is generated from ``rules.json`` alone: one ``CASE WHEN ... THEN segment`` expression,
one ``WHERE`` clause per segment, and the whole query over the run's own input for DuckDB.

Conditions read the input's own columns, every identifier through ``ident``. A derived feature
is written as its spec expression with each column it reads replaced by that column, cast as the
engine read it: numbers as ``DOUBLE`` (the engine computes features in float64), text as
``VARCHAR``, text numbers (a spec's ``numeric = [...]``) trimmed and cast. A category level is
``= 'PhD'`` or ``IS DISTINCT FROM 'PhD'`` (a missing value is "not PhD", as in the one-hot
columns). A row whose tested value is missing matches no leaf and gets ``NULL``, as it does in
the engine's own evaluation of the rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.duck.connect import ident, literal, scan_sql

TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[A-Za-z_][A-Za-z0-9_]*|\s+|.", re.S)
SQL_OPS = {"<=": "<=", ">": ">"}


def column_sql(name: str, kind: str) -> str:
    """An input column as the engine read it: ``number``, ``text`` or ``text number``."""
    quoted = ident(name)
    if kind == "number":
        return f"CAST({quoted} AS DOUBLE)"
    if kind == "text number":
        return f"TRY_CAST(trim(CAST({quoted} AS VARCHAR)) AS DOUBLE)"
    return f"CAST({quoted} AS VARCHAR)"


def expression_sql(expr: str, columns: Mapping[str, str]) -> str:
    """A spec expression with every input column it names (bare or double-quoted, not a function
    name, not inside a string literal) replaced by ``column_sql``."""
    out = []
    for match in TOKEN.finditer(expr):
        token = match.group(0)
        name = token[1:-1].replace('""', '"') if token.startswith('"') else token
        is_name = token.startswith('"') or token[0].isalpha() or token[0] == "_"
        called = expr[match.end():].lstrip().startswith("(")
        out.append(column_sql(name, columns[name]) if is_name and name in columns and not called else token)
    return "".join(out)


def number_sql(value: float) -> str:
    """A threshold as an SQL number literal (the shortest text that reads back as the same float)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def variable_sql(variable: Mapping[str, Any], columns: Mapping[str, str]) -> str:
    if variable["kind"] == "expression":
        return f"({expression_sql(variable['expr'], columns)})"
    if variable["kind"] == "column":
        return column_sql(variable["column"], columns[variable["column"]])
    return column_sql(variable["column"], "text")  # a category level


def condition_sql(condition: Mapping[str, Any], variables: Mapping[str, Mapping[str, Any]],
                  columns: Mapping[str, str]) -> str:
    variable = variables[condition["variable"]]
    value = variable_sql(variable, columns)
    if condition["op"] == "=":
        return f"{value} = {literal(variable['level'])}"
    if condition["op"] == "!=":
        return f"{value} IS DISTINCT FROM {literal(variable['level'])}"
    return f"{value} {SQL_OPS[condition['op']]} {number_sql(condition['value'])}"


def leaf_sql(leaf: Mapping[str, Any], rules: Mapping[str, Any]) -> str:
    """One leaf's conjunction (``TRUE`` for a tree that is a single leaf)."""
    variables = {v["name"]: v for v in rules["variables"]}
    parts = [condition_sql(c, variables, rules["columns"]) for c in leaf["conditions"]]
    return " AND ".join(parts) if parts else "TRUE"


def case_sql(rules: Mapping[str, Any], indent: str = "  ") -> str:
    """``CASE WHEN <leaf> THEN <segment> ... END``: the rules' segment of a row (NULL when no leaf
    matches)."""
    whens = [f"{indent}WHEN {leaf_sql(leaf, rules)} THEN {leaf['segment']}" for leaf in rules["leaves"]]
    return "CASE\n" + "\n".join(whens) + f"\n{indent}ELSE NULL\nEND"


def where_sql(rules: Mapping[str, Any], segment: int) -> str:
    """The condition that selects the customers the rules put in ``segment`` (``FALSE`` when no
    leaf predicts it)."""
    leaves = [leaf for leaf in rules["leaves"] if leaf["segment"] == segment]
    if not leaves:
        return "FALSE"
    if len(leaves) == 1:
        return leaf_sql(leaves[0], rules)
    return "\n   OR ".join(f"({leaf_sql(leaf, rules)})" for leaf in leaves)


def input_sql(facts: Mapping[str, Any], columns: Mapping[str, str]) -> str | None:
    """The run's input files as a DuckDB relation (None for an input made by a query)."""
    files = [Path(f) for f in facts.get("files", []) if isinstance(f, str)]
    if facts.get("format") not in ("parquet", "csv") or not files:
        return None
    text = sorted(c for c, kind in columns.items() if kind == "text")
    return scan_sql(files, facts["format"], facts.get("separator"), text_columns=text)


def query_sql(rules: Mapping[str, Any], facts: Mapping[str, Any]) -> str | None:
    """``SELECT <id>, CASE ... END AS segment FROM <the run's input>`` (None when the input was a query)."""
    source = input_sql(facts, rules["columns"])
    if source is None:
        return None
    key = f"{ident(rules['id_col'])}, " if rules.get("id_col") else ""
    return f"SELECT {key}{case_sql(rules, '    ')} AS segment\nFROM {source}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def rules_sql(rules: Mapping[str, Any], facts: Mapping[str, Any], names: Sequence[str]) -> str:
    """The text of ``rules.sql``."""
    lines = [f"-- Segment rules: a depth-{rules['depth']} decision tree; they reproduce the segment of "
             f"{percent(rules['fidelity'])} of the {rules['rows']:,} segmented customers.",
             "-- Over the input's own columns (numbers as DOUBLE, text as VARCHAR); a row whose tested "
             "value is missing gets NULL.", "", "-- The segment of every customer:", case_sql(rules), ""]
    for entry in rules["segments"]:
        j = entry["segment"]
        lines += [f"-- Segment {j}: {names[j] if j < len(names) else ''} (fidelity {percent(entry['fidelity'])}, "
                  f"precision {percent(entry['precision'])})", f"WHERE {where_sql(rules, j)};", ""]
    query = query_sql(rules, facts)
    if query is None:
        lines.append("-- The run's input was a SQL query: run the CASE over its result.")
    else:
        lines += ["-- The whole query over this run's input, in DuckDB:", query + ";"]
    return "\n".join(lines) + "\n"
