"""The fitted scaler saved with a model. Its statistics are learnt, and applied, by the feature
kernels (``kernels/moments.py`` and ``kernels/matrix.py``, called from ``engine/features/build.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scaler:
    """``(x - center) / scale`` per feature; ``method`` is standard, robust or none."""

    method: str
    center: tuple[float, ...]
    scale: tuple[float, ...]

    def inverse(self, X: np.ndarray) -> np.ndarray:
        """Scaled values back in feature units (before scaling)."""
        return np.asarray(X, dtype=np.float64) * np.asarray(self.scale) + np.asarray(self.center)

    def to_dict(self) -> dict:
        return {"method": self.method, "center": list(self.center), "scale": list(self.scale)}
