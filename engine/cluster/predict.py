"""``segment predict --cluster``: every block of the new customers read, built with the model's
statistics and assigned on a worker; the client puts the blocks' results together in block order
and writes the one output file, as the local predict does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
from distributed import Client

from engine.cluster.source import on_worker, results
from engine.features.build import build_features, check_ids, resolve_spec
from engine.features.stream import Block, block_ids, raw_columns
from engine.fit.kmeans import assign_rows
from engine.fit.model import Model
from engine.input import blocks as layout
from engine.input.files import Input


def predict_block(inp: Input, model: Model, start: int, rows: int, columns: list[str]) -> tuple:
    """A worker's block: its ids, the kept rows' labels and squared distances, the kept mask, the SSE."""
    frame = on_worker(f"cannot read {inp.label}", layout.read_block, inp, start, rows, columns)
    part = build_features(replace(inp, frame=frame.lazy(), rows=rows), model.spec, fitted=model.fitted,
                          allow_duplicate_ids=True)
    labels, dist2, sse = assign_rows(part.X, model.centers)
    kept = np.ones(rows, dtype=bool) if part.kept is None else part.kept
    return block_ids(inp, part.spec, Block(start, rows, None, rows), frame), labels, dist2, kept, sse


def cluster_predict(client: Client, inp: Input, model: Model, allow_duplicate_ids: bool) -> tuple:
    """``(ids, labels, dist2, kept, rows, inertia)``: the local predict's, but for the inertia, a sum
    of the blocks' SSE (the same squared distances added in another order: equal to about 1e-12
    relative, not bit for bit)."""
    n_rows = layout.row_count(inp)
    spec = resolve_spec(model.spec, inp.schema(), inp.label)
    columns = raw_columns(inp, spec)
    size = layout.BLOCK_ROWS
    parts = results(client, [client.submit(predict_block, inp, model, start, min(size, n_rows - start), columns,
                                           pure=False) for start in layout.block_starts(n_rows, size)])
    ids = pl.concat([p[0] for p in parts]) if parts else pl.Series("row_id", [], pl.Int64)
    if not allow_duplicate_ids:
        check_ids(ids, inp.label)
    labels = np.concatenate([p[1] for p in parts])
    dist2 = np.concatenate([p[2] for p in parts])
    kept = np.concatenate([p[3] for p in parts])
    return ids, labels, dist2, None if kept.all() else kept, n_rows, float(sum(p[4] for p in parts))
