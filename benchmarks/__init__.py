"""Benchmarks: `python -m benchmarks [--quick]`. Timings live here, never in tests/."""
