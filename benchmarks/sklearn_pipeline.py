"""The scikit-learn pipeline a data team would write, as one process (the end-to-end baseline).

    python benchmarks/sklearn_pipeline.py customers.parquet OUT_DIR [K] [minibatch|lloyd]

The columns are ``benchmarks.e2e.columns_for``'s: the customers' 16 and ID, or a
``blobs-*.parquet`` file's f00..f15 and id.

Polars read of the feature columns, rows with a missing feature dropped, StandardScaler,
MiniBatchKMeans (scikit-learn's defaults) or, with ``lloyd``, KMeans(n_init=1) (Lloyd's
algorithm to convergence, what a team wanting the best SSE from one fit would run), predict, distances, segments written to Parquet and a
group-by profile (mean of every feature per segment). Prints the seconds of each step as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.preprocessing import StandardScaler

from benchmarks.e2e import columns_for


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    lloyd = len(sys.argv) > 4 and sys.argv[4] == "lloyd"
    out.mkdir(parents=True, exist_ok=True)
    FEATURES, ID = columns_for(src)  # noqa: N806 (the data set's columns)
    seconds = {}
    t = time.perf_counter()
    df = pl.read_parquet(src, columns=[ID, *FEATURES]).drop_nulls(FEATURES)
    seconds["read"] = time.perf_counter() - t
    t = time.perf_counter()
    X = StandardScaler().fit_transform(df.select(FEATURES).to_numpy())
    seconds["scale"] = time.perf_counter() - t
    t = time.perf_counter()
    model = (KMeans(n_clusters=k, n_init=1, random_state=0) if lloyd else MiniBatchKMeans(n_clusters=k, random_state=0)).fit(X)
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = model.predict(X)
    distance = np.sqrt(((X - model.cluster_centers_[labels]) ** 2).sum(axis=1))
    seconds["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    df.select(ID).with_columns(segment=pl.Series(labels), distance=pl.Series(distance)).write_parquet(
        out / "segments.parquet")
    seconds["write"] = time.perf_counter() - t
    t = time.perf_counter()
    df.with_columns(segment=pl.Series(labels)).group_by("segment").agg(
        pl.len().alias("size"), *[pl.col(c).mean() for c in FEATURES]).sort("segment").write_parquet(
        out / "profiles.parquet")
    seconds["profile"] = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "inertia": float(model.inertia_), "rows": df.height}))


if __name__ == "__main__":
    main()
