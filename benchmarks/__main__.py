"""Compare the engine with scikit-learn on the same data, in one process.

    python -m benchmarks            # 2,000,000 x 16, k=8; silhouette on 50,000 rows
    python -m benchmarks --quick    # 200,000 x 16; silhouette on 10,000 rows (about a minute)
    python -m benchmarks --only stream --sizes 1000000,10M   # streamed runs at chosen sizes

Each pair runs alternately, `--repeat` times, and the table reports medians and ratios, because
shared machines are noisy. Results go to benchmarks/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import cluster, e2e, startup, stream
from benchmarks.e2e import overlapping_blobs

RESULTS = Path(__file__).parent / "results"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cores": os.cpu_count(), "memory_gib": round(mem, 1), "cpu": cpu, "python": platform.python_version()}


def bench_fit(X: np.ndarray, k: int, repeat: int) -> dict:
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.cluster import MiniBatchKMeans

    import engine

    runs = {"engine": [], "sklearn_minibatch": [], "sklearn_kmeans": []}
    sse = {}
    engine.KMeans(k, random_state=0).fit(X[:5000])  # load the numba cache outside the timing
    for r in range(repeat):
        t, km = timed(lambda: engine.KMeans(k, random_state=r).fit(X))
        runs["engine"].append(t)
        sse.setdefault("engine", []).append(km.inertia_)
        t, mb = timed(lambda: MiniBatchKMeans(k, n_init=1, random_state=r).fit(X))
        runs["sklearn_minibatch"].append(t)
        sse.setdefault("sklearn_minibatch", []).append(float(mb.inertia_))
        t, full = timed(lambda: SkKMeans(k, n_init=1, random_state=r).fit(X))
        runs["sklearn_kmeans"].append(t)
        sse.setdefault("sklearn_kmeans", []).append(float(full.inertia_))
    return {"seconds": {n: statistics.median(v) for n, v in runs.items()},
            "sse": {n: statistics.median(v) for n, v in sse.items()}}


def bench_silhouette(X: np.ndarray, k: int, sample: int, repeat: int) -> dict:
    from sklearn.metrics import silhouette_score as sk_silhouette

    import engine
    from engine.fit.scores import silhouette_score

    labels = engine.KMeans(k, random_state=0).fit(X).labels_
    idx = np.sort(np.random.default_rng(0).choice(X.shape[0], size=sample, replace=False))
    Xs, ls = X[idx], labels[idx]
    silhouette_score(Xs[:500], ls[:500], k)  # cache load
    ours, theirs = [], []
    for _ in range(repeat):
        t, v_ours = timed(lambda: silhouette_score(Xs, ls, k))
        ours.append(t)
        t, v_sk = timed(lambda: sk_silhouette(Xs, ls))
        theirs.append(t)
    return {"seconds": {"engine": statistics.median(ours), "sklearn": statistics.median(theirs)},
            "value": {"engine": v_ours, "sklearn": float(v_sk)}, "abs_diff": abs(v_ours - float(v_sk))}


def bench_sweep(X: np.ndarray, repeat: int) -> dict:
    """A sweep of k=2..12 (the defaults: stability on 3 resamples) against one fit at k=8, same matrix."""
    import engine
    from engine.fit.sweep import parse_ks, sweep_matrix

    fits, sweeps = [], []
    for r in range(repeat):
        t, _ = timed(lambda: engine.KMeans(8, random_state=r).fit(X))
        fits.append(t)
        t, outcome = timed(lambda: sweep_matrix(X, parse_ks("2..12"), seed=r))
        sweeps.append(t)
    fit_s, sweep_s = statistics.median(fits), statistics.median(sweeps)
    return {"rows": X.shape[0], "fit_k8_seconds": fit_s, "sweep_seconds": sweep_s, "ratio": sweep_s / fit_s,
            "recommended_k": outcome.recommended_k}


SECTIONS = ("fit", "silhouette", "sweep", "e2e", "blobs", "scaling", "threads", "startup", "cluster", "stream")


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--rows", type=int, help="rows for the fit comparison")
    parser.add_argument("--repeat", type=int, help="alternating repetitions (median reported)")
    parser.add_argument("--sweep-rows", type=int, help="rows for the sweep comparison")
    parser.add_argument("--e2e-rows", type=int, help="rows for the end-to-end comparison")
    parser.add_argument("--scaling", help="comma-separated row counts for the scaling runs")
    parser.add_argument("--sizes", help="comma-separated row counts for the streamed runs (10M works; default "
                        "1M,10M,30M,100M; --quick: 200k,1M, streamed only)")
    parser.add_argument("--timeout", type=float, help="stream section: stop a process after this many seconds "
                        "(recorded as failed)")
    parser.add_argument("--only", help=f"comma-separated sections to run (of {','.join(SECTIONS)})")
    parser.add_argument("--render", type=Path, help="rewrite benchmarks/README.md from a saved results JSON")
    args = parser.parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        if set(result) & set(SECTIONS) == {"stream"}:
            write_stream_section(result)
            print(stream_section(result))
            return
        table = markdown_table(result)
        write_readme(result, table)
        print(table)
        return
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    try:
        stream_sizes = stream.parse_sizes(args.sizes) if args.sizes else list(
            stream.QUICK_SIZES if args.quick else stream.DEFAULT_SIZES)
    except ValueError as exc:
        parser.error(str(exc))
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    sample = 10_000 if args.quick else 50_000
    repeat = args.repeat or (3 if args.quick else 5)
    d, k = 16, 8
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "quick": args.quick, "rows": rows, "features": d, "k": k, "repeat": repeat,
              "command": " ".join(["python -m benchmarks", *sys.argv[1:]])}
    if only & {"fit", "silhouette", "threads"}:
        X = overlapping_blobs(rows, d, k, seed=42)
    if "fit" in only:
        log(f"fit {rows:,} x {d}")
        result["fit"] = bench_fit(X, k, repeat)
    if "silhouette" in only:
        log(f"silhouette {sample:,}")
        result["silhouette"] = {"sample": sample, **bench_silhouette(X, k, sample, max(1, repeat // 2))}
    if "threads" in only:
        result["threads"] = e2e.bench_threads(X, max(1, repeat // 2), log)
    if "sweep" in only:
        sweep_rows = args.sweep_rows or (200_000 if args.quick else 5_000_000)
        log(f"sweep {sweep_rows:,}")
        result["sweep"] = bench_sweep(overlapping_blobs(sweep_rows, d, k, seed=43), 1)
    if "e2e" in only:
        e2e_rows = args.e2e_rows or (200_000 if args.quick else 10_000_000)
        result["e2e"] = e2e.bench_e2e(e2e_rows, 1 if args.quick else 2, log)
    if "blobs" in only:
        result["blobs"] = e2e.bench_e2e(200_000 if args.quick else 5_000_000, 1 if args.quick else 2, log, blobs=True)
    if "scaling" in only:
        sizes = [int(x) for x in args.scaling.split(",")] if args.scaling else (
            [100_000, 200_000] if args.quick else [1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000])
        result["scaling"] = e2e.bench_scaling(sizes, log)
    if "startup" in only:
        result["startup"] = startup.bench_startup(3 if args.quick else 7, log)
    if "cluster" in only:
        result["cluster"] = cluster.bench_cluster(200_000 if args.quick else 4_000_000, 2, 4, RESULTS / "cluster", log)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{result['when'].replace(':', '')}{'-quick' if args.quick else ''}.json"
    if "stream" in only:
        result["stream"] = stream.bench_stream(stream_sizes, log, stream_only=args.quick, timeout=args.timeout,
                                               checkpoint=lambda part: stream.save_json(path, {**result, "stream": part}))
    stream.save_json(path, result)
    table = markdown_table(result) if set(result) & set(SECTIONS) - {"stream"} else ""
    print(table + ("\n" + stream_section(result) if "stream" in result else ""))
    if not args.quick and only == set(SECTIONS):
        write_readme(result, table)
    elif not args.quick and only == {"stream"}:
        write_stream_section(result)
    print(f"\nwrote {path}")


def e2e_rows(e: dict, what: str) -> list[str]:
    """The end-to-end rows of one data set (``e2e.bench_e2e``): against the two scikit-learn
    pipelines, the I/O floor, and the floor with the run's own fit added (no pipeline that fits
    can finish sooner), and the peak memory."""
    s = e["seconds"]
    fit = sum(e["engine_stages"].get(stage, 0.0) for stage in e2e.FIT_STAGES)
    return [
        f"| end to end, {e['rows']:,} {what}: `segment run` vs the scikit-learn pipeline | "
        f"{s['engine']:.2f} s | {s['sklearn']:.2f} s | {e['speedup_vs_sklearn']:.1f}x faster | >= 20x |",
        *([f"| end to end, {e['rows']:,} {what}: `segment run` vs the scikit-learn KMeans(n_init=1) pipeline "
           f"(SSE {e['inertia']['engine']:.6g} vs {e['inertia']['sklearn_lloyd']:.6g}) | {s['engine']:.2f} s | "
           f"{s['sklearn_lloyd']:.2f} s | {e['speedup_vs_sklearn_lloyd']:.1f}x faster | >= 4x, SSE <= |"]
          if "sklearn_lloyd" in s else []),
        f"| end to end, {e['rows']:,} {what}: `segment run` vs the I/O floor | {s['engine']:.2f} s | "
        f"{s['floor']:.2f} s | {e['floor_multiple']:.2f}x the floor | <= 1.5x |",
        f"| end to end, {e['rows']:,} {what}: the I/O floor plus the run's own fit ({fit:.2f} s, the fit stages of "
        f"metrics.json): a lower bound for any run that fits | {s['floor'] + fit:.2f} s | {s['floor']:.2f} s | "
        f"{(s['floor'] + fit) / s['floor']:.2f}x the floor | |",
        f"| peak RSS, {e['rows']:,} {what} | {gib(e['peak_rss']['engine'])} | "
        f"{gib(2.5 * e['matrix_bytes'] + 2**30)} (2.5 x matrix + 1 GiB) | "
        f"{e['peak_rss']['engine'] / (2.5 * e['matrix_bytes'] + 2**30):.2f} of the budget | < 1 |",
    ]


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def markdown_table(result: dict) -> str:
    """The comparisons with their targets, then where the end-to-end time goes and the scaling runs."""
    lines = ["| comparison | engine | baseline | ratio | target |", "| --- | --- | --- | --- | --- |"]
    rows, d, k = result["rows"], result["features"], result["k"]
    if "fit" in result:
        fit = result["fit"]
        fs = fit["seconds"]
        best_sk = min(fit["sse"]["sklearn_minibatch"], fit["sse"]["sklearn_kmeans"])
        lines += [
            f"| fit {rows:,} x {d}, k={k} vs MiniBatchKMeans(n_init=1) | {fs['engine']:.2f} s | "
            f"{fs['sklearn_minibatch']:.2f} s | {fs['sklearn_minibatch'] / fs['engine']:.1f}x faster | >= 20x |",
            f"| fit {rows:,} x {d}, k={k} vs KMeans(n_init=1) | {fs['engine']:.2f} s | {fs['sklearn_kmeans']:.2f} s | "
            f"{fs['sklearn_kmeans'] / fs['engine']:.1f}x faster | |",
            f"| SSE vs the better scikit-learn result | {fit['sse']['engine']:.6g} | {best_sk:.6g} | "
            f"{fit['sse']['engine'] / best_sk:.4f} | <= 1 |",
        ]
    if "silhouette" in result:
        sil = result["silhouette"]
        ss = sil["seconds"]
        lines.append(f"| silhouette, {sil['sample']:,} rows vs silhouette_score | {ss['engine']:.2f} s | "
                     f"{ss['sklearn']:.2f} s | {ss['sklearn'] / ss['engine']:.1f}x faster "
                     f"(difference {sil['abs_diff']:.1e}) | >= 10x, <= 1e-6 |")
    if "sweep" in result:
        sweep = result["sweep"]
        lines.append(f"| sweep k=2..12 vs one fit at k=8 ({sweep['rows']:,} rows) | {sweep['sweep_seconds']:.2f} s | "
                     f"{sweep['fit_k8_seconds']:.2f} s (our fit) | {sweep['ratio']:.1f}x the single fit | <= 10x |")
    for key, what in (("e2e", "customers"), ("blobs", "x 16 overlapping blobs")):
        if key in result:
            lines += e2e_rows(result[key], what)
    if "scaling" in result:
        sc = result["scaling"]
        if "1000000" in sc and "10000000" in sc:
            ratio = sc["10000000"]["seconds"] / sc["1000000"]["seconds"]
            lines.append(f"| time(10M) / time(1M) | {sc['10000000']['seconds']:.2f} s | {sc['1000000']['seconds']:.2f} s "
                         f"| {ratio:.1f} | <= 11 |")
    if "cluster" in result:
        lines.append(cluster.table_row(result["cluster"]))
    if "threads" in result:
        th = result["threads"]
        sp = th["speedup"]
        if "2" in sp:
            lines.append(f"| fit {th['rows']:,} rows on 2 threads vs 1 | {th['seconds']['2']:.2f} s | "
                         f"{th['seconds']['1']:.2f} s | {sp['2']:.2f}x faster | >= 1.7x |")
    if "startup" in result:
        lines += startup.table_rows(result["startup"])
    out = "\n".join(lines)
    if "e2e" in result:
        e = result["e2e"]
        stages = ", ".join(f"{name} {v:.2f}" for name, v in e["engine_stages"].items() if name != "total")
        steps = ", ".join(f"{name} {v:.2f}" for name, v in e["sklearn_steps"].items())
        floor = ", ".join(f"{name} {v:.2f}" for name, v in e["floor_steps"].items())
        out += (f"\n\nWhere the time goes, {e['rows']:,} customers (seconds, median; the process total also "
                f"counts start-up and imports):\n\n- `segment run`: {stages}\n- scikit-learn pipeline: {steps}\n"
                f"- I/O floor: {floor}\n")
        insight = e["engine_stages"].get("profile", 0.0)
        core = e["seconds"]["engine"] - insight
        out += (f"\nThe `profile` stage is the insight the floor and the scikit-learn pipeline do not produce: "
                f"profiles with means, medians and z-scores, revenue and response figures, names, actions, impact, "
                f"the EDA summary and the PCA sample for the report. It reads the columns it needs once more, block "
                f"by block, and accumulates per-segment moments and a hash sample ({insight:.2f} s). Without it the run takes {core:.2f} s, "
                f"{core / e['seconds']['floor']:.2f}x the I/O floor.\n")
    if "scaling" in result:
        out += "\n| rows | seconds | per million rows | peak RSS | float32 matrix | read | features | fit | write | profile |\n"
        out += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        for n, r in result["scaling"].items():
            st = r["stages"]
            fit_s = sum(st.get(x, 0.0) for x in ("sample", "init", "polish", "minibatch", "subsample", "refine"))
            out += (f"| {int(n):,} | {r['seconds']:.2f} | {r['seconds'] / (int(n) / 1e6):.2f} | {gib(r['peak_rss'])} | "
                    f"{gib(r['matrix_bytes'])} | {st.get('read', 0):.2f} | {st.get('features', 0) + st.get('scale', 0):.2f} | "
                    f"{fit_s:.2f} | {st.get('write', 0):.2f} | {st.get('profile', 0):.2f} |\n")
    if result.get("startup", {}).get("breakdown"):
        out += "\n\nWhere a warm small run's time goes (seconds, median of new processes):\n\n"
        out += startup.breakdown_table(result["startup"]) + "\n"
    if "threads" in result:
        th = result["threads"]
        out += "\n| fit threads | " + " | ".join(th["seconds"]) + " |\n| --- |" + " --- |" * len(th["seconds"]) + "\n"
        out += "| seconds | " + " | ".join(f"{v:.2f}" for v in th["seconds"].values()) + " |\n"
        out += "| speedup | " + " | ".join(f"{v:.2f}x" for v in th["speedup"].values()) + " |\n"
    return out


INTRO = """# Benchmarks

`make bench` (or `python -m benchmarks`) runs every comparison below on data it generates with fixed
seeds and writes `benchmarks/results/<time>.json`; a full run also rewrites this file.
`python -m benchmarks --quick` is the small version (about a minute, for smoke tests);
`--only fit,silhouette,sweep,e2e,blobs,scaling,threads,startup,cluster,stream` runs some sections;
`python -m benchmarks --render results/<time>.json` rewrites this file from a saved run.
`python -m benchmarks --only stream` (`--sizes 1000000,10M` to choose the sizes) rewrites only the
streamed section below.
Timings live here, never in `tests/`.

How each figure is measured:
- **fit, silhouette, sweep, threads**: in one process, the engine and scikit-learn alternating,
  repeated; medians. Data: 8 overlapping Gaussian segments of unequal sizes and spreads, 16
  features on scales from 1 to 10^4, standardised (silhouette about 0.2 to 0.3).
- **end to end**: whole processes, measured from outside (wall time, peak RSS through `os.wait4`):
  `segment run` (k=8, the 16 numeric columns of `segment generate` output as features), the
  scikit-learn pipeline a data team would write (`benchmarks/sklearn_pipeline.py`: Polars read,
  StandardScaler, MiniBatchKMeans with scikit-learn's defaults, predict, write Parquet, group-by
  profile) and the I/O floor (`benchmarks/io_floor.py`: read the feature columns into a float32
  matrix, write id, segment and distance), alternating. The engine's run also does everything the
  floor and the scikit-learn pipeline do not: exact silhouette of 20,000 rows, profiles with
  medians and z-scores, names, actions, the EDA summary and PCA sample for the report, model.json.
  The row "I/O floor plus the run's own fit" adds the fit stages of the run's metrics.json to the
  floor: what a pipeline that fits as fast as this one and does nothing else would take.
- **blobs**: the same end-to-end comparison on 5,000,000 x 16 overlapping blobs (the fit's data,
  written once to `benchmarks/data/blobs-5000000.parquet`: float32 columns `f00`..`f15` and `id`).
- **scaling**: one `segment run` per size after a warm-up run; peak RSS of each.
- **startup** (`benchmarks/startup.py`, also `python -m benchmarks.startup`): `segment --help`,
  and `segment run` on the shared 2,240-row dataset (`--spec marketing --k 4`) with the numba
  cache warm, each a new process; medians of 7 (wall from outside, CPU through `os.wait4`); then
  the same run in a probe process that stamps the clock after each import and after the command,
  for the breakdown (interpreter start, imports, the run's stages, teardown).
- **cluster** (`benchmarks/cluster.py`, also `python -m benchmarks.cluster`): 4,000,000 generated
  customers in 4 Parquet files (`--quick`: 200,000), `segment run --spec customers --k 5` streamed
  locally, then with `--cluster local:2` (2 worker processes on the same machine), one after the
  other in one process; wall times, the mini-batch step's cost (a round trip to the workers per
  step on the cluster) and whether segments, profiles and centres are equal.
- **stream**: generated customers at 1M, 10M, 30M and 100M rows (`--sizes`; `--quick`: 200,000 and
  1,000,000, streamed runs only), the 16 features, k=8, after one warm-up run. Per size, each a
  process of its own measured from outside, once: `segment run --stream`, the streamed I/O floor
  (`benchmarks/io_floor.py --stream`: the feature columns read block by block, 1,048,576 rows,
  into float32, id, segment and distance written with a ParquetWriter row group by row group:
  one pass, the least a streamed run can do), `segment run` in memory and the in-memory I/O floor.
  The in-memory runs are skipped where they would not fit the memory available when they start
  (the engine's own estimate for `segment run`, `benchmarks/stream.py`'s for the floor) and the
  table says so. Stage seconds are `metrics.json`'s `seconds`: fit = sample + init + polish +
  minibatch + subsample + refine; features = features + scale. "x floor without profile" leaves
  out the `profile` (insight) stage, which the floors do not do.
"""

STREAM_BEGIN = "<!-- stream: rewritten by `python -m benchmarks --only stream` and by a full run -->"
STREAM_END = "<!-- /stream -->"


README = Path(__file__).parent / "README.md"


def machine_line(m: dict) -> str:
    return f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}, Python {m['python']}."


def write_readme(result: dict, table: str) -> None:
    """Replace the measured tables in benchmarks/README.md with this run's."""
    body = (
        INTRO + f"\n## Latest full run ({result['when']})\n\n{machine_line(result['machine'])} "
        f"Repetitions: {result['repeat']} (fit), median reported. Command: `make bench`.\n\n" + table + "\n"
    )
    README.write_text(body + ("\n" + stream_section(result) if "stream" in result else ""), encoding="utf-8")


def stream_section(result: dict) -> str:
    """The streamed runs' part of benchmarks/README.md, between markers so that a run of the
    stream section alone can replace it."""
    st = result["stream"]
    sizes = ", ".join(f"{n:,}" for n in st["sizes"])
    return (f"{STREAM_BEGIN}\n## Streamed runs ({result['when']})\n\n{machine_line(result['machine'])} "
            f"Sizes: {sizes} rows x {st['features']} features, k={st['k']}; one run of each. "
            f"Command: `{result.get('command', 'python -m benchmarks')}`.\n\n" + stream.markdown(st) + STREAM_END + "\n")


def write_stream_section(result: dict) -> None:
    """Replace (or add) the streamed section of benchmarks/README.md, keeping the rest."""
    text = README.read_text(encoding="utf-8") if README.is_file() else INTRO
    section = stream_section(result)
    if STREAM_BEGIN in text and STREAM_END in text:
        head, rest = text.split(STREAM_BEGIN, 1)
        text = head + section + rest.split(STREAM_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
