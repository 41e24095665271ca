"""The saved model: plain JSON, never pickle.

``model.json`` holds the format version, the resolved feature spec, the fitted feature
statistics (clip bounds, medians, levels, scaler), the centroids in scaled and original units,
and what is needed to reproduce the run. A model fitted on principal components (``[pca]``,
``--pca``) also holds ``pca`` (mean, components, explained variance) and is format version 2,
so an engine that predates PCA refuses it instead of assigning rows in the wrong space; its
``centroids.scaled`` are in component space, ``centroids.original`` mapped back to the features.
A model without PCA is written, hashed and read exactly as before (version 1). Loading validates every field, shape and size, so a
crafted file can neither run code nor make us allocate without bound.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.features.build import FittedFeatures
from engine.features.pca import PCA
from engine.features.spec import FeatureSpec

FORMAT = "segment-model"
FORMAT_VERSION = 1
PCA_FORMAT_VERSION = 2  # written only by models with a PCA; both are read
CORE_KEYS = ("format", "format_version", "k", "features", "spec", "fitted", "centroids", "pca")
MAX_MODEL_BYTES = 64 * 1024 * 1024
MAX_CELLS = 10_000_000  # k x features


@dataclass(frozen=True)
class Model:
    spec: FeatureSpec
    fitted: FittedFeatures
    centers: np.ndarray  # (k, d) float32, scaled space (with pca: (k, m), component space)
    info: dict[str, Any]  # seed, params, versions, input fingerprint, inertia...
    pca: PCA | None = None  # principal components the rows are projected on before assignment

    @property
    def k(self) -> int:
        return int(self.centers.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scaled feature rows -> the space the centres live in (the components, with PCA)."""
        return X if self.pca is None else self.pca.transform(X)

    def scaled_centers(self) -> np.ndarray:
        """Centroids in scaled feature units (with PCA: mapped back from the components)."""
        return self.centers if self.pca is None else self.pca.inverse(self.centers)

    def original_centers(self) -> np.ndarray:
        """Centroids in the features' own units: unscaled, and log1p undone."""
        values = self.fitted.scaler.inverse(self.scaled_centers())
        logged = {f.name for f in self.spec.features if f.log1p}
        for j, name in enumerate(self.fitted.names):
            if name in logged:
                values[:, j] = np.expm1(values[:, j])
        return values

    def to_dict(self) -> dict[str, Any]:
        pca = {} if self.pca is None else {"pca": self.pca.to_dict()}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION if self.pca is None else PCA_FORMAT_VERSION,
            "k": self.k,
            "features": list(self.fitted.names),
            "spec": self.spec.to_dict(),
            "fitted": self.fitted.to_dict(),
            "centroids": {
                "scaled": self.centers.astype(float).tolist(),
                "original": self.original_centers().tolist(),
            },
            **pca,
            **self.info,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")

    def digest(self) -> str:
        """``sha256:...`` of what assigns a row to a segment: the spec, the fitted statistics and the
        centroids (not the run's options, timings or versions, so the same model has the same hash
        whatever the thread count). The Parquet outputs carry it as ``segment.model_hash``."""
        data = self.to_dict()
        core = {key: data[key] for key in CORE_KEYS if key in data}
        return "sha256:" + hashlib.sha256(json.dumps(core, sort_keys=True, allow_nan=False).encode()).hexdigest()


def model_path(path: str | Path) -> Path:
    """``model.json`` itself, or the one inside a run directory."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.json"
    if not p.is_file():
        raise InputError(f"model not found: {p}")
    return p


def load_model(path: str | Path) -> Model:
    p = model_path(path)
    if p.stat().st_size > MAX_MODEL_BYTES:
        raise InputError(f"{p}: model file is larger than {MAX_MODEL_BYTES // 2**20} MiB; refusing to load it")
    try:
        data = json.loads(p.read_text(encoding="utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise InputError(f"{p}: not a valid model file: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{p}: not a segment model (missing \"format\": \"{FORMAT}\")")
    version = data.get("format_version")
    if version not in (FORMAT_VERSION, PCA_FORMAT_VERSION) or isinstance(version, bool):
        raise InputError(f"{p}: model format version {version!r} is not supported (this engine reads versions "
                         f"{FORMAT_VERSION} and {PCA_FORMAT_VERSION})")
    if (version == PCA_FORMAT_VERSION) != ("pca" in data):
        raise InputError(f"{p}: a version {version} model must {'' if version == PCA_FORMAT_VERSION else 'not '}"
                         "hold a \"pca\" object")
    try:
        spec = FeatureSpec.from_dict(data.get("spec"))
        fitted = FittedFeatures.from_dict(data.get("fitted"))
        pca = PCA.from_dict(data["pca"], fitted.names) if "pca" in data else None
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from exc
    centroids = data.get("centroids")
    if not isinstance(centroids, dict):
        raise InputError(f"{p}: centroids must be an object with a \"scaled\" list")
    centers = centers_from(centroids.get("scaled"), len(fitted.names) if pca is None else pca.n_components, p)
    k = data.get("k")
    if not isinstance(k, int) or isinstance(k, bool) or k != centers.shape[0]:
        raise InputError(f"{p}: k={k!r} does not match the {centers.shape[0]} centroids")
    info = {k: v for k, v in data.items() if k not in CORE_KEYS}
    return Model(spec, fitted, centers, info, pca)


def reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a model file")


def centers_from(value: Any, n_features: int, path: Path) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise InputError(f"{path}: centroids must be a non-empty list of rows")
    if len(value) * max(n_features, 1) > MAX_CELLS:
        raise InputError(f"{path}: centroids are too large ({len(value)} x {n_features})")
    if any(len(r) != n_features for r in value):
        raise InputError(f"{path}: every centroid must have {n_features} values (one per feature or component)")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for r in value for x in r):
        raise InputError(f"{path}: centroids must hold finite numbers only")
    return np.ascontiguousarray(np.array(value, dtype=np.float32))
