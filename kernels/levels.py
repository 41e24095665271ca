"""How many kept rows hold each level of the categorical columns (for the one-hot scaler).

Layers: ``count_levels`` (one column, serial), ``count_levels_columns`` (every column in
parallel, each into its own slice of the counts) and ``level_counts`` (the wrapper: checks the
arrays and allocates the counts). Counts are integers, so the result does not depend on the
order of anything.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import JIT, PARALLEL


@njit(cache=True, **JIT)
def count_levels(code, kept, counts):
    """Kept rows per level of one column (codes -1 and out of range are not counted).

    code    i4[::1]  IN   level codes
    kept    b1[::1]  IN   rows to count; empty: every row
    counts  i8[::1]  OUT  (levels,) kept rows per level
    """
    n_levels = counts.shape[0]
    counts[:] = 0
    every = kept.shape[0] == 0
    for i in range(code.shape[0]):
        if every or kept[i]:
            c = code[i]
            if 0 <= c < n_levels:
                counts[c] += 1


@njit(cache=True, **PARALLEL)
def count_levels_columns(codes, offsets, kept, counts):
    """``count_levels`` of every column, in parallel.

    codes    i4[::1, :]  IN   (rows, columns) level codes, Fortran order
    offsets  i8[::1]     IN   (columns + 1,) column c counts into counts[offsets[c]:offsets[c + 1]]
    kept     b1[::1]     IN   rows to count; empty: every row
    counts   i8[::1]     OUT  (offsets[-1],)
    """
    for c in prange(codes.shape[1]):
        count_levels(codes[:, c], kept, counts[offsets[c]:offsets[c + 1]])


def level_counts(codes: np.ndarray, n_levels: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Kept rows per level of every categorical column, one after the other (int64): column c
    has ``n_levels[c]`` levels, codes 0..n_levels[c] - 1."""
    if codes.dtype != np.int32 or codes.ndim != 2 or not codes.flags.f_contiguous:
        raise ValueError("codes must be a Fortran-ordered int32 (rows, columns) array")
    n_levels = np.asarray(n_levels, dtype=np.int64)
    if n_levels.shape != (codes.shape[1],) or (n_levels < 0).any():
        raise ValueError(f"n_levels must give {codes.shape[1]} level counts, none negative")
    if kept.dtype != np.bool_ or kept.shape not in ((0,), (codes.shape[0],)):
        raise ValueError(f"kept must be a bool mask of {codes.shape[0]} rows, or empty")
    offsets = np.zeros(n_levels.size + 1, dtype=np.int64)
    np.cumsum(n_levels, out=offsets[1:])
    counts = np.empty(int(offsets[-1]), dtype=np.int64)
    count_levels_columns(codes, offsets, kept, counts)
    return counts
