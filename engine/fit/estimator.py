"""A scikit-learn-style k-means estimator over numpy arrays or Polars frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.fit.batches import ArraySource
from engine.errors import InputError
from engine.fit.kmeans import FitParams, FitResult, fit_kmeans
from engine.fit.kmeans import assign_rows
from engine.fit.threads import thread_limit


def as_matrix(X: Any) -> np.ndarray:
    """float32, C-ordered, finite 2-D matrix from a numpy array or a Polars DataFrame."""
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):
        X = X.to_numpy(order="c")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise InputError(f"expected a 2-D matrix, got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"expected at least one row and one column, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError("the matrix holds NaN or infinite values")
    return X


class KMeans:
    """MiniBatch k-means with k-means++ restarts and full-data Lloyd refinement (numba, all cores).

    >>> km = KMeans(n_clusters=4, seed=0).fit(X)
    >>> km.labels_, km.cluster_centers_, km.inertia_
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        seed: int = 0,
        n_init: int | None = None,
        init_sample: int = 32_768,
        batch_size: int = 4_096,
        max_iter: int = 300,
        tol: float = 1e-4,
        refine: bool = True,
        threads: int | None = None,
    ):
        self.params = FitParams(k=n_clusters, seed=seed, n_init=n_init, init_sample=init_sample,
                                batch_size=batch_size, max_iter=max_iter, tol=tol, refine=refine)
        self.threads = threads
        self.result_: FitResult | None = None

    @property
    def n_clusters(self) -> int:
        return self.params.k

    def fit(self, X: Any) -> KMeans:
        with thread_limit(self.threads):
            self.result_ = fit_kmeans(ArraySource(as_matrix(X)), self.params)
        return self

    def _fitted(self) -> FitResult:
        if self.result_ is None:
            raise InputError("this KMeans is not fitted yet; call fit() first")
        return self.result_

    @property
    def cluster_centers_(self) -> np.ndarray:
        return self._fitted().centers

    @property
    def labels_(self) -> np.ndarray:
        return self._fitted().labels

    @property
    def inertia_(self) -> float:
        return self._fitted().inertia

    @property
    def n_iter_(self) -> int:
        return self._fitted().n_iter

    def _matrix(self, X: Any) -> np.ndarray:
        """X as a float32 matrix with as many features as the fitted centres."""
        X = as_matrix(X)
        width = self.cluster_centers_.shape[1]
        if X.shape[1] != width:
            raise InputError(f"X has {X.shape[1]} features; the model was fitted on {width}")
        return X

    def predict(self, X: Any) -> np.ndarray:
        X = self._matrix(X)
        with thread_limit(self.threads):
            return assign_rows(X, self.cluster_centers_)[0]

    def fit_predict(self, X: Any) -> np.ndarray:
        return self.fit(X).labels_

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance from every row to every centre, shape (rows, k)."""
        X = self._matrix(X).astype(np.float64)
        C = self.cluster_centers_.astype(np.float64)
        d2 = (X**2).sum(1)[:, None] - 2.0 * X @ C.T + (C**2).sum(1)[None, :]
        return np.sqrt(np.maximum(d2, 0.0))

    def score(self, X: Any) -> float:
        """Negative SSE of X against the fitted centres (scikit-learn's convention)."""
        with thread_limit(self.threads):
            return -assign_rows(self._matrix(X), self.cluster_centers_)[2]
