"""The feature kernels (kernels/transform.py, moments.py, matrix.py, levels.py) against plain-Python
twins in naive.py."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

import kernels
import naive
from conftest import jit_only, num_threads
from kernels import moments
from engine.features.build import binary_quantile

EVERY = np.zeros(0, dtype=np.bool_)


def columns(n: int, d: int, seed: int, missing: float = 0.1) -> np.ndarray:
    """Fortran-ordered float64 columns on mixed scales with NaN, +inf and -inf sprinkled in."""
    rng = np.random.default_rng(seed)
    cols = np.asfortranarray(rng.normal(0, 1, (n, d)) * np.logspace(0, 4, d) + rng.normal(0, 50, d))
    holes = rng.random((n, d)) < missing
    cols[holes] = rng.choice([np.nan, np.inf, -np.inf], size=int(holes.sum()))
    return cols


def params(d: int, seed: int, fill: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The per-column parameter table (LO, HI, FILL) and flag words."""
    rng = np.random.default_rng(seed)
    flags = rng.integers(0, 4, d)
    lo, hi = np.full(d, -0.5), rng.uniform(1.0, 100.0, d)  # clip lower bound > -1, so log1p is defined
    flags[flags == 2] = 3  # log1p only after a clip that keeps values above -1
    fills = rng.normal(0, 1, d) if fill else np.full(d, np.nan)
    table = np.empty((d, kernels.N_PARAMS))
    table[:, kernels.LO], table[:, kernels.HI], table[:, kernels.FILL] = lo, hi, fills
    return table, flags.astype(np.int64)


def kept_mask(cols: np.ndarray) -> np.ndarray:
    return np.isfinite(cols).all(axis=1)


def no_codes(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty((n, 0), np.int32, order="F"), np.zeros((0, 2), np.int64)


def scaling_table(center, scale) -> np.ndarray:
    return np.ascontiguousarray(np.column_stack([center, scale]), dtype=np.float64)


@pytest.mark.parametrize("n,d,seed,drop", [(1, 1, 0, False), (257, 3, 1, True), (300, 3, 0, True),
                                           (9000, 6, 1, False), (20_000, 16, 2, True)])
def test_column_stats_match_naive(n, d, seed, drop):
    """Missing counts, raw minimum, kept rows, and the moments of the transformed kept values."""
    cols = columns(n, d, seed)
    table, flags = params(d, seed, fill=not drop)
    s = kernels.column_stats(cols, table, flags, drop)
    np.testing.assert_array_equal(s.bad, (~np.isfinite(cols)).sum(axis=0))
    expected = [cols[np.isfinite(cols[:, j]), j].min() if np.isfinite(cols[:, j]).any() else np.inf for j in range(d)]
    np.testing.assert_array_equal(s.low, expected)
    keep = kept_mask(cols) if drop else EVERY
    assert s.n_kept == (keep.sum() if drop else n)
    if drop and s.n_kept < n:
        np.testing.assert_array_equal(s.kept, keep)
    else:
        assert s.kept.size == 0  # every row kept: an empty mask
    if s.n_kept == 0:
        return
    m, sd, mn, mx = naive.transformed_moments(cols, table, flags, keep)
    np.testing.assert_allclose(s.mean, m, rtol=1e-12, atol=1e-12)
    # a column clipped to one value has a standard deviation of ~1e-16 either way
    np.testing.assert_allclose(np.sqrt(s.m2 / s.n_kept), sd, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(s.tmin, mn)
    np.testing.assert_array_equal(s.tmax, mx)


@pytest.mark.parametrize("drop", [False, True])
def test_column_stats_without_moments_find_the_same_rows_and_missing_values(drop):
    """Applying statistics learned elsewhere needs no moments: the same missing counts, smallest
    finite values and kept rows as the full scan, and NaN where the moments would be."""
    cols = columns(20_000, 7, 4)
    table, flags = params(7, 4, fill=not drop)
    full, light = (kernels.column_stats(cols, table, flags, drop, m) for m in (True, False))
    assert light.n_kept == full.n_kept
    for name in ("kept", "bad", "low"):
        np.testing.assert_array_equal(getattr(light, name), getattr(full, name))
    assert all(np.isnan(getattr(light, name)).all() for name in ("mean", "m2", "tmin", "tmax"))


def test_chunk_stats_kernel_alone_covers_its_rows_only():
    """The serial kernel on rows a:b: the naive figures of those rows, and no other row touched."""
    cols = columns(1000, 4, 11)
    table, flags = params(4, 11, fill=False)
    kept = np.ones(1000, dtype=np.bool_)
    bad = np.zeros(4, dtype=np.int64)
    stats = np.zeros((moments.N_STATS, 4))
    a, b = 300, 700
    m = moments.chunk_stats(cols, a, b, table, flags, True, True, kept, bad, stats)
    rows = kept_mask(cols[a:b])
    assert m == rows.sum()
    np.testing.assert_array_equal(kept[a:b], rows)
    assert kept[:a].all() and kept[b:].all()
    np.testing.assert_array_equal(bad, (~np.isfinite(cols[a:b])).sum(axis=0))
    mean, sd, mn, mx = naive.transformed_moments(np.asfortranarray(cols[a:b]), table, flags, rows)
    np.testing.assert_allclose(stats[moments.MEAN], mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(stats[moments.M2] / m), sd, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(stats[moments.TMIN], mn)
    np.testing.assert_array_equal(stats[moments.TMAX], mx)


def test_merge_moments_is_stable_far_from_zero():
    """Values around 1e9 with a spread of 1: the chunked, merged variance keeps its digits."""
    rng = np.random.default_rng(4)
    cols = np.asfortranarray(1e9 + rng.normal(0, 1, (100_000, 1)))
    s = kernels.column_stats(cols, np.zeros((1, kernels.N_PARAMS)), np.zeros(1, np.int64), False)
    assert s.n_kept == 100_000
    assert np.sqrt(s.m2[0] / s.n_kept) == pytest.approx(cols[:, 0].std(), rel=1e-7)  # E[x^2]-E[x]^2 would be off by ~100


@pytest.mark.parametrize("n,d,seed,drop", [(1, 1, 0, False), (8191, 4, 1, True), (20_000, 9, 2, True),
                                           (5000, 5, 3, False)])
def test_write_matrix_matches_naive(n, d, seed, drop):
    cols = columns(n, d, seed)
    table, flags = params(d, seed)
    kept = kept_mask(cols) if drop else EVERY
    use = np.array([j for j in range(d) if j != 1 or d == 1], dtype=np.int64)  # leave one column out
    rng = np.random.default_rng(seed)
    scaling = scaling_table(rng.normal(0, 1, use.size), rng.uniform(0.5, 3.0, use.size))
    X = kernels.write_matrix(cols, use, table, flags, scaling, *no_codes(n), kept)
    assert X.shape == (int(kept.sum()) if drop else n, use.size) and X.dtype == np.float32 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, naive.feature_matrix(cols, table, flags, scaling, use, kept))


def test_write_matrix_one_hot_columns_follow_the_numeric_ones():
    n = 20_000  # more than two blocks of rows
    rng = np.random.default_rng(5)
    cols = np.asfortranarray(rng.normal(size=(n, 2)))
    codes = np.asfortranarray(rng.integers(-1, 3, size=(n, 2)).astype(np.int32))
    kept = rng.random(n) < 0.9
    hot = np.array([[0, 0], [0, 2], [1, 1]], dtype=np.int64)
    scaling = scaling_table([0.0, 0.0, 0.2, 0.3, 0.4], [1.0, 1.0, 0.5, 0.6, 0.7])
    table = np.zeros((2, kernels.N_PARAMS))
    X = kernels.write_matrix(cols, np.array([0, 1]), table, np.zeros(2, np.int64), scaling, codes, hot, kept)
    np.testing.assert_array_equal(X[:, :2], cols[kept].astype(np.float32))
    np.testing.assert_array_equal(X, naive.feature_matrix(cols, table, np.zeros(2, np.int64), scaling, [0, 1], kept,
                                                          codes, hot.tolist()))


def test_level_counts_and_transformed_match_naive():
    rng = np.random.default_rng(6)
    codes = np.asfortranarray(rng.integers(-1, 6, size=(5000, 3)).astype(np.int32))
    kept = rng.random(5000) < 0.7
    n_levels = np.array([4, 0, 6])
    for mask in (kept, EVERY):
        np.testing.assert_array_equal(kernels.level_counts(codes, n_levels, mask), naive.level_counts(codes, n_levels, mask))
    assert kernels.level_counts(np.empty((5000, 0), np.int32, order="F"), np.zeros(0), kept).shape == (0,)
    src = columns(3000, 1, 7)[:, 0].copy()
    row = np.array([-0.5, 10.0, np.nan])
    expected = [naive.transformed_value(float(v), -0.5, 10.0, 3, np.nan) for v in src]
    np.testing.assert_array_equal(kernels.transformed(src, row, 3), expected)


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
def test_statistics_and_matrix_are_identical_on_one_and_two_threads():
    cols = columns(200_000, 8, 8)
    table, flags = params(8, 8, fill=False)
    results = []
    for t in (1, 2):
        with num_threads(t):
            s = kernels.column_stats(cols, table, flags, True)
            X = kernels.write_matrix(cols, np.arange(8), table, flags, scaling_table(np.zeros(8), np.ones(8)),
                                     *no_codes(cols.shape[0]), s.kept)
            results.append((np.r_[s.mean, s.m2], X))
    assert results[0][0].tobytes() == results[1][0].tobytes()
    assert results[0][1].tobytes() == results[1][1].tobytes()


def test_wrappers_refuse_arrays_the_kernels_cannot_take():
    """The Python layer checks layouts, dtypes and shapes, so a kernel never reads out of bounds."""
    cols = columns(100, 3, 12)
    table, flags = params(3, 12)
    scaling = scaling_table(np.zeros(3), np.ones(3))
    codes, hot = no_codes(100)
    with pytest.raises(ValueError, match="Fortran-ordered float64"):
        kernels.column_stats(np.ascontiguousarray(cols), table, flags, False)
    with pytest.raises(ValueError, match="params"):
        kernels.column_stats(cols, table[:2], flags, False)
    with pytest.raises(ValueError, match="flags"):
        kernels.column_stats(cols, table, flags.astype(np.int32), False)
    with pytest.raises(ValueError, match="use"):
        kernels.write_matrix(cols, np.array([0, 3]), table, flags, scaling[:2], codes, hot, EVERY)
    with pytest.raises(ValueError, match="scaling"):
        kernels.write_matrix(cols, np.arange(3), table, flags, scaling[:2], codes, hot, EVERY)
    with pytest.raises(ValueError, match="hot"):
        kernels.write_matrix(cols, np.arange(3), table, flags, scaling_table(np.zeros(4), np.ones(4)), codes,
                             np.array([[0, 1]]), EVERY)
    with pytest.raises(ValueError, match="kept"):
        kernels.write_matrix(cols, np.arange(3), table, flags, scaling, codes, hot, np.ones(99, dtype=np.bool_))
    with pytest.raises(ValueError, match="n_levels"):
        kernels.level_counts(np.zeros((100, 2), np.int32, order="F"), np.array([3]), EVERY)


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
