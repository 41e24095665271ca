"""Which cluster a run uses, and the connection: a ``LocalCluster`` started for the run, a running
scheduler's address, or a ``distributed.Client`` the caller holds (never closed here)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
from distributed import Client, LocalCluster

from engine.errors import InputError
from engine.fit.kmeans import block_farthest, block_lloyd
from kernels.segments import SegmentMoments

CONNECT_TIMEOUT = 10  # seconds a scheduler address has to answer


@dataclass
class Cluster:
    """A connected client and what the run reports of it."""

    client: Client
    address: str
    workers: int
    dashboard: str | None

    def summary(self) -> dict[str, Any]:
        return {"scheduler": self.address, "workers": self.workers}


def local_workers(text: str) -> int | None:
    """N of ``local`` / ``local:N`` (None: not a local cluster); ``local`` is one worker per core."""
    name, _, count = text.partition(":")
    if name != "local":
        return None
    if not count:
        return os.cpu_count() or 1
    try:
        n = int(count)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"--cluster {text}: expected local or local:N with N a whole number of workers, 1 or more")
    return n


def warm_kernels() -> None:
    """Compile (or load from numba's on-disk cache) the kernels the workers run, on the client
    first: the workers then load them from the cache instead of each compiling them."""
    X = np.zeros((4, 2), dtype=np.float32)
    block_lloyd(0, X, X[:2], np.dtype(np.int8))
    block_farthest(0, X, X[:2], 1)
    acc = SegmentMoments(2, 1)
    acc.add(np.zeros((4, 1)), np.zeros(4, dtype=np.int32))


@contextlib.contextmanager
def connected(given: Any, log: Callable[[str], None]) -> Iterator[Cluster]:
    """The run's cluster, connected; a ``LocalCluster`` started here is closed on leaving."""
    if isinstance(given, Client):
        yield described(given, log)
        return
    text = str(given).strip()
    n = local_workers(text)
    if n is None:
        with remote(text) as client:
            yield described(client, log)
        return
    warm_kernels()
    threads = max(1, (os.cpu_count() or 1) // n)
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}), \
            LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", env={"NUMBA_NUM_THREADS": str(threads)},
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield described(client, log)


@contextlib.contextmanager
def remote(address: str) -> Iterator[Client]:
    """A client of the scheduler at ``address``; one that does not answer within
    ``CONNECT_TIMEOUT`` seconds is a one-line error."""
    if "://" not in address and ":" not in address:
        raise InputError(f"--cluster {address}: expected local, local:N or a scheduler address tcp://HOST:PORT")
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--cluster {address}: no Dask scheduler answered within {CONNECT_TIMEOUT} s "
                         f"({type(exc).__name__})") from None
    with client:
        yield client


def described(client: Client, log: Callable[[str], None]) -> Cluster:
    """The cluster's address, worker count and dashboard link, logged."""
    info = client.scheduler_info()
    workers = len(info.get("workers", {}))
    try:
        dashboard = client.dashboard_link
    except (KeyError, AttributeError):
        dashboard = None
    address = client.scheduler.address
    log(f"cluster: {workers} workers at {address}" + (f"; dashboard {dashboard}" if dashboard else ""))
    return Cluster(client, address, workers, dashboard)
