"""How many threads the numba kernels run on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import kernels  # noqa: F401  (before numba: numba starts in kernels.config)
import numba

from engine.errors import InputError


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Run numba kernels on ``threads`` threads (all cores when None)."""
    if threads is None:
        yield numba.get_num_threads()
        return
    if threads < 1:
        raise InputError(f"--threads must be at least 1, not {threads}")
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(previous)
