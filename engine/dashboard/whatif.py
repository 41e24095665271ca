"""The campaign what-if: the impact table again with other campaign figures, and the figures of
contacting a chosen set of segments.

Everything comes from ``impact.parquet``'s per-segment customers and responses, through
``engine.insight.impact.recompute`` (the function behind ``segment impact``): nothing is
recomputed over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine.insight.impact import recompute

SUMS = ("customers", "responses", "cost", "revenue", "profit")


@dataclass(frozen=True)
class WhatIf:
    table: pl.DataFrame  # the impact table (segments in ROI order, unsegmented, everyone)
    summary: dict[str, Any]  # impact_summary: everyone, best_segment, best_cutoff
    contacted: dict[str, Any]  # the chosen segments' customers, responses, cost, revenue, profit, roi

    @property
    def best_cutoff(self) -> list[int]:
        """The segments of the best cut-off: the top ones by ROI whose cumulative profit is highest."""
        cut = self.summary.get("best_cutoff")
        if not cut:
            return []
        ranked = self.table.filter(pl.col("scope") == "segment").sort("rank")
        return ranked["segment"].head(cut["segments"]).to_list()


def what_if(run_dir: str | Path, cost_per_contact: float, revenue_per_response: float,
            contacted: list[int] | tuple[int, ...]) -> WhatIf:
    """The impact table and summary for these figures, and the figures of contacting ``contacted``.
    Bad figures (negative, not finite) give ``segment impact``'s one-line errors."""
    table, summary = recompute(run_dir, cost_per_contact, revenue_per_response)
    return WhatIf(table, summary, selection_figures(table, contacted))


def selection_figures(table: pl.DataFrame, contacted: list[int] | tuple[int, ...]) -> dict[str, Any]:
    """Customers, responses, cost, revenue, profit and ROI of contacting the ``contacted`` segments."""
    chosen = table.filter((pl.col("scope") == "segment") & pl.col("segment").is_in(list(contacted)))
    sums = {k: chosen[k].sum() for k in SUMS}
    sums["customers"], sums["responses"] = int(sums["customers"]), int(sums["responses"])
    sums["roi"] = sums["profit"] / sums["cost"] if sums["cost"] else None
    everyone = table.filter(pl.col("scope") == "everyone").row(0, named=True)
    sums["customer_share"] = sums["customers"] / everyone["customers"] if everyone["customers"] else None
    sums["response_share"] = sums["responses"] / everyone["responses"] if everyone["responses"] else None
    return sums


def shown_table(result: WhatIf, contacted: list[int] | tuple[int, ...]) -> pl.DataFrame:
    """The impact table as the dashboard shows it, with ``contacted`` and ``best_cutoff`` marks."""
    best = set(result.best_cutoff)
    return result.table.select(
        "rank", "segment", "name", "customers", "responses", "response_rate", "cost", "revenue", "profit", "roi",
        "cum_response_share", "cum_profit",
        pl.col("segment").is_in(list(contacted)).fill_null(False).alias("contacted"),
        pl.col("segment").is_in(list(best)).fill_null(False).alias("best_cutoff"),
    )
