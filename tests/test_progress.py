"""Progress bars (``engine.progress``): on a terminal's stderr only, never on stdout, never in a pipe,
a file or with --quiet; and the stages the engine reports through the protocol."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from conftest import REPO, invoke
from engine import progress

BAR = re.compile(r"\[[#-]{10,}\]")  # a click bar: [####------]


def segment_command() -> list[str]:
    return [sys.executable, str(REPO / "cli.py")]


def run_with_terminal_stderr(args: list[str]) -> tuple[int, str, str]:
    """``segment ARGS`` with stderr on a pseudo-terminal and stdout on a pipe: (code, stdout, stderr)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([*segment_command(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=slave, cwd=REPO)
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=600), stdout, b"".join(chunks).decode()


def without_time(stdout: str) -> str:
    return re.sub(r"time=\S+ s", "time=", stdout)


def run_args(data_csv: Path, out: Path) -> list[str]:
    return ["run", str(data_csv), "--spec", "marketing", "--k", "3", "--out", str(out), "--overwrite"]


def test_a_terminal_gets_a_bar_per_stage_on_stderr_and_stdout_is_unchanged(tmp_path: Path, data_csv: Path) -> None:
    code, stdout, stderr = run_with_terminal_stderr(run_args(data_csv, tmp_path / "tty"))
    assert code == 0, stderr
    for label in ("reading", "fitting", "profiling", "writing"):
        assert re.search(rf"{label} +{BAR.pattern}", stderr), (label, stderr[-2000:])
    assert "10/10" in stderr  # the marketing spec's ten feature columns, one advance each
    assert "wrote " in stderr  # the log lines are still there, around the bars
    piped = subprocess.run([*segment_command(), *run_args(data_csv, tmp_path / "pipe")], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert piped.returncode == 0, piped.stderr
    assert without_time(stdout) == without_time(piped.stdout.replace(str(tmp_path / "pipe"), str(tmp_path / "tty")))
    assert not BAR.search(stdout)
    assert not BAR.search(piped.stderr) and "\r" not in piped.stderr  # a pipe: the log lines only
    assert "reading " in piped.stderr


def test_quiet_shows_no_bar_on_a_terminal(tmp_path: Path, data_csv: Path) -> None:
    code, stdout, stderr = run_with_terminal_stderr([*run_args(data_csv, tmp_path / "q"), "--quiet"])
    assert code == 0, stderr
    assert stderr == "" and "segment" in stdout


def test_the_in_process_cli_shows_no_bar(tmp_path: Path, data_csv: Path) -> None:
    result = invoke(run_args(data_csv, tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert not BAR.search(result.stderr) and "\r" not in result.stderr
    assert "reading " in result.stderr and not BAR.search(result.stdout)


class Recorder:
    """A progress that records each stage: [label, total, units advanced]."""

    def __init__(self) -> None:
        self.stages: list[list] = []

    @contextmanager
    def stage(self, label: str, total: int | None = None):
        record = [label, total, 0]
        self.stages.append(record)

        def advance(n: int) -> None:
            record[2] += n

        yield advance


def test_run_reports_its_stages_and_progress_is_no_run_option(tmp_path: Path, data_csv: Path) -> None:
    import engine

    recorder = Recorder()
    result = engine.run([data_csv], 3, tmp_path / "run", spec="marketing", progress=recorder)
    stages = {label: (total, done) for label, total, done in recorder.stages}
    assert [label for label, _, _ in recorder.stages] == ["reading", "fitting", "profiling", "writing"]
    assert stages["reading"] == (10, 10)
    assert stages["fitting"][0] is None and stages["fitting"][1] >= result.metrics["n_iter"] >= 1
    assert stages["writing"][0] == stages["writing"][1] == 3
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "progress" not in json.dumps(metrics["options"])


def test_sweep_and_predict_report_their_stages(tmp_path: Path, data_csv: Path) -> None:
    import engine

    recorder = Recorder()
    engine.sweep([data_csv], "2..4", tmp_path / "sweep", spec="marketing", repeats=0, progress=recorder)
    assert [r for r in recorder.stages if r[0] == "fitting k"] == [["fitting k", 3, 3]]
    engine.run([data_csv], 3, tmp_path / "run", spec="marketing")
    recorder = Recorder()
    engine.predict(tmp_path / "run", [data_csv], tmp_path / "p.parquet", progress=recorder)
    assert recorder.stages == [["reading", 10, 10], ["assigning", 1, 1], ["writing", 1, 1]]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_draw_on_a_terminal_and_log_lines_go_around_them() -> None:
    term = FakeTerminal()
    bars = progress.for_terminal(quiet=False, stream=term)
    assert isinstance(bars, progress.Bars)
    with bars.stage("reading", 4) as advance:
        advance(2)
        bars.echo("a message")
        advance(2)
    with bars.stage("fitting") as advance:
        advance(1)
    text = term.getvalue()
    assert "2/4" in text and "4/4" in text and "100%" in text
    assert "\r\033[Ka message\n" in text
    assert re.search(r"a message\n[^\n]*reading +\[#+-+\] +2/4", text)  # the bar drawn again below the message
    assert re.search(r"fitting +\[#{30,}\]", text)  # unknown total: drawn full when the stage ends
    assert progress.for_terminal(quiet=True, stream=term) is progress.SILENT
    assert progress.for_terminal(quiet=False, stream=io.StringIO()) is progress.SILENT

