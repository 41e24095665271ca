"""Numba kernels over numpy arrays and scalars only: no Polars, DuckDB or I/O here.

Data is float32 and C-contiguous; accumulators are float64. Options live in ``kernels.config``.
"""

from kernels.assign import assign, lloyd_pass, reduce_chunks
from kernels.config import chunk_count
from kernels.core import take_rows
from kernels.indices import dispersion, label_sums
from kernels.kmeanspp import kmeanspp
from kernels.minibatch import minibatch_update
from kernels.silhouette import silhouette_sorted
from kernels.transform import (
    CLIP,
    LOG1P,
    column_stats,
    level_counts,
    merge_moments,
    put_column,
    transformed,
    write_matrix,
)
from kernels.weighted import kmeanspp_weighted, lloyd_pass_weighted, minibatch_update_weighted, reduce_weighted

__all__ = [
    "CLIP",
    "LOG1P",
    "column_stats",
    "level_counts",
    "merge_moments",
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
