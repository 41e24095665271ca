"""The one-pass kernels: per-segment moments folded block by block, and the bottom-k hash
sample, each against its naive twin, and the same whatever the blocks."""

from __future__ import annotations

import naive
import numpy as np
import numpy.testing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.hashsample import BottomK, block_keys, sample_rows
from kernels.segments import COUNT, M2, MAX, MEAN, MIN, SUM, SegmentMoments


def data(n: int, d: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    values = rng.normal(50, 20, size=(n, d)) * rng.choice([1.0, 1000.0], size=d)
    values[rng.random((n, d)) < 0.02] = np.nan
    values[rng.random((n, d)) < 0.005] = np.inf
    labels = rng.integers(-1, k, size=n).astype(np.int32)  # -1: a dropped row
    return values, labels


@pytest.mark.parametrize(("n", "d", "k"), [(1, 1, 1), (1000, 3, 4), (70_000, 5, 7), (200_003, 2, 3)])
def test_segment_moments_match_the_naive_twin(n, d, k) -> None:
    values, labels = data(n, d, k, seed=n)
    acc = SegmentMoments(k, d)
    acc.add(values, labels)
    ref = naive.segment_moments(values, labels, k)
    npt.assert_array_equal(acc.table[COUNT], ref[COUNT])
    npt.assert_allclose(acc.table[MEAN], ref[MEAN], rtol=1e-12, atol=1e-9)
    npt.assert_allclose(acc.table[M2], ref[M2], rtol=1e-10, atol=1e-6)
    npt.assert_array_equal(acc.table[MIN], ref[MIN])
    npt.assert_array_equal(acc.table[MAX], ref[MAX])
    npt.assert_allclose(acc.table[SUM], ref[SUM], rtol=1e-12, atol=1e-6)


def test_segment_sums_of_integers_are_exact() -> None:
    """The SUM plane adds integers without rounding (mean * count would not), for any blocks."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, 10**9, size=(200_000, 2)).astype(np.float64)
    labels = rng.integers(-1, 3, size=200_000).astype(np.int32)
    acc = SegmentMoments(3, 2)
    for a in range(0, 200_000, 2 * acc.chunk_rows):
        acc.add(values[a:a + 2 * acc.chunk_rows], labels[a:a + 2 * acc.chunk_rows])
    exact = [[sum(int(v) for v in values[labels == s, j]) for j in range(2)] for s in range(3)]
    assert acc.table[SUM].tolist() == [[float(v) for v in row] for row in exact]


def test_segment_moments_are_the_same_bits_for_any_blocks_of_whole_chunks() -> None:
    values, labels = data(300_000, 4, 5, seed=1)
    whole = SegmentMoments(5, 4)
    whole.add(values, labels)
    for chunks_per_block in (1, 2, 3):
        rows = chunks_per_block * whole.chunk_rows
        acc = SegmentMoments(5, 4)
        for a in range(0, values.shape[0], rows):
            acc.add(values[a:a + rows], labels[a:a + rows])
        assert acc.table.tobytes() == whole.table.tobytes(), chunks_per_block
    fortran = SegmentMoments(5, 4)
    fortran.add(np.asfortranarray(values), labels)
    assert fortran.table.tobytes() == whole.table.tobytes()


def test_segment_moments_refuse_a_block_off_the_chunk_grid() -> None:
    acc = SegmentMoments(2, 1, chunk_rows=256)
    acc.add(np.zeros((100, 1)), np.zeros(100, dtype=np.int32))
    with pytest.raises(ValueError, match="does not start on a 256-row chunk"):
        acc.add(np.zeros((10, 1)), np.zeros(10, dtype=np.int32))
    with pytest.raises(ValueError, match="not below k=2"):
        SegmentMoments(2, 1).add(np.zeros((3, 1)), np.array([0, 1, 2], dtype=np.int32))


def test_hash_keys_match_the_naive_twin() -> None:
    for seed, offset in ((0, 0), (7, 10**9), (2**31, 123)):
        keys = np.empty(50, dtype=np.uint64)
        block_keys(seed, offset, keys)
        assert [int(v) for v in keys] == [naive.row_key(seed, offset + i) for i in range(50)]


def test_bottom_k_is_the_naive_sample_and_everything_when_it_fits() -> None:
    sample = BottomK(size=100, seed=3)
    sample.add(0, x=np.arange(1000.0))
    assert sample.rows.tolist() == naive.bottom_k_rows(1000, 100, 3)
    assert sample.values["x"].tolist() == [float(r) for r in sample.rows]
    small = BottomK(size=100, seed=3)
    small.add(0, x=np.arange(60.0))
    assert small.rows.tolist() == list(range(60))


def test_sample_rows_are_the_bottom_k_rows_without_values() -> None:
    assert sample_rows(5000, 300, 9).tolist() == naive.bottom_k_rows(5000, 300, 9)
    assert sample_rows(40, 300, 9).tolist() == list(range(40))
    assert sample_rows(1000, 999, 2).tolist() == naive.bottom_k_rows(1000, 999, 2)  # the bound is every key


@pytest.mark.parametrize("n, size, seed", [(70_000, 1_000, 0), (200_000, 65_536, 5), (131_072, 7, 11)])
def test_sample_rows_is_what_a_stream_of_blocks_keeps(n, size, seed) -> None:
    """The bounded search (keys below a cut, the cut doubled on a miss) finds the rows BottomK keeps."""
    stream = BottomK(size, seed)
    for a in range(0, n, 30_000):
        stream.add(a, row=np.empty(min(30_000, n - a), dtype=np.bool_))
    np.testing.assert_array_equal(sample_rows(n, size, seed), stream.rows)


def test_sample_rows_doubles_its_bound_when_too_few_keys_fall_below_it(monkeypatch) -> None:
    import kernels.hashsample as hs

    calls = []
    real = hs.count_below

    def counting(seed, n, cut, n_chunks, counts):
        calls.append(int(cut))
        real(seed, n, np.uint64(int(cut) // 4) if len(calls) == 1 else cut, n_chunks, counts)  # the first misses
    monkeypatch.setattr(hs, "count_below", counting)
    assert hs.sample_rows(50_000, 2_000, 4).tolist() == naive.bottom_k_rows(50_000, 2_000, 4)
    assert len(calls) == 2 and calls[1] == 2 * calls[0]


def test_bottom_k_is_roughly_uniform() -> None:
    sample = BottomK(size=20_000, seed=0)
    sample.add(0, x=np.zeros(1_000_000))
    counts = np.bincount(sample.rows // 100_000, minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200  # 2,000 expected per tenth, sd about 42


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5000), size=st.integers(1, 600), seed=st.integers(0, 2**32),
       cuts=st.lists(st.integers(1, 4999), max_size=8), reverse=st.booleans())
def test_the_hash_sample_is_the_same_for_any_blocks_in_any_order(n, size, seed, cuts, reverse) -> None:
    """Property: whatever the block boundaries, and in whichever order the blocks come (a cluster's
    partitions), the sample is the same rows with the same values."""
    values = np.arange(n, dtype=np.float64) * 2.5
    whole = BottomK(size, seed)
    whole.add(0, v=values)
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    blocks = list(zip(bounds[:-1], bounds[1:]))
    if reverse:
        blocks.reverse()
    parts = BottomK(size, seed)
    for a, b in blocks:
        parts.add(a, v=values[a:b])
    assert parts.rows.tolist() == whole.rows.tolist()
    assert parts.values["v"].tolist() == whole.values["v"].tolist()
    assert whole.rows.tolist() == naive.bottom_k_rows(n, size, seed)


def test_a_known_sample_keeps_what_bottom_k_keeps() -> None:
    from kernels.hashsample import KnownSample

    n, size = 100_000, 3_000
    stream, known = BottomK(size, 8), KnownSample(n, size, 8)
    for a in range(0, n, 65_536):
        x = np.arange(a, min(n, a + 65_536), dtype=np.float64) * 0.5
        stream.add(a, x=x)
        known.add(a, x=x)
    np.testing.assert_array_equal(known.rows, stream.rows)
    np.testing.assert_array_equal(known.values["x"], stream.values["x"])
    assert known.rows.tolist() == naive.bottom_k_rows(n, size, 8)
