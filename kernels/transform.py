"""One feature value through the missing-value fill, clipping and log1p; and a column of them.

The feature kernels (``kernels.moments``, ``kernels.matrix``) read float64 feature columns as one
(rows x columns) array in Fortran order, so each column is contiguous as Polars hands it over
(NaN where a value is missing), with one row of a parameter table and one flag word per column:

    params  f8[:, ::1]  (columns, 3)  LO, HI: clip bounds; FILL: the missing-value fill (NaN: none)
    flags   i8[::1]     (columns,)    CLIP | LOG1P

Each value goes through the same steps (``value``), fused into each kernel's pass:

    missing (not finite)  -> FILL (the median policy), else still missing
    clip (CLIP)           -> min(max(v, LO), HI)
    log1p (LOG1P)         -> log1p(v)

Layers here: ``value`` (one value, inlined into every kernel), ``transformed_into`` (a column, in
parallel) and ``transformed`` (the wrapper: checks and allocates). ``check_columns`` is the check
every feature wrapper shares.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import INLINE, PARALLEL

CLIP = 1
LOG1P = 2
#: Columns of the per-column parameter table.
LO, HI, FILL = 0, 1, 2
N_PARAMS = 3


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
def transformed_into(src, lo, hi, flag, fill, out):
    """One column's values after fill and transforms (NaN where still missing).

    src   f8[::1]  IN   raw values
    lo    float    IN   clip bounds
    hi    float    IN
    flag  int      IN   CLIP | LOG1P
    fill  float    IN   the missing-value fill (NaN: none)
    out   f8[::1]  OUT  transformed values
    """
    for i in prange(src.shape[0]):
        out[i] = value(src[i], lo, hi, flag, fill)


def check_columns(cols: np.ndarray, params: np.ndarray, flags: np.ndarray) -> None:
    """The feature columns and their parameter table and flags, as the feature kernels take them."""
    if not isinstance(cols, np.ndarray) or cols.dtype != np.float64 or cols.ndim != 2 or not cols.flags.f_contiguous:
        raise ValueError("cols must be a Fortran-ordered float64 (rows, columns) array")
    d = cols.shape[1]
    if params.dtype != np.float64 or params.shape != (d, N_PARAMS) or not params.flags.c_contiguous:
        raise ValueError(f"params must be a C-ordered float64 ({d}, {N_PARAMS}) array (LO, HI, FILL per column)")
    if flags.dtype != np.int64 or flags.shape != (d,):
        raise ValueError(f"flags must be an int64 array of {d} flag words")


def transformed(src: np.ndarray, params: np.ndarray, flag: int) -> np.ndarray:
    """One column's values (float64) after fill and transforms, for quantiles: ``params`` is
    its row of the parameter table (LO, HI, FILL), ``flag`` its flag word."""
    if src.dtype != np.float64 or src.ndim != 1:
        raise ValueError("src must be a 1-D float64 array")
    if params.shape != (N_PARAMS,):
        raise ValueError(f"params must hold {N_PARAMS} values (LO, HI, FILL)")
    out = np.empty(src.shape[0])
    transformed_into(src, params[LO], params[HI], int(flag), params[FILL], out)
    return out
