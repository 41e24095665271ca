"""Whole-process comparisons: ``segment run`` against the scikit-learn pipeline and the I/O floor,
scaling over row counts, peak memory, and thread scaling of the fit (start-up: ``benchmarks/startup.py``).

Every process is measured from outside (wall time, and peak RSS through ``os.wait4`` in the
small launcher ``benchmarks/measure.py``), so import and start-up costs count, as they do for a user.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
ID = "ID"
#: 16 numeric columns of `segment generate` output, on very different scales (1 to 10^5).
FEATURES = [
    "Year_Birth", "Income", "Kidhome", "Teenhome", "Recency", "MntWines", "MntFruits", "MntMeatProducts",
    "MntFishProducts", "MntSweetProducts", "MntGoldProds", "NumDealsPurchases", "NumWebPurchases",
    "NumCatalogPurchases", "NumStorePurchases", "NumWebVisitsMonth",
]
K = 8
#: The issue's second data set: overlapping Gaussian segments (``overlapping_blobs``), 16 float
#: columns and an id, written once to benchmarks/data/blobs-ROWS.parquet.
#: The fit's stages in a run's metrics.json ``seconds``.
FIT_STAGES = ("sample", "init", "polish", "minibatch", "subsample", "refine")
BLOB_FEATURES = [f"f{j:02d}" for j in range(16)]
BLOB_ID = "id"


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


def columns_for(path: Path) -> tuple[list[str], str]:
    """The feature columns and the id column of a benchmark data set (customers, or blobs)."""
    return (BLOB_FEATURES, BLOB_ID) if Path(path).name.startswith("blobs-") else (FEATURES, ID)


def blob_dataset(rows: int, log) -> Path:
    """``overlapping_blobs(rows, 16, K, seed=42)`` as Parquet (float32 columns, an int64 id), made
    once in benchmarks/data/ (git-ignored)."""
    path = DATA / f"blobs-{rows}.parquet"
    if not path.exists():
        import polars as pl

        DATA.mkdir(exist_ok=True)
        log(f"writing {rows:,} x 16 overlapping blobs -> {path}")
        X = overlapping_blobs(rows, len(BLOB_FEATURES), K, seed=42)
        frame = pl.DataFrame({BLOB_ID: np.arange(rows, dtype=np.int64),
                              **{c: X[:, j] for j, c in enumerate(BLOB_FEATURES)}})
        frame.write_parquet(path.with_suffix(".tmp"), row_group_size=1 << 20)
        path.with_suffix(".tmp").rename(path)
    return path


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def dataset(rows: int, log) -> Path:
    """Generated customers (8 overlapping planted segments, seed 0), made once and kept in
    benchmarks/data/ (git-ignored). Made by ``segment generate`` in a process of its own, measured
    (wall, peak RSS); the figures are kept beside the file (``generation``)."""
    path = DATA / f"customers-{rows}.parquet"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        log(f"generating {rows:,} customers -> {path}")
        made = run_measured([bin_path("segment"), "generate", "--rows", str(rows), "--segments", str(K),
                             "--seed", "0", "--out", str(path), "--quiet"])
        facts = {"rows": rows, "seconds": made["seconds"], "peak_rss": made["peak_rss"],
                 "bytes": path.stat().st_size}
        generation_path(rows).write_text(json.dumps(facts) + "\n")
        log(f"generated {rows:,} customers in {made['seconds']:.1f} s (peak RSS {made['peak_rss'] / 2**30:.2f} GiB)")
    return path


def generation_path(rows: int) -> Path:
    return DATA / f"customers-{rows}.generate.json"


def generation(rows: int) -> dict | None:
    """How long making ``dataset(rows)`` took (seconds, peak RSS, file bytes); None for a file
    made before these figures were kept."""
    path = generation_path(rows)
    return json.loads(path.read_text()) if path.is_file() else None


def run_measured(cmd: list[str], timeout: float | None = None) -> dict:
    """Run ``cmd`` in a new process: wall seconds, peak RSS in bytes (``ru_maxrss``, taken by the
    small launcher ``benchmarks/measure.py``) and the command's last JSON output line, if any.
    Past ``timeout`` seconds the process group (the launcher and the command) is killed and
    ``RuntimeError`` raised."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.measure", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"{' '.join(cmd)}: stopped after {timeout:.0f} s") from None
    wall = time.perf_counter() - t
    lines = stdout.decode().strip().splitlines()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stdout.decode()[-2000:]}")
    result = {"seconds": wall, "peak_rss": json.loads(lines[-1])["peak_rss"]}
    try:
        result["output"] = json.loads(lines[-2])
    except (ValueError, IndexError):
        pass
    return result


def segment_run(path: Path, out: Path, extra: tuple[str, ...] = (), timeout: float | None = None) -> dict:
    features, id_col = columns_for(path)
    r = run_measured([bin_path("segment"), "run", str(path), "--features", ",".join(features), "--id-col", id_col,
                      "--k", str(K), "--out", str(out), "--overwrite", "--quiet", *extra], timeout)
    metrics = json.loads((out / "metrics.json").read_text())
    r["stages"] = metrics["seconds"]
    r["rows_used"] = metrics["rows_used"]
    r["inertia"] = metrics["inertia"]
    r["streamed"] = metrics.get("streamed", False)
    r["matrix_bytes"] = metrics["rows_used"] * len(metrics["features"]) * 4
    return r


def bench_e2e(rows: int, repeat: int, log, blobs: bool = False) -> dict:
    """segment run vs the scikit-learn pipeline vs the I/O floor, alternating, ``repeat`` times, on
    generated customers or (``blobs``) overlapping blobs."""
    path = blob_dataset(rows, log) if blobs else dataset(rows, log)
    runs: dict[str, list[dict]] = {"engine": [], "sklearn": [], "sklearn_lloyd": [], "floor": []}
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        tmp = Path(tmp)
        segment_run(path, tmp / "warm")  # numba cache and page cache warm, as for a user's second run
        for r in range(repeat):
            log(f"end to end {rows:,} rows, round {r + 1}/{repeat}")
            runs["engine"].append(segment_run(path, tmp / "engine"))
            runs["sklearn"].append(run_measured([sys.executable, "benchmarks/sklearn_pipeline.py", str(path),
                                                 str(tmp / "sklearn"), str(K)]))
            runs["sklearn_lloyd"].append(run_measured([sys.executable, "benchmarks/sklearn_pipeline.py", str(path),
                                                       str(tmp / "lloyd"), str(K), "lloyd"]))
            runs["floor"].append(run_measured([sys.executable, "benchmarks/io_floor.py", str(path),
                                               str(tmp / "floor")]))
    med = {name: statistics.median(x["seconds"] for x in v) for name, v in runs.items()}
    engine_runs = runs["engine"]
    stages = {s: statistics.median(x["stages"][s] for x in engine_runs) for s in engine_runs[0]["stages"]}
    return {
        "rows": rows, "repeat": repeat, "seconds": med,
        "peak_rss": {name: max(x["peak_rss"] for x in v) for name, v in runs.items()},
        "matrix_bytes": engine_runs[0]["matrix_bytes"],
        "engine_stages": stages,
        "sklearn_steps": {s: statistics.median(x["output"]["seconds"][s] for x in runs["sklearn"])
                          for s in runs["sklearn"][0]["output"]["seconds"]},
        "sklearn_lloyd_steps": {s: statistics.median(x["output"]["seconds"][s] for x in runs["sklearn_lloyd"])
                                for s in runs["sklearn_lloyd"][0]["output"]["seconds"]},
        "floor_steps": {s: statistics.median(x["output"]["seconds"][s] for x in runs["floor"])
                        for s in runs["floor"][0]["output"]["seconds"]},
        "inertia": {"engine": engine_runs[0]["inertia"], "sklearn": runs["sklearn"][0]["output"]["inertia"],
                    "sklearn_lloyd": runs["sklearn_lloyd"][0]["output"]["inertia"]},
        "speedup_vs_sklearn": med["sklearn"] / med["engine"],
        "speedup_vs_sklearn_lloyd": med["sklearn_lloyd"] / med["engine"],
        "floor_multiple": med["engine"] / med["floor"],
    }


def bench_scaling(sizes: list[int], log) -> dict:
    """segment run at each size (one warm-up, then one measured run each): wall, stages, peak RSS."""
    out = {}
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        tmp = Path(tmp)
        segment_run(dataset(sizes[0], log), tmp / "warm")
        for rows in sizes:
            path = dataset(rows, log)
            log(f"scaling: {rows:,} rows")
            r = segment_run(path, tmp / f"run{rows}")
            out[str(rows)] = {"seconds": r["seconds"], "peak_rss": r["peak_rss"], "matrix_bytes": r["matrix_bytes"],
                              "stages": r["stages"]}
    return out


def bench_threads(X: np.ndarray, repeat: int, log) -> dict:
    """The fit on 1, 2, 4, ... threads (up to the cores there are), alternating."""
    import numba

    import engine

    counts = [t for t in (1, 2, 4, 8, 16) if t <= numba.config.NUMBA_NUM_THREADS]
    times: dict[int, list[float]] = {t: [] for t in counts}
    engine.KMeans(K, random_state=0).fit(X[:5000])
    for r in range(repeat):
        for t in counts:
            log(f"fit on {t} thread(s), round {r + 1}/{repeat}")
            start = time.perf_counter()
            engine.KMeans(K, random_state=0, threads=t).fit(X)
            times[t].append(time.perf_counter() - start)
    med = {str(t): statistics.median(v) for t, v in times.items()}
    return {"rows": X.shape[0], "seconds": med,
            "speedup": {t: med["1"] / s for t, s in med.items()}}
