"""Streamed runs (``--stream``, or automatic when the in-memory run would not fit ``--memory-limit``)
give the in-memory run's results: the same segments, profiles, model and metrics, on any block
layout; and they fail as cleanly (bad input, a full disk, SIGKILL)."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from conftest import RUN_FILES, invoke, read_json
from engine.duck import connect as duck
from engine.features import build
from engine.fit.batches import ArraySource, ScratchSource
from engine.fit.kmeans import FitParams, assign_rows, fit_kmeans, lloyd
from engine.input import blocks
from engine.input.files import open_input

COMPARED = ("segments.parquet", "profiles.parquet", "projection.parquet", "impact.parquet", "offers.parquet")


@pytest.fixture(scope="module")
def customers_200k(tmp_path_factory) -> Path:
    """200,000 generated customers (missing values, two categorical columns, revenue, response)."""
    from engine.synth.customers import generate_customers

    path = tmp_path_factory.mktemp("stream") / "customers.parquet"
    generate_customers(path, 200_000, segments=5, seed=2)
    return path


@pytest.fixture
def small_blocks(monkeypatch) -> None:
    """Blocks of one 65,536-row chunk and a 50,000-row statistics sample: many blocks, and the
    statistics learned from the hash sample, on test-sized data."""
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 1 << 16)
    monkeypatch.setattr(build, "STATS_SAMPLE", 50_000)


def scratch_of(tmp_path: Path, X: np.ndarray, block_rows: int) -> ScratchSource:
    source = ScratchSource(tmp_path / "rows.f32", X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        source.append(X[start:start + block_rows])
    return source


def assert_same_run(a: Path, b: Path) -> None:
    """Two run directories with the same results (metrics alike but for timings and how the rows were read)."""
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in COMPARED:
        if (a / name).exists():
            assert pl.read_parquet(a / name).equals(pl.read_parquet(b / name)), name
    assert (a / "model.json").read_bytes() == (b / "model.json").read_bytes()
    ma, mb = read_json(a / "metrics.json"), read_json(b / "metrics.json")
    assert (ma["streamed"], mb["streamed"]) == (False, True)
    assert {k: v for k, v in ma.items() if k not in ("seconds", "streamed")} == \
        {k: v for k, v in mb.items() if k not in ("seconds", "streamed")}
    ours = [{k: v for k, v in pq.read_metadata(d / "segments.parquet").metadata.items() if k.startswith(b"segment.")}
            for d in (a, b)]
    assert ours[0] == ours[1] and ours[0]


# ----------------------------------------------------------------------------- equal results

@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_streamed_run_equals_the_in_memory_run_on_many_blocks(fmt: str, customers_200k: Path, tmp_path: Path,
                                                               small_blocks) -> None:
    data = customers_200k
    if fmt == "csv":
        data = tmp_path / "customers.csv"
        pl.read_parquet(customers_200k).write_csv(data)
    kw = {"spec": "customers", "k": 5, "seed": 3, "partition_by_segment": fmt == "parquet"}
    memory = engine.run([data], out=tmp_path / "memory", **kw)
    streamed = engine.run([data], out=tmp_path / "streamed", stream=True, **kw)
    assert memory.metrics["rows_dropped"] > 0  # the mask of dropped rows is exercised
    assert memory.metrics["rows"] > 3 * blocks.BLOCK_ROWS and memory.metrics["rows"] > 3 * build.STATS_SAMPLE
    np.testing.assert_array_equal(memory.model.centers, streamed.model.centers)
    assert_same_run(tmp_path / "memory", tmp_path / "streamed")
    parts = sorted(p.relative_to(tmp_path / "memory") for p in (tmp_path / "memory").glob("segments/*/*.parquet"))
    assert len(parts) == (6 if fmt == "parquet" else 0)  # 5 segments and the rows dropped for missing values
    for part in parts:
        assert pl.read_parquet(tmp_path / "memory" / part).equals(pl.read_parquet(tmp_path / "streamed" / part))
    segments = pq.ParquetFile(tmp_path / "streamed" / "segments.parquet")
    assert segments.metadata.num_row_groups == -(-memory.metrics["rows"] // blocks.BLOCK_ROWS)


def test_a_run_on_plain_columns_reads_its_input_once_and_equals_the_streamed_run(customers_200k: Path, tmp_path: Path,
                                                                                  small_blocks, monkeypatch) -> None:
    """Features that are the input's columns as they are, no business measures: the in-memory
    run's insight takes its sample from the run's read and reads the input no more (two scans of
    the file in all: the ids, then each feature column once), and its outputs equal a streamed
    run's, describe.json and the hash sample's medians included (more rows than the sample)."""
    import engine.insight.profiles as profiles

    monkeypatch.setattr(profiles, "SAMPLE_ROWS", 30_000)
    features = ["Income", "Recency", "MntWines", "MntMeatProducts", "NumWebVisitsMonth"]
    kw = {"features": ",".join(features), "k": 4, "seed": 5}
    read, sliced = blocks.read_block, []
    monkeypatch.setattr(blocks, "read_block", lambda *a: sliced.append(a[1]) or read(*a))
    memory = engine.run([customers_200k], out=tmp_path / "memory", **kw)
    assert not sliced and memory.metrics["rows_dropped"] > 0
    streamed = engine.run([customers_200k], out=tmp_path / "streamed", stream=True, **kw)
    assert sliced  # the streamed run reads its blocks
    assert_same_run(tmp_path / "memory", tmp_path / "streamed")
    describe = [{**read_json(d / "describe.json"), "seconds": 0} for d in (tmp_path / "memory", tmp_path / "streamed")]
    assert describe[0] == describe[1]


def test_stream_flag_on_the_shared_dataset_through_the_cli(data_csv: Path, tmp_path: Path) -> None:
    args = ["run", data_csv, "--spec", "marketing", "--k", "4"]
    memory = invoke([*args, "--out", tmp_path / "memory"])
    streamed = invoke([*args, "--out", tmp_path / "streamed", "--stream"])
    assert memory.exit_code == 0 and streamed.exit_code == 0, streamed.output
    assert "in blocks (streamed)" in streamed.stderr and "streamed" not in memory.stderr
    assert_same_run(tmp_path / "memory", tmp_path / "streamed")
    assert not [p for p in tmp_path.iterdir() if ".scratch-" in p.name]  # the scratch space is gone


def test_a_memory_limit_below_the_estimate_streams_instead_of_refusing(generated_parquet: Path, tmp_path: Path) -> None:
    result = invoke(["run", generated_parquet, "--k", "3", "--out", tmp_path / "run", "--memory-limit", "1MB"])
    assert result.exit_code == 0, result.output
    assert "available: streaming" in result.stderr
    assert read_json(tmp_path / "run" / "metrics.json")["streamed"] is True
    # predict does not stream: it still refuses, with one line and nothing written
    refused = invoke(["predict", tmp_path / "run", generated_parquet, "--out", tmp_path / "p.parquet",
                      "--memory-limit", "1MB"])
    assert refused.exit_code == 2 and "need about" in refused.output
    assert not (tmp_path / "p.parquet").exists()


@pytest.mark.parametrize("extra, word", [(["--k", "auto"], "--k auto"), (["--k", "3", "--pca", "2"], "PCA")])
def test_stream_refuses_what_it_cannot_do_with_one_line(extra: list, word: str, data_csv: Path, tmp_path: Path) -> None:
    result = invoke(["run", data_csv, "--spec", "marketing", *extra, "--out", tmp_path / "run", "--stream"])
    assert result.exit_code == 2, result.output
    assert result.output.count("Error:") == 1 and word in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the scratch source

def test_scratch_source_reads_what_an_array_source_holds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 1 << 12)
    X = np.random.default_rng(0).standard_normal((20_000, 3)).astype(np.float32)
    array, scratch = ArraySource(X), scratch_of(tmp_path, X, 3_000)  # appended in other sizes than it is read
    assert scratch.n_rows == 20_000
    many = np.sort(np.random.default_rng(3).integers(0, 20_000, size=70_000))  # read block by block
    for rows in (np.array([0, 5, 19_999]), np.arange(0, 20_000, 3), np.array([7, 2, 7, 19_000, 1]), many, many[::-1]):
        np.testing.assert_array_equal(scratch.take(rows), X[rows])
    for size in (100, 10_000, 30_000):
        a, b = array.sample(size, np.random.default_rng(1)), scratch.sample(size, np.random.default_rng(1))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(array.draw(500, np.random.default_rng(2)), scratch.draw(500, np.random.default_rng(2)))
    got = [(start, block.copy()) for start, block in scratch.blocks()]
    want = list(array.blocks())
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(0, 20_000, 1 << 12))
    for (_, g), (_, w) in zip(got, want):
        np.testing.assert_array_equal(g, w)
    scratch.close()


def test_a_fit_on_the_scratch_file_is_the_in_memory_fit(tmp_path: Path, monkeypatch) -> None:
    """Mini-batch steps, the subsample and full Lloyd passes over several blocks: the same bits."""
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 1 << 14)
    rng = np.random.default_rng(4)
    X = (rng.standard_normal((70_000, 4)) + rng.integers(0, 4, size=(70_000, 1)) * 2.5).astype(np.float32)
    params = FitParams(k=4, seed=5, init_sample=4_096, mid_sample_min=16_384)
    a = fit_kmeans(ArraySource(X), params)
    b = fit_kmeans(scratch_of(tmp_path, X, 10_000), params)
    assert a.n_steps > 0 and a.n_iter > 0 and a.seconds["subsample"] >= 0
    np.testing.assert_array_equal(a.centers, b.centers)
    np.testing.assert_array_equal(a.labels, b.labels)  # held in one byte per row when streamed
    assert b.labels.dtype == np.int8 and b.dist2 is None  # the final pass computes distances again:
    np.testing.assert_array_equal(a.dist2, assign_rows(X, b.centers)[1])  # the same bits
    assert a.inertia == b.inertia and a.n_iter == b.n_iter


def test_empty_clusters_are_refilled_from_the_scratch_file_as_in_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 1 << 10)
    X = np.random.default_rng(6).standard_normal((5_000, 2)).astype(np.float32)
    centres = np.array([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0]])  # two centres nobody is near
    a = lloyd(ArraySource(X), centres, 50, 1e-8)
    b = lloyd(scratch_of(tmp_path, X, 777), centres, 50, 1e-8)
    assert (np.bincount(a.labels, minlength=3) > 0).all()
    np.testing.assert_array_equal(a.centers, b.centers)
    np.testing.assert_array_equal(a.labels, b.labels)


# ----------------------------------------------------------------------------- the statistics sample

def test_statistics_come_from_every_row_up_to_the_sample_size(monkeypatch) -> None:
    monkeypatch.setattr(build, "STATS_SAMPLE", 1_000)
    np.testing.assert_array_equal(build.stats_rows(1_000, 3), np.arange(1_000))
    rows = build.stats_rows(10_000, 3)
    assert rows.size == 1_000 and (np.diff(rows) > 0).all() and rows[-1] < 10_000
    assert not np.array_equal(rows, build.stats_rows(10_000, 4))  # the seed draws the sample


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3_000), size=st.integers(1, 4_000), block=st.integers(1, 1_200), seed=st.integers(0, 99))
def test_the_statistics_sample_reads_the_same_rows_for_any_block_size(n: int, size: int, block: int, seed: int,
                                                                      tmp_path_factory) -> None:
    path = tmp_path_factory.getbasetemp() / f"sample-{n}.parquet"
    if not path.exists():
        pl.DataFrame({"row": np.arange(n), "x": np.arange(n) * 0.5}).write_parquet(path, row_group_size=97)
    inp = open_input([path])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "STATS_SAMPLE", size)
        rows = build.stats_rows(n, seed)
    whole = blocks.gather(inp, n, rows, ["row", "x"], block_rows=n)
    assert blocks.gather(inp, n, rows, ["row", "x"], block_rows=block).equals(whole)
    assert whole["row"].to_list() == rows.tolist()


# ----------------------------------------------------------------------------- bad input and faults

def test_duplicate_ids_in_a_streamed_block_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dupes.parquet"
    pl.DataFrame({"id": [1, 2, 2, 3, 4, 5], "x": [1.0, 2, 3, 4, 5, 6]}).write_parquet(path)
    result = invoke(["run", path, "--features", "x", "--id-col", "id", "--k", "2", "--out", tmp_path / "run", "--stream"])
    assert result.exit_code == 2 and "duplicated values" in result.output and str(path) in result.output
    assert not (tmp_path / "run").exists()


def test_a_schema_change_between_files_is_refused_before_any_output(tmp_path: Path) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pl.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0]}).write_parquet(first)
    pl.DataFrame({"id": [4, 5, 6], "x": ["4", "5", "6"]}).write_parquet(second)
    outputs = []
    for extra in ([], ["--stream"]):
        result = invoke(["run", first, second, "--features", "x", "--k", "2", "--out", tmp_path / "run", *extra])
        assert result.exit_code == 2 and result.output.count("Error:") == 1, result.output
        outputs.append(result.output)
    assert outputs[0] == outputs[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]


def enospc_after(n_ok: int, real):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)
    return wrapper


def spills(monkeypatch) -> list[tuple[Path, int]]:
    """Record every query result written to a scratch file; holding one in memory fails the test."""
    seen: list[tuple[Path, int]] = []
    real = duck.query_input

    def recorded(relation, spill=None):
        if spill is None:
            raise AssertionError("a streamed run held the query's result in memory")
        frame, rows = real(relation, spill)
        seen.append((spill, rows))
        return frame, rows
    monkeypatch.setattr(duck, "query_input", recorded)
    monkeypatch.setattr(duck, "arrow_frame", lambda _r: pytest.fail("read_all() of a streamed query"))
    return seen


def test_a_streamed_sql_input_goes_through_a_scratch_file(customers_200k: Path, tmp_path: Path, small_blocks,
                                                         monkeypatch) -> None:
    """--sql with --stream: DuckDB's Arrow batches are written to a scratch Parquet file as they
    come (never all in memory) and every pass reads that file; the results are the in-memory run's."""
    query = f"SELECT * FROM read_parquet('{customers_200k}') WHERE ID % 7 <> 3"
    kw = {"spec": "customers", "k": 4, "seed": 5, "sql": query}
    engine.run(out=tmp_path / "memory", **kw)
    seen = spills(monkeypatch)
    streamed = engine.run(out=tmp_path / "streamed", stream=True, **kw)
    assert len(seen) == 1 and seen[0][1] == streamed.metrics["rows"] > 2 * blocks.BLOCK_ROWS
    assert ".scratch-" in seen[0][0].parent.name and not seen[0][0].exists()  # removed with the scratch space
    assert_same_run(tmp_path / "memory", tmp_path / "streamed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory", "streamed"]


def test_a_streamed_rfm_run_goes_through_a_scratch_file(tmp_path: Path, small_blocks, monkeypatch) -> None:
    """The RFM preset's per-customer query, streamed: the same as in memory."""
    from engine.synth.transactions import generate_transactions

    tx = tmp_path / "tx.parquet"
    generate_transactions(tx, 150_000, seed=4)
    args = ["run", tx, "--preset", "rfm", "--customer-col", "customer_id", "--date-col", "ts",
            "--amount-col", "amount", "--k", "4", "--overwrite"]
    assert invoke([*args, "--out", tmp_path / "memory"]).exit_code == 0
    seen = spills(monkeypatch)
    result = invoke([*args, "--out", tmp_path / "streamed", "--stream"])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and seen[0][1] > 2 * blocks.BLOCK_ROWS
    assert_same_run(tmp_path / "memory", tmp_path / "streamed")


@pytest.mark.parametrize("point", ["scratch", "segments", "sql"])
def test_a_full_disk_in_a_streamed_run_keeps_the_previous_outputs(point: str, customers_200k: Path, tmp_path: Path,
                                                                  small_blocks, monkeypatch) -> None:
    out = tmp_path / "run"
    source = ["--sql", f"SELECT * FROM read_parquet('{customers_200k}')"] if point == "sql" else [customers_200k]
    args = ["run", *source, "--spec", "customers", "--k", "3", "--out", out, "--stream", "--overwrite"]
    assert invoke(args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    if point == "scratch":
        monkeypatch.setattr(ScratchSource, "append", enospc_after(1, ScratchSource.append))
    else:  # the segments' second row group, or the query result's first (the scratch file's)
        monkeypatch.setattr(pq.ParquetWriter, "write_table",
                            enospc_after(0 if point == "sql" else 1, pq.ParquetWriter.write_table))
    result = invoke([*args[:-2], "--seed", "9", "--stream", "--overwrite"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0].lower() and str(out) in errors[0]
    assert "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no scratch space, no temporary run


@pytest.mark.slow
def test_a_killed_streamed_run_leaves_the_previous_or_the_new_outputs(tmp_path_factory) -> None:
    """SIGKILL during the feature pass, the fit and the final pass of a two-block streamed run:
    the output is the previous run or the complete new one, and the next run removes the scratch."""
    from engine.synth.customers import generate_customers
    from test_atomic import complete, sigkill, start

    base = tmp_path_factory.mktemp("stream_kill")
    data = base / "customers.parquet"
    generate_customers(data, blocks.BLOCK_ROWS + 100_000, segments=5, seed=0)

    def args(out: Path, seed: int) -> list:
        return ["run", data, "--spec", "customers", "--k", "5", "--out", out, "--seed", str(seed), "--quiet",
                "--stream", "--overwrite"]

    reference = base / "reference"
    seconds = complete(args(reference, 1), cwd=base)
    out = base / "run"
    complete(args(out, 0), cwd=base)
    previous = {p.name: p.read_bytes() for p in out.iterdir()}
    seen = set()
    for fraction in (0.15, 0.4, 0.65, 0.9):
        proc = start(args(out, 1), cwd=base)
        time.sleep(seconds * fraction)
        sigkill(proc)
        files = {p.name: p.read_bytes() for p in out.iterdir()}
        if files == previous:
            seen.add("previous")
            continue
        assert sorted(files) == sorted(RUN_FILES)
        for name in ("segments.parquet", "profiles.parquet", "model.json"):
            assert files[name] == (reference / name).read_bytes(), name
        seen.add("new")
        previous = files
    assert "previous" in seen or "new" in seen
    complete(args(out, 1), cwd=base)  # the next run removes what the killed ones left
    assert sorted(p.name for p in base.iterdir()) == ["customers.parquet", "reference", "run"]
    assert json.loads((out / "metrics.json").read_text())["streamed"] is True
    assert os.path.getsize(out / "segments.parquet") > 0
