"""Per-segment profiles in the features' original units, computed with Polars aggregates."""

from __future__ import annotations

import numpy as np
import polars as pl


def profile_table(original: pl.DataFrame, labels: np.ndarray, k: int) -> pl.DataFrame:
    """One row per segment: ``segment``, ``size``, ``share``, then ``{feature}_mean`` and
    ``{feature}_median`` for every feature, in original units (before clipping, log1p and scaling;
    one-hot columns give the share of the level)."""
    features = original.lazy().collect_schema().names()
    aggs = [pl.len().cast(pl.Int64).alias("size")]
    for name in features:
        aggs.append(pl.col(name).mean().alias(f"{name}_mean"))
        aggs.append(pl.col(name).median().alias(f"{name}_median"))
    grouped = (
        original.lazy()
        .with_columns(pl.Series("segment", labels, dtype=pl.Int32))
        .group_by("segment")
        .agg(aggs)
    )
    segments = pl.LazyFrame({"segment": pl.Series(np.arange(k, dtype=np.int32))})
    return (
        segments.join(grouped, on="segment", how="left")
        .with_columns(pl.col("size").fill_null(0))
        .with_columns((pl.col("size") / pl.col("size").sum()).alias("share"))
        .select(["segment", "size", "share", *[f"{n}_{s}" for n in features for s in ("mean", "median")]])
        .sort("segment")
        .collect()
    )


def format_profiles(profiles: pl.DataFrame, stat: str = "mean") -> str:
    """The profile table for a terminal: one row per feature, one column per segment."""
    features = [c[: -len(stat) - 1] for c in profiles.columns if c.endswith(f"_{stat}")]
    header = ["segment"] + [str(s) for s in profiles["segment"].to_list()]
    rows = [
        ["size"] + [f"{v:,}" for v in profiles["size"].to_list()],
        ["share"] + [f"{v:.1%}" for v in profiles["share"].to_list()],
    ]
    for name in features:
        rows.append([f"{name} ({stat})"] + [fmt_number(v) for v in profiles[f"{name}_{stat}"].to_list()])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r))
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def fmt_number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def format_table(table: pl.DataFrame) -> str:
    """A small table for a terminal: numbers rounded, None as '-'."""
    header = table.columns
    rows = [[fmt_cell(v) for v in row] for row in table.iter_rows()]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    text = [table.schema[h] == pl.String for h in header]  # text left-aligned, numbers right-aligned

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if t else c.rjust(w) for c, w, t in zip(cells, widths, text)).rstrip()

    lines = [line([str(h) for h in header])]
    lines.append("-" * len(lines[0]))
    lines += [line(r) for r in rows]
    return "\n".join(lines)


def fmt_cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return fmt_number(value) if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)
