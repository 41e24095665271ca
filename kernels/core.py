"""Primitives shared by the kernels (inlined into their callers).

Distances are computed for blocks of rows at a time: the block is transposed into a small
features x rows buffer, so the inner loops run element-wise over contiguous rows and vectorise
without reassociating any sum. Each distance is then the sum over features in a fixed order,
the same bits whatever the compiler, the CPU's vector width or the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import INLINE, PARALLEL

#: Rows per distance block (the transposed block is d x BLOCK float32).
BLOCK = 256


@njit(cache=True, **INLINE)
def nearest_block(X, lo, hi, centers, XT, dist, best_d2, best_j):
    """Nearest centre of rows ``lo:hi`` (at most BLOCK rows) into ``best_j``/``best_d2``.

    XT, dist, best_d2 (float32) and best_j (int32) are scratch buffers of BLOCK entries
    (XT: d x BLOCK). Ties go to the lowest centre index.
    """
    k, d = centers.shape
    m = hi - lo
    for i in range(m):
        for f in range(d):
            XT[f, i] = X[lo + i, f]
    for i in range(m):
        best_d2[i] = np.inf
        best_j[i] = 0
    for j in range(k):
        for i in range(m):
            dist[i] = 0.0
        for f in range(d):
            c = centers[j, f]
            row = XT[f]
            for i in range(m):
                t = row[i] - c
                dist[i] += t * t
        for i in range(m):
            if dist[i] < best_d2[i]:
                best_d2[i] = dist[i]
                best_j[i] = j


@njit(cache=True, **INLINE)
def add_row(X, i, j, sums, counts):
    """Count row ``i`` of ``X`` in cluster ``j`` and add it to that cluster's coordinate sums."""
    counts[j] += 1
    for f in range(X.shape[1]):
        sums[j, f] += X[i, f]


@njit(cache=True, **INLINE)
def sq_dist_rows(X, i, Y, j):
    """Squared Euclidean distance between ``X[i]`` and ``Y[j]`` in float32 (features in order)."""
    acc = np.float32(0.0)
    for f in range(X.shape[1]):
        t = X[i, f] - Y[j, f]
        acc += t * t
    return acc


@njit(cache=True, **INLINE)
def chunk_bounds(c, n_chunks, n):
    """Row range ``[lo, hi)`` of chunk ``c`` when ``n`` rows split into ``n_chunks`` chunks."""
    size = (n + n_chunks - 1) // n_chunks
    lo = c * size
    hi = min(n, lo + size)
    return lo, hi


@njit(cache=True, **INLINE)
def search_right(cum, value):
    """First index i with cum[i] > value in a non-decreasing array (len(cum) if none)."""
    lo, hi = 0, cum.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] > value:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, **PARALLEL)
def take_rows(X, idx, out):
    """out[r] = X[idx[r]] on every thread (numpy's fancy indexing gathers on one)."""
    d = X.shape[1]
    for r in prange(idx.shape[0]):
        row = idx[r]
        for f in range(d):
            out[r, f] = X[row, f]


@njit(cache=True, **PARALLEL)
def put_column(cols, j, lo, src):
    """cols[lo:lo + len(src), j] = src (converted to cols' type) on every thread: the copy is
    bound by first touches of fresh pages, which run in parallel."""
    for i in prange(src.shape[0]):
        cols[lo + i, j] = src[i]
