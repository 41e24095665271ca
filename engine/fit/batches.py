"""Where the fit loop gets its rows from.

The fit loop sees only this interface: a row count, a uniform sample, mini-batches drawn in
O(batch), and the data as a sequence of blocks for full passes. Every full pass is a map over
blocks with per-block partial results and one reduction in block order, so the same loop can
serve in-memory arrays, streamed Parquet row groups or Dask partitions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

import kernels
from engine.input import blocks as layout
from engine.fit.scores import sample_indices


class BatchSource(Protocol):
    n_rows: int
    n_features: int

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``size`` distinct rows drawn uniformly, and their row numbers (ascending)."""

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """A mini-batch of ``size`` rows drawn with replacement, in O(size)."""

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row number, float32 C-ordered block)`` covering every row once, in order: blocks
        of ``engine.input.blocks.BLOCK_ROWS`` rows (the last one shorter), whatever the source, so a
        pass's per-block partial results reduce to the same bits in memory and streamed."""

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows numbered ``rows``, as a float32 matrix."""

    def row_state(self, k: int) -> RowState:
        """Where a fit's passes keep each row's label and squared distance."""


class RowState:
    """Every row's label and squared distance, in memory: ``block`` gives views, ``store`` has
    nothing to do."""

    def __init__(self, n_rows: int):
        self.labels = np.full(n_rows, -1, dtype=np.int32)
        self.dist2: np.ndarray | None = np.empty(n_rows, dtype=np.float32)

    def block(self, start: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        return self.labels[start:start + rows], self.dist2[start:start + rows]

    def store(self, start: int, labels: np.ndarray, dist2: np.ndarray) -> None:
        pass


class CompactRowState:
    """A streamed fit's labels in the narrowest integer type that holds k (1 byte per row for k up
    to 127), and no distances: a block's labels are widened into a reused int32 buffer for the
    kernel and narrowed back; the final pass computes the distances again (the same kernel
    primitive, so the same bits)."""

    def __init__(self, n_rows: int, k: int):
        dtype = np.int8 if k <= 127 else np.int16 if k <= 32_767 else np.int32
        self.labels = np.full(n_rows, -1, dtype=dtype)
        self.dist2 = None
        size = min(layout.BLOCK_ROWS, max(n_rows, 1))
        self.wide, self.d2 = np.empty(size, dtype=np.int32), np.empty(size, dtype=np.float32)

    def block(self, start: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        wide = self.wide[:rows]
        wide[:] = self.labels[start:start + rows]
        return wide, self.d2[:rows]

    def store(self, start: int, labels: np.ndarray, dist2: np.ndarray) -> None:
        self.labels[start:start + labels.shape[0]] = labels


def sample_by_number(source: BatchSource, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``ArraySource.sample``'s draw (the same row numbers for the same generator) read through
    ``source.take``: for sources whose rows are not in memory (a scratch file, a cluster)."""
    if size >= source.n_rows:
        return source.take(np.arange(source.n_rows)), np.arange(source.n_rows)
    idx = sample_indices(source.n_rows, size, rng)
    return source.take(idx), idx


class ArraySource:
    """An in-memory float32 matrix."""

    def __init__(self, X: np.ndarray):
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D matrix, got shape {X.shape}")
        self.X = np.ascontiguousarray(X, dtype=np.float32)
        self.n_rows, self.n_features = self.X.shape

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if size >= self.n_rows:
            return self.X, np.arange(self.n_rows)
        idx = sample_indices(self.n_rows, size, rng)
        out = np.empty((idx.size, self.n_features), dtype=np.float32)
        kernels.take_rows(self.X, idx, out)
        return out, idx

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return self.X[rng.integers(0, self.n_rows, size=size)]

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        size = layout.BLOCK_ROWS
        for start in range(0, max(self.n_rows, 1), size):
            yield start, self.X[start:start + size]

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.n_features), dtype=np.float32)
        kernels.take_rows(self.X, np.asarray(rows, dtype=np.int64), out)
        return out

    def row_state(self, k: int) -> RowState:
        return RowState(self.n_rows)


class ScratchSource:
    """A float32 matrix in a scratch file: written block by block once (``append``), then read
    back block by block into one reused buffer for every full pass. Samples, mini-batches and
    relocation candidates are read by row number (``os.preadv``; no memory map).

    The draws are those of ``ArraySource`` over the same rows, so a fit is the same in memory
    and streamed."""

    def __init__(self, path: Path, n_features: int):
        self.path = Path(path)
        self.n_features = n_features
        self.n_rows = 0
        self.row_bytes = 4 * n_features
        self.file = open(self.path, "w+b", buffering=0)  # noqa: SIM115 (closed by close())

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.n_features:
            raise ValueError(f"expected blocks of {self.n_features} columns, got shape {block.shape}")
        view = memoryview(block).cast("B")
        written = 0
        while written < len(view):
            written += self.file.write(view[written:])
        self.n_rows += block.shape[0]

    def close(self) -> None:
        self.file.close()

    def read_into(self, start: int, out: np.ndarray) -> np.ndarray:
        """Rows ``start .. start + len(out) - 1`` into ``out`` (float32, C order)."""
        view = memoryview(out).cast("B")
        done = 0
        while done < len(view):
            got = os.preadv(self.file.fileno(), [view[done:]], start * self.row_bytes + done)
            if got <= 0:
                raise OSError(f"{self.path}: short read at row {start}")
            done += got
        return out

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        size = layout.BLOCK_ROWS
        buffer = np.empty((min(size, max(self.n_rows, 1)), self.n_features), dtype=np.float32)
        for start in range(0, max(self.n_rows, 1), size):
            yield start, self.read_into(start, buffer[:min(size, self.n_rows - start)])

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size > 1 and (np.diff(rows) < 0).any():  # any order: gathered sorted, then put back
            order = np.argsort(rows, kind="stable")
            out = np.empty((rows.size, self.n_features), dtype=np.float32)
            out[order] = self.take(rows[order])
            return out
        if rows.size < 65_536:  # a sample (silhouette, projection): one read each, not a pass over the file
            return self.take_each(rows)
        out = np.empty((rows.size, self.n_features), dtype=np.float32)
        size = layout.BLOCK_ROWS
        done = 0
        for start, block in self.blocks():
            hi = int(np.searchsorted(rows, start + size))
            if hi > done:
                kernels.take_rows(block, rows[done:hi] - start, out[done:hi])
                done = hi
        return out

    def row_state(self, k: int) -> CompactRowState:
        return CompactRowState(self.n_rows, k)

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_by_number(self, size, rng)

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return self.take_each(rng.integers(0, self.n_rows, size=size))

    def take_each(self, rows: np.ndarray) -> np.ndarray:
        """The rows numbered ``rows`` (any order), one read each (about 1 µs a row from the page
        cache). Not a memory map: the kernel maps whole large folios of a mapped file on a fault,
        so random reads of a mapping made the resident set the size of the file."""
        out = np.empty((rows.shape[0], self.n_features), dtype=np.float32)
        fd, width = self.file.fileno(), self.row_bytes
        for i, r in enumerate(rows.tolist()):
            if os.preadv(fd, [memoryview(out[i])], r * width) != width:
                raise OSError(f"{self.path}: short read at row {r}")
        return out
