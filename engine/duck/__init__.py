"""DuckDB: the only code that imports duckdb, and the only code that writes SQL text.

Owns: connections and their settings (``connect``), quoting and the sandbox; SQL inputs
(``--sql``, a spec's ``[source]``) and the dispatch of every command's INPUT (``source``); the
RFM preset's query (``rfm``); a run's relations for ``segment sql`` and ``--db`` (``views``);
the dashboard's read-only, paged queries (``dashboard``).
May import: ``engine.errors``, ``engine.input``, ``engine.features``, ``engine.fit.model``,
``engine.outputs``.
"""
