"""Campaign tests with a holdout: ``segment plan`` sizes and assigns them, ``segment measure``
reads the outcome.

**Plan.** Per segment, from the run's response rate ``p0`` (the base rate) and the absolute lift
to detect ``d`` (``--lift 0.02`` = two points), a two-sided two-proportion z-test at level
``alpha`` between the treated (rate ``p1 = p0 + d``) and the holdout (rate ``p0``), with the null
variance pooled:

    power(n_t, n_h) = Phi((d - z(1 - alpha/2) * sqrt(pbar (1 - pbar) (1/n_t + 1/n_h)))
                          / sqrt(p1 (1 - p1) / n_t + p0 (1 - p0) / n_h)),   pbar = (n_t p1 + n_h p0) / (n_t + n_h)

``holdout_needed`` is the smallest holdout with ``power >= --power``: with ``--holdout-share S``
the holdout is ``S`` of a segment of ``n / S`` customers (``n_t = n_h (1 - S) / S``), without it
the rest of the segment is treated (``n_t = size - n_h``, found by bisection; it exists only if
the most powerful split, half and half, reaches the power). A segment is ``large_enough`` when
its planned split reaches the power; one that is not is still split (half and half without
``--holdout-share``) and flagged. ``min_detectable_lift`` is the lift the planned split detects
with that power.

Every segmented customer of the run is assigned: within segment ``j`` (rows in the order of
segments.parquet), a permutation from ``numpy.random.default_rng([seed, STREAM, j])`` puts the
first ``holdout`` customers in ``holdout`` and the rest in ``treat``. The same run and seed give
the same plan, on any machine.

**Measure.** Per segment, from the outcome files joined to the plan on the id column: the
treated and holdout response rates, the lift ``p_t - p_h`` with a 95% interval (Newcombe's
hybrid score interval, from the two Wilson intervals: good coverage at low rates and small
groups), the two-sided p-value of the pooled z-test, the incremental responses ``lift x
treated``, revenue at the revenue per response (with its interval), the cost of contacting the
treated and the ROI ``(incremental revenue - cost) / cost``. The ``all`` row combines the
segments with weights ``treated / all treated`` (a stratified estimate of the lift on the
treated; normal interval from the segments' variances). A segment whose measured split has less
than the planned power to detect the planned lift is flagged ``conclusive = false``.

Outcome ids that are not in the plan are counted and reported (an error only when none
match); planned customers without an outcome, or with a null response, are left out and counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from engine.errors import InputError, did_you_mean, first_line
from engine.features.business import check_figure
from engine.input.files import open_input
from engine.outputs import rundir
from engine.outputs.plan import GROUPS, read_plan, write_plan
from engine.outputs.write import atomic_file, check_file_target, write_parquet_meta

NORMAL = NormalDist()
CONFIDENCE = 0.95
STREAM = 0x706C  # "pl": keeps the assignment's generators apart from the run's
PLAN_COLUMNS = ("segment", "name", "customers", "base_rate", "target_rate", "holdout_needed", "holdout", "treated",
                "holdout_share", "power", "min_detectable_lift", "large_enough")
MEASURE_COLUMNS = ("scope", "segment", "name", "treated", "treated_responses", "treated_rate", "holdout",
                   "holdout_responses", "holdout_rate", "lift", "lift_low", "lift_high", "p_value", "significant",
                   "incremental_responses", "incremental_revenue", "incremental_revenue_low",
                   "incremental_revenue_high", "cost", "roi", "power", "conclusive", "note")


@dataclass(frozen=True)
class CampaignTest:
    """What the plan detects: an absolute ``lift`` at level ``alpha`` with ``power``."""

    lift: float
    alpha: float
    power: float
    holdout_share: float | None = None
    seed: int = 0


def check_test(lift: Any, alpha: Any, power: Any, holdout_share: Any, seed: Any) -> CampaignTest:
    """The plan's parameters, or a one-line error naming the flag."""
    def fraction(flag: str, value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 < value < 1:
            raise InputError(f"{flag} must be {what}, above 0 and below 1, not {value!r}")
        return float(value)

    if lift is None:
        raise InputError("--lift is required: the absolute lift in response rate to detect (0.02 = 2 points)")
    test = CampaignTest(fraction("--lift", lift, "an absolute lift in response rate (0.02 = 2 points)"),
                fraction("--alpha", alpha, "a significance level"), fraction("--power", power, "a power"),
                None if holdout_share is None else fraction("--holdout-share", holdout_share, "a share"),
                seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed!r}")
    return test


def power_of(p0: float, lift: float, n_t: float, n_h: float, alpha: float) -> float:
    """The power of the two-sided pooled two-proportion z-test (see the module docstring)."""
    p1 = p0 + lift
    if n_t <= 0 or n_h <= 0 or not 0 <= p1 <= 1:
        return 0.0
    pbar = (n_t * p1 + n_h * p0) / (n_t + n_h)
    null_se = math.sqrt(pbar * (1 - pbar) * (1 / n_t + 1 / n_h))
    alt_se = math.sqrt(p1 * (1 - p1) / n_t + p0 * (1 - p0) / n_h)
    if alt_se == 0:
        return 1.0 if abs(lift) > 0 else 0.0
    z = NORMAL.inv_cdf(1 - alpha / 2)
    return NORMAL.cdf((abs(lift) - z * null_se) / alt_se)


def holdout_needed(p0: float, size: int, test: CampaignTest) -> int | None:
    """The smallest holdout that reaches the power (None: none does, within the segment for a
    free split; the ratio's formula has no bound with a share)."""
    if not 0 <= p0 + test.lift <= 1:
        return None
    if test.holdout_share is not None:
        ratio = (1 - test.holdout_share) / test.holdout_share
        lo, hi = 1, 1
        while power_of(p0, test.lift, ratio * hi, hi, test.alpha) < test.power:
            lo, hi = hi, hi * 2
            if hi > 1 << 40:
                return None
    else:
        lo, hi = 1, size // 2
        if hi < 1 or power_of(p0, test.lift, size - hi, hi, test.alpha) < test.power:
            return None
        ratio = None
    while lo < hi:  # bisection: power grows with the holdout up to the balanced split
        mid = (lo + hi) // 2
        n_t = ratio * mid if ratio is not None else size - mid
        if power_of(p0, test.lift, n_t, mid, test.alpha) >= test.power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def min_detectable_lift(p0: float, n_t: int, n_h: int, alpha: float, power: float) -> float | None:
    """The smallest lift the split detects with ``power`` (None where even 1 - p0 is not enough)."""
    top = 1 - p0
    if n_t <= 0 or n_h <= 0 or top <= 0 or power_of(p0, top, n_t, n_h, alpha) < power:
        return None
    lo, hi = 0.0, top
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power_of(p0, mid, n_t, n_h, alpha) >= power else (mid, hi)
    return hi


def plan_row(segment: int, name: str, size: int, p0: float | None, test: CampaignTest) -> dict[str, Any]:
    """One segment of the plan (``PLAN_COLUMNS``)."""
    row = {"segment": segment, "name": name, "customers": size, "base_rate": p0,
           "target_rate": None if p0 is None else p0 + test.lift}
    needed = None if p0 is None else holdout_needed(p0, size, test)
    if test.holdout_share is not None:
        holdout = min(size, round(size * test.holdout_share)) if size else 0
        holdout = max(holdout, 1) if size >= 2 else holdout
    else:
        holdout = needed if needed is not None else size // 2
    treated = size - holdout
    power = 0.0 if p0 is None else power_of(p0, test.lift, treated, holdout, test.alpha)
    row.update(holdout_needed=needed, holdout=holdout, treated=treated,
               holdout_share=holdout / size if size else None, power=power,
               min_detectable_lift=None if p0 is None else min_detectable_lift(p0, treated, holdout, test.alpha,
                                                                               test.power),
               large_enough=bool(power >= test.power))
    return row


def assign(segments: pl.DataFrame, id_col: str, holdouts: dict[int, int], seed: int) -> pl.DataFrame:
    """``id``, ``segment``, ``group`` for every segmented customer (see the module docstring)."""
    seg = segments.select(id_col, "segment").with_row_index("@row").filter(pl.col("segment").is_not_null())
    labels = seg["segment"].to_numpy()
    group = np.empty(seg.height, dtype=object)
    for j in sorted(holdouts):
        rows = np.flatnonzero(labels == j)
        order = np.random.default_rng([seed, STREAM, j]).permutation(rows.size)
        chosen = np.full(rows.size, GROUPS[0], dtype=object)
        chosen[order[:holdouts[j]]] = GROUPS[1]
        group[rows] = chosen
    return seg.select(id_col, pl.col("segment").cast(pl.Int32),
                      pl.Series("group", group.tolist(), pl.String))


def run_figures(run: rundir.RunDir) -> tuple[float | None, float | None]:
    """The run's cost per contact and revenue per response (impact's, else the profile's)."""
    insight = run.metrics.get("insight") or {}
    source = insight.get("impact") or insight.get("overall") or {}
    return source.get("cost_per_contact"), source.get("revenue_per_response")


def make_plan(run_dir: str | Path, test: CampaignTest) -> tuple[pl.DataFrame, dict[str, Any], pl.DataFrame]:
    """The assignment, the plan (for the file's metadata) and the per-segment table of a run."""
    run = rundir.read_run(run_dir, need=rundir.RUN_FILES)
    profiles = run.profiles
    if "response_rate" not in profiles.columns:
        raise InputError(f"{run_dir}: the run has no response rate per segment to plan from (declare [business] "
                         "response in the spec, or --response-window for transactions)")
    segments = rundir.read_parquet(run.file(rundir.SEGMENTS))
    return build_plan(segments, profiles, test, str(run.path), run_figures(run))


def build_plan(segments: pl.DataFrame, profiles: pl.DataFrame, test: CampaignTest, run_path: str,
               figures: tuple[float | None, float | None]) -> tuple[pl.DataFrame, dict[str, Any], pl.DataFrame]:
    """``make_plan`` from a run's segments.parquet and profiles.parquet, read."""
    id_col = segments.columns[0]
    sizes = dict(segments.drop_nulls("segment").group_by("segment").len().iter_rows())
    rows = [plan_row(int(r["segment"]), r["name"], int(sizes.get(r["segment"], 0)), r["response_rate"], test)
            for r in profiles.sort("segment").iter_rows(named=True)]
    table = pl.DataFrame(rows, schema=PLAN_SCHEMA)
    assignment = assign(segments, id_col, {r["segment"]: r["holdout"] for r in rows}, test.seed)
    plan = {"run": run_path, "id_col": id_col, "lift": test.lift, "alpha": test.alpha, "power": test.power,
            "holdout_share": test.holdout_share, "seed": test.seed, "cost_per_contact": figures[0],
            "revenue_per_response": figures[1], "unsegmented": segments["segment"].null_count(),
            "segments": table.to_dicts()}
    return assignment, plan, table


PLAN_SCHEMA = {"segment": pl.Int32, "name": pl.String, "customers": pl.Int64, "base_rate": pl.Float64,
               "target_rate": pl.Float64, "holdout_needed": pl.Int64, "holdout": pl.Int64, "treated": pl.Int64,
               "holdout_share": pl.Float64, "power": pl.Float64, "min_detectable_lift": pl.Float64,
               "large_enough": pl.Boolean}


def plan_campaign(run_dir: str | Path, out: str | Path | None, test: CampaignTest, overwrite: bool = False
                  ) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``segment plan``: check everything, then write the plan file; the table and the plan."""
    if out is None:
        raise InputError("--out is required: name the plan file (PLAN.parquet)")
    check_file_target(Path(out), overwrite)
    assignment, plan, table = make_plan(run_dir, test)
    write_plan(assignment, plan, out, overwrite)
    return table, plan


# ----------------------------------------------------------------------------- measure

def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of ``x`` successes in ``n``."""
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def lift_interval(x_t: int, n_t: int, x_h: int, n_h: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``p_t - p_h``."""
    p_t, p_h = x_t / n_t, x_h / n_h
    (l_t, u_t), (l_h, u_h) = wilson(x_t, n_t, z), wilson(x_h, n_h, z)
    d = p_t - p_h
    return d - math.sqrt((p_t - l_t) ** 2 + (u_h - p_h) ** 2), d + math.sqrt((u_t - p_t) ** 2 + (p_h - l_h) ** 2)


def p_value(x_t: int, n_t: int, x_h: int, n_h: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    pooled = (x_t + x_h) / (n_t + n_h)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_h))
    d = x_t / n_t - x_h / n_h
    if se == 0:
        return 1.0 if d == 0 else 0.0
    return 2 * (1 - NORMAL.cdf(abs(d) / se))


def segment_measure(row: dict[str, Any], n_t: int, x_t: int, n_h: int, x_h: int, plan: dict[str, Any],
                    cost: float | None, revenue: float | None) -> dict[str, Any]:
    """One segment's measured figures (``MEASURE_COLUMNS``), from its counts and its plan row."""
    z = NORMAL.inv_cdf(1 - (1 - CONFIDENCE) / 2)
    out: dict[str, Any] = {"scope": "segment", "segment": row["segment"], "name": row["name"], "treated": n_t,
                           "treated_responses": x_t, "treated_rate": x_t / n_t if n_t else None, "holdout": n_h,
                           "holdout_responses": x_h, "holdout_rate": x_h / n_h if n_h else None}
    measured = bool(n_t and n_h)
    lift = out["treated_rate"] - out["holdout_rate"] if measured else None
    low, high = lift_interval(x_t, n_t, x_h, n_h, z) if measured else (None, None)
    p = p_value(x_t, n_t, x_h, n_h) if measured else None
    base = row.get("base_rate")
    power = power_of(base, plan["lift"], n_t, n_h, plan["alpha"]) if base is not None else 0.0
    out.update(lift=lift, lift_low=low, lift_high=high, p_value=p, significant=None if p is None else p < plan["alpha"],
               power=power, conclusive=bool(measured and power >= plan["power"]))
    out.update(money(lift, low, high, n_t, cost, revenue))
    out["note"] = note(out, plan)
    return out


def money(lift: float | None, low: float | None, high: float | None, n_t: int, cost: float | None,
          revenue: float | None) -> dict[str, Any]:
    """Incremental responses and revenue (with the lift's interval), the cost of the treated and ROI."""
    incremental = None if lift is None else lift * n_t
    def rev(value: float | None) -> float | None:
        return None if value is None or revenue is None else value * n_t * revenue

    spent = None if cost is None else n_t * cost
    gain = rev(lift)
    return {"incremental_responses": incremental, "incremental_revenue": gain, "incremental_revenue_low": rev(low),
            "incremental_revenue_high": rev(high), "cost": spent,
            "roi": (gain - spent) / spent if gain is not None and spent else None}


def note(row: dict[str, Any], plan: dict[str, Any]) -> str | None:
    """Why a segment's result does not conclude."""
    if not row["treated"] or not row["holdout"]:
        return "no holdout" if row["treated"] else "no treated customers"
    if not row["conclusive"]:
        return (f"holdout too small to conclude: power {row['power']:.0%} to detect a lift of "
                f"{plan['lift']:.4g} (planned {plan['power']:.0%})")
    return None


def overall_measure(rows: list[dict[str, Any]], plan: dict[str, Any], cost: float | None,
                    revenue: float | None) -> dict[str, Any]:
    """The ``all`` row: the segments' lifts weighted by their treated customers."""
    z = NORMAL.inv_cdf(1 - (1 - CONFIDENCE) / 2)
    used = [r for r in rows if r["lift"] is not None]
    n_t = sum(r["treated"] for r in rows)
    n_h = sum(r["holdout"] for r in rows)
    x_t = sum(r["treated_responses"] for r in rows)
    x_h = sum(r["holdout_responses"] for r in rows)
    weight = sum(r["treated"] for r in used)
    out: dict[str, Any] = {"scope": "all", "segment": None, "name": "All segments", "treated": n_t,
                           "treated_responses": x_t, "treated_rate": x_t / n_t if n_t else None, "holdout": n_h,
                           "holdout_responses": x_h, "holdout_rate": x_h / n_h if n_h else None}
    if not weight:
        out.update(lift=None, lift_low=None, lift_high=None, p_value=None, significant=None, power=None,
                   conclusive=False, **money(None, None, None, n_t, cost, revenue), note="no segment was measured")
        return out
    lift = sum(r["treated"] * r["lift"] for r in used) / weight
    var = sum((r["treated"] / weight) ** 2 * (r["treated_rate"] * (1 - r["treated_rate"]) / r["treated"]
                                              + r["holdout_rate"] * (1 - r["holdout_rate"]) / r["holdout"])
              for r in used)
    sd = math.sqrt(var)
    p = (1.0 if lift == 0 else 0.0) if sd == 0 else 2 * (1 - NORMAL.cdf(abs(lift) / sd))
    out.update(lift=lift, lift_low=lift - z * sd, lift_high=lift + z * sd, p_value=p, significant=p < plan["alpha"],
               power=None, conclusive=all(r["conclusive"] for r in rows if r["treated"]))
    out.update(money(lift, lift - z * sd, lift + z * sd, weight, cost, revenue))
    out["note"] = None if out["conclusive"] else "some segments are too small to conclude"
    return out


MEASURE_SCHEMA = {"scope": pl.String, "segment": pl.Int32, "name": pl.String, "treated": pl.Int64,
                  "treated_responses": pl.Int64, "treated_rate": pl.Float64, "holdout": pl.Int64,
                  "holdout_responses": pl.Int64, "holdout_rate": pl.Float64, "lift": pl.Float64,
                  "lift_low": pl.Float64, "lift_high": pl.Float64, "p_value": pl.Float64, "significant": pl.Boolean,
                  "incremental_responses": pl.Float64, "incremental_revenue": pl.Float64,
                  "incremental_revenue_low": pl.Float64, "incremental_revenue_high": pl.Float64,
                  "cost": pl.Float64, "roi": pl.Float64, "power": pl.Float64, "conclusive": pl.Boolean,
                  "note": pl.String}


def measure_table(joined: pl.DataFrame, plan: dict[str, Any], cost: float | None,
                  revenue: float | None) -> pl.DataFrame:
    """The measure table from the plan's customers with an outcome (``segment``, ``group``, ``response``)."""
    counts = {(s, g): (n, x) for s, g, n, x in joined.group_by("segment", "group")
              .agg(pl.len(), pl.col("response").sum()).iter_rows()}
    rows = []
    for row in plan["segments"]:
        j = row["segment"]
        n_t, x_t = counts.get((j, GROUPS[0]), (0, 0))
        n_h, x_h = counts.get((j, GROUPS[1]), (0, 0))
        rows.append(segment_measure(row, int(n_t), int(x_t), int(n_h), int(x_h), plan, cost, revenue))
    rows.append(overall_measure(rows, plan, cost, revenue))
    return pl.DataFrame(rows, schema=MEASURE_SCHEMA)


def read_outcomes(paths: list[str], id_col: str, response_col: str, separator: str | None,
                  id_flag: str) -> tuple[pl.DataFrame, str]:
    """``id``, ``response`` (0/1, null where missing) of the outcome files, and their label."""
    inp = open_input(paths, separator)
    schema = inp.schema()
    for column, flag in ((id_col, id_flag), (response_col, "--response-col")):
        if column not in schema:
            raise InputError(f"{inp.label}: no column {column!r} ({flag}){did_you_mean(column, schema.names())}")
    response = pl.col(response_col)
    if schema[response_col] == pl.String:
        response = response.str.strip_chars()
    try:
        frame = inp.frame.select(pl.col(id_col).alias("id"),
                                 response.cast(pl.Float64, strict=True).alias("response")).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{inp.label}: column {response_col!r} must hold 0 or 1: {first_line(exc)}") from exc
    bad = frame.filter(pl.col("response").is_not_null() & ~pl.col("response").is_in([0.0, 1.0]))
    if bad.height:
        raise InputError(f"{inp.label}: column {response_col!r} holds {bad['response'][0]:g}; a response is 0 or 1")
    twice = frame.filter(pl.col("id").is_duplicated())
    if twice.height:
        raise InputError(f"{inp.label}: id {twice['id'][0]!r} has {twice.filter(pl.col('id') == twice['id'][0]).height}"
                         " outcomes; give one per customer")
    return frame.with_columns(pl.col("response").cast(pl.Int64)), inp.label


def join_outcomes(assignment: pl.DataFrame, key: str, outcomes: pl.DataFrame) -> pl.DataFrame:
    """The planned customers with an outcome: ``segment``, ``group``, ``response`` (ids compared as
    text when the plan's and the outcomes' types differ)."""
    plan_ids, ids = assignment[key], outcomes["id"]
    if plan_ids.dtype != ids.dtype:
        assignment = assignment.with_columns(pl.col(key).cast(pl.String))
        outcomes = outcomes.with_columns(pl.col("id").cast(pl.String))
    return assignment.join(outcomes.rename({"id": key}), on=key, how="inner")


def measure_campaign(plan_path: str | Path, outcomes: list[str], response_col: str | None, id_col: str | None = None,
                     cost_per_contact: float | None = None, revenue_per_response: float | None = None,
                     separator: str | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``segment measure``: the measure table and its summary (nothing is written)."""
    if response_col is None:
        raise InputError("--response-col is required: the 0/1 outcome column")
    if not outcomes:
        raise InputError("give one or more OUTCOMES files after the plan")
    assignment, plan = read_plan(plan_path)
    key = plan["id_col"]
    frame, label = read_outcomes(list(outcomes), id_col or key, response_col, separator,
                                 "--id-col" if id_col else "the plan's id column; give --id-col")
    joined = join_outcomes(assignment, key, frame)
    if joined.height == 0:
        raise InputError(f"{label}: none of the {frame.height:,} outcome ids is in the plan {plan_path} "
                         f"(id column {key!r})")
    cost = plan.get("cost_per_contact") if cost_per_contact is None else cost_per_contact
    revenue = plan.get("revenue_per_response") if revenue_per_response is None else revenue_per_response
    for flag, value in (("--cost-per-contact", cost), ("--revenue-per-response", revenue)):
        if value is not None:
            check_figure(flag, value)
    missing = joined["response"].null_count()
    table = measure_table(joined.drop_nulls("response"), plan, cost, revenue)
    summary = {"plan": str(plan_path), "run": plan["run"], "outcomes": label, "outcome_rows": frame.height,
               "matched": joined.height, "unknown_ids": frame.height - joined.height,
               "without_outcome": assignment.height - joined.height, "missing_response": missing,
               "lift": plan["lift"], "alpha": plan["alpha"], "power": plan["power"], "confidence": CONFIDENCE,
               "cost_per_contact": cost, "revenue_per_response": revenue}
    return table, summary


def measure_target(summary: dict[str, Any], out: str | Path | None, overwrite: bool) -> tuple[Path, bool]:
    """Where measure.parquet goes: ``--out``, else the plan's run directory (replaced there)."""
    if out is not None:
        return Path(out), overwrite
    run = Path(summary["run"])
    if not rundir.is_run_dir(run):
        raise InputError(f"the plan's run directory {run} is gone; give --out FILE.parquet")
    return run / rundir.MEASURE, True


def write_measure(table: pl.DataFrame, summary: dict[str, Any], out: str | Path | None, overwrite: bool) -> Path:
    """measure.parquet, with the summary in its metadata (``segment.measure``), atomically."""
    path, replace = measure_target(summary, out, overwrite)
    with atomic_file(path, replace) as tmp:
        write_parquet_meta(table, tmp, {"measure": json.dumps(summary, allow_nan=False)})
    return path
