"""Stage 1, input: open Parquet files, directories and globs, or CSV/TSV, lazily; estimate the
memory a run needs; read it in fixed blocks of rows (``blocks``) for streamed runs.

Owns: ``Input`` (an opened input), path expansion, CSV sniffing, the memory estimate, the block layout.
May import: ``engine.errors``, ``engine.outputs.rundir`` (to refuse a run directory as input).
Never imports duckdb: SQL inputs are opened by ``engine.duck.source``.
"""
