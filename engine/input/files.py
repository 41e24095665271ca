"""Open inputs lazily: Parquet files, directories and globs, or CSV/TSV with the separator sniffed.

Nothing is read here beyond file headers and Parquet footers: the result is a ``LazyFrame``
that later stages project and filter, so only the needed columns are ever read.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InputError, first_line
from engine.outputs.rundir import is_run_dir

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
SEPARATORS = ("\t", ",", ";", "|")
SNIFF_BYTES = 64 * 1024
CSV_NULLS = ["", "NA", "N/A", "null", "NULL", "NaN", "nan"]
CSV_INFER_ROWS = 10_000


@dataclass(frozen=True)
class Input:
    """An opened input: the lazy frame, the files behind it and their format."""

    frame: pl.LazyFrame
    files: tuple[Path, ...]
    format: str  # "parquet", "csv", or "sql" (a DuckDB query's result; see engine/duck/source.py)
    separator: str | None = None
    query: str | None = None  # format "sql": the query that made ``frame``
    rows: int | None = None  # format "sql": rows of the (already computed) result
    info: dict | None = None  # format "sql": what the source reports into metrics.json "input"

    @property
    def label(self) -> str:
        if not self.files:
            return "--sql query"
        files = str(self.files[0]) if len(self.files) == 1 else f"{self.files[0]} (+{len(self.files) - 1} more)"
        return f"{files} (through SQL)" if self.format == "sql" else files

    def schema(self) -> pl.Schema:
        try:
            return self.frame.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"cannot read {self.label}: {first_line(exc)}") from exc


def expand_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named by paths, directories (their Parquet or CSV files) and glob patterns, in order."""
    if not inputs:
        raise InputError("no input given")
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        if any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in globlib.glob(text, recursive=True) if Path(p).is_file())
            if not matched:
                raise InputError(f"no files match {text}")
            files.extend(matched)
            continue
        path = Path(text)
        if path.is_dir():
            found = data_files(path, PARQUET_SUFFIXES) or data_files(path, CSV_SUFFIXES)
            if not found:
                raise InputError(f"directory {path} holds no Parquet or CSV files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"input not found: {path}")
    return files


def data_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files with one of ``suffixes`` below ``directory``, skipping hidden files and folders
    (such as our own temporary outputs) and earlier run directories."""
    found = []
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).parts
        if any(part.startswith((".", "_")) for part in rel) or not p.is_file() or p.suffix.lower() not in suffixes:
            continue
        parents = [directory.joinpath(*rel[:i]) for i in range(len(rel) - 1, -1, -1)]  # p's folder up to directory
        if any(is_run_dir(folder) for folder in parents):
            continue  # a run directory, or the segments/ partitions inside one
        found.append(p)
    return found


def check_parquet_schemas(files: list[Path]) -> None:
    """Every Parquet footer is readable and all files have the same columns and types."""
    first = None
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc
        if first is None:
            first = (path, schema)
            continue
        base_path, base = first
        if schema.names != base.names:
            extra = sorted(set(schema.names) ^ set(base.names))
            raise InputError(f"{path}: columns differ from {base_path} ({', '.join(extra) or 'order'}); "
                             "all input files must have the same schema")
        for field, base_field in zip(schema, base):
            if field.type != base_field.type:
                raise InputError(f"{path}: column {field.name!r} is {field.type} here but {base_field.type} "
                                 f"in {base_path}; all input files must have the same schema")


def check_csv_headers(files: list[Path], separator: str) -> None:
    """All CSV files share the first file's header line."""
    headers = {}
    for path in files:
        with path.open("rb") as fh:
            headers[path] = fh.readline().decode("utf-8", errors="replace").strip().lstrip("\ufeff").split(separator)
    base_path = files[0]
    for path in files[1:]:
        if headers[path] != headers[base_path]:
            raise InputError(f"{path}: header differs from {base_path}; all input files must have the same columns")


def detect_format(path: Path) -> str:
    """``"parquet"`` or ``"csv"``, by suffix, else by the Parquet magic bytes."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":
        return "parquet"
    if not head:
        raise InputError(f"input file is empty: {path}")
    raise InputError(f"{path}: not a Parquet or CSV file (use a .parquet, .csv or .tsv name)")


def sniff_separator(path: Path) -> str:
    """The separator that splits the first lines of a text file into the same number of fields."""
    with path.open("rb") as fh:
        raw = fh.read(SNIFF_BYTES)
    if not raw.strip():
        raise InputError(f"input file is empty: {path}")
    if b"\x00" in raw:
        raise InputError(f"{path}: not a Parquet or CSV file (binary content)")
    lines = [ln for ln in raw.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    if len(raw) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut mid-way
    lines = lines[:50]
    best, best_fields = ",", 1
    for sep in SEPARATORS:
        counts = {ln.count(sep) for ln in lines}
        fields = lines[0].count(sep) + 1
        if len(counts) == 1 and fields > best_fields:
            best, best_fields = sep, fields
    return best


def open_input(inputs: Sequence[str | Path], separator: str | None = None) -> Input:
    """Open one or more inputs of the same format as a single lazy frame."""
    files = expand_paths(inputs)
    for path in files:
        if path.stat().st_size == 0:
            raise InputError(f"input file is empty: {path}")
    formats = {detect_format(p) for p in files}
    if len(formats) > 1:
        raise InputError("inputs mix Parquet and CSV files; give one format at a time")
    fmt = formats.pop()
    if fmt == "parquet":
        check_parquet_schemas(files)
        frame = pl.scan_parquet([str(p) for p in files], missing_columns="raise", extra_columns="raise")
        opened = Input(frame, tuple(files), "parquet")
    else:
        sep = separator or sniff_separator(files[0])
        check_csv_headers(files, sep)
        frame = pl.scan_csv(
            [str(p) for p in files],
            separator=sep,
            null_values=CSV_NULLS,
            infer_schema_length=CSV_INFER_ROWS,
            raise_if_empty=True,
        )
        opened = Input(frame, tuple(files), "csv", sep)
    opened.schema()  # read footers/headers now, so a corrupt file fails here with its name
    return opened
