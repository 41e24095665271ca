"""Per-segment profiles: the profile's columns as expressions over the raw input, and the k-row
arithmetic that turns per-segment figures into the profile table.

The figures themselves are accumulated block by block in the run's final pass
(``engine.insight.onepass``): the spec's feature and business expressions are evaluated on each
block as in ``engine.features.build``, then folded per segment in fixed global chunks. The
population's means and deviations are combined from the segments' in segment order (a reduction
over all rows would round differently in another block layout or thread count, and
profiles.parquet must not depend on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.features.build import cleaned_frame, one_hot_exprs, parse_expr
from engine.features.business import Business
from engine.features.spec import Feature, FeatureSpec
from engine.input.files import Input

SEGMENT = "@segment"
TOP_SHARES = (10, 20, 25)  # revenue concentration: share of revenue from the top p% of customers
#: Measures summarised by mean, median and z-score (revenue also by sum, share and index).
SUMMARISED = ("revenue", "recency", "frequency", "deals", "tenure")
#: Medians, revenue concentration and the EDA summary come from a bottom-k hash sample of this many
#: input rows (``kernels.hashsample``; every row when there are no more): exact up to this many
#: input rows, above it estimated (a median's standard error is then about 1.25 sigma /
#: sqrt(rows of the segment in the sample)). Means, sums and counts use every row.
SAMPLE_ROWS = 1_000_000


@dataclass
class Profiles:
    """The profile table and the population's figures that go with it."""

    table: pl.DataFrame
    overall: dict[str, Any]  # population (segmented rows) and everyone (all input rows)
    warnings: list[str]
    offer_sums: pl.DataFrame | None = None  # [business.offers]: segment, group, item, sum (engine.insight.offers)


def measure_name(m: str) -> str:
    return f"@{m}"


def offer_name(group: str, label: str) -> str:
    """The column of a ``[business.offers]`` item in the profile frame."""
    return f"@offer\0{group}\0{label}"


def check_measures(spec: FeatureSpec, where: str) -> None:
    """A feature may share a measure's name only when it is the same expression (their columns
    would collide in profiles.parquet)."""
    exprs = {f.name: f.expr for f in spec.features}
    for m, expr in spec.business.measures().items():
        if m in exprs and " ".join(exprs[m].split()) != " ".join(expr.split()):
            raise InputError(f"{where}: feature {m!r} and business {m} are different expressions; "
                             f"rename the feature or make them the same")


@dataclass
class ProfileQuery:
    """The profile's columns as expressions over the raw input: features in original units,
    business measures, campaign figure and ``[business.offers]`` columns (float64, NaN and inf as
    null), the categorical columns as text and their one-hot levels."""

    schema: pl.Schema
    numeric: set[str]  # the spec's text columns to parse as numbers, of those the expressions read
    values: list[pl.Expr]
    cats: list[str]
    levels: dict[str, tuple[str, ...]]

    def columns(self) -> list[str]:
        """The input columns the expressions read, in schema order."""
        roots = {r for e in self.values for r in e.meta.root_names()} | set(self.cats)
        return [c for c in self.schema.names() if c in roots]

    def apply(self, frame: pl.LazyFrame, skip: int = 0) -> pl.LazyFrame:
        """The profile's columns of ``frame`` (the raw input's rows, or some of them): row by row;
        with ``skip``, all but the first ``skip`` values (the features: a run that read them has them)."""
        values = self.values[skip:]
        finite = [pl.when(e.is_finite()).then(e).alias(e.meta.output_name()) for e in values]
        cats = [pl.col(c).cast(pl.String) for c in self.cats]
        # Nothing left to select keeps the rows all the same (columns added later need them).
        chosen = [*finite, *cats] or [pl.repeat(None, pl.len()).alias("@none")]
        cleaned = cleaned_frame(frame, self.schema, self.numeric, values).select(chosen)
        return cleaned.with_columns(one_hot_exprs(self.levels))


def profile_query(schema: pl.Schema, spec: FeatureSpec, levels: dict[str, tuple[str, ...]], where: str) -> ProfileQuery:
    """The spec's profile expressions, checked against the input's ``schema``."""
    numeric = set(spec.numeric)
    business = spec.business
    check_measures(spec, where)
    exprs = [parse_expr(f, schema, numeric, where) for f in spec.features]
    exprs += [parse_expr(Feature(f"business.{m}", e), schema, numeric, where).alias(measure_name(m))
              for m, e in business.measures().items()]
    for key in ("cost_per_contact", "revenue_per_response"):
        column = getattr(business, key)
        if isinstance(column, str):
            exprs.append(parse_expr(Feature(f"business.{key}", column), schema, numeric, where).alias(measure_name(key)))
    exprs += [parse_expr(Feature(f"business.offers.{g}.{label}", e), schema, numeric, where).alias(offer_name(g, label))
              for g, label, e in business.offers.items()]
    roots = {r for e in exprs for r in e.meta.root_names()}
    return ProfileQuery(schema, numeric & roots, exprs, [c.column for c in spec.categorical], levels)


def profile_frame(inp: Input, spec: FeatureSpec, levels: dict[str, tuple[str, ...]],
                  segments: pl.Series) -> pl.LazyFrame:
    """The profile's columns of the whole input with ``@segment``: lazy, nothing is read yet."""
    query = profile_query(inp.schema(), spec, levels, inp.label)
    return query.apply(inp.frame).with_columns(segments.alias(SEGMENT))


def concentration(col: str, pct: int) -> pl.Expr:
    """Share of ``col``'s sum held by the top ``pct``% of rows (ceil(n * pct / 100) rows, at least one)."""
    values = pl.col(col).drop_nulls()
    top = (values.len() * pct + 99) // 100
    ranked = values.sort(descending=True).cum_sum()
    return (ranked.gather(pl.max_horizontal(top, 1) - 1).first() / values.sum()).alias(f"revenue_top{pct}_share")


def segment_table(grouped: pl.DataFrame, population: dict[str, Any], out_names: list[str], measures: dict[str, str],
                  k: int) -> pl.DataFrame:
    """One row per segment 0..k-1 (empty ones too), with shares, z-scores, revenue shares and
    indices and response lifts against the population, columns in the documented order."""
    ids = pl.DataFrame({SEGMENT: np.arange(k, dtype=np.int32)})
    table = ids.join(grouped, on=SEGMENT, how="left").sort(SEGMENT).rename({SEGMENT: "segment"})
    table = table.with_columns(pl.col("size").fill_null(0))
    derived = [(pl.col("size") / pl.col("size").sum()).alias("share")]
    for name in out_names:
        std = population[f"{name}_std"]
        z = (pl.col(f"{name}_mean") - population[f"{name}_mean"]) / std if std else pl.lit(None, pl.Float64)
        derived.append(z.alias(f"{name}_z"))
    if "revenue" in measures:
        total_rev, mean_rev = population["revenue_sum"], population["revenue_mean"]
        derived += [(pl.col("revenue_sum") / total_rev if total_rev else pl.lit(None, pl.Float64)).alias("revenue_share"),
                    (pl.col("revenue_mean") / mean_rev if mean_rev else pl.lit(None, pl.Float64)).alias("revenue_index")]
    if "response" in measures:
        rate = population["response_rate"]
        derived.append((pl.col("response_rate") / rate if rate else pl.lit(None, pl.Float64)).alias("response_lift"))
    table = table.with_columns(derived)
    order = ["segment", "size", "share"]
    order += [f"{n}_{s}" for n in out_names for s in ("mean", "median", "z")]
    if "revenue" in measures:
        order += ["revenue_sum", "revenue_share", "revenue_index", *(f"revenue_top{p}_share" for p in TOP_SHARES)]
    if "response" in measures:
        order += ["responses", "response_rate", "response_lift"]
    return table.select(order).with_columns(pl.col("responses").fill_null(0).cast(pl.Int64) if "response" in measures else [])


def overall_figures(total: dict[str, Any], population: dict[str, Any], median_sample: int | None,
                    measures: dict[str, str], business: Business) -> dict[str, Any]:
    """The population's figures for metrics.json: rows, the median sample (None: every row),
    revenue, responses and the campaign figures."""
    overall = {"rows": total["rows"], "rows_segmented": population["rows"], "median_sample": median_sample}
    if "revenue" in measures:
        overall["revenue_sum"] = population["revenue_sum"]
        overall["revenue_concentration"] = {f"top{p}": population[f"revenue_top{p}_share"] for p in TOP_SHARES}
    if "response" in measures:
        overall["responses"] = int(total["responses"])
        overall["responses_segmented"] = int(population["responses"] or 0)
        overall["response_rate"] = population["response_rate"]
    for key in ("cost_per_contact", "revenue_per_response"):
        value = getattr(business, key)
        overall[key] = total.get(key) if isinstance(value, str) else value
    return overall


def offer_sums(grouped: pl.DataFrame, business: Business) -> pl.DataFrame | None:
    """The per-segment sums of the ``[business.offers]`` columns, long: segment, group, item, sum."""
    items = business.offers.items()
    if not items:
        return None
    g = grouped.sort(SEGMENT)
    return pl.DataFrame({
        "segment": np.concatenate([g[SEGMENT].to_numpy()] * len(items)).astype(np.int32),
        "group": [grp for grp, _, _ in items for _ in range(g.height)],
        "item": [label for _, label, _ in items for _ in range(g.height)],
        "sum": np.concatenate([g[f"{offer_name(grp, label)}\0sum"].fill_null(0).to_numpy().astype(np.float64)
                               for grp, label, _ in items]),
    })


def combine(grouped: pl.DataFrame, names: list[str], measures: dict[str, str]) -> dict[str, Any]:
    """The population's mean and deviation of every column, its revenue sum and response rate,
    from the per-segment figures, in segment order: the total variance is the mean of the
    within-segment variances plus the variance of the segment means, weighted by counts."""
    g = grouped.sort(SEGMENT)
    out: dict[str, Any] = {}
    for name in names:
        n = g[f"{name}\0count"].to_numpy().astype(np.float64)
        total = n.sum()
        if not total:
            out[f"{name}_mean"] = out[f"{name}_std"] = None
            continue
        keep = n > 0
        n, mean, var = n[keep], g[f"{name}_mean"].to_numpy()[keep], g[f"{name}\0var"].to_numpy()[keep]
        grand = float(np.dot(n, mean) / total)
        out[f"{name}_mean"] = grand
        out[f"{name}_std"] = float(np.sqrt(np.dot(n, var + (mean - grand) ** 2) / total))
    if "revenue" in measures:
        out["revenue_sum"] = float(np.sum(g["revenue_sum"].fill_null(0).to_numpy()))  # revenue_mean: above
    if "response" in measures:
        out["responses"] = float(np.sum(g["responses"].fill_null(0).to_numpy()))
        answered = g["response\0count"].to_numpy().sum()
        out["response_rate"] = out["responses"] / answered if answered else None
    return out


def check_business(business: Business, total: dict[str, Any], where: str) -> list[str]:
    """The response column holds 0/1; figure columns have values (a warning when they vary)."""
    warnings = []
    if total.get("response_invalid"):
        raise InputError(f"{where}: business response {business.response!r} has {total['response_invalid']:,} "
                         "values other than 0 and 1")
    if total.get("response_missing"):
        warnings.append(f"business response {business.response!r} is missing in {total['response_missing']:,} rows "
                        "(counted as no response)")
    for key in ("cost_per_contact", "revenue_per_response"):
        column = getattr(business, key)
        if not isinstance(column, str):
            continue
        if total[key] is None:
            raise InputError(f"{where}: business {key} column {column!r} has no values")
        if total[f"{key}_min"] != total[f"{key}_max"]:
            warnings.append(f"business {key} column {column!r} varies ({total[f'{key}_min']:g} to "
                            f"{total[f'{key}_max']:g}); its mean {total[key]:g} is used")
    return warnings
