"""Start-up: ``segment --help`` and a warm small run, each a new process, and where a small run's
time goes.

    python -m benchmarks.startup              # medians of 7
    python -m benchmarks.startup --repeat 15

The small run is ``segment run ../shared/data/marketing_campaign.csv --spec marketing --k 4`` (2,240
rows, 218 KB) with the numba cache warm (one run first, not counted). Wall time is measured from
outside, CPU time (user + sys) through ``os.wait4``: on a shared machine the CPU time is the steadier
figure. The breakdown runs the same command in a probe process that stamps the clock (``time.time``,
comparable across processes) after ``import cli``, after ``import engine.api`` and after the command;
the run's own stages come from its metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_CSV = ROOT.parent / "shared" / "data" / "marketing_campaign.csv"
HELP_TARGET, RUN_TARGET = 0.15, 0.6

#: ``python -c PROBE MARKS ARGS...``: ``segment ARGS`` with the clock stamped into the file MARKS.
PROBE = """
import time
t_start = time.time()
import json, sys
marks_path, args = sys.argv[1], sys.argv[2:]
import cli
t_cli = time.time()
import engine.api
t_engine = time.time()
cli.main(args, standalone_mode=False)
with open(marks_path, "w") as fh:
    json.dump({"start": t_start, "cli": t_cli, "engine": t_engine, "done": time.time()}, fh)
"""


def segment() -> list[str]:
    return [str(Path(sys.executable).parent / "segment")]


def timed_process(cmd: list[str]) -> dict:
    """Wall and CPU seconds of ``cmd`` as a new process (its output thrown away)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(cmd)} failed: {stderr[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


def small_run_args(out: Path) -> list[str]:
    return ["run", str(SHARED_CSV), "--spec", "marketing", "--k", "4", "--out", str(out), "--overwrite", "--quiet"]


def probe(out: Path, tmp: Path) -> dict:
    """One small run in the probe: its phases in seconds."""
    marks_path = tmp / "marks.json"
    spawned = time.time()
    timed_process([sys.executable, "-c", PROBE, str(marks_path), *small_run_args(out)])
    ended = time.time()
    marks = json.loads(marks_path.read_text())
    stages = json.loads((out / "metrics.json").read_text())["seconds"]
    run_total = stages.pop("total")
    return {
        "interpreter start": marks["start"] - spawned,
        "import cli (click, options)": marks["cli"] - marks["start"],
        "import engine.api (Polars, numba, pyarrow, the engine)": marks["engine"] - marks["cli"],
        **{f"run: {name}": value for name, value in stages.items()},
        "run: the rest (plan, record)": run_total - sum(stages.values()),
        "CLI: parse the flags, print the result": marks["done"] - marks["engine"] - run_total,
        "exit (interpreter teardown)": ended - marks["done"],
    }


def bench_startup(repeat: int, log=lambda _m: None) -> dict:
    """``segment --help`` and a warm small run, medians of ``repeat`` new processes; and the breakdown."""
    helps = [timed_process([*segment(), "--help"]) for _ in range(repeat)]
    result = {"repeat": repeat, "help_seconds": statistics.median(h["wall"] for h in helps),
              "help_cpu_seconds": statistics.median(h["cpu"] for h in helps),
              "warm_run_seconds": None, "command": "segment run marketing_campaign.csv --spec marketing --k 4"}
    if not SHARED_CSV.is_file():
        log(f"warning: {SHARED_CSV} not found; the warm run is not measured")
        return result
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmd = [*segment(), *small_run_args(tmp / "run")]
        timed_process(cmd)  # the numba cache is warm from here on
        log(f"start-up: {repeat} warm runs")
        runs = [timed_process(cmd) for _ in range(repeat)]
        phases = [probe(tmp / "probe", tmp) for _ in range(repeat)]
    result.update(warm_run_seconds=statistics.median(r["wall"] for r in runs),
                  warm_run_cpu_seconds=statistics.median(r["cpu"] for r in runs),
                  breakdown={name: statistics.median(p[name] for p in phases) for name in phases[0]})
    return result


def table_rows(st: dict) -> list[str]:
    """The start-up rows of the benchmark table (``| comparison | engine | baseline | ratio | target |``)."""
    cpu = f" (cpu {st['help_cpu_seconds']:.3f} s)" if "help_cpu_seconds" in st else ""
    rows = [f"| `segment --help`{cpu} | {st['help_seconds']:.3f} s | | | < {HELP_TARGET} s |"]
    if st["warm_run_seconds"] is not None:
        cpu = f", cpu {st['warm_run_cpu_seconds']:.2f} s" if "warm_run_cpu_seconds" in st else ""
        rows.append(f"| warm `segment run` on the 2,240-row shared dataset (`--spec marketing --k 4`{cpu}) | "
                    f"{st['warm_run_seconds']:.2f} s | | | <= {RUN_TARGET} s |")
    return rows


def breakdown_table(st: dict) -> str:
    """Where the warm small run's time goes (seconds, median)."""
    if not st.get("breakdown"):
        return ""
    lines = ["| phase of a warm small run | seconds |", "| --- | --- |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in st["breakdown"].items()]
    lines.append(f"| sum | {sum(st['breakdown'].values()):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="new processes per figure (median reported)")
    args = parser.parse_args()
    st = bench_startup(args.repeat, lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
    print("| comparison | engine | baseline | ratio | target |\n| --- | --- | --- | --- | --- |")
    print("\n".join(table_rows(st)))
    print("\n" + breakdown_table(st))


if __name__ == "__main__":
    main()
