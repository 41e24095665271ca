"""The fit loop (``engine.fit.kmeans``) against naive references and scikit-learn."""

from __future__ import annotations


import naive
from conftest import jit_only, num_threads
import numpy as np
import numpy.testing as npt
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from engine.fit import batches, scores
from engine.fit.batches import ArraySource
from engine.errors import InputError
from engine.fit.kmeans import FitParams, fit_kmeans, lloyd


def blobs(n, d, k, seed, std=1.5):
    X, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return np.ascontiguousarray(X, dtype=np.float32), y


def assert_consistent(X, res, k):
    """k non-empty clusters; labels and inertia are those of the returned centres."""
    assert res.centers.shape == (k, X.shape[1]) and res.centers.dtype == np.float32
    assert res.labels.shape == (X.shape[0],)
    assert np.array_equal(np.unique(res.labels), np.arange(k))
    ref, ref_d2 = naive.assign(X, res.centers)
    ties = naive.near_ties(X, res.centers)
    assert not ((res.labels != ref) & ~ties).any()
    npt.assert_allclose(res.inertia, naive.sse(X, res.labels, res.centers), rtol=1e-5)
    npt.assert_allclose(res.dist2, ref_d2, rtol=1e-5, atol=1e-6 * ref_d2.max())


def sklearn_inertia(X, k):
    # One OpenMP thread: spinning OpenMP workers crawl on a small, busy machine.
    with threadpool_limits(limits=1):
        return SkKMeans(k, n_init=10, random_state=0).fit(X.astype(np.float64)).inertia_


@pytest.mark.parametrize("seed,d,k", [(0, 2, 4), (1, 5, 7), (2, 10, 3)])
def test_fit_small_matches_sklearn(seed, d, k):
    X, _ = blobs(2000, d, k, seed, std=2.5)
    res = fit_kmeans(ArraySource(X), FitParams(k=k))
    assert_consistent(X, res, k)
    assert res.n_steps == 0  # every row fits in the init sample: no mini-batch phase
    assert res.inertia <= 1.01 * sklearn_inertia(X, k)


def test_fit_overlapping_clusters_matches_sklearn():
    X, _ = blobs(2000, 3, 8, seed=4, std=4.0)
    res = fit_kmeans(ArraySource(X), FitParams(k=8))
    assert_consistent(X, res, 8)
    assert res.inertia <= 1.01 * sklearn_inertia(X, 8)


def test_fit_larger_than_init_sample_runs_minibatch():
    X, _ = blobs(60_000, 8, 6, seed=5, std=2.0)
    params = FitParams(k=6)
    assert X.shape[0] > params.init_sample
    res = fit_kmeans(ArraySource(X), params)
    assert res.n_steps > 0
    assert len(res.restarts) == params.restarts(X.shape[0]) == 8  # the documented default on large data
    assert_consistent(X, res, 6)
    assert res.inertia <= 1.01 * sklearn_inertia(X, 6)


def test_fit_larger_than_init_sample_without_refine_is_one_assignment():
    X, _ = blobs(20_000, 4, 5, seed=6, std=2.0)
    res = fit_kmeans(ArraySource(X), FitParams(k=5, init_sample=2_000, refine=False))
    assert res.n_steps > 0 and res.n_iter == 1
    assert_consistent(X, res, 5)


def test_same_seed_is_bitwise_identical():
    X, _ = blobs(20_000, 5, 6, seed=7, std=3.0)
    params = FitParams(k=6, init_sample=3_000)
    a = fit_kmeans(ArraySource(X), params)
    b = fit_kmeans(ArraySource(X), params)
    assert np.array_equal(a.centers, b.centers)
    assert np.array_equal(a.labels, b.labels)
    assert a.inertia == b.inertia


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
@pytest.mark.parametrize("n,init_sample", [(3_000, 32_768), (20_000, 3_000)])
def test_fit_identical_for_1_and_2_threads(n, init_sample):
    X, _ = blobs(n, 6, 5, seed=8, std=3.0)
    params = FitParams(k=5, init_sample=init_sample)
    with num_threads(1):
        one = fit_kmeans(ArraySource(X), params)
    with num_threads(2):
        two = fit_kmeans(ArraySource(X), params)
    assert np.array_equal(one.centers, two.centers)
    assert np.array_equal(one.labels, two.labels)
    assert np.array_equal(one.dist2, two.dist2)
    assert one.inertia == two.inertia


def test_lloyd_relocates_an_empty_cluster():
    rng = np.random.default_rng(9)
    X = np.ascontiguousarray(np.vstack([rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 10]), dtype=np.float32)
    centers = np.array([[0.0, 0.0], [10.0, 10.0], [100.0, 100.0]])  # the third one wins no row
    assert (naive.assign(X, centers)[0] != 2).all()
    state = lloyd(ArraySource(X), centers, 300, 1e-8)
    assert np.array_equal(np.unique(state.labels), np.arange(3))
    ref, _ = naive.assign(X, state.centers)
    assert np.array_equal(state.labels, ref)
    npt.assert_allclose(state.inertia, naive.sse(X, state.labels, state.centers), rtol=1e-5)


def test_lloyd_relocates_several_empty_clusters():
    rng = np.random.default_rng(10)
    X = np.ascontiguousarray(rng.normal(size=(500, 3)), dtype=np.float32)
    centers = np.vstack([X[:2].astype(np.float64), np.full((4, 3), 1e3)])  # four empty centres
    state = lloyd(ArraySource(X), centers, 300, 1e-8)
    assert np.array_equal(np.unique(state.labels), np.arange(6))


def counting_passes(monkeypatch) -> list[int]:
    """Counts the calls of the Lloyd-pass kernel (one per block per pass; ArraySource has one block)."""
    import kernels

    calls: list[int] = []
    real = kernels.lloyd_pass

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(kernels, "lloyd_pass", counted)
    return calls


@pytest.mark.parametrize("max_iter", [1, 2, 3])
def test_lloyd_runs_at_most_max_iter_passes(max_iter, monkeypatch):
    """``max_iter`` counts passes over the data, the last one assigning the rows to the returned
    centres; n_iter reports them."""
    X, _ = blobs(5000, 4, 5, seed=11, std=2.0)
    centers = X[:5].astype(np.float64)  # five rows of the data: far from converged after 3 passes
    calls = counting_passes(monkeypatch)
    state = lloyd(ArraySource(X), centers, max_iter, 0.0)
    assert len(calls) == state.n_iter == max_iter
    assert np.array_equal(state.labels, naive.assign(X, state.centers)[0])
    unlimited = lloyd(ArraySource(X), centers, 300, 0.0)
    assert unlimited.n_iter > 3  # the limit, not convergence, stopped the passes above


@pytest.mark.parametrize("max_iter", [1, 2])
def test_fit_params_max_iter_bounds_every_lloyd_run(max_iter, monkeypatch):
    """Restarts on the sample, the subsample and the full-data refinement each run at most
    ``FitParams.max_iter`` passes."""
    X, _ = blobs(20_000, 4, 5, seed=12, std=2.0)
    calls = counting_passes(monkeypatch)
    res = fit_kmeans(ArraySource(X), FitParams(k=5, n_init=2, init_sample=2_000, mid_sample_min=4_000, max_iter=max_iter))
    assert [r["sample_iter"] for r in res.restarts] == [max_iter, max_iter]
    assert res.n_iter == max_iter
    assert len(calls) == 4 * max_iter  # two restarts, the subsample, the full data


def test_lloyd_with_one_pass_returns_labels_of_the_returned_centres():
    # The docstring promises labels/distances of the returned centres, also when the only
    # allowed pass finds an empty cluster and relocates it.
    rng = np.random.default_rng(9)
    X = np.ascontiguousarray(np.vstack([rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 10]), dtype=np.float32)
    centers = np.array([[0.0, 0.0], [10.0, 10.0], [100.0, 100.0]])
    state = lloyd(ArraySource(X), centers, 0, 1e-8)
    ref, ref_d2 = naive.assign(X, state.centers)
    assert np.array_equal(state.labels, ref)
    npt.assert_allclose(state.inertia, naive.sse(X, ref, state.centers), rtol=1e-5)


@pytest.mark.parametrize("n,k", [(500, 3), (500, 7), (40_000, 5)])
def test_exactly_k_distinct_rows_gives_k_clusters_and_zero_inertia(n, k):
    rng = np.random.default_rng(n + k)
    P = rng.normal(scale=5.0, size=(k, 4))
    X = np.ascontiguousarray(P[rng.integers(0, k, n)], dtype=np.float32)
    res = fit_kmeans(ArraySource(X), FitParams(k=k))
    assert np.array_equal(np.unique(res.labels), np.arange(k))
    assert res.inertia == 0.0
    assert np.unique(res.centers, axis=0).shape[0] == k


@pytest.mark.parametrize("n", [300, 40_000])
def test_fewer_distinct_rows_than_k_is_an_input_error(n):
    rng = np.random.default_rng(n)
    P = rng.normal(size=(3, 2))
    X = np.ascontiguousarray(P[rng.integers(0, 3, n)], dtype=np.float32)
    with pytest.raises(InputError):
        fit_kmeans(ArraySource(X), FitParams(k=4))


def test_k_distinct_rows_some_missing_from_the_init_sample():
    # 6 distinct values, 4 of them on a single row each: the init sample may miss them, but the
    # data has k distinct rows, so the fit must succeed with k non-empty clusters.
    X = np.repeat(np.arange(6, dtype=np.float32), [1000, 1000, 1, 1, 1, 1])[:, None]
    X = np.ascontiguousarray(X)
    res = fit_kmeans(ArraySource(X), FitParams(k=6, init_sample=500))
    assert np.array_equal(np.unique(res.labels), np.arange(6))
    assert res.inertia == 0.0


def test_k_equals_one_gives_the_mean():
    X, _ = blobs(1500, 4, 3, seed=11)
    res = fit_kmeans(ArraySource(X), FitParams(k=1))
    npt.assert_allclose(res.centers[0], X.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-5)
    assert not res.labels.any()
    npt.assert_allclose(res.inertia, naive.sse(X, res.labels, res.centers), rtol=1e-5)


def test_k_equals_n():
    X = np.ascontiguousarray(np.random.default_rng(12).normal(size=(25, 3)), dtype=np.float32)
    res = fit_kmeans(ArraySource(X), FitParams(k=25))
    assert np.array_equal(np.unique(res.labels), np.arange(25))
    assert res.inertia == 0.0


@pytest.mark.parametrize("k", [0, -1, 11])
def test_bad_k_is_an_input_error(k):
    X = np.ascontiguousarray(np.random.default_rng(13).normal(size=(10, 2)), dtype=np.float32)
    with pytest.raises(InputError):
        fit_kmeans(ArraySource(X), FitParams(k=k))


def test_row_order_does_not_change_the_partition():
    X, _ = blobs(3000, 3, 5, seed=14, std=0.5)
    perm = np.random.default_rng(14).permutation(X.shape[0])
    a = fit_kmeans(ArraySource(X), FitParams(k=5))
    b = fit_kmeans(ArraySource(np.ascontiguousarray(X[perm])), FitParams(k=5))
    assert adjusted_rand_score(a.labels[perm], b.labels) == 1.0


@pytest.mark.parametrize("hash_above", [None, 1_000])
def test_large_draws_are_uniform_distinct_and_the_same_for_every_source(monkeypatch, hash_above) -> None:
    """A large share of many rows is drawn by hash (``sample_indices``), a small one by numpy: either
    way distinct rows, ascending, uniform over the data, and the same rows in memory and read by
    number (a scratch file's or a cluster's ``sample``)."""
    if hash_above is not None:
        monkeypatch.setattr(scores, "HASH_DRAW_ROWS", hash_above)
    n, size = 200_000, 50_000
    rows = scores.sample_indices(n, size, np.random.default_rng(5))
    assert rows.size == size and np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < n
    deciles = np.bincount(rows * 10 // n, minlength=10)
    assert np.all(np.abs(deciles - size / 10) < 5 * np.sqrt(size / 10))  # uniform (5 sigma)
    if hash_above is not None:
        from kernels.hashsample import sample_rows
        seed = int(np.random.default_rng(5).integers(2**63))
        npt.assert_array_equal(rows, sample_rows(n, size, seed))
    X = np.random.default_rng(0).random((n, 3), dtype=np.float32)
    S, idx = ArraySource(X).sample(size, np.random.default_rng(9))
    T, jdx = batches.sample_by_number(ArraySource(X), size, np.random.default_rng(9))
    npt.assert_array_equal(idx, jdx)
    npt.assert_array_equal(S, X[idx])
    npt.assert_array_equal(T, X[idx])
