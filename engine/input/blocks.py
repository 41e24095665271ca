"""The input as fixed blocks of rows, counted from the first row of the data.

Every pass of a streamed run (``engine.features.stream``) reads the input block by block: rows
``BLOCK_ROWS * b .. BLOCK_ROWS * (b + 1) - 1`` whatever the files, their row groups, the thread
count or (later) the workers. Blocks are a multiple of the kernels' fixed chunks
(``kernels.segments.CHUNK_ROWS``), so per-block partial results fold into the same totals as one
pass over everything. A block is read as a slice of the lazy input: Polars reads only the row
groups (Parquet) or lines (CSV) it covers, and only the columns asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import numpy as np
import polars as pl

from engine.errors import InputError, first_line
from engine.input.files import Input

#: Rows per block: 16 of the kernels' 65,536-row chunks (a multiple of them, always).
BLOCK_ROWS = 1 << 20


def row_count(inp: Input) -> int:
    """The exact number of rows (Parquet footers, a SQL result's size, or a count of the CSV's rows)."""
    if inp.rows is not None:
        return inp.rows
    try:
        return int(inp.frame.select(pl.len()).collect().item())
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {inp.label}: {first_line(exc)}") from exc


def block_starts(n_rows: int, block_rows: int | None = None) -> range:
    """First row of every block."""
    return range(0, n_rows, block_rows or BLOCK_ROWS)


def read_block(inp: Input, start: int, rows: int, columns: Sequence[str]) -> pl.DataFrame:
    """The named columns of rows ``start .. start + rows - 1``."""
    try:
        return inp.frame.slice(start, rows).select(columns).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {inp.label}: {first_line(exc)}") from exc


def blocks(inp: Input, n_rows: int, columns: Sequence[str],
           block_rows: int | None = None) -> Iterator[tuple[int, pl.DataFrame]]:
    """``(first row, frame)`` of every block, in order, with the named columns. Parquet and SQL
    results are sliced (Polars reads only the row groups a block covers); a CSV is parsed once,
    front to back, by Polars' streaming engine, and its batches cut into blocks (a slice of a CSV
    at an offset parses everything before it again)."""
    size = block_rows or BLOCK_ROWS
    if inp.format != "csv":
        for start in block_starts(n_rows, size):
            yield start, read_block(inp, start, min(size, n_rows - start), columns)
        return
    start, pending, held = 0, [], 0
    try:
        for batch in inp.frame.select(columns).collect_batches(chunk_size=size):
            pending.append(batch)
            held += batch.height
            while held >= size or (held and start + held >= n_rows):
                frame = pl.concat(pending, rechunk=True)
                take = min(size, frame.height)
                yield start, frame.slice(0, take)
                start, pending, held = start + take, [frame.slice(take)], frame.height - take
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read {inp.label}: {first_line(exc)}") from exc
    if start != n_rows:
        raise InputError(f"cannot read {inp.label}: {start:,} rows read where {n_rows:,} were counted")


def gather(inp: Input, n_rows: int, rows: np.ndarray, columns: Sequence[str],
           block_rows: int | None = None) -> pl.DataFrame:
    """The rows numbered ``rows`` (ascending) with the named columns, read block by block: the
    memory held is the gathered rows and one block."""
    parts = []
    for start, block in blocks(inp, n_rows, columns, block_rows):
        lo, hi = np.searchsorted(rows, [start, start + block.height])
        if hi > lo:
            parts.append(block.select(pl.all().gather(rows[lo:hi] - start)) if hi - lo < block.height else block)
    if not parts:
        return read_block(inp, 0, 0, columns)
    return pl.concat(parts, rechunk=True)
