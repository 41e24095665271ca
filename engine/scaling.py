"""Scalers as Polars expressions: statistics in one aggregate, applied while the matrix is built."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Scaler:
    """``(x - center) / scale`` per feature; ``method`` is standard, robust or none."""

    method: str
    center: tuple[float, ...]
    scale: tuple[float, ...]

    def exprs(self, names: list[str]) -> list[pl.Expr]:
        return [
            ((pl.col(n) - c) / s).cast(pl.Float32).alias(n) for n, c, s in zip(names, self.center, self.scale)
        ]

    def inverse(self, X: np.ndarray) -> np.ndarray:
        """Scaled values back in feature units (before scaling)."""
        return np.asarray(X, dtype=np.float64) * np.asarray(self.scale) + np.asarray(self.center)

    def to_dict(self) -> dict:
        return {"method": self.method, "center": list(self.center), "scale": list(self.scale)}


def scale_stat_exprs(method: str, name: str) -> list[pl.Expr]:
    """Aggregate expressions for one column: ``{name}__c`` (centre), ``{name}__s`` (spread), ``{name}__v`` (std)."""
    col = pl.col(name)
    std = col.std(ddof=0).alias(f"{name}__v")
    if method == "standard":
        return [col.mean().alias(f"{name}__c"), col.std(ddof=0).alias(f"{name}__s"), std]
    if method == "robust":
        iqr = col.quantile(0.75, "linear") - col.quantile(0.25, "linear")
        return [col.median().alias(f"{name}__c"), iqr.alias(f"{name}__s"), std]
    return [pl.lit(0.0).alias(f"{name}__c"), pl.lit(1.0).alias(f"{name}__s"), std]


def fit_standard(frame: pl.DataFrame, names: list[str]) -> tuple[Scaler, list[str]]:
    """Mean and standard deviation (ddof=0) by numpy's pairwise sums over each whole column.

    Polars adds per-chunk partial sums, and how a frame is chunked depends on the thread count
    that read it; numpy over one contiguous column gives the same bits on any machine.
    """
    center, scale, constant = [], [], []
    for name in names:
        values = frame.get_column(name).to_numpy().astype(np.float64, copy=False)
        mean = float(values.mean())
        std = float(np.sqrt(np.mean((values - mean) ** 2)))
        if not std > 0.0:
            constant.append(name)
            continue
        center.append(mean)
        scale.append(std)
    return Scaler("standard", tuple(center), tuple(scale)), constant


def fit_scaler(frame: pl.DataFrame, method: str, names: list[str]) -> tuple[Scaler, list[str]]:
    """Fit on ``frame`` in one aggregate. Returns the scaler and the names of constant columns.

    Constant columns (zero standard deviation) carry no information and cannot be scaled:
    the caller drops them. A robust scale of zero on a non-constant column (an IQR of zero, as in
    mostly-zero counts) falls back to 1, as scikit-learn's RobustScaler does.
    """
    if not names:
        return Scaler(method, (), ()), []
    if method == "standard":
        return fit_standard(frame, names)
    row = frame.select([e for n in names for e in scale_stat_exprs(method, n)]).row(0, named=True)
    constant = [n for n in names if not row[f"{n}__v"] or row[f"{n}__v"] <= 0.0]
    keep = [n for n in names if n not in constant]
    center = tuple(float(row[f"{n}__c"]) for n in keep)
    scale = tuple(float(row[f"{n}__s"]) if row[f"{n}__s"] and row[f"{n}__s"] > 0 else 1.0 for n in keep)
    return Scaler(method, center, scale), constant
