"""PCA before k-means: principal components of the scaled feature matrix.

Fitted on a uniform sample of the scaled rows (``SAMPLE_ROWS``, or every row when fewer), with
numpy only: the covariance matrix of the centred sample, each entry one pairwise sum in a fixed
order, then the SVD of that small ``d x d`` matrix. Nothing goes through a threaded BLAS
reduction, so the components are the same bits on any thread count. Each component's sign is
fixed (its largest loading positive), as in the report's 2-D projection, so reruns agree.

``PCA.transform`` projects rows in blocks, accumulating the features in a fixed order, for the
same reason. The model saves the mean, the components and the explained variance
(``to_dict``/``from_dict``); ``predict`` applies them before it assigns rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.features.spec import PCASetting, parse_pca_table

SAMPLE_ROWS = 100_000
BLOCK_ROWS = 65_536
MAX_FEATURES = 4_096  # a model file's PCA is refused beyond this (no unbounded allocation on load)


@dataclass(frozen=True)
class PCA:
    """The fitted projection: ``(x - mean) @ components.T`` maps scaled rows to components."""

    setting: PCASetting
    names: tuple[str, ...]  # the scaled features, in matrix order
    mean: np.ndarray  # (d,) float64
    components: np.ndarray  # (m, d) float64, rows orthonormal
    explained_variance: np.ndarray  # (m,) variance along each component (sample, ddof=1)
    explained_variance_ratio: np.ndarray  # (m,) its share of the total variance of the features
    sample: int  # rows the PCA was fitted on

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Rows of scaled features -> float32 C-ordered component scores, block by block."""
        n, d = X.shape
        if d != len(self.names):
            raise InputError(f"PCA expects {len(self.names)} features, the matrix has {d}")
        out = np.empty((n, self.n_components), dtype=np.float32)
        for start in range(0, n, BLOCK_ROWS):
            block = np.asarray(X[start:start + BLOCK_ROWS], dtype=np.float64) - self.mean
            out[start:start + block.shape[0]] = project(block, self.components)
        return out

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        """Component scores (e.g. the centres) back to scaled features: ``z @ components + mean``."""
        Z = np.asarray(Z, dtype=np.float64)
        acc = np.zeros((Z.shape[0], len(self.names)))
        for j in range(self.n_components):  # a fixed order of summation
            acc += Z[:, j:j + 1] * self.components[j]
        return acc + self.mean

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` and the report show: variance per component and the loadings."""
        ratio = [float(r) for r in self.explained_variance_ratio]
        return {"setting": self.setting.to_dict(), "components": self.n_components, "features": len(self.names),
                "sample": self.sample, "explained_variance_ratio": ratio,
                "cumulative_variance_ratio": [float(c) for c in np.cumsum(ratio)],
                "loadings": [{"component": f"pc{j + 1}", **{n: float(v) for n, v in zip(self.names, row)}}
                             for j, row in enumerate(self.components)]}

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting.to_dict(), "names": list(self.names), "mean": self.mean.tolist(),
                "components": self.components.tolist(), "explained_variance": self.explained_variance.tolist(),
                "explained_variance_ratio": self.explained_variance_ratio.tolist(), "sample": self.sample}

    @classmethod
    def from_dict(cls, data: Any, names: tuple[str, ...]) -> PCA:
        """A model file's PCA, checked: the model's features, finite numbers, matching shapes."""
        if not isinstance(data, dict):
            raise InputError("model pca must be an object")
        setting = parse_pca_table(data.get("setting"), "model pca")
        if data.get("names") != list(names):
            raise InputError("model pca: its features are not the model's features")
        d = len(names)
        if d > MAX_FEATURES:
            raise InputError(f"model pca: too many features ({d})")
        mean = finite_array(data.get("mean"), "mean", (d,))
        components = finite_array(data.get("components"), "components", (None, d))
        m = components.shape[0]
        if not 1 <= m <= d:
            raise InputError(f"model pca: {m} components for {d} features")
        if not np.allclose(components @ components.T, np.eye(m), atol=1e-6):
            raise InputError("model pca: the components are not orthonormal")
        variance = finite_array(data.get("explained_variance"), "explained_variance", (m,))
        ratio = finite_array(data.get("explained_variance_ratio"), "explained_variance_ratio", (m,))
        sample = data.get("sample")
        if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
            raise InputError("model pca: sample must be a positive whole number")
        return cls(setting, tuple(names), mean, components, variance, ratio, sample)


def finite_array(value: Any, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """A JSON list (of lists) of finite numbers with ``shape`` (None: any length)."""
    rows = value if len(shape) == 2 else [value]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows) or not rows:
        raise InputError(f"model pca: {key} must be a list of numbers")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for r in rows for x in r):
        raise InputError(f"model pca: {key} must hold finite numbers only")
    if len(shape) == 2 and len(rows) > MAX_FEATURES:
        raise InputError(f"model pca: {key} has too many rows")
    try:
        array = np.array(value, dtype=np.float64)
    except ValueError:
        raise InputError(f"model pca: {key} rows have different lengths") from None
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        raise InputError(f"model pca: {key} has shape {array.shape}, expected {tuple(s or 'm' for s in shape)}")
    return array


def project(block: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``block @ components.T``, one feature at a time (elementwise numpy: no threaded reduction)."""
    acc = np.zeros((block.shape[0], components.shape[0]))
    for i in range(components.shape[1]):
        acc += block[:, i:i + 1] * components[:, i]
    return acc


def covariance(S: np.ndarray) -> np.ndarray:
    """The sample covariance (ddof=1) of centred rows, each entry a pairwise sum over one column pair."""
    n, d = S.shape
    cols = np.asfortranarray(S)
    C = np.empty((d, d))
    for i in range(d):
        for j in range(i, d):
            C[i, j] = C[j, i] = float(np.sum(cols[:, i] * cols[:, j])) / max(n - 1, 1)
    return C


def choose_count(setting: PCASetting, ratio: np.ndarray, names: tuple[str, ...]) -> int:
    """How many components the setting keeps (checked against the number of features)."""
    d = len(names)
    if setting.components is not None:
        if setting.components > d:
            raise InputError(f"{setting.where} {setting.components}: more components than the {d} features "
                             f"({', '.join(names)})")
        return setting.components
    cumulative = np.cumsum(ratio)
    return int(min(d, 1 + np.searchsorted(cumulative, setting.variance - 1e-12)))


def fit_pca(X: np.ndarray, setting: PCASetting, names: tuple[str, ...], seed: int) -> PCA:
    """Principal components of the scaled rows ``X`` (a seeded uniform sample of at most
    ``SAMPLE_ROWS`` of them), as many as ``setting`` asks for."""
    n, d = X.shape
    if setting.components is not None and setting.components > d:
        choose_count(setting, np.ones(d) / d, names)  # the error, before any work
    rng = np.random.default_rng([seed, 11])
    idx = np.arange(n) if n <= SAMPLE_ROWS else np.sort(rng.choice(n, size=SAMPLE_ROWS, replace=False))
    S = np.asarray(X[idx], dtype=np.float64)
    mean = S.mean(axis=0)
    _, s, vt = np.linalg.svd(covariance(S - mean))
    signs = np.sign(vt[np.arange(d), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    total = float(s.sum())
    ratio = s / total if total > 0 else np.zeros(d)
    m = choose_count(setting, ratio, names)
    return PCA(setting, tuple(names), mean, np.ascontiguousarray(vt[:m]), s[:m].copy(), ratio[:m].copy(), int(idx.size))
