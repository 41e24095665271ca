"""Offers per segment: what to offer each segment, from what it already buys more than the rest.

**Categories and channels** (a spec's ``[business.offers]``: spend or count columns by category
and by channel). For segment ``s`` and an item ``c`` of a group (the categories, or the channels):

    segment_share    = sum of c over s / sum of the group's columns over s
    population_share = the same over every segmented customer
    index            = segment_share / population_share   (the affinity index; 1 = like everyone)

The sums come from the insight's one pass (``engine.insight.onepass``, ``Profiles.offer_sums``);
the population's are the segments' added in segment order, so no figure reads the input again.

**Products** (transactions with ``--product-col``): the RFM query's ``products`` column lists each
customer's distinct products (``engine.duck.rfm``); the one pass counts the customers of each
(segment, product) block by block (``product_support``). A (customer, product) pair is one
purchase "slot"; for segment ``s`` and product ``p``:

    support          = customers of s who bought p
    segment_share    = support / the (customer, product) pairs of s
    population_share = buyers of p / every segmented customer's pairs
    index            = segment_share / population_share   (the lift)

Shares of the segment's own purchases, not of its customers: a segment of frequent buyers buys
more of everything, and would otherwise top every product's lift.

A product counts only with ``support >= min_support`` (``[business.offers] min_support``, default
``MIN_SUPPORT``), so a product one customer bought does not win on a lift of 1 / its share.

An item is over-indexed when its index is above 1; the ``top`` highest (ties: the larger value,
then the item's name) get a ``rank`` and make the segment's offer line, e.g. ``Wines (1.52x),
Meat (1.31x) via Catalog (1.45x)`` or ``top products: 85123A (3.10x), 22423 (2.42x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.features.business import Offers

COLUMNS = ("segment", "kind", "item", "value", "segment_share", "population_share", "index", "rank")
KINDS = {"categories": "category", "channels": "channel"}
SCHEMA = {"segment": pl.Int32, "kind": pl.String, "item": pl.String, "value": pl.Float64,
          "segment_share": pl.Float64, "population_share": pl.Float64, "index": pl.Float64, "rank": pl.Int32}


@dataclass
class SegmentOffers:
    """The long table of ``offers.parquet`` (``COLUMNS``) and one offer line per segment."""

    table: pl.DataFrame
    lines: list[str | None]


def category_affinity(sums: pl.DataFrame, k: int) -> pl.DataFrame:
    """The affinity index of every (segment, category or channel) from the per-segment sums
    (``segment``, ``group``, ``item``, ``sum``), for segments 0..k-1 (empty ones too)."""
    full = (pl.DataFrame({"segment": np.arange(k, dtype=np.int32)})
            .join(sums.select("group", "item").unique(maintain_order=True), how="cross")
            .join(sums, on=["segment", "group", "item"], how="left")
            .with_columns(pl.col("sum").fill_null(0.0)))
    order = {item: i for i, item in enumerate(sums.select("group", "item").unique(maintain_order=True)
                                              .select(pl.concat_str("group", "item", separator="\0")).to_series())}
    full = full.with_columns(pl.concat_str("group", "item", separator="\0").replace_strict(order).alias("@order"))
    full = full.sort("segment", "@order")
    segment_total = pl.col("sum").sum().over("segment", "group")
    population = pl.col("sum").sum().over("group", "item")  # the sort fixes the order of the sums
    population_total = pl.col("sum").sum().over("group")
    return full.with_columns(
        pl.col("group").replace_strict(KINDS).alias("kind"),
        pl.col("sum").alias("value"),
        pl.when(segment_total > 0).then(pl.col("sum") / segment_total).alias("segment_share"),
        pl.when(population_total > 0).then(population / population_total).alias("population_share"),
    ).with_columns(
        pl.when(pl.col("population_share") > 0).then(pl.col("segment_share") / pl.col("population_share"))
        .alias("index")
    ).select("segment", "kind", "item", "value", "segment_share", "population_share", "index", "@order")


def product_support(products: pl.Series, labels: np.ndarray) -> pl.DataFrame:
    """Per (segment, product): the customers who bought it (``support``), of one block of customers;
    ``products`` is a list column (one list per customer), ``labels`` their segments (-1: not
    segmented, left out). Counts: the blocks' add up to the whole input's in any order."""
    frame = pl.DataFrame({"segment": pl.Series(labels, dtype=pl.Int32), "item": products.cast(pl.List(pl.String))})
    frame = frame.filter(pl.col("segment") >= 0)
    return (frame.with_row_index("@customer").explode("item").drop_nulls("item").unique(["@customer", "item"])
            .group_by("segment", "item").agg(pl.len().cast(pl.Int64).alias("support")))


def total_support(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The blocks' ``product_support`` added up, sorted by segment and product."""
    if not parts:
        return pl.DataFrame(schema={"segment": pl.Int32, "item": pl.String, "support": pl.Int64})
    return pl.concat(parts).group_by("segment", "item").agg(pl.col("support").sum()).sort("segment", "item")


def product_lift(bought: pl.DataFrame, k: int, min_support: int) -> pl.DataFrame:
    """The lift of every (segment, product) bought by at least ``min_support`` of the segment's
    customers, from the purchase counts ``bought`` (``total_support``)."""
    pairs = bought.group_by("segment").agg(pl.col("support").sum().alias("pairs"))
    buyers = bought.group_by("item").agg(pl.col("support").sum().alias("buyers"))
    total = int(bought["support"].sum())
    table = (bought.filter(pl.col("support") >= min_support).join(pairs, on="segment").join(buyers, on="item")
             .with_columns(pl.lit("product").alias("kind"), pl.col("support").cast(pl.Float64).alias("value"),
                           (pl.col("support") / pl.col("pairs")).alias("segment_share"),
                           (pl.col("buyers") / total).alias("population_share"))
             .with_columns((pl.col("segment_share") / pl.col("population_share")).alias("index"),
                           pl.lit(0).alias("@order")))
    return table.filter(pl.col("segment") < k).select("segment", "kind", "item", "value", "segment_share",
                                                      "population_share", "index", "@order")


def rank_items(table: pl.DataFrame, top: int) -> pl.DataFrame:
    """``rank`` 1..top of the over-indexed items of each (segment, kind): highest index first,
    then the larger value, then the declared order and the item's name."""
    ordered = table.sort(["segment", "kind", "index", "value", "@order", "item"],
                         descending=[False, False, True, True, False, False], nulls_last=True)
    position = pl.int_range(1, pl.len() + 1).over("segment", "kind", pl.col("index") > 1)
    ranked = ordered.with_columns(pl.when((pl.col("index") > 1) & (position <= top)).then(position)
                                  .cast(pl.Int32).alias("rank"))
    return ranked.select(COLUMNS)


def offer_line(rows: pl.DataFrame) -> str | None:
    """A segment's offer: its ranked categories, then ``via`` its channels, then its products."""
    def items(kind: str) -> str:
        chosen = rows.filter((pl.col("kind") == kind) & pl.col("rank").is_not_null()).sort("rank")
        return ", ".join(f"{r['item']} ({r['index']:.2f}x)" for r in chosen.iter_rows(named=True))

    categories, channels, products = items("category"), items("channel"), items("product")
    parts = [categories] if categories else []
    if channels:
        parts.append(f"via {channels}")
    if products:
        parts.append(f"top products: {products}")
    return " ".join(parts) if parts else None


def segment_offers(sums: pl.DataFrame | None, support: pl.DataFrame | None, k: int,
                   offers: Offers) -> SegmentOffers | None:
    """The offers of every segment, from the per-segment sums of ``[business.offers]`` and the
    product purchase counts (``total_support``), or None when the run declares nothing to offer."""
    parts = []
    if sums is not None:
        parts.append(category_affinity(sums, k))
    if support is not None:
        parts.append(product_lift(support, k, offers.min_support))
    if not parts:
        return None
    table = rank_items(pl.concat(parts), offers.top).cast(SCHEMA)
    kinds = {"category": 0, "channel": 1, "product": 2}
    table = table.sort(pl.col("segment"), pl.col("kind").replace_strict(kinds), pl.col("rank"), nulls_last=True,
                       maintain_order=True)
    lines = [offer_line(table.filter(pl.col("segment") == j)) for j in range(k)]
    return SegmentOffers(table, lines)


def with_offer(profiles: pl.DataFrame, lines: list[str | None]) -> pl.DataFrame:
    """The profile table with the ``offer`` column after ``action``."""
    table = profiles.with_columns(pl.Series("offer", lines, pl.String))
    at = table.columns.index("action") + 1
    return table.select([*profiles.columns[:at], "offer", *profiles.columns[at:]])
