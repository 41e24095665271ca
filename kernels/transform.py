"""Feature columns -> the scaled float32 matrix, in row blocks across all columns at once.

The inputs are the feature columns as one float64 (rows x columns) array in Fortran order, so
each column is contiguous as Polars hands it over (NaN where a value is missing), and, for
one-hot features, int32 level codes in the same layout (-1: no level). Each value goes through the same steps, fused into one pass per kernel:

    missing (not finite)  -> ``fill`` (the median policy) or the row is dropped (``kept`` False)
    clip (flag bit 1)     -> min(max(v, lo), hi)
    log1p (flag bit 2)    -> log1p(v)
    scale                 -> float32((v - center) / scale)

``kept`` is a bool mask over rows; an empty mask means every row is kept. Rows are processed
in blocks of ``ROWS`` so the strided writes of one block stay in cache; sums use fixed chunks
reduced in order (see ``kernels.config``), so every statistic has the same bits on any thread
count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import INLINE, JIT, PARALLEL
from kernels.core import chunk_bounds

CLIP = 1
LOG1P = 2
#: Rows per block when writing the matrix (a block of 16 float32 features is 512 KiB).
ROWS = 8192


@njit(cache=True, **INLINE)
def transform(v, lo, hi, flag):
    """Clip, then log1p, as the flags say (v is finite)."""
    if flag & CLIP:
        v = min(max(v, lo), hi)
    if flag & LOG1P:
        v = np.log1p(v)
    return v


@njit(cache=True, **INLINE)
def value(v, lo, hi, flag, fill):
    """One value after the missing-value fill and the transforms (NaN: still missing)."""
    if not np.isfinite(v):
        return fill
    return transform(v, lo, hi, flag)


@njit(cache=True, **PARALLEL)
def put_column(cols, j, src):
    """cols[:, j] = src on every thread: the copy is bound by first touches of fresh pages, which
    run in parallel."""
    for i in prange(src.shape[0]):
        cols[i, j] = src[i]


@njit(cache=True, **PARALLEL)
def column_stats(cols, lo, hi, flags, fill, drop, n_chunks, kept, bad, lows, counts, means, m2s, tmins, tmaxs):
    """One pass over the columns, chunk by chunk (each chunk's rows stay in cache):

    - with ``drop``, kept[i] = every column is finite in row i (``kept`` is not touched otherwise);
    - per chunk c and column j: ``bad`` values that are not finite and ``lows`` the smallest finite
      raw value; over the kept rows' transformed values (missing ones filled): ``counts[c]``,
      ``means``, ``m2s`` (sum of squared deviations from the chunk mean), ``tmins``, ``tmaxs``.

    ``merge_moments`` combines the chunks in order (Chan et al.), a stable one-pass variance.
    """
    n, d = cols.shape
    for c in prange(n_chunks):
        a, b = chunk_bounds(c, n_chunks, n)
        if drop:
            for i in range(a, b):
                kept[i] = True
            for j in range(d):
                for i in range(a, b):
                    if not np.isfinite(cols[i, j]):
                        kept[i] = False
        m = 0
        for i in range(a, b):
            if not drop or kept[i]:
                m += 1
        counts[c] = m
        for j in range(d):
            lj, hj, fj, gj = lo[j], hi[j], flags[j], fill[j]
            count = 0
            low = np.inf
            acc = 0.0
            tmin = np.inf
            tmax = -np.inf
            for i in range(a, b):
                v = cols[i, j]
                if np.isfinite(v):
                    low = min(low, v)
                else:
                    count += 1
                if not drop or kept[i]:
                    t = value(v, lj, hj, fj, gj)
                    acc += t
                    tmin = min(tmin, t)
                    tmax = max(tmax, t)
            bad[c, j] = count
            lows[c, j] = low
            mean = acc / m if m > 0 else 0.0
            sq = 0.0
            for i in range(a, b):
                if not drop or kept[i]:
                    t = value(cols[i, j], lj, hj, fj, gj) - mean
                    sq += t * t
            means[c, j] = mean
            m2s[c, j] = sq
            tmins[c, j] = tmin
            tmaxs[c, j] = tmax


@njit(cache=True, **JIT)
def merge_moments(counts, means, m2s):
    """Per column: the count, mean and sum of squared deviations of all chunks together, merged in
    chunk order (Chan, Golub and LeVeque's pairwise update)."""
    n_chunks, d = means.shape
    mean = np.zeros(d)
    m2 = np.zeros(d)
    total = 0
    for c in range(n_chunks):
        m = counts[c]
        if m == 0:
            continue
        both = total + m
        for j in range(d):
            delta = means[c, j] - mean[j]
            mean[j] += delta * m / both
            m2[j] += m2s[c, j] + delta * delta * (total * m / both)
        total = both
    return total, mean, m2


@njit(cache=True, **PARALLEL)
def transformed(src, lo, hi, flag, fill, out):
    """One column's values after fill and transforms (NaN where still missing), for quantiles."""
    for i in prange(src.shape[0]):
        out[i] = value(src[i], lo, hi, flag, fill)


@njit(cache=True, **PARALLEL)
def write_matrix(cols, use, lo, hi, flags, fill, center, scale, codes, oh_code, oh_level, oh_center, oh_scale,
                 kept, X):
    """The scaled matrix, kept rows only, in input order: first the numeric columns ``use[t]``
    (scaled by ``center[t]``, ``scale[t]``), then one-hot column m (codes column ``oh_code[m]``
    equal to ``oh_level[m]``). Returns the number of rows written."""
    n = cols.shape[0]
    d = use.shape[0]
    m_hot = oh_level.shape[0]
    every = kept.shape[0] == 0
    n_blocks = (n + ROWS - 1) // ROWS
    starts = np.zeros(n_blocks + 1, dtype=np.int64)
    for b in prange(n_blocks):
        a = b * ROWS
        z = min(n, a + ROWS)
        if every:
            starts[b + 1] = z - a
        else:
            count = 0
            for i in range(a, z):
                count += kept[i]
            starts[b + 1] = count
    for b in range(n_blocks):
        starts[b + 1] += starts[b]
    for b in prange(n_blocks):
        a = b * ROWS
        z = min(n, a + ROWS)
        for t in range(d):
            j = use[t]
            lj, hj, fj, gj, cj, sj = lo[j], hi[j], flags[j], fill[j], center[t], scale[t]
            r = starts[b]
            for i in range(a, z):
                if every or kept[i]:
                    v = value(cols[i, j], lj, hj, fj, gj)
                    X[r, t] = np.float32((v - cj) / sj)
                    r += 1
        for m in range(m_hot):
            col = oh_code[m]
            level = oh_level[m]
            cm, sm = oh_center[m], oh_scale[m]
            r = starts[b]
            for i in range(a, z):
                if every or kept[i]:
                    v = 1.0 if codes[i, col] == level else 0.0
                    X[r, d + m] = np.float32((v - cm) / sm)
                    r += 1
    return starts[n_blocks]


@njit(cache=True, **JIT)
def level_counts(code, n_levels, kept):
    """How many kept rows hold each level (codes -1 and out of range are not counted)."""
    counts = np.zeros(n_levels, dtype=np.int64)
    every = kept.shape[0] == 0
    for i in range(code.shape[0]):
        if every or kept[i]:
            c = code[i]
            if 0 <= c < n_levels:
                counts[c] += 1
    return counts
