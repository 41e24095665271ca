"""``segment run --cluster``: the full passes on a Dask cluster give the local run's answer (every
label, the centroids' bits, the profiles), survive a killed worker, and fail with one line and
nothing written when the cluster or the input is not there.

The clusters are small (2 worker processes of 1 thread, on 127.0.0.1) and each is closed by the
test or fixture that started it. The block size is reduced on the client only: every task is
given its rows, so the workers see the same blocks."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

pytest.importorskip("distributed")

import engine  # noqa: E402
from conftest import invoke, read_json  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from engine.cluster import connect, source  # noqa: E402
from engine.features import build  # noqa: E402
from engine.fit import kmeans  # noqa: E402
from engine.input import blocks  # noqa: E402
from engine.options import CLUSTER_ENV  # noqa: E402

COMPARED = ("profiles.parquet", "projection.parquet", "impact.parquet", "offers.parquet")


def small_cluster() -> LocalCluster:
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                        env={"NUMBA_NUM_THREADS": "1"}, silence_logs=40)


@pytest.fixture(scope="module")
def client():
    """One cluster for the module's runs (closed at its end)."""
    connect.warm_kernels()
    with small_cluster() as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def small_blocks(monkeypatch) -> None:
    """Blocks of one 65,536-row chunk and a 50,000-row statistics sample (the client's figures)."""
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 1 << 16)
    monkeypatch.setattr(build, "STATS_SAMPLE", 50_000)


@pytest.fixture(scope="module")
def customers_dataset(tmp_path_factory) -> Path:
    """200,000 generated customers (missing values, categorical columns) as a directory of 3 Parquet files."""
    from engine.synth.customers import generate_customers

    root = tmp_path_factory.mktemp("cluster")
    generate_customers(root / "whole.parquet", 200_000, segments=5, seed=2)
    whole = pl.read_parquet(root / "whole.parquet")
    (root / "data").mkdir()
    for i, start in enumerate((0, 70_001, 140_000)):
        whole.slice(start, [70_001, 69_999, 60_000][i]).write_parquet(root / "data" / f"part-{i}.parquet")
    return root / "data"


def assert_same_answer(a: Path, b: Path) -> None:
    """The local run ``a`` and the cluster run ``b``: the same segments row for row, model, profiles
    and metrics (less timings and the cluster's own entry)."""
    parts = sorted((b / "segments.parquet").glob("part-*.parquet"))
    assert (b / "segments.parquet").is_dir() and parts
    assert pl.read_parquet(a / "segments.parquet").equals(pl.read_parquet(parts))
    for name in COMPARED:
        if (a / name).exists():
            assert pl.read_parquet(a / name).equals(pl.read_parquet(b / name)), name
    assert (a / "model.json").read_bytes() == (b / "model.json").read_bytes()
    ma, mb = read_json(a / "metrics.json"), read_json(b / "metrics.json")
    assert mb["cluster"]["workers"] >= 1 and "cluster" not in ma
    assert {k: v for k, v in ma.items() if k not in ("seconds", "streamed")} == \
        {k: v for k, v in mb.items() if k not in ("seconds", "streamed", "cluster")}
    ours = [{k: v for k, v in pq.read_metadata(f).metadata.items() if k.startswith(b"segment.")}
            for f in (a / "segments.parquet", parts[0])]
    assert ours[0] == ours[1] and ours[0]


@pytest.mark.slow
def test_a_cluster_run_gives_the_local_runs_answer(customers_dataset: Path, tmp_path: Path, client: Client,
                                                   small_blocks) -> None:
    kw = {"spec": "customers", "k": 5, "seed": 3, "partition_by_segment": True}
    local = engine.run([customers_dataset], out=tmp_path / "local", **kw)
    streamed = engine.run([customers_dataset], out=tmp_path / "streamed", stream=True, **kw)
    remote = engine.run([customers_dataset], out=tmp_path / "cluster", cluster=client, **kw)
    assert local.metrics["rows_dropped"] > 0  # the fit's blocks are cut again from the kept rows
    assert local.metrics["rows"] > 3 * blocks.BLOCK_ROWS
    np.testing.assert_array_equal(local.model.centers, remote.model.centers)  # bit for bit
    assert local.profiles.equals(remote.profiles)
    assert_same_answer(tmp_path / "local", tmp_path / "cluster")
    assert_same_answer(tmp_path / "streamed", tmp_path / "cluster")
    parts = sorted((tmp_path / "cluster" / "segments.parquet").glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-{b:06d}.parquet" for b in range(-(-200_000 // blocks.BLOCK_ROWS))]
    for part in sorted((tmp_path / "local").glob("segments/*/*.parquet")):  # --partition-by-segment
        rel = part.relative_to(tmp_path / "local")
        assert pl.read_parquet(part).equals(pl.read_parquet(tmp_path / "cluster" / rel))
    assert not [p for p in tmp_path.iterdir() if ".scratch-" in p.name]


def test_the_cli_and_segment_cluster_start_a_local_cluster(generated_parquet: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    args = ["run", generated_parquet, "--spec", "customers", "--k", "4"]
    local = invoke([*args, "--out", tmp_path / "local"])
    monkeypatch.setenv(CLUSTER_ENV, "local:2")
    remote = invoke([*args, "--out", tmp_path / "cluster"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    assert "cluster: 2 workers at tcp://127.0.0.1:" in remote.stderr and "dashboard http://127.0.0.1:" in remote.stderr
    assert_same_answer(tmp_path / "local", tmp_path / "cluster")
    sql = invoke(["sql", tmp_path / "cluster", "SELECT segment, count(*) AS n FROM segments WHERE segment IS NOT NULL GROUP BY 1 ORDER BY 1",
                  "--format", "json"])
    assert sql.exit_code == 0, sql.output
    sizes = read_json(tmp_path / "cluster" / "metrics.json")["segment_sizes"]
    assert [row["n"] for row in json.loads(sql.stdout)] == sizes
    report = invoke(["report", tmp_path / "cluster"])
    assert report.exit_code == 0, report.output


def test_local_workers_run_numba_on_their_own_thread_count() -> None:
    lines: list[str] = []
    with connect.connected("local:2", lines.append) as cluster:
        threads = cluster.client.run(lambda: __import__("numba").get_num_threads())
        env = cluster.client.run(lambda: os.environ.get("NUMBA_NUM_THREADS"))
        method = cluster.client.run(lambda: __import__("multiprocessing").get_start_method())
        pids = cluster.client.run(os.getpid)
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert sorted(threads.values()) == [expected, expected] and set(env.values()) == {str(expected)}
    assert set(method.values()) == {"spawn"}
    assert lines and "dashboard" in lines[0]
    time.sleep(0.5)
    for pid in pids.values():  # closed with the run
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_killed_during_the_lloyd_passes_changes_nothing(customers_dataset: Path, tmp_path: Path,
                                                                 client: Client, small_blocks, monkeypatch) -> None:
    kw = {"spec": "customers", "k": 5, "seed": 4}
    local = engine.run([customers_dataset], out=tmp_path / "local", stream=True, **kw)
    original, killed = kmeans.mapped_pass, []

    def kill_then_pass(*args):
        if not killed:
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)  # the worker holding some of the blocks
            killed.append(pid)
        return original(*args)

    monkeypatch.setattr(kmeans, "mapped_pass", kill_then_pass)
    engine.run([customers_dataset], out=tmp_path / "cluster", cluster=client, **kw)
    assert killed
    assert_same_answer(tmp_path / "local", tmp_path / "cluster")
    np.testing.assert_array_equal(local.model.centers, engine.load_model(tmp_path / "cluster").centers)


def test_a_cluster_that_loses_every_worker_fails_with_one_line_and_keeps_the_old_run(
        generated_parquet: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    engine.run([generated_parquet], k=3, out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(source, "NO_WORKERS", 2.0)
    original = kmeans.mapped_pass

    with small_cluster() as cluster, Client(cluster) as c:
        def scale_to_nothing(*args):
            cluster.scale(0)
            while c.scheduler_info()["workers"]:
                time.sleep(0.1)
            return original(*args)

        monkeypatch.setattr(kmeans, "mapped_pass", scale_to_nothing)
        with pytest.raises(engine.InputError, match="no workers left") as failed:
            engine.run([generated_parquet], k=3, out=out, overwrite=True, cluster=c)
    assert "\n" not in str(failed.value)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no scratch or temporary directory left


def test_an_input_a_worker_cannot_read_names_the_file_and_the_worker(customers_dataset: Path, tmp_path: Path,
                                                                     client: Client, monkeypatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for f in customers_dataset.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    original = source.learn

    def learn_then_lose_a_file(*args):  # read by the client, then gone before the workers read it
        fitted = original(*args)
        (data / "part-2.parquet").rename(tmp_path / "gone.parquet")
        return fitted

    monkeypatch.setattr(source, "learn", learn_then_lose_a_file)
    with pytest.raises(engine.InputError) as failed:
        engine.run([data], k=3, out=tmp_path / "run", cluster=client, spec="customers")
    message = str(failed.value)
    assert "\n" not in message and "worker tcp://127.0.0.1:" in message and "part-2.parquet" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value, words", [
    ("tcp://127.0.0.1:9", "no Dask scheduler answered within 2 s"),
    ("local:0", "local:N with N a whole number"),
    ("nowhere", "expected local, local:N or a scheduler address"),
])
def test_a_cluster_that_is_not_there_is_one_line_and_nothing_written(value: str, words: str, generated_parquet: Path,
                                                                      tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(connect, "CONNECT_TIMEOUT", 2)
    t0 = time.monotonic()
    result = invoke(["run", generated_parquet, "--k", "3", "--out", tmp_path / "run", "--cluster", value])
    assert result.exit_code == 2, result.output
    assert result.output.count("Error:") == 1 and words in result.output and "Traceback" not in result.output
    assert time.monotonic() - t0 < 30
    assert list(tmp_path.iterdir()) == []


def test_without_the_dask_extra_cluster_is_one_line_naming_the_extra(generated_parquet: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "engine.cluster.connect", None)  # as if dask were not installed
    result = invoke(["run", generated_parquet, "--k", "3", "--out", tmp_path / "run", "--cluster", "local:2"])
    assert result.exit_code == 2, result.output
    assert "pip install 'segment-engine[dask]'" in result.output and result.output.count("Error:") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_cluster_run_refuses_what_it_cannot_do(generated_parquet: Path, tmp_path: Path, client: Client) -> None:
    with pytest.raises(engine.InputError, match="cannot run on a cluster with --k auto"):
        engine.run([generated_parquet], k="auto", out=tmp_path / "run", cluster=client)
    with pytest.raises(engine.InputError, match="not --sql"):
        engine.run([], sql=f"SELECT * FROM read_parquet('{generated_parquet}')", k=3, out=tmp_path / "run",
                   cluster=client)
    assert list(tmp_path.iterdir()) == []


def test_predict_on_a_cluster_writes_the_local_predicts_file(customers_dataset: Path, tmp_path: Path, client: Client,
                                                             small_blocks) -> None:
    engine.run([customers_dataset], k=4, out=tmp_path / "run", spec="customers", seed=1)
    local = engine.predict(tmp_path / "run", [customers_dataset], out=tmp_path / "local.parquet")
    remote = engine.predict(tmp_path / "run", [customers_dataset], out=tmp_path / "cluster.parquet", cluster=client)
    assert local["rows_dropped"] > 0 and local["rows"] > 3 * blocks.BLOCK_ROWS
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "cluster.parquet").read_bytes()
    assert {k: v for k, v in local.items() if k not in ("out", "seconds", "inertia")} == \
        {k: v for k, v in remote.items() if k not in ("out", "seconds", "inertia")}
    assert remote["inertia"] == pytest.approx(local["inertia"], rel=1e-9)  # the same terms, summed per block


def test_cluster_source_reads_and_passes_as_an_array_source(client: Client, monkeypatch) -> None:
    """Takes, samples, draws, blocks and Lloyd passes (with an empty cluster moved to the farthest
    rows, found per block on the workers) are the in-memory source's, bit for bit."""
    from engine.fit.batches import ArraySource

    monkeypatch.setattr(blocks, "BLOCK_ROWS", 1 << 12)
    X = np.random.default_rng(0).standard_normal((20_000, 3)).astype(np.float32)
    sizes = [4096] * 4 + [20_000 - 4 * 4096]
    parts = [client.submit(np.array, X[i * 4096:i * 4096 + n], pure=False) for i, n in enumerate(sizes)]
    remote, array = source.ClusterSource(client, parts, sizes, 3), ArraySource(X)
    assert remote.n_rows == 20_000
    for rows in (np.array([0, 5, 19_999]), np.arange(0, 20_000, 3), np.array([7, 2, 7, 19_000, 1])):
        np.testing.assert_array_equal(remote.take(rows), X[rows])
    for size in (100, 30_000):
        a, b = array.sample(size, np.random.default_rng(1)), remote.sample(size, np.random.default_rng(1))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(array.draw(500, np.random.default_rng(2)), remote.draw(500, np.random.default_rng(2)))
    assert [(s, b.tobytes()) for s, b in remote.blocks()] == [(s, b.tobytes()) for s, b in array.blocks()]
    start = np.vstack([X[:3], np.full((1, 3), 1e3, dtype=np.float32)])  # the last centre takes no row
    here, there = kmeans.lloyd(array, start, 50, 0.0), kmeans.lloyd(remote, start, 50, 0.0)
    np.testing.assert_array_equal(here.centers, there.centers)
    np.testing.assert_array_equal(here.labels, there.labels)
    assert (here.inertia, here.n_iter) == (there.inertia, there.n_iter) and here.n_iter > 2
    assert np.bincount(there.labels, minlength=4).min() > 0  # the empty centre was moved


def test_cover_cuts_rows_into_the_parts_that_hold_them() -> None:
    starts, sizes = np.array([0, 10, 10, 25]), [10, 0, 15, 5]
    assert source.cover(starts, sizes, 0, 30) == [(0, 0, 10), (2, 0, 15), (3, 0, 5)]
    assert source.cover(starts, sizes, 8, 12) == [(0, 8, 10), (2, 0, 2)]
    assert source.cover(starts, sizes, 26, 28) == [(3, 1, 3)]
    assert source.cover(starts, sizes, 5, 5) == []


def test_dask_stays_off_the_start_up_path_and_plain_runs() -> None:
    import subprocess

    code = ("import sys, engine.api, cli; from click.testing import CliRunner; "
            "CliRunner().invoke(cli.main, ['run', '--help']); "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           cwd=Path(__file__).resolve().parents[1])
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_a_running_schedulers_address_runs_on_its_workers(generated_parquet: Path, tmp_path: Path,
                                                          client: Client) -> None:
    args = ["run", generated_parquet, "--spec", "customers", "--k", "3", "--seed", "5"]
    local = invoke([*args, "--out", tmp_path / "local"])
    address = client.scheduler.address
    remote = invoke([*args, "--out", tmp_path / "cluster", "--cluster", address])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    import duckdb

    from engine.duck.views import write_database  # what --db writes

    write_database(tmp_path / "cluster", tmp_path / "c.duckdb", False)
    with duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True) as con:  # --db reads the dataset too
        assert con.execute("SELECT count(*) FROM segments").fetchone()[0] == read_json(
            tmp_path / "cluster" / "metrics.json")["rows"]
    assert f"cluster: 2 workers at {address}" in remote.stderr
    assert_same_answer(tmp_path / "local", tmp_path / "cluster")
    assert read_json(tmp_path / "cluster" / "metrics.json")["cluster"] == {"scheduler": address, "workers": 2}
    assert client.scheduler_info()["workers"]  # a cluster the run did not start is left running


def test_a_csv_input_on_a_cluster_gives_the_local_answer(customers_dataset: Path, tmp_path: Path, client: Client,
                                                         small_blocks) -> None:
    """A worker reads its block of a CSV as a slice (the lines before it parsed again), the local
    stream parses the file once front to back: the same rows either way."""
    data = tmp_path / "customers.csv"
    pl.read_parquet(sorted(customers_dataset.glob("*.parquet"))).head(150_000).write_csv(data)
    kw = {"spec": "customers", "k": 4, "seed": 2}
    engine.run([data], out=tmp_path / "local", stream=True, **kw)
    engine.run([data], out=tmp_path / "cluster", cluster=client, **kw)
    assert_same_answer(tmp_path / "local", tmp_path / "cluster")


def test_a_cluster_run_reports_its_blocks_as_progress(customers_dataset: Path, tmp_path: Path, client: Client,
                                                      small_blocks) -> None:
    from test_progress import Recorder

    recorder = Recorder()
    result = engine.run([customers_dataset], k=3, out=tmp_path / "run", spec="customers", cluster=client,
                        progress=recorder)
    stages = {label: (total, done) for label, total, done in recorder.stages}
    n_blocks = -(-200_000 // blocks.BLOCK_ROWS)
    assert stages["reading blocks"] == (n_blocks, n_blocks) and stages["assigning blocks"] == (n_blocks, n_blocks)
    assert stages["fitting"][1] >= result.metrics["n_iter"] >= 1


@pytest.mark.slow
def test_the_issues_case_four_million_rows_in_several_files(tmp_path_factory, client: Client) -> None:
    """The issue's figure as a test: 4,000,000 generated customers in 5 Parquet files, real
    1,048,576-row blocks and the statistics learned from the 1,048,576-row hash sample, on a
    LocalCluster of 2 worker processes with 1 thread each: the local run's labels for every row,
    its centroids bit for bit, and its profiles."""
    from engine.synth.customers import generate_customers

    root = tmp_path_factory.mktemp("cluster4m")
    generate_customers(root / "whole.parquet", 4_000_000, segments=5, seed=4)
    (root / "data").mkdir()
    for i, part in enumerate(pl.read_parquet(root / "whole.parquet").iter_slices(800_000)):
        part.write_parquet(root / "data" / f"part-{i}.parquet")
    (root / "whole.parquet").unlink()
    kw = {"spec": "customers", "k": 5, "seed": 1}
    local = engine.run([root / "data"], out=root / "local", **kw)
    remote = engine.run([root / "data"], out=root / "cluster", cluster=client, **kw)
    assert local.metrics["rows"] == 4_000_000 and local.metrics["rows"] > build.STATS_SAMPLE
    np.testing.assert_array_equal(local.model.centers, remote.model.centers)
    assert_same_answer(root / "local", root / "cluster")
    assert len(list((root / "cluster" / "segments.parquet").glob("part-*.parquet"))) == 4
