"""Synthetic data: customers shaped like the marketing_campaign dataset with planted segments
(``customers``), and transactions in planted behaviour groups for the RFM preset
(``transactions``). Both stream in chunks.

May import: ``engine.errors``, ``engine.outputs``.
"""
