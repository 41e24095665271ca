"""A simulated campaign outcome for a plan (``segment generate --kind outcome --plan PLAN``).

Every planned customer responds with probability ``base_rate`` of its segment (the plan's, from
the run) in the holdout, and ``base_rate + true_lift`` of its segment when treated; one uniform
draw per customer, in the plan's row order, from ``numpy.random.default_rng([seed, STREAM])``.
The true lifts are known, so ``segment measure`` on the outcome can be checked against them
(``benchmarks/campaign_coverage.py`` checks the 95% intervals' coverage over many seeds).

Columns: the plan's id column and ``response`` (0/1).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.outputs.plan import GROUPS, read_plan
from engine.outputs.write import atomic_file

STREAM = 0x6F63  # "oc"


def parse_lifts(true_lift: float | str | Sequence[float], segments: list[int]) -> dict[int, float]:
    """One true lift per segment: one value for all, or one per segment in segment order
    (``"0.01,0.02,0.03"``)."""
    if isinstance(true_lift, str):
        try:
            values = [float(v) for v in true_lift.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--true-lift must be a number or one number per segment, not {true_lift!r}") from None
    elif isinstance(true_lift, (int, float)) and not isinstance(true_lift, bool):
        values = [float(true_lift)]
    else:
        values = [float(v) for v in true_lift]
    if len(values) == 1:
        values = values * len(segments)
    if len(values) != len(segments):
        raise InputError(f"--true-lift gives {len(values)} lifts for {len(segments)} segments; give one, or one "
                         "per segment")
    return dict(zip(segments, values))


def simulate(assignment: pl.DataFrame, plan: dict[str, Any], lifts: dict[int, float], seed: int) -> pl.DataFrame:
    """The plan's id column and a simulated 0/1 ``response`` for every planned customer."""
    base = {int(r["segment"]): r["base_rate"] for r in plan["segments"]}
    for j, lift in lifts.items():
        p0 = base.get(j)
        if p0 is not None and not (0 <= p0 + lift <= 1 and 0 <= p0 <= 1):
            raise InputError(f"--true-lift {lift:g} takes segment {j}'s rate {p0:.4g} outside 0..1")
    segment = assignment["segment"].to_numpy()
    treated = (assignment["group"] == GROUPS[0]).to_numpy()
    p0 = np.array([base.get(int(j)) or 0.0 for j in range(int(segment.max()) + 1)]) if segment.size else np.zeros(0)
    lift = np.array([lifts.get(int(j), 0.0) for j in range(p0.size)])
    rate = p0[segment] + treated * lift[segment] if segment.size else np.zeros(0)
    draws = np.random.default_rng([seed, STREAM]).random(segment.size)
    return pl.DataFrame({plan["id_col"]: assignment[plan["id_col"]], "response": (draws < rate).astype(np.int8)})


def generate_outcome(plan_path: str | Path | None, out: str | Path, true_lift: Any, seed: int = 0,
                     overwrite: bool = False) -> dict[str, Any]:
    """Write a simulated outcome of the plan to ``out`` (CSV if it ends in .csv, else Parquet)."""
    started = time.perf_counter()
    if plan_path is None:
        raise InputError("--kind outcome needs --plan PLAN.parquet (from segment plan)")
    if true_lift is None:
        raise InputError("--kind outcome needs --true-lift: the lift to plant, one value or one per segment")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed!r}")
    assignment, plan = read_plan(plan_path)
    lifts = parse_lifts(true_lift, [int(r["segment"]) for r in plan["segments"]])
    frame = simulate(assignment, plan, lifts, seed)
    path = Path(out)
    with atomic_file(path, overwrite) as tmp:
        if path.suffix.lower() == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp, compression="zstd")
    return {"path": str(out), "kind": "outcome", "plan": str(plan_path), "rows": frame.height,
            "responses": int(frame["response"].sum()), "true_lift": {str(j): v for j, v in lifts.items()},
            "seed": seed, "seconds": time.perf_counter() - started}
