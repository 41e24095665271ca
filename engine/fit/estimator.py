"""``engine.KMeans``: the engine's k-means as a scikit-learn estimator.

It derives from scikit-learn's ``BaseEstimator``, ``ClusterMixin`` and ``TransformerMixin``, so
it works in a ``Pipeline``, with ``clone`` and in ``GridSearchCV``, and it passes
``sklearn.utils.estimator_checks`` (tests/test_estimator.py lists the checks it is expected to
fail, with the reasons). Input is validated by scikit-learn (numpy arrays, Polars or pandas
frames, lists) and fitted in float32 by ``engine.fit.kmeans.fit_kmeans``: the same centres and
labels as the engine's own fit for the same ``random_state``.

This is the only module that imports scikit-learn at import time; ``engine`` exposes ``KMeans``
as a lazy attribute so that the CLI never loads it.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from engine.errors import InputError
from engine.fit.batches import ArraySource
from engine.fit.kmeans import FitParams, FitResult, assign_rows, fit_kmeans
from engine.fit.threads import thread_limit


class EstimatorInputError(InputError, ValueError):
    """Bad input or a bad parameter: an engine ``InputError`` that scikit-learn sees as the
    ``ValueError`` its conventions (and ``check_estimator``) expect."""


class EstimatorNotFittedError(InputError, NotFittedError):
    """predict/transform/score before fit: an ``InputError`` and scikit-learn's ``NotFittedError``."""


@contextlib.contextmanager
def estimator_errors() -> Iterator[None]:
    """Re-raise a ValueError from scikit-learn's validation or an engine InputError as both."""
    try:
        yield
    except EstimatorInputError:
        raise
    except (InputError, ValueError) as e:
        raise EstimatorInputError(str(e)) from e


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """MiniBatch k-means with k-means++ restarts and full-data Lloyd refinement (numba, all cores).

    >>> km = KMeans(n_clusters=4, random_state=0).fit(X)
    >>> km.labels_, km.cluster_centers_, km.inertia_, km.n_iter_
    >>> make_pipeline(StandardScaler(), KMeans(n_clusters=4)).fit_predict(X)

    Parameters are stored as given and checked by ``fit``. ``random_state``: an int seed (the
    engine's ``--seed``; the default 0 makes every fit reproducible), or None / a
    ``numpy.random.RandomState`` to draw one. ``n_init``: k-means++ restarts (None: 10 when all
    rows fit in ``init_sample``, else 8). ``init_sample``: rows the restarts run on.
    ``batch_size``: mini-batch rows. ``max_iter``: Lloyd passes at most. ``tol``: centre shift
    that ends Lloyd, relative to the mean feature variance. ``refine``: Lloyd passes over all rows
    after the mini-batch steps. ``threads``: numba threads (None: all cores); results are the
    same on any count.

    Fitted attributes: ``cluster_centers_`` (k, d) float32, ``labels_`` (n,) int32,
    ``inertia_`` (sum of squared distances to the own centre, weighted with ``sample_weight``),
    ``n_iter_`` (full-data Lloyd passes), ``n_features_in_``, ``feature_names_in_`` (for a frame
    with string column names) and ``result_``, the engine's full ``FitResult`` (restarts,
    mini-batch steps, timings, squared distances).
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        random_state: int | np.random.RandomState | None = 0,
        n_init: int | None = None,
        init_sample: int = 32_768,
        batch_size: int = 4_096,
        max_iter: int = 300,
        tol: float = 1e-4,
        refine: bool = True,
        threads: int | None = None,
    ):
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.n_init = n_init
        self.init_sample = init_sample
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.refine = refine
        self.threads = threads

    # ------------------------------------------------------------------ parameters

    def _seed(self) -> int:
        """The engine seed: ``random_state`` itself when it is an int, else one drawn from it."""
        if is_int(self.random_state):
            if self.random_state < 0:
                raise EstimatorInputError(f"random_state must be a non-negative int, not {self.random_state}")
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _fit_params(self, n_rows: int) -> FitParams:
        k = self.n_clusters
        if not is_int(k) or k < 1:
            raise EstimatorInputError(f"n_clusters must be an int >= 1, not {k!r}")
        if n_rows < k:
            raise EstimatorInputError(f"n_samples={n_rows} should be >= n_clusters={k}")
        lowest = {"init_sample": 1, "batch_size": 1, "max_iter": 0, **({} if self.n_init is None else {"n_init": 1})}
        for name, low in lowest.items():
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise EstimatorInputError(f"{name} must be an int >= {low}, not {value!r}")
        if not isinstance(self.tol, numbers.Real) or not self.tol >= 0:
            raise EstimatorInputError(f"tol must be a number >= 0, not {self.tol!r}")
        if self.threads is not None and (not is_int(self.threads) or self.threads < 1):
            raise EstimatorInputError(f"threads must be None or an int >= 1, not {self.threads!r}")
        return FitParams(k=int(k), seed=self._seed(), n_init=self.n_init, init_sample=int(self.init_sample),
                         batch_size=int(self.batch_size), max_iter=int(self.max_iter), tol=float(self.tol),
                         refine=bool(self.refine))

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMeans:
        """Fit on X (rows x features). ``y`` is ignored. ``sample_weight``: one non-negative weight
        per row; a row of weight w counts w times in every mean, the SSE and the k-means++ draws."""
        with estimator_errors():
            X = validate_data(self, X, dtype=np.float32, order="C")
            weights = None
            if sample_weight is not None:
                weights = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            params = self._fit_params(X.shape[0])
            with thread_limit(self.threads):
                result: FitResult = fit_kmeans(ArraySource(X), params, weights)
        self.result_ = result
        self.cluster_centers_ = result.centers
        self.labels_ = result.labels
        self.inertia_ = float(result.inertia)
        self.n_iter_ = int(result.n_iter)
        return self

    # ------------------------------------------------------------------ after fit

    @property
    def _n_features_out(self) -> int:
        """Columns of ``transform`` (one per centre), for ``get_feature_names_out``."""
        return self.cluster_centers_.shape[0]

    def _matrix(self, X: Any) -> np.ndarray:
        """X checked against the fit: float32, C-ordered, finite, as many features (and the same
        names) as the training data."""
        try:
            check_is_fitted(self)
        except NotFittedError as e:
            raise EstimatorNotFittedError(str(e)) from None
        with estimator_errors():
            return validate_data(self, X, dtype=np.float32, order="C", reset=False)

    def predict(self, X: Any) -> np.ndarray:
        """The nearest centre of every row (int32), with the kernel the fit uses."""
        X = self._matrix(X)
        with thread_limit(self.threads):
            return assign_rows(X, self.cluster_centers_)[0]

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance from every row to every centre, shape (rows, k), float64."""
        X = self._matrix(X).astype(np.float64)
        out = np.empty((X.shape[0], self.cluster_centers_.shape[0]))
        for j, centre in enumerate(self.cluster_centers_.astype(np.float64)):
            diff = X - centre
            out[:, j] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return out

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Negative (weighted) SSE of X against the fitted centres: higher is better, as
        scikit-learn's convention for scores."""
        X = self._matrix(X)
        with thread_limit(self.threads):
            _, dist2, sse = assign_rows(X, self.cluster_centers_)
        if sample_weight is None:
            return -sse
        with estimator_errors():
            w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        return -float((w * dist2).sum())
