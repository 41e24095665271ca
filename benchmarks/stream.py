"""Streamed runs at scale: ``segment run --stream`` against the in-memory run and the I/O floors.

For every size (generated customers, 16 features, k=8), each a process of its own measured from
outside (wall, peak RSS): ``segment run --stream``, the streamed I/O floor
(``io_floor.py --stream``), and, where they fit in the memory available, ``segment run`` in memory
and the in-memory I/O floor. Per-stage seconds come from the run's ``metrics.json``.

The pure helpers (``parse_sizes``, ``size_rows``, ``targets``, ``markdown``) take plain data, so
tests can check them on a fake result.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

from benchmarks import e2e

DEFAULT_SIZES = (1_000_000, 10_000_000, 30_000_000, 100_000_000)
QUICK_SIZES = (200_000, 1_000_000)
#: The in-memory I/O floor's peak per row: the float32 frame and its C-ordered copy (2 x 4 bytes
#: per feature), ids, labels, distances and the written columns (32). Measured at 10,000,000 x 16:
#: 1.80 GB peak RSS, about 150 bytes per row over start-up; this says 160.
FLOOR_BASE_BYTES = 400 * 2**20
FIT_STAGES = ("sample", "init", "polish", "minibatch", "subsample", "refine")
SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_sizes(text: str) -> list[int]:
    """``"1000000,10M,30_000_000"`` -> row counts (``k``, ``M``, ``G`` suffixes; underscores)."""
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*([0-9][0-9_]*)\s*([kKmMgG]?)\s*", part)
        if not m:
            raise ValueError(f"--sizes: cannot read {part!r} as a row count (use e.g. 1000000,10M)")
        rows = int(m.group(1).replace("_", "")) * SUFFIX[m.group(2).lower()]
        if rows < 1:
            raise ValueError(f"--sizes: a size must be at least 1 row, got {part!r}")
        sizes.append(rows)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--sizes: a size is repeated in {text!r}")
    return sorted(sizes)


def floor_bytes(rows: int, d: int) -> int:
    """What the in-memory I/O floor needs at its peak (see ``FLOOR_BASE_BYTES``)."""
    return FLOOR_BASE_BYTES + rows * (2 * 4 * d + 32)


def run_facts(r: dict) -> dict:
    return {k: r[k] for k in ("seconds", "peak_rss", "stages", "inertia", "rows_used", "streamed") if k in r}


def measure_size(rows: int, tmp: Path, stream_only: bool, timeout: float | None, log) -> dict:
    """Every run of one size; a failed or timed-out run is recorded, not raised."""
    from engine.input.memory import available_memory, human, needed_bytes

    path = e2e.dataset(rows, log)
    d = len(e2e.FEATURES)
    entry = {"rows": rows, "generate": e2e.generation(rows), "file_bytes": path.stat().st_size,
             "estimate_bytes": needed_bytes(rows, d, 0), "floor_estimate_bytes": floor_bytes(rows, d)}
    floor_cmd = [sys.executable, "benchmarks/io_floor.py", str(path), str(tmp / "floor")]
    plan = [("streamed", lambda: e2e.segment_run(path, tmp / "stream", ("--stream",), timeout)),
            ("streamed_floor", lambda: e2e.run_measured([*floor_cmd, "--stream"], timeout))]
    if not stream_only:
        plan += [("memory", lambda: e2e.segment_run(path, tmp / "memory", (), timeout), "estimate_bytes"),
                 ("floor", lambda: e2e.run_measured(floor_cmd, timeout), "floor_estimate_bytes")]
    for name, fn, *need in plan:
        avail = available_memory()
        entry["available_bytes"] = avail
        if need and avail is not None and entry[need[0]] > avail:
            entry[name] = {"skipped": f"needs about {human(entry[need[0]])}, {human(avail)} available"}
            log(f"stream {rows:,}: {name} skipped ({entry[name]['skipped']})")
            continue
        log(f"stream {rows:,}: {name}")
        load = os.getloadavg()[0]
        try:
            r = fn()
        except (RuntimeError, OSError, ValueError) as exc:
            entry[name] = {"failed": str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else repr(exc)}
            log(f"stream {rows:,}: {name} failed: {entry[name]['failed']}")
            continue
        entry[name] = run_facts(r) if "stages" in r else {"seconds": r["seconds"], "peak_rss": r["peak_rss"],
                                                          "steps": r.get("output", {}).get("seconds", {})}
        entry[name]["load"] = [load, os.getloadavg()[0]]  # 1-minute load average before and after
        if name == "memory" and r.get("streamed"):
            entry[name]["note"] = "the engine streamed it (its estimate did not fit when it ran)"
        log(f"stream {rows:,}: {name} {r['seconds']:.1f} s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB")
    return entry


def bench_stream(sizes: list[int], log, stream_only: bool = False, timeout: float | None = None,
                 checkpoint=None) -> dict:
    """Every size in order, after a warm-up streamed run (numba cache) on the smallest;
    ``checkpoint(partial)`` after each size, so a stopped run keeps what it measured."""
    out = {"sizes": sizes, "features": len(e2e.FEATURES), "k": e2e.K, "stream_only": stream_only,
           "timeout": timeout, "runs": {}}
    e2e.DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=e2e.DATA) as tmp:
        tmp = Path(tmp)
        small = min(sizes[0], 200_000)
        e2e.segment_run(e2e.dataset(small, log), tmp / "warm", ("--stream",))
        for rows in sizes:
            out["runs"][str(rows)] = measure_size(rows, tmp, stream_only, timeout, log)
            if checkpoint is not None:
                checkpoint(out)
    return out


# ---- rendering (pure) ----

def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def size_text(n: float) -> str:
    return gib(n) if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def stage_cells(stages: dict) -> list[str]:
    fit = sum(stages.get(x, 0.0) for x in FIT_STAGES)
    return [f"{stages.get('read', 0.0):.2f}", f"{stages.get('features', 0.0) + stages.get('scale', 0.0):.2f}",
            f"{fit:.2f}", f"{stages.get('silhouette', 0.0):.2f}", f"{stages.get('profile', 0.0):.2f}",
            f"{stages.get('write', 0.0) + stages.get('final_pass', 0.0):.2f}"]


def floor_cell(floor: dict | None) -> str:
    if not floor:
        return "not run"
    if "skipped" in floor:
        return f"skipped: {floor['skipped']}"
    if "failed" in floor:
        return f"failed: {floor['failed']}"
    return f"{floor['seconds']:.2f} s, {gib(floor['peak_rss'])}"


def size_rows(entry: dict) -> list[str]:
    """The table rows of one size: in memory, then streamed, each against its own I/O floor."""
    rows, lines = entry["rows"], []
    for mode, floor_key, label in (("memory", "floor", "in memory"), ("streamed", "streamed_floor", "streamed")):
        run, floor = entry.get(mode), entry.get(floor_key)
        head = f"| {rows:,} | {label} |"
        if run is None:
            lines.append(head + " not run (--quick runs the streamed path only) |" + " |" * 11)
            continue
        if "seconds" not in run:
            why = f"skipped: {run['skipped']}" if "skipped" in run else f"failed: {run['failed']}"
            lines.append(head + f" {why} | | | {floor_cell(floor)} |" + " |" * 8)
            continue
        s = run["seconds"]
        profile = run["stages"].get("profile", 0.0)
        if floor and "seconds" in floor:
            ratio = f"{s / floor['seconds']:.2f}x"
            core = f"{(s - profile) / floor['seconds']:.2f}x"
        else:
            ratio = core = ""
        note = f" ({run['note']})" if run.get("note") else ""
        lines.append(head + f" {s:.2f}{note} | {rows / s:,.0f} | {gib(run['peak_rss'])} | {floor_cell(floor)} | "
                     f"{ratio} | {core} | " + " | ".join(stage_cells(run["stages"])) + " |")
    return lines


TABLE_HEAD = ("| rows | run | seconds | rows/s | peak RSS | I/O floor (same kind) | x floor | x floor without profile | "
              "read | features | fit | silhouette | profile | write (streamed: the final pass) |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")


def measured(entry: dict | None, key: str) -> dict | None:
    run = (entry or {}).get(key)
    return run if run and "seconds" in run else None


def targets(stream: dict) -> list[str]:
    """The issue's figures for the largest size streamed: throughput, peak RSS (<= 2 GiB at
    100M), time against a size a tenth as large (<= 11x) and against the streamed floor (<= 1.5x)."""
    runs = {int(n): e for n, e in stream["runs"].items() if measured(e, "streamed")}
    if not runs:
        return []
    big = max(runs)
    run, floor = runs[big]["streamed"], measured(runs[big], "streamed_floor")
    lines = [f"| throughput, {big:,} rows streamed | {big / run['seconds']:,.0f} rows/s | | |",
             f"| peak RSS, {big:,} rows streamed | {gib(run['peak_rss'])} | | "
             f"{'<= 2 GiB' if big >= 100_000_000 else '(2 GiB at 100,000,000)'} |"]
    small = big // 10 if big // 10 in runs else min(runs)
    if small != big:
        ratio = run["seconds"] / runs[small]["streamed"]["seconds"]
        limit = 1.1 * big / small
        lines.append(f"| time({big:,}) / time({small:,}), streamed | {run['seconds']:.2f} s / "
                     f"{runs[small]['streamed']['seconds']:.2f} s | {ratio:.2f} | <= {limit:.3g} |")
    if floor:
        core = run["seconds"] - run["stages"].get("profile", 0.0)
        lines.append(f"| {big:,} rows streamed vs the streamed I/O floor | {run['seconds']:.2f} s / "
                     f"{floor['seconds']:.2f} s | {run['seconds'] / floor['seconds']:.2f}x "
                     f"({core / floor['seconds']:.2f}x without the profile stage) | <= 1.5x |")
        lines.append(f"| throughput of the streamed I/O floor itself, {big:,} rows (read the 16 columns, write 3) | "
                     f"{big / floor['seconds']:,.0f} rows/s | | the run's target: >= 5,000,000 rows/s |")
        read = floor.get("steps", {}).get("read")
        if read:  # a streamed run reads every row to fit before it knows any row's segment, then again
            two = floor["seconds"] + read
            lines.append(f"| {big:,} rows: the streamed floor with its read done twice, the least a streamed run "
                         f"can do (it reads every row to fit before any row's segment is final, then again to "
                         f"write it) | {two:.2f} s, {big / two:,.0f} rows/s | the run is {run['seconds'] / two:.2f}x |"
                         f" |")
    both = {n: (measured(e, "memory")["inertia"], e["streamed"]["inertia"]) for n, e in sorted(runs.items())
            if measured(e, "memory") and "inertia" in measured(e, "memory") and "inertia" in e["streamed"]}
    if both:
        same = [f"{n:,}: {'the same' if a == b else f'{a:.9g} / {b:.9g}'}" for n, (a, b) in both.items()]
        lines.append(f"| inertia in memory / streamed | {'; '.join(same)} | "
                     f"{'the same' if all(a == b for a, b in both.values()) else 'different'} | the same |")
    return ["| streamed figure | measured | ratio | target |", "| --- | --- | --- | --- |", *lines]


def generation_lines(stream: dict) -> list[str]:
    out = []
    for n, e in stream["runs"].items():
        g = e.get("generate")
        made = (f"{g['seconds']:.1f} s, peak RSS {gib(g['peak_rss'])}" if g
                else "made before its time was kept")
        out.append(f"- {int(n):,} customers ({size_text(e['file_bytes'])} of Parquet): {made}")
    return out


def load_line(stream: dict) -> str:
    """The machine's 1-minute load average around the measured runs (other work shares it)."""
    loads = [x for e in stream["runs"].values() for r in e.values() if isinstance(r, dict) for x in r.get("load", ())]
    if not loads:
        return ""
    cores = os.cpu_count() or 1
    return (f"1-minute load average around the runs: {min(loads):.1f} to {max(loads):.1f} on {cores} cores"
            + (" (other work shared the machine, so the seconds are longer than on an idle one)" if max(loads) > cores + 0.5
               else "") + ".\n\n")


def markdown(stream: dict) -> str:
    """The section's tables: the targets, every size, and how long making each data set took."""
    out = load_line(stream) + "\n".join(targets(stream)) + "\n\n" + TABLE_HEAD
    out += "\n".join(line for e in stream["runs"].values() for line in size_rows(e)) + "\n"
    out += "\nGenerating the data (`segment generate --rows N --segments 8 --seed 0`, once, kept in benchmarks/data/):\n\n"
    return out + "\n".join(generation_lines(stream)) + "\n"


def save_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
