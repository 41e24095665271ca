"""Segment names and recommended actions, from the profile table.

**Names.** Each segment is named after its most distinctive features: those whose segment mean
lies furthest from the population's, in z-scores (at least ``NAME_MIN_Z`` away), at most
``NAME_WORDS`` of them, worded "High income" / "Low income" or as the spec's
``[business.wording]`` says; a one-hot column counts with its most over-represented level
("Mostly female · Low income"). Where two segments would get the same name, both take more
features until the names differ (then the segment number). Names depend only on the profile
table, so the same seed gives the same names; ``[business.names]`` overrides them.

**Actions.** The rules of ``[[business.actions]]`` (or ``engine.features.business.DEFAULT_ACTIONS``) are
SQL conditions over the profile table's columns; the first that holds gives a segment's action.
A default rule whose columns are missing (its measure is not declared) is skipped; a user rule
that names a missing column is an error.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.errors import InputError, did_you_mean, first_line
from engine.features.business import Business
from engine.fit.scores import sample_indices
from engine.insight import describe as eda
from engine.insight.impact import impact_summary, impact_table, transaction_figures
from engine.insight.offers import segment_offers, with_offer
from engine.insight.onepass import InsightPass, feed_input, row_labels
from engine.outputs import rundir
from engine.outputs.rundir import RunWriter

NAME_WORDS = 3
NAME_MIN_Z = 0.25
SEPARATOR = " · "


def segment_names(table: pl.DataFrame, features: list[str], business: Business,
                  levels: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """A unique, descriptive name per row of the profile table."""
    k = table.height
    words = name_words(table, features, business, levels or {})
    counts = [min(NAME_WORDS, len(w)) for w in words]
    names = [name_of(w, n) for w, n in zip(words, counts)]
    while True:
        clashes = [j for j in range(k) if names.count(names[j]) > 1 and counts[j] < len(words[j])]
        if not clashes:
            break
        for j in clashes:
            counts[j] += 1
            names[j] = name_of(words[j], counts[j])
    sizes = table["size"].to_list()
    names = [f"Empty segment {j}" if sizes[j] == 0 else name for j, name in enumerate(names)]
    names = [f"{name} (segment {j})" if names.count(name) > 1 else name for j, name in enumerate(names)]
    overrides = dict(business.names)
    for j in overrides:
        if j >= k:
            raise InputError(f"[business.names]: segment {j} does not exist (k={k}: segments 0..{k - 1})")
    names = [overrides.get(j, name) for j, name in enumerate(names)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"[business.names]: the name {dupes[0]!r} is given to two segments; names must be unique")
    return names


def name_words(table: pl.DataFrame, features: list[str], business: Business,
               levels: dict[str, tuple[str, ...]]) -> list[list[str]]:
    """Per segment, the words that may name it, most distinctive first: each feature at least
    ``NAME_MIN_Z`` from the population ("High income"), and each one-hot column's most
    over-represented level ("Mostly Married" where it is at least half the segment, else "More
    Married")."""
    words: list[list[str]] = []
    for j in range(table.height):
        found = []  # (-|z|, order, word)
        for i, f in enumerate(features):
            z = table[f"{f}_z"][j]
            if z is not None and np.isfinite(z) and abs(z) >= NAME_MIN_Z:
                found.append((-abs(z), i, business.word(f, bool(z > 0))))
        for c, column in enumerate(levels):
            options = [(table[f"{column}={lvl}_z"][j], lvl) for lvl in levels[column]]
            options = [(z, lvl) for z, lvl in options if z is not None and np.isfinite(z) and z >= NAME_MIN_Z]
            if options:
                z, lvl = max(options, key=lambda o: o[0])
                share = table[f"{column}={lvl}_mean"][j]
                found.append((-z, len(features) + c, f"{'Mostly' if share >= 0.5 else 'More'} {lvl}"))
        words.append([w for _, _, w in sorted(found)])
    return words


def name_of(words: list[str], n: int) -> str:
    return SEPARATOR.join(words[:n]) if n else "Average customers"


def recommend_actions(table: pl.DataFrame, business: Business) -> list[str | None]:
    """The action of the first rule that holds, per row of the profile table (None if none does)."""
    columns = set(table.columns)
    chosen: pl.Expr = pl.lit(None, pl.String)
    for rule in reversed(business.rules()):
        try:
            cond = pl.sql_expr(rule.when)
            roots = cond.meta.root_names()
        except Exception as exc:  # Polars raises several types for SQL parse errors
            raise InputError(f"[[business.actions]] {rule.action!r}: cannot parse {rule.when!r}: {first_line(exc)}") from exc
        missing = [c for c in roots if c not in columns]
        if missing:
            if business.actions is None:
                continue  # a default rule for a measure the spec does not declare
            raise InputError(f"[[business.actions]] {rule.action!r}: unknown profile column {missing[0]!r}"
                             f"{did_you_mean(missing[0], columns)}")
        chosen = pl.when(cond.fill_null(False)).then(pl.lit(rule.action)).otherwise(chosen)
    try:
        return table.with_columns(chosen.alias("action"))["action"].to_list()
    except Exception as exc:  # a condition of the wrong type, e.g. a number instead of a test
        raise InputError(f"[[business.actions]]: a condition cannot be evaluated: {first_line(exc)}") from exc


def add_names_and_actions(table: pl.DataFrame, features: list[str], business: Business,
                          levels: dict[str, tuple[str, ...]] | None = None) -> pl.DataFrame:
    """The profile table with ``name`` and ``action`` after ``segment``."""
    named = table.with_columns(pl.Series("name", segment_names(table, features, business, levels), pl.String),
                               pl.Series("action", recommend_actions(table, business), pl.String))
    return named.select(["segment", "name", "action", *[c for c in table.columns if c != "segment"]])


PROJECTION_SAMPLE = 5_000


def projection(data, labels: np.ndarray, centers: np.ndarray, seed: int) -> tuple[pl.DataFrame, dict]:
    """A 2-D PCA of a uniform sample of the scaled rows (``pc1``, ``pc2``, ``segment``), with the
    explained variance and the centres in the same plane. Signs are fixed (largest loading
    positive) so reruns draw the same picture."""
    n = data.n_used
    idx = sample_indices(n, min(PROJECTION_SAMPLE, n), np.random.default_rng([seed, 7]))
    sample = data.rows_of(idx).astype(np.float64)
    mean = sample.mean(axis=0)
    _, s, vt = np.linalg.svd(sample - mean, full_matrices=False)
    vt = vt[:2]
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    vt = vt * signs[:, None]
    if vt.shape[0] < 2:  # a single feature: the second axis is flat
        vt = np.vstack([vt, np.zeros_like(vt)])
        s = np.append(s, 0.0)
    coords = (sample - mean) @ vt.T
    total = float((s ** 2).sum())
    frame = pl.DataFrame({"pc1": coords[:, 0].astype(np.float32), "pc2": coords[:, 1].astype(np.float32),
                          "segment": labels[idx].astype(np.int32)})
    centres = (centers.astype(np.float64) - mean) @ vt.T
    info = {"sample": int(idx.size), "explained_variance": [float(v) / total if total else 0.0 for v in (s[:2] ** 2)],
            "centres": centres.tolist()}
    return frame, info


def used_columns(spec, levels: dict) -> list[str]:
    """The input columns the spec's features, categorical columns and business measures read."""
    exprs = [f.expr for f in spec.features] + list(spec.business.measures().values())
    exprs += [v for v in (spec.business.cost_per_contact, spec.business.revenue_per_response) if isinstance(v, str)]
    roots: list[str] = []
    for text in exprs:
        for r in pl.sql_expr(text).meta.root_names():
            if r not in roots:
                roots.append(r)
    return roots + [c for c in levels if c not in roots]


class Insight:
    """Everything a run adds for marketing: profiles with names and actions, impact, the EDA
    summary of the columns used and the PCA sample for the report.

    The figures come from the insight's one pass (``engine.insight.onepass``): ``passed`` is an
    ``InsightPass`` the run's final pass has fed every block of the input; without it the input's
    columns are read here, once, and fed in blocks, with the feature columns the run read
    (``data.columns``) where it kept them, which are then let go. Nothing below reads the input."""

    def __init__(self, inp, data, labels: np.ndarray, centers: np.ndarray, k: int, seed: int,
                 passed: InsightPass | None = None):
        spec, business = data.spec, data.spec.business
        if passed is None:
            passed = InsightPass(inp.schema(), inp.label, spec, data.fitted.levels, k, seed, data.n_rows)
            every = row_labels(labels, data.kept)
            moments = None if data.columns is None else passed.feature_moments(data.columns, every)
            data.columns = None  # the features' moments are taken: let the columns go before the input is read
            sampled, data.sampled = data.sampled, None
            feed_input(passed, inp, every, feature_moments=moments, sampled=sampled)
        result = passed.finish()
        profiles = result.profiles
        self.warnings = list(profiles.warnings)
        self.profiles = add_names_and_actions(profiles.table, [f.name for f in spec.features], business,
                                              data.fitted.levels)
        self.offers = segment_offers(profiles.offer_sums, result.support, k, business.offers)
        if self.offers is not None:
            self.profiles = with_offer(self.profiles, self.offers.lines)
        self.summary: dict = {"overall": profiles.overall, "business": business.to_dict()}
        if self.offers is not None:
            self.summary["offers"] = self.offers.lines
        self.impact = None
        self.warnings += transaction_figures(profiles.overall, inp.info)
        cost, revenue = profiles.overall["cost_per_contact"], profiles.overall["revenue_per_response"]
        if business.response is not None and cost is not None and revenue is not None:
            self.impact = impact_table(self.profiles, profiles.overall, cost, revenue)
            self.summary["impact"] = impact_summary(self.impact, cost, revenue)
        elif business.response is not None:
            self.warnings.append("no impact.parquet: declare cost_per_contact and revenue_per_response in the spec's "
                                 "[business] or give --cost-per-contact and --revenue-per-response")
        self.projection, self.summary["projection"] = projection(data, labels, centers, seed)
        self.describe = eda.describe_sample(result.sample, result.schema, used_columns(spec, data.fitted.levels),
                                            result.rows, inp.label, seed)

    def write(self, out: RunWriter) -> None:
        """profiles.parquet, impact.parquet, offers.parquet and projection.parquet (with the outputs' key-value
        metadata) and describe.json into the run directory ``out``."""
        out.parquet(rundir.PROFILES, self.profiles)
        if self.impact is not None:
            out.parquet(rundir.IMPACT, self.impact)
        if self.offers is not None:
            out.parquet(rundir.OFFERS, self.offers.table)
        out.parquet(rundir.PROJECTION, self.projection, metadata=False)
        out.json(rundir.DESCRIBE, self.describe)
