"""Compare the engine with scikit-learn on the same data, in one process.

    python -m benchmarks            # 2,000,000 x 16, k=8; silhouette on 50,000 rows
    python -m benchmarks --quick    # 200,000 x 16; silhouette on 10,000 rows (about a minute)

Each pair runs alternately, `--repeat` times, and the table reports medians and ratios, because
shared machines are noisy. Results go to benchmarks/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def overlapping_blobs(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """Overlapping Gaussian segments with unequal sizes and spreads, features on very different
    scales (1 to 10,000), standardised as the engine's pipeline would: silhouette about 0.2-0.4."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.6, size=(k, d))
    weights = rng.dirichlet(np.full(k, 3.0))
    labels = rng.choice(k, size=n, p=weights)
    spread = rng.uniform(0.7, 1.3, size=k)
    X = centres[labels] + rng.standard_normal((n, d)) * spread[labels, None]
    X *= np.logspace(0, 4, d)  # very different scales...
    X = (X - X.mean(0)) / X.std(0)  # ...which the standard scaler removes
    return np.ascontiguousarray(X, dtype=np.float32)


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
    engine.KMeans(k, seed=0).fit(X[:5000])  # load the numba cache outside the timing
    for r in range(repeat):
        t, km = timed(lambda: engine.KMeans(k, seed=r).fit(X))
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
    from engine.metrics import silhouette_score

    labels = engine.KMeans(k, seed=0).fit(X).labels_
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
    from engine.sweep import parse_ks, sweep_matrix

    fits, sweeps = [], []
    for r in range(repeat):
        t, _ = timed(lambda: engine.KMeans(8, seed=r).fit(X))
        fits.append(t)
        t, outcome = timed(lambda: sweep_matrix(X, parse_ks("2..12"), seed=r))
        sweeps.append(t)
    fit_s, sweep_s = statistics.median(fits), statistics.median(sweeps)
    return {"rows": X.shape[0], "fit_k8_seconds": fit_s, "sweep_seconds": sweep_s, "ratio": sweep_s / fit_s,
            "recommended_k": outcome.recommended_k}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--rows", type=int, help="rows for the fit comparison")
    parser.add_argument("--repeat", type=int, help="alternating repetitions (median reported)")
    parser.add_argument("--sweep-rows", type=int, help="rows for the sweep comparison")
    args = parser.parse_args()
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    sample = 10_000 if args.quick else 50_000
    repeat = args.repeat or (3 if args.quick else 5)
    d, k = 16, 8
    X = overlapping_blobs(rows, d, k, seed=42)
    fit = bench_fit(X, k, repeat)
    sil = bench_silhouette(X, k, sample, max(1, repeat // 2))
    sweep_rows = args.sweep_rows or (200_000 if args.quick else 5_000_000)
    sweep = bench_sweep(overlapping_blobs(sweep_rows, d, k, seed=43), 1)
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "rows": rows, "features": d, "k": k, "repeat": repeat, "fit": fit,
              "silhouette": {"sample": sample, **sil}, "sweep": sweep}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{result['when'].replace(':', '')}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(result)
    print(table)
    if not args.quick:
        write_readme(result, table)
    print(f"\nwrote {path}")


def markdown_table(result: dict) -> str:
    fit, sil, sweep = result["fit"], result["silhouette"], result["sweep"]
    fs, ss = fit["seconds"], sil["seconds"]
    rows, d, k = result["rows"], result["features"], result["k"]
    best_sk = min(fit["sse"]["sklearn_minibatch"], fit["sse"]["sklearn_kmeans"])
    lines = [
        f"| comparison | engine | scikit-learn | ratio |",
        "| --- | --- | --- | --- |",
        f"| fit {rows:,} x {d}, k={k} vs MiniBatchKMeans(n_init=1) | {fs['engine']:.2f} s | "
        f"{fs['sklearn_minibatch']:.2f} s | {fs['sklearn_minibatch'] / fs['engine']:.1f}x faster |",
        f"| fit {rows:,} x {d}, k={k} vs KMeans(n_init=1) | {fs['engine']:.2f} s | {fs['sklearn_kmeans']:.2f} s | "
        f"{fs['sklearn_kmeans'] / fs['engine']:.1f}x faster |",
        f"| SSE vs the better scikit-learn result | {fit['sse']['engine']:.6g} | {best_sk:.6g} | "
        f"{fit['sse']['engine'] / best_sk:.4f} |",
        f"| silhouette, {sil['sample']:,} rows | {ss['engine']:.2f} s | {ss['sklearn']:.2f} s | "
        f"{ss['sklearn'] / ss['engine']:.1f}x faster (difference {sil['abs_diff']:.1e}) |",
        f"| sweep k=2..12 vs one fit at k=8 ({sweep['rows']:,} rows) | {sweep['sweep_seconds']:.2f} s | "
        f"{sweep['fit_k8_seconds']:.2f} s (our fit) | {sweep['ratio']:.1f}x the single fit |",
    ]
    return "\n".join(lines)


def write_readme(result: dict, table: str) -> None:
    """Replace the measured table in benchmarks/README.md with this run's."""
    m = result["machine"]
    readme = Path(__file__).parent / "README.md"
    body = (
        "# Benchmarks\n\n"
        "`make bench` (or `python -m benchmarks`) runs every comparison on generated data with fixed seeds, "
        "each pair alternating in one process, and reports medians. `python -m benchmarks --quick` is the small "
        "version (about a minute). Each run writes `benchmarks/results/<time>.json`; a full run rewrites the "
        "table below. Timings live here, never in `tests/`.\n\n"
        f"## Latest full run ({result['when']})\n\n"
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}, Python {m['python']}. "
        f"Repetitions: {result['repeat']} (fit), median reported.\n\n" + table + "\n"
    )
    readme.write_text(body, encoding="utf-8")


if __name__ == "__main__":
    main()
