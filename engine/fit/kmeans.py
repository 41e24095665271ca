"""MiniBatch k-means with full-data refinement: the orchestration around the kernels.

1. A uniform sample S (``init_sample`` rows) is drawn once.
2. Each of ``n_init`` restarts seeds k centres with greedy k-means++ on S and runs Lloyd on S to
   convergence. The restart with the lowest SSE on S wins. Restarts are cheap because S is small,
   and many of them matter: on overlapping data single k-means++ runs land in visibly worse local
   optima (0.5-4% higher SSE) about half the time.
3. When the data is larger than S, mini-batch steps over all rows continue the winner's running
   means, the sample's members counting as rows already seen (Sculley 2010: batches drawn in
   O(batch), per-centre learning rates, early stop on a smoothed batch inertia, reassignment of
   tiny clusters).
4. On data more than twice the size of an intermediate subsample (1/8 of the rows, at least
   262,144 and at most 2,000,000), Lloyd on that subsample to convergence: the full passes then start next to the optimum.
5. Lloyd refinement over all rows until no label changes or the centres move less than ``tol``;
   empty clusters are moved to the rows farthest from their centres, so the result always has
   exactly k non-empty clusters when the data has k distinct rows.

Every full pass is a map over the source's blocks (``kernels.lloyd_pass``) and a reduction in
fixed order, so results are bitwise identical for any thread count.

Optional row weights (``fit_kmeans(..., weights=)``, used by the estimator's ``sample_weight``)
run the same steps with the weighted kernels of ``kernels.weighted``: weighted k-means++ draws,
weighted means and SSE in every Lloyd pass and mini-batch step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import kernels
from engine.fit.batches import ArraySource, BatchSource, RowState
from engine.errors import InputError


@dataclass(frozen=True)
class FitParams:
    k: int
    seed: int = 0
    n_init: int | None = None  # None: 10 when all rows fit in the init sample, else large_restarts
    large_restarts: int = 8
    init_sample: int = 32_768
    batch_size: int = 4_096
    max_steps: int = 2_000  # mini-batch steps per restart at most
    max_no_improvement: int = 10
    reassignment_ratio: float = 0.01
    refine: bool = True
    max_iter: int = 300  # Lloyd passes over the data at most, the last one assigning rows to the returned centres
    tol: float = 1e-4  # relative to the mean feature variance, as scikit-learn
    mid_sample_min: int = 262_144  # the intermediate subsample: at least this many rows...
    mid_sample_div: int = 8  # ...or 1/8 of the rows; used when the data has more than twice that...
    # ...and at most this many: a streamed fit holds it (128 MB of 16 features), and numpy draws
    # this many distinct rows of 100,000,000 or more in O(size) memory (Floyd's algorithm; a larger
    # share of the rows makes it shuffle an array of every row number: 800 MB at 100,000,000)
    mid_sample_max: int = 2_000_000
    # Full-data Lloyd passes after the subsample converged (None: until convergence). A sweep
    # uses 0: one assignment pass of every row to the subsample's centres.
    refine_passes: int | None = None
    # A warm start (``segment refresh --refit``): one restart from these (k, d) centres instead of
    # k-means++ seeds; the rest of the fit is the same.
    init_centers: np.ndarray | None = field(default=None, compare=False, repr=False)

    def restarts(self, n_rows: int) -> int:
        if self.init_centers is not None:
            return 1
        if self.n_init is not None:
            return self.n_init
        return 10 if n_rows <= self.init_sample else self.large_restarts


@dataclass
class FitResult:
    centers: np.ndarray  # (k, d) float32
    labels: np.ndarray  # (n,) int32 (a streamed fit: int8/int16, ``CompactRowState``)
    dist2: np.ndarray | None  # (n,) float32 squared distance to own centre (a streamed fit: None)
    inertia: float
    n_iter: int  # full-data Lloyd passes
    n_steps: int  # mini-batch steps of the winning restart
    restarts: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    label_sums: np.ndarray | None = None  # per-cluster sums and counts of the rows with ``labels``
    label_counts: np.ndarray | None = None  # (what cluster_moments would compute; saves a pass)


@dataclass
class LloydState:
    centers: np.ndarray
    labels: np.ndarray
    dist2: np.ndarray
    inertia: float
    n_iter: int
    sums: np.ndarray | None = None  # per-cluster float64 sums of the rows with these labels...
    counts: np.ndarray | None = None  # ...and their counts (from the last pass, reduced in chunk order)


def validate(params: FitParams, n_rows: int, n_features: int | None = None) -> None:
    if params.k < 1:
        raise InputError(f"k must be at least 1, not {params.k}")
    if params.k > n_rows:
        raise InputError(f"k={params.k} is larger than the number of rows ({n_rows})")
    if params.n_init is not None and params.n_init < 1:
        raise InputError(f"n_init must be at least 1, not {params.n_init}")
    if params.batch_size < 1 or params.init_sample < 1:
        raise InputError("batch_size and init_sample must be positive")
    if params.init_centers is not None:
        shape = np.shape(params.init_centers)
        width = shape[1] if len(shape) == 2 else None
        if width is None or shape[0] != params.k or width != (n_features or width) or \
                not np.isfinite(params.init_centers).all():
            raise InputError(f"init_centers must be {params.k} rows of {n_features} finite numbers, not an array of "
                             f"shape {shape}")


def draw_weighted(weights: np.ndarray, rng: np.random.Generator) -> int:
    """One row number drawn with probability proportional to ``weights`` (never a zero-weight row)."""
    cum = np.cumsum(weights)
    row = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    return min(row, int(np.flatnonzero(weights > 0)[-1]))


def kmeanspp(S: np.ndarray, k: int, rng: np.random.Generator, weights: np.ndarray | None = None) -> np.ndarray | None:
    """Greedy k-means++ centres (float64) from rows of S; None if S has fewer than k distinct rows
    (of positive weight, with ``weights``: then every draw is proportional to the row's weight)."""
    n_trials = 2 + int(math.log(k))
    first = int(rng.integers(S.shape[0])) if weights is None else draw_weighted(weights, rng)
    uniforms = rng.random((max(k - 1, 0), n_trials))
    idx = np.empty(k, dtype=np.int64)
    if weights is None:
        found = kernels.kmeanspp(S, first, uniforms, idx, kernels.chunk_count(S.shape[0]))
    else:
        found = kernels.kmeanspp_weighted(S, weights, first, uniforms, idx, kernels.chunk_count(S.shape[0]))
    if found < k:
        return None
    return S[idx].astype(np.float64)


def farthest(dist2: np.ndarray, n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` rows with the largest positive ``dist2``, farthest first, ties by row number:
    (row numbers counted from ``offset``, their dist2). A total order, so the farthest of every
    block merged give the farthest of all."""
    positive = np.flatnonzero(dist2 > 0.0)
    if positive.size > n:
        cut = np.partition(dist2[positive], positive.size - n)[positive.size - n]
        positive = positive[dist2[positive] >= cut]
    order = np.lexsort((positive, -dist2[positive]))[:n]
    return positive[order] + offset, dist2[positive[order]]


def far_rows(source: BatchSource, rows: RowState, c32: np.ndarray, n: int, weights: np.ndarray | None) -> np.ndarray:
    """The ``n`` rows farthest from their centres (positive weight only, with ``weights``): from
    the distances held, or, for a source that holds none (streamed), from one more assignment
    pass, block by block (the pass's distances: the centres have not moved)."""
    if rows.dist2 is not None:
        far = rows.dist2 if weights is None else np.where(weights > 0, rows.dist2, np.float32(0.0))
        return farthest(far, n)[0]
    mapped = getattr(source, "map_blocks", None)  # a source whose blocks live elsewhere (a cluster)
    found = mapped(block_farthest, c32, n) if mapped else [block_farthest(s, b, c32, n) for s, b in source.blocks()]
    r, d = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
    return r[np.lexsort((r, -d))[:n]]


def block_farthest(start: int, block: np.ndarray, c32: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One block's ``n`` rows farthest from their nearest centre (``farthest``, rows counted from ``start``)."""
    labels = np.empty(block.shape[0], dtype=np.int32)
    dist2 = np.empty(block.shape[0], dtype=np.float32)
    nc = kernels.chunk_count(block.shape[0])
    kernels.assign(block, c32, labels, dist2, np.empty(nc), nc)
    return farthest(dist2, n, start)


def relocate_empty(centers: np.ndarray, counts: np.ndarray, source: BatchSource, far: np.ndarray) -> int:
    """Move each empty centre onto one of the rows ``far`` (farthest first), distinct rows only;
    the rows are read from ``source`` by number (a streamed source is not in memory)."""
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return 0
    points = dict(zip(np.sort(far).tolist(), source.take(np.sort(far))))
    chosen: list[np.ndarray] = []
    for row in far.tolist():
        if any(np.array_equal(points[row], c) for c in chosen):
            continue
        chosen.append(points[row])
        if len(chosen) == empty.size:
            break
    for j, point in zip(empty, chosen):
        centers[j] = point
    return len(chosen)


MAX_RELOCATIONS = 100  # passes that move empty centres, on top of max_iter


def full_pass(
    source: BatchSource, c32: np.ndarray, state: RowState, buffers: dict, weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One Lloyd map over every block of ``source`` and its reduction in block order: per-cluster
    sums, member counts (weight totals with ``weights``), SSE (weighted) and rows relabelled.
    Labels and distances are updated in ``state``; ``buffers`` keeps per-block-size scratch arrays."""
    if weights is None and hasattr(source, "map_blocks"):  # blocks that live elsewhere (a cluster)
        return mapped_pass(source, c32, state)
    k, d = c32.shape
    sums = np.zeros((k, d))
    counts = np.zeros(k, dtype=np.int64 if weights is None else np.float64)
    inertia, changed = 0.0, 0
    for start, block in source.blocks():
        out = state.block(start, block.shape[0])
        w = None if weights is None else weights[start:start + block.shape[0]]
        bs, bc, sse, moved = lloyd_block(block, w, c32, *out, buffers)
        state.store(start, *out)
        sums += bs
        counts += bc
        inertia += sse
        changed += moved
    return sums, counts, inertia, changed


def lloyd_block(block: np.ndarray, weights: np.ndarray | None, c32: np.ndarray, labels: np.ndarray,
                dist2: np.ndarray, buffers: dict) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One block's Lloyd map: ``labels``/``dist2`` updated in place; its per-cluster sums and counts
    (weight totals with ``weights``) reduced in chunk order, its SSE and rows relabelled.
    ``buffers`` keeps the per-chunk accumulators by block size (and weighting)."""
    rows, (k, d) = block.shape[0], c32.shape
    key = (rows, weights is None)
    if key not in buffers:
        nc = kernels.chunk_count(rows, k * d)
        buffers[key] = (np.empty((nc, k, d)), np.empty((nc, k), dtype=np.int64 if weights is None else np.float64),
                        np.empty(nc), np.empty(nc, dtype=np.int64))
    s, c, sse, moved = buffers[key]
    if weights is None:
        kernels.lloyd_pass(block, c32, labels, dist2, s, c, sse, moved)
        bs, bc = kernels.reduce_chunks(s, c)
    else:
        kernels.lloyd_pass_weighted(block, weights, c32, labels, dist2, s, c, sse, moved)
        bs, bc = kernels.reduce_weighted(s, c)
    return bs, bc, float(sse.sum()), int(moved.sum())


def block_lloyd(start: int, block: np.ndarray, c32: np.ndarray, label_type: np.dtype
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One block's Lloyd map, wherever the block lives (``lloyd_block`` on fresh labels): its labels
    (as ``label_type``), per-cluster sums and counts and SSE, the numbers ``full_pass`` folds."""
    labels, dist2 = np.full(block.shape[0], -1, dtype=np.int32), np.empty(block.shape[0], dtype=np.float32)
    bs, bc, sse, _ = lloyd_block(block, None, c32, labels, dist2, {})
    return labels.astype(label_type), bs, bc, sse


def mapped_pass(source: BatchSource, c32: np.ndarray, state: RowState) -> tuple[np.ndarray, np.ndarray, float, int]:
    """``full_pass`` over a source that maps ``block_lloyd`` over its blocks where they live
    (``source.map_blocks``, results in block order): the partials folded in block order as the
    local loop folds them, so the same bits; rows relabelled counted against the labels held."""
    k, d = c32.shape
    sums, counts = np.zeros((k, d)), np.zeros(k, dtype=np.int64)
    inertia, changed, start = 0.0, 0, 0
    for labels, bs, bc, sse in source.map_blocks(block_lloyd, c32, state.labels.dtype):
        held = state.labels[start:start + labels.shape[0]]
        changed += int(np.count_nonzero(held != labels))
        held[:] = labels
        sums += bs
        counts += bc
        inertia += sse
        start += labels.shape[0]
    return sums, counts, inertia, changed


def lloyd(
    source: BatchSource, centers: np.ndarray, max_iter: int, tol_abs: float, weights: np.ndarray | None = None,
    advance: Callable[[int], None] | None = None,
) -> LloydState:
    """Lloyd passes over every row until labels stop changing or centres move less than ``tol_abs``,
    at most ``max_iter`` of them (0 or 1: one assignment pass, the centres unchanged), plus up to
    ``MAX_RELOCATIONS`` passes that follow a move of empty centres.

    Each pass assigns every row to the current centres; the centres then move to their members'
    means unless this was the last pass, so the returned labels and distances are those of the
    returned centres. With ``weights`` (one
    per row of ``source``) every mean and the SSE are weighted; a cluster is empty when its
    members weigh nothing, and only rows of positive weight are candidates to refill it.
    """
    centers = np.array(centers, dtype=np.float64)
    state = source.row_state(centers.shape[0]) if weights is None else RowState(source.n_rows)
    finishing = False
    relocations = 0
    n_iter = 0
    buffers: dict[tuple[int, bool], tuple[np.ndarray, ...]] = {}  # per block size, allocated once
    while True:
        n_iter += 1
        c32 = centers.astype(np.float32)
        sums, counts, inertia, changed = full_pass(source, c32, state, buffers, weights)
        if advance is not None:  # progress: one pass over every row of ``source`` done
            advance(1)
        if (counts == 0).any() and relocations < MAX_RELOCATIONS:
            n_far = min(source.n_rows, max(4 * int((counts == 0).sum()), 64))
            if relocate_empty(centers, counts, source, far_rows(source, state, c32, n_far, weights)) > 0:
                relocations += 1
                finishing = False
                continue  # always assign again, so labels belong to the returned centres
        if finishing or changed == 0 or n_iter >= max_iter:
            break
        filled = counts > 0
        new = sums / np.where(filled, counts, 1)[:, None]
        new[~filled] = centers[~filled]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        finishing = shift <= tol_abs
    return LloydState(centers.astype(np.float32), state.labels, state.dist2, inertia, n_iter, sums, counts)


def reassign_small(
    centers: np.ndarray, centers32: np.ndarray, weights: np.ndarray, batch: np.ndarray,
    dist2: np.ndarray, ratio: float, rng: np.random.Generator,
) -> int:
    """Move centres that have seen far fewer rows than the busiest one onto batch rows
    drawn with probability proportional to ``dist2``: their squared distance (as scikit-learn),
    times the row's weight in a weighted fit."""
    small = np.flatnonzero(weights < ratio * weights.max())
    if small.size == 0:
        return 0
    p = dist2.astype(np.float64)
    total = p.sum()
    if total <= 0.0:
        return 0
    picks = rng.choice(batch.shape[0], size=min(small.size, batch.shape[0]), replace=False, p=p / total)
    for j, row in zip(small, picks):
        centers[j] = batch[row]
        centers32[j] = batch[row]
    big = np.setdiff1d(np.arange(weights.size), small)
    weights[small[: picks.size]] = weights[big].min() if big.size else 1.0
    return int(picks.size)


def minibatch(
    source: BatchSource, centers: np.ndarray, seen: np.ndarray, params: FitParams, rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Mini-batch k-means steps from ``centers`` (float64) whose running means already count
    ``seen`` rows each (updated in place). Returns (centers, steps).

    With ``weights`` (one per row; ``source`` must be an ``ArraySource``) batches are still drawn
    uniformly and each member counts its weight: ``seen`` then holds weight, not rows.
    """
    n = source.n_rows
    b = min(params.batch_size, n)
    centers32 = centers.astype(np.float32)
    labels = np.empty(b, dtype=np.int32)
    dist2 = np.empty(b, dtype=np.float32)
    nc = kernels.chunk_count(b)
    sse = np.empty(nc)
    alpha = max(2.0 * b / (n + 1), 0.05)
    ewa = best = math.inf
    stale = 0
    steps = 0
    for steps in range(1, params.max_steps + 1):
        if weights is None:
            batch = source.draw(b, rng)
        else:
            rows = rng.integers(0, n, size=b)  # the draw ArraySource.draw makes, keeping the row numbers
            batch, wb = source.X[rows], weights[rows]
        kernels.assign(batch, centers32, labels, dist2, sse, nc)
        if weights is None:
            kernels.minibatch_update(batch, labels, centers, centers32, seen)
            batch_inertia = float(sse.sum()) / b
        else:
            kernels.minibatch_update_weighted(batch, wb, labels, centers, centers32, seen)
            batch_weight = float(wb.sum())
            batch_inertia = float((wb * dist2).sum()) / batch_weight if batch_weight > 0 else ewa
        if steps % 10 == 0 and params.reassignment_ratio > 0:
            p = dist2 if weights is None else dist2 * wb
            reassign_small(centers, centers32, seen, batch, p, params.reassignment_ratio, rng)
        ewa = batch_inertia if ewa == math.inf else (1 - alpha) * ewa + alpha * batch_inertia
        if ewa < best:
            best, stale = ewa, 0
        else:
            stale += 1
            if stale >= params.max_no_improvement:
                break
    return centers, steps


def check_weights(weights, source: BatchSource, k: int) -> tuple[np.ndarray | None, float]:
    """Row weights as float64, checked; ``(None, w)`` when every row weighs the same ``w``: that
    is the unweighted problem (same centres and labels, SSE times ``w``)."""
    if weights is None:
        return None, 1.0
    if not isinstance(source, ArraySource):
        raise InputError("row weights need an in-memory matrix (ArraySource)")
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape != (source.n_rows,):
        raise InputError(f"expected one weight per row ({source.n_rows}), got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("row weights must be finite and non-negative")
    positive = int(np.count_nonzero(w))
    if positive < k:
        raise InputError(f"k={k} is larger than the number of rows with positive weight ({positive})")
    if (w == w[0]).all():
        return None, float(w[0])
    return w, 1.0


def mean_variance(S: np.ndarray, weights: np.ndarray | None) -> float:
    """Mean over features of the (weighted) variance of the rows of S, for the tolerance."""
    if weights is None:
        return float(np.var(S, axis=0, dtype=np.float64).mean())
    mean = np.average(S, axis=0, weights=weights)
    return float(np.average((S - mean) ** 2, axis=0, weights=weights).mean())


def best_restart(
    source: BatchSource, S: np.ndarray, S_weights: np.ndarray | None, params: FitParams, tol_abs: float,
    rngs: list[np.random.Generator], weights: np.ndarray | None, seconds: dict[str, float],
    advance: Callable[[int], None] | None = None,
) -> tuple[LloydState, list[dict]]:
    """k-means++ and Lloyd on the sample S once per generator in ``rngs``; the lowest SSE on S wins."""
    whole = S.shape[0] == source.n_rows
    sample_src = source if whole else ArraySource(S)
    restarts, best = [], None
    t_init = t_polish = 0.0
    for r, rng in enumerate(rngs):
        ta = time.perf_counter()
        centers = kmeanspp(S, params.k, rng, S_weights) if params.init_centers is None else \
            np.array(params.init_centers, dtype=np.float64)
        if centers is None and not whole:  # the sample missed some distinct rows: seed from all rows
            centers = kmeanspp(source.sample(source.n_rows, rng)[0], params.k, rng, weights)
        if centers is None:
            rows = "distinct rows" if weights is None else "distinct rows of positive weight"
            raise InputError(f"k={params.k} is larger than the number of {rows} in the data")
        tb = time.perf_counter()
        state = lloyd(sample_src, centers, params.max_iter, tol_abs, S_weights, advance if whole else None)
        t_init, t_polish = t_init + tb - ta, t_polish + time.perf_counter() - tb
        restarts.append({"restart": r, "sample_inertia": state.inertia, "sample_iter": state.n_iter})
        if best is None or state.inertia < best.inertia:
            best = state
    seconds.update(init=t_init, polish=t_polish)
    return best, restarts


def fit_kmeans(source: BatchSource, params: FitParams, weights: np.ndarray | None = None,
               advance: Callable[[int], None] | None = None) -> FitResult:
    """Fit k-means on every row of ``source``.

    ``weights``: optionally one non-negative weight per row (``ArraySource`` only) for weighted
    k-means: a row of weight w counts w times in every mean, SSE and seeding draw, so an integer
    weight is the objective of repeating the row and a zero weight that of leaving it out (the
    row still gets a label). Samples and mini-batches are drawn uniformly and carry their rows'
    weights. A weighted result has no ``label_sums``/``label_counts`` (those are unweighted).

    ``advance``: called with 1 after each Lloyd pass over every row of ``source`` (progress).
    """
    validate(params, source.n_rows, source.n_features)
    weights, scale = check_weights(weights, source, params.k)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    root = np.random.SeedSequence(params.seed)
    rng_sample, *rng_restarts = (np.random.default_rng(s) for s in root.spawn(1 + params.restarts(source.n_rows)))
    S, S_rows = source.sample(params.init_sample, rng_sample)
    S_weights = None if weights is None else weights[S_rows]
    seconds["sample"] = time.perf_counter() - t0
    whole = S.shape[0] == source.n_rows
    tol_abs = params.tol * mean_variance(S, S_weights)
    state, restarts = best_restart(source, S, S_weights, params, tol_abs, rng_restarts, weights, seconds, advance)
    steps = 0
    t1 = time.perf_counter()
    if not whole and params.max_steps > 0:
        # Continue the winner's running means over mini-batches of all rows, the sample's
        # members counting as rows (weight) already seen.
        seen = np.bincount(state.labels, weights=S_weights, minlength=params.k).astype(np.float64)
        centers, steps = minibatch(source, state.centers.astype(np.float64), seen, params, rng_sample, weights)
        state = LloydState(centers.astype(np.float32), state.labels, state.dist2, state.inertia, state.n_iter)
    seconds["minibatch"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    mid = min(max(params.mid_sample_min, source.n_rows // params.mid_sample_div), params.mid_sample_max)
    subsampled = not whole and params.refine and source.n_rows > 2 * mid
    if subsampled:
        # Converge on a larger uniform subsample first: its passes cost 1/div of a full one, and
        # the full passes that follow start next to the optimum.
        M, M_rows = source.sample(mid, rng_sample)
        M_weights = None if weights is None else weights[M_rows]
        state = lloyd(ArraySource(M), state.centers, params.max_iter, tol_abs, M_weights)
    seconds["subsample"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    if not whole:
        passes = params.max_iter if params.refine else 0
        if subsampled and params.refine_passes is not None:
            passes = min(passes, params.refine_passes)
        state = lloyd(source, state.centers, passes, tol_abs, weights, advance)
    seconds["refine"] = time.perf_counter() - t1
    if scale != 1.0:  # equal weights: the unweighted fit, its SSE counted ``scale`` times
        state.inertia *= scale
        for r in restarts:
            r["sample_inertia"] *= scale
    moments = (state.sums, state.counts) if weights is None else (None, None)
    return FitResult(state.centers, state.labels, state.dist2, state.inertia, state.n_iter, steps, restarts, seconds,
                     *moments)


def assign_rows(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Nearest centre and squared distance for every row, with the kernel the fit uses."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    n = X.shape[0]
    nc = kernels.chunk_count(n)
    labels = np.empty(n, dtype=np.int32)
    dist2 = np.empty(n, dtype=np.float32)
    sse = np.empty(nc)
    kernels.assign(X, centers, labels, dist2, sse, nc)
    return labels, dist2, float(sse.sum())
