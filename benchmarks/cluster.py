"""The same run locally (streamed) and on a Dask LocalCluster: seconds per stage, the mini-batch
round trip, and whether the answers agree.

    python -m benchmarks.cluster --rows 4000000 --workers 2

The cluster run's mini-batch steps each gather one batch from the workers (a round trip per
step): ``seconds.minibatch / n_steps`` against the local run's shows its cost.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl


def bench_cluster(rows: int, workers: int, files: int, directory: Path, log=print) -> dict:
    """The streamed local run and the ``--cluster local:WORKERS`` run of the same ``files``-file
    dataset (made once in ``directory``), one after the other: wall, stages, the mini-batch round
    trip, and whether segments, profiles and centres are equal."""
    import engine
    from engine.synth.customers import generate_customers

    data = directory / f"customers-{rows}"
    if not data.is_dir():
        data.mkdir(parents=True)
        whole = directory / "whole.parquet"
        generate_customers(whole, rows, segments=5, seed=0)
        frame = pl.read_parquet(whole)
        for i, part in enumerate(frame.iter_slices(-(-rows // files))):
            part.write_parquet(data / f"part-{i}.parquet")
        whole.unlink()
    figures = {}
    for name, extra in (("local", {"stream": True}), ("cluster", {"cluster": f"local:{workers}"})):
        log(f"cluster section: {rows:,} rows, {name}")
        t0 = time.perf_counter()
        result = engine.run([data], k=5, spec="customers", out=directory / name, overwrite=True, **extra)
        m = result.metrics
        figures[name] = {"wall": round(time.perf_counter() - t0, 2), "n_steps": m["n_steps"], "n_iter": m["n_iter"],
                         "minibatch_step_ms": round(1000 * m["seconds"]["minibatch"] / max(m["n_steps"], 1), 3),
                         "seconds": m["seconds"]}
    a = pl.read_parquet(directory / "local" / "segments.parquet")
    b = pl.read_parquet(sorted((directory / "cluster" / "segments.parquet").glob("part-*.parquet")))
    same = {"segments": a.equals(b),
            "profiles": pl.read_parquet(directory / "local" / "profiles.parquet").equals(
                pl.read_parquet(directory / "cluster" / "profiles.parquet")),
            "centers": bool(np.array_equal(engine.load_model(directory / "local").centers,
                                           engine.load_model(directory / "cluster").centers))}
    return {"rows": rows, "workers": workers, "files": files, "same": same, **figures}


def table_row(c: dict) -> str:
    """The ``make bench`` row: the cluster run against the local streamed run of the same data."""
    local, cluster = c["local"], c["cluster"]
    same = "same segments, profiles and centres" if all(c["same"].values()) else f"DIFFERENT: {c['same']}"
    return (f"| `segment run --cluster local:{c['workers']}` vs the same run streamed locally, {c['rows']:,} customers "
            f"in {c['files']} files ({same}; a mini-batch step {cluster['minibatch_step_ms']:.1f} ms against "
            f"{local['minibatch_step_ms']:.1f} ms) | {cluster['wall']:.2f} s | {local['wall']:.2f} s | "
            f"{cluster['wall'] / local['wall']:.2f}x the local time | equal results |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=Path("benchmarks/results/cluster"))
    args = parser.parse_args()
    print(json.dumps(bench_cluster(args.rows, args.workers, args.files, args.dir), indent=2))


if __name__ == "__main__":
    main()
