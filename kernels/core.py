"""Primitives shared by the kernels (inlined into their callers)."""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.config import INLINE


@njit(**INLINE)
def nearest(X, i, centers):
    """Index of the centre nearest to row ``i`` of ``X`` and its squared distance (float32).

    Ties go to the lowest index, so the result does not depend on anything but the data.
    """
    k, d = centers.shape
    best = 0
    best_d2 = np.float32(np.inf)
    for j in range(k):
        acc = np.float32(0.0)
        for f in range(d):
            t = X[i, f] - centers[j, f]
            acc += t * t
        if acc < best_d2:
            best_d2 = acc
            best = j
    return best, best_d2


@njit(**INLINE)
def sq_dist_rows(X, i, Y, j):
    """Squared Euclidean distance between ``X[i]`` and ``Y[j]`` in float32."""
    acc = np.float32(0.0)
    for f in range(X.shape[1]):
        t = X[i, f] - Y[j, f]
        acc += t * t
    return acc


@njit(**INLINE)
def chunk_bounds(c, n_chunks, n):
    """Row range ``[lo, hi)`` of chunk ``c`` when ``n`` rows split into ``n_chunks`` chunks."""
    size = (n + n_chunks - 1) // n_chunks
    lo = c * size
    hi = min(n, lo + size)
    return lo, hi


@njit(**INLINE)
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
