"""The `segment` command line: help, run, predict, generate, exit codes and error messages."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cli import main
from conftest import REPO, RUN_FILES, invoke, leftovers, read_json


def assert_clean_error(result, *fragments: str) -> str:
    """Exit code 2, one line `Error: ...` on stderr naming the fragments, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""
    return lines[0]


# ----------------------------------------------------------------------------- help

def test_top_level_help_lists_the_commands() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for name in ("generate", "run", "predict"):
        assert name in result.stdout


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(command: str) -> None:
    result = invoke([command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert f"Usage: main {command}" in result.stdout or f"{command} [OPTIONS]" in result.stdout


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert "segment" in result.stdout


def test_python_cli_py_help_as_a_subprocess() -> None:
    proc = subprocess.run([sys.executable, "cli.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "run" in proc.stdout and "predict" in proc.stdout and "generate" in proc.stdout


def test_console_script_answers() -> None:
    script = Path(sys.executable).parent / "segment"
    assert script.exists(), f"console script missing: {script} (pip install -e .)"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: segment" in proc.stdout


# ----------------------------------------------------------------------------- run

def test_run_on_the_shared_csv(data_csv: Path, run_dir: Path) -> None:
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "4", "--out", run_dir])
    assert result.exit_code == 0, result.output
    out = result.stdout
    # the profile table
    assert "segment" in out and "size" in out and "share" in out
    assert "income (mean)" in out and "spending (mean)" in out
    # the metrics line
    for fragment in ("k=4", "rows=2,240", "dropped=24", "inertia=", "silhouette=", "iterations="):
        assert fragment in out
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)
    assert leftovers(run_dir.parent, run_dir.name) == []
    assert "reading" in result.stderr  # progress goes to stderr
    assert "reading" not in result.stdout


def test_run_json_equals_metrics_json(data_csv: Path, run_dir: Path) -> None:
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "4", "--out", run_dir, "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == read_json(run_dir / "metrics.json")
    assert printed["k"] == 4 and printed["rows"] == 2240


def test_run_with_features_option(data_csv: Path, run_dir: Path) -> None:
    result = invoke(["run", data_csv, "--features", "Income,Recency,MntWines", "--k", "3", "--out", run_dir,
                     "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    metrics = json.loads(result.stdout)
    assert metrics["features"] == ["Income", "Recency", "MntWines"]
    assert metrics["rows_dropped"] == 24
    assert pl.read_parquet(run_dir / "segments.parquet").columns == ["ID", "segment", "distance"]


def test_run_overwrite_replaces_the_previous_run(data_csv: Path, run_dir: Path) -> None:
    assert invoke(["run", data_csv, "--spec", "customers", "--k", "3", "--out", run_dir, "--quiet"]).exit_code == 0
    (run_dir / "stale.txt").write_text("from before")
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "4", "--out", run_dir, "--quiet", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)
    assert read_json(run_dir / "metrics.json")["k"] == 4
    assert leftovers(run_dir.parent, run_dir.name) == []


BAD_RUNS = {
    "missing input": (["run", "{tmp}/no-such.csv", "--k", "4", "--out", "{out}"], ["no-such.csv"]),
    "unknown feature column": (["run", "{csv}", "--features", "Incme,Recency", "--k", "4", "--out", "{out}"],
                               ["Incme", "Income"]),
    "k = 0": (["run", "{csv}", "--spec", "customers", "--k", "0", "--out", "{out}"], ["k"]),
    "k > rows": (["run", "{tiny}", "--k", "5", "--out", "{out}"], ["k"]),
    "bad spec file": (["run", "{csv}", "--spec", "{tmp}/bad.toml", "--k", "4", "--out", "{out}"], ["bad.toml", "line"]),
    "unknown spec key": (["run", "{csv}", "--spec", "{tmp}/typo.toml", "--k", "4", "--out", "{out}"], ["scael", "scale"]),
    "missing spec file": (["run", "{csv}", "--spec", "{tmp}/none.toml", "--k", "4", "--out", "{out}"], ["none.toml"]),
    "features and spec": (["run", "{csv}", "--spec", "customers", "--features", "Income", "--k", "4", "--out", "{out}"],
                          ["--features", "--spec"]),
    "text column as feature": (["run", "{csv}", "--features", "Income,Education", "--k", "4", "--out", "{out}"],
                               ["Education"]),
    "missing = error": (["run", "{csv}", "--spec", "customers", "--missing", "error", "--k", "4", "--out", "{out}"],
                        ["income (24)"]),
    "corrupt parquet": (["run", "{tmp}/corrupt.parquet", "--k", "4", "--out", "{out}"], ["corrupt.parquet"]),
    "threads = 0": (["run", "{csv}", "--spec", "customers", "--k", "4", "--threads", "0", "--out", "{out}"],
                    ["--threads", "0"]),
    "negative silhouette sample": (["run", "{csv}", "--spec", "customers", "--k", "4", "--silhouette-sample", "-1",
                                    "--out", "{out}"], ["silhouette", "-1"]),
    "n_init = 0": (["run", "{csv}", "--spec", "customers", "--k", "4", "--n-init", "0", "--out", "{out}"], ["n_init"]),
    "negative seed": (["run", "{csv}", "--spec", "customers", "--k", "4", "--seed", "-1", "--out", "{out}"],
                      ["seed", "-1"]),
    "header-only csv": (["run", "{tmp}/header.csv", "--k", "2", "--out", "{out}"], ["header.csv"]),
    "output parent missing": (["run", "{csv}", "--spec", "customers", "--k", "4", "--out", "{tmp}/nodir/run"],
                              ["nodir"]),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_run_is_a_clean_error_and_leaves_nothing(case: str, tmp_path: Path, data_csv: Path) -> None:
    (tmp_path / "bad.toml").write_text('id = "ID"\n[features]\nage = \n')
    (tmp_path / "typo.toml").write_text('scael = "robust"\n')
    (tmp_path / "corrupt.parquet").write_bytes(os.urandom(1024))
    (tmp_path / "header.csv").write_text("a,b\n")
    pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 2.0]}).write_parquet(tmp_path / "tiny.parquet")
    out = tmp_path / "run"
    args, fragments = BAD_RUNS[case]
    args = [a.format(tmp=tmp_path, out=out, csv=data_csv, tiny=tmp_path / "tiny.parquet") for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke([*args, "--quiet"])
    assert_clean_error(result, *fragments)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert leftovers(tmp_path, "run") == []


def test_error_without_quiet_is_still_one_error_line(tmp_path: Path, data_csv: Path) -> None:
    result = invoke(["run", data_csv, "--features", "Incme", "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]


def test_existing_output_without_overwrite(tmp_path: Path, data_csv: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "4", "--out", out, "--quiet"])
    assert_clean_error(result, str(out), "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert leftovers(tmp_path, "run") == []


def test_output_path_is_an_existing_file(tmp_path: Path, data_csv: Path) -> None:
    out = tmp_path / "run"
    out.write_text("a file")
    for extra in ([], ["--overwrite"]):
        result = invoke(["run", data_csv, "--spec", "customers", "--k", "4", "--out", out, "--quiet", *extra])
        assert_clean_error(result, str(out))
        assert out.read_text() == "a file"
    assert leftovers(tmp_path, "run") == []


# ----------------------------------------------------------------------------- predict

def test_predict_reproduces_the_run(shared_run: Path, data_csv: Path, tmp_path: Path) -> None:
    for model in (shared_run, shared_run / "model.json"):
        out = tmp_path / f"pred-{model.name}.parquet"
        result = invoke(["predict", model, data_csv, "--out", out])
        assert result.exit_code == 0, result.output
        assert "2,216 of 2,240" in result.stdout
        assert_frame_equal(pl.read_parquet(out), pl.read_parquet(shared_run / "segments.parquet"))
        assert leftovers(tmp_path, out.name) == []


def test_predict_json(shared_run: Path, data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.parquet"
    result = invoke(["predict", shared_run, data_csv, "--out", out, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    metrics = read_json(shared_run / "metrics.json")
    assert summary["k"] == 4 and summary["rows"] == 2240 and summary["rows_used"] == 2216
    assert summary["segment_sizes"] == metrics["segment_sizes"]
    assert summary["inertia"] == pytest.approx(metrics["inertia"], rel=1e-6)


def test_predict_existing_output_needs_overwrite(shared_run: Path, data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.parquet"
    out.write_text("old")
    assert_clean_error(invoke(["predict", shared_run, data_csv, "--out", out, "--quiet"]), "--overwrite")
    assert out.read_text() == "old"
    result = invoke(["predict", shared_run, data_csv, "--out", out, "--quiet", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).height == 2240


CORRUPT_MODELS = {
    "not json": "{not json",
    "truncated": None,  # the real model cut in half
    "empty": "",
    "wrong format": json.dumps({"format": "something-else"}),
    "json array": "[1, 2, 3]",
    "NaN centroid": None,  # the real model with a NaN centroid
    "wrong version": None,
}


@pytest.mark.parametrize("case", sorted(CORRUPT_MODELS))
def test_predict_with_a_corrupt_model(case: str, shared_run: Path, data_csv: Path, tmp_path: Path) -> None:
    text = (shared_run / "model.json").read_text()
    if case == "truncated":
        body = text[: len(text) // 2]
    elif case == "NaN centroid":
        model = json.loads(text)
        model["centroids"]["scaled"][0][0] = float("nan")
        body = json.dumps(model)
    elif case == "wrong version":
        model = json.loads(text)
        model["format_version"] = 99
        body = json.dumps(model)
    else:
        body = CORRUPT_MODELS[case]
    bad = tmp_path / "model.json"
    bad.write_text(body)
    out = tmp_path / "pred.parquet"
    assert_clean_error(invoke(["predict", bad, data_csv, "--out", out, "--quiet"]), "model.json")
    assert not out.exists()
    assert leftovers(tmp_path, out.name) == []


def test_predict_with_a_missing_model(tmp_path: Path, data_csv: Path) -> None:
    result = invoke(["predict", tmp_path / "no-run", data_csv, "--out", tmp_path / "p.parquet", "--quiet"])
    assert_clean_error(result, "no-run")


def test_predict_on_input_without_the_features(shared_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    pl.DataFrame({"ID": [1, 2], "x": [1.0, 2.0]}).write_parquet(other)
    result = invoke(["predict", shared_run, other, "--out", tmp_path / "p.parquet", "--quiet"])
    assert_clean_error(result)
    assert not (tmp_path / "p.parquet").exists()


# ----------------------------------------------------------------------------- generate

def test_generate(tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    result = invoke(["generate", "--rows", "5000", "--out", out])
    assert result.exit_code == 0, result.output
    assert "5,000" in result.stdout
    frame = pl.read_parquet(out)
    assert frame.height == 5000
    assert "true_segment" in frame.columns and "ID" in frame.columns and "Income" in frame.columns
    assert frame["true_segment"].n_unique() == 5
    assert leftovers(tmp_path, out.name) == []


def test_generate_json(tmp_path: Path) -> None:
    out = tmp_path / "g.parquet"
    result = invoke(["generate", "--rows", "1000", "--segments", "3", "--seed", "7", "--out", out, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 1000 and summary["segments"] == 3
    assert pl.read_parquet(out)["true_segment"].n_unique() == 3


@pytest.mark.parametrize("args", [["--rows", "0"], ["--rows", "10", "--segments", "0"], ["--rows", "10", "--spread", "-1"]])
def test_generate_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "g.parquet"
    assert_clean_error(invoke(["generate", *args, "--out", out, "--quiet"]))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_importing_the_engine_loads_neither_sklearn_nor_plotly() -> None:
    # scikit-learn alone costs 1.3 s to import: every command would pay it at start-up.
    code = "import sys, engine, cli; print(sorted(m for m in ('sklearn', 'plotly') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("given,expected", [(None, "False"), ("1", "True"), ("0", "False")])
def test_the_cli_s_process_uses_plain_pages_for_numpy_unless_told(given, expected) -> None:
    """cli.py sets NUMPY_MADVISE_HUGEPAGE=0 before numpy loads (huge-page compaction stalls made
    first touches 3 to 5 times slower here); a value the user set wins."""
    code = "import cli, numpy._core.multiarray as m; print(m._get_madvise_hugepage())"
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == expected


#: ``python -c IMPORTS_PROBE OUT ARGS...`` runs ``segment ARGS...`` and, at exit, writes to OUT the
#: libraries of ``HEAVY_AT_START`` that were imported and the kernel modules that were loaded.
IMPORTS_PROBE = """
import atexit, json, runpy, sys
out, heavy = sys.argv[1], sys.argv[2].split(",")
def report():
    with open(out, "w") as fh:
        json.dump({"heavy": sorted(m for m in heavy if m in sys.modules),
                   "kernels": sorted(m for m in sys.modules if m.startswith("kernels."))}, fh)
atexit.register(report)
sys.argv = ["segment", *sys.argv[3:]]
runpy.run_path("cli.py", run_name="__main__")
"""
HEAVY_AT_START = ("sklearn", "plotly", "streamlit", "duckdb", "scipy", "scipy.linalg", "coverage", "yaml", "numba",
                  "polars")


def imported_by(tmp_path: Path, *args: str) -> dict:
    """What ``segment ARGS`` imported, in a new process."""
    out = tmp_path / "imported.json"
    proc = subprocess.run([sys.executable, "-c", IMPORTS_PROBE, str(out), ",".join(HEAVY_AT_START), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_loading_pauses_the_collector_and_freezes_only_what_it_imported(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from cli import loading

    (tmp_path / "freshly_loaded_module.py").write_text("VALUE = [1, 2, 3]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with loading():
            assert not gc.isenabled()
            import json  # noqa: F401  (already loaded: nothing new)
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        with loading():
            import freshly_loaded_module  # noqa: F401
        assert gc.isenabled() and gc.get_freeze_count() > frozen
        gc.disable()
        with loading():
            pass
        assert not gc.isenabled()  # the caller's setting is kept
    finally:
        gc.unfreeze()
        gc.enable()
        sys.modules.pop("freshly_loaded_module", None)


def test_help_imports_no_engine_library(tmp_path: Path) -> None:
    """``segment --help`` and ``segment run --help``: click and the options only."""
    assert imported_by(tmp_path, "--help") == {"heavy": [], "kernels": []}
    assert imported_by(tmp_path, "run", "--help") == {"heavy": [], "kernels": []}


def test_numba_s_optional_imports_are_held_back_only_where_they_do_nothing(tmp_path: Path) -> None:
    """coverage is left to numba when a measurement is running (it is imported first), and PyYAML
    when the working directory has a ``.numba_config.yaml``, whose settings then apply."""
    (tmp_path / ".numba_config.yaml").write_text("num_threads: 1\n")
    code = ("import sys, coverage; sys.path.insert(0, sys.argv[1]); import kernels, numba, numba.misc.coverage_support as c;"
            "from kernels.config import held_back;"
            "print(sorted(held_back()), c.coverage_available, numba.config.NUMBA_NUM_THREADS, 'yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["['scipy',", "'scipy.linalg']", "True", "1", "True"]


def test_a_small_run_imports_neither_sklearn_plotly_streamlit_nor_duckdb(tmp_path: Path, data_csv: Path) -> None:
    """A run from a file needs no DuckDB (only --sql, --preset and --db do), nor SciPy, coverage
    or PyYAML (numba's start-up would import them for nothing: held back in ``kernels/config.py``;
    all three are installed here), and loads only the kernel modules it calls (the weighted kernels
    are for --weight-col)."""
    for name in ("scipy", "coverage", "yaml"):
        assert importlib.util.find_spec(name) is not None, name  # else the test proves nothing
    found = imported_by(tmp_path, "run", str(data_csv), "--spec", "marketing", "--k", "3", "--out",
                        str(tmp_path / "run"), "--quiet")
    assert found["heavy"] == ["numba", "polars"]
    assert "kernels.assign" in found["kernels"] and "kernels.weighted" not in found["kernels"]
    assert (tmp_path / "run" / "metrics.json").is_file()
