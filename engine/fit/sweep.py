"""Choosing k: fit every k on one matrix, score each, and recommend one by a documented rule.

For each k the sweep reports the within-cluster SSE (for the elbow), the exact silhouette of a
uniform sample (10,000 rows by default) with a 95% bootstrap interval, Calinski-Harabasz and Davies-Bouldin from
per-cluster partial sums, and stability: the mean adjusted Rand index between the full fit and
fits on bootstrap resamples (3 of 10,000 rows by default, other seeds, 2 restarts each), compared on the same
evaluation rows (the silhouette sample).

The rule for ``recommended_k``:
1. The knee of the SSE curve (Kneedle: normalise k and SSE to [0, 1] and take the k farthest
   below the chord from the first to the last point).
2. Stable ks are those with stability >= 0.8 (all ks when none is).
3. Among stable ks, the one with the best silhouette.
4. The knee is recommended when it is stable and its silhouette interval reaches the best
   one's interval; otherwise the best-silhouette k is.
5. The choice is *clear* when the knee and the best silhouette agree, or when the chosen k's
   silhouette interval lies wholly above every other k's. Otherwise the reason says that no k is
   clearly better and names the ks whose intervals overlap.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine.fit.batches import ArraySource
from engine.errors import InputError
from engine.fit.kmeans import FitParams, FitResult, assign_rows, fit_kmeans
from engine.fit.scores import adjusted_rand_score, sample_indices, score_partition
from engine.options import COMPARE_SAMPLE, REPEATS, SEED, SWEEP_SILHOUETTE_SAMPLE
from engine.outputs import rundir
from engine.outputs.charts import sweep_figure, write_figure
from engine.outputs.rundir import RunWriter

STABLE = 0.8
#: A knee must lie this far below the chord (in normalised units): rounding puts points of a
#: straight line about 1e-16 off it.
KNEE_TOLERANCE = 1e-6
#: k-means++ restarts of each bootstrap refit: enough to avoid a bad seed, few enough that stability
#: measures the data's structure rather than our search effort (and costs a fraction of the fits).
STABILITY_RESTARTS = 2
#: k-means++ restarts per k on data larger than the init sample (a single run uses 8): a sweep
#: explores; ``--k auto`` refits the chosen k with the run's own parameters.
SWEEP_RESTARTS = 3
#: Full-data Lloyd passes per k after Lloyd converged on a 1/16 subsample (at least 262,144 rows):
#: none, every row is assigned to the subsample's centres once. The SSE is then within about 1e-4
#: of a fully refined fit's on large data; ``--k auto`` refits the chosen k to convergence.
SWEEP_REFINE_PASSES = 0
SWEEP_SUBSAMPLE_DIV = 16
#: Rows in each bootstrap refit for the stability score (the refits per k, the silhouette sample
#: and the ks are options: see ``engine.options``).
STABILITY_SAMPLE = 10_000
COLUMNS = ("algorithm", "k", "inertia", "silhouette", "silhouette_low", "silhouette_high",
           "calinski_harabasz", "davies_bouldin", "stability", "noise_share", "seconds", "note")
NUMERIC = COLUMNS[2:-1]


@dataclass
class SweepOutcome:
    table: pl.DataFrame  # one row per k (k-means) and per compared algorithm
    recommended_k: int
    reason: str
    clear: bool
    knee: int | None
    # No per-k fits: nothing reads their labels and distances once the k is scored, and they are
    # n x 8 bytes per k (about 440 MB at 5M rows for k=2..12). ``--k auto`` refits the chosen k.

    def summary(self) -> dict[str, Any]:
        return {"recommended_k": self.recommended_k, "reason": self.reason, "clear": self.clear,
                "knee": self.knee, "rule": RULE, "table": self.table.to_dicts()}


RULE = ("knee of the SSE curve (Kneedle) when it is stable (stability >= 0.8) and its silhouette "
        "interval reaches the best stable silhouette's; otherwise the stable k with the best silhouette")


def parse_ks(text: str | Sequence[int]) -> list[int]:
    """``"2..12"``, ``"3,5,7"`` or a list of ints: sorted distinct ks, each at least 2."""
    if not isinstance(text, str):
        ks = [int(k) for k in text]
        if not ks:
            raise InputError("a sweep needs at least two values of k, got none")
    elif m := re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", text):
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise InputError(f"--k {text}: the range is empty (write low..high, e.g. 2..12)")
        ks = list(range(lo, hi + 1))
    elif re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", text):
        ks = [int(x) for x in text.split(",")]
    else:
        raise InputError(f"--k {text!r}: give a range such as 2..12 or a list such as 3,5,7")
    ks = sorted(set(ks))
    if ks[0] < 2:
        raise InputError(f"--k {text}: a sweep needs k >= 2 (k=1 has no silhouette)")
    if len(ks) < 2:
        raise InputError(f"--k {text}: a sweep needs at least two values of k")
    return ks


def knee(ks: list[int], sse: list[float]) -> int | None:
    """Kneedle on a decreasing SSE curve: the k farthest below the chord; None if flat."""
    x = (np.asarray(ks, float) - ks[0]) / (ks[-1] - ks[0])
    y = np.asarray(sse, float)
    if y.max() - y.min() <= 0:
        return None
    y = (y - y.min()) / (y.max() - y.min())
    gap = (1.0 - x) - y
    best = int(np.argmax(gap))
    return ks[best] if gap[best] > KNEE_TOLERANCE else None


def stability(X: np.ndarray, fit: FitResult, params: FitParams, eval_idx: np.ndarray, repeats: int,
              sample: int) -> float | None:
    """Mean ARI on the evaluation rows between the full fit and fits on bootstrap resamples."""
    if repeats < 1:
        return None
    n = X.shape[0]
    reference = fit.labels[eval_idx]
    Xe = X[eval_idx]
    scores = []
    for r in range(repeats):
        rng = np.random.default_rng([params.seed, 4, params.k, r])
        rows = rng.integers(0, n, size=min(n, sample))
        boot = fit_kmeans(ArraySource(X[rows]), FitParams(k=params.k, seed=params.seed + 1 + r,
                                                          n_init=STABILITY_RESTARTS))
        scores.append(adjusted_rand_score(reference, assign_rows(Xe, boot.centers)[0]))
    return float(np.mean(scores))


def recommend(rows: list[dict]) -> tuple[int, str, bool, int | None]:
    """Apply the rule in the module docstring to the k-means rows of a sweep."""
    ks = [r["k"] for r in rows]
    by_k = {r["k"]: r for r in rows}
    elbow = knee(ks, [r["inertia"] for r in rows])
    scored = [r for r in rows if r["silhouette"] is not None]
    if not scored:
        k = elbow or ks[0]
        return k, f"k={k}: the knee of the SSE curve (no silhouette could be computed)", False, elbow
    stable = [r for r in scored if r["stability"] is None or r["stability"] >= STABLE] or scored
    best = max(stable, key=lambda r: r["silhouette"])
    pick = best
    if elbow in by_k and by_k[elbow] in stable and by_k[elbow]["silhouette_high"] >= best["silhouette_low"]:
        pick = by_k[elbow]
    others = [r for r in scored if r is not pick]
    overlapping = [r["k"] for r in others
                   if r["silhouette_high"] >= pick["silhouette_low"] and r["silhouette_low"] <= pick["silhouette_high"]]
    above = [r["k"] for r in others if r["silhouette_low"] > pick["silhouette_high"]]
    clear = elbow == best["k"] or not (overlapping or above)
    stab = "" if pick["stability"] is None else f", stability {pick['stability']:.2f}"
    sil = f"silhouette {pick['silhouette']:.3f} [{pick['silhouette_low']:.3f}, {pick['silhouette_high']:.3f}]"
    knee_text = "the SSE curve has no knee" if elbow is None else f"the SSE knee is at k={elbow}"
    if elbow == best["k"]:
        reason = f"k={pick['k']}: the knee of the SSE curve and the best silhouette agree ({sil}{stab})"
    elif pick is best:
        reason = f"k={pick['k']}: the best silhouette among stable ks ({sil}{stab}); {knee_text}"
    else:
        reason = (f"k={pick['k']}: the knee of the SSE curve ({sil}{stab}); its silhouette interval "
                  f"reaches that of k={best['k']}, the best silhouette")
    if not clear:
        parts = []
        if overlapping:
            parts.append(f"the silhouette intervals of k={', '.join(map(str, overlapping))} overlap its interval")
        if above:
            parts.append(f"k={', '.join(map(str, above))} score higher but are less stable or past the knee")
        reason += "; no k is clearly better: " + " and ".join(parts)
    return pick["k"], reason, clear, elbow


def sweep_matrix(
    X: np.ndarray, ks: list[int], *, seed: int = SEED, n_init: int | None = None, repeats: int = REPEATS,
    stability_sample: int = STABILITY_SAMPLE, silhouette_sample: int = SWEEP_SILHOUETTE_SAMPLE, compare: Sequence[str] = (),
    compare_sample: int = COMPARE_SAMPLE, log: Callable[[str], None] = lambda _m: None,
    advance: Callable[[int], None] = lambda _n: None,
) -> SweepOutcome:
    """Fit and score every k on the same scaled matrix; optionally compare other algorithms.

    ``silhouette_sample=0`` skips the silhouette; the stability score is still evaluated on a
    sample of the default size. ``advance(1)`` (progress) follows each k fitted and scored."""
    n = X.shape[0]
    if ks[-1] > n:
        raise InputError(f"k={ks[-1]} is larger than the number of rows ({n})")
    if repeats < 0 or stability_sample < 2 or silhouette_sample < 0 or silhouette_sample == 1:
        raise InputError("--repeats must be 0 or more, and the samples at least 2 rows (0 skips the silhouette)")
    if compare:
        from engine.fit.compare import check_names  # scikit-learn: off the start-up path

        compare = check_names(compare)  # before any fitting: a typo must not cost a whole sweep
    eval_idx = sample_indices(n, min(silhouette_sample or SWEEP_SILHOUETTE_SAMPLE, n), np.random.default_rng([seed, 1]))
    silhouette_idx = eval_idx if silhouette_sample else eval_idx[:0]
    rows = []
    for k in ks:
        t0 = time.perf_counter()
        params = FitParams(k=k, seed=seed, n_init=n_init, large_restarts=SWEEP_RESTARTS, refine_passes=SWEEP_REFINE_PASSES,
                           mid_sample_div=SWEEP_SUBSAMPLE_DIV)
        fit = fit_kmeans(ArraySource(X), params)
        known = (fit.label_sums, fit.label_counts) if fit.label_sums is not None else None
        row = {"algorithm": "kmeans", "k": k, **score_partition(X, fit.labels, k, silhouette_idx, seed, known),
               "stability": stability(X, fit, params, eval_idx, repeats, stability_sample), "noise_share": None}
        row["inertia"] = fit.inertia
        del fit, known  # its labels and distances go before the next k is fitted
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        sil = "n/a" if row["silhouette"] is None else f"{row['silhouette']:.3f}"
        log(f"k={k}: SSE {row['inertia']:.6g}, silhouette {sil}, stability {row['stability'] if repeats else 'n/a'}")
        advance(1)
    k_best, reason, clear, elbow = recommend(rows)
    extra = []
    if compare:
        from engine.fit.compare import compare_algorithms  # scikit-learn: off the start-up path

        log(f"comparing {', '.join(compare)} at k={k_best}")
        extra = compare_algorithms(X, k_best, list(compare), eval_idx=silhouette_idx, sample=compare_sample, seed=seed)
    table = pl.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows + extra],
                         schema={"algorithm": pl.String, "k": pl.Int32, **{c: pl.Float64 for c in NUMERIC},
                                 "note": pl.String})
    return SweepOutcome(table, k_best, reason, clear, elbow)


def write_sweep(out: RunWriter, outcome: SweepOutcome, params: dict[str, Any]) -> None:
    """sweep.parquet, sweep.json (table, recommended_k, reason, rule, parameters), sweep.html and
    sweep_chart.json (the Plotly figure, reused by the report) into the run directory ``out``."""
    out.parquet(rundir.SWEEP_TABLE, outcome.table)
    out.json(rundir.SWEEP_JSON, {**outcome.summary(), "params": params})
    write_figure(sweep_figure(outcome.table, outcome.recommended_k, outcome.knee),
                 out.path(rundir.SWEEP_HTML), out.path(rundir.SWEEP_CHART))
