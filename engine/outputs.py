"""Outputs that are never half-written.

A run writes every file into a temporary directory beside the target and renames it into place
only when all files are complete; a previous run's directory is swapped out, not edited. Single
files (``predict``, ``generate``) go through a temporary file and ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import polars as pl

from engine.errors import InputError

ROW_GROUP_ROWS = 1_000_000
FORMAT_VERSION = "1"


def check_target(path: Path, overwrite: bool, kind: str = "directory") -> None:
    """Fail before any work if the output cannot be written."""
    if path.exists():
        is_dir = path.is_dir()
        if kind == "directory" and not is_dir:
            raise InputError(f"output {path} exists and is a file, not a directory")
        if kind == "file" and is_dir:
            raise InputError(f"output {path} is a directory; give a file name such as {path / 'segments.parquet'}")
        if not overwrite:
            raise InputError(f"output {path} already exists (use --overwrite to replace it)")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: directory {parent} does not exist")


@contextlib.contextmanager
def atomic_dir(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` in one rename."""
    check_target(path, overwrite, "directory")
    tmp = path.absolute().parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_dir(tmp)
        if path.exists():
            old = path.absolute().parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path``."""
    check_target(path, overwrite, "file")
    tmp = path.absolute().parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fsync_dir(path: Path) -> None:
    for child in path.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False, default=json_default) + "\n", encoding="utf-8")


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_segments(
    path: Path, ids: pl.Series, labels: np.ndarray, dist2: np.ndarray, kept: np.ndarray | None,
    metadata: dict[str, str] | None = None,
) -> None:
    """``segments.parquet``: id, segment, distance, one row per input row in input order.

    Rows dropped by the missing-value policy keep their place with a null segment and distance.
    Written in row groups with pyarrow's ParquetWriter, so the labels are never copied whole.
    """
    n = len(ids)
    id_arrow = ids.to_arrow()
    if kept is not None:
        positions = np.cumsum(kept) - 1  # row -> index into labels (valid where kept)
    meta = {b"segment.format_version": FORMAT_VERSION.encode()}
    meta.update({f"segment.{k}".encode(): str(v).encode() for k, v in (metadata or {}).items()})
    schema = pa.schema(
        [pa.field(ids.name, id_arrow.type), pa.field("segment", pa.int32()), pa.field("distance", pa.float32())],
        metadata=meta,
    )
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for lo in range(0, n, ROW_GROUP_ROWS):
            hi = min(n, lo + ROW_GROUP_ROWS)
            if kept is None:
                seg = pa.array(labels[lo:hi], type=pa.int32())
                dist = pa.array(np.sqrt(dist2[lo:hi]), type=pa.float32())
            else:
                mask = ~kept[lo:hi]
                idx = np.where(mask, 0, positions[lo:hi])
                seg = pa.array(labels[idx], type=pa.int32(), mask=mask)
                dist = pa.array(np.sqrt(dist2[idx]), type=pa.float32(), mask=mask)
            writer.write_table(pa.Table.from_arrays([id_arrow.slice(lo, hi - lo), seg, dist], schema=schema))
