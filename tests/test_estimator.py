"""``engine.KMeans``: a scikit-learn estimator (check_estimator, Pipeline, clone, GridSearchCV)
on numpy arrays and Polars frames, with the engine's own fit underneath."""

from __future__ import annotations

import subprocess
import sys

import naive
import numpy as np
import numpy.testing as npt
import polars as pl
import pytest
from conftest import REPO
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import engine
from engine.errors import InputError
from engine.fit.batches import ArraySource
from engine.fit.estimator import EstimatorInputError, KMeans
from engine.fit.kmeans import FitParams, fit_kmeans


@pytest.fixture(scope="module")
def X():
    X, _ = make_blobs(n_samples=1500, n_features=4, centers=5, cluster_std=1.5, random_state=0)
    return np.ascontiguousarray(X, dtype=np.float32)


@pytest.fixture(scope="module")
def fitted(X):
    return KMeans(n_clusters=5, random_state=0).fit(X)


def frame(X):
    return pl.DataFrame({f"f{j}": X[:, j] for j in range(X.shape[1])})


# ----------------------------------------------------------------------------- scikit-learn's checks

# Every check of the installed scikit-learn passes, so none is listed as expected to fail, and
# xfail_strict would turn a listed check that passes into a failure. Two checks skip themselves
# (pytest reports the reason): check_sample_weights_pandas_series (pandas is not installed) and
# check_array_api_input (needs SCIPY_ARRAY_API=1; the estimator declares no array API support).
# n_clusters is small because several checks fit 16 rows holding 4 distinct values (scikit-learn
# checks its own KMeans with n_clusters=2); the second instance has an init sample smaller than
# those data sets, so the checks also run the sample, mini-batch and full-Lloyd path.
@parametrize_with_checks(
    [KMeans(n_clusters=3), KMeans(n_clusters=2, n_init=2, init_sample=7, batch_size=5)],
    xfail_strict=True,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_engine_kmeans_is_the_estimator():
    assert engine.KMeans is KMeans
    assert "KMeans" in dir(engine)


def test_cli_and_engine_import_do_not_load_sklearn():
    script = "import sys, cli, engine; import engine.api; print(sorted(m for m in sys.modules if m.startswith('sklearn')))"
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    proc = subprocess.run([sys.executable, "-X", "importtime", "cli.py", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert "sklearn" not in proc.stderr  # -X importtime lists every module imported, on stderr
    assert "engine" in proc.stderr or "click" in proc.stderr  # the import log was written


# ----------------------------------------------------------------------------- same model as the engine


@pytest.mark.parametrize("n,seed", [(1_500, 0), (1_500, 7), (50_000, 3)])
def test_labels_equal_the_engine_fit_for_the_same_seed(n, seed):
    X, _ = make_blobs(n_samples=n, n_features=5, centers=4, cluster_std=2.0, random_state=seed)
    X = np.ascontiguousarray(X, dtype=np.float32)
    km = KMeans(n_clusters=4, random_state=seed).fit(X)
    res = fit_kmeans(ArraySource(X), FitParams(k=4, seed=seed))
    assert np.array_equal(km.labels_, res.labels)
    assert km.cluster_centers_.tobytes() == res.centers.tobytes()
    assert km.inertia_ == res.inertia and km.n_iter_ == res.n_iter


def test_random_state_none_and_randomstate_draw_a_seed(X):
    a = KMeans(n_clusters=5, random_state=np.random.RandomState(3)).fit(X)
    b = KMeans(n_clusters=5, random_state=np.random.RandomState(3)).fit(X)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    seed = np.random.RandomState(3).randint(np.iinfo(np.int32).max)
    assert np.array_equal(a.labels_, KMeans(n_clusters=5, random_state=seed).fit(X).labels_)
    c = KMeans(n_clusters=5, random_state=None).fit(X)
    npt.assert_allclose(c.inertia_, naive.sse(X, c.labels_, c.cluster_centers_), rtol=1e-5)


# ----------------------------------------------------------------------------- Pipeline, clone, GridSearchCV


def test_in_a_pipeline_with_a_scaler(X):
    raw = X.astype(np.float64) * np.array([1.0, 10.0, 100.0, 1000.0]) + 5.0
    pipe = make_pipeline(StandardScaler(), KMeans(n_clusters=5, random_state=1)).fit(raw)
    scaled = StandardScaler().fit_transform(raw)
    direct = KMeans(n_clusters=5, random_state=1).fit(scaled)
    assert np.array_equal(pipe[-1].labels_, direct.labels_)
    assert np.array_equal(pipe.predict(raw), direct.predict(scaled))
    npt.assert_array_equal(pipe.transform(raw), direct.transform(scaled))
    assert pipe.score(raw) == direct.score(scaled)
    assert np.array_equal(make_pipeline(StandardScaler(), KMeans(n_clusters=5, random_state=1)).fit_predict(raw),
                          direct.labels_)


def test_clone_copies_the_parameters_not_the_fit(fitted, X):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "labels_")
    with pytest.raises(NotFittedError):
        copy.predict(X)
    assert np.array_equal(copy.fit(X).labels_, fitted.labels_)
    other = clone(KMeans(n_clusters=5, random_state=0)).set_params(n_clusters=3, random_state=4)
    assert other.get_params()["n_clusters"] == 3
    assert np.unique(other.fit(X).labels_).size == 3


def test_grid_search_over_n_clusters_scores_by_negative_sse(X):
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    grid = GridSearchCV(KMeans(random_state=0), {"n_clusters": [2, 3, 5]}, cv=cv).fit(X)
    means = grid.cv_results_["mean_test_score"]
    # the estimator's own score: minus the held-out SSE against the centres fitted on the rest
    for k, mean in zip(grid.cv_results_["param_n_clusters"], means):
        folds = []
        for train, test in cv.split(X):
            km = KMeans(n_clusters=k, random_state=0).fit(X[train])
            labels, _ = naive.assign(X[test], km.cluster_centers_)
            folds.append(-naive.sse(X[test], labels, km.cluster_centers_))
        npt.assert_allclose(mean, np.mean(folds), rtol=1e-5)
    assert (np.diff(means) > 0).all()  # more centres, smaller held-out SSE
    assert grid.best_params_ == {"n_clusters": 5}
    assert np.array_equal(grid.best_estimator_.labels_, KMeans(n_clusters=5, random_state=0).fit(X).labels_)


# ----------------------------------------------------------------------------- fitted model


def test_fit_attributes(X, fitted):
    assert fitted.n_clusters == 5
    assert fitted.cluster_centers_.shape == (5, 4)
    assert fitted.labels_.shape == (1500,)
    assert np.array_equal(np.unique(fitted.labels_), np.arange(5))
    npt.assert_allclose(fitted.inertia_, naive.sse(X, fitted.labels_, fitted.cluster_centers_), rtol=1e-5)
    assert fitted.n_iter_ >= 1
    assert fitted.n_features_in_ == 4
    assert not hasattr(fitted, "feature_names_in_")  # numpy input has no column names
    assert list(fitted.get_feature_names_out()) == [f"kmeans{j}" for j in range(5)]


def test_predict_on_training_data_equals_labels(X, fitted):
    assert np.array_equal(fitted.predict(X), fitted.labels_)


def test_predict_matches_naive_on_new_data(fitted):
    Y = np.random.default_rng(1).normal(scale=6.0, size=(700, 4))
    labels = fitted.predict(Y)
    ref, _ = naive.assign(Y.astype(np.float32), fitted.cluster_centers_)
    ties = naive.near_ties(Y.astype(np.float32), fitted.cluster_centers_)
    assert not ((labels != ref) & ~ties).any()


def test_fit_predict_equals_fit_then_labels(X, fitted):
    labels = KMeans(n_clusters=5, random_state=0).fit_predict(X)
    assert np.array_equal(labels, fitted.labels_)


def test_polars_frame_gives_the_same_model_and_feature_names(X, fitted):
    df = frame(X)
    km = KMeans(n_clusters=5, random_state=0).fit(df)
    assert list(km.feature_names_in_) == ["f0", "f1", "f2", "f3"]
    assert np.array_equal(km.cluster_centers_, fitted.cluster_centers_)
    assert np.array_equal(km.labels_, fitted.labels_)
    assert np.array_equal(km.predict(df), fitted.labels_)
    npt.assert_array_equal(km.transform(df), fitted.transform(X))
    assert km.score(df) == fitted.score(X)
    with pytest.raises(ValueError, match="feature names"):
        km.predict(df.rename({"f0": "other"}))


def test_float64_and_fortran_input(X, fitted):
    km = KMeans(n_clusters=5, random_state=0).fit(np.asfortranarray(X.astype(np.float64)))
    assert np.array_equal(km.labels_, fitted.labels_)


def test_transform_equals_distances_to_centres(X, fitted):
    Y = np.random.default_rng(2).normal(scale=6.0, size=(300, 4)).astype(np.float32)
    for data in (X, Y):
        got = fitted.transform(data)
        C = fitted.cluster_centers_.astype(np.float64)
        ref = np.sqrt(((data.astype(np.float64)[:, None, :] - C[None, :, :]) ** 2).sum(axis=2))
        assert got.shape == (data.shape[0], 5)
        npt.assert_allclose(got, ref, rtol=1e-12)
        assert np.array_equal(got.argmin(axis=1)[~naive.near_ties(data, C)],
                              fitted.predict(data)[~naive.near_ties(data, C)])


def test_score_is_negative_sse(X, fitted):
    npt.assert_allclose(fitted.score(X), -fitted.inertia_, rtol=1e-6)
    Y = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    labels, _ = naive.assign(Y, fitted.cluster_centers_)
    npt.assert_allclose(fitted.score(Y), -naive.sse(Y, labels, fitted.cluster_centers_), rtol=1e-5)
    w = np.random.default_rng(4).uniform(0, 3, 200)
    npt.assert_allclose(fitted.score(Y, sample_weight=w), -naive.sse(Y, labels, fitted.cluster_centers_, w), rtol=1e-5)


def test_threads_option_gives_identical_results(X, fitted):
    km = KMeans(n_clusters=5, random_state=0, threads=1).fit(X)
    assert np.array_equal(km.cluster_centers_, fitted.cluster_centers_)
    assert np.array_equal(km.labels_, fitted.labels_)


# ----------------------------------------------------------------------------- sample_weight


def test_sample_weight_is_a_weighted_fit(X):
    w = np.random.default_rng(5).uniform(0.0, 4.0, X.shape[0])
    km = KMeans(n_clusters=5, random_state=0).fit(X, sample_weight=w)
    res = fit_kmeans(ArraySource(X), FitParams(k=5, seed=0), w)
    assert np.array_equal(km.labels_, res.labels) and km.inertia_ == res.inertia
    sums, totals = naive.weighted_sums(X, w, km.labels_, 5)
    npt.assert_allclose(km.cluster_centers_, sums / totals[:, None], rtol=1e-4, atol=1e-4)
    npt.assert_allclose(km.inertia_, naive.sse(X, km.labels_, km.cluster_centers_, w), rtol=1e-5)
    assert np.array_equal(KMeans(n_clusters=5, random_state=0).fit_predict(X, sample_weight=w), km.labels_)


def test_integer_sample_weight_equals_repeating_rows():
    X, _ = make_blobs(n_samples=400, n_features=3, centers=4, cluster_std=0.4, random_state=6)
    w = np.random.default_rng(6).integers(0, 4, 400)
    weighted = KMeans(n_clusters=4, random_state=0).fit(X, sample_weight=w)
    repeated = KMeans(n_clusters=4, random_state=0).fit(np.repeat(X, w, axis=0))
    npt.assert_allclose(weighted.inertia_, repeated.inertia_, rtol=1e-5)
    assert adjusted_rand_score(weighted.predict(X), repeated.predict(X)) == 1.0
    npt.assert_allclose(np.sort(weighted.cluster_centers_, axis=0), np.sort(repeated.cluster_centers_, axis=0),
                        rtol=1e-5, atol=1e-5)


def test_unit_sample_weight_equals_none(X, fitted):
    km = KMeans(n_clusters=5, random_state=0).fit(X, sample_weight=np.ones(X.shape[0]))
    assert np.array_equal(km.labels_, fitted.labels_) and km.inertia_ == fitted.inertia_


@pytest.mark.parametrize(
    "weights,match",
    [([1.0, 2.0], "shape"), (-np.ones(1500), "(?i)negative"), (np.zeros(1500), "zero"), (np.r_[np.ones(2), np.zeros(1498)],
                                                                                       "positive weight")],
)
def test_bad_sample_weight_is_a_value_error_and_an_input_error(X, weights, match):
    with pytest.raises(EstimatorInputError, match=match) as info:
        KMeans(n_clusters=5).fit(X, sample_weight=weights)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InputError)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_unfitted_is_an_input_error_and_not_fitted_error(X, method):
    with pytest.raises(InputError, match="not fitted"):
        getattr(KMeans(n_clusters=3), method)(X)
    with pytest.raises(NotFittedError):
        getattr(KMeans(n_clusters=3), method)(X)
    with pytest.raises(AttributeError):
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
    with pytest.raises(InputError, match=f"X has {d} features, but KMeans is expecting 4 features"):
        getattr(fitted, method)(Y)


@pytest.mark.parametrize("shape", [(0, 4), (10, 0), (12,)])
def test_bad_shapes_are_input_errors(shape):
    with pytest.raises(EstimatorInputError):
        KMeans(n_clusters=2).fit(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(n_clusters=0), "n_clusters"),
        (dict(n_clusters=2000), "n_samples=1500 should be >= n_clusters=2000"),
        (dict(n_clusters=2.5), "n_clusters"),
        (dict(n_init=0), "n_init"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_iter=-1), "max_iter"),
        (dict(tol=-1.0), "tol"),
        (dict(threads=0), "threads"),
        (dict(random_state=-3), "random_state"),
    ],
)
def test_bad_parameters_are_value_errors_at_fit(X, params, match):
    km = KMeans(**params)  # scikit-learn convention: __init__ stores, fit checks
    assert km.get_params()[next(iter(params))] == next(iter(params.values()))
    with pytest.raises(EstimatorInputError, match=match):
        km.fit(X)


def test_fewer_distinct_rows_than_clusters_is_an_input_error():
    X = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)
    with pytest.raises(EstimatorInputError, match="distinct rows"):
        KMeans(n_clusters=4).fit(X)
