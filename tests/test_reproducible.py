"""Same input, options and seed give bitwise-identical results, for any thread count; and the
run records what is needed to reproduce it (seed, options, versions, input fingerprint)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import make_blobs

from conftest import REPO, RUN_FILES, invoke, jit_only, num_threads, read_json
from engine.fit.estimator import KMeans
from engine.api import fingerprint
from engine.input.files import open_input

SEGMENT = Path(sys.executable).parent / "segment"
COMMAND = [str(SEGMENT)] if SEGMENT.exists() else [sys.executable, str(REPO / "cli.py")]


@pytest.fixture(scope="session")
def minibatch_parquet(tmp_path_factory) -> Path:
    """60,000 customers: more rows than the 32,768-row init sample, so the mini-batch path runs."""
    from engine.synth.customers import generate_customers

    path = tmp_path_factory.mktemp("repro") / "customers.parquet"
    generate_customers(path, 60_000, segments=5, seed=21)
    return path


def segment_subprocess(args: list, cwd: Path) -> None:
    proc = subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="session")
def thread_runs(tmp_path_factory, minibatch_parquet: Path) -> dict[str, Path]:
    """`segment run --seed 7` in separate processes: --threads 1, --threads 2, default (twice)."""
    base = tmp_path_factory.mktemp("thread_runs")
    runs = {}
    for name, extra in (("t1", ["--threads", "1"]), ("t2", ["--threads", "2"]), ("all", []), ("all_again", [])):
        out = base / name
        segment_subprocess(["run", minibatch_parquet, "--spec", "customers", "--k", "5", "--seed", "7",
                            "--out", out, "--quiet", *extra], cwd=base)
        runs[name] = out
    return runs


# ----------------------------------------------------------------------------- thread counts

def test_runs_used_the_mini_batch_path(thread_runs: dict[str, Path]) -> None:
    m = read_json(thread_runs["all"] / "metrics.json")
    assert m["rows"] == 60_000
    assert m["n_steps"] > 0


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
@pytest.mark.parametrize("other", ["t1", "t2", "all_again"])
def test_any_thread_count_gives_bitwise_identical_results(thread_runs: dict[str, Path], other: str) -> None:
    a, b = thread_runs["all"], thread_runs[other]
    seg_a, seg_b = pl.read_parquet(a / "segments.parquet"), pl.read_parquet(b / "segments.parquet")
    assert seg_a.height == seg_b.height == 60_000
    assert seg_a.select("segment").equals(seg_b.select("segment"))
    assert seg_a.select("distance").equals(seg_b.select("distance"))
    assert seg_a.equals(seg_b)
    model_a, model_b = read_json(a / "model.json"), read_json(b / "model.json")
    assert model_a["centroids"]["scaled"] == model_b["centroids"]["scaled"]  # exact float equality
    assert model_a["centroids"]["original"] == model_b["centroids"]["original"]
    assert model_a["inertia"] == model_b["inertia"]
    metrics_a, metrics_b = read_json(a / "metrics.json"), read_json(b / "metrics.json")
    assert metrics_a["inertia"] == metrics_b["inertia"]
    assert metrics_a["segment_sizes"] == metrics_b["segment_sizes"]
    assert metrics_a["silhouette"] == metrics_b["silhouette"]
    assert (a / "profiles.parquet").read_bytes() == (b / "profiles.parquet").read_bytes()


def test_threads_option_is_recorded(thread_runs: dict[str, Path]) -> None:
    for name, expected in (("t1", 1), ("t2", 2), ("all", None)):
        for file in ("metrics.json", "model.json"):
            assert read_json(thread_runs[name] / file)["options"]["fit"]["threads"] == expected


@pytest.fixture(scope="module")
def blobs_large() -> np.ndarray:
    X, _ = make_blobs(n_samples=50_000, n_features=6, centers=5, cluster_std=2.5, random_state=4)
    return np.ascontiguousarray(X, dtype=np.float32)


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
def test_in_process_estimator_is_identical_on_one_and_two_threads(blobs_large: np.ndarray) -> None:
    fits = []
    for t in (1, 2):
        with num_threads(t):
            fits.append(KMeans(n_clusters=5, random_state=11).fit(blobs_large))
    one, two = fits
    assert one.result_.n_steps > 0  # 50,000 rows > init sample: mini-batch path
    np.testing.assert_array_equal(one.labels_, two.labels_)
    np.testing.assert_array_equal(one.result_.dist2, two.result_.dist2)
    assert one.cluster_centers_.tobytes() == two.cluster_centers_.tobytes()
    assert one.inertia_ == two.inertia_
    assert one.n_iter_ == two.n_iter_


@jit_only("thread counts: without the JIT prange runs serially, so 1 and 2 threads run the same code")
def test_estimator_threads_option_is_identical_to_the_default(blobs_large: np.ndarray) -> None:
    a = KMeans(n_clusters=5, random_state=11, threads=1).fit(blobs_large)
    b = KMeans(n_clusters=5, random_state=11).fit(blobs_large)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.cluster_centers_.tobytes() == b.cluster_centers_.tobytes()
    assert a.inertia_ == b.inertia_


# ----------------------------------------------------------------------------- other seeds

def test_another_seed_gives_another_model_of_the_same_quality() -> None:
    X, _ = make_blobs(n_samples=6_000, n_features=4, centers=6, cluster_std=0.5, random_state=2)
    X = np.ascontiguousarray(X, dtype=np.float32)
    fits = [KMeans(n_clusters=6, random_state=s).fit(X) for s in (0, 1, 2)]
    centres = [f.cluster_centers_ for f in fits]
    assert any(not np.array_equal(centres[0], c) for c in centres[1:])
    inertia = [f.inertia_ for f in fits]
    for value in inertia[1:]:
        assert value == pytest.approx(inertia[0], rel=0.01)


def test_another_seed_on_separated_customers(separated_parquet: Path, tmp_path: Path) -> None:
    runs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}"
        result = invoke(["run", separated_parquet, "--spec", "customers", "--k", "5", "--seed", seed,
                         "--out", out, "--quiet"])
        assert result.exit_code == 0, result.output
        runs.append(out)
    a, b = (read_json(r / "model.json") for r in runs)
    assert a["seed"] == 1 and b["seed"] == 2
    assert a["centroids"]["scaled"] != b["centroids"]["scaled"]
    assert b["inertia"] == pytest.approx(a["inertia"], rel=0.01)


# ----------------------------------------------------------------------------- the record

def test_run_records_seed_options_versions_and_fingerprint(thread_runs: dict[str, Path],
                                                           minibatch_parquet: Path) -> None:
    out = thread_runs["t2"]
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    expected_versions = {
        "numpy": importlib.metadata.version("numpy"),
        "polars": importlib.metadata.version("polars"),
        "pyarrow": importlib.metadata.version("pyarrow"),
        "numba": importlib.metadata.version("numba"),
        "python": platform.python_version(),
    }
    expected_fp = fingerprint(open_input([minibatch_parquet], None))
    for file in ("metrics.json", "model.json"):
        record = read_json(out / file)
        assert record["seed"] == 7, file
        options = record["options"]
        for group, key, value in (("fit", "k", 5), ("features", "missing", "drop"), ("features", "scale", "standard"),
                                  ("fit", "threads", 2), ("fit", "n_init", None),
                                  ("scoring", "silhouette_sample", None), ("fit", "seed", 7)):
            assert key in options[group], (file, key)
            assert options[group][key] == value, (file, key, options[group][key])
        spec = options["features"]["spec"]
        assert "customers" in str(spec), (file, spec)
        versions = record["versions"]
        for name, version in expected_versions.items():
            assert versions.get(name) == version, (file, name)
        fp = record["input"]["fingerprint"]
        assert isinstance(fp, str) and fp.startswith("sha256:") and len(fp) == len("sha256:") + 64
        assert fp == expected_fp
    assert read_json(out / "metrics.json")["input"] == read_json(out / "model.json")["input"]


def test_recorded_options_reproduce_the_run(thread_runs: dict[str, Path], minibatch_parquet: Path,
                                            tmp_path: Path) -> None:
    """Re-running with exactly the recorded seed and options gives the same model."""
    m = read_json(thread_runs["t1"] / "metrics.json")
    o = m["options"]
    fit, features = o["fit"], o["features"]
    args = ["run", *o["input"]["inputs"], "--k", str(fit["k"]), "--seed", str(m["seed"]), "--out", tmp_path / "again",
            "--quiet", "--missing", features["missing"], "--scale", features["scale"], "--spec", "customers"]
    if fit["threads"] is not None:
        args += ["--threads", str(fit["threads"])]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert (read_json(tmp_path / "again" / "model.json")["centroids"]
            == read_json(thread_runs["t1"] / "model.json")["centroids"])
    assert (pl.read_parquet(tmp_path / "again" / "segments.parquet")
            .equals(pl.read_parquet(thread_runs["t1"] / "segments.parquet")))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] = ord("7") if data[offset] != ord("7") else ord("8")
    path.write_bytes(bytes(data))


def small_csv(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "customers.csv"
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"id": np.arange(2_000), "a": rng.integers(0, 1000, 2_000), "b": rng.integers(0, 1000, 2_000)})
    frame.write_csv(path)
    return path


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_fingerprint_changes_with_one_byte_of_a_small_input(tmp_path: Path, where: str) -> None:
    original = small_csv(tmp_path / "a")
    copy = tmp_path / "b" / original.name
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    fp = fingerprint(open_input([original], None))
    assert fp.startswith("sha256:")
    assert fingerprint(open_input([copy], None)) == fp  # identical copy, same name
    size = copy.stat().st_size
    # a digit of the data (the header is the first line; the last byte is a newline)
    offset = {"first": len(copy.read_bytes().split(b"\n")[0]) + 1, "middle": size // 2, "last": size - 2}[where]
    while not chr(copy.read_bytes()[offset]).isdigit():
        offset -= 1
    flip_byte(copy, offset)
    assert copy.stat().st_size == original.stat().st_size
    assert fingerprint(open_input([copy], None)) != fp


def test_fingerprint_of_a_run_changes_with_one_byte_and_not_for_a_copy(tmp_path: Path, data_csv: Path) -> None:
    prints = {}
    for name in ("original", "copy", "changed"):
        src = tmp_path / name / data_csv.name
        src.parent.mkdir()
        shutil.copyfile(data_csv, src)
        if name == "changed":
            flip_byte(src, src.stat().st_size // 2)
        out = tmp_path / f"run_{name}"
        result = invoke(["run", src, "--spec", "customers", "--k", "4", "--out", out, "--quiet"])
        assert result.exit_code == 0, result.output
        prints[name] = read_json(out / "metrics.json")["input"]["fingerprint"]
        assert read_json(out / "model.json")["input"]["fingerprint"] == prints[name]
    assert prints["original"].startswith("sha256:")
    assert prints["copy"] == prints["original"]
    assert prints["changed"] != prints["original"]


def test_fingerprint_changes_with_one_byte_in_the_middle_of_a_large_input(tmp_path: Path) -> None:
    """An in-place edit of one value in the middle of a multi-MiB CSV (same size) is a different
    input; a fingerprint that reads only the first and last MiB does not see it."""
    path = tmp_path / "a" / "customers.csv"
    path.parent.mkdir()
    rng = np.random.default_rng(1)
    n = 200_000
    pl.DataFrame({"id": np.arange(n), "a": rng.integers(100_000, 999_999, n),
                  "b": rng.integers(100_000, 999_999, n)}).write_csv(path)
    assert path.stat().st_size > 3 * 2**20
    before = fingerprint(open_input([path], None))
    frame_before = pl.read_csv(path)
    offset = path.stat().st_size // 2
    while not chr(path.read_bytes()[offset]).isdigit():
        offset += 1
    flip_byte(path, offset)
    assert not pl.read_csv(path).equals(frame_before)  # the data did change
    assert fingerprint(open_input([path], None)) != before


def test_describe_of_a_large_sample_is_the_same_bits_every_time() -> None:
    """A run's describe.json summarises its hash sample (up to 1,000,000 rows) in memory. Polars'
    streaming engine added the partial sums of std, skew and mean in the order its threads
    finished (8 different results in 15 runs of 1,000,000 rows on 2 cores); the in-memory engine
    sums in a fixed order."""
    from engine.insight.describe import describe_sample

    rng = np.random.default_rng(5)
    n = 1_000_000
    sample = pl.DataFrame({f"c{j}": rng.integers(0, 100 * (j + 1), n).astype(np.int32) for j in range(4)})
    results = set()
    for _ in range(8):
        out = describe_sample(sample, sample.schema, sample.columns, n, "sample", seed=0)
        out.pop("seconds")
        results.add(repr(out))
    assert len(results) == 1
