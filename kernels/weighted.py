"""Sample-weighted twins of the fit kernels (k-means++, the Lloyd pass, the mini-batch update).

Row ``i`` counts ``w[i]`` times (non-negative float64 weights): every mean, sum of squared
distances and D^2 draw is weighted, so an integer weight is the same objective as repeating the
row and a zero weight the same as leaving it out. They are separate kernels so that the
unweighted ones, which every ``segment run`` uses, stay exactly as fast and give the same bits.
Chunking and reduction order are those of the unweighted kernels: fixed by the shape alone.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import JIT, PARALLEL
from kernels.core import BLOCK, chunk_bounds, nearest_block, search_right, sq_dist_rows


@njit(cache=True, **PARALLEL)
def kmeanspp_weighted(X, w, first, uniforms, centers_idx, n_chunks):
    """``kernels.kmeanspp`` with row ``i`` counting ``w[i]`` times.

    X            f4[:, ::1]  IN   rows
    w            f8[::1]     IN   non-negative row weights
    first        int          IN   the first centre (drawn by the caller with probability ~ w)
    uniforms     f8[:, ::1]  IN   (k - 1, n_trials) uniforms in [0, 1)
    centers_idx  i8[::1]     OUT  chosen row indices
    Candidates are drawn with probability proportional to w(x) D(x)^2 and the one that lowers
    the weighted potential sum(w D^2) most is kept. Returns how many centres were chosen: fewer
    than requested when every row of positive weight coincides with a chosen centre.
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
            total += w[i] * closest[i]
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
                    acc += w[i] * min(closest[i], sq_dist_rows(X, i, X, cand[t]))
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


@njit(cache=True, **PARALLEL)
def lloyd_pass_weighted(X, w, centers, labels, dist2, sums, wsums, sse, changed):
    """``kernels.lloyd_pass`` with row ``i`` counting ``w[i]`` times.

    X        f4[:, ::1]     IN
    w        f8[::1]        IN    non-negative row weights
    centers  f4[:, ::1]     IN
    labels   i4[::1]        INOUT previous labels in, new labels out
    dist2    f4[::1]        OUT   squared distance to the nearest centre (unweighted)
    sums     f8[:, :, ::1]  OUT   (n_chunks, k, d) per-chunk weighted coordinate sums
    wsums    f8[:, ::1]     OUT   (n_chunks, k) per-chunk weight totals
    sse      f8[::1]        OUT   (n_chunks,) per-chunk sum of w * dist2
    changed  i8[::1]        OUT   (n_chunks,) rows whose label changed
    """
    n, d = X.shape
    n_chunks = sums.shape[0]
    for c in prange(n_chunks):
        lo, hi = chunk_bounds(c, n_chunks, n)
        s = sums[c]
        ws = wsums[c]
        s[:, :] = 0.0
        ws[:] = 0.0
        XT = np.empty((d, BLOCK), dtype=np.float32)
        dist = np.empty(BLOCK, dtype=np.float32)
        best_d2 = np.empty(BLOCK, dtype=np.float32)
        best_j = np.empty(BLOCK, dtype=np.int32)
        acc = 0.0
        moved = 0
        for b in range(lo, hi, BLOCK):
            e = min(hi, b + BLOCK)
            nearest_block(X, b, e, centers, XT, dist, best_d2, best_j)
            for i in range(e - b):
                r = b + i
                j = best_j[i]
                if labels[r] != j:
                    moved += 1
                labels[r] = j
                dist2[r] = best_d2[i]
                wi = w[r]
                acc += wi * best_d2[i]
                ws[j] += wi
                for f in range(d):
                    s[j, f] += wi * X[r, f]
        sse[c] = acc
        changed[c] = moved


@njit(cache=True, **JIT)
def reduce_weighted(sums, wsums):
    """Sum per-chunk weighted sums and weight totals in chunk order (as ``reduce_chunks``, serial)."""
    n_chunks, k, d = sums.shape
    total = np.zeros((k, d), dtype=np.float64)
    total_w = np.zeros(k, dtype=np.float64)
    for c in range(n_chunks):
        for j in range(k):
            total_w[j] += wsums[c, j]
            for f in range(d):
                total[j, f] += sums[c, j, f]
    return total, total_w


@njit(cache=True, **JIT)
def minibatch_update_weighted(Xb, wb, labels, centers, centers32, weight_sums):
    """``kernels.minibatch_update`` with batch row ``i`` counting ``wb[i]`` times.

    Centre j with accumulated weight W_j and batch members of total weight B_j moves to the
    running weighted mean (c_j W_j + sum of w x over its members) / (W_j + B_j); centres whose
    members all have weight zero stay where they are.

    Xb           f4[:, ::1]  IN     batch rows
    wb           f8[::1]     IN     their weights
    labels       i4[::1]     IN     their nearest centre
    centers      f8[:, ::1]  INOUT  centres (float64 master copy)
    centers32    f4[:, ::1]  OUT    float32 copy used for assignment
    weight_sums  f8[::1]     INOUT  weight seen per centre
    Returns the number of centres that moved.
    """
    b, d = Xb.shape
    k = centers.shape[0]
    bsum = np.zeros((k, d), dtype=np.float64)
    bw = np.zeros(k, dtype=np.float64)
    for i in range(b):
        j = labels[i]
        wi = wb[i]
        bw[j] += wi
        for f in range(d):
            bsum[j, f] += wi * Xb[i, f]
    moved = 0
    for j in range(k):
        if bw[j] <= 0.0:
            continue
        moved += 1
        w_old = weight_sums[j]
        w_new = w_old + bw[j]
        for f in range(d):
            centers[j, f] = (centers[j, f] * w_old + bsum[j, f]) / w_new
            centers32[j, f] = np.float32(centers[j, f])
        weight_sums[j] = w_new
    return moved
