"""Other clustering algorithms beside k-means, scored exactly as k-means is: when is k-means the
right tool?

Each algorithm is fitted on one uniform sample of the scaled float32 matrix and then extended to
every row, and the extended partition of all rows is scored by ``engine.fit.scores.score_partition``
(the scorer the k-means runs use), so the rows of the table are comparable with a k-means fit:

* ``gmm``: full-covariance Gaussian mixture with ``k`` components; every row gets its most
  probable component (``predict``, in chunks of ~1M rows).
* ``ward``: agglomerative clustering with Ward linkage into ``k`` clusters. Memory is
  O(sample^2): SciPy builds the condensed float64 distance matrix, 1.6 GB at 20,000 rows, and
  copies it once, so the peak is about 3.2 GB there (measured; 12.8 GB at 40,000 rows). Time is
  O(sample^2) too: 23 s at 20,000 rows x 11 features on 2 cores.
* ``dbscan``: ``min_samples = 2 * d``; ``eps`` by the k-distance heuristic, the 90th percentile of
  the sample rows' distances to their ``min_samples``-th nearest neighbour (the row itself
  counting as the first, as DBSCAN counts it), so about 90% of the sample rows are core points.
* ``hdbscan``: ``min_cluster_size = max(25, sample // 200)``.

DBSCAN and HDBSCAN choose their own number of clusters (``k`` is ignored). Algorithms fitted on
the sample are extended by nearest centroid: sample rows keep the label the algorithm gave them,
and every other row (rows outside the sample and the sample's noise rows) goes to the nearest
centroid of the sample's clusters (``engine.fit.kmeans.assign_rows``). With the whole data as the
sample, ward, DBSCAN and HDBSCAN therefore return scikit-learn's own labels, noise aside.

An algorithm that finds fewer than two clusters gives a row with its count, no metrics and a note.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from engine.errors import InputError, did_you_mean
from engine.fit.kmeans import assign_rows
from engine.fit.scores import cluster_moments, sample_indices, score_partition
from engine.options import COMPARE_ALGORITHMS, COMPARE_SAMPLE, SEED

ALGORITHMS = COMPARE_ALGORITHMS
PREDICT_CHUNK = 1 << 20  # rows per GaussianMixture.predict call
EPS_PERCENTILE = 90.0
METRIC_KEYS = ("inertia", "silhouette", "silhouette_low", "silhouette_high", "calinski_harabasz", "davies_bouldin")


@dataclass(frozen=True)
class Partition:
    """One algorithm's partition of every row of the matrix."""

    labels: np.ndarray | None  # (n,) int32 in 0..found-1; None when fewer than 2 clusters were found
    found: int  # clusters actually found
    noise_share: float | None = None  # share of the sample's rows the algorithm called noise
    note: str | None = None


def compact(labels: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Non-negative labels below ``k`` renumbered 0..found-1 in their order (int32), and found."""
    present = np.bincount(labels, minlength=k) > 0
    found = int(present.sum())
    if found == k:
        return labels.astype(np.int32, copy=False), found
    return (np.cumsum(present) - 1).astype(np.int32)[labels], found


def few_clusters(found: int, noise_share: float | None, detail: str) -> Partition:
    what = "no cluster: every sample row is noise" if found == 0 else "a single cluster"
    return Partition(None, found, noise_share, f"found {what} ({detail}); no indices to compare")


def extend(X: np.ndarray, idx: np.ndarray, sample_labels: np.ndarray, noise: bool, detail: str) -> Partition:
    """Every row's label from the labels (-1: noise) of the sample rows ``idx``: sample rows keep
    theirs, the others go to the nearest centroid of the sample's clusters."""
    kept = sample_labels >= 0
    noise_share = float((~kept).mean()) if noise else None
    if not kept.any():
        return few_clusters(0, noise_share, detail)
    own, found = compact(sample_labels[kept], int(sample_labels.max()) + 1)
    if found < 2:
        return few_clusters(found, noise_share, detail)
    _, centroids, _, _ = cluster_moments(X[idx[kept]], own, found)
    labels, _, _ = assign_rows(X, centroids)
    labels[idx[kept]] = own
    return Partition(labels, found, noise_share, detail if noise else None)


def fit_gmm(X: np.ndarray, idx: np.ndarray, k: int, seed: int) -> Partition:
    """Full-covariance Gaussian mixture fitted on the sample; every row's most probable component."""
    gm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X[idx])
    raw = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], PREDICT_CHUNK):
        raw[start:start + PREDICT_CHUNK] = gm.predict(X[start:start + PREDICT_CHUNK])
    labels, found = compact(raw, k)
    notes = [] if gm.converged_ else [f"EM did not converge in {gm.max_iter} iterations"]
    if found < k:
        notes.append(f"{k - found} of {k} components took no rows")
    note = "; ".join(notes) or None
    if found < 2:
        return few_clusters(found, None, note or f"n_components={k}")
    return Partition(labels, found, None, note)


def fit_ward(X: np.ndarray, idx: np.ndarray, k: int, seed: int) -> Partition:
    """Ward-linkage agglomerative clustering of the sample (O(sample^2) memory), extended by centroid."""
    sample_labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(X[idx])
    return extend(X, idx, sample_labels, noise=False, detail=f"n_clusters={k}")


def dbscan_eps(S: np.ndarray, min_samples: int, percentile: float = EPS_PERCENTILE) -> float:
    """k-distance heuristic: the ``percentile`` of each row's distance to its ``min_samples``-th
    nearest neighbour in ``S``, the row itself counting as the first (DBSCAN's core-point rule)."""
    dist, _ = NearestNeighbors(n_neighbors=min_samples).fit(S).kneighbors(S)
    return float(np.percentile(dist[:, -1], percentile))


def fit_dbscan(X: np.ndarray, idx: np.ndarray, k: int, seed: int) -> Partition:
    """DBSCAN on the sample with ``min_samples = 2 d`` and the k-distance ``eps``; its own cluster count."""
    min_samples = 2 * X.shape[1]
    if min_samples > idx.size:
        return few_clusters(0, 1.0, f"min_samples={min_samples} is more than the {idx.size} sample rows")
    S = X[idx]
    eps = dbscan_eps(S, min_samples)
    detail = (f"eps={eps:.4g} ({EPS_PERCENTILE:g}th percentile of the {min_samples}-NN distance), "
              f"min_samples={min_samples}")
    # eps must be positive: 0 when most rows coincide, and then they form one cluster anyway.
    sample_labels = DBSCAN(eps=max(eps, np.finfo(np.float64).tiny), min_samples=min_samples).fit_predict(S)
    return extend(X, idx, sample_labels, noise=True, detail=detail)


def fit_hdbscan(X: np.ndarray, idx: np.ndarray, k: int, seed: int) -> Partition:
    """HDBSCAN on the sample with ``min_cluster_size = max(25, sample // 200)``; its own cluster count."""
    size = max(25, idx.size // 200)
    detail = f"min_cluster_size={size}"
    if size > idx.size:
        return few_clusters(0, 1.0, f"{detail} is more than the {idx.size} sample rows")
    sample_labels = HDBSCAN(min_cluster_size=size, copy=True).fit_predict(X[idx])
    return extend(X, idx, sample_labels, noise=True, detail=detail)


Fitter = Callable[[np.ndarray, np.ndarray, int, int], Partition]
FITTERS: dict[str, Fitter] = {"gmm": fit_gmm, "ward": fit_ward, "dbscan": fit_dbscan, "hdbscan": fit_hdbscan}


def check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    for name in names:
        if name not in FITTERS:
            raise InputError(f"unknown algorithm {name!r}{did_you_mean(name, ALGORITHMS)}; "
                             f"choose from {', '.join(ALGORITHMS)}")
    return list(names)


def validate(X: np.ndarray, k: int, names: list[str], sample: int) -> None:
    if X.ndim != 2 or X.shape[0] < 2:
        raise InputError(f"need a 2-D matrix of at least 2 rows, not shape {X.shape}")
    if sample < 2:
        raise InputError(f"sample must be at least 2, not {sample}")
    m = min(sample, X.shape[0])
    if {"gmm", "ward"} & set(names) and not 1 <= k <= m:
        raise InputError(f"k must be between 1 and the {m} sample rows for gmm and ward, not {k}")


def sample_rows(n: int, sample: int, seed: int) -> np.ndarray:
    """The rows every algorithm is fitted on: ``min(sample, n)`` distinct rows, ascending."""
    return sample_indices(n, min(sample, n), np.random.default_rng([seed, 3]))


def result_row(name: str, part: Partition, X: np.ndarray, eval_idx: np.ndarray, seed: int,
               sample: int, seconds: float) -> dict:
    if part.labels is None:
        scores = dict.fromkeys(METRIC_KEYS)
    else:
        scores = score_partition(X, part.labels, part.found, eval_idx, seed)
    return {"algorithm": name, "k": part.found, **scores, "noise_share": part.noise_share,
            "sample": sample, "seconds": round(seconds, 4), "note": part.note}


def compare_algorithms(X: np.ndarray, k: int, names: Sequence[str], *, eval_idx: np.ndarray,
                       sample: int = COMPARE_SAMPLE, seed: int = SEED) -> list[dict]:
    """Fit each algorithm in ``names`` on one uniform sample of ``X``, extend it to every row and
    score the partition on all rows (silhouette on ``eval_idx``). One dict per name, in order::

        algorithm, k (clusters found), inertia, silhouette, silhouette_low, silhouette_high,
        calinski_harabasz, davies_bouldin, noise_share, sample, seconds (fit + extend), note
    """
    names = check_names(names)
    X = np.ascontiguousarray(X, dtype=np.float32)
    validate(X, k, names, sample)
    idx = sample_rows(X.shape[0], sample, seed)
    rows = []
    for name in names:
        t0 = time.perf_counter()
        part = FITTERS[name](X, idx, k, seed)
        rows.append(result_row(name, part, X, eval_idx, seed, int(idx.size), time.perf_counter() - t0))
    return rows
