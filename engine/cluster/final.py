"""The final pass on the workers: each input block assigned again, its part of ``segments.parquet``
written, its insight figures returned; the client folds the figures in block order.

``segments.parquet`` is then a dataset, a directory of one file per input block,
``segments.parquet/part-BLOCK.parquet`` (BLOCK zero-padded to 6 digits), the input order when the
files are read sorted by name. The workers write into the run's scratch directory beside the
output (the output's file system must be the workers' too, as the input's is); the client moves the
directory into the run directory, which is committed as one step when every file is complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client

from engine.cluster.source import ClusterSource, concat_rows, cover, on_worker, results
from engine.features.build import FeatureData
from engine.features.spec import FeatureSpec
from engine.features.stream import Block, block_ids
from engine.fit.kmeans import FitResult, assign_rows
from engine.input import blocks as layout
from engine.input.files import Input
from engine.insight.onepass import BlockFigures, InsightPass, row_labels, sampled_rows, unique
from engine.outputs.write import SegmentWriter
from engine.progress import SILENT, Progress

PART = "part-{:06d}.parquet"


def final_block(inp: Input, setup: tuple, block: Block, index: int, centers: np.ndarray, expected: np.ndarray,
                wanted: np.ndarray, path: Path, meta: dict[str, Any], slices: list[tuple[int, int]],
                *parts: np.ndarray) -> BlockFigures:
    """A worker's block: its kept rows assigned to the fitted centres (the labels the fit's last pass
    gave them, checked), ``PART`` written, and the block's insight figures."""
    schema, spec, levels, k, seed = setup
    insight = InsightPass(schema, inp.label, spec, levels, k, seed)
    columns = unique(insight.columns() + ([spec.id_col] if spec.id_col else []))
    frame = on_worker(f"cannot read {inp.label}", layout.read_block, inp, block.start, block.rows, columns)
    X = concat_rows(slices, *parts) if parts else np.empty((0, centers.shape[1]), dtype=np.float32)
    labels, dist2, _ = assign_rows(X, centers)
    if not np.array_equal(labels, expected):
        raise RuntimeError(f"rows {block.start:,}..: the final pass disagrees with the fit's last pass")
    mask = block.mask()
    writer = SegmentWriter(Path(path) / PART.format(index), meta)
    try:
        writer.write(block_ids(inp, spec, block, frame), labels, dist2, mask)
    finally:
        writer.close()
    return insight.figures(block.start, frame.select(insight.columns()), row_labels(labels, mask), wanted)


def cluster_final_pass(client: Client, inp: Input, data: FeatureData, fit: FitResult, seed: int, path: Path,
                       meta: dict[str, Any], progress: Progress = SILENT) -> InsightPass:
    """``engine.streaming.final_pass`` with the blocks on the workers: ``path`` becomes the
    segments dataset; the insight's pass gets every block's figures in block order, each folded
    as soon as it and the blocks before it are done."""
    source: ClusterSource = data.scratch
    k = fit.centers.shape[0]
    spec: FeatureSpec = data.spec
    insight = InsightPass(inp.schema(), inp.label, spec, data.fitted.levels, k, seed)
    setup = (inp.schema(), spec, data.fitted.levels, k, seed)
    sampled = sampled_rows(data.n_rows, seed)
    path.mkdir()
    futures, used = [], 0
    for index, block in enumerate(data.blocks):
        spans = cover(source.starts, source.sizes, used, used + block.n_kept)
        end = block.start + block.rows
        wanted = np.arange(block.start, end) if sampled is None else \
            sampled[np.searchsorted(sampled, block.start):np.searchsorted(sampled, end)]
        futures.append(client.submit(final_block, inp, setup, block, index, fit.centers,
                                     fit.labels[used:used + block.n_kept], wanted, path, meta,
                                     [(a, b) for _, a, b in spans], *[source.parts[i] for i, _, _ in spans],
                                     pure=False))
        used += block.n_kept
    used = 0
    with progress.stage("assigning blocks", len(futures)) as advance:
        for block, future in zip(data.blocks, futures):
            insight.add_figures(results(client, [future])[0], row_labels(fit.labels[used:used + block.n_kept],
                                                                         block.mask()))
            used += block.n_kept
            advance(1)
    return insight
