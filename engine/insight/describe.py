"""``segment describe``: a per-column summary and the correlation matrix of the numeric columns.

Everything is lazy Polars over the input (``engine.input.files.open_input``), or over a run's hash
sample of it (``describe_sample``): the column statistics in one select, the null counts in
another and the correlations in a third, collected one at a time so that only one query's
columns are in memory at once. NaN and ±inf are left out of a float
column's statistics (and counted as ``non_finite``): each float column is cleaned once, and all
five quantiles come from one selection per column.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import polars as pl

from engine.duck.open import open_source
from engine.errors import InputError, did_you_mean, first_line
from engine.features.spec import FeatureSpec
from engine.input.files import Input

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
STATS = ("nulls", "non_finite", "distinct", "min", "max", "mean", "std", *(f"p{round(q * 100)}" for q in QUANTILES),
         "skew")
#: At most this many numeric columns go into the correlation matrix (their pairs grow as n²).
MAX_CORRELATION_COLUMNS = 60
#: Correlations come from every n-th row when the input has more rows than this (a systematic
#: sample; the standard error of r is then about 0.001): the pairs cost the most.
CORRELATION_ROWS = 1_000_000
#: ``segment run`` describes the columns it used from its hash sample (``engine.insight.onepass``),
#: and its correlations from at most this many of the sampled rows (standard error of r about 0.003).
RUN_CORRELATION_ROWS = 100_000


def kind(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean or dtype.is_numeric():
        return "numeric"
    if dtype.is_temporal():
        return "temporal"
    return "text"


def column_exprs(name: str, dtype: pl.DataType) -> list[pl.Expr]:
    """The statistics of one column of the cleaned frame (float NaN and inf already null)."""
    col = pl.col(name)
    exprs = [col.n_unique().alias(f"{name}\0distinct")]
    what = kind(dtype)
    if what == "text":
        return exprs + [col.cast(pl.String).min().alias(f"{name}\0min"), col.cast(pl.String).max().alias(f"{name}\0max")]
    if what == "temporal":
        return exprs + [col.min().cast(pl.String).alias(f"{name}\0min"), col.max().cast(pl.String).alias(f"{name}\0max")]
    x = col.cast(pl.UInt8) if dtype == pl.Boolean else col
    return exprs + [x.min().cast(pl.Float64).alias(f"{name}\0min"), x.max().cast(pl.Float64).alias(f"{name}\0max"),
                    x.mean().alias(f"{name}\0mean"), x.std().alias(f"{name}\0std"), x.skew().alias(f"{name}\0skew"),
                    x.quantile(list(QUANTILES), "linear").alias(f"{name}\0quantiles")]


def cleaned(schema: pl.Schema, names: list[str]) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Float columns with NaN and inf as null (each computed once); the null and non-finite counts
    of the raw columns."""
    columns, counts = [], []
    for name in names:
        col = pl.col(name)
        counts.append(col.null_count().alias(f"{name}\0nulls"))
        if schema[name].is_float():
            columns.append(pl.when(col.is_finite()).then(col).alias(name))
            counts.append((col.is_not_null() & ~col.is_finite()).sum().alias(f"{name}\0non_finite"))
        else:
            columns.append(col)
    return columns, counts


def clean(value: Any) -> Any:
    """JSON-safe: NaN and inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def describe_input(inp: Input, columns: Sequence[str] | None = None,
                   correlation_rows: int = CORRELATION_ROWS) -> dict[str, Any]:
    """Summary of ``inp`` (all columns, or those named): rows, per-column statistics and the
    correlation matrix of the numeric columns (pairwise-complete Pearson, from every n-th row
    above ``correlation_rows`` rows)."""
    t0 = time.perf_counter()
    schema = inp.schema()
    names = checked_names(schema, columns, inp.label)
    try:
        total = inp.frame.select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {inp.label}: {first_line(exc)}") from exc
    described, rows, correlation = summarise(inp.frame, schema, names, total, correlation_rows, inp.label)
    return {"input": inp.label, "rows": total, "columns": described, "sample": {"every": 1, "rows": rows},
            "correlation": correlation, "seconds": round(time.perf_counter() - t0, 4)}


def describe_sample(sample: pl.DataFrame, schema: pl.Schema, columns: Sequence[str], total: int, where: str,
                    seed: int, correlation_rows: int = RUN_CORRELATION_ROWS) -> dict[str, Any]:
    """``describe_input`` of a run's input from its hash sample (``engine.insight.onepass``: every
    row up to its size; ``seed`` keyed it): the statistics of the sampled rows, ``rows`` the
    input's count, the correlations from at most ``correlation_rows`` of the sampled rows."""
    t0 = time.perf_counter()
    names = checked_names(schema, columns, where)
    described, rows, correlation = summarise(sample.lazy(), schema, names, sample.height, correlation_rows, where,
                                             engine="in-memory")
    return {"input": where, "rows": total, "columns": described, "sample": {"rows": rows, "seed": seed},
            "correlation": correlation, "seconds": round(time.perf_counter() - t0, 4)}


def checked_names(schema: pl.Schema, columns: Sequence[str] | None, where: str) -> list[str]:
    names = list(columns) if columns else schema.names()
    for name in names:
        if name not in schema:
            raise InputError(f"{where}: column {name!r} not found{did_you_mean(name, schema.names())}")
    return names


def summarise(source: pl.LazyFrame, schema: pl.Schema, names: list[str], total: int, correlation_rows: int,
              where: str, engine: str = "auto") -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """Per-column statistics of ``source`` (``total`` rows), its rows, and the correlations of
    its numeric columns from every n-th row (at most ``correlation_rows``).

    ``engine`` is Polars': a run's sample, in memory already, is summarised by the in-memory
    engine, whose sums run in a fixed order. The streaming engine (``auto``: a file read by
    ``segment describe``, in bounded memory) adds its morsels' partial sums in the order the
    threads finish them: the std, skew and mean of 1,000,000 rows took 8 different values in 15
    runs here, and so did a run's describe.json."""
    columns, counts = cleaned(schema, names)
    frame = source.select(columns)
    exprs = [pl.len().alias("\0rows")]
    for name in names:
        exprs += column_exprs(name, schema[name])
    numeric = numeric_names(schema, names)[:MAX_CORRELATION_COLUMNS]
    pairs = [(a, b) for i, a in enumerate(numeric) for b in numeric[i + 1:]]
    corr = [pl.corr(pl.col(a).cast(pl.Float64), pl.col(b).cast(pl.Float64)).alias(f"{a}\0{b}") for a, b in pairs]
    every = max(1, math.ceil(total / correlation_rows))
    try:
        frames = [frame.select(exprs), source.select(counts)]
        frames += [frame.gather_every(every).select(corr)] if corr else []
        results = [f.collect(engine=engine) for f in frames]  # one at a time: bounded memory
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {where}: {first_line(exc)}") from exc
    stats = {**results[0].row(0, named=True), **results[1].row(0, named=True)}
    for name in numeric_names(schema, names):
        for q, value in zip(QUANTILES, stats.pop(f"{name}\0quantiles") or [None] * len(QUANTILES)):
            stats[f"{name}\0p{round(q * 100)}"] = value
        stats.setdefault(f"{name}\0non_finite", 0)
    rows = stats["\0rows"]
    described = []
    for name in names:
        entry: dict[str, Any] = {"column": name, "type": str(schema[name]), "kind": kind(schema[name])}
        for stat in STATS:
            entry[stat] = clean(stats.get(f"{name}\0{stat}"))
        described.append(entry)
    matrix = [[1.0 if a == b else None for b in numeric] for a in numeric]
    if corr:
        values = results[2].row(0, named=True)
        index = {n: i for i, n in enumerate(numeric)}
        for a, b in pairs:
            v = clean(values[f"{a}\0{b}"])
            matrix[index[a]][index[b]] = matrix[index[b]][index[a]] = v
    correlation = {"columns": numeric, "matrix": matrix, "every": every, "rows": len(range(0, rows, every))}
    return described, rows, correlation


def describe(inputs: Sequence[str], columns: Sequence[str] | None = None, separator: str | None = None,
             sql: str | None = None, as_of: str | None = None) -> dict[str, Any]:
    """``segment describe``: open the inputs (files, or a ``--sql`` query) lazily and summarise them."""
    return describe_input(open_source(inputs, separator, FeatureSpec(), sql, as_of), columns)


def numeric_names(schema: pl.Schema, names: list[str]) -> list[str]:
    return [n for n in names if kind(schema[n]) == "numeric"]
