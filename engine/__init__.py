"""Customer segmentation engine: the Python API.

>>> import engine
>>> result = engine.run(["customers.parquet"], k=5, out="run/", spec="customers")
>>> result.metrics["silhouette"], result.profiles
>>> engine.predict("run/", ["new_customers.parquet"], out="new_segments.parquet")
>>> engine.describe_data(["customers.parquet"])["columns"]
>>> engine.write_report("run/", "run/report.html")
"""

from engine.insight.describe import describe as describe_data
from engine.errors import InputError, InternalError, SegmentError
from engine.synth.customers import generate_customers
from engine.fit.model import Model, load_model
from engine.insight.impact import recompute as recompute_impact
from engine.api import RunResult, SweepResult, predict, run, sweep
from engine.insight.report import write_report
from engine.features.spec import FeatureSpec, load_spec

__all__ = [
    "FeatureSpec",
    "InputError",
    "InternalError",
    "KMeans",
    "Model",
    "RunResult",
    "SweepResult",
    "SegmentError",
    "describe_data",
    "recompute_impact",
    "generate_customers",
    "load_model",
    "load_spec",
    "predict",
    "run",
    "sweep",
    "write_report",
]


def __getattr__(name: str):
    """``engine.KMeans`` on first use: the estimator imports scikit-learn, which the CLI never needs."""
    if name == "KMeans":
        from engine.fit.estimator import KMeans  # scikit-learn stays off the CLI's start-up path

        return KMeans
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"KMeans"})
