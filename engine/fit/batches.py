"""Where the fit loop gets its rows from.

The fit loop sees only this interface: a row count, a uniform sample, mini-batches drawn in
O(batch), and the data as a sequence of blocks for full passes. Every full pass is a map over
blocks with per-block partial results and one reduction in block order, so the same loop can
serve in-memory arrays, streamed Parquet row groups or Dask partitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

import kernels


class BatchSource(Protocol):
    n_rows: int
    n_features: int

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``size`` distinct rows drawn uniformly, and their row numbers (ascending)."""

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """A mini-batch of ``size`` rows drawn with replacement, in O(size)."""

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row number, float32 C-ordered block)`` covering every row once, in order."""


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
        idx = np.sort(rng.choice(self.n_rows, size=size, replace=False))
        out = np.empty((idx.size, self.n_features), dtype=np.float32)
        kernels.take_rows(self.X, idx, out)
        return out, idx

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return self.X[rng.integers(0, self.n_rows, size=size)]

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self.X
