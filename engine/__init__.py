"""Customer segmentation engine: the Python API.

>>> import engine
>>> result = engine.run(["customers.parquet"], k=5, out="run/", spec="customers")
>>> result.metrics["silhouette"], result.profiles
>>> engine.predict("run/", ["new_customers.parquet"], out="new_segments.parquet")
>>> engine.explain("run/", depth=3)["fidelity"]
>>> engine.refresh("run/", ["next_quarter.csv"], out="run_q2/").comparison.summary["moves"]
>>> engine.describe_data(["customers.parquet"])["columns"]
>>> engine.write_report("run/", "run/report.html")
>>> from sklearn.pipeline import make_pipeline
>>> make_pipeline(StandardScaler(), engine.KMeans(n_clusters=3)).fit(X)

The layout follows the pipeline (each sub-package's docstring says what it owns and may import):
``input`` -> ``features`` -> ``fit`` -> ``insight`` -> ``outputs``, with ``duck`` (all DuckDB and
SQL), ``synth`` (generated data), ``options`` (typed run options), ``present`` (terminal
formatting) and ``api`` (the stages in order).

Names are imported on first use, so ``import engine.options`` (the CLI's start-up path) loads no
Polars, numba or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> (module, attribute)
EXPORTS = {
    "FeatureSpec": ("engine.features.spec", "FeatureSpec"),
    "load_spec": ("engine.features.spec", "load_spec"),
    "InputError": ("engine.errors", "InputError"),
    "OutputError": ("engine.errors", "OutputError"),
    "SegmentError": ("engine.errors", "SegmentError"),
    "KMeans": ("engine.fit.estimator", "KMeans"),
    "Model": ("engine.fit.model", "Model"),
    "load_model": ("engine.fit.model", "load_model"),
    "RunOptions": ("engine.options", "RunOptions"),
    "SweepOptions": ("engine.options", "SweepOptions"),
    "PredictOptions": ("engine.options", "PredictOptions"),
    "RunResult": ("engine.api", "RunResult"),
    "SweepResult": ("engine.api", "SweepResult"),
    "run": ("engine.api", "run"),
    "sweep": ("engine.api", "sweep"),
    "predict": ("engine.api", "predict"),
    "refresh": ("engine.api", "refresh"),
    "RefreshResult": ("engine.api", "RefreshResult"),
    "RefreshOptions": ("engine.options", "RefreshOptions"),
    "explain": ("engine.insight.rules", "explain"),
    "compare": ("engine.insight.migration", "compare"),
    "describe_data": ("engine.insight.describe", "describe"),
    "recompute_impact": ("engine.insight.impact", "recompute"),
    "write_report": ("engine.insight.report", "write_report"),
    "generate_customers": ("engine.synth.customers", "generate_customers"),
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
