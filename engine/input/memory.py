"""Will the run fit in memory? Answer before reading the data, not with the OOM killer.

The estimate counts what the in-memory path holds at its peak, per row: the feature columns
(float64, read one at a time), the float32 matrix, the id, label, distance and mask columns.
It is calibrated on measured peak RSS and errs on the generous side.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq

from engine.errors import InputError
from engine.input.files import SNIFF_BYTES, Input

BASE_BYTES = 400 * 2**20  # interpreter, numba, Polars and Arrow runtimes
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
         "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"2GiB"``, ``"500MB"``, ``"1.5g"`` or a number of bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in UNITS:
        raise InputError(f"--memory-limit: cannot read {text!r} as a size (use e.g. 8GiB or 500MB)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def available_memory() -> int | None:
    """MemAvailable, lowered to the cgroup's remaining allowance where one is set."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def count_rows(inp: Input) -> int:
    """Exact for Parquet (footers) and SQL results; estimated for CSV from the average line length of its start."""
    if inp.rows is not None:
        return inp.rows
    if inp.format == "parquet":
        return sum(pq.ParquetFile(p).metadata.num_rows for p in inp.files)
    total = 0
    for path in inp.files:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        lines = max(head.count(b"\n"), 1)
        total += int(size / (len(head) / lines)) if len(head) < size else lines
    return total


def needed_bytes(rows: int, n_features: int, n_onehot: int) -> int:
    d = n_features + n_onehot
    # float64 feature columns (8) + the float32 matrix (4), with room to spare; per row the ids,
    # labels, distances, masks and the insight stage's column batches (a run keeps the feature
    # columns until the insight's pass has read them). Measured: 10M rows x 16 features peaked at
    # 2.3 GB RSS (this says 4.6 GB), 1M x 11 (spec customers) at 0.72 GB (this says 0.76 GB).
    per_row = 16 * d + 160
    return BASE_BYTES + rows * per_row


def memory_plan(inp: Input, n_features: int, n_onehot: int, limit: str | int | None) -> tuple[int, int, int | None]:
    """(rows, bytes the in-memory path needs, bytes available: ``limit``, else what is free; None: unknown)."""
    rows = count_rows(inp)
    avail = parse_size(limit) if isinstance(limit, str) else limit if limit is not None else available_memory()
    return rows, needed_bytes(rows, n_features, n_onehot), avail


def check_memory(inp: Input, n_features: int, n_onehot: int, limit: str | int | None) -> int:
    """Raise ``InputError`` when the run would need more memory than there is; return the estimate."""
    rows, need, avail = memory_plan(inp, n_features, n_onehot, limit)
    if avail is not None and need > avail:
        raise InputError(
            f"{inp.label}: {rows:,} rows x {n_features + n_onehot} features need about {human(need)} of memory, "
            f"but only {human(avail)} is available (use fewer rows or features, or a larger --memory-limit)"
        )
    return need
