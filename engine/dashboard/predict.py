"""The Predict form: one field per raw column the model's features read, typed from the spec and
the run's EDA summary, and the prediction of one customer through ``segment predict``'s code
path (``build_features`` with the model's fitted statistics, then ``assign_rows``).

The form's values become a one-row Polars frame typed as the input was (``describe.json``), read
as an ``Input`` labelled ``form``, so a bad value gets the CLI's one-line ``InputError``
("form: feature 'spending': log1p needs values above -1, found -51").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.dashboard.rundata import Run
from engine.features.build import build_features
from engine.fit.kmeans import assign_rows
from engine.input.files import Input

FORM = "form"  # how errors name the form (the CLI names the input file)
OTHER_LEVEL = "(another value)"
FORM_ID = "new customer"


@dataclass(frozen=True)
class Field:
    column: str
    kind: str  # "number", "integer", "date", "category" or "text"
    dtype: pl.DataType  # the column's type in the input
    default: Any
    options: tuple[str, ...] = ()  # kind category: the model's levels, then OTHER_LEVEL
    date_format: str | None = None  # a text date read with STRPTIME(column, format)


@dataclass(frozen=True)
class Prediction:
    segment: int
    name: str
    action: str | None
    distances: pl.DataFrame  # segment, name, distance (scaled space), nearest first


def input_types(run: Run) -> dict[str, dict[str, Any]]:
    """Per input column, its ``describe.json`` summary (type, quantiles, min, max)."""
    described = (run.outputs.describe or {}).get("columns") or []
    return {c["column"]: c for c in described if isinstance(c, dict) and "column" in c}


def dtype_of(name: str | None) -> pl.DataType:
    """A Polars type from its name in ``describe.json`` ("Int64", "String", "Date"...)."""
    simple = {"Int8": pl.Int8, "Int16": pl.Int16, "Int32": pl.Int32, "Int64": pl.Int64, "UInt8": pl.UInt8,
              "UInt16": pl.UInt16, "UInt32": pl.UInt32, "UInt64": pl.UInt64, "Float32": pl.Float32,
              "Float64": pl.Float64, "Boolean": pl.Boolean, "String": pl.String, "Date": pl.Date}
    if name in simple:
        return simple[name]
    if isinstance(name, str) and name.startswith("Datetime"):
        return pl.Datetime
    return pl.Float64


def feature_columns(run: Run) -> list[str]:
    """The raw columns the model's features read, in order, then its categorical columns."""
    found: list[str] = []
    for feature in run.model.spec.features:
        for root in pl.sql_expr(feature.expr).meta.root_names():
            if root not in found:
                found.append(root)
    return found + [c.column for c in run.model.spec.categorical if c.column not in found]


def date_format(column: str, run: Run) -> str | None:
    """The format of ``STRPTIME(column, '...')`` in a feature's expression, if there is one."""
    pattern = re.compile(rf"STRPTIME\(\s*\"?{re.escape(column)}\"?\s*,\s*'([^']+)'", re.I)
    for feature in run.model.spec.features:
        found = pattern.search(feature.expr)
        if found:
            return found.group(1)
    return None


def form_fields(run: Run) -> list[Field]:
    """One field per raw column the features read, typed and with the population's median."""
    summary = input_types(run)
    levels = run.model.fitted.levels
    fields = []
    for column in feature_columns(run):
        info = summary.get(column, {})
        dtype = dtype_of(info.get("type"))
        if column in levels:
            fields.append(Field(column, "category", pl.String, (levels[column] or (OTHER_LEVEL,))[0],
                                (*levels[column], OTHER_LEVEL)))
        elif dtype in (pl.Date, pl.Datetime) or (dtype == pl.String and date_format(column, run)):
            fmt = None if dtype != pl.String else date_format(column, run)
            fields.append(Field(column, "date", dtype, default_date(info, fmt), date_format=fmt))
        elif dtype == pl.String and column not in run.model.spec.numeric:
            fields.append(Field(column, "text", dtype, str(info.get("min") or "")))
        else:
            median = info.get("p50")
            whole = dtype.is_integer() or dtype == pl.Boolean or (dtype == pl.String and is_whole(info))
            default = None if median is None else (int(round(median)) if whole else float(median))
            fields.append(Field(column, "integer" if whole else "number", dtype, default))
    return fields


def is_whole(info: dict[str, Any]) -> bool:
    values = [info.get(k) for k in ("min", "max")]
    return all(isinstance(v, str) and v.strip().lstrip("-").isdigit() for v in values)


def default_date(info: dict[str, Any], fmt: str | None) -> dt.date:
    """The middle of the column's range, or today when it cannot be read."""
    found = []
    for key in ("min", "max"):
        value = info.get(key)
        try:
            found.append(dt.datetime.strptime(value, fmt).date() if fmt else dt.date.fromisoformat(str(value)[:10]))
        except (TypeError, ValueError):
            pass
    if len(found) == 2:
        return found[0] + (found[1] - found[0]) / 2
    return dt.date.today()


def form_frame(run: Run, fields: list[Field], values: dict[str, Any]) -> pl.DataFrame:
    """The form's values as a one-row frame typed as the input; the id and the other columns the
    spec names (``numeric``, ``exclude``) that no feature reads are null."""
    summary = input_types(run)
    columns: dict[str, pl.Series] = {}
    for f in fields:
        value = values.get(f.column)
        if f.kind == "date" and value is not None:
            if f.date_format:
                value = value.strftime(f.date_format)
            elif f.dtype == pl.Datetime:
                value = dt.datetime.combine(value, dt.time())
        elif f.dtype == pl.String and value is not None:
            value = str(value)
        columns[f.column] = pl.Series(f.column, [value], dtype=f.dtype)
    spec = run.model.spec
    if spec.id_col and spec.id_col not in columns:
        columns[spec.id_col] = pl.Series(spec.id_col, [FORM_ID], dtype=pl.String)
    for column in (*spec.numeric, *spec.exclude):
        if column not in columns:
            columns[column] = pl.Series(column, [None], dtype=dtype_of(summary.get(column, {}).get("type")))
    return pl.DataFrame(list(columns.values()))


def predict_values(run: Run, fields: list[Field], values: dict[str, Any]) -> Prediction:
    """The segment of one customer, as ``segment predict`` would assign it; bad values raise the
    CLI's one-line ``InputError``."""
    model = run.model
    inp = Input(form_frame(run, fields, values).lazy(), (Path(FORM),), "parquet")
    data = build_features(inp, model.spec, fitted=model.fitted)
    labels, _, _ = assign_rows(data.X, model.centers)
    row = data.X[0].astype(np.float64)
    distances = np.sqrt(((model.centers.astype(np.float64) - row) ** 2).sum(axis=1))
    names = run.names()
    actions = dict(zip(run.profiles["segment"].to_list(), run.profiles["action"].to_list()))
    segment = int(labels[0])
    table = pl.DataFrame({"segment": np.arange(model.k, dtype=np.int32),
                          "name": [names.get(j, "") for j in range(model.k)], "distance": distances}).sort("distance")
    return Prediction(segment, names.get(segment, ""), actions.get(segment), table)
