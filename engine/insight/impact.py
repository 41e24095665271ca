"""Business impact: what contacting each segment would cost and earn, and the cumulative gains
of contacting segments in order of expected ROI against a mass campaign to everyone.

For a segment of ``customers`` rows with ``responses`` responders (the declared response column,
e.g. the last campaign's ``Response``), contacting it alone is expected to give:

    cost    = customers x cost_per_contact
    revenue = responses x revenue_per_response
    profit  = revenue - cost
    roi     = profit / cost

Rows dropped for missing values have no segment; they form an ``unsegmented`` row, contacted
last in the gains order, so that the last cumulative figures equal the mass campaign's
(``everyone``: every input row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import InputError
from engine.features.business import check_figure
from engine.outputs.rundir import read_run
from engine.outputs.write import atomic_file, write_parquet_meta

COLUMNS = ("scope", "segment", "name", "action", "customers", "responses", "response_rate", "cost", "revenue",
           "profit", "roi", "rank", "cum_customers", "cum_customer_share", "cum_responses", "cum_response_share",
           "cum_cost", "cum_revenue", "cum_profit", "cum_roi")


def impact_table(profiles: pl.DataFrame, overall: dict[str, Any], cost_per_contact: float,
                 revenue_per_response: float) -> pl.DataFrame:
    """The targeting table: one row per segment in order of expected ROI, then ``unsegmented``
    (when rows were dropped), then ``everyone``, with cumulative figures down the order."""
    segs = profiles.select(
        pl.lit("segment").alias("scope"), pl.col("segment").cast(pl.Int32), "name", "action",
        pl.col("size").cast(pl.Int64).alias("customers"), pl.col("responses").cast(pl.Int64),
    )
    rest = {"customers": overall["rows"] - int(segs["customers"].sum()),
            "responses": overall["responses"] - int(segs["responses"].sum())}
    rows = [segs]
    if rest["customers"]:
        rows.append(pl.DataFrame({"scope": ["unsegmented"], "segment": [None], "name": ["Unsegmented (missing values)"],
                                  "action": [None], **{k: [v] for k, v in rest.items()}}, schema=segs.schema))
    targeted = figures(pl.concat(rows), cost_per_contact, revenue_per_response)
    targeted = targeted.sort([pl.col("scope") != "segment", pl.col("roi").is_null(), "roi", "response_rate", "segment"],
                             descending=[False, False, True, True, False], nulls_last=True)
    total_customers, total_responses = overall["rows"], overall["responses"]
    targeted = targeted.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank")).with_columns(
        pl.col("customers").cum_sum().alias("cum_customers"),
        pl.col("responses").cum_sum().alias("cum_responses"),
        pl.col("cost").cum_sum().alias("cum_cost"),
        pl.col("revenue").cum_sum().alias("cum_revenue"),
    ).with_columns(
        (pl.col("cum_customers") / total_customers).alias("cum_customer_share"),
        (pl.col("cum_responses") / total_responses if total_responses else pl.lit(None, pl.Float64)).alias("cum_response_share"),
        (pl.col("cum_revenue") - pl.col("cum_cost")).alias("cum_profit"),
    ).with_columns(roi("cum_profit", "cum_cost").alias("cum_roi"))
    everyone = figures(pl.DataFrame({"scope": ["everyone"], "segment": [None], "name": ["Everyone (mass campaign)"],
                                     "action": [None], "customers": [total_customers], "responses": [total_responses]},
                                    schema=segs.schema), cost_per_contact, revenue_per_response)
    everyone = everyone.with_columns(
        pl.lit(None, pl.Int32).alias("rank"), pl.col("customers").alias("cum_customers"),
        pl.lit(1.0).alias("cum_customer_share"), pl.col("responses").alias("cum_responses"),
        pl.lit(1.0 if total_responses else None, pl.Float64).alias("cum_response_share"),
        pl.col("cost").alias("cum_cost"), pl.col("revenue").alias("cum_revenue"), pl.col("profit").alias("cum_profit"),
        pl.col("roi").alias("cum_roi"))
    return pl.concat([targeted.select(COLUMNS), everyone.select(COLUMNS)])


def transaction_figures(overall: dict[str, Any], info: dict[str, Any] | None) -> list[str]:
    """The campaign figures of a run on transactions with a response window, where the spec and the
    flags give none: the revenue per response measured in the window (``input.rfm``), and a cost
    per contact of 0, said in a warning (ROI is then undefined). ``overall`` is updated in place."""
    rfm = (info or {}).get("rfm") or {}
    if "response_window" not in rfm or rfm.get("revenue_per_response") is None:
        return []
    if overall.get("revenue_per_response") is None:
        overall["revenue_per_response"] = rfm["revenue_per_response"]
    if overall.get("cost_per_contact") is not None:
        return []
    overall["cost_per_contact"] = 0.0
    return ["cost per contact not declared: 0 used, so ROI is undefined and segments rank by response rate; "
            "give --cost-per-contact (segment impact DIR --cost-per-contact X recomputes the table)"]


def figures(frame: pl.DataFrame, cost_per_contact: float, revenue_per_response: float) -> pl.DataFrame:
    return frame.with_columns(
        (pl.col("responses") / pl.col("customers")).alias("response_rate"),
        (pl.col("customers") * float(cost_per_contact)).alias("cost"),
        (pl.col("responses") * float(revenue_per_response)).alias("revenue"),
    ).with_columns((pl.col("revenue") - pl.col("cost")).alias("profit")).with_columns(roi("profit", "cost").alias("roi"))


def roi(profit: str, cost: str) -> pl.Expr:
    """profit / cost; null where nothing is spent."""
    return pl.when(pl.col(cost) > 0).then(pl.col(profit) / pl.col(cost))


def impact_summary(table: pl.DataFrame, cost_per_contact: float, revenue_per_response: float) -> dict[str, Any]:
    """The figures for metrics.json: the mass campaign, the best segment and the best cut-off."""
    everyone = table.filter(pl.col("scope") == "everyone").row(0, named=True)
    segments = table.filter(pl.col("scope") == "segment")
    best = segments.row(0, named=True) if segments.height else None
    cut = segments.sort("cum_profit", descending=True, nulls_last=True).row(0, named=True) if segments.height else None
    keep = ("customers", "responses", "cost", "revenue", "profit", "roi")
    return {
        "cost_per_contact": cost_per_contact,
        "revenue_per_response": revenue_per_response,
        "everyone": {k: everyone[k] for k in keep},
        "best_segment": None if best is None else {"segment": best["segment"], "name": best["name"],
                                                   **{k: best[k] for k in keep}},
        "best_cutoff": None if cut is None else {"segments": cut["rank"], "customers": cut["cum_customers"],
                                                 "profit": cut["cum_profit"], "roi": cut["cum_roi"],
                                                 "response_share": cut["cum_response_share"]},
    }


def recompute(run_dir: str | Path, cost_per_contact: float | None, revenue_per_response: float | None
              ) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The impact table of a run directory again, with other campaign figures (the run's where
    one is not given)."""
    run = read_run(run_dir)
    if run.impact is None:
        raise InputError(f"{run_dir}: the run has no impact.parquet (declare a response column in the spec's [business])")
    recorded = (run.metrics.get("insight") or {}).get("impact") or {}
    cost = recorded.get("cost_per_contact") if cost_per_contact is None else cost_per_contact
    revenue = recorded.get("revenue_per_response") if revenue_per_response is None else revenue_per_response
    check_figure("--cost-per-contact", cost)
    check_figure("--revenue-per-response", revenue)
    base = run.impact
    profiles = base.filter(pl.col("scope") == "segment").sort("segment").select(
        "segment", "name", "action", pl.col("customers").alias("size"), "responses")
    everyone = base.filter(pl.col("scope") == "everyone").row(0, named=True)
    overall = {"rows": everyone["customers"], "responses": everyone["responses"]}
    table = impact_table(profiles, overall, cost, revenue)
    return table, impact_summary(table, cost, revenue)


def write_impact(table: pl.DataFrame, out: str | Path, overwrite: bool) -> None:
    """``segment impact --out``: the table as Parquet, written beside and renamed into place."""
    with atomic_file(Path(out), overwrite) as tmp:
        write_parquet_meta(table, tmp, None)
