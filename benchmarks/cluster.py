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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=Path("benchmarks/results/cluster"))
    args = parser.parse_args()
    import engine
    from engine.synth.customers import generate_customers

    data = args.dir / f"customers-{args.rows}"
    if not data.is_dir():
        data.mkdir(parents=True)
        whole = args.dir / "whole.parquet"
        generate_customers(whole, args.rows, segments=5, seed=0)
        frame = pl.read_parquet(whole)
        for i, part in enumerate(frame.iter_slices(-(-args.rows // args.files))):
            part.write_parquet(data / f"part-{i}.parquet")
        whole.unlink()
    figures = {}
    for name, extra in (("local", {"stream": True}), ("cluster", {"cluster": f"local:{args.workers}"})):
        t0 = time.perf_counter()
        result = engine.run([data], k=5, spec="customers", out=args.dir / name, overwrite=True, log=print, **extra)
        m = result.metrics
        figures[name] = {"wall": round(time.perf_counter() - t0, 2), "n_steps": m["n_steps"], "n_iter": m["n_iter"],
                         "minibatch_step_ms": round(1000 * m["seconds"]["minibatch"] / max(m["n_steps"], 1), 3),
                         "seconds": m["seconds"]}
    a = pl.read_parquet(args.dir / "local" / "segments.parquet")
    b = pl.read_parquet(sorted((args.dir / "cluster" / "segments.parquet").glob("part-*.parquet")))
    same = {"segments": a.equals(b),
            "profiles": pl.read_parquet(args.dir / "local" / "profiles.parquet").equals(
                pl.read_parquet(args.dir / "cluster" / "profiles.parquet")),
            "centers": bool(np.array_equal(engine.load_model(args.dir / "local").centers,
                                           engine.load_model(args.dir / "cluster").centers))}
    print(json.dumps({"rows": args.rows, "workers": args.workers, "same": same, **figures}, indent=2))


if __name__ == "__main__":
    main()
