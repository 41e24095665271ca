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
   262,144), Lloyd on that subsample to convergence: the full passes then start next to the optimum.
5. Lloyd refinement over all rows until no label changes or the centres move less than ``tol``;
   empty clusters are moved to the rows farthest from their centres, so the result always has
   exactly k non-empty clusters when the data has k distinct rows.

Every full pass is a map over the source's blocks (``kernels.lloyd_pass``) and a reduction in
fixed order, so results are bitwise identical for any thread count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

import kernels
from engine.fit.batches import ArraySource, BatchSource
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
    mid_sample_div: int = 8  # ...or 1/8 of the rows; used when the data has more than twice that
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
    labels: np.ndarray  # (n,) int32
    dist2: np.ndarray  # (n,) float32 squared distance to own centre
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


def kmeanspp(S: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray | None:
    """Greedy k-means++ centres (float64) from rows of S; None if S has fewer than k distinct rows."""
    n_trials = 2 + int(math.log(k))
    first = int(rng.integers(S.shape[0]))
    uniforms = rng.random((max(k - 1, 0), n_trials))
    idx = np.empty(k, dtype=np.int64)
    found = kernels.kmeanspp(S, first, uniforms, idx, kernels.chunk_count(S.shape[0]))
    if found < k:
        return None
    return S[idx].astype(np.float64)


def relocate_empty(centers: np.ndarray, counts: np.ndarray, X: np.ndarray, dist2: np.ndarray) -> int:
    """Move each empty centre onto one of the rows farthest from their own centre (distinct rows)."""
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return 0
    take = min(X.shape[0], max(4 * empty.size, 64))
    far = np.argpartition(dist2, -take)[-take:]
    far = far[np.lexsort((far, -dist2[far]))]  # farthest first, ties by row number
    chosen: list[np.ndarray] = []
    for row in far:
        if dist2[row] <= 0.0:
            break
        if any(np.array_equal(X[row], c) for c in chosen):
            continue
        chosen.append(X[row])
        if len(chosen) == empty.size:
            break
    for j, point in zip(empty, chosen):
        centers[j] = point
    return len(chosen)


MAX_RELOCATIONS = 100  # passes that move empty centres, on top of max_iter


def lloyd(source: BatchSource, centers: np.ndarray, max_iter: int, tol_abs: float) -> LloydState:
    """Lloyd passes over every row until labels stop changing or centres move less than ``tol_abs``,
    at most ``max_iter`` of them (0 or 1: one assignment pass, the centres unchanged), plus up to
    ``MAX_RELOCATIONS`` passes that follow a move of empty centres.

    Each pass assigns every row to the current centres; the centres then move to their members'
    means unless this was the last pass, so the returned labels and distances are those of the
    returned centres.
    """
    n, k, d = source.n_rows, centers.shape[0], centers.shape[1]
    centers = np.array(centers, dtype=np.float64)
    labels = np.full(n, -1, dtype=np.int32)
    dist2 = np.empty(n, dtype=np.float32)
    finishing = False
    relocations = 0
    n_iter = 0
    buffers: dict[int, tuple[np.ndarray, ...]] = {}  # per block size, allocated once
    while True:
        n_iter += 1
        c32 = centers.astype(np.float32)
        sums = np.zeros((k, d))
        counts = np.zeros(k, dtype=np.int64)
        inertia, changed = 0.0, 0
        for start, block in source.blocks():
            rows = block.shape[0]
            if rows not in buffers:
                nc = kernels.chunk_count(rows, k * d)
                buffers[rows] = (np.empty((nc, k, d)), np.empty((nc, k), dtype=np.int64), np.empty(nc),
                                 np.empty(nc, dtype=np.int64))
            s, c, sse, moved = buffers[rows]
            kernels.lloyd_pass(block, c32, labels[start:start + rows], dist2[start:start + rows], s, c, sse, moved)
            bs, bc = kernels.reduce_chunks(s, c)
            sums += bs
            counts += bc
            inertia += float(sse.sum())
            changed += int(moved.sum())
        if (counts == 0).any() and relocations < MAX_RELOCATIONS:
            X = source.X if isinstance(source, ArraySource) else source.sample(source.n_rows, None)[0]
            if relocate_empty(centers, counts, X, dist2) > 0:
                relocations += 1
                finishing = False
                continue  # always assign again, so labels belong to the returned centres
        if finishing or changed == 0 or n_iter >= max_iter:
            break
        new = sums / np.maximum(counts, 1)[:, None]
        new[counts == 0] = centers[counts == 0]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        finishing = shift <= tol_abs
    return LloydState(centers.astype(np.float32), labels, dist2, inertia, n_iter, sums, counts)


def reassign_small(
    centers: np.ndarray, centers32: np.ndarray, weights: np.ndarray, batch: np.ndarray,
    dist2: np.ndarray, ratio: float, rng: np.random.Generator,
) -> int:
    """Move centres that have seen far fewer rows than the busiest one onto batch rows
    drawn with probability proportional to their squared distance (as scikit-learn)."""
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
    source: BatchSource, centers: np.ndarray, weights: np.ndarray, params: FitParams, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Mini-batch k-means steps from ``centers`` (float64) whose running means already count
    ``weights`` rows each (updated in place). Returns (centers, steps)."""
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
        batch = source.draw(b, rng)
        kernels.assign(batch, centers32, labels, dist2, sse, nc)
        kernels.minibatch_update(batch, labels, centers, centers32, weights)
        if steps % 10 == 0 and params.reassignment_ratio > 0:
            reassign_small(centers, centers32, weights, batch, dist2, params.reassignment_ratio, rng)
        batch_inertia = float(sse.sum()) / b
        ewa = batch_inertia if ewa == math.inf else (1 - alpha) * ewa + alpha * batch_inertia
        if ewa < best:
            best, stale = ewa, 0
        else:
            stale += 1
            if stale >= params.max_no_improvement:
                break
    return centers, steps


def fit_kmeans(source: BatchSource, params: FitParams) -> FitResult:
    """Fit k-means on every row of ``source``."""
    validate(params, source.n_rows, source.n_features)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    root = np.random.SeedSequence(params.seed)
    rng_sample, *rng_restarts = (np.random.default_rng(s) for s in root.spawn(1 + params.restarts(source.n_rows)))
    S, _ = source.sample(params.init_sample, rng_sample)
    seconds["sample"] = time.perf_counter() - t0
    whole = S.shape[0] == source.n_rows
    tol_abs = params.tol * float(np.var(S, axis=0, dtype=np.float64).mean())
    sample_src = source if whole else ArraySource(S)
    restarts, best = [], None
    t_init = t_polish = 0.0
    for r, rng in enumerate(rng_restarts):
        ta = time.perf_counter()
        centers = kmeanspp(S, params.k, rng) if params.init_centers is None else \
            np.array(params.init_centers, dtype=np.float64)
        if centers is None and not whole:  # the sample missed some distinct rows: seed from all rows
            centers = kmeanspp(source.sample(source.n_rows, rng)[0], params.k, rng)
        if centers is None:
            raise InputError(f"k={params.k} is larger than the number of distinct rows in the data")
        tb = time.perf_counter()
        state = lloyd(sample_src, centers, params.max_iter, tol_abs)
        t_init, t_polish = t_init + tb - ta, t_polish + time.perf_counter() - tb
        restarts.append({"restart": r, "sample_inertia": state.inertia, "sample_iter": state.n_iter})
        if best is None or state.inertia < best.inertia:
            best = state
    seconds.update(init=t_init, polish=t_polish)
    state, steps = best, 0
    t1 = time.perf_counter()
    if not whole and params.max_steps > 0:
        # Continue the winner's running means over mini-batches of all rows, the sample's
        # members counting as rows already seen.
        weights = np.bincount(state.labels, minlength=params.k).astype(np.float64)
        centers, steps = minibatch(source, state.centers.astype(np.float64), weights, params, rng_sample)
        state = LloydState(centers.astype(np.float32), state.labels, state.dist2, state.inertia, state.n_iter)
    seconds["minibatch"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    mid = max(params.mid_sample_min, source.n_rows // params.mid_sample_div)
    subsampled = not whole and params.refine and source.n_rows > 2 * mid
    if subsampled:
        # Converge on a larger uniform subsample first: its passes cost 1/div of a full one, and
        # the full passes that follow start next to the optimum.
        M, _ = source.sample(mid, rng_sample)
        state = lloyd(ArraySource(M), state.centers, params.max_iter, tol_abs)
    seconds["subsample"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    if not whole:
        passes = params.max_iter if params.refine else 0
        if subsampled and params.refine_passes is not None:
            passes = min(passes, params.refine_passes)
        state = lloyd(source, state.centers, passes, tol_abs)
    n_iter = state.n_iter
    seconds["refine"] = time.perf_counter() - t1
    return FitResult(state.centers, state.labels, state.dist2, state.inertia, n_iter, steps, restarts, seconds,
                     state.sums, state.counts)


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
