"""The I/O floor of a segmentation run, as one process.

    python benchmarks/io_floor.py customers.parquet OUT_DIR            # in memory
    python benchmarks/io_floor.py customers.parquet OUT_DIR --stream   # block by block

The columns are ``benchmarks.e2e.columns_for``'s (customers, or a ``blobs-*.parquet`` file).

In memory: reads just the feature columns into a float32 matrix (Polars, the fastest path we
found: cast in the scan, then one C-ordered copy) and writes the id, segment and distance columns
(placeholders of the right types) to Parquet with the engine's writer settings.

Streamed (``--stream``): the same work in the streamed run's blocks (1,048,576 rows from the first
row), in one pass: each block's id and feature columns are read as a slice of the lazy scan (cast
in the scan; Polars reads only the row groups the slice covers; as fast as pyarrow's
``iter_batches`` or ``read_row_group`` here, or faster), made a C-ordered float32 matrix, and its id,
segment and distance written as one row group with the engine's streamed writer (a pyarrow
ParquetWriter). Memory stays at one block.

It runs with the CLI's page setting (``NUMPY_MADVISE_HUGEPAGE=0`` unless set; see cli.py).
No features are built and nothing is fitted: no segmentation run can do less I/O than this
(a streamed run also reads its input at least twice: once to fit, once to write the ids).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# The floor runs with the CLI's page setting (cli.py: plain pages for numpy's arrays), as the
# least a `segment run` process could do.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import numpy as np
import polars as pl

from benchmarks.e2e import columns_for


def placeholders(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and squared distances that vary as a real run's do."""
    labels = (np.arange(X.shape[0]) % 8).astype(np.int32)
    return labels, np.abs(X[:, 0]).astype(np.float32)


def in_memory(src: Path, out: Path) -> dict:
    from engine.outputs.write import write_segments

    FEATURES, ID = columns_for(src)  # noqa: N806 (the data set's columns)
    seconds = {}
    t = time.perf_counter()
    frame = pl.scan_parquet(src).select(pl.col(ID), *[pl.col(c).cast(pl.Float32) for c in FEATURES]).collect()
    X = frame.select(FEATURES).to_numpy(order="c")
    ids = frame.get_column(ID)
    seconds["read"] = time.perf_counter() - t
    t = time.perf_counter()
    labels, dist2 = placeholders(X)
    write_segments(out / "segments.parquet", ids, labels, dist2, None)
    seconds["write"] = time.perf_counter() - t
    return {"seconds": seconds, "rows": X.shape[0], "matrix_bytes": int(X.nbytes)}


def streamed(src: Path, out: Path) -> dict:
    from engine.input.blocks import BLOCK_ROWS
    from engine.outputs.write import SegmentWriter

    FEATURES, ID = columns_for(src)  # noqa: N806 (the data set's columns)
    seconds = {"read": 0.0, "write": 0.0}
    scan = pl.scan_parquet(src)
    n = scan.select(pl.len()).collect().item()
    writer = SegmentWriter(out / "segments.parquet")
    try:
        for start in range(0, n, BLOCK_ROWS):
            t = time.perf_counter()
            frame = scan.slice(start, BLOCK_ROWS).select(
                pl.col(ID), *[pl.col(c).cast(pl.Float32) for c in FEATURES]).collect()
            X = frame.select(FEATURES).to_numpy(order="c")
            now = time.perf_counter()
            seconds["read"] += now - t
            labels, dist2 = placeholders(X)
            writer.write(frame.get_column(ID), labels, dist2, None)
            seconds["write"] += time.perf_counter() - now
    finally:
        writer.close()
    return {"seconds": seconds, "rows": n, "block_rows": BLOCK_ROWS}


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    result = streamed(src, out) if "--stream" in sys.argv[3:] else in_memory(src, out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
