"""Exact silhouette coefficients of a (sampled) set of rows.

The caller sorts rows by label and passes them transposed (features x rows), so each
cluster is a contiguous range and the inner loop runs over contiguous memory and vectorises.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import PARALLEL

TILE = 512
ROWS_PER_TASK = 16


@njit(cache=True, **PARALLEL)
def silhouette_sorted(XT, labels, starts, out):
    """Silhouette of every row.

    XT      f4[:, ::1]  IN   (d, m) rows sorted by label, transposed
    labels  i4[::1]     IN   (m,) sorted labels in 0..k-1
    starts  i8[::1]     IN   (k + 1,) cluster j occupies columns starts[j]:starts[j+1]
    out     f8[::1]     OUT  (m,) s(i) = (b - a) / max(a, b); 0 for members of singletons
    """
    d, m = XT.shape
    k = starts.shape[0] - 1
    n_tasks = (m + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        buf = np.empty(TILE, dtype=np.float32)
        mean_d = np.empty(k, dtype=np.float64)
        for i in range(task * ROWS_PER_TASK, min(m, (task + 1) * ROWS_PER_TASK)):
            for c in range(k):
                total = 0.0
                for j0 in range(starts[c], starts[c + 1], TILE):
                    length = min(TILE, starts[c + 1] - j0)
                    width = 1
                    while width < length:
                        width *= 2
                    for jj in range(width):
                        buf[jj] = 0.0
                    for f in range(d):
                        row = XT[f, j0 : j0 + length]  # contiguous: the loop below vectorises
                        v = XT[f, i]
                        for jj in range(length):
                            t = row[jj] - v
                            buf[jj] += t * t
                    for jj in range(length):
                        buf[jj] = np.sqrt(buf[jj])
                    # Pairwise sum in a fixed tree: every level is element-wise, so it vectorises
                    # with strict IEEE arithmetic and gives the same bits on any machine.
                    while width > 1:
                        width //= 2
                        for jj in range(width):
                            buf[jj] += buf[jj + width]
                    total += buf[0]
                mean_d[c] = total
            own = labels[i]
            n_own = starts[own + 1] - starts[own]
            if n_own <= 1:
                out[i] = 0.0
                continue
            a = mean_d[own] / (n_own - 1)
            b = np.inf
            for c in range(k):
                size = starts[c + 1] - starts[c]
                if c != own and size > 0:
                    b = min(b, mean_d[c] / size)
            denom = max(a, b)
            out[i] = (b - a) / denom if denom > 0.0 else 0.0
