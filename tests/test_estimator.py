"""The scikit-learn-style ``engine.fit.estimator.KMeans`` on numpy arrays and Polars frames."""

from __future__ import annotations

import naive
import numpy as np
import numpy.testing as npt
import polars as pl
import pytest
from sklearn.datasets import make_blobs

from engine.errors import InputError
from engine.fit.estimator import KMeans


@pytest.fixture(scope="module")
def X():
    X, _ = make_blobs(n_samples=1500, n_features=4, centers=5, cluster_std=1.5, random_state=0)
    return np.ascontiguousarray(X, dtype=np.float32)


@pytest.fixture(scope="module")
def fitted(X):
    return KMeans(n_clusters=5, seed=0).fit(X)


def frame(X):
    return pl.DataFrame({f"f{j}": X[:, j] for j in range(X.shape[1])})


def test_fit_attributes(X, fitted):
    assert fitted.n_clusters == 5
    assert fitted.cluster_centers_.shape == (5, 4)
    assert fitted.labels_.shape == (1500,)
    assert np.array_equal(np.unique(fitted.labels_), np.arange(5))
    npt.assert_allclose(fitted.inertia_, naive.sse(X, fitted.labels_, fitted.cluster_centers_), rtol=1e-5)
    assert fitted.n_iter_ >= 1


def test_predict_on_training_data_equals_labels(X, fitted):
    assert np.array_equal(fitted.predict(X), fitted.labels_)


def test_predict_matches_naive_on_new_data(fitted):
    Y = np.random.default_rng(1).normal(scale=6.0, size=(700, 4))
    labels = fitted.predict(Y)
    ref, _ = naive.assign(Y.astype(np.float32), fitted.cluster_centers_)
    ties = naive.near_ties(Y.astype(np.float32), fitted.cluster_centers_)
    assert not ((labels != ref) & ~ties).any()


def test_fit_predict_equals_fit_then_labels(X, fitted):
    labels = KMeans(n_clusters=5, seed=0).fit_predict(X)
    assert np.array_equal(labels, fitted.labels_)


def test_polars_frame_gives_the_same_model(X, fitted):
    df = frame(X)
    km = KMeans(n_clusters=5, seed=0).fit(df)
    assert np.array_equal(km.cluster_centers_, fitted.cluster_centers_)
    assert np.array_equal(km.labels_, fitted.labels_)
    assert np.array_equal(km.predict(df), fitted.labels_)
    npt.assert_array_equal(km.transform(df), fitted.transform(X))
    assert km.score(df) == fitted.score(X)


def test_float64_and_fortran_input(X, fitted):
    km = KMeans(n_clusters=5, seed=0).fit(np.asfortranarray(X.astype(np.float64)))
    assert np.array_equal(km.labels_, fitted.labels_)


def test_transform_equals_distances_to_centres(X, fitted):
    Y = np.random.default_rng(2).normal(scale=6.0, size=(300, 4)).astype(np.float32)
    for data in (X, Y):
        got = fitted.transform(data)
        C = fitted.cluster_centers_.astype(np.float64)
        ref = np.sqrt(((data.astype(np.float64)[:, None, :] - C[None, :, :]) ** 2).sum(axis=2))
        assert got.shape == (data.shape[0], 5)
        npt.assert_allclose(got, ref, rtol=1e-5)


def test_score_is_negative_sse(X, fitted):
    npt.assert_allclose(fitted.score(X), -fitted.inertia_, rtol=1e-6)
    Y = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    labels, _ = naive.assign(Y, fitted.cluster_centers_)
    npt.assert_allclose(fitted.score(Y), -naive.sse(Y, labels, fitted.cluster_centers_), rtol=1e-5)


def test_threads_option_gives_identical_results(X, fitted):
    km = KMeans(n_clusters=5, seed=0, threads=1).fit(X)
    assert np.array_equal(km.cluster_centers_, fitted.cluster_centers_)
    assert np.array_equal(km.labels_, fitted.labels_)


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_unfitted_is_an_input_error(X, method):
    with pytest.raises(InputError, match="not fitted"):
        getattr(KMeans(n_clusters=3), method)(X)
    with pytest.raises(InputError):
        KMeans(n_clusters=3).labels_


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_an_input_error(X, fitted, bad):
    Y = X[:50].copy()
    Y[7, 2] = bad
    with pytest.raises(InputError):
        KMeans(n_clusters=3).fit(Y)
    for method in ("predict", "transform", "score"):
        with pytest.raises(InputError):
            getattr(fitted, method)(Y)
    df = frame(X[:50]).with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("f1")).alias("f1"))
    with pytest.raises(InputError):
        KMeans(n_clusters=3).fit(df)


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
@pytest.mark.parametrize("d", [3, 5])
def test_wrong_number_of_features_is_an_input_error(fitted, method, d):
    Y = np.random.default_rng(4).normal(size=(20, d)).astype(np.float32)
    with pytest.raises(InputError, match="features"):
        getattr(fitted, method)(Y)


@pytest.mark.parametrize("shape", [(0, 4), (10, 0), (12,)])
def test_bad_shapes_are_input_errors(shape):
    with pytest.raises(InputError):
        KMeans(n_clusters=2).fit(np.zeros(shape, dtype=np.float32))


def test_bad_k_is_an_input_error(X):
    with pytest.raises(InputError):
        KMeans(n_clusters=0).fit(X)
    with pytest.raises(InputError):
        KMeans(n_clusters=2000).fit(X)
