"""Outputs that are never half-written: atomic directories and files, the Parquet writer with
the run's key-value metadata, the run directory's file names and its reader, and the charts
(Plotly figures as self-contained HTML).

May import: ``engine.errors`` only (plotly inside the chart functions).
"""
