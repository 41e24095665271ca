"""Per-cluster partial sums for cluster-quality indices (Calinski-Harabasz, Davies-Bouldin).

Both indices need only per-cluster counts, means and dispersions, so one pass for the sums and
one for the distances to the means give them in O(rows x features), with per-chunk accumulators
reduced in fixed order like every other kernel here.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import PARALLEL
from kernels.core import add_row, chunk_bounds


@njit(cache=True, **PARALLEL)
def label_sums(X, labels, sums, counts):
    """Per-chunk coordinate sums and member counts for given labels.

    X       f4[:, ::1]     IN
    labels  i4[::1]        IN   0..k-1
    sums    f8[:, :, ::1]  OUT  (n_chunks, k, d)
    counts  i8[:, ::1]     OUT  (n_chunks, k)
    """
    n = X.shape[0]
    n_chunks = sums.shape[0]
    for c in prange(n_chunks):
        lo, hi = chunk_bounds(c, n_chunks, n)
        s = sums[c]
        cnt = counts[c]
        s[:, :] = 0.0
        cnt[:] = 0
        for i in range(lo, hi):
            add_row(X, i, labels[i], s, cnt)


@njit(cache=True, **PARALLEL)
def dispersion(X, labels, means, dist_sums, sq_sums):
    """Per-chunk sums, per cluster, of each member's distance and squared distance to its mean.

    X          f4[:, ::1]  IN
    labels     i4[::1]     IN
    means      f8[:, ::1]  IN   (k, d) cluster means
    dist_sums  f8[:, ::1]  OUT  (n_chunks, k)  sum of ||x - mean||
    sq_sums    f8[:, ::1]  OUT  (n_chunks, k)  sum of ||x - mean||^2
    """
    n, d = X.shape
    n_chunks = dist_sums.shape[0]
    for c in prange(n_chunks):
        lo, hi = chunk_bounds(c, n_chunks, n)
        ds = dist_sums[c]
        qs = sq_sums[c]
        ds[:] = 0.0
        qs[:] = 0.0
        for i in range(lo, hi):
            j = labels[i]
            acc = 0.0
            for f in range(d):
                t = np.float64(X[i, f]) - means[j, f]
                acc += t * t
            qs[j] += acc
            ds[j] += np.sqrt(acc)
