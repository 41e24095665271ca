"""Numba kernels over numpy arrays and scalars only: no Polars, DuckDB or I/O here.

Data is float32 and C-contiguous; accumulators are float64. Options live in ``kernels.config``,
shared primitives in ``kernels.core``. One algorithm per module; the feature kernels
(``transform``, ``moments``, ``matrix``, ``levels``) come in three layers: a serial njit kernel,
a parallel driver, and a Python wrapper that checks the arrays and allocates the outputs.
"""

from kernels.assign import assign, lloyd_pass, reduce_chunks
from kernels.config import chunk_count
from kernels.core import put_column, take_rows
from kernels.indices import dispersion, label_sums
from kernels.kmeanspp import kmeanspp
from kernels.levels import level_counts
from kernels.matrix import write_matrix
from kernels.minibatch import minibatch_update
from kernels.moments import ColumnMoments, column_stats
from kernels.silhouette import silhouette_sorted
from kernels.transform import CLIP, FILL, HI, LO, LOG1P, N_PARAMS, transformed
from kernels.weighted import kmeanspp_weighted, lloyd_pass_weighted, minibatch_update_weighted, reduce_weighted

__all__ = [
    "CLIP",
    "FILL",
    "HI",
    "LO",
    "LOG1P",
    "N_PARAMS",
    "ColumnMoments",
    "column_stats",
    "level_counts",
    "put_column",
    "transformed",
    "write_matrix",
    "assign",
    "chunk_count",
    "dispersion",
    "kmeanspp",
    "kmeanspp_weighted",
    "label_sums",
    "lloyd_pass",
    "lloyd_pass_weighted",
    "minibatch_update",
    "minibatch_update_weighted",
    "reduce_chunks",
    "reduce_weighted",
    "silhouette_sorted",
    "take_rows",
]
