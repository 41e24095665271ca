"""The whole job, stage by stage: input -> features -> fit -> scoring -> insight -> outputs.

``run``, ``sweep`` and ``predict`` are the Python API behind ``segment run``, ``sweep`` and
``predict``. Each takes its typed options (``engine.options``), or keyword arguments of the same
names for convenience (``engine.run(["c.parquet"], k=5, out="run", seed=1)``), and is a short
sequence of stage calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.duck.rfm import complete, rfm_spec, summary_line
from engine.duck.open import open_source, source_facts
from engine.duck.views import write_database
from engine.errors import InputError, first_line
from engine.features.build import FeatureData, build_features
from engine.features.stream import stream_features
from engine.features.build import resolve_spec as resolve_features
from engine.features.pca import PCA, fit_pca
from engine.features.business import Business
from engine.features.spec import FeatureSpec, load_spec, parse_pca_option, reload_spec, spec_from_columns
from engine.fit.batches import ArraySource
from engine.fit.kmeans import FitParams, FitResult, assign_rows, fit_kmeans
from engine.fit.match import match_centres, relabel
from engine.fit.model import Model, load_model
from engine.fit.scores import sample_indices, silhouette_score
from engine.fit.sweep import SweepOutcome, parse_ks, sweep_matrix, write_sweep
from engine.fit.threads import thread_limit
from engine.input.files import Input
from engine.input.memory import check_memory
from engine.insight.migration import (Comparison, Period, check_keys, check_top, compare_periods, feature_values,
                                     keyed, load_period, write_comparison)
from engine.insight import profiles as pf
from engine.insight.stage import Insight
from engine.options import (CLUSTER_ENV, SILHOUETTE_SAMPLE, FeatureOptions, InputOptions, PredictOptions,
                            RefreshOptions, RunOptions, SweepOptions, TransactionOptions, flatten, from_flat)
from engine.outputs import rundir
from engine.progress import SILENT, Progress
from engine.outputs.write import atomic_file, check_file_target, scatter, write_partitions, write_segments
from engine.streaming import Scratch, final_pass, source_of, stream_blocks, stream_refused, wants_stream

Log = Callable[[str], None]
#: The libraries that compute a run's numbers: distribution name -> module.
PACKAGES = {"numpy": "numpy", "polars": "polars", "pyarrow": "pyarrow", "numba": "numba", "duckdb": "duckdb",
            "scikit-learn": "sklearn"}
FINGERPRINT_CHUNK = 8 << 20


def quiet(_: str) -> None:
    pass


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, Any]
    profiles: pl.DataFrame
    model: Model
    written: list[str]


@dataclass
class SweepResult:
    out: Path
    outcome: SweepOutcome
    summary: dict[str, Any]
    written: list[str]


@dataclass(frozen=True)
class RunPlan:
    """What ``run`` checked before any work: the output, the feature spec and the k (None: auto)."""

    out: Path
    spec: FeatureSpec
    k: int | None
    ks: list[int] | None


def build_options(options_type: type, options: Any, given: dict[str, Any], **positional: Any) -> Any:
    """Typed options from ``options`` (or the defaults), then the positional and keyword arguments."""
    flat = flatten(options) if options is not None else {}
    flat.update({key: value for key, value in positional.items() if value is not None and value != ()})
    flat.update(given)
    return from_flat(options_type, flat)


# ----------------------------------------------------------------------------- run

def run(inputs: Sequence[str | Path] = (), k: int | str | None = None, out: str | Path | None = None, *,
        options: RunOptions | None = None, log: Log = quiet, progress: Progress = SILENT,
        **given: Any) -> RunResult:
    """Segment the customers in ``inputs`` into ``k`` segments and write a run directory ``out``.

    With ``k="auto"`` a sweep over ``k_range`` chooses k first (see ``engine.fit.sweep``); the
    sweep's table goes into ``metrics.json`` and ``sweep.*`` beside the other outputs.
    ``progress`` (``engine.progress``) is told of each stage: reading, fitting, profiling, writing.
    """
    t_start = time.perf_counter()
    opts = build_options(RunOptions, options, given, inputs=tuple(map(str, inputs)), k=k,
                         out=None if out is None else str(out))
    plan = plan_run(opts)
    with thread_limit(opts.fit.threads) as n_threads, Scratch(plan.out) as scratch, \
            cluster_of(opts.input.cluster, log) as cluster:
        inp, data = prepare_features(opts.input, plan.spec, log, opts.fit.seed, scratch,
                                     stream_refused(plan.k, plan.spec.pca), progress, cluster, keep_columns=True)
        space, pca = reduce_space(data, opts.fit.seed, log)  # data itself, or its principal components
        k, outcome = choose_k(space, plan, opts, log, progress)
        params = FitParams(k=k, seed=opts.fit.seed, n_init=opts.fit.n_init)
        with progress.stage("fitting") as advance:  # with --k auto too: the run's own restarts
            fit = fit_kmeans(source_of(space), params, advance=advance)
        silhouette, t_sil = timed(score, space, fit.labels, k, opts.scoring.silhouette_sample, opts.fit.seed, log)
        centres = fit.centers if pca is None else pca.inverse(fit.centers)  # in scaled feature units
        provenance = record(opts, plan, inp, data, outcome is not None)
        model = Model(data.spec, data.fitted, fit.centers, {"seed": opts.fit.seed, **provenance, "inertia": fit.inertia,
                                                            "params": fit_params(params, data)}, pca)
        t_final = time.perf_counter()
        passed = None if data.X is not None else final_pass_of(cluster)(inp, data, fit, opts.fit.seed, scratch.segments,
                                                                    segments_meta(model, data), progress)
        with progress.stage("profiling", 1) as advance:
            insight, t_prof = timed(Insight, inp, data, fit.labels, centres, k, opts.fit.seed, passed)
            advance(1)
        for w in insight.warnings:
            log(f"warning: {w}")
        metrics = run_metrics(data, fit, params, silhouette, insight, outcome, provenance, n_threads)
        metrics["pca"] = pca.summary() if pca else None
        if cluster is not None:
            metrics["cluster"] = cluster.summary()
        seconds = {**data.seconds, **fit.seconds, "silhouette": t_sil, "profile": t_prof}
        if data.X is None:
            seconds["final_pass"] = time.perf_counter() - t_final - t_prof
        written = write_run(plan, opts, model, data, fit, insight, outcome, metrics, seconds, t_start, progress,
                            scratch.segments if data.X is None else None)
    if opts.outputs.db is not None:
        write_database(plan.out, Path(opts.outputs.db), opts.outputs.overwrite)
        log(f"wrote {opts.outputs.db}")
    log(f"wrote {plan.out}")
    return RunResult(plan.out, metrics, insight.profiles, model, written)


@contextlib.contextmanager
def cluster_of(given: Any, log: Log) -> Any:
    """The run's Dask cluster (``engine.cluster.connect``): ``--cluster`` or ``SEGMENT_CLUSTER``;
    None when neither names one. Without the ``dask`` extra, a one-line error."""
    chosen = given if given is not None else os.environ.get(CLUSTER_ENV) or None
    if chosen is None:
        yield None
        return
    try:
        from engine.cluster.connect import connected  # dask: an optional, heavy library (the [dask] extra)
    except ImportError as exc:
        raise InputError(f"--cluster needs Dask: pip install 'segment-engine[dask]' ({first_line(exc)})") from None
    with connected(chosen, log) as cluster:
        yield cluster


def final_pass_of(cluster: Any) -> Callable[..., Any]:
    """The streamed run's final pass: here (``engine.streaming``), or on the cluster's workers."""
    if cluster is None:
        return final_pass
    from engine.cluster.final import cluster_final_pass  # dask: only with --cluster

    return lambda *args: cluster_final_pass(cluster.client, *args)


def plan_run(opts: RunOptions) -> RunPlan:
    """Every check ``run`` makes before any work."""
    check_seed(opts.fit.seed)
    auto = opts.fit.k == "auto"
    ks = parse_ks(opts.fit.k_range) if auto else None
    k = None if auto else parse_k(opts.fit.k)
    sample = opts.scoring.silhouette_sample
    if sample is not None and sample < 0:
        raise InputError(f"--silhouette-sample must be 0 or more, not {sample}")
    out = required_out(opts.outputs.out)
    spec = plan_directory_output(out, opts.outputs.overwrite, opts.input, opts.features, opts.transactions)
    business = spec.business.with_figures(opts.business.cost_per_contact, opts.business.revenue_per_response)
    if opts.outputs.db is not None:
        check_file_target(Path(opts.outputs.db), opts.outputs.overwrite)
    return RunPlan(out, replace(spec, business=business), k, ks)


def choose_k(data: FeatureData, plan: RunPlan, opts: RunOptions, log: Log,
             progress: Progress = SILENT) -> tuple[int, SweepOutcome | None]:
    """The run's k: the one given, or the sweep's recommendation with ``--k auto``."""
    n, d = data.n_used, len(data.fitted.names)
    reduced = f" as {data.X.shape[1]} principal components" if data.spec.pca else ""
    head = f"{n:,} rows x {d} features{reduced} ({data.rows_dropped:,} dropped for missing values)"
    if plan.k is not None:
        log(f"{head}; fitting k={plan.k}")
        return plan.k, None
    log(f"{head}; choosing k in {plan.ks[0]}..{plan.ks[-1]}")
    fit = opts.fit
    with progress.stage("choosing k", len(plan.ks)) as advance:
        outcome = sweep_matrix(data.X, plan.ks, seed=fit.seed, n_init=fit.n_init, repeats=fit.repeats, log=log,
                               advance=advance)
    log(f"chose {outcome.reason}")
    return outcome.recommended_k, outcome


def score(data: FeatureData, labels: np.ndarray, k: int, sample: int | None, seed: int,
          log: Log) -> tuple[float | None, int]:
    """Exact silhouette of a uniform sample (the default size is clamped quietly, a chosen one aloud;
    0 skips it)."""
    n = data.n_used
    if sample is None:
        sample = min(SILHOUETTE_SAMPLE, n)
    elif sample > n:
        warning = f"--silhouette-sample {sample} clamped to the {n} rows available"
        data.warnings.append(warning)
        log(f"warning: {warning}")
    idx = sample_indices(n, min(sample, n), np.random.default_rng([seed, 1]))
    if idx.size < 2:
        return None, int(idx.size)
    return silhouette_score(data.rows_of(idx), labels[idx].astype(np.int32), k), int(idx.size)


def reduce_space(data: FeatureData, seed: int, log: Log) -> tuple[FeatureData, PCA | None]:
    """The rows k-means runs on: the scaled features, or with ``[pca]``/``--pca`` their principal
    components (fitted on a sample; ``engine.features.pca``). Profiles, names and rules never see
    the components: they read the input in its own units."""
    if data.spec.pca is None:
        return data, None
    pca = fit_pca(data.X, data.spec.pca, data.fitted.names, seed)
    kept = float(pca.explained_variance_ratio.sum())
    log(f"PCA: {pca.n_components} of {len(data.fitted.names)} components keep {kept:.1%} of the variance "
        f"(fitted on {pca.sample:,} rows)")
    return replace(data, X=pca.transform(data.X)), pca


def timed(func: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return func(*args), time.perf_counter() - t0


def record(opts: RunOptions, plan: RunPlan, inp: Input, data: FeatureData, auto: bool) -> dict[str, Any]:
    """What ``model.json`` and ``metrics.json`` both record: the options as resolved (less where the
    outputs went, ``out`` and ``overwrite``, so that a model is the same file wherever it is
    written), the input and the library versions."""
    spec = data.spec
    resolved = replace(
        opts,
        input=replace(opts.input, separator=inp.separator, cluster=None),
        features=replace(opts.features, spec=spec.source, id_col=spec.id_col, missing=spec.missing, scale=spec.scale,
                         exclude=tuple(spec.exclude), pca=spec.pca.text if spec.pca else None),
        fit=replace(opts.fit, k="auto" if auto else plan.k, k_range=opts.fit.k_range if auto else None,
                    repeats=opts.fit.repeats if auto else None),
    )
    options = asdict(resolved)
    for key in ("out", "overwrite"):
        del options["outputs"][key]
    for how in ("stream", "cluster"):  # how the rows were read, not what the model is (metrics.json: "streamed")
        del options["input"][how]
    return {"options": options, "input": input_facts(inp), "versions": versions()}


def fit_params(params: FitParams, data: FeatureData) -> dict[str, Any]:
    return {"k": params.k, "n_init": params.restarts(data.n_used), "init_sample": params.init_sample,
            "batch_size": params.batch_size, "max_iter": params.max_iter, "tol": params.tol}


def run_metrics(data: FeatureData, fit: FitResult, params: FitParams, silhouette: tuple[float | None, int],
                insight: Insight, outcome: SweepOutcome | None, provenance: dict[str, Any],
                n_threads: int) -> dict[str, Any]:
    """``metrics.json`` (``seconds`` is added when the outputs are written)."""
    k = params.k
    return {
        "format_version": rundir.FORMAT_VERSION, "k": k, "rows": data.n_rows, "rows_used": data.n_used,
        "rows_dropped": data.rows_dropped, "missing": data.missing, "non_finite": data.non_finite,
        "features": list(data.fitted.names), "inertia": fit.inertia, "silhouette": silhouette[0],
        "silhouette_sample": silhouette[1], "n_iter": fit.n_iter, "n_steps": fit.n_steps,
        "n_init": params.restarts(data.n_used), "streamed": data.X is None,
        "segment_sizes": segment_sizes(fit, k), "seed": params.seed,
        "threads": {"numba": n_threads, "polars": pl.thread_pool_size()},
        "warnings": list(data.warnings) + list(insight.warnings),
        "sweep": outcome.summary() if outcome else None, "insight": insight.summary, **provenance,
    }


def segments_meta(model: Model, data: FeatureData) -> dict[str, Any]:
    """The key-value metadata of segments.parquet (and the run's other Parquet files)."""
    return {"k": model.k, "features": ",".join(data.fitted.names), "model_hash": model.digest()}


def segment_sizes(fit: FitResult, k: int) -> list[int]:
    """Members per segment: the counts of the fit's last pass (a bincount of a streamed fit's one-byte
    labels would widen all of them to 8 bytes)."""
    if fit.label_counts is not None:
        return [int(c) for c in fit.label_counts]
    return np.bincount(fit.labels, minlength=k).tolist()


def write_run(plan: RunPlan, opts: RunOptions, model: Model, data: FeatureData, fit: FitResult, insight: Insight,
              outcome: SweepOutcome | None, metrics: dict[str, Any], seconds: dict[str, float],
              t_start: float, progress: Progress = SILENT, segments: Path | None = None) -> list[str]:
    """Every file of the run directory, committed in one step; returns what was written
    (``segments``: where a streamed run's final pass wrote segments.parquet, a file or a dataset)."""
    t0 = time.perf_counter()
    k = fit.centers.shape[0]
    meta = segments_meta(model, data)
    steps = 3 + opts.outputs.partition_by_segment + (outcome is not None)  # the advances below
    with rundir.write_run_dir(plan.out, opts.outputs.overwrite, meta) as out, \
            progress.stage("writing", steps) as advance:
        model.save(out.path(rundir.MODEL))
        if segments is not None:  # written by the streamed run's final pass
            os.replace(segments, out.path(rundir.SEGMENTS))
        else:
            write_segments(out.path(rundir.SEGMENTS), data.ids, fit.labels, fit.dist2, data.kept, meta)
        advance(1)
        if opts.outputs.partition_by_segment:
            write_partitions(out.path(rundir.SEGMENTS), out.path(rundir.PARTITIONS), k)
            advance(1)
        insight.write(out)
        advance(1)
        if outcome:
            write_sweep(out, outcome, {"ks": plan.ks, "seed": opts.fit.seed, "repeats": opts.fit.repeats})
            advance(1)
        seconds = {**seconds, "write": time.perf_counter() - t0, "total": time.perf_counter() - t_start}
        metrics["seconds"] = {key: round(v, 4) for key, v in seconds.items()}
        out.json(rundir.METRICS, metrics)
        advance(1)
        return out.listing()


# ----------------------------------------------------------------------------- sweep

def sweep(inputs: Sequence[str | Path] = (), ks: str | Sequence[int] | None = None, out: str | Path | None = None,
          *, options: SweepOptions | None = None, log: Log = quiet, progress: Progress = SILENT,
          **given: Any) -> SweepResult:
    """Fit every k in ``ks`` (``"2..12"``) on the same features and write ``out``/sweep.*; ``progress``
    (``engine.progress``) is told of the reading and of each k."""
    t_start = time.perf_counter()
    ks = ks if ks is None or isinstance(ks, str) else ",".join(map(str, ks))
    opts = build_options(SweepOptions, options, given, inputs=tuple(map(str, inputs)), ks=ks,
                         out=None if out is None else str(out))
    check_seed(opts.fit.seed)
    one_machine(opts.input, "segment sweep")
    k_list = parse_ks(opts.fit.ks)
    target = required_out(opts.outputs.out)
    spec = plan_directory_output(target, opts.outputs.overwrite, opts.input, opts.features, opts.transactions)
    with thread_limit(opts.fit.threads):
        inp, data = prepare_features(opts.input, spec, log, progress)
        space, pca = reduce_space(data, opts.fit.seed, log)
        log(f"{data.X.shape[0]:,} rows x {space.X.shape[1]} {'components' if pca else 'features'}; "
            f"fitting k={k_list[0]}..{k_list[-1]}")
        fit, scoring = opts.fit, opts.scoring
        with progress.stage("fitting k", len(k_list)) as advance:
            outcome = sweep_matrix(space.X, k_list, seed=fit.seed, n_init=fit.n_init, repeats=fit.repeats,
                                   silhouette_sample=scoring.silhouette_sample, compare=scoring.compare,
                                   compare_sample=scoring.compare_sample, log=log, advance=advance)
    params = {"ks": k_list, "seed": fit.seed, "repeats": fit.repeats, "n_init": fit.n_init,
              "compare": list(scoring.compare), "compare_sample": scoring.compare_sample, "rows": data.n_rows,
              "rows_used": int(data.X.shape[0]), "features": list(data.fitted.names),
              "pca": pca.summary() if pca else None, "input": input_facts(inp), "versions": versions()}
    with rundir.write_run_dir(target, opts.outputs.overwrite) as writer:
        write_sweep(writer, outcome, params)
        written = writer.listing()
    summary = {**outcome.summary(), "params": params, "seconds": round(time.perf_counter() - t_start, 4)}
    log(f"wrote {target}")
    return SweepResult(target, outcome, summary, written)


# ----------------------------------------------------------------------------- predict

def predict(model: str | Path | Model, inputs: Sequence[str | Path] = (), out: str | Path | None = None, *,
            options: PredictOptions | None = None, log: Log = quiet, progress: Progress = SILENT,
            **given: Any) -> dict[str, Any]:
    """Assign the customers in ``inputs`` to the segments of a saved model; write ``out`` (Parquet);
    ``progress`` (``engine.progress``) is told of the reading, the assignment and the writing."""
    t_start = time.perf_counter()
    opts = build_options(PredictOptions, options, given, inputs=tuple(map(str, inputs)),
                         out=None if out is None else str(out))
    target = required_out(opts.outputs.out)
    check_file_target(target, opts.outputs.overwrite)
    check_not_inside_inputs(target, opts.input.inputs)
    model = model if isinstance(model, Model) else load_model(model)
    with thread_limit(opts.outputs.threads), cluster_of(opts.input.cluster, log) as cluster:
        ids, labels, dist2, kept, n_rows, inertia = predicted_rows(model, opts.input, log, progress, cluster)
    with atomic_file(target, opts.outputs.overwrite) as tmp, progress.stage("writing", 1) as advance:
        write_segments(tmp, ids, labels, dist2, kept,
                       {"k": model.k, "features": ",".join(model.fitted.names), "model_hash": model.digest()})
        advance(1)
    log(f"wrote {target}")
    return {"out": str(target), "k": model.k, "rows": n_rows, "rows_used": int(labels.shape[0]),
            "rows_dropped": n_rows - int(labels.shape[0]), "inertia": inertia,
            "segment_sizes": np.bincount(labels, minlength=model.k).tolist(),
            "seconds": round(time.perf_counter() - t_start, 4)}


def predicted_rows(model: Model, options: InputOptions, log: Log, progress: Progress = SILENT,
                   cluster: Any = None) -> tuple:
    """``(ids, labels, dist2, kept, rows, inertia)`` of the new customers: in memory, or block by
    block on a cluster's workers (``engine.cluster.predict``)."""
    if cluster is None:
        data = model_features(model, options, log, progress)
        with progress.stage("assigning", 1) as advance:
            labels, dist2, inertia = assign_rows(model.transform(data.X), model.centers)
            advance(1)
        return data.ids, labels, dist2, data.kept, data.n_rows, inertia
    from engine.cluster.predict import cluster_predict  # dask: only with --cluster

    if model.pca is not None:
        raise InputError("--cluster cannot predict with a PCA model (a run with PCA does not run on a cluster)")
    inp = open_and_report(options, model.spec, log)
    if inp.format == "sql":
        raise InputError("--cluster reads input files on the workers: give Parquet or CSV files, not --sql")
    log(f"reading {inp.label} in blocks on {cluster.workers} workers")
    with progress.stage("assigning blocks on the cluster", 1) as advance:
        found = cluster_predict(cluster.client, inp, model, options.allow_duplicate_ids)
        advance(1)
    return found


def model_features(model: Model, options: InputOptions, log: Log, progress: Progress = SILENT) -> FeatureData:
    """The features of new customers, built with a saved model's spec and fitted scaler."""
    inp = open_and_report(options, model.spec, log)
    one_hot = sum(len(levels) for levels in model.fitted.levels.values())
    check_memory(inp, len(model.spec.features), one_hot, options.memory_limit)
    log(f"reading {inp.label}")
    with progress.stage("reading", len(model.spec.features)) as advance:
        return build_features(inp, model.spec, fitted=model.fitted, allow_duplicate_ids=options.allow_duplicate_ids,
                              advance=advance)


# ----------------------------------------------------------------------------- refresh

@dataclass
class RefreshResult:
    out: Path
    metrics: dict[str, Any]
    profiles: pl.DataFrame
    comparison: Comparison
    written: list[str]


@dataclass(frozen=True)
class RefreshPlan:
    """What ``refresh`` checked before any work: the earlier run (period A, its input read again),
    its model, the spec (the model's features, the run's business columns and names) and the output."""

    base: rundir.RunDir
    model: Model
    period: Period
    spec: FeatureSpec
    out: Path


def refresh(run_dir: str | Path, inputs: Sequence[str | Path] = (), out: str | Path | None = None, *,
            options: RefreshOptions | None = None, log: Log = quiet, **given: Any) -> RefreshResult:
    """Segment a new period's customers (``inputs``) against the run ``run_dir``, write the new
    period's run directory ``out`` with ``migration.parquet`` and ``drift.parquet``.

    Without ``refit`` rows are assigned with the run's model (the same ids and names); with it the
    segments are fitted again from the run's centres and matched to them (``engine.fit.match``)."""
    t_start = time.perf_counter()
    opts = build_options(RefreshOptions, options, given, inputs=tuple(map(str, inputs)),
                         out=None if out is None else str(out))
    plan = plan_refresh(run_dir, opts)
    with thread_limit(opts.outputs.threads) as n_threads:
        inp = open_and_report(opts.input, plan.model.spec, log)
        log(f"reading {inp.label}")
        data = build_features(inp, plan.model.spec, fitted=plan.model.fitted, allow_duplicate_ids=True)
        check_keys(data.ids, inp.label)  # present and unique, before any fit
        space = replace(data, X=plan.model.transform(data.X))
        fit, model, moved = refresh_fit(plan, space, opts, log)
        silhouette = score(space, fit.labels, model.k, None, int(plan.base.metrics.get("seed") or 0), log)
        insight = Insight(inp, replace(data, spec=plan.spec), fit.labels, model.scaled_centers(), model.k,
                          int(plan.base.metrics.get("seed") or 0))
    segment = scatter(fit.labels, data.kept, pl.Int32, "segment") if data.kept is not None else \
        pl.Series("segment", fit.labels, dtype=pl.Int32)
    period = Period("B", inp.label, data.ids.name, keyed(data.ids, segment, inp.label),
                    insight.profiles["name"].to_list(), model.spec.features,
                    feature_values(inp, model.spec, segment), model.k, model.digest(), plan.model.digest())
    comparison = compare_periods(plan.period, period, opts.fit.top, [(j, j) for j in range(model.k)])
    metrics = refresh_metrics(plan, opts, inp, space, fit, silhouette, insight, moved, comparison, n_threads)
    written = write_refresh(plan, opts, model, data, fit, insight, comparison, metrics, t_start)
    log(f"wrote {plan.out}")
    return RefreshResult(plan.out, metrics, insight.profiles, comparison, written)


def plan_refresh(run_dir: str | Path, opts: RefreshOptions) -> RefreshPlan:
    """Every check ``refresh`` makes before any work (the earlier run's input is read again here)."""
    check_top(opts.fit.top)
    one_machine(opts.input, "segment refresh")
    if opts.fit.move_threshold < 0:
        raise InputError(f"--move-threshold must be 0 or more, not {opts.fit.move_threshold}")
    base = rundir.read_run(run_dir, need=rundir.RUN_FILES)
    target = required_out(opts.outputs.out)
    rundir.check_run_target(target, opts.outputs.overwrite)
    check_not_inside_inputs(target, opts.input.inputs)
    if target.resolve() == base.path:
        raise InputError(f"--out {target} is the run being refreshed; write the new period to a new directory")
    period, model = load_period(base.path, "A")
    spec = refresh_spec(model, base, opts)
    return RefreshPlan(base, model, period, spec, target)


def refresh_spec(model: Model, base: rundir.RunDir, opts: RefreshOptions) -> FeatureSpec:
    """The model's spec with the business columns of the run's spec (``--spec``, else the one the
    model names), the run's campaign figures and its segment names. A spec that defines other
    features than the model is refused: a refresh keeps the run's features."""
    source = opts.fit.spec if opts.fit.spec is not None else model.spec.source
    loaded = load_spec(source) if opts.fit.spec is not None else reload_spec(source)
    business = Business()
    if loaded is not None:
        differ = sorted({f.name for f in set(loaded.features) ^ set(model.spec.features)}
                        | {c.column for c in set(loaded.categorical) ^ set(model.spec.categorical)})
        if differ and not loaded.auto:
            raise InputError(f"{loaded.source} defines other features than the run's model ({', '.join(differ)} "
                             "differ); a refresh keeps the run's features: segment the new period with segment run, "
                             "then segment compare the two runs")
        business = loaded.business
    recorded = ((base.metrics.get("options") or {}).get("business") or {})
    business = business.with_figures(opts.business.cost_per_contact or recorded.get("cost_per_contact"),
                                     opts.business.revenue_per_response or recorded.get("revenue_per_response"))
    names = base.profiles["name"].to_list()
    return replace(model.spec, business=replace(business, names=tuple(enumerate(names))))


def refresh_fit(plan: RefreshPlan, space: FeatureData, opts: RefreshOptions, log: Log
                ) -> tuple[FitResult, Model, dict[str, Any]]:
    """The new period's segments: the run's model (no fit), or with ``--refit`` a fit from its
    centres, renumbered to the nearest old segments, each centre's move measured."""
    old = plan.model.centers
    if not opts.fit.refit:
        labels, dist2, inertia = assign_rows(space.X, old)
        return FitResult(old, labels, dist2, inertia, 0, 0), plan.model, {"refit": False}
    seed = int(plan.base.metrics.get("seed") or 0)
    fit = fit_kmeans(ArraySource(space.X), FitParams(k=plan.model.k, seed=seed, init_centers=old))
    pairs = match_centres(old, fit.centers)
    labels, centers = relabel(fit.labels, fit.centers, pairs)
    shift = np.sqrt(((centers.astype(np.float64) - old) ** 2).sum(axis=1))
    moved = [j for j in range(plan.model.k) if shift[j] > opts.fit.move_threshold]
    for j in moved:
        log(f"warning: segment {j} ({plan.period.names[j]}): its centre moved {shift[j]:.2f} "
            f"(more than --move-threshold {opts.fit.move_threshold:g})")
    fit = replace(fit, labels=labels, centers=centers, label_sums=None, label_counts=None)
    model = Model(plan.model.spec, plan.model.fitted, centers,
                  {**plan.model.info, "inertia": fit.inertia, "refreshed_from": plan.model.digest()}, plan.model.pca)
    return fit, model, {"refit": True, "pairs": [list(p) for p in pairs], "centre_shift": shift.tolist(),
                        "move_threshold": opts.fit.move_threshold, "moved": moved}


def refresh_metrics(plan: RefreshPlan, opts: RefreshOptions, inp: Input, space: FeatureData, fit: FitResult,
                    silhouette: tuple[float | None, int], insight: Insight, moved: dict[str, Any],
                    comparison: Comparison, n_threads: int) -> dict[str, Any]:
    """``metrics.json`` of the new period's run directory, with ``refresh`` and ``migration``."""
    options = asdict(opts)
    for key in ("out", "overwrite"):
        del options["outputs"][key]
    provenance = {"options": options, "input": input_facts(inp), "versions": versions()}
    seed = int(plan.base.metrics.get("seed") or 0)
    params = FitParams(k=plan.model.k, seed=seed, n_init=1 if opts.fit.refit else None)
    metrics = run_metrics(space, fit, params, silhouette, insight, None, provenance, n_threads)
    metrics["features"] = list(plan.model.fitted.names)
    metrics["n_init"] = 1 if opts.fit.refit else 0
    metrics["pca"] = plan.model.pca.summary() if plan.model.pca else None
    metrics["refresh"] = {"from": str(plan.base.path), "from_model_hash": plan.model.digest(),
                          "spec": plan.spec.source, **moved}
    metrics["migration"] = comparison.summary
    return metrics


def write_refresh(plan: RefreshPlan, opts: RefreshOptions, model: Model, data: FeatureData, fit: FitResult,
                  insight: Insight, comparison: Comparison, metrics: dict[str, Any], t_start: float) -> list[str]:
    """The new period's run directory, committed in one step: a run's files with the migration."""
    meta = {"k": model.k, "features": ",".join(data.fitted.names), "model_hash": model.digest()}
    with rundir.write_run_dir(plan.out, opts.outputs.overwrite, meta) as out:
        model.save(out.path(rundir.MODEL))
        write_segments(out.path(rundir.SEGMENTS), data.ids, fit.labels, fit.dist2, data.kept, meta)
        insight.write(out)
        write_comparison(out, comparison)
        metrics["seconds"] = {"total": round(time.perf_counter() - t_start, 4)}
        out.json(rundir.METRICS, metrics)
        return out.listing()


# ----------------------------------------------------------------------------- shared steps

def required_out(out: str | None) -> Path:
    if out is None:
        raise InputError("--out is required: name the output")
    return Path(out)


def one_machine(options: InputOptions, command: str) -> None:
    """``cluster=`` given to a command that runs on one machine only is an error, not ignored."""
    if options.cluster is not None:
        raise InputError(f"{command} runs on one machine: --cluster is for segment run and predict")


def check_seed(seed: int) -> None:
    if seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed}")


def parse_k(k: int | str | None) -> int:
    """A number of segments, from an int or its text."""
    if k is None:
        raise InputError("--k is required: a number of segments, or auto")
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise InputError(f"--k must be a whole number or auto, not {k!r}") from None
    if value < 1:
        raise InputError(f"--k must be at least 1, not {value}")
    return value


def check_not_inside_inputs(out: Path, inputs: Sequence[str | Path]) -> None:
    """The output must not be an input, nor sit inside an input directory (the next run would
    read it back as input)."""
    target = out.resolve()
    for item in inputs:
        source = Path(item)
        if source.is_file() and target == source.resolve():
            raise InputError(f"output {out} is also an input; write it somewhere else")
        if source.is_dir() and (target == source.resolve() or source.resolve() in target.parents):
            raise InputError(f"output {out} is inside input directory {source}; write it somewhere else")


def resolve_spec(features: FeatureOptions, inputs: InputOptions,
                 transactions: TransactionOptions | None = None) -> FeatureSpec:
    """The feature spec the options describe: --features, --spec, --preset, or the default; then the
    transaction options (``with_transactions``)."""
    return with_transactions(spec_of_options(features, inputs), transactions or TransactionOptions())


def with_transactions(spec: FeatureSpec, transactions: TransactionOptions) -> FeatureSpec:
    """``--product-col`` and ``--response-window`` folded into the spec's preset (over its
    ``[source]`` keys; errors then name the flag)."""
    given = {key: value for key, value in (("product", transactions.product_col),
                                           ("response_window", transactions.response_window)) if value is not None}
    if not given:
        return spec
    if not spec.preset:
        flag = "--product-col" if "product" in given else "--response-window"
        raise InputError(f"{flag} needs transactions: --preset rfm, or a spec with [source] preset = \"rfm\"")
    window = given.get("response_window")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise InputError(f"--response-window must be a whole number of days, 1 or more, not {window!r}")
    preset = {**spec.preset, **given}
    return complete(replace(spec, preset=preset, flagged=tuple(sorted({*spec.flagged, *given}))))


def spec_of_options(features: FeatureOptions, inputs: InputOptions) -> FeatureSpec:
    """The feature spec of --features, --spec, --preset, or the default."""
    if features.spec is not None and features.features is not None:
        raise InputError("give --features or --spec, not both")
    given = {"id_col": features.id_col, "missing": features.missing, "scale": features.scale,
             "exclude": features.exclude or None,
             "pca": None if features.pca is None else parse_pca_option(features.pca)}
    if inputs.preset is not None:
        if features.spec is not None or features.features is not None:
            raise InputError("give --preset or --spec/--features, not both")
        return complete(rfm_spec(**inputs.preset.columns()).with_options(**given))
    if features.features is not None:
        return spec_from_columns(features.features, **given)
    if isinstance(features.spec, FeatureSpec):
        base = features.spec
    else:
        base = load_spec(features.spec) if features.spec is not None else FeatureSpec()
    return complete(base.with_options(**given))


def plan_directory_output(out: Path, overwrite: bool, inputs: InputOptions, features: FeatureOptions,
                          transactions: TransactionOptions | None = None) -> FeatureSpec:
    """The checks ``run`` and ``sweep`` make before any work: the output directory can be written and
    is not an input, and the feature options resolve to a spec."""
    rundir.check_run_target(out, overwrite)
    check_not_inside_inputs(out, inputs.inputs)
    return resolve_spec(features, inputs, transactions)


def prepare_features(options: InputOptions, spec: FeatureSpec, log: Log, seed: int = 0,
                     scratch: Scratch | None = None, refused: str | None = None,
                     progress: Progress = SILENT, cluster: Any = None, keep_columns: bool = False
                     ) -> tuple[Input, FeatureData]:
    """Open the inputs and build the matrix (warnings logged): in memory, or, with ``--stream`` or
    when the in-memory run would not fit in ``--memory-limit``, streamed into ``scratch``
    (``refused``: why this command cannot stream), or on a ``cluster``'s workers. In memory,
    ``keep_columns`` keeps the feature columns as read (``FeatureData.columns``) for the insight."""
    # With --stream a query's result is never held: DuckDB's batches go to a scratch Parquet file.
    spill = scratch.directory() / "input.parquet" if options.stream and scratch is not None and cluster is None \
        and (options.sql or spec.sql or spec.preset) else None
    inp = open_and_report(options, spec, log, spill)
    if cluster is not None:
        return inp, cluster_features(cluster, inp, spec, log, seed, refused, options.allow_duplicate_ids, progress)
    planned = resolve_features(spec, inp.schema(), inp.label)
    n_features, n_onehot = len(planned.features), sum(c.max_levels for c in planned.categorical)
    streamed = scratch is not None and wants_stream(inp, n_features, n_onehot, options, log)
    if streamed and refused:
        raise InputError(f"{inp.label}: cannot stream {refused}" + ("" if options.stream else
                         " (it needs more memory than --memory-limit allows)"))
    if not streamed:
        check_memory(inp, n_features, n_onehot, options.memory_limit)
    log(f"reading {inp.label}" + (" in blocks (streamed)" if streamed else ""))
    if streamed:
        with progress.stage("reading blocks", stream_blocks(inp)) as advance:
            data = stream_features(inp, spec, scratch.append, seed, options.allow_duplicate_ids, advance)
        data.scratch = scratch.matrix
    else:
        with progress.stage("reading", n_features) as advance:
            data = build_features(inp, spec, allow_duplicate_ids=options.allow_duplicate_ids, seed=seed,
                                  advance=advance, keep_columns=keep_columns,
                                  sample_size=pf.SAMPLE_ROWS if keep_columns else 0)
    for w in data.warnings:
        log(f"warning: {w}")
    return inp, data


def cluster_features(cluster: Any, inp: Input, spec: FeatureSpec, log: Log, seed: int, refused: str | None,
                     allow_duplicate_ids: bool, progress: Progress = SILENT) -> FeatureData:
    """The streamed feature pass with its blocks built and held on the cluster's workers."""
    from engine.cluster.source import cluster_features as on_workers  # dask: only with --cluster

    if refused:
        raise InputError(f"{inp.label}: cannot run on a cluster {refused}")
    if inp.format == "sql":
        raise InputError("--cluster reads input files on the workers: give Parquet or CSV files, not --sql")
    log(f"reading {inp.label} in blocks on {cluster.workers} workers")
    with progress.stage("reading blocks", stream_blocks(inp)) as advance:
        data = on_workers(cluster.client, inp, spec, seed, allow_duplicate_ids, advance)
    for w in data.warnings:
        log(f"warning: {w}")
    return data


def open_and_report(options: InputOptions, spec: FeatureSpec, log: Log, spill: Path | None = None) -> Input:
    """The input of any command (files, --sql or the spec's [source]); what a preset dropped is
    logged. ``spill``: where a query's result goes instead of memory (``open_source``)."""
    inp = open_source(options.inputs, options.separator, spec, options.sql, options.as_of, spill=spill)
    if inp.info and "rfm" in inp.info:
        log(summary_line(inp.info))
    return inp


def versions() -> dict[str, str]:
    """Python's version and those of the ``PACKAGES`` this process has loaded, each the module's own
    ``__version__`` (the code that ran; a library not loaded did not touch the numbers). Not
    importlib.metadata: importing it costs a small run 0.04 s (it loads the e-mail parser)."""
    found = {"python": platform.python_version()}
    for name, module in PACKAGES.items():
        version = getattr(sys.modules.get(module), "__version__", None)
        if isinstance(version, str):
            found[name] = version
    return found


def input_facts(inp: Input) -> dict[str, Any]:
    return {**source_facts(inp), "fingerprint": fingerprint(inp)}


def fingerprint(inp: Input) -> str:
    """SHA-256 over every input file's name, size and whole content (about 1.5 GB/s here, and
    compressed Parquet is small: 16 MiB for 1,000,000 customers)."""
    h = hashlib.sha256()
    if inp.query is not None:
        h.update(inp.query.encode() + b"\0")
    for path in inp.files:
        h.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            while chunk := fh.read(FINGERPRINT_CHUNK):
                h.update(chunk)
    return "sha256:" + h.hexdigest()
