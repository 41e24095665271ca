"""The run directory: its file names, its writer and its reader, in one place.

A run directory is written whole or not at all (``RunWriter`` over ``atomic_dir``): every file
goes into a temporary sibling, which replaces the target in one step when all are complete.
Every Parquet file goes through ``write_parquet`` (the outputs' key-value metadata, and a full
disk as a one-line error). ``RunWriter.written`` lists what was actually written, in the order
of ``FILES``; the CLI prints that list.

``read_run`` reads one back for ``segment impact``, ``report``, ``sql`` and the dashboard: the
required files must be there, JSON must parse, and a newer format version is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import InputError, first_line
from engine.outputs.write import (FORMAT_VERSION, check_not_cwd, check_parent, disk_errors, exchange, fsync_dir,
                                  fsync_tree, remove_stale, temp_sibling, write_json, write_parquet_meta)

SEGMENTS = "segments.parquet"
PROFILES = "profiles.parquet"
MODEL = "model.json"
METRICS = "metrics.json"
DESCRIBE = "describe.json"
PROJECTION = "projection.parquet"
IMPACT = "impact.parquet"
OFFERS = "offers.parquet"
MEASURE = "measure.parquet"  # segment measure: the campaign test's results, when measured
SWEEP_TABLE = "sweep.parquet"
SWEEP_JSON = "sweep.json"
SWEEP_HTML = "sweep.html"
SWEEP_CHART = "sweep_chart.json"
PARTITIONS = "segments"  # --partition-by-segment: segments/segment=K/part-0.parquet
REPORT = "report.html"
RULES_JSON = "rules.json"  # segment explain: the rules, their leaves and fidelity
RULES_SQL = "rules.sql"  # ...and the same rules as SQL
MIGRATION = "migration.parquet"  # segment refresh / compare: customers per (from, to) segment (the dashboard reads it)
DRIFT = "drift.parquet"  # ...and per segment: size, share, centroid shift and PSI per feature
COMPARE_JSON = "compare.json"  # segment compare --out: the comparison's summary
COMPARE_HTML = "compare.html"  # ...and its migration heatmap

#: Everything a run, a sweep or a comparison may write, in the order it is listed to the user.
FILES = (SEGMENTS, PROFILES, MODEL, METRICS, DESCRIBE, PROJECTION, IMPACT, OFFERS, MEASURE, MIGRATION, DRIFT,
         SWEEP_TABLE, SWEEP_JSON, SWEEP_HTML, SWEEP_CHART, PARTITIONS, RULES_JSON, RULES_SQL, COMPARE_JSON,
         COMPARE_HTML, REPORT)
#: Files that mark a directory as ours: a run, a sweep or a comparison (safe to replace with --overwrite).
MARKERS = (MODEL, METRICS, SWEEP_JSON, COMPARE_JSON)
#: What ``segment run`` always writes; a directory without one of them is not a complete run.
RUN_FILES = (SEGMENTS, PROFILES, MODEL, METRICS)


@dataclass
class RunWriter:
    """Writes the files of one run directory into ``tmp`` (committed by ``write_run_dir``)."""

    tmp: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        """Where ``name`` goes (for writers that take a path: the model, the charts)."""
        if name not in self.written:
            self.written.append(name)
        return self.tmp / name

    def json(self, name: str, data: dict[str, Any]) -> None:
        write_json(self.path(name), data)

    def parquet(self, name: str, frame: pl.DataFrame, *, metadata: bool = True, **options: Any) -> None:
        """A frame to ``name`` (zstd), with the run's key-value metadata unless ``metadata=False``."""
        write_parquet_meta(frame, self.path(name), self.metadata if metadata else None, **options)

    def listing(self) -> list[str]:
        """What was written, in the order of ``FILES`` (a directory with a trailing ``/``)."""
        order = {name: i for i, name in enumerate(FILES)}
        names = sorted(self.written, key=lambda n: (order.get(n, len(order)), n))
        return [f"{n}/" if (self.tmp / n).is_dir() else n for n in names]


def check_run_target(path: Path, overwrite: bool) -> None:
    """Fail before any work if the run directory cannot be written.

    ``--overwrite`` replaces an earlier run or sweep directory (one holding a ``MARKERS`` file) or
    an empty directory, never an arbitrary one, and never the working directory or its parents.
    """
    check_not_cwd(path)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"output {path} exists and is a file, not a directory")
        if not overwrite:
            raise InputError(f"output {path} already exists (use --overwrite to replace it)")
        if any(path.iterdir()) and not is_run_dir(path):
            raise InputError(f"output {path} is not a segment run or sweep directory (no model.json); refusing to replace it")
    check_parent(path)


@contextlib.contextmanager
def atomic_dir(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` in one step."""
    check_run_target(path, overwrite)
    remove_stale(path)
    tmp = temp_sibling(path, "tmp")
    with disk_errors(path):
        tmp.mkdir()
        try:
            yield tmp
            fsync_tree(tmp)
            if path.exists():
                if exchange(tmp, path):  # tmp now holds the previous outputs
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    old = temp_sibling(path, "old")
                    os.rename(path, old)
                    os.rename(tmp, path)
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
            fsync_dir(path.absolute().parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)



@contextlib.contextmanager
def write_run_dir(out: Path, overwrite: bool, metadata: dict[str, Any] | None = None) -> Iterator[RunWriter]:
    """A ``RunWriter``; on success its files replace ``out`` in one step (see ``atomic_dir``)."""
    with atomic_dir(out, overwrite) as tmp:
        yield RunWriter(tmp, dict(metadata or {}))


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds one of our marker files (a run or a sweep)."""
    return any((path / m).is_file() for m in MARKERS)


@dataclass
class RunDir:
    """A run directory read back: its JSON files parsed, its Parquet files read when present."""

    path: Path
    metrics: dict[str, Any]
    profiles: pl.DataFrame | None
    impact: pl.DataFrame | None
    offers: pl.DataFrame | None
    measure: pl.DataFrame | None
    projection: pl.DataFrame | None
    describe: dict[str, Any] | None
    sweep: pl.DataFrame | None
    sweep_json: dict[str, Any] | None
    rules: dict[str, Any] | None = None  # rules.json, after segment explain
    migration: pl.DataFrame | None = None  # migration.parquet and drift.parquet, in a refresh's run
    drift: pl.DataFrame | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    def option(self, group: str, name: str) -> Any:
        """A recorded option of the run (``metrics.json`` ``options``, grouped by stage)."""
        return recorded_option(self.metrics, group, name)


def recorded_option(metrics: dict[str, Any], group: str, name: str) -> Any:
    """``metrics["options"][group][name]``, or None when the run did not record it."""
    found = (metrics.get("options") or {}).get(group)
    return found.get(name) if isinstance(found, dict) else None

    @property
    def partitioned(self) -> bool:
        return (self.path / PARTITIONS).is_dir()


def segment_files(path: Path) -> list[Path]:
    """The files of ``segments.parquet``: the file itself, or, written by a cluster run
    (``engine.cluster.final``), the dataset directory's ``part-*.parquet`` sorted by name: the
    input order. Empty when there is neither."""
    if path.is_dir():
        return sorted(path.glob("part-*.parquet"))
    return [path] if path.is_file() else []


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def read_parquet(path: Path) -> pl.DataFrame | None:
    """A Parquet file, or a dataset directory of parts (``segment_files``), read whole; None if absent."""
    files = segment_files(path)
    if not files:
        return None
    try:
        return pl.read_parquet(files) if len(files) > 1 or path.is_dir() else pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc


def check_version(path: Path, recorded: Any) -> None:
    """A file written by a newer format version than ``FORMAT_VERSION`` is refused (None: unversioned)."""
    if recorded is None:
        return
    try:
        version = int(str(recorded))
    except ValueError:
        raise InputError(f"{path}: format version {recorded!r} is not a number") from None
    if version > int(FORMAT_VERSION):
        raise InputError(f"{path} was written by a newer segment (format version {version}; this one reads "
                         f"up to {FORMAT_VERSION}): upgrade segment-engine to open it")


def read_run(directory: str | Path, need: Sequence[str] = (METRICS, PROFILES)) -> RunDir:
    """The outputs of ``segment run`` in ``directory``; every file in ``need`` must exist."""
    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"run directory not found: {path}")
    for name in need:
        if not (path / name).is_file() and not (name == SEGMENTS and segment_files(path / name)):
            raise InputError(f"{path} is not a segment run directory ({name} is missing)")
    metrics = read_json_file(path / METRICS)
    check_version(path / METRICS, metrics.get("format_version"))
    optional = {name: read_json_file(path / name) if (path / name).is_file() else None
                for name in (DESCRIBE, SWEEP_JSON, RULES_JSON)}
    return RunDir(path=path.resolve(), metrics=metrics, profiles=read_parquet(path / PROFILES),
                  impact=read_parquet(path / IMPACT), offers=read_parquet(path / OFFERS),
                  measure=read_parquet(path / MEASURE), projection=read_parquet(path / PROJECTION),
                  describe=optional[DESCRIBE], sweep=read_parquet(path / SWEEP_TABLE), sweep_json=optional[SWEEP_JSON],
                  rules=optional[RULES_JSON], migration=read_parquet(path / MIGRATION), drift=read_parquet(path / DRIFT))
