"""Coverage of ``segment measure``'s 95% lift intervals over repeated simulated campaigns:

    python -m benchmarks.campaign_coverage [--seeds 500] [--shared ../shared/data/marketing_campaign.csv]

One run of the shared marketing data (built-in ``customers`` spec, k=4). For every seed: a plan
(``--lift``, seeded stratified assignment), a simulated outcome with known true lifts per segment
(``engine.synth.campaign.simulate``: the plan's base rates, plus the true lift when treated), and
the measure table. Reports, per segment and overall, how often the 95% interval holds the true
lift, the mean measured lift against the true one, and how often the lift is significant; and
for the all-segments row, whose target is the treated-weighted mean of the true lifts.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import polars as pl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "marketing_campaign.csv"
TRUE_LIFTS = (0.04, 0.08, 0.0, 0.1)  # per segment of the k=4 run


def coverage(run_dir: Path, seeds: int, lift: float, holdout_share: float | None,
             true_lifts: tuple[float, ...]) -> pl.DataFrame:
    """One row per (seed, segment): the true lift, the measured one and its interval."""
    from engine.insight.campaign import CampaignTest, build_plan, join_outcomes, measure_table, run_figures
    from engine.outputs import rundir
    from engine.synth.campaign import simulate

    run = rundir.read_run(run_dir)
    segments = pl.read_parquet(run.file(rundir.SEGMENTS))
    rows = []
    for seed in range(seeds):
        assignment, plan, _ = build_plan(segments, run.profiles, CampaignTest(lift, 0.05, 0.8, holdout_share, seed),
                                         str(run.path), run_figures(run))
        truth = dict(zip([r["segment"] for r in plan["segments"]], true_lifts))
        outcome = simulate(assignment, plan, truth, seed).rename({plan["id_col"]: "id"})
        joined = join_outcomes(assignment, plan["id_col"], outcome.with_columns(pl.col("response").cast(pl.Int64)))
        table = measure_table(joined, plan, plan["cost_per_contact"], plan["revenue_per_response"])
        segs = table.filter(pl.col("scope") == "segment")
        for r in segs.iter_rows(named=True):
            rows.append({"seed": seed, "segment": r["segment"], "true_lift": truth[r["segment"]], "lift": r["lift"],
                         "low": r["lift_low"], "high": r["lift_high"], "significant": r["significant"]})
        # the all row estimates the treated-weighted mean of the true lifts
        weighted = sum(r["treated"] * truth[r["segment"]] for r in segs.iter_rows(named=True)) / segs["treated"].sum()
        r = table.filter(pl.col("scope") == "all").row(0, named=True)
        rows.append({"seed": seed, "segment": -1, "true_lift": weighted, "lift": r["lift"], "low": r["lift_low"],
                     "high": r["lift_high"], "significant": r["significant"]})
    return pl.DataFrame(rows).with_columns(
        ((pl.col("low") <= pl.col("true_lift")) & (pl.col("true_lift") <= pl.col("high"))).alias("covered"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--lift", type=float, default=0.05, help="the plan's lift to detect")
    parser.add_argument("--holdout-share", type=float, default=0.3)
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    import engine

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        engine.run([args.shared], 4, run_dir, spec="customers")
        found = coverage(run_dir, args.seeds, args.lift, args.holdout_share, TRUE_LIFTS)
    overall = found.filter(pl.col("segment") == -1)
    found = found.filter(pl.col("segment") >= 0)
    n = found.height
    covered = found["covered"].mean()
    se = math.sqrt(0.95 * 0.05 / n)
    per = found.group_by("segment").agg(pl.col("true_lift").first(), pl.col("lift").mean().alias("mean_lift"),
                                        pl.col("covered").mean().alias("coverage"),
                                        pl.col("significant").mean().alias("significant_share")).sort("segment")
    print(per)
    print(f"coverage of the 95% intervals: {covered:.4f} over {n:,} intervals ({args.seeds} seeds x "
          f"{per.height} segments; binomial standard error at 95%: {se:.4f}); the all-segments row's: "
          f"{overall['covered'].mean():.4f} over {overall.height:,}; {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
