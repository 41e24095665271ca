"""Numba kernels over numpy arrays and scalars only: no Polars, DuckDB or I/O here.

Data is float32 and C-contiguous; accumulators are float64. Options live in ``kernels.config``,
shared primitives in ``kernels.core``. One algorithm per module; the feature kernels
(``transform``, ``moments``, ``matrix``, ``levels``) come in three layers: a serial njit kernel,
a parallel driver, and a Python wrapper that checks the arrays and allocates the outputs.

The names below load on first use (PEP 562): ``kernels.assign`` imports ``kernels/assign.py``
when it is first looked up, so a command imports only the kernel modules it calls. ``import
kernels`` imports numba, through ``kernels.config``: that module starts numba (with the optional
imports it would make for nothing held back) and sets ``OMP_WAIT_POLICY`` before numba starts its
threads, so it comes before any kernel module.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from kernels import config  # noqa: F401  (first: numba starts there)

#: public name -> the kernel module that defines it
EXPORTS = {
    **dict.fromkeys(("assign", "lloyd_pass", "reduce_chunks"), "kernels.assign"),
    "chunk_count": "kernels.config",
    **dict.fromkeys(("put_column", "take_rows"), "kernels.core"),
    **dict.fromkeys(("dispersion", "label_sums"), "kernels.indices"),
    "kmeanspp": "kernels.kmeanspp",
    "level_counts": "kernels.levels",
    "write_matrix": "kernels.matrix",
    "minibatch_update": "kernels.minibatch",
    **dict.fromkeys(("ColumnMoments", "column_stats"), "kernels.moments"),
    "silhouette_sorted": "kernels.silhouette",
    **dict.fromkeys(("CLIP", "FILL", "HI", "LO", "LOG1P", "N_PARAMS", "transformed"), "kernels.transform"),
    **dict.fromkeys(("kmeanspp_weighted", "lloyd_pass_weighted", "minibatch_update_weighted", "reduce_weighted"),
                    "kernels.weighted"),
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})


class _Package(types.ModuleType):
    """After loading ``kernels/assign.py`` the import system binds the module as ``kernels.assign``;
    where a kernel has its module's name (``assign``, ``kmeanspp``) the kernel is bound instead, so
    ``kernels.assign`` is always the function, whichever import came first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
