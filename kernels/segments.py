"""Per-segment moments of many columns: count, mean, sum of squared deviations, min, max and sum.

The insight stage's figures (profile means, z-scores, sums, rates) are arithmetic on these, so
they can be accumulated during the pass that assigns every row, instead of reading the input a
second time.

Rows split into chunks of ``CHUNK_ROWS`` counted from the first row of the data, not from the
block at hand: a block must start on a chunk boundary, and then the chunks, their partial
moments and the order they are folded in are the same whatever the block sizes (in memory, a
stream of blocks or a cluster's partitions) and the thread count. Within a chunk the values are
summed in row order; the chunks are folded in chunk order with Chan, Golub and LeVeque's update.
The plain sum is kept beside the mean (chunk sums in row order, added in chunk order): a sum of
integer values is then exact, which ``mean * count`` is not.
A row whose label is negative (dropped) is skipped; so is a value that is not finite.

Layers: ``chunk_moments`` (one chunk, serial), ``block_moments`` (every chunk of a block in
parallel, each into its own accumulator), ``fold_moments`` (the chunks, in order, into running
totals), and ``SegmentMoments`` (the wrapper: checks, allocates, folds block after block).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.config import JIT, PARALLEL

#: Rows per chunk: a global constant, so chunks never depend on blocks or threads.
CHUNK_ROWS = 1 << 16
#: Planes of a moments table (planes, segments, columns).
COUNT, MEAN, M2, MIN, MAX, SUM = 0, 1, 2, 3, 4, 5
N_PLANES = 6


@njit(cache=True, **JIT)
def chunk_moments(values, labels, a, b, out):
    """Rows ``a:b``.

    values  f8[:, :]     IN   (rows, columns), any order
    labels  i4[::1]      IN   (rows,) segment of each row, negative: skip the row
    a, b    int          IN   the chunk's rows
    out     f8[:, :, ::1] OUT (6, k, columns) COUNT, MEAN, M2 (about MEAN), MIN, MAX, SUM of the
                              finite values per segment (MIN inf and MAX -inf where none)
    """
    k, d = out.shape[1], out.shape[2]
    for s in range(k):
        for j in range(d):
            out[COUNT, s, j] = 0.0
            out[MEAN, s, j] = 0.0
            out[M2, s, j] = 0.0
            out[MIN, s, j] = np.inf
            out[MAX, s, j] = -np.inf
            out[SUM, s, j] = 0.0
    for j in range(d):
        for i in range(a, b):
            s = labels[i]
            v = values[i, j]
            if s >= 0 and np.isfinite(v):
                out[COUNT, s, j] += 1.0
                out[MEAN, s, j] += v
                out[MIN, s, j] = min(out[MIN, s, j], v)
                out[MAX, s, j] = max(out[MAX, s, j], v)
        for s in range(k):
            out[SUM, s, j] = out[MEAN, s, j]
            if out[COUNT, s, j] > 0:
                out[MEAN, s, j] /= out[COUNT, s, j]
        for i in range(a, b):
            s = labels[i]
            v = values[i, j]
            if s >= 0 and np.isfinite(v):
                t = v - out[MEAN, s, j]
                out[M2, s, j] += t * t


@njit(cache=True, **PARALLEL)
def block_moments(values, labels, chunk_rows, out):
    """``chunk_moments`` of every chunk of a block, in parallel.

    values      f8[:, :]        IN   (rows, columns); row 0 starts a chunk
    labels      i4[::1]         IN   (rows,)
    chunk_rows  int             IN   rows per chunk (the last one may be shorter)
    out         f8[:, :, :, ::1] OUT (n_chunks, 6, k, columns)
    """
    n = values.shape[0]
    for c in prange(out.shape[0]):
        a = c * chunk_rows
        chunk_moments(values, labels, a, min(n, a + chunk_rows), out[c])


@njit(cache=True, **JIT)
def fold_moments(total, chunks):
    """Fold the chunks' moments into ``total``, in chunk order.

    total   f8[:, :, ::1]    INOUT (6, k, columns) running moments
    chunks  f8[:, :, :, ::1] IN    (n_chunks, 6, k, columns)
    """
    k, d = total.shape[1], total.shape[2]
    for c in range(chunks.shape[0]):
        for s in range(k):
            for j in range(d):
                m = chunks[c, COUNT, s, j]
                if m == 0:
                    continue
                n = total[COUNT, s, j]
                both = n + m
                delta = chunks[c, MEAN, s, j] - total[MEAN, s, j]
                total[MEAN, s, j] += delta * m / both
                total[M2, s, j] += chunks[c, M2, s, j] + delta * delta * (n * m / both)
                total[COUNT, s, j] = both
                total[MIN, s, j] = min(total[MIN, s, j], chunks[c, MIN, s, j])
                total[MAX, s, j] = max(total[MAX, s, j], chunks[c, MAX, s, j])
                total[SUM, s, j] += chunks[c, SUM, s, j]


def empty_moments(k: int, d: int) -> np.ndarray:
    """A moments table of nothing yet: counts, means, M2 and sums zero, MIN inf, MAX -inf."""
    table = np.zeros((N_PLANES, k, d))
    table[MIN] = np.inf
    table[MAX] = -np.inf
    return table


class SegmentMoments:
    """Per-segment moments of ``d`` columns, accumulated block after block in row order.

    >>> acc = SegmentMoments(k=4, d=3)
    >>> acc.add(values_block_0, labels_block_0)   # blocks of any size, in row order
    >>> acc.table[MEAN]                           # (k, d) means; COUNT, M2, MIN, MAX, SUM likewise
    """

    def __init__(self, k: int, d: int, chunk_rows: int = CHUNK_ROWS):
        if k < 1 or d < 0 or chunk_rows < 1:
            raise ValueError(f"k={k}, d={d} and chunk_rows={chunk_rows} must be positive")
        self.k, self.d, self.chunk_rows = k, d, chunk_rows
        self.rows = 0
        self.table = empty_moments(k, d)

    def add(self, values: np.ndarray, labels: np.ndarray) -> None:
        """The next block: ``values`` (rows, d) float64 and ``labels`` (rows,) int32. Every block but
        the last must hold a whole number of chunks, so the chunks stay fixed."""
        self.fold(self.chunks(values, labels), np.shape(labels)[0])

    def fold(self, chunks: np.ndarray, rows: int) -> None:
        """Fold the next block's per-chunk moments (``chunks`` of its ``rows`` rows, computed
        anywhere: a cluster's worker) into the totals, in chunk order."""
        if self.rows % self.chunk_rows:
            raise ValueError(f"a block after {self.rows} rows does not start on a {self.chunk_rows}-row chunk")
        fold_moments(self.table, chunks)
        self.rows += rows

    def chunks(self, values: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """A block's per-chunk moments (n_chunks, 6, k, d), not folded yet."""
        if np.ndim(values) != 2 or np.shape(values)[1] != self.d:
            raise ValueError(f"expected ({np.shape(labels)[0]}, {self.d}) values, got {np.shape(values)}")
        return segment_chunks(values, labels, self.k, self.chunk_rows)


def segment_chunks(values: np.ndarray, labels: np.ndarray, k: int, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Per-chunk moments (n_chunks, 6, k, columns) of a block's ``values`` (rows, columns), any
    memory order, by ``labels`` (rows,): each column's independent of the others, so the moments
    of a block's columns computed in parts and put side by side are the same bits."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    if values.ndim != 2 or labels.shape != (values.shape[0],):
        raise ValueError(f"expected {labels.shape[0]} rows of values for {labels.shape[0]} labels, got {values.shape}")
    if labels.size and labels.max() >= k:
        raise ValueError(f"label {labels.max()} is not below k={k}")
    chunks = np.empty((-(-values.shape[0] // chunk_rows), N_PLANES, k, values.shape[1]))
    block_moments(values, labels, chunk_rows, chunks)
    return chunks
