"""Quality figures against scikit-learn, each from one command:

    python -m benchmarks.quality [--shared ../shared/data/marketing_campaign.csv]

1. SSE ratio: the engine's run on the shared marketing data (built-in `customers` spec, k=4)
   against sklearn KMeans(n_init=10) on the same scaled matrix, over several seeds.
2. ARI: `segment generate` data with planted, well-separated segments (spread 0.25), k = planted.
3. Silhouette difference: the engine's sampled silhouette against sklearn's on the same rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "marketing_campaign.csv"


def sse_ratio(csv: Path, seeds: range) -> list[tuple[int, float, float]]:
    from sklearn.cluster import KMeans as SkKMeans

    import engine
    from engine.features.build import build_features
    from engine.input.files import open_input

    X = build_features(open_input([csv]), engine.load_spec("customers")).X.astype(np.float64)
    rows = []
    for seed in seeds:
        ours = engine.KMeans(4, random_state=seed).fit(X).inertia_
        theirs = SkKMeans(4, n_init=10, random_state=seed).fit(X).inertia_
        rows.append((seed, ours, float(theirs)))
    return rows


def planted_ari(segments: int, rows: int, tmp: Path) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score

    import engine

    data = tmp / f"planted{segments}.parquet"
    engine.generate_customers(data, rows, segments=segments, seed=3, spread=0.25)
    t = time.perf_counter()
    engine.run([data], segments, tmp / f"run{segments}", spec="customers", overwrite=True)
    seconds = time.perf_counter() - t
    joined = pl.read_parquet(data, columns=["true_segment"]).hstack(
        pl.read_parquet(tmp / f"run{segments}" / "segments.parquet", columns=["segment"])
    ).drop_nulls()
    return adjusted_rand_score(joined["true_segment"], joined["segment"]), seconds


def silhouette_diff(csv: Path) -> tuple[float, float]:
    from sklearn.metrics import silhouette_score as sk_silhouette

    import engine
    from engine.features.build import build_features
    from engine.fit.scores import silhouette_score
    from engine.input.files import open_input

    X = build_features(open_input([csv]), engine.load_spec("customers")).X
    labels = engine.KMeans(4, random_state=0).fit(X).labels_
    return silhouette_score(X, labels, 4), float(sk_silhouette(X, labels))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality")
    parser.add_argument("--shared", type=Path, default=SHARED, help="path of marketing_campaign.csv")
    args = parser.parse_args()
    print("SSE on the marketing data (customers spec, k=4), engine vs sklearn KMeans(n_init=10):")
    print("| seed | engine SSE | sklearn SSE | ratio |\n| --- | --- | --- | --- |")
    for seed, ours, theirs in sse_ratio(args.shared, range(5)):
        print(f"| {seed} | {ours:.4f} | {theirs:.4f} | {ours / theirs:.6f} |")
    ours, theirs = silhouette_diff(args.shared)
    print(f"\nsilhouette (all 2,216 rows): engine {ours:.9f}, sklearn {theirs:.9f}, |diff| {abs(ours - theirs):.1e}")
    print("\nplanted segments (segment generate --spread 0.25, 50,000 rows, seed 3), segment run --spec customers:")
    print("| planted k | ARI | run seconds |\n| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for k in (3, 5, 7):
            ari, seconds = planted_ari(k, 50_000, Path(tmp))
            print(f"| {k} | {ari:.4f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
