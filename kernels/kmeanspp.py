"""Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with local trials as in scikit-learn)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import PARALLEL
from kernels.core import chunk_bounds, search_right, sq_dist_rows


@njit(cache=True, **PARALLEL)
def kmeanspp(X, first, uniforms, centers_idx, n_chunks):
    """Choose ``len(centers_idx)`` seed rows of ``X``.

    X            f4[:, ::1]  IN   rows (usually a sample)
    first        int          IN   index of the first centre (drawn uniformly by the caller)
    uniforms     f8[:, ::1]  IN   (k - 1, n_trials) uniforms in [0, 1): candidate draws
    centers_idx  i8[::1]     OUT  chosen row indices
    Each step draws n_trials candidates with probability proportional to D(x)^2 and keeps the
    one that lowers the potential most. Returns how many centres were chosen: fewer than
    requested only when every row already coincides with a chosen centre (too few distinct rows).
    """
    n = X.shape[0]
    k = centers_idx.shape[0]
    n_trials = uniforms.shape[1]
    closest = np.empty(n, dtype=np.float64)
    cum = np.empty(n, dtype=np.float64)
    cand = np.empty(n_trials, dtype=np.int64)
    part = np.empty((n_trials, n_chunks), dtype=np.float64)
    centers_idx[0] = first
    for i in prange(n):
        closest[i] = sq_dist_rows(X, i, X, first)
    for c in range(1, k):
        total = 0.0
        for i in range(n):
            total += closest[i]
            cum[i] = total
        if total <= 0.0:
            return c
        for t in range(n_trials):
            cand[t] = min(search_right(cum, uniforms[c - 1, t] * total), n - 1)
        for ch in prange(n_chunks):
            lo, hi = chunk_bounds(ch, n_chunks, n)
            for t in range(n_trials):
                acc = 0.0
                for i in range(lo, hi):
                    acc += min(closest[i], sq_dist_rows(X, i, X, cand[t]))
                part[t, ch] = acc
        best_t = 0
        best_pot = np.inf
        for t in range(n_trials):
            pot = 0.0
            for ch in range(n_chunks):
                pot += part[t, ch]
            if pot < best_pot:
                best_pot = pot
                best_t = t
        best = cand[best_t]
        centers_idx[c] = best
        for i in prange(n):
            closest[i] = min(closest[i], sq_dist_rows(X, i, X, best))
    return k
