"""Every kernel against its slow twin in ``naive`` and, where one exists, scikit-learn."""

from __future__ import annotations

import math

import naive
from conftest import jit_only, num_threads
import numpy as np
import numpy.testing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus
from sklearn.datasets import make_blobs
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.metrics import silhouette_samples as sk_silhouette_samples
from sklearn.metrics import silhouette_score as sk_silhouette_score

import kernels
from engine.fit.scores import silhouette_score, silhouette_values

# (n, d, k): n < 256, n == 256, n not a multiple of 256, d = 1, k = 1, k = n.
SHAPES = [
    (1, 1, 1),
    (17, 3, 4),
    (255, 2, 5),
    (256, 1, 3),
    (257, 4, 1),
    (1000, 8, 7),
    (1300, 5, 16),
    (40, 3, 40),
]


def data(n, d, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.normal(scale=scale, size=(n, d)), dtype=np.float32)


def centres_for(X, k, seed=1):
    """k centres: random rows of X (all of them, in a shuffled order, when k == n) plus noise."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(X.shape[0])[:k]
    C = X[idx].astype(np.float64)
    if k < X.shape[0]:
        C += rng.normal(scale=0.1, size=C.shape)
    return np.ascontiguousarray(C, dtype=np.float32)


def run_assign(X, C):
    n = X.shape[0]
    nc = kernels.chunk_count(n)
    labels = np.full(n, -7, dtype=np.int32)
    dist2 = np.full(n, np.nan, dtype=np.float32)
    sse = np.full(nc, np.nan)
    kernels.assign(X, C, labels, dist2, sse, nc)
    return labels, dist2, sse


def run_lloyd_pass(X, C, labels_in):
    n, d = X.shape
    k = C.shape[0]
    nc = kernels.chunk_count(n)
    labels = np.array(labels_in, dtype=np.int32)
    dist2 = np.full(n, np.nan, dtype=np.float32)
    sums = np.full((nc, k, d), np.nan)
    counts = np.full((nc, k), -1, dtype=np.int64)
    sse = np.full(nc, np.nan)
    changed = np.full(nc, -1, dtype=np.int64)
    kernels.lloyd_pass(X, C, labels, dist2, sums, counts, sse, changed)
    return labels, dist2, sums, counts, sse, changed


def assert_labels_match(labels, X, C):
    """Labels equal naive's, except at near-ties (best and second best within 1e-4 relative)."""
    ref, _ = naive.assign(X, C)
    ties = naive.near_ties(X, C)
    bad = (labels != ref) & ~ties
    assert not bad.any(), f"rows {np.flatnonzero(bad)[:10]} labelled {labels[bad][:10]}, naive {ref[bad][:10]}"


# --------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 4096 * 256, 4096 * 256 + 1, 3_000_000])
def test_chunk_count_covers_rows_in_multiples_of_256(n):
    nc = kernels.chunk_count(n)
    assert 1 <= nc <= 4096
    if n > 0:
        rows = -(-n // nc)
        assert nc * rows >= n
        assert (nc - 1) * rows < n  # no chunk is wholly empty


# --------------------------------------------------------------------------- assign


@pytest.mark.parametrize("n,d,k", SHAPES)
def test_assign_matches_naive(n, d, k):
    X = data(n, d, seed=n + d)
    C = centres_for(X, k)
    labels, dist2, sse = run_assign(X, C)
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < k
    assert_labels_match(labels, X, C)
    ref_labels, ref_d2 = naive.assign(X, C)
    npt.assert_allclose(dist2, naive.sq_distances(X, C)[np.arange(n), labels], rtol=1e-5)
    npt.assert_allclose(dist2, ref_d2, rtol=1e-5, atol=1e-6 * ref_d2.max())
    assert sse.shape == (kernels.chunk_count(n),)
    npt.assert_allclose(sse.sum(), naive.sse(X, ref_labels, C), rtol=1e-5)


def test_assign_many_chunks_larger_than_256_rows():
    # More than 4096 * 256 rows: chunks of 512 rows, the last one partial.
    X = data(4096 * 256 + 1000, 2, seed=5)
    C = centres_for(X, 3)
    labels, dist2, sse = run_assign(X, C)
    assert kernels.chunk_count(X.shape[0]) == 2050
    assert_labels_match(labels, X, C)
    npt.assert_allclose(sse.sum(), naive.sse(X, labels, C), rtol=1e-5)
    npt.assert_allclose(dist2, naive.sq_distances(X, C)[np.arange(X.shape[0]), labels], rtol=1e-5)


@pytest.mark.parametrize("n,d,k", [(300, 4, 6), (1000, 8, 7), (2000, 1, 3)])
def test_assign_matches_sklearn(n, d, k):
    X = data(n, d, seed=11 + n)
    C = centres_for(X, k)
    labels, dist2, _ = run_assign(X, C)
    sk_labels, sk_dist = pairwise_distances_argmin_min(X.astype(np.float64), C.astype(np.float64))
    ties = naive.near_ties(X, C)
    assert np.array_equal(labels[~ties], sk_labels[~ties])
    npt.assert_allclose(dist2, sk_dist**2, rtol=1e-4, atol=1e-6)


def test_assign_ties_go_to_lowest_index():
    X = data(500, 3, seed=2)
    C0 = centres_for(X, 4)
    C = np.ascontiguousarray(np.vstack([C0, C0[::-1]]))  # centre j == centre 7 - j
    labels, _, _ = run_assign(X, C)
    assert labels.max() < 4
    ref, _, _ = run_assign(X, C0)
    assert np.array_equal(labels, ref)


def test_assign_k_equals_n_is_identity():
    X = data(300, 4, seed=8)
    labels, dist2, sse = run_assign(X, X.copy())
    assert np.array_equal(labels, np.arange(300))
    assert not dist2.any() and sse.sum() == 0.0


# --------------------------------------------------------------------------- Lloyd pass


@pytest.mark.parametrize("n,d,k", SHAPES)
def test_lloyd_pass_and_reduce_match_naive(n, d, k):
    X = data(n, d, seed=3 * n + d)
    C = centres_for(X, k)
    rng = np.random.default_rng(n)
    previous = rng.integers(0, k, n).astype(np.int32)
    labels, dist2, sums, counts, sse, changed = run_lloyd_pass(X, C, previous)
    assert_labels_match(labels, X, C)
    a_labels, a_dist2, _ = run_assign(X, C)  # one assignment primitive for both kernels
    assert np.array_equal(labels, a_labels) and np.array_equal(dist2, a_dist2)
    total, total_counts = kernels.reduce_chunks(sums, counts)
    ref_sums, ref_counts = naive.lloyd_sums(X, labels, k)
    assert np.array_equal(total_counts, ref_counts)
    npt.assert_allclose(total, ref_sums, rtol=1e-12, atol=1e-9)
    assert int(changed.sum()) == int((labels != previous).sum())
    npt.assert_allclose(sse.sum(), naive.sse(X, labels, C), rtol=1e-5)
    # the naive step's inertia is that of the same assignment
    _, ref_lab, ref_sse = naive.lloyd_step(X, C)
    npt.assert_allclose(sse.sum(), ref_sse, rtol=1e-5)


def test_lloyd_pass_changed_is_zero_on_repeat_and_n_on_fresh_labels():
    X = data(1500, 3, seed=4)
    C = centres_for(X, 5)
    labels, *_, changed = run_lloyd_pass(X, C, np.full(1500, -1))
    assert changed.sum() == 1500
    *_, changed2 = run_lloyd_pass(X, C, labels)
    assert changed2.sum() == 0


def test_lloyd_step_mean_update_matches_naive_step():
    X = data(2000, 5, seed=6)
    C = centres_for(X, 6)
    _, _, sums, counts, _, _ = run_lloyd_pass(X, C, np.full(2000, -1))
    total, total_counts = kernels.reduce_chunks(sums, counts)
    assert (total_counts > 0).all()
    ref_new, _, _ = naive.lloyd_step(X, C)
    npt.assert_allclose(total / total_counts[:, None], ref_new, rtol=1e-10, atol=1e-12)


def test_reduce_chunks_sums_in_chunk_order():
    rng = np.random.default_rng(9)
    sums = rng.normal(size=(37, 5, 3))
    counts = rng.integers(0, 100, size=(37, 5))
    total, total_counts = kernels.reduce_chunks(sums, counts)
    ref = np.zeros((5, 3))
    for c in range(37):
        ref += sums[c]
    npt.assert_allclose(total, ref, rtol=1e-13, atol=1e-13)
    assert np.array_equal(total_counts, counts.sum(axis=0))


# --------------------------------------------------------------------------- mini-batch update


@pytest.mark.parametrize("b,d,k", [(1, 1, 1), (100, 3, 4), (700, 6, 9), (300, 2, 12)])
def test_minibatch_update_matches_naive(b, d, k):
    rng = np.random.default_rng(b + k)
    Xb = data(b, d, seed=b)
    centers = rng.normal(size=(k, d))
    weight_sums = rng.integers(0, 50, k).astype(np.float64)
    # leave some centres out of the batch (k = 12 > labels used)
    labels = rng.integers(0, max(1, k - 2), b).astype(np.int32)
    ref_c, ref_w = naive.minibatch_update(Xb, labels, centers, weight_sums)
    c, w = centers.copy(), weight_sums.copy()
    c32 = c.astype(np.float32)
    moved = kernels.minibatch_update(Xb, labels, c, c32, w)
    present = np.bincount(labels, minlength=k) > 0
    assert moved == int(present.sum())
    npt.assert_allclose(c, ref_c, rtol=1e-12, atol=1e-12)
    npt.assert_array_equal(w, ref_w)
    assert np.array_equal(c32, c.astype(np.float32))
    # centres with no batch members are untouched, bit for bit
    assert np.array_equal(c[~present], centers[~present])
    assert np.array_equal(w[~present], weight_sums[~present])


def test_minibatch_update_from_zero_weight_is_batch_mean():
    Xb = data(400, 3, seed=12)
    labels = (np.arange(400) % 4).astype(np.int32)
    c = np.full((4, 3), 123.0)
    c32 = c.astype(np.float32)
    w = np.zeros(4)
    assert kernels.minibatch_update(Xb, labels, c, c32, w) == 4
    for j in range(4):
        npt.assert_allclose(c[j], Xb[labels == j].astype(np.float64).mean(axis=0), rtol=1e-12, atol=1e-12)
    npt.assert_array_equal(w, [100, 100, 100, 100])


# --------------------------------------------------------------------------- k-means++


def run_kmeanspp(X, k, seed):
    rng = np.random.default_rng(seed)
    n_trials = 2 + int(math.log(k))
    first = int(rng.integers(X.shape[0]))
    uniforms = rng.random((k - 1, n_trials))
    idx = np.full(k, -1, dtype=np.int64)
    found = kernels.kmeanspp(X, first, uniforms, idx, kernels.chunk_count(X.shape[0]))
    return found, idx, first, uniforms


def blobs(n, d, k, seed, std=1.0):
    X, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return np.ascontiguousarray(X, dtype=np.float32), y


@pytest.mark.parametrize("n,d,k", [(50, 2, 5), (700, 3, 8), (3000, 6, 12), (40, 3, 40)])
def test_kmeanspp_matches_naive_and_picks_distinct_rows(n, d, k):
    X = data(n, d, seed=n)
    for seed in range(3):
        found, idx, first, uniforms = run_kmeanspp(X, k, seed)
        assert found == k
        assert idx[0] == first
        assert len(set(idx.tolist())) == k
        assert np.array_equal(idx, naive.kmeanspp(X, first, uniforms, k))


def test_kmeanspp_k_equals_one():
    X = data(100, 2)
    found, idx, first, _ = run_kmeanspp(X, 1, 0)
    assert found == 1 and idx[0] == first


def test_kmeanspp_picks_every_distinct_value_of_duplicated_data():
    k = 6
    rng = np.random.default_rng(3)
    P = rng.normal(scale=4.0, size=(k, 3))
    X = np.ascontiguousarray(P[rng.permutation(np.repeat(np.arange(k), 200))], dtype=np.float32)
    for seed in range(10):
        found, idx, _, _ = run_kmeanspp(X, k, seed)
        assert found == k
        assert np.unique(X[idx], axis=0).shape[0] == k


def test_kmeanspp_stops_when_distinct_rows_run_out():
    rng = np.random.default_rng(4)
    P = rng.normal(size=(3, 2))
    X = np.ascontiguousarray(P[rng.integers(0, 3, 300)], dtype=np.float32)
    for seed in range(5):
        found, idx, _, _ = run_kmeanspp(X, 5, seed)
        assert found == 3
        assert np.unique(X[idx[:found]], axis=0).shape[0] == 3


def test_kmeanspp_is_deterministic_given_uniforms():
    X = data(2000, 4, seed=21)
    found, idx, first, uniforms = run_kmeanspp(X, 9, 5)
    again = np.full(9, -1, dtype=np.int64)
    assert kernels.kmeanspp(X, first, uniforms, again, kernels.chunk_count(2000)) == found
    assert np.array_equal(idx, again)


def test_kmeanspp_beats_random_choice_and_matches_sklearn():
    X, _ = blobs(2000, 2, 10, seed=7, std=0.6)
    k = 10
    ours, uniform, sk = [], [], []
    for seed in range(20):
        found, idx, _, _ = run_kmeanspp(X, k, seed)
        assert found == k
        ours.append(naive.kmeanspp_potential(X, X[idx]))
        rand_idx = np.random.default_rng(1000 + seed).choice(X.shape[0], k, replace=False)
        uniform.append(naive.kmeanspp_potential(X, X[rand_idx]))
        centres, _ = sk_kmeans_plusplus(X.astype(np.float64), k, random_state=seed)
        sk.append(naive.kmeanspp_potential(X, centres))
    assert np.mean(ours) <= np.mean(uniform)
    assert abs(np.mean(ours) - np.mean(sk)) <= 0.15 * np.mean(sk)


# --------------------------------------------------------------------------- silhouette


def check_silhouette(X, labels, k, *, against_naive=True):
    s = silhouette_values(X, labels, k)
    assert s.shape == (X.shape[0],) and s.dtype == np.float64
    X64 = X.astype(np.float64)
    if against_naive:
        npt.assert_allclose(s, naive.silhouette_samples(X, labels), rtol=0, atol=1e-6)
    npt.assert_allclose(s, sk_silhouette_samples(X64, labels), rtol=0, atol=1e-6)
    score = silhouette_score(X, labels, k)
    npt.assert_allclose(score, sk_silhouette_score(X64, labels), rtol=0, atol=1e-6)
    return s


@pytest.mark.parametrize(
    "n,d,k,seed", [(10, 1, 2, 0), (60, 3, 4, 1), (150, 5, 3, 2), (257, 2, 6, 3), (600, 4, 5, 4)]
)
def test_silhouette_matches_naive_and_sklearn_random(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = data(n, d, seed=seed + 50)
    labels = rng.integers(0, k, n)
    labels[:k] = np.arange(k)  # every cluster present
    check_silhouette(X, labels, k, against_naive=n <= 300)


def test_silhouette_singleton_and_unequal_clusters():
    rng = np.random.default_rng(5)
    X = data(80, 3, seed=5)
    labels = np.r_[np.zeros(55, int), np.ones(20, int), np.full(4, 2), [3]]
    perm = rng.permutation(80)
    X, labels = np.ascontiguousarray(X[perm]), labels[perm]
    s = check_silhouette(X, labels, 4)
    assert s[labels == 3] == 0.0


def test_silhouette_cluster_larger_than_a_tile():
    # clusters of more than 512 rows span several tiles of the kernel
    X, y = blobs(1400, 3, 2, seed=2, std=3.0)
    check_silhouette(X, y, 2, against_naive=False)


def test_silhouette_with_an_absent_label():
    X = data(120, 2, seed=8)
    labels = np.random.default_rng(8).integers(0, 3, 120) * 2  # labels 0, 2, 4 with k = 5
    s = silhouette_values(X, labels, 5)
    npt.assert_allclose(s, naive.silhouette_samples(X, labels), rtol=0, atol=1e-6)


def test_silhouette_blobs_3000_by_16():
    X, y = blobs(3000, 16, 6, seed=0, std=2.0)
    check_silhouette(X, y, 6, against_naive=False)


def test_silhouette_score_undefined_cases():
    X = data(10, 2)
    assert silhouette_score(X, np.zeros(10, int), 1) is None
    assert silhouette_score(X, np.arange(10), 10) is None


# --------------------------------------------------------------------------- determinism


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
def test_lloyd_pass_and_silhouette_identical_for_1_and_2_threads():
    X = data(20_000, 8, seed=30)
    C = centres_for(X, 7)
    start = np.full(20_000, -1, dtype=np.int32)
    Xs, ys = blobs(2500, 5, 4, seed=3, std=2.0)
    results = []
    for t in (1, 2):
        with num_threads(t):
            out = run_lloyd_pass(X, C, start)
            total = kernels.reduce_chunks(out[2], out[3])
            found, idx, _, _ = run_kmeanspp(X, 7, 0)
            results.append((*out, *total, idx, silhouette_values(Xs, ys, 4)))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------- properties


def small_problem(max_n=40, max_d=4, max_k=5, elements=None):
    elements = elements or st.floats(-100, 100, width=32, allow_subnormal=False)

    @st.composite
    def build(draw):
        n = draw(st.integers(1, max_n))
        d = draw(st.integers(1, max_d))
        k = draw(st.integers(1, max_k))
        X = draw(hnp.arrays(np.float32, (n, d), elements=elements))
        C = draw(hnp.arrays(np.float32, (k, d), elements=elements))
        return np.ascontiguousarray(X), np.ascontiguousarray(C)

    return build()


PROPS = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(small_problem())
def test_property_labels_are_an_argmin(problem):
    X, C = problem
    labels, dist2, _ = run_assign(X, C)
    D = naive.sq_distances(X, C)
    best = D.min(axis=1)
    mine = D[np.arange(X.shape[0]), labels]
    scale = np.abs(X).max(initial=0) ** 2 + np.abs(C).max(initial=0) ** 2 + 1e-30
    assert (mine <= best + 1e-5 * best + 1e-6 * scale).all()
    npt.assert_allclose(dist2, mine, rtol=1e-5, atol=1e-6 * scale)


@PROPS
@given(small_problem())
def test_property_lloyd_step_never_increases_sse(problem):
    X, C = problem
    n = X.shape[0]
    labels, _, sums, counts, sse, _ = run_lloyd_pass(X, C, np.full(n, -1))
    total, total_counts = kernels.reduce_chunks(sums, counts)
    new = C.astype(np.float64)
    nz = total_counts > 0
    new[nz] = total[nz] / total_counts[nz, None]
    new32 = np.ascontiguousarray(new, dtype=np.float32)
    _, _, _, _, sse2, _ = run_lloyd_pass(X, new32, labels)
    before, after = float(sse.sum()), float(sse2.sum())
    scale = float((X.astype(np.float64) ** 2).sum()) + 1.0
    assert after <= before * (1 + 1e-5) + 1e-7 * scale
    # the exact (float64) SSE of the exact means never increases either
    assert naive.sse(X, labels, new) <= naive.sse(X, labels, C) * (1 + 1e-12) + 1e-9


# Zero, or 2**-10 <= |x| <= 2**10: squared float32 differences neither underflow nor overflow
# (float32 cannot tell 1e-27 from 0 once squared; that is precision, not a defect).
NORMAL_FLOATS = st.one_of(
    st.just(0.0), st.floats(0.0009765625, 1024, width=32), st.floats(-1024, -0.0009765625, width=32)
)


@st.composite
def labelled_rows(draw):
    n = draw(st.integers(2, 30))
    d = draw(st.integers(1, 4))
    k = draw(st.integers(2, 5))
    X = draw(hnp.arrays(np.float32, (n, d), elements=NORMAL_FLOATS))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    if np.unique(labels).size < 2:
        labels[0] = (labels[1] + 1) % k
    return np.ascontiguousarray(X), labels, k


@PROPS
@given(labelled_rows())
def test_property_silhouette_equals_naive(case):
    X, labels, k = case
    npt.assert_allclose(silhouette_values(X, labels, k), naive.silhouette_samples(X, labels), rtol=0, atol=1e-6)


def test_take_rows_matches_numpy_fancy_indexing():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5000, 7)).astype(np.float32)
    idx = np.sort(rng.choice(5000, size=1234, replace=False))
    out = np.empty((idx.size, 7), dtype=np.float32)
    kernels.take_rows(X, idx, out)
    np.testing.assert_array_equal(out, X[idx])
