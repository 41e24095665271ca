"""Stage 4, insight: what marketing reads. Per-segment profiles in original units, names,
actions, the campaign impact table, the EDA summary (``describe``) and the HTML report.

Owns: ``Insight`` (the run's insight stage), ``InsightPass`` (its figures from blocks of the input
and their labels: ``onepass``), ``profile_table``, ``describe``, ``impact``, ``write_report``.
May import: ``engine.errors``, ``engine.input``, ``engine.features``, ``engine.fit``,
``engine.outputs``, ``engine.duck`` (``describe --sql``, the RFM products column), ``engine.present``,
``kernels`` (``segments`` and ``hashsample``, for the one pass).
"""
