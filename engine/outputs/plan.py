"""The campaign plan file (``segment plan --out PLAN.parquet``): its writer and its reader.

One Parquet file: a row per planned customer (the run's id column, ``segment``, ``group`` =
``treat`` or ``holdout``), and in its key-value metadata, under ``segment.plan``, the plan as JSON:
the run directory, the id column, the test's parameters (``lift``, ``alpha``, ``power``,
``holdout_share``, ``seed``), the campaign figures and the per-segment table
(``engine.insight.campaign.PLAN_COLUMNS``). ``segment measure`` and ``segment generate --kind
outcome`` read it back with ``read_plan``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from engine.errors import InputError, first_line
from engine.outputs.write import FORMAT_VERSION, atomic_file, write_parquet_meta

KEY = "plan"
GROUPS = ("treat", "holdout")


def write_plan(assignment: pl.DataFrame, plan: dict[str, Any], path: str | Path, overwrite: bool) -> None:
    """The assignment with the plan in its metadata, written beside and renamed into place."""
    with atomic_file(Path(path), overwrite) as tmp:
        write_parquet_meta(assignment, tmp, {KEY: json.dumps(plan, allow_nan=False)})


def read_plan(path: str | Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The assignment and the plan of a plan file, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"plan not found: {path}")
    try:
        meta = pq.read_metadata(path).metadata or {}
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc
    raw = meta.get(f"segment.{KEY}".encode())
    if raw is None:
        raise InputError(f"{path} is not a segment plan (no segment.{KEY} metadata; make one with segment plan)")
    version = meta.get(b"segment.format_version", b"").decode()
    if version and version != FORMAT_VERSION:
        raise InputError(f"{path}: written by a newer segment (format version {version}; this one reads "
                         f"version {FORMAT_VERSION})")
    try:
        plan = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: the plan metadata is not readable JSON ({first_line(exc)})") from exc
    if not isinstance(plan, dict) or plan.get("id_col") not in frame.columns or not {"segment", "group"} <= set(frame.columns):
        raise InputError(f"{path}: the plan is incomplete (expected its id column, segment and group)")
    return frame, plan
