"""The feature-matrix kernels (kernels/transform.py) against plain-Python twins in naive.py."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

import kernels
import naive
from conftest import jit_only, num_threads
from engine.features.build import binary_quantile

EVERY = np.zeros(0, dtype=np.bool_)


def columns(n: int, d: int, seed: int, missing: float = 0.1) -> np.ndarray:
    """Fortran-ordered float64 columns on mixed scales with NaN, +inf and -inf sprinkled in."""
    rng = np.random.default_rng(seed)
    cols = np.asfortranarray(rng.normal(0, 1, (n, d)) * np.logspace(0, 4, d) + rng.normal(0, 50, d))
    holes = rng.random((n, d)) < missing
    cols[holes] = rng.choice([np.nan, np.inf, -np.inf], size=int(holes.sum()))
    return cols


def params(d: int, seed: int):
    rng = np.random.default_rng(seed)
    flags = rng.integers(0, 4, d)
    lo, hi = np.full(d, -0.5), rng.uniform(1.0, 100.0, d)  # clip lower bound > -1, so log1p is defined
    flags[flags == 2] = 3  # log1p only after a clip that keeps values above -1
    fill = rng.normal(0, 1, d)
    return lo, hi, flags.astype(np.int64), fill


def kept_mask(cols: np.ndarray) -> np.ndarray:
    return np.isfinite(cols).all(axis=1)


def stats(cols, lo, hi, flags, fill, drop):
    n, d = cols.shape
    nc = kernels.chunk_count(n, d)
    kept = np.empty(n if drop else 0, dtype=np.bool_)
    bad, counts = np.empty((nc, d), dtype=np.int64), np.empty(nc, dtype=np.int64)
    lows, means, m2s, tmins, tmaxs = (np.empty((nc, d)) for _ in range(5))
    kernels.column_stats(cols, lo, hi, flags, fill, drop, nc, kept, bad, lows, counts, means, m2s, tmins, tmaxs)
    total, mean, m2 = kernels.merge_moments(counts, means, m2s)
    return kept, bad.sum(axis=0), lows.min(axis=0), total, mean, m2, tmins.min(axis=0), tmaxs.max(axis=0)


@pytest.mark.parametrize("n,d,seed,drop", [(1, 1, 0, False), (257, 3, 1, True), (300, 3, 0, True),
                                           (9000, 6, 1, False), (20_000, 16, 2, True)])
def test_column_stats_match_naive(n, d, seed, drop):
    """Missing counts, raw minimum, kept rows, and the moments of the transformed kept values."""
    cols = columns(n, d, seed)
    lo, hi, flags, fill = params(d, seed)
    if drop:
        fill = np.full(d, np.nan)
    kept, bad, lows, total, mean, m2, tmin, tmax = stats(cols, lo, hi, flags, fill, drop)
    np.testing.assert_array_equal(bad, (~np.isfinite(cols)).sum(axis=0))
    expected = [cols[np.isfinite(cols[:, j]), j].min() if np.isfinite(cols[:, j]).any() else np.inf for j in range(d)]
    np.testing.assert_array_equal(lows, expected)
    if drop:
        np.testing.assert_array_equal(kept, kept_mask(cols))
    keep = kept if drop else EVERY
    assert total == (kept_mask(cols).sum() if drop else n)
    if total == 0:
        return
    m, s, mn, mx = naive.transformed_moments(cols, lo, hi, flags, fill, keep)
    np.testing.assert_allclose(mean, m, rtol=1e-12, atol=1e-12)
    # a column clipped to one value has a standard deviation of ~1e-16 either way
    np.testing.assert_allclose(np.sqrt(m2 / total), s, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(tmin, mn)
    np.testing.assert_array_equal(tmax, mx)


def test_merge_moments_is_stable_far_from_zero():
    """Values around 1e9 with a spread of 1: the chunked, merged variance keeps its digits."""
    rng = np.random.default_rng(4)
    cols = np.asfortranarray(1e9 + rng.normal(0, 1, (100_000, 1)))
    zeros = np.zeros(1)
    _, _, _, total, mean, m2, _, _ = stats(cols, zeros, zeros, np.zeros(1, np.int64), zeros, False)
    assert total == 100_000
    assert np.sqrt(m2[0] / total) == pytest.approx(cols[:, 0].std(), rel=1e-7)  # E[x^2]-E[x]^2 would be off by ~100


@pytest.mark.parametrize("n,d,seed,drop", [(1, 1, 0, False), (8191, 4, 1, True), (20_000, 9, 2, True),
                                           (5000, 5, 3, False)])
def test_write_matrix_matches_naive(n, d, seed, drop):
    cols = columns(n, d, seed)
    lo, hi, flags, fill = params(d, seed)
    kept = kept_mask(cols) if drop else EVERY
    use = np.array([j for j in range(d) if j != 1 or d == 1], dtype=np.int64)  # leave one column out
    rng = np.random.default_rng(seed)
    center, scale = rng.normal(0, 1, use.size), rng.uniform(0.5, 3.0, use.size)
    X = np.empty((int(kept.sum()) if drop else n, use.size), dtype=np.float32)
    none = np.zeros(0)
    rows = kernels.write_matrix(cols, use, lo, hi, flags, fill, center, scale, np.empty((n, 0), np.int32, order="F"),
                                np.zeros(0, np.int64), np.zeros(0, np.int32), none, none, kept, X)
    assert rows == X.shape[0]
    np.testing.assert_array_equal(X, naive.feature_matrix(cols, lo, hi, flags, fill, center, scale, use, kept))


def test_write_matrix_one_hot_columns_follow_the_numeric_ones():
    n = 10_000
    rng = np.random.default_rng(5)
    cols = np.asfortranarray(rng.normal(size=(n, 2)))
    codes = np.asfortranarray(rng.integers(-1, 3, size=(n, 2)).astype(np.int32))
    kept = rng.random(n) < 0.9
    oh_code, oh_level = np.array([0, 0, 1], dtype=np.int64), np.array([0, 2, 1], dtype=np.int32)
    oh_center, oh_scale = np.array([0.2, 0.3, 0.4]), np.array([0.5, 0.6, 0.7])
    X = np.empty((int(kept.sum()), 5), dtype=np.float32)
    zeros = np.zeros(2)
    kernels.write_matrix(cols, np.array([0, 1]), zeros, zeros, np.zeros(2, np.int64), zeros, zeros, np.ones(2),
                         codes, oh_code, oh_level, oh_center, oh_scale, kept, X)
    np.testing.assert_array_equal(X[:, :2], cols[kept].astype(np.float32))
    for m in range(3):
        hot = (codes[kept, oh_code[m]] == oh_level[m]).astype(np.float64)
        np.testing.assert_array_equal(X[:, 2 + m], ((hot - oh_center[m]) / oh_scale[m]).astype(np.float32))


def test_level_counts_and_transformed_match_numpy():
    rng = np.random.default_rng(6)
    code = rng.integers(-1, 5, 5000).astype(np.int32)
    kept = rng.random(5000) < 0.7
    np.testing.assert_array_equal(kernels.level_counts(code, 4, kept), np.bincount(code[kept & (code >= 0) & (code < 4)], minlength=4))
    src = columns(3000, 1, 7)[:, 0].copy()
    out = np.empty(3000)
    kernels.transformed(src, -0.5, 10.0, 3, np.nan, out)
    expected = [naive.transformed_value(float(v), -0.5, 10.0, 3, np.nan) for v in src]
    np.testing.assert_array_equal(out, expected)


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
def test_statistics_and_matrix_are_identical_on_one_and_two_threads():
    cols = columns(200_000, 8, 8)
    lo, hi, flags, fill = params(8, 8)
    kept = kept_mask(cols)
    fill = np.full(8, np.nan)
    results = []
    for t in (1, 2):
        with num_threads(t):
            _, _, _, _, mean, m2, _, _ = stats(cols, lo, hi, flags, fill, True)
            X = np.empty((int(kept.sum()), 8), dtype=np.float32)
            none = np.zeros(0)
            kernels.write_matrix(cols, np.arange(8), lo, hi, flags, fill, np.zeros(8), np.ones(8),
                                 np.empty((cols.shape[0], 0), np.int32, order="F"), np.zeros(0, np.int64),
                                 np.zeros(0, np.int32), none, none, kept, X)
            results.append((np.r_[mean, m2], X))
    assert results[0][0].tobytes() == results[1][0].tobytes()
    assert results[0][1].tobytes() == results[1][1].tobytes()


def test_standard_scaling_of_the_pipeline_matches_sklearn(tmp_path):
    """The engine's standard scaler statistics equal StandardScaler's on the same columns."""
    import polars as pl

    from engine.features.build import build_features
    from engine.input.files import open_input
    from engine.features.spec import spec_from_columns

    rng = np.random.default_rng(9)
    raw = rng.normal(0, 1, (5000, 4)) * [1, 10, 1000, 1e5] + [0, -3, 7, 1e6]
    pl.DataFrame({f"c{j}": raw[:, j] for j in range(4)}).write_parquet(tmp_path / "x.parquet")
    data = build_features(open_input([tmp_path / "x.parquet"], None), spec_from_columns("c0,c1,c2,c3"))
    np.testing.assert_allclose(data.fitted.scaler.center, StandardScaler().fit(raw).mean_, rtol=1e-12)
    np.testing.assert_allclose(data.fitted.scaler.scale, StandardScaler().fit(raw).scale_, rtol=1e-10)
    np.testing.assert_allclose(data.X, StandardScaler().fit_transform(raw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("zeros,n", [(0, 5), (5, 5), (3, 10), (7, 10), (1, 2), (50, 101)])
def test_binary_quantile_matches_numpy(zeros, n):
    values = np.r_[np.zeros(zeros), np.ones(n - zeros)]
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert binary_quantile(zeros, n, q) == pytest.approx(float(np.quantile(values, q)), abs=1e-12)
