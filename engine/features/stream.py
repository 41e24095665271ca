"""The feature pass of a streamed run: statistics from a sample, then the scaled rows block by block.

1. The statistics sample (``build.stats_rows``: every row up to ``build.STATS_SAMPLE``, else a
   bottom-k hash sample of row numbers) is read block by block, and the clip bounds, medians,
   levels and scaler are learned from it with the code the in-memory build uses
   (``build.fit_statistics``) on the same rows, so they are the same numbers.
2. Every block (``engine.input.blocks``) is built with those statistics, as ``predict`` builds new
   rows (``build.build_features(fitted=...)``), and its scaled float32 rows go to ``sink`` (the
   scratch file). Only the block's kept-row mask is kept, bit-packed.

What is held at once: the sample's feature columns and one block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.features.build import (ROW_ID, FeatureData, build_features, check_ids, dropped_warning, feature_query,
                                   fit_statistics, input_warnings, read_columns, resolve_spec, stats_rows)
from engine.features.spec import FeatureSpec
from engine.input import blocks as layout
from engine.input.files import Input


@dataclass(frozen=True)
class Block:
    """One block of a streamed input: its rows, and which of them were kept (None: all)."""

    start: int
    rows: int
    kept: np.ndarray | None  # bit-packed mask (np.packbits), or None when every row was kept
    n_kept: int

    def mask(self) -> np.ndarray | None:
        return None if self.kept is None else np.unpackbits(self.kept, count=self.rows).astype(bool)


def raw_columns(inp: Input, spec: FeatureSpec) -> list[str]:
    """The input columns the features, categorical columns and text-number parsing read."""
    query = feature_query(inp, spec)
    roots = {r for e in query.exprs for r in e.meta.root_names()}
    wanted = roots | {c.column for c in spec.categorical} | set(spec.numeric) | {spec.id_col}
    return [c for c in inp.schema().names() if c in wanted]


def learn(inp: Input, spec: FeatureSpec, n_rows: int, seed: int, columns: list[str]):
    """The fitted statistics, from the statistics sample's rows (of the ``raw_columns``) read block by block."""
    rows = stats_rows(n_rows, seed)
    sample = layout.gather(inp, n_rows, rows, columns)
    part = replace(inp, frame=sample.lazy(), rows=sample.height)
    _, cats, cols, _, _ = read_columns(feature_query(part, spec), spec, True, inp.label)
    return fit_statistics(spec, cols, cats, inp.label)


def stream_features(inp: Input, spec: FeatureSpec, sink: Callable[[np.ndarray], None], seed: int = 0,
                    allow_duplicate_ids: bool = False, advance: Callable[[int], None] | None = None) -> FeatureData:
    """Build every block's scaled rows into ``sink``; the result has no matrix (``X`` is None)
    and no ids (the final pass reads them again), but its ``blocks`` say which rows were kept.
    ``advance(1)`` (progress) follows each block."""
    t0 = time.perf_counter()
    where = inp.label
    spec = resolve_spec(spec, inp.schema(), where)
    n_rows = layout.row_count(inp)
    if n_rows == 0:
        raise InputError(f"{where}: no rows")
    columns = raw_columns(inp, spec)
    fitted = learn(inp, spec, n_rows, seed, columns)
    t_stats = time.perf_counter() - t0
    found = []
    for start, frame in layout.blocks(inp, n_rows, columns):
        X, block, missing, non_finite = feature_block(inp, spec, fitted, start, frame, allow_duplicate_ids)
        sink(X)
        found.append((block, missing, non_finite))
        if advance is not None:
            advance(1)
    return summarise(inp, spec, fitted, n_rows, found, {"read": t_stats, "features": 0.0,
                                                        "scale": time.perf_counter() - t0 - t_stats})


def feature_block(inp: Input, spec: FeatureSpec, fitted, start: int, frame: pl.DataFrame, allow_duplicate_ids: bool
                  ) -> tuple[np.ndarray, Block, dict[str, int], dict[str, int]]:
    """One block built with the fitted statistics (``build_features(fitted=...)``, as ``predict``
    builds new rows): its scaled rows, which rows were kept, its missing and non-finite counts."""
    rows = frame.height
    part = build_features(replace(inp, frame=frame.lazy(), rows=rows), spec, fitted=fitted, allow_duplicate_ids=True)
    if spec.id_col and not allow_duplicate_ids:
        check_ids(part.ids, f"{inp.label} (rows {start:,} to {start + rows - 1:,})")
    kept = None if part.kept is None else np.packbits(part.kept)
    return part.X, Block(start, rows, kept, int(part.X.shape[0])), part.missing, part.non_finite


def summarise(inp: Input, spec: FeatureSpec, fitted, n_rows: int,
              found: list[tuple[Block, dict[str, int], dict[str, int]]], seconds: dict[str, float]) -> FeatureData:
    """The streamed build's ``FeatureData`` from every block's ``feature_block`` figures, in block order."""
    where = inp.label
    missing: dict[str, int] = {}
    non_finite: dict[str, int] = {}
    for _, block_missing, block_non_finite in found:
        for total, counts in ((missing, block_missing), (non_finite, block_non_finite)):
            for name, c in counts.items():
                total[name] = total.get(name, 0) + c
    blocks = [b for b, _, _ in found]
    if sum(b.n_kept for b in blocks) == 0:
        raise InputError(f"{where}: no rows left after dropping rows with missing values (see missing = median)")
    order = [f.name for f in spec.features]  # as the in-memory build lists them
    missing = {n: missing[n] for n in order if n in missing}
    non_finite = {n: non_finite[n] for n in order if n in non_finite}
    warnings = []
    if non_finite:
        listed = ", ".join(f"{n} ({c:,})" for n, c in non_finite.items())
        warnings.append(f"NaN or infinite values treated as missing in feature(s) {listed}")
    warnings += input_warnings(spec)
    if fitted.dropped:
        warnings.append(dropped_warning(fitted.dropped))
    return FeatureData(None, None, None, None, spec, fitted, n_rows, missing, non_finite, warnings, seconds,
                       blocks=blocks)


def block_ids(inp: Input, spec: FeatureSpec, block: Block, frame: pl.DataFrame | None = None) -> pl.Series:
    """A block's ids: the id column (read with the block's other columns in ``frame``), or row
    numbers counted from the first row of the data."""
    if spec.id_col is None:
        return pl.Series(ROW_ID, np.arange(block.start, block.start + block.rows, dtype=np.int64))
    if frame is None:
        frame = layout.read_block(inp, block.start, block.rows, [spec.id_col])
    return frame[spec.id_col]
