"""Customer segmentation engine: the Python API.

>>> import engine
>>> result = engine.run(["customers.parquet"], k=5, out="run/", spec="customers")
>>> result.metrics["silhouette"], result.profiles
>>> engine.predict("run/", ["new_customers.parquet"], out="new_segments.parquet")
>>> engine.describe_data(["customers.parquet"])["columns"]
>>> engine.write_report("run/", "run/report.html")
"""

from engine.describe import describe as describe_data
from engine.errors import InputError, InternalError, SegmentError
from engine.estimator import KMeans
from engine.generate import generate_customers
from engine.model import Model, load_model
from engine.impact import recompute as recompute_impact
from engine.pipeline import RunResult, SweepResult, predict, run, sweep
from engine.report import write_report
from engine.spec import FeatureSpec, load_spec

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
