"""A bottom-k hash sample: the same uniform sample of rows whatever the blocks, threads or workers.

Each row's key is a 64-bit hash of (seed, global row number) (SplitMix64's finaliser); the sample
is the ``size`` rows with the smallest keys, ties broken by row number. A row's key depends on
nothing but the seed and its position, so the chosen rows are the same when the data comes
whole, in blocks of any size, or from partitions merged in any order; and the sample is every
row when there are at most ``size`` of them.

Layers: ``row_key`` (one row, inlined), ``block_keys`` (a block's keys, in parallel), and
``BottomK`` (the wrapper: keeps the running sample and merges each block's candidates).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from kernels.config import INLINE, PARALLEL

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


@njit(cache=True, **INLINE)
def row_key(seed, row):
    """SplitMix64 of ``seed * GOLDEN + row + 1`` (uint64 arithmetic, wrapping)."""
    z = uint64(seed) * uint64(GOLDEN) + uint64(row) + uint64(1)
    z = (z ^ (z >> uint64(30))) * uint64(MIX1)
    z = (z ^ (z >> uint64(27))) * uint64(MIX2)
    return z ^ (z >> uint64(31))


@njit(cache=True, **PARALLEL)
def block_keys(seed, offset, out):
    """Keys of the rows ``offset .. offset + len(out) - 1``.

    seed    int       IN   the run's seed (0 or more)
    offset  int       IN   global row number of the block's first row
    out     u8[::1]   OUT  (rows,) keys
    """
    for i in prange(out.shape[0]):
        out[i] = row_key(seed, offset + i)


def smallest(keys: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """Positions of the ``size`` smallest (key, row) pairs, in row order."""
    if keys.shape[0] > size:
        cut = np.partition(keys, size - 1)[size - 1]
        pick = np.flatnonzero(keys <= cut)
        if pick.size > size:  # equal keys at the cut: the lower rows win
            order = np.lexsort((rows[pick], keys[pick]))
            pick = pick[order[:size]]
    else:
        pick = np.arange(keys.shape[0])
    return pick[np.argsort(rows[pick], kind="stable")]


class BottomK:
    """The running bottom-k sample of a stream of blocks: global row numbers and each sampled
    row's values (any per-row arrays), kept in row order.

    >>> sample = BottomK(size=1_000_000, seed=0)
    >>> sample.add(offset, X_block=X_block, ids=ids_block)   # blocks in any order, any sizes
    >>> sample.rows, sample.values["X_block"]
    """

    def __init__(self, size: int, seed: int):
        if size < 1 or seed < 0:
            raise ValueError(f"size {size} must be at least 1 and seed {seed} 0 or more")
        self.size, self.seed = size, seed
        self.keys = np.empty(0, dtype=np.uint64)
        self.rows = np.empty(0, dtype=np.int64)
        self.values: dict[str, np.ndarray] = {}

    def add(self, offset: int, **columns: np.ndarray) -> None:
        """Offer the rows ``offset ..`` of a block; ``columns`` are per-row arrays (the same names
        every time), of which the sampled rows are kept."""
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns of unequal lengths {sorted(lengths)}")
        n = lengths.pop()
        keys = np.empty(n, dtype=np.uint64)
        block_keys(self.seed, offset, keys)
        rows = np.arange(offset, offset + n, dtype=np.int64)
        local = smallest(keys, rows, self.size)  # a block can add no more than these
        keys, rows = np.concatenate([self.keys, keys[local]]), np.concatenate([self.rows, rows[local]])
        merged = {name: np.concatenate([self.values[name], col[local]]) if name in self.values else col[local]
                  for name, col in columns.items()}
        pick = smallest(keys, rows, self.size)
        self.keys, self.rows = keys[pick], rows[pick]
        self.values = {name: col[pick] for name, col in merged.items()}


class KnownSample:
    """``BottomK``'s sample when the row count is known before the blocks come: the rows are found
    once (``sample_rows``), so a block only has its sampled rows picked out, no keys computed or
    merged. After the last block ``rows`` and ``values`` are ``BottomK``'s; before it, they hold
    the sampled rows seen so far (a ``BottomK`` would also hold rows it later drops)."""

    def __init__(self, n: int, size: int, seed: int):
        self.size, self.seed = size, seed
        self.chosen = sample_rows(n, size, seed)
        self.rows = np.empty(0, dtype=np.int64)
        self.values: dict[str, np.ndarray] = {}

    def add(self, offset: int, **columns: np.ndarray) -> None:
        n = {len(v) for v in columns.values()}.pop()
        lo, hi = np.searchsorted(self.chosen, [offset, offset + n])
        picked = self.chosen[lo:hi]
        self.rows = np.concatenate([self.rows, picked])
        self.values = {name: np.concatenate([self.values[name], col[picked - offset]]) if name in self.values
                       else col[picked - offset] for name, col in columns.items()}


@njit(cache=True, **PARALLEL)
def count_below(seed, n, cut, n_chunks, counts):
    """Rows of ``0 .. n - 1`` whose key is at most ``cut``, per chunk.

    seed, n, cut  int      IN   the run's seed, the row count, the key bound (uint64)
    n_chunks      int      IN   chunks of ``ceil(n / n_chunks)`` rows
    counts        i8[::1]  OUT  (n_chunks,) rows at or below ``cut`` per chunk
    """
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        found = 0
        for r in range(c * step, min(n, (c + 1) * step)):
            if row_key(seed, r) <= cut:
                found += 1
        counts[c] = found


@njit(cache=True, **PARALLEL)
def rows_below(seed, n, cut, n_chunks, starts, rows, keys):
    """The rows counted by ``count_below``, in row order, with their keys.

    starts  i8[::1]  IN   (n_chunks,) each chunk's first slot in ``rows`` (exclusive cumulative counts)
    rows    i8[::1]  OUT  row numbers
    keys    u8[::1]  OUT  their keys
    """
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        at = starts[c]
        for r in range(c * step, min(n, (c + 1) * step)):
            key = row_key(seed, r)
            if key <= cut:
                rows[at] = r
                keys[at] = key
                at += 1


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The rows (in order) a ``BottomK(size, seed)`` keeps of ``n`` rows, without holding n keys:
    the keys are uniform, so the rows whose key is below a bound somewhat above the expected
    ``size``-th smallest are found in one parallel pass (doubling the bound on the rare miss), and
    the ``size`` smallest of them are the sample. What a reader needs to find the rows a pass
    sampled."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    n_chunks = max(1, min(4096, n // 65_536))
    share = min(1.0, 1.2 * size / n + 64.0 / n)
    while True:
        cut = np.uint64(min(2**64 - 1, int(share * 2**64)))
        counts = np.empty(n_chunks, dtype=np.int64)
        count_below(seed, n, cut, n_chunks, counts)
        if counts.sum() >= size or share >= 1.0:
            break
        share = min(1.0, share * 2)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rows, keys = np.empty(int(counts.sum()), dtype=np.int64), np.empty(int(counts.sum()), dtype=np.uint64)
    rows_below(seed, n, cut, n_chunks, starts, rows, keys)
    return rows[smallest(keys, rows, size)]
