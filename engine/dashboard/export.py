"""Export: the filtered customers as CSV, streamed.

``csv_chunks`` turns DuckDB's record batches into CSV bytes, one header then the rows, one batch
at a time: memory stays at one batch whatever the number of rows. The id column keeps its input
name and text (a CSV input's id is read as text). Each row ends with its segment, the segment's
name and the distance to its centre.

The app registers an export (the run, the filter and the filter columns it computed) under an
unguessable token and links to ``/export/<token>``; ``export_route`` (mounted by ``asgi.py``)
streams it with ``Content-Disposition: attachment``. The token names a filter the session made,
never a path or SQL: nothing else can be read through it.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.duck.dashboard import DashboardDB, RowFilter, RowSource

MAX_EXPORTS = 64  # tokens kept per server process (the oldest go first)
NAME_COLUMN = "segment_name"


@dataclass(frozen=True)
class Export:
    source: RowSource
    rows: RowFilter
    columns: tuple[tuple[str, pa.Array], ...]  # the filter columns the ranges need: (name, values)
    names: dict[int, str]
    file_name: str


def file_name(rows: RowFilter, names: dict[int, str], today: dt.date | None = None) -> str:
    """``<segment name>-<date>.csv`` for one segment, ``segments-0-2-<date>.csv`` for several,
    ``all-segments-<date>.csv`` for all of them."""
    day = (today or dt.date.today()).isoformat()
    if rows.segments is None or (set(rows.segments) == set(names) and not rows.unsegmented):
        stem = "all-segments"
    elif len(rows.segments) == 1 and not rows.unsegmented:
        j = rows.segments[0]
        stem = f"segment-{j}-{slug(names.get(j, ''))}".rstrip("-")
    else:
        stem = "segments-" + "-".join(str(j) for j in sorted(rows.segments)) + ("-unsegmented" if rows.unsegmented else "")
    return f"{stem}-{day}.csv"


def slug(text: str) -> str:
    """Lower-case words joined by hyphens (``"High income · Older"`` -> ``high-income-older``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def output_names(input_names: list[str]) -> list[str]:
    """The CSV's column names: the input's, then segment, segment_name and distance (prefixed
    with ``run_`` where the input has a column of that name)."""
    taken = set(input_names)
    return [*input_names, *(f"run_{n}" if n in taken else n for n in ("segment", NAME_COLUMN, "distance"))]


def with_names(batch: pa.RecordBatch, names: dict[int, str], header: list[str]) -> pa.RecordBatch:
    """A batch of ``export_reader`` (input columns, ``@segment``, ``@distance``) with the segment's
    name after its number, under the CSV's column names."""
    *columns, segments, distance = batch.columns
    k = max(names, default=-1) + 1
    labels = pa.array([names.get(j, "") for j in range(k)], pa.string())
    named = pc.take(labels, segments) if k else pa.nulls(batch.num_rows, pa.string())
    return pa.RecordBatch.from_arrays([*columns, segments, named, distance], names=header)


def csv_chunks(reader: pa.RecordBatchReader, names: dict[int, str]) -> Iterator[bytes]:
    """CSV bytes: the header once, then each batch's rows as it is read (memory stays at one
    batch); only the header when nothing matches."""
    header = output_names(reader.schema.names[:-2])
    sink = io.BytesIO()
    pacsv.write_csv(pa.table({n: pa.array([], pa.string()) for n in header}), sink)
    yield sink.getvalue()
    for batch in reader:
        if batch.num_rows:
            sink = io.BytesIO()
            pacsv.write_csv(with_names(batch, names, header), sink, pacsv.WriteOptions(include_header=False))
            yield sink.getvalue()


def stream(export: Export) -> Iterator[bytes]:
    """The CSV of ``export``, on a connection of its own (closed at the end)."""
    db = DashboardDB(export.source)
    try:
        db.set_columns(pa.table(dict(export.columns)) if export.columns else None)
        yield from csv_chunks(db.export_reader(export.rows), export.names)
    finally:
        db.close()


_lock = threading.Lock()
_exports: OrderedDict[str, Export] = OrderedDict()


def register(export: Export) -> str:
    """Keep ``export`` under a new token (reused when the same export is registered again)."""
    with _lock:
        for token, known in _exports.items():
            if same(known, export):
                return token
        token = secrets.token_urlsafe(24)
        _exports[token] = export
        while len(_exports) > MAX_EXPORTS:
            _exports.popitem(last=False)
        return token


def same(a: Export, b: Export) -> bool:
    """The same export: equal filters and names over the very same source and columns (Arrow
    tables are compared by identity, not by content)."""
    same_columns = len(a.columns) == len(b.columns) and all(
        x[0] == y[0] and x[1] is y[1] for x, y in zip(a.columns, b.columns))
    return (a.source is b.source and same_columns and a.rows == b.rows and a.names == b.names
            and a.file_name == b.file_name)


def lookup(token: str) -> Export | None:
    with _lock:
        return _exports.get(token)


async def export_route(request):
    """``GET /export/<token>``: the export as a streamed CSV download (404 for an unknown token)."""
    from starlette.responses import PlainTextResponse, StreamingResponse  # Streamlit's server, only here

    export = lookup(request.path_params.get("token", ""))
    if export is None:
        return PlainTextResponse("unknown or expired export; export again from the dashboard", status_code=404)
    disposition = f'attachment; filename="{export.file_name}"'
    return StreamingResponse(stream(export), media_type="text/csv", headers={"Content-Disposition": disposition})
