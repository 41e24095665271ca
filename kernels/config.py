"""Numba options and work partitioning, in one place (and numba's start-up, below).

Every kernel in this package is ``@njit(cache=True, **JIT)`` (serial), ``PARALLEL`` or ``INLINE``.
Work splits into fixed row chunks whose size depends only on the row count, never on the
thread count: each chunk owns its accumulators and the reduction runs in chunk order, so
results are bitwise identical for 1, 2 or 16 threads.
"""

from __future__ import annotations

import importlib.abc
import os
import sys

# OpenMP workers that spin between parallel regions starve the main thread on small machines:
# on a 2-vCPU VM a trivial prange call cost 1-8 ms with spinning and 0.01 ms with passive waiting,
# and a 2M x 16 Lloyd pass took 120 ms against 81 ms. The user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _Refuse(importlib.abc.MetaPathFinder):
    """A finder that makes some packages (and their submodules) unimportable while it is on
    ``sys.meta_path``."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ModuleNotFoundError(f"{fullname} is held back while numba starts", name=fullname)
        return None


def held_back() -> set[str]:
    """What numba's start-up would import for nothing here (each measured in a new process on the
    2-core machine):

    - ``scipy.linalg``: numba.np.arraymath's BLAS probe, run at its import, loads it where SciPy is
      installed (scikit-learn brings it): 0.1 to 0.15 s, for a probe that only picks how
      np.correlate and np.convolve are compiled. No kernel here calls them, nor np.dot or
      np.linalg (which import scipy.linalg themselves when compiled), so arraymath uses its own
      loop for those two in this process; scipy.linalg imports normally afterwards.
    - ``scipy`` itself (0.07 s): numba imports it only to check its version, and skips the check
      without it. Left alone when SciPy is already loaded.
    - ``coverage`` (0.06 to 0.09 s, a test dependency): numba reports the lines it compiles to a
      coverage measurement that is running. Left alone when coverage is loaded, as it is while it
      measures.
    - ``yaml`` (0.01 to 0.02 s): numba reads ``.numba_config.yaml`` from the working directory with
      it. Left alone when that file is there. (``NUMBA_*`` variables work either way.)
    """
    names = {"scipy.linalg"}
    names |= {name for name in ("scipy", "coverage") if name not in sys.modules}
    if not os.path.isfile(".numba_config.yaml"):
        names.add("yaml")
    return names


# numba starts here: every kernel module and engine.fit.threads import this module before numba
# (``kernels/__init__.py`` imports it first), so numba.np.arraymath, which numba's first compile or
# cache load would import anyway, is loaded now, with the imports above held back. Without SciPy,
# coverage or PyYAML installed this changes nothing. Each of these modules imports normally once
# numba is loaded; numba only remembers that coverage and yaml were missing, so a coverage
# measurement started later in this process does not see compiled lines (one started first does).
_held_back = _Refuse(held_back())
sys.meta_path.insert(0, _held_back)
try:
    import numba.np.arraymath  # noqa: F401  (the probe runs at its import)
finally:
    sys.meta_path.remove(_held_back)

# Strict IEEE arithmetic apart from the sign of zero. Reassociated sums, fused multiply-adds
# and approximate sqrt let LLVM pick the rounding, and its picks differed between a fresh
# compile and the cached object code: the same run gave other bits the first time after
# install. The kernels vectorise without them (element-wise loops over transposed blocks,
# explicit lanes), so every result is fixed by the source alone. NaN/inf are never assumed away.
FASTMATH = {"nsz"}

# Every kernel is decorated ``@njit(cache=True, **JIT)`` (or PARALLEL / INLINE): compiled code is
# cached on disk, so a second process compiles nothing.
JIT = {"nogil": True, "fastmath": FASTMATH, "error_model": "numpy"}
PARALLEL = {**JIT, "parallel": True}
INLINE = {**JIT, "inline": "always"}

#: Smallest unit of parallel work, in rows.
MIN_CHUNK_ROWS = 256
#: Upper bound on the number of chunks.
MAX_CHUNKS = 4096
#: Per-chunk accumulators (chunks x width float64) stay under this many bytes.
ACCUMULATOR_BYTES = 32 * 2**20


def chunk_count(n_rows: int, width: int = 1) -> int:
    """Number of chunks for ``n_rows`` rows whose accumulators hold ``width`` float64 each
    (k x d for Lloyd sums): a function of the shape alone, never of the thread count."""
    if n_rows <= 0:
        return 1
    limit = max(16, min(MAX_CHUNKS, ACCUMULATOR_BYTES // (8 * max(width, 1))))
    rows = max(MIN_CHUNK_ROWS, -(-n_rows // limit))
    rows = -(-rows // MIN_CHUNK_ROWS) * MIN_CHUNK_ROWS  # round up to a multiple of 256
    return -(-n_rows // rows)
