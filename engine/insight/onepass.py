"""The insight's one pass: the profiles' figures accumulated block by block, with the segment labels.

``InsightPass`` is built before the run's final pass from the resolved spec and the fitted one-hot
levels, and fed the input's blocks in row order, each with its labels (-1 for a row dropped for
missing values); ``finish`` then gives everything the insight stage needs without reading the
input again. Per block, the profile's expressions (``engine.insight.profiles.ProfileQuery``) are
evaluated on the block, their values (null as NaN) go into a float64 matrix, and:

- ``kernels.segments.SegmentMoments`` folds the per-segment count, mean, M2, min, max and sum of
  every profile column (segment sizes, means, deviations, revenue and offer sums, responses);
  a second one (one "segment": every input row) folds the figures of all rows (responses with
  nulls as 0, missing and invalid responses, the cost and revenue figure columns);
- ``kernels.hashsample.BottomK`` keeps a bottom-k hash sample (the run's seed; ``SAMPLE_ROWS``
  rows, every row up to that many) of the raw rows of the columns the pass reads, with their
  labels: the medians, the revenue concentration and the EDA summary (``describe.json``) come
  from it;
- with a products column (transactions), the (segment, product) purchase counts are added up.

Moments are folded in fixed global chunks of ``CHUNK_ROWS`` rows and the sample is keyed on the
global row number, so the figures are the same bits for any block layout (each block but the last
a whole number of chunks) and thread count. In memory, ``feed_input`` reads the columns once more,
block by block (``engine.input.blocks``); a streamed run's final pass feeds its own blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine.duck.rfm import PRODUCTS
from engine.errors import InputError, first_line
from engine.features.build import SAMPLED_ROW, one_hot_exprs
from engine.features.spec import FeatureSpec
from engine.input import blocks as layout
from engine.input.files import Input
from engine.insight import profiles as pf
from engine.insight.offers import product_support, total_support
from kernels.hashsample import BottomK, KnownSample, sample_rows
from kernels.segments import CHUNK_ROWS, COUNT, M2, MAX, MIN, SUM, SegmentMoments, segment_chunks

ONES = "@rows"  # a column of ones: its count per segment is the segment's size
INVALID = "@response_invalid"  # 1 where the response is neither 0 nor 1, null where missing
ROW = SAMPLED_ROW  # global row number of a sampled row (the name the run's read gives it too)
LABEL = "@label"  # a sampled row's label (-1: not segmented)


@dataclass
class Passed:
    """What the pass gives the insight stage."""

    profiles: pf.Profiles
    sample: pl.DataFrame  # the sampled rows of ``columns`` (raw, in row order), for describe
    schema: pl.Schema  # the input's
    rows: int  # input rows seen
    support: pl.DataFrame | None  # products: segment, item, support (engine.insight.offers)


@dataclass
class BlockFigures:
    """One block's figures before they are folded (``InsightPass.figures``)."""

    offset: int
    rows: int
    moments: np.ndarray  # (chunks, 6, k, columns): the segments' moments per chunk
    everyone: np.ndarray  # (chunks, 6, 1, columns): every row's
    raw: pl.DataFrame  # raw rows the sample may keep, with ROW
    support: pl.DataFrame | None  # (segment, product) counts


def unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


class InsightPass:
    """The insight's figures, accumulated from blocks of the input and their labels.

    >>> acc = InsightPass(inp.schema(), inp.label, spec, fitted.levels, k, seed)
    >>> for offset, block, labels in blocks:            # block: the columns acc.columns() names
    ...     acc.add(offset, block, labels)               # rows offset .., labels int32 (-1: dropped)
    >>> passed = acc.finish()                            # Passed: profiles, sample, product counts
    """

    def __init__(self, schema: pl.Schema, where: str, spec: FeatureSpec, levels: dict[str, tuple[str, ...]],
                 k: int, seed: int, n_rows: int | None = None):
        self.query = pf.profile_query(schema, spec, levels, where)
        self.schema, self.where, self.k, self.business = schema, where, k, spec.business
        self.measures = measures = spec.business.measures()
        features = [f.name for f in spec.features] + [e.meta.output_name() for e in one_hot_exprs(levels)]
        summarised = [m for m in pf.SUMMARISED if m in measures and m not in features]
        self.cols = features + [pf.measure_name(m) for m in summarised]  # mean, median and z of each
        self.out_names = features + summarised
        extra = [pf.measure_name(m) for m in ("revenue", "response") if m in measures]
        extra += [pf.offer_name(g, label) for g, label, _ in spec.business.offers.items()]
        self.seg_columns = unique([ONES, *self.cols, *extra])
        # With the features' moments given (``add(feature_moments=...)``) only the other columns are
        # evaluated; ``by_name`` puts the two parts' moments back in ``seg_columns`` order.
        self.n_features = len(spec.features)
        self.rest_columns = [c for c in self.seg_columns if c not in features[:self.n_features]]
        parts = features[:self.n_features] + self.rest_columns
        self.by_name = np.array([parts.index(c) for c in self.seg_columns], dtype=np.int64)
        self.all_columns = [ONES] + ([pf.measure_name("response"), INVALID] if "response" in measures else [])
        self.all_columns += [pf.measure_name(key) for key in ("cost_per_contact", "revenue_per_response")
                             if isinstance(getattr(spec.business, key), str)]
        self.moments = SegmentMoments(k, len(self.seg_columns))
        self.everyone = SegmentMoments(1, len(self.all_columns))
        # The same sample either way; with the row count known it is found once, not merged per block.
        self.sample = BottomK(pf.SAMPLE_ROWS, seed) if n_rows is None else KnownSample(n_rows, pf.SAMPLE_ROWS, seed)
        self.products = PRODUCTS if spec.preset and spec.preset.get("product") and PRODUCTS in schema else None
        self.raw: list[pl.DataFrame] = []  # sampled rows, some no longer in the sample (compact drops them)
        self.support: list[pl.DataFrame] = []
        self.rows = 0

    def columns(self) -> list[str]:
        """The input columns a block must hold."""
        return self.query.columns() + ([self.products] if self.products else [])

    def values(self, block: pl.DataFrame | pl.LazyFrame, skip: int = 0) -> pl.DataFrame:
        """The profile's columns of raw rows, with ``ONES`` and ``INVALID`` (all but the features
        with ``skip``: ``ProfileQuery.apply``)."""
        extra = [pl.lit(1.0).alias(ONES)]
        if "response" in self.measures:
            r = pl.col(pf.measure_name("response"))
            extra.append(((r != 0) & (r != 1)).cast(pl.Float64).alias(INVALID))
        try:
            return self.query.apply(block.lazy(), skip).with_columns(extra).collect()
        except pl.exceptions.InvalidOperationError as exc:
            raise InputError(f"{self.where}: a column listed in numeric holds text that is not a number: "
                             f"{first_line(exc)}") from exc
        except pl.exceptions.PolarsError as exc:
            raise InputError(f"cannot read {self.where}: {first_line(exc)}") from exc

    def add(self, offset: int, block: pl.DataFrame, labels: np.ndarray,
            feature_moments: np.ndarray | None = None, sampled: pl.DataFrame | None = None) -> None:
        """The input's rows ``offset .. offset + block.height - 1`` (blocks in row order; each but
        the last a whole number of ``CHUNK_ROWS``) and their segments (-1: not segmented).
        ``feature_moments``: the block's entry of ``feature_moments``, used instead of evaluating
        the features on ``block`` again. ``sampled``: the raw values of some of the input columns
        at the block's sampled rows, which ``block`` then need not hold (``block_columns``)."""
        labels = self.checked(offset, block.height, labels)
        self.sample.add(offset, label=labels)
        rows = self.sample.rows
        kept = rows[np.searchsorted(rows, offset):np.searchsorted(rows, offset + block.height)]
        self.fold(self.figures(offset, block, labels, kept, feature_moments, sampled))

    def block_columns(self, sampled: list[str]) -> list[str]:
        """The input columns a block must hold when the features' moments are given and the raw
        values of the columns ``sampled`` at the sampled rows: those the profile's other columns
        read (measures, offers, one-hot levels, products), and those of the features not sampled."""
        rest = {r for e in self.query.values[self.n_features:] for r in e.meta.root_names()}
        rest |= set(self.query.cats) | ({self.products} if self.products else set())
        return [c for c in self.columns() if c in rest or c not in sampled]

    def checked(self, offset: int, rows: int, labels: np.ndarray) -> np.ndarray:
        labels = np.ascontiguousarray(labels, dtype=np.int32)
        if offset != self.rows or labels.shape != (rows,):
            raise ValueError(f"block at row {offset} of {rows} rows with {labels.shape[0]} labels: "
                             f"expected the rows from {self.rows}, one label each")
        return labels

    def figures(self, offset: int, block: pl.DataFrame, labels: np.ndarray, wanted: np.ndarray,
                feature_moments: np.ndarray | None = None, sampled: pl.DataFrame | None = None) -> BlockFigures:
        """A block's figures, not folded yet (a cluster's worker computes them): per-chunk moments,
        the raw rows numbered ``wanted`` (those of the block the sample may keep), product counts.
        With ``feature_moments`` (``add``) only the other columns' moments are worked out here;
        with ``sampled`` (``add``) the raw rows of its columns come from it."""
        frame = self.values(block, 0 if feature_moments is None else self.n_features)
        columns = self.query.columns()
        if sampled is None:
            raw = block.select(columns)[wanted - offset]
        else:
            if sampled.height != wanted.size:
                raise RuntimeError(f"block at row {offset}: {sampled.height} sampled rows given, {wanted.size} wanted")
            own = [c for c in columns if c not in sampled.columns]
            raw = pl.concat([block.select(own)[wanted - offset], sampled], how="horizontal") if own else sampled
            raw = raw.select(columns)
        raw = raw.with_columns(pl.Series(ROW, wanted, pl.Int64))
        if feature_moments is None:
            moments = self.moments.chunks(matrix(frame, self.seg_columns), labels)
        else:  # each column's moments are its own: computed in two parts, then put in order
            parts = [feature_moments, segment_chunks(matrix(frame, self.rest_columns), labels, self.k)]
            moments = np.ascontiguousarray(np.concatenate(parts, axis=3)[..., self.by_name])
        return BlockFigures(offset, block.height, moments,
                            self.everyone.chunks(matrix(frame, self.all_columns), np.zeros(block.height, np.int32)),
                            raw, product_support(block[self.products], labels) if self.products else None)

    def feature_moments(self, columns: np.ndarray, labels: np.ndarray,
                        block_rows: int | None = None) -> dict[int, np.ndarray]:
        """Per block of ``block_rows`` rows (``engine.input.blocks``' layout), keyed by its first
        row, the per-chunk moments of the features from ``columns``, the run's feature columns as
        it read them (float64, one row per input row, NaN where missing), by ``labels`` (one per
        input row, -1: not segmented): a few hundred KB in all, so the columns can be let go
        before the input is read again."""
        size = block_rows or layout.BLOCK_ROWS
        if columns.shape != (labels.shape[0], self.n_features):
            raise ValueError(f"expected ({labels.shape[0]}, {self.n_features}) feature values, got {columns.shape}")
        return {start: segment_chunks(columns[start:start + size], labels[start:start + size], self.k)
                for start in layout.block_starts(labels.shape[0], size)}

    def add_figures(self, figures: BlockFigures, labels: np.ndarray) -> None:
        """The next block's figures computed elsewhere, with its labels (for the hash sample)."""
        labels = self.checked(figures.offset, figures.rows, labels)
        self.sample.add(figures.offset, label=labels)
        self.fold(figures)

    def fold(self, figures: BlockFigures) -> None:
        """A block's figures into the totals: moments in chunk order, sampled rows kept."""
        self.moments.fold(figures.moments, figures.rows)
        self.everyone.fold(figures.everyone, figures.rows)
        self.raw.append(figures.raw)
        if sum(f.height for f in self.raw) > 2 * self.sample.size:
            self.raw = [self.sampled()]
        if figures.support is not None:
            self.support.append(figures.support)
        self.rows += figures.rows

    def sampled(self) -> pl.DataFrame:
        """The raw rows still in the sample, in row order, with ``ROW``."""
        rows = self.sample.rows
        if not self.raw:
            return pl.DataFrame(schema={**{c: self.schema[c] for c in self.query.columns()}, ROW: pl.Int64})
        raw = pl.concat(self.raw, rechunk=True)
        at = np.searchsorted(rows, raw[ROW].to_numpy()).clip(max=max(rows.size - 1, 0))
        return raw.filter(pl.Series(rows[at] == raw[ROW].to_numpy() if rows.size else np.zeros(raw.height, bool)))

    def finish(self) -> Passed:
        """The profile table's figures, the sample and the product counts."""
        sample = self.sampled()
        labels = self.sample.values.get("label", np.empty(0, dtype=np.int32))
        if not np.array_equal(sample[ROW].to_numpy(), self.sample.rows):
            raise RuntimeError("the sampled rows kept do not match the hash sample")
        values = self.values(sample).with_columns(pl.Series(LABEL, labels, pl.Int32))
        seg = values.filter(pl.col(LABEL) >= 0).rename({LABEL: pf.SEGMENT})
        grouped = self.grouped().join(sample_figures(seg, self.cols, self.out_names, self.measures),
                                      on=pf.SEGMENT, how="left")
        population: dict[str, Any] = {"rows": int(grouped["size"].sum())}
        if "revenue" in self.measures:
            population.update(seg.select(pf.concentration(pf.measure_name("revenue"), p) for p in pf.TOP_SHARES)
                              .row(0, named=True))
        population.update(pf.combine(grouped, self.out_names, self.measures))
        total = self.total()
        warnings = pf.check_business(self.business, total, self.where)
        table = pf.segment_table(grouped, population, self.out_names, self.measures, self.k)
        median_sample = None if self.rows <= self.sample.size else seg.height
        overall = pf.overall_figures(total, population, median_sample, self.measures, self.business)
        profiles = pf.Profiles(table, overall, warnings, pf.offer_sums(grouped, self.business))
        support = total_support(self.support) if self.products else None
        return Passed(profiles, sample.drop(ROW), self.schema, self.rows, support)

    def grouped(self) -> pl.DataFrame:
        """Per non-empty segment: ``size``; per column mean, variance (ddof 0) and count; revenue
        sum, responses, response rate and count, offer sums, as the profile table reads them."""
        t = self.moments.table
        at = {c: j for j, c in enumerate(self.seg_columns)}
        count, total = t[COUNT], t[SUM]
        present = np.flatnonzero(count[:, at[ONES]] > 0)

        def of(plane: np.ndarray, c: str) -> pl.Series:
            return pl.Series(plane[present, at[c]], dtype=pl.Float64)

        def mean(c: str) -> pl.Series:
            n = count[present, at[c]]
            return pl.Series(np.divide(total[present, at[c]], n, where=n > 0, out=np.zeros(n.size)), dtype=pl.Float64
                             ).set(pl.Series(n == 0), None)

        columns: dict[str, pl.Series] = {pf.SEGMENT: pl.Series(present, dtype=pl.Int32),
                                         "size": of(count, ONES).cast(pl.Int64)}
        for c, name in zip(self.cols, self.out_names):
            n = count[present, at[c]]
            var = np.divide(t[M2][present, at[c]], n, where=n > 0, out=np.zeros(n.size))
            columns |= {f"{name}_mean": mean(c), f"{name}\0var": pl.Series(var).set(pl.Series(n == 0), None),
                        f"{name}\0count": of(count, c).cast(pl.Int64)}
        rev, resp = pf.measure_name("revenue"), pf.measure_name("response")
        if "revenue" in self.measures:
            columns["revenue_sum"] = of(total, rev)
        if "response" in self.measures:
            columns |= {"responses": of(total, resp), "response_rate": mean(resp),
                        "response\0count": of(count, resp).cast(pl.Int64)}
        for g, label, _ in self.business.offers.items():
            columns[f"{pf.offer_name(g, label)}\0sum"] = of(total, pf.offer_name(g, label))
        return pl.DataFrame(columns)

    def total(self) -> dict[str, Any]:
        """Every input row's figures: rows, responses (missing as 0), missing and invalid responses,
        the cost and revenue figure columns' mean, min and max (None where no value)."""
        t = self.everyone.table[:, 0, :]
        at = {c: j for j, c in enumerate(self.all_columns)}
        out: dict[str, Any] = {"rows": self.rows}
        if "response" in self.measures:
            resp = at[pf.measure_name("response")]
            out |= {"responses": float(t[SUM, resp]), "response_missing": self.rows - int(t[COUNT, resp]),
                    "response_invalid": int(t[SUM, at[INVALID]])}
        for key in ("cost_per_contact", "revenue_per_response"):
            if isinstance(getattr(self.business, key), str):
                j = at[pf.measure_name(key)]
                some = t[COUNT, j] > 0
                out |= {key: float(t[SUM, j] / t[COUNT, j]) if some else None,
                        f"{key}_min": float(t[MIN, j]) if some else None, f"{key}_max": float(t[MAX, j]) if some else None}
        return out


def matrix(frame: pl.DataFrame, names: list[str]) -> np.ndarray:
    """Columns of ``frame`` as one float64 (rows, columns) array, null as NaN."""
    return frame.select(pl.col(n).cast(pl.Float64) for n in names).to_numpy()


def sample_figures(seg: pl.DataFrame, cols: list[str], out_names: list[str], measures: dict[str, str]) -> pl.DataFrame:
    """Per segment, from the sampled segmented rows: each column's median, the revenue concentration."""
    aggs = [pl.col(c).median().alias(f"{name}_median") for c, name in zip(cols, out_names)]
    if "revenue" in measures:
        aggs += [pf.concentration(pf.measure_name("revenue"), p) for p in pf.TOP_SHARES]
    return seg.group_by(pf.SEGMENT).agg(aggs)


def sampled_rows(n_rows: int, seed: int) -> np.ndarray | None:
    """The rows of ``n_rows`` the pass's hash sample holds with ``seed``, in order (None: every row)."""
    return None if n_rows <= pf.SAMPLE_ROWS else sample_rows(n_rows, pf.SAMPLE_ROWS, seed)


def row_labels(labels: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    """One label per input row (int32), -1 where the row was dropped: ``labels`` are the kept rows'."""
    if kept is None:
        return np.ascontiguousarray(labels, dtype=np.int32)
    out = np.full(kept.shape[0], -1, dtype=np.int32)  # one array: no row-number temporaries
    out[kept] = labels
    return out


def feed_input(acc: InsightPass, inp: Input, labels: np.ndarray, block_rows: int | None = None,
               feature_moments: dict[int, np.ndarray] | None = None, sampled: pl.DataFrame | None = None) -> None:
    """The in-memory run's pass: the columns ``acc`` needs, read from the input once more, block by
    block (``engine.input.blocks``: Parquet row groups by slice, a CSV parsed once front to back),
    so only one block of them is held. ``feature_moments`` (``InsightPass.feature_moments`` with
    the same ``block_rows``): the features' moments from the columns the run read; the block read
    then serves the sample and the other profile columns (measures, one-hot levels).

    ``sampled`` (with ``feature_moments``): the raw values the run's read took of some input
    columns at the pass's sampled rows, with ``ROW`` (``FeatureData.sampled``). Those columns are
    then not read again, and where the profile reads no other column (features that are columns
    as they are, no business measures or categorical columns) the input is not read at all."""
    n = labels.shape[0]
    chosen = getattr(acc.sample, "chosen", None)
    if sampled is not None and (feature_moments is None or chosen is None
                                or not np.array_equal(sampled[ROW].to_numpy(), chosen)):
        sampled = None  # not the pass's rows (another seed or size): read them
    columns, given = acc.columns(), None
    if sampled is not None:
        columns = acc.block_columns(sampled.columns)
        given = sampled.select(c for c in sampled.columns if c not in [ROW, *columns])
        if not given.width:  # the blocks hold every sampled column anyway
            given = None
    reads = given is None or bool(columns)
    if reads:
        read = layout.blocks(inp, n, columns, block_rows)
    else:  # no column to read: blocks of the right heights only
        size = block_rows or layout.BLOCK_ROWS
        read = ((start, pl.DataFrame({"@height": np.zeros(min(size, n - start), np.int8)}))
                for start in layout.block_starts(n, size))
    seen = 0
    for offset, block in read:
        part = None if feature_moments is None else feature_moments[offset]
        some = None if given is None else given[int(np.searchsorted(chosen, offset)):
                                                int(np.searchsorted(chosen, offset + block.height))]
        acc.add(offset, block, labels[offset:offset + block.height], part, some)
        seen = offset + block.height
    if seen != n or (reads and inp.format != "csv" and layout.row_count(inp) != n):  # a CSV's blocks count its rows
        raise InputError(f"{inp.label}: the input has other rows than the {n:,} segmented; did it change during the run?")


def profile_table(inp: Input, spec: FeatureSpec, levels: dict[str, tuple[str, ...]], segments: pl.Series,
                  k: int, seed: int) -> pf.Profiles:
    """One row per segment: ``segment``, ``size``, ``share``; per feature ``{f}_mean``,
    ``{f}_median`` (original units: before clipping, log1p and scaling; one-hot columns give the
    share of the level) and ``{f}_z`` (the segment mean's z-score against the population); then
    the business columns declared in the spec (see README, Output schemas).

    ``segments`` holds one label per input row, null for rows dropped for missing values; ``seed``
    (the run's) keys the hash sample of medians above ``SAMPLE_ROWS`` input rows."""
    acc = InsightPass(inp.schema(), inp.label, spec, levels, k, seed, len(segments))
    feed_input(acc, inp, segments.fill_null(-1).to_numpy().astype(np.int32))
    return acc.finish().profiles
