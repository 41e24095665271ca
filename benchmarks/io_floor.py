"""The I/O floor of a segmentation run, as one process.

    python benchmarks/io_floor.py customers.parquet OUT_DIR

Reads just the feature columns into a float32 matrix (Polars, the fastest path we found:
cast in the scan, then one C-ordered copy) and writes the id, segment and distance columns
(placeholders of the right types) to Parquet with the engine's writer settings. No features
are built and nothing is fitted: no segmentation run can do less I/O than this.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.e2e import FEATURES, ID


def main() -> None:
    from engine.outputs.write import write_segments

    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    t = time.perf_counter()
    frame = pl.scan_parquet(src).select(pl.col(ID), *[pl.col(c).cast(pl.Float32) for c in FEATURES]).collect()
    X = frame.select(FEATURES).to_numpy(order="c")
    ids = frame.get_column(ID)
    seconds["read"] = time.perf_counter() - t
    t = time.perf_counter()
    n = X.shape[0]
    labels = (np.arange(n) % 8).astype(np.int32)  # a real run's labels and distances vary like these
    dist2 = np.abs(X[:, 0]).astype(np.float32)
    write_segments(out / "segments.parquet", ids, labels, dist2, None)
    seconds["write"] = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "rows": n, "matrix_bytes": int(X.nbytes)}))


if __name__ == "__main__":
    main()
