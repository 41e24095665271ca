"""Per-segment profiles, computed with Polars aggregates over the input joined with the labels.

The run's input is read again lazily (only the columns the spec needs), the spec's feature and
business expressions are evaluated as in ``engine.features.build``, and the segment labels are added as
a column (null for rows dropped for missing values, which are left out of every per-segment
figure). One group-by pass gives the per-segment figures; the population's means and deviations
are combined from them in segment order (a parallel reduction over the whole frame would round
differently on another thread count, and profiles.parquet must not depend on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import numpy as np
import polars as pl

from engine.features.business import Business
from engine.errors import InputError
from engine.features.build import cleaned_frame, one_hot_exprs, parse_expr
from engine.fit.scores import sample_indices
from engine.errors import first_line
from engine.input.files import Input
from engine.features.spec import Feature, FeatureSpec

SEGMENT = "@segment"
TOP_SHARES = (10, 20, 25)  # revenue concentration: share of revenue from the top p% of customers
#: Measures summarised by mean, median and z-score (revenue also by sum, share and index).
SUMMARISED = ("revenue", "recency", "frequency", "deals", "tenure")
#: Medians and revenue concentration are exact up to this many segmented rows...
EXACT_ROWS = 2_000_000
#: ...and above it estimated from a uniform sample of this many input rows (a median's standard
#: error is then about 1.25 sigma / sqrt(rows of the segment in the sample)).
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


def profile_frame(inp: Input, spec: FeatureSpec, levels: dict[str, tuple[str, ...]],
                  segments: pl.Series) -> pl.LazyFrame:
    """Features in original units (NaN and inf as null), one-hot levels, business measures and
    campaign figure columns, with ``@segment``: lazy, nothing is read yet."""
    schema = inp.schema()
    where = inp.label
    numeric = set(spec.numeric)
    business = spec.business
    check_measures(spec, where)
    exprs = [parse_expr(f, schema, numeric, where) for f in spec.features]
    exprs += [parse_expr(Feature(f"business.{m}", e), schema, numeric, where).alias(measure_name(m))
              for m, e in business.measures().items()]
    figures = []
    for key in ("cost_per_contact", "revenue_per_response"):
        column = getattr(business, key)
        if isinstance(column, str):
            figures.append(parse_expr(Feature(f"business.{key}", column), schema, numeric, where)
                           .alias(measure_name(key)))
    figures += [parse_expr(Feature(f"business.offers.{g}.{label}", e), schema, numeric, where).alias(offer_name(g, label))
                for g, label, e in business.offers.items()]
    finite = [pl.when(e.is_finite()).then(e).alias(e.meta.output_name()) for e in exprs + figures]
    cats = [pl.col(c.column).cast(pl.String) for c in spec.categorical]
    frame = cleaned_frame(inp.frame, schema, numeric, exprs + figures).select([*finite, *cats])
    hot = one_hot_exprs(levels)
    return frame.with_columns(hot).with_columns(segments.alias(SEGMENT))


COLUMNS_PER_QUERY = 4


def batched(groups: list[list[pl.Expr]]) -> list[list[pl.Expr]]:
    """Aggregate lists joined so that each query reads about ``COLUMNS_PER_QUERY`` source columns."""
    out: list[list[pl.Expr]] = []
    for i in range(0, len(groups), COLUMNS_PER_QUERY):
        out.append([e for g in groups[i:i + COLUMNS_PER_QUERY] for e in g])
    return out


def concentration(col: str, pct: int) -> pl.Expr:
    """Share of ``col``'s sum held by the top ``pct``% of rows (ceil(n * pct / 100) rows, at least one)."""
    values = pl.col(col).drop_nulls()
    top = (values.len() * pct + 99) // 100
    ranked = values.sort(descending=True).cum_sum()
    return (ranked.gather(pl.max_horizontal(top, 1) - 1).first() / values.sum()).alias(f"revenue_top{pct}_share")


@dataclass
class Aggregates:
    """The profile's aggregate expressions, by the rows they run over: ``exact`` and ``heavy``
    (medians, concentration) per segment, ``pop`` and ``pop_heavy`` over every segmented row,
    ``everyone`` over every input row. Each of ``exact`` and ``heavy`` is a list of groups, one
    per source column."""

    exact: list[list[pl.Expr]]
    heavy: list[list[pl.Expr]]
    pop: list[pl.Expr]
    pop_heavy: list[pl.Expr]
    everyone: list[pl.Expr]


def aggregates(cols: list[str], out_names: list[str], measures: dict[str, str], business: Business) -> Aggregates:
    """Per column: mean, variance, count and median; revenue sums and concentration, responses and
    the campaign figures when the spec declares them."""
    exact = [[pl.len().cast(pl.Int64).alias("size")]]
    heavy = []
    for c, name in zip(cols, out_names):
        exact.append([pl.col(c).mean().alias(f"{name}_mean"), pl.col(c).var(ddof=0).alias(f"{name}\0var"),
                      pl.col(c).count().alias(f"{name}\0count")])
        heavy.append([pl.col(c).median().alias(f"{name}_median")])
    pop = [pl.len().alias("rows")]
    pop_heavy = []
    rev, resp = measure_name("revenue"), measure_name("response")
    if "revenue" in measures:
        exact.append([pl.col(rev).sum().alias("revenue_sum")])
        heavy.append([concentration(rev, p) for p in TOP_SHARES])
        pop_heavy += [concentration(rev, p) for p in TOP_SHARES]
    if "response" in measures:
        exact.append([pl.col(resp).sum().alias("responses"), pl.col(resp).mean().alias("response_rate"),
                      pl.col(resp).count().alias("response\0count")])
    for g, label, _ in business.offers.items():  # offers: per-segment sums of each category / channel column
        exact.append([pl.col(offer_name(g, label)).sum().alias(f"{offer_name(g, label)}\0sum")])
    everyone = [pl.len().alias("rows")]
    if "response" in measures:
        everyone += [pl.col(resp).fill_null(0).sum().alias("responses"), pl.col(resp).null_count().alias("response_missing"),
                     ((pl.col(resp) != 0) & (pl.col(resp) != 1)).sum().alias("response_invalid")]
    for key in ("cost_per_contact", "revenue_per_response"):
        if isinstance(getattr(business, key), str):
            c = pl.col(measure_name(key))
            everyone += [c.mean().alias(key), c.min().alias(f"{key}_min"), c.max().alias(f"{key}_max")]
    return Aggregates(exact, heavy, pop, pop_heavy, everyone)


def median_rows(frame: pl.LazyFrame, seg: pl.LazyFrame, segments: pl.Series, seed: int) -> tuple[pl.LazyFrame, int]:
    """The segmented rows that medians and revenue concentration sort, and how many rows are
    segmented: all of them up to ``EXACT_ROWS``, above it a uniform sample of ``SAMPLE_ROWS``
    input rows drawn with the run's seed (means, sums and counts stay exact)."""
    n_seg = len(segments) - segments.null_count()
    if n_seg <= EXACT_ROWS:
        return seg, n_seg
    pick = np.zeros(len(segments), dtype=bool)
    pick[sample_indices(len(segments), SAMPLE_ROWS, np.random.default_rng(seed))] = True
    return frame.filter(pl.Series(pick)).filter(pl.col(SEGMENT).is_not_null()), n_seg


def run_aggregates(agg: Aggregates, frame: pl.LazyFrame, seg: pl.LazyFrame, sampled: pl.LazyFrame,
                   where: str) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """The per-segment figures, the segmented population's and every input row's.

    Aggregates run in batches of a few source columns: each query reads only its own columns, so
    memory stays at a few columns whatever the width (all at once, Polars held 3.3 GB for
    10,000,000 x 16), and the in-memory engine sums in a fixed order (the streaming engine's last
    bits varied with the thread count)."""
    exact, heavy, pop, pop_heavy = agg.exact, agg.heavy, agg.pop, agg.pop_heavy
    if sampled is seg:  # no sample: a column's medians go with its means, one read of it
        exact = [e + h for e, h in zip_longest(exact, [[], *heavy], fillvalue=[])]
        heavy = []
        pop = pop + pop_heavy
        pop_heavy = []
    exact, heavy = batched(exact), batched(heavy)
    queries = ([seg.group_by(SEGMENT).agg(g) for g in exact] + [sampled.group_by(SEGMENT).agg(h) for h in heavy]
               + [seg.select(pop), frame.select(agg.everyone)] + ([sampled.select(pop_heavy)] if pop_heavy else []))
    try:
        results = [q.collect(engine="in-memory") for q in queries]
    except pl.exceptions.InvalidOperationError as exc:
        raise InputError(f"{where}: a column listed in numeric holds text that is not a number: {first_line(exc)}") from exc
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {where}: {first_line(exc)}") from exc
    parts, rest = results[:len(exact) + len(heavy)], results[len(exact) + len(heavy):]
    grouped = parts[0]
    for part in parts[1:]:
        grouped = grouped.join(part, on=SEGMENT, how="left")
    population, total, *pop_sampled = rest
    if pop_sampled:
        population = population.hstack(pop_sampled[0])
    return grouped, population.row(0, named=True), total.row(0, named=True)


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


def overall_figures(total: dict[str, Any], population: dict[str, Any], n_seg: int, measures: dict[str, str],
                    business: Business) -> dict[str, Any]:
    """The population's figures for metrics.json: rows, the median sample, revenue, responses and
    the campaign figures."""
    overall = {"rows": total["rows"], "rows_segmented": population["rows"],
               "median_sample": min(n_seg, SAMPLE_ROWS) if n_seg > EXACT_ROWS else None}
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


def profile_table(inp: Input, spec: FeatureSpec, levels: dict[str, tuple[str, ...]], segments: pl.Series,
                  k: int, seed: int) -> Profiles:
    """One row per segment: ``segment``, ``name``, ``action``, ``size``, ``share``; per feature
    ``{f}_mean``, ``{f}_median`` (original units: before clipping, log1p and scaling; one-hot
    columns give the share of the level) and ``{f}_z`` (the segment mean's z-score against the
    population); then the business columns declared in the spec (see README, Output schemas).

    ``segments`` holds one label per input row, null for rows dropped for missing values; ``seed``
    (the run's) draws the median sample above ``EXACT_ROWS`` segmented rows."""
    business = spec.business
    features = [f.name for f in spec.features] + [e.meta.output_name() for e in one_hot_exprs(levels)]
    measures = business.measures()
    summarised = [m for m in SUMMARISED if m in measures and m not in features]
    cols = features + [measure_name(m) for m in summarised]
    out_names = features + summarised
    frame = profile_frame(inp, spec, levels, segments)
    seg = frame.filter(pl.col(SEGMENT).is_not_null())
    sampled, n_seg = median_rows(frame, seg, segments, seed)
    agg = aggregates(cols, out_names, measures, business)
    grouped, population, total = run_aggregates(agg, frame, seg, sampled, inp.label)
    population.update(combine(grouped, out_names, measures))
    warnings = check_business(business, total, inp.label)
    table = segment_table(grouped, population, out_names, measures, k)
    return Profiles(table, overall_figures(total, population, n_seg, measures, business), warnings,
                    offer_sums(grouped, business))


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
