"""The feature pass on the workers and the fit's rows held there (``ClusterSource``).

One task per input block (``engine.input.blocks``: rows ``start .. start + rows - 1``, passed to
the task) reads the block's raw columns and builds its scaled rows with the statistics the client
learned from the sample (``engine.features.stream.feature_block``, as a streamed run builds them).
The fit's blocks are ``BLOCK_ROWS`` *kept* rows each, as in memory and streamed (a block of the
input loses the rows dropped for missing values): where rows were dropped, one more task per fit
block gathers its rows from the input blocks it spans. Every block stays on the workers as a
future; a lost one (a worker killed) is computed again by Dask from the input.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl
from distributed import Client, Future, KilledWorker, get_worker, wait

from engine.errors import InputError, first_line
from engine.features.build import resolve_spec
from engine.features.build import FeatureData
from engine.features.spec import FeatureSpec
from engine.features.stream import feature_block, learn, raw_columns, summarise
from engine.fit.batches import CompactRowState, sample_by_number
from engine.input import blocks as layout
from engine.input.files import Input

POLL = 1.0  # seconds between looks at the cluster while a map runs
NO_WORKERS = 20.0  # seconds without a worker before a run gives up


def on_worker(what: str, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` on a worker; an input it cannot read is a one-line error naming the worker."""
    try:
        return func(*args)
    except (InputError, OSError, pl.exceptions.PolarsError) as exc:
        try:
            worker = get_worker().address
        except ValueError:
            worker = "the client"
        said = str(exc) if isinstance(exc, InputError) else f"{what}: {first_line(exc)}"
        raise InputError(f"worker {worker}: {said}") from None


def results(client: Client, futures: Sequence[Future]) -> list[Any]:
    """Every future's result, in order. A cluster that loses all its workers for ``NO_WORKERS``
    seconds, or a task whose workers keep dying (``KilledWorker``), is a one-line error."""
    alone_since = None
    while not done(futures):
        if client.scheduler_info().get("workers"):
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
        elif time.monotonic() - alone_since > NO_WORKERS:
            raise InputError(f"cluster {client.scheduler.address}: no workers left for {NO_WORKERS:g} s; "
                             "nothing was written")
    try:
        return client.gather(list(futures))
    except KilledWorker as exc:
        raise InputError(f"cluster {client.scheduler.address}: the workers running {exc.task} kept dying; "
                         "nothing was written") from None


def done(futures: Sequence[Future]) -> bool:
    """Whether every future has finished (or failed), waiting up to ``POLL`` seconds."""
    try:
        wait(futures, timeout=POLL)
    except TimeoutError:
        return False
    return True


def build_block(inp: Input, spec: FeatureSpec, fitted: Any, start: int, rows: int, columns: list[str],
                allow_duplicate_ids: bool) -> tuple:
    """A worker's block of the feature pass: ``feature_block`` of rows ``start .. start + rows - 1``."""
    frame = on_worker(f"cannot read {inp.label}", layout.read_block, inp, start, rows, columns)
    return feature_block(inp, spec, fitted, start, frame, allow_duplicate_ids)


def scaled(built: tuple) -> np.ndarray:
    return built[0]


def figures(built: tuple) -> tuple:
    return built[1:]


def cover(starts: np.ndarray, sizes: Sequence[int], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """``(part, a, b)``: the rows ``lo .. hi - 1`` as slices ``a:b`` of consecutive parts that start
    at ``starts`` and hold ``sizes`` rows."""
    out = []
    for i in range(max(int(np.searchsorted(starts, lo, side="right")) - 1, 0), len(sizes)):
        a, b = max(lo, starts[i]), min(hi, starts[i] + sizes[i])
        if a >= hi:
            break
        if b > a:
            out.append((i, int(a - starts[i]), int(b - starts[i])))
    return out


def concat_rows(slices: list[tuple[int, int]], *parts: np.ndarray) -> np.ndarray:
    """Rows ``a:b`` of each part, one after the other (float32, C order)."""
    pieces = [p[a:b] for (a, b), p in zip(slices, parts)]
    return np.ascontiguousarray(np.concatenate(pieces) if len(pieces) != 1 else pieces[0])


def on_block(func: Callable[..., Any], start: int, block: np.ndarray, *args: Any) -> Any:
    return func(start, block, *args)


def take_rows(rows: list[np.ndarray], *blocks: np.ndarray) -> list[np.ndarray]:
    """The rows numbered ``rows[j]`` of each block ``blocks[j]``."""
    return [block[r] for r, block in zip(rows, blocks)]


class ClusterSource:
    """The fit's rows as blocks of ``BLOCK_ROWS`` kept rows held on the workers (a ``BatchSource``
    whose full passes run there: ``map_blocks``). Samples, mini-batches and relocation rows are
    gathered to the client by row number; labels are kept on the client (``CompactRowState``),
    so a pass's tasks depend on nothing but their block."""

    def __init__(self, client: Client, parts: list[Future], sizes: list[int], n_features: int):
        self.client, self.parts, self.sizes, self.n_features = client, parts, sizes, n_features
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.n_rows = int(sum(sizes))

    def map_blocks(self, func: Callable[..., Any], *args: Any) -> list[Any]:
        """``func(start, block, *args)`` of every block, on the worker holding it; in block order."""
        return results(self.client, [self.client.submit(on_block, func, int(s), p, *args, pure=False)
                                     for s, p in zip(self.starts, self.parts)])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows numbered ``rows`` (any order): one task per worker, on the worker holding the
        blocks it reads (where Dask last saw them: a moved block is fetched, not lost)."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        groups: dict[Any, list[tuple[int, np.ndarray]]] = {}
        holders = self.client.who_has(self.parts)
        for i, (start, size) in enumerate(zip(self.starts, self.sizes)):
            lo, hi = np.searchsorted(wanted, [start, start + size])
            if hi > lo:
                where = tuple(holders.get(self.parts[i].key, ()))[:1] or None
                groups.setdefault(where, []).append((i, wanted[lo:hi] - start))
        placed = {where: {"workers": list(where), "allow_other_workers": True} if where else {} for where in groups}
        futures = [self.client.submit(take_rows, [r for _, r in group], *[self.parts[i] for i, _ in group],
                                      pure=False, **placed[where]) for where, group in groups.items()]
        pieces = {i: piece for group, found in zip(groups.values(), results(self.client, futures))
                  for (i, _), piece in zip(group, found)}
        out = np.empty((rows.size, self.n_features), dtype=np.float32)
        if pieces:
            out[order] = np.concatenate([pieces[i] for i in sorted(pieces)])
        return out

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_by_number(self, size, rng)

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return self.take(rng.integers(0, self.n_rows, size=size))

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start, part in zip(self.starts, self.parts):
            yield int(start), results(self.client, [part])[0]

    def row_state(self, k: int) -> CompactRowState:
        return CompactRowState(self.n_rows, k)


def cluster_features(client: Client, inp: Input, spec: FeatureSpec, seed: int = 0,
                     allow_duplicate_ids: bool = False, advance: Callable[[int], None] | None = None) -> FeatureData:
    """The streamed feature pass (``engine.features.stream``) with its blocks built on the
    workers; the result's ``scratch`` is the ``ClusterSource`` of the scaled rows. ``advance(1)``
    (progress) follows each block, in block order."""
    t0 = time.perf_counter()
    spec = resolve_spec(spec, inp.schema(), inp.label)
    n_rows = layout.row_count(inp)
    if n_rows == 0:
        raise InputError(f"{inp.label}: no rows")
    size, columns = layout.BLOCK_ROWS, raw_columns(inp, spec)
    fitted = learn(inp, spec, n_rows, seed, columns)
    t_stats = time.perf_counter() - t0
    with contextlib.suppress(InputError):  # the build's kernels compiled (or loaded) here first: the
        # workers then load them from numba's on-disk cache; the pass itself reports any error
        feature_block(inp, spec, fitted, 0, layout.read_block(inp, 0, min(n_rows, 2), columns), True)
    built = [client.submit(build_block, inp, spec, fitted, start, min(size, n_rows - start), columns,
                           allow_duplicate_ids, pure=False) for start in layout.block_starts(n_rows, size)]
    found = []
    for future in [client.submit(figures, b, pure=False) for b in built]:
        found.append(results(client, [future])[0])
        if advance is not None:
            advance(1)
    data = summarise(inp, spec, fitted, n_rows, found, {"read": t_stats, "features": 0.0,
                                                        "scale": time.perf_counter() - t0 - t_stats})
    blocks = [client.submit(scaled, b, pure=False) for b in built]
    kept = [b.n_kept for b in data.blocks]
    data.scratch = ClusterSource(client, *reblock(client, blocks, kept, size), len(fitted.names))
    return data


def reblock(client: Client, blocks: list[Future], kept: list[int], size: int) -> tuple[list[Future], list[int]]:
    """The fit's blocks (``size`` kept rows each, the last shorter) from the input blocks' kept rows."""
    n = sum(kept)
    if all(k == size for k in kept[:-1]):  # no row dropped before the last block: the same blocks
        return [b for b, k in zip(blocks, kept) if k > 0], [k for k in kept if k > 0]
    starts = np.concatenate([[0], np.cumsum(kept)[:-1]]).astype(np.int64)
    parts, sizes = [], []
    for lo in range(0, n, size):
        spans = cover(starts, kept, lo, min(lo + size, n))
        parts.append(client.submit(concat_rows, [(a, b) for _, a, b in spans], *[blocks[i] for i, _, _ in spans],
                                   pure=False))
        sizes.append(min(size, n - lo))
    return parts, sizes
