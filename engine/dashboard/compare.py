"""Compare two runs (``segment dashboard RUN --compare OTHER``): segment sizes side by side, and
the migration matrix when the runs share customers (the other run's ``migration.parquet`` when
``segment refresh`` wrote one, else the two ``segments.parquet`` joined on the id in DuckDB)."""

from __future__ import annotations

import polars as pl

from engine.dashboard.rundata import Run
from engine.duck.dashboard import migration
from engine.errors import InputError

ORDER_LAST = ("unsegmented", "new", "gone")


def compare_sizes(run: Run, other: Run) -> pl.DataFrame:
    """``run`` (this / other), segment, name, size, share and a ``label`` for charts."""
    parts = []
    for label, r in (("this run", run), ("other run", other)):
        p = r.profiles.select("segment", "name", "size", "share")
        parts.append(p.with_columns(pl.lit(label).alias("run"),
                                    pl.format("{} {}: {}", pl.lit(label.split()[0]), "segment", "name").alias("label")))
    return pl.concat(parts).select("run", "segment", "name", "size", "share", "label")


def migration_pairs(run: Run, other: Run) -> pl.DataFrame:
    """from_segment, to_segment (text) and customers."""
    if other.migration_file.is_file():
        table = pl.read_parquet(other.migration_file)
        missing = {"from_segment", "to_segment", "customers"} - set(table.columns)
        if missing:
            raise InputError(f"{other.migration_file}: no column {sorted(missing)[0]!r}")
        return table.select(pl.col("from_segment").cast(pl.String), pl.col("to_segment").cast(pl.String),
                            pl.col("customers").cast(pl.Int64))
    if run.id_col != other.id_col:
        raise InputError(f"the runs have different id columns ({run.id_col!r} and {other.id_col!r})")
    return pl.from_arrow(migration(run.segments_file, other.segments_file, run.id_col))


def order_key(label: str) -> tuple[int, int | str]:
    return (1, ORDER_LAST.index(label)) if label in ORDER_LAST else (0, int(label) if label.isdigit() else label)


def migration_matrix(run: Run, other: Run) -> pl.DataFrame:
    """Customers from ``run``'s segments (rows, ``from``) to ``other``'s (one column each), or an
    ``InputError`` saying why there is none (no shared customers, different id columns)."""
    pairs = migration_pairs(run, other)
    shared = pairs.filter(~pl.col("from_segment").is_in(["new"]) & ~pl.col("to_segment").is_in(["gone"]))
    if shared["customers"].sum() == 0:
        raise InputError("the two runs share no customers")
    names_a, names_b = run.names(), other.names()

    def label(value: str, names: dict[int, str]) -> str:
        return f"{value}: {names[int(value)]}" if value.isdigit() and int(value) in names else value

    rows = sorted(pairs["from_segment"].unique().to_list(), key=order_key)
    cols = sorted(pairs["to_segment"].unique().to_list(), key=order_key)
    counts = {(a, b): n for a, b, n in pairs.iter_rows()}
    table = {"from": [label(a, names_a) for a in rows]}
    for b in cols:
        table[label(b, names_b)] = [int(counts.get((a, b), 0)) for a in rows]
    return pl.DataFrame(table)
