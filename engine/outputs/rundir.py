"""Reading a run directory back (for ``segment impact`` and ``segment report``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import InputError
from engine.input.files import first_line


@dataclass
class RunDir:
    path: Path
    metrics: dict[str, Any]
    profiles: pl.DataFrame
    impact: pl.DataFrame | None
    projection: pl.DataFrame | None
    describe: dict[str, Any] | None
    sweep: pl.DataFrame | None
    sweep_json: dict[str, Any] | None


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def read_parquet(path: Path) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc


def read_run(directory: str | Path) -> RunDir:
    """The outputs of ``segment run`` in ``directory`` (metrics.json and profiles.parquet must exist)."""
    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"run directory not found: {path}")
    if not (path / "metrics.json").is_file() or not (path / "profiles.parquet").is_file():
        raise InputError(f"{path} is not a segment run directory (no metrics.json and profiles.parquet)")
    optional_json = {name: read_json_file(path / name) if (path / name).is_file() else None
                     for name in ("describe.json", "sweep.json")}
    return RunDir(
        path=path,
        metrics=read_json_file(path / "metrics.json"),
        profiles=read_parquet(path / "profiles.parquet"),
        impact=read_parquet(path / "impact.parquet"),
        projection=read_parquet(path / "projection.parquet"),
        describe=optional_json["describe.json"],
        sweep=read_parquet(path / "sweep.parquet"),
        sweep_json=optional_json["sweep.json"],
    )
