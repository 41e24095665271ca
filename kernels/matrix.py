"""The scaled float32 feature matrix: kept rows only, in input order, numeric columns first.

Output column ``t < len(use)`` is source column ``use[t]`` after ``kernels.transform.value``,
then ``float32((v - CENTER) / SCALE)`` with row ``t`` of the scaling table. One-hot output
column ``len(use) + m`` is 1.0 where codes column ``hot[m, CODE]`` equals ``hot[m, LEVEL]`` and
0.0 elsewhere (code -1: no level), scaled with row ``len(use) + m``.

Rows are processed in blocks of ``ROWS``, so the strided writes of one block stay in cache
(a block of 16 float32 features is 512 KiB). Each block's first output row comes from the kept
counts of the blocks before it, so blocks are written in parallel with no shared state.

Layers: ``write_block`` (one block, serial), ``write_blocks`` (block offsets, then every block in
parallel) and ``write_matrix`` (the wrapper: checks the arrays and allocates the matrix).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import JIT, PARALLEL
from kernels.transform import FILL, HI, LO, check_columns, value

#: Rows per block.
ROWS = 8192
#: Columns of the scaling table.
CENTER, SCALE = 0, 1
#: Columns of the one-hot table.
CODE, LEVEL = 0, 1


@njit(cache=True, **JIT)
def write_block(cols, a, z, r0, use, params, flags, scaling, codes, hot, kept, X):
    """Input rows ``a:z`` into the matrix from output row ``r0`` on.

    cols     f8[::1, :]  IN   (rows, columns) feature columns, Fortran order
    a, z     int         IN   the block's input rows
    r0       int         IN   output row of the block's first kept row
    use      i8[::1]     IN   (d,) source column of each numeric output column
    params   f8[:, ::1]  IN   (columns, 3) LO, HI, FILL (``kernels.transform``)
    flags    i8[::1]     IN   (columns,) CLIP | LOG1P
    scaling  f8[:, ::1]  IN   (d + m, 2) CENTER, SCALE of each output column
    codes    i4[::1, :]  IN   (rows, categorical columns) level codes, Fortran order
    hot      i8[:, ::1]  IN   (m, 2) CODE: codes column, LEVEL: level of each one-hot column
    kept     b1[::1]     IN   (rows,) rows to write; empty: every row
    X        f4[:, ::1]  OUT  (kept rows, d + m)
    """
    every = kept.shape[0] == 0
    d = use.shape[0]
    for t in range(d):
        j = use[t]
        lj, hj, fj, gj = params[j, LO], params[j, HI], flags[j], params[j, FILL]
        cj, sj = scaling[t, CENTER], scaling[t, SCALE]
        r = r0
        for i in range(a, z):
            if every or kept[i]:
                v = value(cols[i, j], lj, hj, fj, gj)
                X[r, t] = np.float32((v - cj) / sj)
                r += 1
    for m in range(hot.shape[0]):
        col = hot[m, CODE]
        level = hot[m, LEVEL]
        cm, sm = scaling[d + m, CENTER], scaling[d + m, SCALE]
        r = r0
        for i in range(a, z):
            if every or kept[i]:
                v = 1.0 if codes[i, col] == level else 0.0
                X[r, d + m] = np.float32((v - cm) / sm)
                r += 1


@njit(cache=True, **PARALLEL)
def write_blocks(cols, use, params, flags, scaling, codes, hot, kept, X):
    """Every block of ``ROWS`` rows into ``X`` (arguments as ``write_block``'s), in parallel.
    Returns the number of rows written."""
    n = cols.shape[0]
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
        write_block(cols, a, min(n, a + ROWS), starts[b], use, params, flags, scaling, codes, hot, kept, X)
    return starts[n_blocks]


def write_matrix(cols: np.ndarray, use: np.ndarray, params: np.ndarray, flags: np.ndarray, scaling: np.ndarray,
                 codes: np.ndarray, hot: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The scaled float32 matrix (kept rows, ``len(use) + len(hot)``), C order; the arguments
    are those of ``write_block``."""
    check_columns(cols, params, flags)
    n, d = cols.shape
    if use.dtype != np.int64 or use.ndim != 1 or (use.size and not (0 <= use.min() and use.max() < d)):
        raise ValueError(f"use must be an int64 array of source columns in 0..{d - 1}")
    if codes.dtype != np.int32 or codes.ndim != 2 or codes.shape[0] != n or not codes.flags.f_contiguous:
        raise ValueError(f"codes must be a Fortran-ordered int32 ({n}, categorical columns) array")
    if (hot.dtype != np.int64 or hot.ndim != 2 or hot.shape[1] != 2 or not hot.flags.c_contiguous
            or (hot.size and not (0 <= hot[:, CODE].min() and hot[:, CODE].max() < codes.shape[1]))):
        raise ValueError("hot must be a C-ordered int64 (one-hot columns, 2) array of codes columns and levels")
    width = use.size + hot.shape[0]
    if scaling.dtype != np.float64 or scaling.shape != (width, 2) or not scaling.flags.c_contiguous:
        raise ValueError(f"scaling must be a C-ordered float64 ({width}, 2) array (CENTER, SCALE per output column)")
    if kept.dtype != np.bool_ or kept.shape not in ((0,), (n,)):
        raise ValueError(f"kept must be a bool mask of {n} rows, or empty")
    rows = n if kept.size == 0 else int(np.count_nonzero(kept))
    X = np.empty((rows, width), dtype=np.float32)
    written = write_blocks(cols, use, params, flags, scaling, codes, hot, kept, X)
    if written != rows:  # pragma: no cover - the kernel counts what the mask holds
        raise AssertionError(f"wrote {written} rows, expected {rows}")
    return X
