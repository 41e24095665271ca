"""Outputs are never half-written: SIGKILL at any moment, a full disk at any write, and
temporary siblings of killed runs are cleaned up by the next run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import REPO, RUN_FILES, invoke, leftovers, read_json

SEGMENT = Path(sys.executable).parent / "segment"
COMMAND = [str(SEGMENT)] if SEGMENT.exists() else [sys.executable, str(REPO / "cli.py")]
BIG_ROWS = 1_000_000
OLD_SEED, NEW_SEED = 0, 1

# Kill delays as fractions of a measured complete run (spread over the whole run), and delays
# after the run's temporary output first appears (aimed at the write / fsync / swap phase).
RUN_FRACTIONS = (0.1, 0.45, 0.8, 0.95)
WRITE_DELAYS = (0.0, 0.08, 0.18, 0.3)


# ----------------------------------------------------------------------------- helpers

def start(args: list, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*COMMAND, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def complete(args: list, cwd: Path) -> float:
    """Run ``segment`` to the end in a new process; its wall time."""
    t0 = time.perf_counter()
    proc = subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return time.perf_counter() - t0


def sigkill(proc: subprocess.Popen) -> int:
    """SIGKILL (harmless if it already exited: it is not reaped yet), then reap; the exit code."""
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait(timeout=60)


def kill_after(args: list, cwd: Path, delay: float) -> int:
    proc = start(args, cwd)
    time.sleep(delay)
    return sigkill(proc)


def kill_during_write(args: list, cwd: Path, target: Path, delay: float) -> int:
    """Kill ``delay`` seconds after the run's temporary sibling of ``target`` appears."""
    proc = start(args, cwd)
    prefix = f".{target.name}.tmp-{proc.pid}-"
    while proc.poll() is None:
        if any(name.startswith(prefix) for name in os.listdir(target.parent)):
            time.sleep(delay)
            break
        time.sleep(0.002)
    return sigkill(proc)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def without_seconds(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "seconds"}


def run_args(data: Path, out: Path, seed: int, *extra: str) -> list:
    return ["run", data, "--spec", "customers", "--k", "5", "--out", out, "--seed", str(seed), "--quiet", *extra]


def assert_complete_run(out: Path, previous: dict[str, bytes] | None, reference: Path) -> str:
    """``out`` holds exactly the previous outputs or a complete new run equal to ``reference``;
    never a mix. Returns "previous" or "new"."""
    assert out.is_dir(), f"{out} is missing"
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    # every file is readable
    segments = pl.read_parquet(out / "segments.parquet")
    profiles = pl.read_parquet(out / "profiles.parquet")
    metrics, model = read_json(out / "metrics.json"), read_json(out / "model.json")
    files = snapshot(out)
    if previous is not None and files == previous:
        return "previous"
    # a complete, self-consistent new run
    assert metrics["seed"] == NEW_SEED, "metrics.json is not the new run's"
    assert model["seed"] == NEW_SEED, "model.json is not the new run's (a mix)"
    assert model["inertia"] == metrics["inertia"], "model.json and metrics.json come from different runs"
    assert model["k"] == metrics["k"] == 5
    assert segments.height == metrics["rows"] == BIG_ROWS
    assert segments["segment"].null_count() == metrics["rows_dropped"]
    assert segments.drop_nulls()["segment"].value_counts().sort("segment")["count"].to_list() == \
        metrics["segment_sizes"]
    assert profiles.height == 5
    # and the very outputs a complete run with the new seed writes
    for name in ("segments.parquet", "profiles.parquet", "model.json"):
        assert files[name] == (reference / name).read_bytes(), f"{name} differs from a complete new run"
    assert without_seconds(metrics) == without_seconds(read_json(reference / "metrics.json"))
    return "new"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def big_input(tmp_path_factory) -> Path:
    """1,000,000 customers: `segment run` takes a few seconds on it."""
    from engine.synth.customers import generate_customers

    path = tmp_path_factory.mktemp("atomic_big") / "customers.parquet"
    generate_customers(path, BIG_ROWS, segments=5, seed=0)
    return path


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, big_input: Path) -> tuple[Path, float]:
    """A complete run with the new seed (what a run that is not killed writes) and its wall time."""
    base = tmp_path_factory.mktemp("atomic_reference")
    out = base / "run"
    seconds = complete(run_args(big_input, out, NEW_SEED), cwd=base)
    return out, seconds


@pytest.fixture(scope="session")
def previous_run(tmp_path_factory, big_input: Path) -> Path:
    """A complete run with the old seed: the outputs an interrupted overwrite must leave alone."""
    base = tmp_path_factory.mktemp("atomic_previous")
    out = base / "run"
    complete(run_args(big_input, out, OLD_SEED), cwd=base)
    return out


# ----------------------------------------------------------------------------- SIGKILL: run

@pytest.mark.slow
def test_killed_overwrite_leaves_the_previous_or_the_new_outputs(
    tmp_path: Path, big_input: Path, reference_run: tuple[Path, float], previous_run: Path
) -> None:
    reference, seconds = reference_run
    out = tmp_path / "out"
    shutil.copytree(previous_run, out)
    previous = snapshot(out)
    assert read_json(out / "metrics.json")["seed"] == OLD_SEED
    args = run_args(big_input, out, NEW_SEED, "--overwrite")
    outcomes = []
    for fraction in RUN_FRACTIONS:
        code = kill_after(args, tmp_path, fraction * seconds)
        state = assert_complete_run(out, previous, reference)
        outcomes.append((f"{fraction:.2f}", code, state, len(leftovers(tmp_path, "out"))))
        if state == "new":  # it finished: start the next kill from the previous outputs again
            shutil.rmtree(out)
            shutil.copytree(previous_run, out)
    for delay in WRITE_DELAYS:
        code = kill_during_write(args, tmp_path, out, delay)
        state = assert_complete_run(out, previous, reference)
        outcomes.append((f"write+{delay}", code, state, len(leftovers(tmp_path, "out"))))
        if state == "new":
            shutil.rmtree(out)
            shutil.copytree(previous_run, out)
    print("kill outcomes (delay, exit code, state, temporary siblings left):", outcomes)
    assert any(code == -signal.SIGKILL for _, code, *_ in outcomes), outcomes  # some kills did land
    # the next complete run cleans up every killed run's temporary directory
    complete(args, tmp_path)
    assert assert_complete_run(out, previous, reference) == "new"
    assert leftovers(tmp_path, "out") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow
def test_killed_first_run_leaves_nothing_or_complete_outputs(
    tmp_path: Path, big_input: Path, reference_run: tuple[Path, float]
) -> None:
    reference, seconds = reference_run
    out = tmp_path / "out"
    args = run_args(big_input, out, NEW_SEED, "--overwrite")
    for kind, delay in (("time", 0.5 * seconds), ("write", 0.05)):
        if kind == "time":
            kill_after(args, tmp_path, delay)
        else:
            kill_during_write(args, tmp_path, out, delay)
        if out.exists():
            assert assert_complete_run(out, None, reference) == "new"
            shutil.rmtree(out)


# ----------------------------------------------------------------------------- SIGKILL: single files

def assert_file_is(path: Path, allowed: dict[str, bytes | None]) -> str:
    """``path`` is one of ``allowed`` (None: absent); the name of the one it is."""
    if not path.exists():
        assert None in allowed.values(), f"{path} vanished"
        return next(k for k, v in allowed.items() if v is None)
    data = path.read_bytes()
    pq.read_table(path)  # readable Parquet
    for name, expected in allowed.items():
        if expected is not None and data == expected:
            return name
    raise AssertionError(f"{path} is neither the previous file nor the complete new one ({len(data)} bytes)")


def kill_single_file_output(args, tmp_path: Path, target: Path, previous: bytes, new: bytes, points) -> None:
    """SIGKILL the command at each (kind, delay) point: "time" after a delay from the start,
    "write" a delay after its temporary file appears. Each time the target must hold the
    previous bytes or the complete new ones; it is put back to the previous bytes in between."""
    for kind, delay in points:
        if kind == "time":
            kill_after(args, tmp_path, delay)
        else:
            kill_during_write(args, tmp_path, target, delay)
        if assert_file_is(target, {"previous": previous, "new": new}) == "new":
            target.write_bytes(previous)


@pytest.mark.slow
def test_killed_predict_leaves_the_previous_or_the_new_file(
    tmp_path: Path, big_input: Path, reference_run: tuple[Path, float], previous_run: Path
) -> None:
    reference, _ = reference_run
    ref_file = tmp_path / "ref" / "pred.parquet"
    ref_file.parent.mkdir()
    seconds = complete(["predict", reference, big_input, "--out", ref_file, "--quiet"], tmp_path)
    target = tmp_path / "pred.parquet"
    shutil.copyfile(previous_run / "segments.parquet", target)  # an earlier prediction of the same rows
    previous, new = target.read_bytes(), ref_file.read_bytes()
    assert previous != new
    args = ["predict", reference, big_input, "--out", target, "--overwrite", "--quiet"]
    kill_single_file_output(args, tmp_path, target, previous, new,
                            (("time", 0.5 * seconds), ("write", 0.0), ("write", 0.05)))
    complete(args, tmp_path)
    assert target.read_bytes() == new
    assert leftovers(tmp_path, "pred.parquet") == []


@pytest.mark.slow
def test_killed_generate_leaves_the_previous_or_the_new_file(tmp_path: Path) -> None:
    ref_file = tmp_path / "ref" / "gen.parquet"
    ref_file.parent.mkdir()
    seconds = complete(["generate", "--rows", BIG_ROWS, "--seed", 5, "--out", ref_file, "--quiet"], tmp_path)
    new = ref_file.read_bytes()
    target = tmp_path / "gen.parquet"
    args = ["generate", "--rows", BIG_ROWS, "--seed", 5, "--out", target, "--overwrite", "--quiet"]
    # without a previous file: absent or complete
    kill_after(args, tmp_path, 0.3 * seconds)
    if assert_file_is(target, {"absent": None, "new": new}) == "new":
        target.unlink()
    # over a previous file: previous or complete
    from engine.synth.customers import generate_customers

    generate_customers(target, 1_000, seed=6, overwrite=True)
    previous = target.read_bytes()
    kill_single_file_output(args, tmp_path, target, previous, new,
                            (("time", 0.3 * seconds), ("time", 0.9 * seconds), ("write", 0.3 * seconds)))
    complete(args, tmp_path)
    assert target.read_bytes() == new
    assert leftovers(tmp_path, "gen.parquet") == []


# ----------------------------------------------------------------------------- disk full

def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def fail_after(n_ok: int, real):
    """A wrapper of ``real`` that succeeds ``n_ok`` times, then fails with ENOSPC."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            enospc()
        return real(*args, **kwargs)

    wrapper.calls = calls
    return wrapper


def partial_then_enospc(path, *_args, **_kwargs):
    """Write a truncated file, then report a full disk."""
    Path(path).write_text('{"truncated": ', encoding="utf-8")
    enospc()


def partial_save(self, path, **_options):
    partial_then_enospc(path)


def polars_enospc_for(name: str, real):
    """``DataFrame.write_parquet`` that fails as Polars does on a full disk (the OS error only in
    its message) for files called ``name``, after writing part of the file."""
    def write(self, path, *args, **kwargs):
        if name not in Path(path).name:
            return real(self, path, *args, **kwargs)
        Path(path).write_bytes(b"PAR1 truncated")
        raise OSError("failed to write parquet: No space left on device (os error 28)")
    return write


def assert_disk_full_error(result, path: Path) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no space left on device" in errors[0].lower(), errors[0]
    assert str(path) in errors[0], errors[0]


DISK_FULL_RUN = ("segments", "write_json", "model_save", "profiles", "fsync")


def patch_disk_full(monkeypatch, point: str, name: str = "segments.parquet") -> None:
    import engine.outputs.rundir
    import engine.outputs.write
    from engine.fit.model import Model

    monkeypatch.setattr(engine.outputs.write, "ROW_GROUP_ROWS", 1_000)  # several row groups per file
    if point == "segments":
        monkeypatch.setattr(pl.DataFrame, "write_parquet", polars_enospc_for(name, pl.DataFrame.write_parquet))
    elif point == "write_json":
        monkeypatch.setattr(engine.outputs.write, "write_json", partial_then_enospc)
        monkeypatch.setattr(engine.outputs.rundir, "write_json", partial_then_enospc)
    elif point == "model_save":
        monkeypatch.setattr(Model, "save", partial_save)
    elif point == "profiles":
        monkeypatch.setattr(pl.DataFrame, "write_parquet", partial_save)
    elif point == "fsync":
        monkeypatch.setattr(os, "fsync", enospc)
    else:
        raise AssertionError(point)


@pytest.mark.parametrize("point", DISK_FULL_RUN)
def test_disk_full_during_run_keeps_the_previous_outputs(point: str, tmp_path: Path, generated_parquet: Path,
                                                         monkeypatch) -> None:
    out = tmp_path / "run"
    args = ["run", generated_parquet, "--spec", "customers", "--k", "4", "--out", out, "--quiet"]
    assert invoke(args).exit_code == 0
    before = snapshot(out)
    patch_disk_full(monkeypatch, point)
    result = invoke([*args, "--overwrite", "--seed", "3"])
    assert_disk_full_error(result, out)
    assert snapshot(out) == before
    assert leftovers(tmp_path, "run") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("point", ["segments", "fsync"])
def test_disk_full_during_predict_keeps_the_previous_file(point: str, tmp_path: Path, generated_parquet: Path,
                                                          monkeypatch) -> None:
    model = tmp_path / "model"
    assert invoke(["run", generated_parquet, "--spec", "customers", "--k", "4", "--out", model, "--quiet"]).exit_code == 0
    target = tmp_path / "pred.parquet"
    target.write_bytes(b"previous file")
    patch_disk_full(monkeypatch, point, name="pred.parquet")
    result = invoke(["predict", model, generated_parquet, "--out", target, "--overwrite", "--quiet"])
    assert_disk_full_error(result, target)
    assert target.read_bytes() == b"previous file"
    assert leftovers(tmp_path, "pred.parquet") == []


@pytest.mark.parametrize("point", ["write_table", "fsync"])
def test_disk_full_during_generate_keeps_the_previous_file(point: str, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "gen.parquet"
    assert invoke(["generate", "--rows", "500", "--out", target, "--quiet"]).exit_code == 0
    before = target.read_bytes()
    if point == "write_table":  # one chunk here: fail at the first row group
        monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_after(0, pq.ParquetWriter.write_table))
    else:
        monkeypatch.setattr(os, "fsync", enospc)
    result = invoke(["generate", "--rows", "3000", "--seed", "4", "--out", target, "--overwrite", "--quiet"])
    assert_disk_full_error(result, target)
    assert target.read_bytes() == before
    assert leftovers(tmp_path, "gen.parquet") == []


def test_disk_full_on_a_first_run_leaves_nothing(tmp_path: Path, generated_parquet: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    patch_disk_full(monkeypatch, "segments")
    result = invoke(["run", generated_parquet, "--spec", "customers", "--k", "4", "--out", out, "--quiet"])
    assert_disk_full_error(result, out)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- stale siblings

def dead_pid() -> int:
    for pid in (999_999, 4_194_304 + 1, 2**22 - 7):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no dead pid found")


def test_next_run_removes_siblings_of_dead_runs_only(tmp_path: Path, data_csv: Path) -> None:
    pid = dead_pid()
    dead_tmp = tmp_path / f".run.tmp-{pid}-deadbeef"
    dead_old = tmp_path / f".run.old-{pid}-0badf00d"
    live_self = tmp_path / f".run.tmp-{os.getpid()}-cafebabe"
    for d in (dead_tmp, dead_old, live_self):
        d.mkdir()
        (d / "segments.parquet").write_bytes(b"partial")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_other = tmp_path / f".run.tmp-{sleeper.pid}-0123abcd"
        live_other.mkdir()
        dead_file = tmp_path / f".pred.parquet.tmp-{pid}-feedface"
        dead_file.write_bytes(b"partial")
        unrelated = tmp_path / f".other.tmp-{pid}-deadbeef"
        unrelated.mkdir()
        result = invoke(["run", data_csv, "--spec", "customers", "--k", "3", "--out", tmp_path / "run", "--quiet"])
        assert result.exit_code == 0, result.output
        assert not dead_tmp.exists()
        assert not dead_old.exists()
        assert live_self.exists() and (live_self / "segments.parquet").read_bytes() == b"partial"
        assert live_other.exists()
        assert unrelated.exists()  # another output's sibling is not this run's business
        assert dead_file.exists()
        # predict cleans its own target's dead siblings
        result = invoke(["predict", tmp_path / "run", data_csv, "--out", tmp_path / "pred.parquet", "--quiet"])
        assert result.exit_code == 0, result.output
        assert not dead_file.exists()
        assert leftovers(tmp_path, "pred.parquet") == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert leftovers(tmp_path, "run") == sorted([live_self.name, live_other.name])
