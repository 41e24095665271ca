"""Property tests of the kernels and the Lloyd loop against ``naive`` (hypothesis).

Values are integers in -50..50 divided by 4: every coordinate, difference and squared
distance is exact in float32 for the small dimensions used here, so ties are real ties
(not rounding noise) and can be checked deliberately.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import jit_only
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import kernels
import naive
from engine.fit.batches import ArraySource
from engine.errors import InputError
from engine.fit.kmeans import FitParams, fit_kmeans, lloyd
from engine.fit.scores import silhouette_values

SETTINGS = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
GRID = st.integers(-50, 50).map(lambda v: v / 4.0)


@st.composite
def points(draw, min_rows: int = 1, max_rows: int = 80, max_dim: int = 4):
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(1, max_dim))
    return draw(arrays(np.float32, (n, d), elements=GRID))


@st.composite
def data_and_centres(draw, max_rows: int = 80, max_k: int = 6):
    X = draw(points(max_rows=max_rows))
    k = draw(st.integers(1, max_k))
    if draw(st.booleans()):  # centres on data rows (exact ties with duplicated rows)
        idx = draw(st.lists(st.integers(0, X.shape[0] - 1), min_size=k, max_size=k))
        C = X[idx].copy()
    else:
        C = draw(arrays(np.float32, (k, X.shape[1]), elements=GRID))
    return np.ascontiguousarray(X), np.ascontiguousarray(C)


def run_assign(X, C, n_chunks):
    n = X.shape[0]
    labels = np.full(n, -7, dtype=np.int32)
    dist2 = np.full(n, -1.0, dtype=np.float32)
    sse = np.full(n_chunks, np.nan)
    kernels.assign(X, C, labels, dist2, sse, n_chunks)
    return labels, dist2, sse


# ----------------------------------------------------------------------------- assignment

@SETTINGS
@given(data_and_centres(), st.integers(1, 5))
def test_assign_labels_are_an_argmin_of_the_naive_distances(xc, n_chunks) -> None:
    X, C = xc
    labels, dist2, sse = run_assign(X, C, n_chunks)
    D = naive.sq_distances(X, C)
    assert labels.min() >= 0 and labels.max() < C.shape[0]
    chosen = D[np.arange(X.shape[0]), labels]
    np.testing.assert_array_equal(chosen, D.min(axis=1))  # ties allowed: any minimiser
    np.testing.assert_array_equal(dist2.astype(np.float64), D.min(axis=1))
    assert sse.sum() == pytest.approx(D.min(axis=1).sum(), rel=1e-12, abs=0.0)


@SETTINGS
@given(data_and_centres(), st.integers(1, 5))
def test_assign_breaks_exact_ties_by_the_lowest_centre_index(xc, n_chunks) -> None:
    """Distances are exact here, so the documented tie rule (lowest index) is checkable."""
    X, C = xc
    labels, _, _ = run_assign(X, C, n_chunks)
    expected, _ = naive.assign(X, C)
    np.testing.assert_array_equal(labels, expected)


# ----------------------------------------------------------------------------- Lloyd step

def lloyd_step(X, C, n_chunks):
    """One Lloyd step with the kernels; (labels, SSE of the old centres, new float32 centres)."""
    n, d = X.shape
    k = C.shape[0]
    labels = np.full(n, -1, dtype=np.int32)
    dist2 = np.empty(n, dtype=np.float32)
    sums = np.empty((n_chunks, k, d))
    counts = np.empty((n_chunks, k), dtype=np.int64)
    sse = np.empty(n_chunks)
    changed = np.empty(n_chunks, dtype=np.int64)
    kernels.lloyd_pass(X, C, labels, dist2, sums, counts, sse, changed)
    total, total_counts = kernels.reduce_chunks(sums, counts)
    new = C.astype(np.float64).copy()
    nz = total_counts > 0
    new[nz] = total[nz] / total_counts[nz, None]
    assert int(changed.sum()) == n  # every label changed from -1
    return labels, float(sse.sum()), total, total_counts, np.ascontiguousarray(new.astype(np.float32))


@SETTINGS
@given(data_and_centres(), st.integers(1, 5))
def test_lloyd_step_never_increases_sse(xc, n_chunks) -> None:
    X, C = xc
    labels, before, sums, counts, new = lloyd_step(X, C, n_chunks)
    # the map-reduce partials equal the naive per-cluster sums and counts
    ref_sums, ref_counts = naive.lloyd_sums(X, labels, C.shape[0])
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-12, atol=1e-9)
    assert before == pytest.approx(naive.sse(X, labels, C), rel=1e-12, abs=1e-12)
    _, _, sse_after = run_assign(X, new, n_chunks)
    after = float(sse_after.sum())
    assert after <= before * (1 + 1e-6) + 1e-9, (before, after)


# ----------------------------------------------------------------------------- silhouette

@st.composite
def labelled_points(draw):
    X = draw(points(min_rows=2, max_rows=40))
    k = draw(st.integers(2, 5))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=X.shape[0], max_size=X.shape[0])),
                      dtype=np.int32)
    assume(np.unique(labels).size >= 2)  # the silhouette needs two clusters present
    return X, labels, k


@SETTINGS
@given(labelled_points())
def test_silhouette_values_equal_the_naive_silhouette(xlk) -> None:
    X, labels, k = xlk
    fast = silhouette_values(X, labels, k)
    slow = naive.silhouette_samples(X, labels)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- row order

@st.composite
def lloyd_case(draw):
    X = draw(points(min_rows=2, max_rows=120, max_dim=3))
    distinct = np.unique(X, axis=0)
    k = draw(st.integers(1, min(5, distinct.shape[0])))
    rows = draw(st.lists(st.integers(0, distinct.shape[0] - 1), min_size=k, max_size=k, unique=True))
    centres = np.ascontiguousarray(distinct[rows])
    perm = np.array(draw(st.permutations(range(X.shape[0]))), dtype=np.int64)
    max_iter = draw(st.integers(1, 30))
    tol = draw(st.sampled_from([0.0, 1e-4, 1e-2]))
    return X, centres, perm, max_iter, tol


@jit_only("float64 accumulators: interpreted, the kernels' `acc = 0.0; acc += float32` sums in float32 "
          "(NumPy 2 promotion), so the SSE's last bits depend on row order")
@SETTINGS
@given(lloyd_case())
def test_row_order_does_not_change_the_lloyd_partition(case) -> None:
    X, centres, perm, max_iter, tol = case
    a = lloyd(ArraySource(X), centres.copy(), max_iter, tol)
    b = lloyd(ArraySource(X[perm]), centres.copy(), max_iter, tol)
    unpermuted = np.empty_like(b.labels)
    unpermuted[perm] = b.labels
    np.testing.assert_array_equal(unpermuted, a.labels)
    np.testing.assert_allclose(b.centers, a.centers, rtol=0, atol=1e-5)
    assert b.inertia == pytest.approx(a.inertia, rel=1e-9, abs=1e-9)


# ----------------------------------------------------------------------------- duplicates

@st.composite
def repeated_rows(draw):
    m = draw(st.integers(2, 6))
    d = draw(st.integers(1, 3))
    rows = draw(st.lists(st.tuples(*[GRID] * d), min_size=m, max_size=m, unique=True))
    r = draw(st.integers(1, 20))
    distinct = np.array(rows, dtype=np.float32)
    X = np.repeat(distinct, r, axis=0)
    order = np.array(draw(st.permutations(range(X.shape[0]))), dtype=np.int64)
    seed = draw(st.integers(0, 2**31 - 1))
    return distinct, np.ascontiguousarray(X[order]), seed


@SETTINGS
@given(repeated_rows())
def test_k_equal_to_the_distinct_rows_puts_each_distinct_row_in_its_own_cluster(case) -> None:
    distinct, X, seed = case
    m = distinct.shape[0]
    r = X.shape[0] // m
    result = fit_kmeans(ArraySource(X), FitParams(k=m, seed=seed))
    labels = result.labels
    assert np.bincount(labels, minlength=m).tolist() == [r] * m  # m non-empty clusters of r copies
    for j in range(m):
        members = X[labels == j]
        assert (members == members[0]).all()  # one distinct row per cluster
        np.testing.assert_array_equal(result.centers[j], members[0])
    assert np.unique(result.centers, axis=0).shape[0] == m
    assert result.inertia == 0.0
    assert (result.dist2 == 0.0).all()


@SETTINGS
@given(repeated_rows())
def test_k_above_the_distinct_rows_is_an_input_error(case) -> None:
    distinct, X, seed = case
    with pytest.raises(InputError):
        fit_kmeans(ArraySource(X), FitParams(k=distinct.shape[0] + 1, seed=seed))
