"""Matching the segments of two fits: minimum total squared centroid distance (the Hungarian
method, ``scipy.optimize.linear_sum_assignment``), so that a refit keeps the ids of the segments
it is nearest to."""

from __future__ import annotations

import numpy as np


def match_centres(old: np.ndarray, new: np.ndarray) -> list[tuple[int, int]]:
    """``(old segment, new segment)`` pairs of least total squared distance: ``min(k_old, k_new)``
    pairs, in old order (a segment left unpaired when the counts differ is in no pair)."""
    from scipy.optimize import linear_sum_assignment  # scipy (with scikit-learn): off the CLI's start-up path

    a, b = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in sorted(zip(rows, cols))]


def relabel(labels: np.ndarray, centers: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A fit's labels and centres renumbered so that new segment ``j`` of pair ``(i, j)`` is ``i``
    (a full matching of equal counts)."""
    order = np.array([j for _, j in pairs], dtype=np.int64)  # new index of each old segment
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return inverse[labels].astype(labels.dtype), np.ascontiguousarray(centers[order])
