"""Row weights: the kernels of ``kernels.weighted`` against their slow twins in ``naive``, and the
weighted fit (``fit_kmeans(..., weights=)``) against the definition of weighted k-means."""

from __future__ import annotations

import math

import naive
import numba
import numpy as np
import numpy.testing as npt
import pytest
from conftest import jit_only, num_threads
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import kernels
from engine.errors import InputError
from engine.fit.batches import ArraySource
from engine.fit.kmeans import FitParams, fit_kmeans, lloyd


def data(n, d, seed=0):
    return np.ascontiguousarray(np.random.default_rng(seed).normal(size=(n, d)), dtype=np.float32)


def weights_for(n, seed=0, zeros=0.2):
    """Weights in [0.1, 5) with about a share ``zeros`` of exact zeros."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 5.0, n)
    w[rng.random(n) < zeros] = 0.0
    return w


def blobs(n, d, k, seed, std=0.5):
    X, _ = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return np.ascontiguousarray(X, dtype=np.float32)


# --------------------------------------------------------------------------- kernels


def run_lloyd_pass_weighted(X, w, C):
    n, d = X.shape
    k = C.shape[0]
    nc = kernels.chunk_count(n, k * d)
    labels = np.full(n, -1, dtype=np.int32)
    dist2 = np.full(n, np.nan, dtype=np.float32)
    sums = np.full((nc, k, d), np.nan)
    wsums = np.full((nc, k), np.nan)
    sse = np.full(nc, np.nan)
    changed = np.full(nc, -1, dtype=np.int64)
    kernels.lloyd_pass_weighted(X, w, C, labels, dist2, sums, wsums, sse, changed)
    return labels, dist2, sums, wsums, sse, changed


@pytest.mark.parametrize("n,d,k", [(1, 1, 1), (255, 2, 5), (257, 4, 3), (1300, 5, 16)])
def test_lloyd_pass_weighted_matches_naive(n, d, k):
    X = data(n, d, seed=n)
    w = weights_for(n, seed=k)
    C = np.ascontiguousarray(X[np.random.default_rng(1).permutation(n)[:k]] + 0.05, dtype=np.float32)
    labels, dist2, sums, wsums, sse, changed = run_lloyd_pass_weighted(X, w, C)
    ref_labels, ref_d2 = naive.assign(X, C)
    ties = naive.near_ties(X, C)
    assert not ((labels != ref_labels) & ~ties).any()
    npt.assert_allclose(dist2, ref_d2, rtol=1e-4, atol=1e-5)
    total, total_w = kernels.reduce_weighted(sums, wsums)
    ref_sums, ref_w = naive.weighted_sums(X, w, labels, k)
    npt.assert_allclose(total, ref_sums, rtol=1e-10, atol=1e-9)
    npt.assert_allclose(total_w, ref_w, rtol=1e-12)
    npt.assert_allclose(sse.sum(), naive.sse(X, labels, C, w), rtol=1e-5)
    assert changed.sum() == n  # every label was -1 before


def test_lloyd_pass_weighted_with_unit_weights_equals_the_unweighted_kernel():
    X = data(3000, 6, seed=3)
    C = np.ascontiguousarray(X[:7] + 0.1, dtype=np.float32)
    labels, dist2, sums, wsums, sse, _ = run_lloyd_pass_weighted(X, np.ones(3000), C)
    nc = kernels.chunk_count(3000, 7 * 6)
    ref = (np.full(3000, -1, dtype=np.int32), np.empty(3000, dtype=np.float32), np.empty((nc, 7, 6)),
           np.empty((nc, 7), dtype=np.int64), np.empty(nc), np.empty(nc, dtype=np.int64))
    kernels.lloyd_pass(X, C, *ref)
    assert np.array_equal(labels, ref[0]) and np.array_equal(dist2, ref[1])
    assert np.array_equal(sums, ref[2]) and np.array_equal(wsums, ref[3].astype(np.float64))
    if numba.config.DISABLE_JIT:  # interpreted, lloyd_pass sums float32 distances in float32 (NumPy 2 promotion)
        npt.assert_allclose(sse, ref[4], rtol=1e-6)
    else:
        assert np.array_equal(sse, ref[4])


def test_reduce_weighted_sums_in_chunk_order():
    rng = np.random.default_rng(5)
    sums = rng.normal(size=(37, 5, 3)) * 10.0 ** rng.integers(-8, 8, size=(37, 5, 3))
    wsums = rng.uniform(0, 1e6, size=(37, 5))
    total, total_w = kernels.reduce_weighted(sums, wsums)
    ref, ref_w = np.zeros((5, 3)), np.zeros(5)
    for c in range(37):
        ref += sums[c]
        ref_w += wsums[c]
    assert np.array_equal(total, ref) and np.array_equal(total_w, ref_w)


@pytest.mark.parametrize("b,d,k", [(1, 1, 1), (100, 3, 4), (700, 6, 9), (300, 2, 12)])
def test_minibatch_update_weighted_matches_naive(b, d, k):
    rng = np.random.default_rng(b + k)
    Xb = data(b, d, seed=b)
    wb = weights_for(b, seed=b + 1, zeros=0.3)
    centers = rng.normal(size=(k, d))
    seen = rng.uniform(0, 50, k)
    labels = rng.integers(0, max(1, k - 2), b).astype(np.int32)
    ref_c, ref_w = naive.minibatch_update(Xb, labels, centers, seen, wb)
    c, w = centers.copy(), seen.copy()
    c32 = c.astype(np.float32)
    moved = kernels.minibatch_update_weighted(Xb, wb, labels, c, c32, w)
    weighed = np.bincount(labels, weights=wb, minlength=k) > 0
    assert moved == int(weighed.sum())
    npt.assert_allclose(c, ref_c, rtol=1e-12, atol=1e-12)
    npt.assert_allclose(w, ref_w, rtol=1e-13)
    assert np.array_equal(c32, c.astype(np.float32))
    assert np.array_equal(c[~weighed], centers[~weighed])  # members of weight zero move nothing


def run_kmeanspp_weighted(X, w, k, seed):
    rng = np.random.default_rng(seed)
    first = int(rng.choice(np.flatnonzero(w > 0)))
    uniforms = rng.random((k - 1, 2 + int(math.log(k))))
    idx = np.full(k, -1, dtype=np.int64)
    found = kernels.kmeanspp_weighted(X, w, first, uniforms, idx, kernels.chunk_count(X.shape[0]))
    return found, idx, first, uniforms


@pytest.mark.parametrize("n,d,k", [(50, 2, 5), (700, 3, 8), (3000, 6, 12)])
def test_kmeanspp_weighted_matches_naive_and_never_picks_a_zero_weight_row(n, d, k):
    X = data(n, d, seed=n)
    w = weights_for(n, seed=n, zeros=0.4)
    for seed in range(3):
        found, idx, first, uniforms = run_kmeanspp_weighted(X, w, k, seed)
        assert found == k and idx[0] == first
        assert (w[idx] > 0).all() and len(set(idx.tolist())) == k
        assert np.array_equal(idx, naive.kmeanspp(X, first, uniforms, k, w))


def test_kmeanspp_weighted_with_unit_weights_equals_the_unweighted_kernel():
    X = data(2000, 4, seed=21)
    rng = np.random.default_rng(0)
    uniforms = rng.random((8, 4))
    a, b = np.empty(9, dtype=np.int64), np.empty(9, dtype=np.int64)
    nc = kernels.chunk_count(2000)
    assert kernels.kmeanspp_weighted(X, np.ones(2000), 17, uniforms, a, nc) == kernels.kmeanspp(X, 17, uniforms, b, nc)
    assert np.array_equal(a, b)


def test_kmeanspp_weighted_stops_when_positive_rows_run_out():
    X = data(300, 2, seed=4)
    w = np.zeros(300)
    w[[3, 50, 200]] = [1.0, 2.0, 3.0]
    found, idx, _, _ = run_kmeanspp_weighted(X, w, 5, 0)
    assert found == 3 and set(idx[:3].tolist()) == {3, 50, 200}


# --------------------------------------------------------------------------- the weighted fit


def assert_weighted_lloyd_fixed_point(X, w, res):
    """Labels are the nearest centres, every centre is its members' weighted mean, and the SSE
    is the weighted one: the definition of a weighted k-means solution."""
    k = res.centers.shape[0]
    ref, _ = naive.assign(X, res.centers)
    ties = naive.near_ties(X, res.centers)
    assert not ((res.labels != ref) & ~ties).any()
    sums, totals = naive.weighted_sums(X, w, res.labels, k)
    assert (totals > 0).all()
    npt.assert_allclose(res.centers, sums / totals[:, None], rtol=1e-4, atol=1e-4)
    npt.assert_allclose(res.inertia, naive.sse(X, res.labels, res.centers, w), rtol=1e-5)


@pytest.mark.parametrize(
    "n,params",
    [
        (2_000, FitParams(k=5)),  # every row in the init sample
        (6_000, FitParams(k=5, init_sample=500, batch_size=256)),  # sample, mini-batches, full Lloyd
        (6_000, FitParams(k=5, init_sample=500, mid_sample_min=1_000, mid_sample_div=4)),  # + subsample
    ],
)
def test_weighted_fit_is_a_weighted_lloyd_fixed_point(n, params):
    X = blobs(n, 3, 5, seed=n, std=1.5)
    w = weights_for(n, seed=1)
    res = fit_kmeans(ArraySource(X), params, w)
    assert_weighted_lloyd_fixed_point(X, w, res)
    assert res.label_sums is None and res.label_counts is None


def test_integer_weights_give_the_fit_of_repeated_rows():
    X = blobs(600, 4, 4, seed=2)
    w = np.random.default_rng(2).integers(1, 5, 600).astype(np.float64)
    weighted = fit_kmeans(ArraySource(X), FitParams(k=4), w)
    repeated = fit_kmeans(ArraySource(np.ascontiguousarray(np.repeat(X, w.astype(int), axis=0))), FitParams(k=4))
    # the same optimum (centre numbering may differ: the seeding draws differ)
    npt.assert_allclose(np.sort(weighted.centers, axis=0), np.sort(repeated.centers, axis=0), rtol=1e-5, atol=1e-5)
    npt.assert_allclose(weighted.inertia, repeated.inertia, rtol=1e-5)
    assert adjusted_rand_score(np.repeat(weighted.labels, w.astype(int)), repeated.labels) == 1.0


def test_zero_weights_are_rows_left_out():
    X = blobs(1_500, 3, 4, seed=3, std=1.0)
    w = weights_for(1_500, seed=3, zeros=0.3)
    keep = w > 0
    full = fit_kmeans(ArraySource(X), FitParams(k=4), w)
    kept = fit_kmeans(ArraySource(np.ascontiguousarray(X[keep])), FitParams(k=4), w[keep])
    # the same draws on the same rows of positive weight, so the same numbering too
    assert np.array_equal(full.labels[keep], kept.labels)
    npt.assert_allclose(full.centers, kept.centers, rtol=1e-5, atol=1e-5)
    npt.assert_allclose(full.inertia, kept.inertia, rtol=1e-9)


def test_equal_weights_are_the_unweighted_fit_with_a_scaled_sse():
    X = blobs(3_000, 4, 5, seed=4, std=2.0)
    plain = fit_kmeans(ArraySource(X), FitParams(k=5, init_sample=1_000))
    for c in (1.0, 2.5):
        scaled = fit_kmeans(ArraySource(X), FitParams(k=5, init_sample=1_000), np.full(3_000, c))
        assert np.array_equal(scaled.labels, plain.labels)
        assert np.array_equal(scaled.centers, plain.centers)
        assert scaled.inertia == plain.inertia * c


def test_heavier_rows_pull_the_centre():
    X = data(400, 2, seed=6)
    w = np.where(X[:, 0] > 0, 10.0, 1.0)
    res = fit_kmeans(ArraySource(X), FitParams(k=1), w)
    npt.assert_allclose(res.centers[0], np.average(X.astype(np.float64), axis=0, weights=w), rtol=1e-5, atol=1e-6)
    assert res.centers[0, 0] > X[:, 0].mean()


def test_weighted_lloyd_refills_a_cluster_whose_members_weigh_nothing():
    rng = np.random.default_rng(9)
    X = np.ascontiguousarray(np.vstack([rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 10,
                                        rng.normal(size=(20, 2)) - 30]), dtype=np.float32)
    w = np.ones(220)
    w[200:] = 0.0  # the third group weighs nothing
    state = lloyd(ArraySource(X), np.array([[0.0, 0.0], [10.0, 10.0], [-30.0, -30.0]]), 300, 1e-8, w)
    _, totals = naive.weighted_sums(X, w, state.labels, 3)
    assert (totals > 0).all()  # the centre moved onto a row of positive weight
    npt.assert_allclose(state.inertia, naive.sse(X, state.labels, state.centers, w), rtol=1e-5)


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
@pytest.mark.parametrize("n,init_sample", [(3_000, 32_768), (20_000, 3_000)])
def test_weighted_fit_identical_for_1_and_2_threads(n, init_sample):
    X = blobs(n, 6, 5, seed=8, std=3.0)
    w = weights_for(n, seed=8)
    fits = []
    for t in (1, 2):
        with num_threads(t):
            fits.append(fit_kmeans(ArraySource(X), FitParams(k=5, init_sample=init_sample), w))
    one, two = fits
    assert one.centers.tobytes() == two.centers.tobytes()
    assert np.array_equal(one.labels, two.labels) and one.inertia == two.inertia


@pytest.mark.parametrize(
    "w,match",
    [
        (np.ones(5), "one weight per row"),
        (np.r_[np.ones(9), -1.0], "non-negative"),
        (np.r_[np.ones(9), np.nan], "finite"),
        (np.r_[np.ones(2), np.zeros(8)], "positive weight"),
    ],
)
def test_bad_weights_are_input_errors(w, match):
    X = data(10, 2)
    with pytest.raises(InputError, match=match):
        fit_kmeans(ArraySource(X), FitParams(k=3), w)


def test_too_few_distinct_rows_of_positive_weight_is_an_input_error():
    X = np.ascontiguousarray(np.repeat(np.arange(4, dtype=np.float32), 25)[:, None])
    w = np.where(X[:, 0] < 2, 1.0, 0.0) + np.linspace(0, 1, 100) * (X[:, 0] < 2)
    with pytest.raises(InputError, match="distinct rows of positive weight"):
        fit_kmeans(ArraySource(X), FitParams(k=3), w)


def test_reassignment_draws_only_rows_of_positive_weight():
    """Mini-batch reassignment (``reassign_small``) gets dist2 times the row weights in a weighted
    fit: a centre that has seen almost nothing moves onto the one batch row that weighs something."""
    from engine.fit.kmeans import reassign_small

    batch = data(50, 2, seed=11)
    dist2 = np.full(50, 4.0, dtype=np.float32)
    wb = np.zeros(50)
    wb[17] = 2.0
    centers = np.zeros((3, 2))
    centers32 = centers.astype(np.float32)
    seen = np.array([100.0, 80.0, 0.5])  # centre 2 is below 1% of the busiest
    moved = reassign_small(centers, centers32, seen, batch, dist2 * wb, 0.01, np.random.default_rng(0))
    assert moved == 1
    assert np.array_equal(centers32[2], batch[17]) and np.array_equal(centers[2], batch[17].astype(np.float64))
    assert seen[2] == 80.0  # counts as much as the least busy of the others
    assert not centers[:2].any()
    assert reassign_small(centers, centers32, np.array([1.0, 1.0, 0.001]), batch, dist2 * 0.0, 0.01,
                          np.random.default_rng(0)) == 0  # nothing to draw from


def test_weights_need_an_in_memory_source():
    class Streamed:  # a BatchSource that is not an ArraySource
        def __init__(self, X):
            self._inner = ArraySource(X)
            self.n_rows, self.n_features = X.shape

        def sample(self, size, rng):
            return self._inner.sample(size, rng)

        def draw(self, size, rng):
            return self._inner.draw(size, rng)

        def blocks(self):
            return self._inner.blocks()

        def take(self, rows):
            return self._inner.take(rows)

        def row_state(self, k):
            return self._inner.row_state(k)

    X = data(100, 2)
    assert fit_kmeans(Streamed(X), FitParams(k=3)).labels.shape == (100,)
    with pytest.raises(InputError, match="in-memory"):
        fit_kmeans(Streamed(X), FitParams(k=3), np.ones(100) + np.arange(100))
