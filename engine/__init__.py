"""Customer segmentation engine: the Python API.

>>> import engine
>>> result = engine.run(["customers.parquet"], k=5, out="run/", spec="customers")
>>> result.metrics["silhouette"], result.profiles
>>> engine.predict("run/", ["new_customers.parquet"], out="new_segments.parquet")
"""

from engine.errors import InputError, InternalError, SegmentError
from engine.estimator import KMeans
from engine.generate import generate_customers
from engine.model import Model, load_model
from engine.pipeline import RunResult, SweepResult, predict, run, sweep
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
    "generate_customers",
    "load_model",
    "load_spec",
    "predict",
    "run",
    "sweep",
]
