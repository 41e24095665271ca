"""Quality indices computed with the kernels."""

from __future__ import annotations

import numpy as np

from kernels import chunk_count, dispersion, label_sums, reduce_chunks, silhouette_sorted
from kernels.hashsample import sample_rows


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


#: Above this many rows a large sample is drawn by hash (``sample_indices``).
HASH_DRAW_ROWS = 1 << 20


def sample_indices(n_rows: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` distinct row numbers drawn uniformly (all rows when ``size >= n_rows``), ascending.

    Up to ``HASH_DRAW_ROWS`` rows, or for a small share, this is numpy's own draw (quick there).
    A larger share of more rows is the bottom-k hash sample (``kernels.hashsample.sample_rows``)
    keyed by a number drawn from ``rng``: numpy shuffles an array of all ``n_rows`` row numbers
    for it, 0.30 s for 1,000,000 of 10,000,000 rows here, against 0.06 s."""
    if size >= n_rows:
        return np.arange(n_rows)
    if n_rows <= HASH_DRAW_ROWS or size * 50 <= n_rows:
        return np.sort(rng.choice(n_rows, size=size, replace=False))
    return sample_rows(n_rows, size, int(rng.integers(2**63)))


def cluster_moments(X: np.ndarray, labels: np.ndarray, k: int, known: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster counts, means (float64), sums of distances and of squared distances to the mean.

    ``known``: the per-cluster sums and counts of these labels when the fit's last pass already
    has them (the same chunked sums, so the same bits): one pass over the rows instead of two."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    n, d = X.shape
    nc = chunk_count(n, k * d)
    if known is not None:
        total, sizes = known
    else:
        sums = np.empty((nc, k, d))
        counts = np.empty((nc, k), dtype=np.int64)
        label_sums(X, labels, sums, counts)
        total, sizes = reduce_chunks(sums, counts)
    means = total / np.maximum(sizes, 1)[:, None]
    dist = np.empty((nc, k))
    sq = np.empty((nc, k))
    dispersion(X, labels, means, dist, sq)
    return sizes, means, dist.sum(axis=0), sq.sum(axis=0)


def calinski_harabasz(X: np.ndarray, labels: np.ndarray, k: int, moments=None) -> float | None:
    """Calinski-Harabasz index as ``sklearn.metrics.calinski_harabasz_score``, from partial sums."""
    sizes, means, _, sq = moments if moments is not None else cluster_moments(X, labels, k)
    present = sizes > 0
    n, m = int(sizes.sum()), int(present.sum())
    if m < 2 or m >= n:
        return None
    overall = (means[present] * sizes[present, None]).sum(axis=0) / n
    extra = float((sizes[present] * ((means[present] - overall) ** 2).sum(axis=1)).sum())
    intra = float(sq[present].sum())
    return 1.0 if intra == 0.0 else extra * (n - m) / (intra * (m - 1))


def davies_bouldin(X: np.ndarray, labels: np.ndarray, k: int, moments=None) -> float | None:
    """Davies-Bouldin index as ``sklearn.metrics.davies_bouldin_score``, from partial sums."""
    sizes, means, dist, _ = moments if moments is not None else cluster_moments(X, labels, k)
    present = sizes > 0
    if int(present.sum()) < 2 or int(present.sum()) >= int(sizes.sum()):
        return None
    centres = means[present]
    spread = dist[present] / sizes[present]
    gaps = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))
    if np.allclose(spread, 0.0) or np.allclose(gaps, 0.0):
        return 0.0
    gaps[gaps == 0.0] = np.inf
    return float(np.max((spread[:, None] + spread[None, :]) / gaps, axis=1).mean())


def silhouette_interval(values: np.ndarray, rng: np.random.Generator, n_boot: int = 1000,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean silhouette of a sample: how far the estimate
    from ``len(values)`` rows may be from the silhouette of all rows."""
    m = len(values)
    if m < 2:
        return float("nan"), float("nan")
    means = np.empty(n_boot)
    block = max(1, min(n_boot, (1 << 22) // m))  # resamples drawn together: ~16 MiB of indices
    for b in range(0, n_boot, block):
        idx = rng.integers(0, m, size=(min(block, n_boot - b), m), dtype=np.int32)
        means[b:b + idx.shape[0]] = values[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def adjusted_rand_score(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (as ``sklearn.metrics.adjusted_rand_score``), from their
    contingency table; numpy only, so a sweep does not import scikit-learn."""
    a = np.unique(np.asarray(a), return_inverse=True)[1].ravel()
    b = np.unique(np.asarray(b), return_inverse=True)[1].ravel()
    n = a.size
    if n < 2:
        return 1.0
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1.0)).sum() / 2.0)

    both = pairs(table)
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1.0) / 2.0)
    best = (rows + cols) / 2.0
    if best == expected:  # both labelings are one cluster, or each row its own
        return 1.0
    return float((both - expected) / (best - expected))


def score_partition(X: np.ndarray, labels: np.ndarray, k: int, eval_idx: np.ndarray, seed: int,
                    known: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Every index of one partition of all rows of ``X``: SSE about the cluster means, the exact
    silhouette of the rows ``eval_idx`` with a bootstrap interval, Calinski-Harabasz, Davies-Bouldin."""
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    moments = cluster_moments(X, labels, k, known)
    sil = low = high = None
    sample_labels = labels[eval_idx]
    present = np.unique(sample_labels).size
    if 2 <= present < len(eval_idx):
        values = silhouette_values(X[eval_idx], sample_labels, k)
        sil = float(values.mean())
        low, high = silhouette_interval(values, np.random.default_rng([seed, 2]))
    return {
        "inertia": float(moments[3].sum()),
        "silhouette": sil,
        "silhouette_low": low,
        "silhouette_high": high,
        "calinski_harabasz": calinski_harabasz(X, labels, k, moments),
        "davies_bouldin": davies_bouldin(X, labels, k, moments),
    }
