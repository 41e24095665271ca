"""The dashboard: ``segment dashboard RUN_DIR`` serves a run's outputs as a Streamlit app for the
people who act on segments (overview, customer table with filters and a streamed CSV export,
campaign what-if, a predict form, and the comparison of two runs).

Owns: the run-directory checks made before the server starts and the file names it reads
(``rundata``), the launcher (``serve``), the Streamlit script (``app``) and its ASGI entry with
the export route (``asgi``), the Explore data (``data``), the CSV export (``export``), the
what-if (``whatif``), the predict form (``predict``), the comparison (``compare``) and the
dashboard's own charts (``figures``).
May import: ``engine.errors``, ``engine.input``, ``engine.features``, ``engine.fit``,
``engine.insight``, ``engine.outputs``, ``engine.duck`` (only ``engine.duck.dashboard`` for its
queries, and ``engine.duck.source`` to rerun a run's SQL source), ``engine.api`` (the input
fingerprint); streamlit, starlette and plotly only in ``app``, ``asgi``, the route and inside
the chart functions. Nothing in ``engine`` outside this package imports it, and ``cli.py`` imports
only ``serve``.
"""
