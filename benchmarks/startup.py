"""Start-up: ``segment --help`` and a warm small run, each a new process, and where a small run's
time goes.

    python -m benchmarks.startup              # medians of 7
    python -m benchmarks.startup --repeat 15

The small run is ``segment run ../shared/data/marketing_campaign.csv --spec marketing --k 4`` (2,240
rows, 218 KB) with the numba cache warm (one run first, not counted). Wall time is measured from
outside, CPU time (user + sys) through ``os.wait4``: on a shared machine the CPU time is the steadier
figure. The breakdown runs the same command in a probe process that stamps the clock (``time.time``,
comparable across processes) after ``import cli``, after ``import engine.api`` and after the command;
the run's own stages come from its metrics.json. The processes run with bytecode caching on
(``PYTHONDONTWRITEBYTECODE`` removed from their environment), as in any installed environment:
without it every process compiles the engine's modules again (about 0.1 s here).

The baseline is the library floor (``FLOOR``): a process that loads only what every run needs, the
libraries and one cached kernel, and does no work. The warm run's figure above it is the engine's.
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
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}

#: ``python -c PROBE MARKS ARGS...``: ``segment ARGS`` with the clock stamped into the file MARKS.
PROBE = """
import time
marks = {"start": (time.time(), time.process_time())}
import json, sys
marks_path, args = sys.argv[1], sys.argv[2:]
import cli
marks["cli"] = (time.time(), time.process_time())
with cli.loading():
    import engine.api
marks["engine"] = (time.time(), time.process_time())
cli.main(args, standalone_mode=False)
marks["done"] = (time.time(), time.process_time())
with open(marks_path, "w") as fh:
    json.dump(marks, fh)
"""


#: ``python -c FLOOR``: what any run of this engine must load, and nothing of the engine's own work:
#: numpy, Polars, pyarrow, click, numba with the kernel options (kernels.config) and the first
#: kernel taken from the on-disk cache (numba builds its target context on that first load),
#: loaded as the CLI loads them (the collector paused, then frozen: cli.loading) and with the
#: CLI's exit (gc.freeze). A warm small run cannot finish faster than this process.
FLOOR = """
import atexit, gc
gc.disable()
import click, numpy as np, polars as pl, pyarrow.parquet
import kernels.config
from kernels.core import put_column
gc.freeze()
gc.enable()
cols = np.empty((4, 2), order="F")
put_column(cols, 0, 0, pl.Series([1.0, 2.0, 3.0, 4.0]).rechunk().to_numpy())
atexit.register(gc.freeze)
"""


def segment() -> list[str]:
    return [str(Path(sys.executable).parent / "segment")]


def timed_process(cmd: list[str]) -> dict:
    """Wall and CPU seconds of ``cmd`` as a new process (its output thrown away)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
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
    """One small run in the probe: its phases as [wall, cpu] seconds (cpu None where the stage's
    CPU time is not recorded: the run's stages report wall time)."""
    marks_path = tmp / "marks.json"
    spawned = time.time()
    process = timed_process([sys.executable, "-c", PROBE, str(marks_path), *small_run_args(out)])
    ended = time.time()
    (w0, c0), (w1, c1), (w2, c2), (w3, c3) = (json.loads(marks_path.read_text())[key]
                                              for key in ("start", "cli", "engine", "done"))
    stages = json.loads((out / "metrics.json").read_text())["seconds"]
    run_total = stages.pop("total")
    return {
        "interpreter start": [w0 - spawned, c0],
        "import cli (click, options)": [w1 - w0, c1 - c0],
        "import engine.api (Polars, numba, pyarrow, the engine)": [w2 - w1, c2 - c1],
        "the command (parse, run, print)": [w3 - w2, c3 - c2],
        **{f"  run: {name}": [value, None] for name, value in stages.items()},
        "  run: the rest (plan, record)": [run_total - sum(stages.values()), None],
        "  CLI: parse the flags, print the result": [w3 - w2 - run_total, None],
        "exit (interpreter teardown)": [ended - w3, process["cpu"] - c3],
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
        log(f"start-up: {repeat} rounds of a warm run, the library floor and the probe")
        runs, floors, phases = [], [], []
        for _ in range(repeat):  # in turn: a drift in the machine's speed moves all three alike
            runs.append(timed_process(cmd))
            floors.append(timed_process([sys.executable, "-c", FLOOR]))
            phases.append(probe(tmp / "probe", tmp))
    result.update(warm_run_seconds=statistics.median(r["wall"] for r in runs),
                  warm_run_cpu_seconds=statistics.median(r["cpu"] for r in runs),
                  library_floor_seconds=statistics.median(f["wall"] for f in floors),
                  library_floor_cpu_seconds=statistics.median(f["cpu"] for f in floors),
                  breakdown={name: [statistics.median(p[name][0] for p in phases),
                                    None if phases[0][name][1] is None else statistics.median(p[name][1] for p in phases)]
                             for name in phases[0]})
    return result


def table_rows(st: dict) -> list[str]:
    """The start-up rows of the benchmark table (``| comparison | engine | baseline | ratio | target |``)."""
    cpu = f" (cpu {st['help_cpu_seconds']:.3f} s)" if "help_cpu_seconds" in st else ""
    rows = [f"| `segment --help`{cpu} | {st['help_seconds']:.3f} s | | | < {HELP_TARGET} s |"]
    if st["warm_run_seconds"] is not None:
        cpu = f", cpu {st['warm_run_cpu_seconds']:.2f} s" if "warm_run_cpu_seconds" in st else ""
        floor = st.get("library_floor_seconds")
        baseline = "" if floor is None else f"{floor:.2f} s (library floor, cpu {st['library_floor_cpu_seconds']:.2f} s)"
        ratio = "" if floor is None else f"{st['warm_run_seconds'] / floor:.2f}x floor"
        rows.append(f"| warm `segment run` on the 2,240-row shared dataset (`--spec marketing --k 4`{cpu}) | "
                    f"{st['warm_run_seconds']:.2f} s | {baseline} | {ratio} | <= {RUN_TARGET} s |")
    return rows


def breakdown_table(st: dict) -> str:
    """Where the warm small run's time goes (seconds, median)."""
    if not st.get("breakdown"):
        return ""
    lines = ["| phase of a warm small run | wall s | cpu s |", "| --- | --- | --- |"]
    lines += [f"| {name} | {wall:.3f} | {'' if cpu is None else f'{cpu:.3f}'} |"
              for name, (wall, cpu) in st["breakdown"].items() if wall >= 0.0005]
    top = [v for name, v in st["breakdown"].items() if not name.startswith(" ")]
    lines.append(f"| sum | {sum(w for w, _ in top):.3f} | {sum(c for _, c in top):.3f} |")
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
