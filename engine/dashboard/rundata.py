"""The run directory as the dashboard reads it: the checks made before the server starts, and the
loaded run (``read_run`` and ``load_model``, plus the spec's business measures). The file names
are ``engine.outputs.rundir``'s.

A directory is refused with a one-line ``InputError`` when it is missing, when one of its
Parquet files was written by a newer format version (the ``segment.format_version`` key-value
metadata, against ``engine.outputs.write.FORMAT_VERSION``), or when it is half-written: a
required file missing, a Parquet footer or ``metrics.json`` unreadable, files of different runs
(their ``segment.model_hash`` differs from the model's), or ``segments.parquet`` not holding
the run's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InputError
from engine.features.business import MEASURES, parse_business
from engine.features.spec import FeatureSpec
from engine.fit.model import Model, load_model
from engine.errors import first_line
from engine.outputs.rundir import (IMPACT, METRICS, MIGRATION, MODEL, PROFILES, SEGMENTS, RunDir, check_version,
                                   read_json_file, read_run)

REQUIRED = (MODEL, METRICS, SEGMENTS, PROFILES)
PARQUET = (SEGMENTS, PROFILES, IMPACT)
VERSION_KEY = b"segment.format_version"
HASH_KEY = b"segment.model_hash"


def stamp(path: str | Path) -> tuple[str, int, int]:
    """The cache key of a run directory: its resolved path, modification time and inode (a new
    run swaps in a new directory, so both change)."""
    p = Path(path).resolve()
    st = p.stat()
    return str(p), st.st_mtime_ns, st.st_ino


def check_run_dir(path: str | Path) -> Path:
    """The run directory, or a one-line error if it is missing, newer or half-written."""
    p = Path(path)
    if not p.is_dir():
        writing = sorted(p.absolute().parent.glob(f".{p.name}.tmp-*")) if p.absolute().parent.is_dir() else []
        if writing:
            raise InputError(f"run directory {p} is not complete: a run is writing it, or was killed ({writing[0].name})")
        raise InputError(f"run directory not found: {p}")
    if (p / SEGMENTS).is_dir():
        raise InputError(f"{p}: the dashboard does not read a cluster run's segments dataset "
                         f"({SEGMENTS}/part-*.parquet) yet; segment sql, report, explain and compare do")
    present = [name for name in REQUIRED if (p / name).is_file()]
    if not present:
        raise InputError(f"{p} is not a segment run directory (no {', '.join(REQUIRED)})")
    if len(present) < len(REQUIRED):
        missing = next(name for name in REQUIRED if name not in present)
        raise InputError(f"{p} is half-written: {missing} is missing (run `segment run` again)")
    metas = {name: footer(p / name) for name in PARQUET if (p / name).is_file()}
    for name, meta in metas.items():
        check_footer_version(p / name, meta)
    model = load_model(p)
    digest = model.digest()
    for name, meta in metas.items():
        recorded = meta.metadata.get(HASH_KEY) if meta.metadata else None
        if recorded is not None and recorded.decode() != digest:
            raise InputError(f"{p} is half-written: {name} is from another run than {MODEL} (model hash differs)")
    metrics = read_json_file(p / METRICS)
    rows = metrics.get("rows")
    if metas[SEGMENTS].num_rows != rows:
        raise InputError(f"{p} is half-written: {SEGMENTS} has {metas[SEGMENTS].num_rows:,} rows, "
                         f"{METRICS} says {rows!r}")
    return p


def footer(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is half-written or damaged: not a readable Parquet file ({first_line(exc)})") from exc


def check_footer_version(path: Path, meta: pq.FileMetaData) -> None:
    check_version(path, ((meta.metadata or {}).get(VERSION_KEY) or b"").decode() or None)


@dataclass(frozen=True)
class Run:
    """What the dashboard shows of one run directory."""

    path: Path
    outputs: RunDir
    model: Model
    spec: FeatureSpec  # the model's spec with the run's business measures

    @property
    def metrics(self) -> dict[str, Any]:
        return self.outputs.metrics

    @property
    def profiles(self):
        return self.outputs.profiles

    @property
    def segments_file(self) -> Path:
        return self.path / SEGMENTS

    @property
    def migration_file(self) -> Path:
        return self.path / MIGRATION

    @property
    def id_col(self) -> str:
        return self.model.spec.id_col or "row_id"

    def names(self) -> dict[int, str]:
        return dict(zip(self.profiles["segment"].to_list(), self.profiles["name"].to_list()))

    def input_info(self) -> dict[str, Any]:
        found = self.metrics.get("input")
        return found if isinstance(found, dict) else {}


def business_spec(model: Model, metrics: dict[str, Any]) -> FeatureSpec:
    """The model's spec with the business measures the run recorded (``model.json`` leaves them out)."""
    recorded = (metrics.get("insight") or {}).get("business") or {}
    measures = {m: recorded[m] for m in MEASURES if isinstance(recorded.get(m), str)}
    return replace(model.spec, business=parse_business(measures, "metrics.json insight.business"))


def load_run(path: str | Path) -> Run:
    """Check and read a run directory."""
    p = check_run_dir(path).resolve()
    outputs = read_run(p)
    model = load_model(p)
    return Run(p, outputs, model, business_spec(model, outputs.metrics))
