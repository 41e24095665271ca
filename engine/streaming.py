"""A streamed run's own steps: when to stream, its scratch space, and the final pass.

``engine.api.run`` streams with ``--stream``, or when the in-memory estimate exceeds
``--memory-limit``. The feature pass (``engine.features.stream``) writes the scaled rows into the
scratch space's ``ScratchSource``; the fit reads them back; the final pass below assigns every
block again, writes ``segments.parquet`` row group by row group into the scratch space (moved into
the run directory when the run commits) and feeds the insight's one pass the same blocks, so the
input is read once more, not twice.

May import: everything ``engine.api`` may, but not ``engine.api``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.features.build import FeatureData
from engine.features.stream import block_ids
from engine.fit.batches import ArraySource, BatchSource, ScratchSource
from engine.fit.kmeans import FitResult, assign_rows
from engine.input import blocks as layout
from engine.input.files import Input
from engine.input.memory import count_rows, human, memory_plan
from engine.insight.onepass import InsightPass, row_labels, unique
from engine.options import InputOptions
from engine.outputs import rundir
from engine.outputs.write import SegmentWriter, scratch_dir
from engine.progress import SILENT, Progress

Log = Any


def wants_stream(inp: Input, n_features: int, n_onehot: int, options: InputOptions, log: Log) -> bool:
    """``--stream``, or an in-memory run that would need more than the memory available."""
    if options.stream:
        return True
    rows, need, avail = memory_plan(inp, n_features, n_onehot, options.memory_limit)
    if avail is None or need <= avail or inp.format == "sql":  # a SQL result is in memory already
        return False
    log(f"{rows:,} rows need about {human(need)} in memory, {human(avail)} is available: streaming")
    return True


def stream_refused(k: int | None, pca: Any) -> str | None:
    """Why a run cannot stream (None: it can)."""
    if k is None:
        return "with --k auto (segment sweep a sample, then run with the k chosen)"
    if pca is not None:
        return "with PCA (--pca or [pca])"
    return None


class Scratch:
    """A streamed run's scratch space beside its output: the scaled rows (``ScratchSource``) and
    the segments file of the final pass, created on the first block, removed with the directory
    when the run ends (or by the next run, after a kill)."""

    def __init__(self, out: Path):
        self.matrix = None
        self.context = scratch_dir(out)
        self.path: Path | None = None

    def __enter__(self) -> Scratch:
        return self

    def append(self, block: np.ndarray) -> None:
        if self.matrix is None:
            self.matrix = ScratchSource(self.directory() / "rows.f32", block.shape[1])
        self.matrix.append(block)

    def directory(self) -> Path:
        """The scratch directory, created now if no block has been appended yet (a cluster run
        holds its rows on the workers; its final pass writes here)."""
        if self.path is None:
            self.path = self.context.__enter__()
        return self.path

    @property
    def segments(self) -> Path:
        return self.directory() / rundir.SEGMENTS

    def __exit__(self, *exc: Any) -> None:
        if self.matrix is not None:
            self.matrix.close()
        if self.path is not None:
            self.context.__exit__(*exc)


def source_of(data: FeatureData) -> BatchSource:
    """The fit's rows: the matrix in memory, or the streamed run's scratch file."""
    return ArraySource(data.X) if data.X is not None else data.scratch


def stream_blocks(inp: Input) -> int | None:
    """How many blocks a streamed pass over ``inp`` has (None for a CSV: its rows are estimated)."""
    return None if inp.format == "csv" else -(-count_rows(inp) // layout.BLOCK_ROWS)


def final_pass(inp: Input, data: FeatureData, fit: FitResult, seed: int, path: Path,
               meta: dict[str, Any], progress: Progress = SILENT) -> InsightPass:
    """Each input block read once more (the insight's columns and the ids): its kept rows read
    back from the scratch file and assigned to the fitted centres (the primitive of the fit's
    last pass, which assigned them to these centres: the same labels and distances), one row
    group of ``segments.parquet`` written to ``path``, and the block fed to the insight's pass.
    No label or distance of every row is held at once."""
    k = fit.centers.shape[0]
    insight = InsightPass(inp.schema(), inp.label, data.spec, data.fitted.levels, k, seed, data.n_rows)
    columns = unique(insight.columns() + ([data.spec.id_col] if data.spec.id_col else []))
    writer = SegmentWriter(path, meta)
    buffer = np.empty((max(b.n_kept for b in data.blocks), data.scratch.n_features), dtype=np.float32)
    with progress.stage("assigning blocks", len(data.blocks)) as advance:
        pass_blocks(inp, data, fit, insight, writer, columns, buffer, advance)
    return insight


def pass_blocks(inp: Input, data: FeatureData, fit: FitResult, insight: InsightPass, writer: SegmentWriter,
                columns: list[str], buffer: np.ndarray, advance) -> None:
    """The final pass's loop (see ``final_pass``)."""
    used = 0
    try:
        for block, (start, frame) in zip(data.blocks, layout.blocks(inp, data.n_rows, columns)):
            labels, dist2, _ = assign_rows(data.scratch.read_into(used, buffer[:block.n_kept]), fit.centers)
            if not np.array_equal(labels, fit.labels[used:used + block.n_kept]):
                raise RuntimeError(f"rows {start:,}..: the final pass disagrees with the fit's last pass")
            mask = block.mask()
            writer.write(block_ids(inp, data.spec, block, frame), labels, dist2, mask)
            insight.add(start, frame.select(insight.columns()), row_labels(labels, mask))
            used += block.n_kept
            advance(1)
    finally:
        writer.close()
