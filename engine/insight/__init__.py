"""Stage 4, insight: what marketing reads. Per-segment profiles in original units, names,
actions, the campaign impact table, the EDA summary (``describe``) and the HTML report.

Owns: ``Insight`` (the run's insight stage), ``profile_table``, ``describe``, ``impact``,
``write_report``.
May import: ``engine.errors``, ``engine.input``, ``engine.features``, ``engine.fit``,
``engine.outputs``, ``engine.duck`` (``describe --sql``), ``engine.present``.
"""
