"""Quality indices computed with the kernels."""

from __future__ import annotations

import numpy as np

from kernels import silhouette_sorted


def silhouette_values(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Exact silhouette coefficient of every row of ``X`` (use on a sample: O(rows^2))."""
    labels = np.asarray(labels, dtype=np.int32)
    order = np.argsort(labels, kind="stable")
    XT = np.ascontiguousarray(np.asarray(X, dtype=np.float32)[order].T)
    sorted_labels = np.ascontiguousarray(labels[order])
    starts = np.searchsorted(sorted_labels, np.arange(k + 1)).astype(np.int64)
    out_sorted = np.empty(len(labels), dtype=np.float64)
    silhouette_sorted(XT, sorted_labels, starts, out_sorted)
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out


def silhouette_score(X: np.ndarray, labels: np.ndarray, k: int) -> float | None:
    """Mean silhouette, as ``sklearn.metrics.silhouette_score``; ``None`` when undefined
    (fewer than two clusters present, or every row its own cluster)."""
    present = np.unique(labels).size
    if present < 2 or present >= len(labels):
        return None
    return float(silhouette_values(X, labels, k).mean())


def sample_indices(n_rows: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` distinct row numbers drawn uniformly (all rows when ``size >= n_rows``), ascending."""
    if size >= n_rows:
        return np.arange(n_rows)
    return np.sort(rng.choice(n_rows, size=size, replace=False))
