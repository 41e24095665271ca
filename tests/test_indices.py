"""Cluster-quality indices: the partial-sum kernels (``kernels.label_sums``, ``kernels.dispersion``)
against their slow twins in ``naive``, and Calinski-Harabasz, Davies-Bouldin and the silhouette
bootstrap interval (``engine.fit.scores``) against ``naive`` and scikit-learn."""

from __future__ import annotations

import naive
from conftest import jit_only, num_threads
import numpy as np
import numpy.testing as npt
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

import kernels
from engine.fit.scores import calinski_harabasz, cluster_moments, davies_bouldin, silhouette_interval

# (n, d, k, used): n < 256, n == 256, n not a multiple of 256, d = 1, k = 1, many chunks, and
# labels drawn from ``used`` only (the other clusters are empty).
SHAPES = [
    (1, 1, 1, None),
    (17, 3, 4, None),
    (255, 2, 5, None),
    (256, 1, 3, None),
    (257, 4, 1, None),
    (1000, 8, 7, [0, 2, 6]),
    (1300, 5, 16, None),
    (40, 3, 40, None),
    (70_001, 3, 6, [1, 2, 3, 5]),
]


def data(n, d, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.normal(size=(n, d)) + offset, dtype=np.float32)


def labels_for(n, k, used=None, seed=1):
    rng = np.random.default_rng(seed)
    choices = np.arange(k) if used is None else np.asarray(used)
    return np.ascontiguousarray(rng.choice(choices, size=n), dtype=np.int32)


def run_label_sums(X, labels, k, n_chunks=None):
    n, d = X.shape
    nc = n_chunks or kernels.chunk_count(n, k * d)
    sums = np.full((nc, k, d), np.nan)
    counts = np.full((nc, k), -1, dtype=np.int64)
    kernels.label_sums(X, labels, sums, counts)
    return sums, counts


def run_dispersion(X, labels, means, n_chunks=None):
    nc = n_chunks or kernels.chunk_count(X.shape[0], means.size)
    dist = np.full((nc, means.shape[0]), np.nan)
    sq = np.full((nc, means.shape[0]), np.nan)
    kernels.dispersion(X, labels, np.ascontiguousarray(means, dtype=np.float64), dist, sq)
    return dist, sq


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("n,d,k,used", SHAPES)
def test_label_sums_match_naive(n, d, k, used):
    X = data(n, d, seed=n + d, offset=3.0)
    labels = labels_for(n, k, used)
    sums, counts = run_label_sums(X, labels, k)
    assert not np.isnan(sums).any() and (counts >= 0).all()  # every chunk's accumulators written
    total, sizes = kernels.reduce_chunks(sums, counts)
    ref_sums, ref_counts = naive.label_sums(X, labels, k)
    npt.assert_array_equal(sizes, ref_counts)
    assert sizes.sum() == n
    npt.assert_allclose(total, ref_sums, rtol=1e-12, atol=1e-9)
    if used is not None:
        empty = np.setdiff1d(np.arange(k), used)
        assert (sizes[empty] == 0).all() and (total[empty] == 0.0).all()


@pytest.mark.parametrize("n,d,k,used", SHAPES)
def test_dispersion_matches_naive(n, d, k, used):
    X = data(n, d, seed=n + d + 1, offset=-2.0)
    labels = labels_for(n, k, used, seed=2)
    ref_sums, ref_counts = naive.label_sums(X, labels, k)
    means = ref_sums / np.maximum(ref_counts, 1)[:, None]
    dist, sq = run_dispersion(X, labels, means)
    assert not np.isnan(dist).any() and not np.isnan(sq).any()
    ref_dist, ref_sq = naive.dispersion(X, labels, means)
    npt.assert_allclose(dist.sum(axis=0), ref_dist, rtol=1e-12, atol=1e-9)
    npt.assert_allclose(sq.sum(axis=0), ref_sq, rtol=1e-12, atol=1e-9)
    assert (dist >= 0).all() and (sq >= 0).all()
    if used is not None:
        empty = np.setdiff1d(np.arange(k), used)
        assert (dist[:, empty] == 0.0).all() and (sq[:, empty] == 0.0).all()


def test_kernels_with_an_explicit_chunk_count():
    # The caller picks the chunk count; any count gives the same totals (up to rounding).
    X = data(1000, 3, seed=9)
    labels = labels_for(1000, 4)
    ref_sums, ref_counts = naive.label_sums(X, labels, 4)
    means = ref_sums / ref_counts[:, None]
    ref_dist, ref_sq = naive.dispersion(X, labels, means)
    for nc in (1, 3, 4):
        sums, counts = run_label_sums(X, labels, 4, n_chunks=nc)
        total, sizes = kernels.reduce_chunks(sums, counts)
        npt.assert_array_equal(sizes, ref_counts)
        npt.assert_allclose(total, ref_sums, rtol=1e-12)
        dist, sq = run_dispersion(X, labels, means, n_chunks=nc)
        npt.assert_allclose(dist.sum(axis=0), ref_dist, rtol=1e-12)
        npt.assert_allclose(sq.sum(axis=0), ref_sq, rtol=1e-12)


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
@pytest.mark.parametrize("n,d,k", [(255, 2, 3), (70_001, 5, 7), (300_000, 2, 4)])
def test_index_kernels_bitwise_identical_across_thread_counts(n, d, k):
    X = data(n, d, seed=4)
    labels = labels_for(n, k)
    out = {}
    for t in (1, 2):
        with num_threads(t):
            sums, counts = run_label_sums(X, labels, k)
            total, sizes = kernels.reduce_chunks(sums, counts)
            means = total / np.maximum(sizes, 1)[:, None]
            dist, sq = run_dispersion(X, labels, means)
            moments = cluster_moments(X, labels, k)
            out[t] = (sums, counts, total, sizes, dist, sq, *moments,
                      calinski_harabasz(X, labels, k), davies_bouldin(X, labels, k))
    for a, b in zip(out[1], out[2]):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_cluster_moments_match_naive():
    X = data(3000, 4, seed=11, offset=5.0)
    labels = labels_for(3000, 6, used=[0, 1, 4, 5])
    sizes, means, dist, sq = cluster_moments(X, labels, 6)
    ref_sums, ref_counts = naive.label_sums(X, labels, 6)
    ref_means = ref_sums / np.maximum(ref_counts, 1)[:, None]
    ref_dist, ref_sq = naive.dispersion(X, labels, ref_means)
    npt.assert_array_equal(sizes, ref_counts)
    npt.assert_allclose(means, ref_means, rtol=1e-12)
    npt.assert_allclose(dist, ref_dist, rtol=1e-12)
    npt.assert_allclose(sq, ref_sq, rtol=1e-12)
    assert means.dtype == np.float64 and (means[[2, 3]] == 0.0).all()


# --------------------------------------------------------------------------- CH and DB


def random_partition(seed):
    """Small float32 data in clusters of unequal sizes, labelled with a subset of 0..k-1."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 8))
    used = np.sort(rng.choice(k, size=int(rng.integers(2, k + 1)), replace=False))
    sizes = rng.integers(1, 60, size=used.size)
    sizes[0] += 40
    labels = np.repeat(used, sizes).astype(np.int32)
    d = int(rng.integers(1, 6))
    centres = rng.normal(scale=3.0, size=(k, d))
    X = centres[labels] + rng.normal(scale=rng.uniform(0.3, 2.0), size=(labels.size, d)) + rng.uniform(-50, 50)
    perm = rng.permutation(labels.size)
    return np.ascontiguousarray(X[perm], dtype=np.float32), labels[perm], k


@pytest.mark.parametrize("seed", range(8))
def test_calinski_harabasz_and_davies_bouldin_match_sklearn_and_naive(seed):
    X, labels, k = random_partition(seed)
    X64 = X.astype(np.float64)  # the same float32 values, so sklearn's result is the exact reference
    ch, db = calinski_harabasz(X, labels, k), davies_bouldin(X, labels, k)
    npt.assert_allclose(ch, calinski_harabasz_score(X64, labels), rtol=1e-6)
    npt.assert_allclose(db, davies_bouldin_score(X64, labels), rtol=1e-6)
    npt.assert_allclose(ch, naive.calinski_harabasz(X, labels), rtol=1e-6)
    npt.assert_allclose(db, naive.davies_bouldin(X, labels), rtol=1e-6)
    # sklearn on the float32 matrix itself (it computes in float32 there): close, not exact
    npt.assert_allclose(ch, calinski_harabasz_score(X, labels), rtol=1e-4)
    npt.assert_allclose(db, davies_bouldin_score(X, labels), rtol=1e-4)


def test_indices_ignore_label_values_that_are_not_used():
    X, labels, _ = random_partition(3)
    # The same partition with its labels renumbered 0..m-1 and with room for 20 more clusters.
    _, compact = np.unique(labels, return_inverse=True)
    compact = compact.astype(np.int32)
    m = int(compact.max()) + 1
    spread = (compact * 3 + 1).astype(np.int32)
    for lab, k in ((compact, m), (compact, m + 20), (spread, 3 * m + 1)):
        npt.assert_allclose(calinski_harabasz(X, lab, k), calinski_harabasz_score(X.astype(float), compact), rtol=1e-6)
        npt.assert_allclose(davies_bouldin(X, lab, k), davies_bouldin_score(X.astype(float), compact), rtol=1e-6)


@pytest.mark.parametrize("k", [1, 4])
def test_one_cluster_present_is_undefined(k):
    X = data(50, 3)
    labels = np.zeros(50, dtype=np.int32) + (k - 1)
    assert calinski_harabasz(X, labels, k) is None
    assert davies_bouldin(X, labels, k) is None
    assert naive.calinski_harabasz(X, labels) is None and naive.davies_bouldin(X, labels) is None
    with pytest.raises(ValueError):
        calinski_harabasz_score(X, labels)


def test_every_row_its_own_cluster_is_undefined():
    X = data(6, 2)
    labels = np.arange(6, dtype=np.int32)
    assert calinski_harabasz(X, labels, 6) is None
    assert davies_bouldin(X, labels, 6) is None
    with pytest.raises(ValueError):
        davies_bouldin_score(X, labels)


def test_identical_points_within_clusters_give_sklearn_values():
    # Three clusters, every member on its cluster's point (values exact in float32).
    points = np.array([[0.0, 1.0], [4.0, -2.0], [0.5, 8.0]])
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2], dtype=np.int32)
    X = np.ascontiguousarray(points[labels], dtype=np.float32)
    assert davies_bouldin_score(X, labels) == 0.0 and calinski_harabasz_score(X, labels) == 1.0
    assert davies_bouldin(X, labels, 3) == 0.0
    assert calinski_harabasz(X, labels, 3) == 1.0
    assert naive.davies_bouldin(X, labels) == 0.0 and naive.calinski_harabasz(X, labels) == 1.0
    # with an unused label value in between as well
    spaced = np.where(labels == 2, 4, labels).astype(np.int32)
    assert davies_bouldin(X, spaced, 5) == 0.0 and calinski_harabasz(X, spaced, 5) == 1.0


def test_two_clusters_with_the_same_centroid():
    # Pairs whose centroids coincide are left out of DB, as scikit-learn does.
    X = np.array([[-1, 0], [1, 0], [0, -2], [0, 2], [10, 10], [12, 10]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)
    npt.assert_allclose(davies_bouldin(X, labels, 3), davies_bouldin_score(X.astype(float), labels), rtol=1e-9)
    npt.assert_allclose(davies_bouldin(X, labels, 3), naive.davies_bouldin(X, labels), rtol=1e-9)
    npt.assert_allclose(calinski_harabasz(X, labels, 3), calinski_harabasz_score(X.astype(float), labels), rtol=1e-9)


# --------------------------------------------------------------------------- silhouette interval


def silhouette_like(m, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.4, 0.25, size=m), -1.0, 1.0)


@pytest.mark.parametrize("m", [2, 10, 500, 5_000])
def test_silhouette_interval_contains_the_mean(m):
    values = silhouette_like(m, seed=m)
    low, high = silhouette_interval(values, np.random.default_rng(0))
    assert low <= values.mean() <= high
    assert values.min() <= low <= high <= values.max()


def test_silhouette_interval_is_narrower_for_larger_samples():
    widths = []
    for m in (50, 500, 5_000):
        low, high = silhouette_interval(silhouette_like(m, seed=1), np.random.default_rng(1))
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0
    # about 1/sqrt(m): ten times the rows, about a third of the width
    assert 0.2 < widths[2] / widths[1] < 0.5


def test_silhouette_interval_is_deterministic_for_a_seeded_rng():
    values = silhouette_like(800, seed=2)
    a = silhouette_interval(values, np.random.default_rng([0, 2]))
    b = silhouette_interval(values, np.random.default_rng([0, 2]))
    assert a == b
    c = silhouette_interval(values, np.random.default_rng([1, 2]))
    assert c != a  # a different seed draws other resamples
    wider = silhouette_interval(values, np.random.default_rng([0, 2]), level=0.99)
    assert wider[0] <= a[0] and wider[1] >= a[1]


def test_silhouette_interval_of_one_value_is_nan():
    low, high = silhouette_interval(np.array([0.3]), np.random.default_rng(0))
    assert np.isnan(low) and np.isnan(high)


def test_silhouette_interval_of_constant_values_is_that_value():
    assert silhouette_interval(np.full(100, 0.25), np.random.default_rng(0)) == (0.25, 0.25)


@pytest.mark.parametrize("seed", range(6))
def test_adjusted_rand_score_matches_sklearn(seed):
    from sklearn.metrics import adjusted_rand_score as sk_ari

    from engine.fit.scores import adjusted_rand_score

    rng = np.random.default_rng(seed)
    for n in (1, 2, 7, 300, 5000):
        a = rng.integers(0, 1 + seed, n)
        for b in (rng.integers(0, 4, n), a.copy(), (a + 1) % 3, np.arange(n), np.zeros(n, dtype=int)):
            assert adjusted_rand_score(a, b) == pytest.approx(sk_ari(a, b), abs=1e-12)


@pytest.mark.parametrize("n,refine_passes", [(5000, None), (600_000, 0), (600_000, None)])
def test_fit_hands_over_the_cluster_sums_of_its_labels(n, refine_passes):
    """The sums and counts of the fit's last pass are those cluster_moments computes (same bits),
    so a sweep can skip that pass."""
    from benchmarks.__main__ import overlapping_blobs
    from engine.fit.batches import ArraySource
    from engine.fit.kmeans import FitParams, fit_kmeans

    X = overlapping_blobs(n, 6, 4, seed=1)
    fit = fit_kmeans(ArraySource(X), FitParams(k=4, refine_passes=refine_passes))
    fresh = cluster_moments(X, fit.labels, 4)
    handed = cluster_moments(X, fit.labels, 4, (fit.label_sums, fit.label_counts))
    for a, b in zip(fresh, handed):
        assert a.tobytes() == b.tobytes()
