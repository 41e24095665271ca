"""The whole job: features -> fit -> score -> outputs. ``run`` and ``predict`` are the Python API
behind ``segment run`` and ``segment predict``."""

from __future__ import annotations

import contextlib
import hashlib
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.fit.batches import ArraySource
from engine.errors import InputError
from engine.features.build import FeatureData, build_features
from engine.features.build import resolve_spec as resolve_features
from engine.input.memory import check_memory
from engine.fit.kmeans import FitParams, assign_rows, fit_kmeans
from engine.fit.threads import thread_limit
from engine.fit.scores import sample_indices, silhouette_score
from engine.fit.model import Model, load_model
from engine.insight.stage import Insight
from engine.outputs.write import PARTITION_DIR, atomic_dir, atomic_file, check_target, write_json, write_partitions, write_segments
from engine.input.files import Input
from engine.duck.views import write_database
from engine.duck.source import open_source, source_facts
from engine.features.spec import FeatureSpec, load_spec, spec_from_columns
from engine.fit.sweep import DEFAULT_KS, DEFAULT_REPEATS, SWEEP_SILHOUETTE_SAMPLE, SweepOutcome, parse_ks, sweep_matrix, write_sweep

Log = Callable[[str], None]
DEFAULT_SILHOUETTE_SAMPLE = 20_000
PACKAGES = ("numpy", "polars", "pyarrow", "numba", "scikit-learn", "duckdb", "click")
FINGERPRINT_CHUNK = 8 << 20


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, Any]
    profiles: pl.DataFrame
    model: Model


def quiet(_: str) -> None:
    pass


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            found[name] = importlib_metadata.version(name)
    return found


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


def parse_k(k: int | str) -> int:
    """A number of segments, from an int or its text."""
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


def resolve_spec(spec: str | Path | FeatureSpec | None, features: str | None, preset: dict | None = None,
                 **options: Any) -> FeatureSpec:
    from engine.duck.rfm import complete, rfm_spec

    if spec is not None and features is not None:
        raise InputError("give --features or --spec, not both")
    if preset is not None:
        if spec is not None or features is not None:
            raise InputError("give --preset or --spec/--features, not both")
        spec = rfm_spec(**preset)
    if features is not None:
        return spec_from_columns(features, **options)
    if isinstance(spec, FeatureSpec):
        return complete(spec.with_options(**options))
    base = load_spec(spec) if spec is not None else FeatureSpec()
    return complete(base.with_options(**options))


def score(data: FeatureData, labels: np.ndarray, k: int, sample: int | None, seed: int,
          warnings: list[str]) -> tuple[float | None, int]:
    """Exact silhouette of a uniform sample (the default size is clamped quietly, a chosen one aloud)."""
    n = data.X.shape[0]
    if sample is None:
        sample = min(DEFAULT_SILHOUETTE_SAMPLE, n)
    elif sample > n:
        warnings.append(f"--silhouette-sample {sample} clamped to the {n} rows available")
    idx = sample_indices(n, min(sample, n), np.random.default_rng([seed, 1]))
    if idx.size < 2:
        return None, int(idx.size)
    return silhouette_score(data.X[idx], labels[idx], k), int(idx.size)


def plan_directory_output(
    out: Path, overwrite: bool, inputs: Sequence[str | Path], spec: str | Path | FeatureSpec | None,
    features: str | None, *, exclude: Sequence[str] | None, **options: Any,
) -> FeatureSpec:
    """The checks ``run`` and ``sweep`` make before any work: the output directory can be written and
    is not an input, and the feature options resolve to a spec."""
    check_target(out, overwrite, "directory")
    check_not_inside_inputs(out, inputs)
    return resolve_spec(spec, features, exclude=tuple(exclude) if exclude else None, **options)


def prepare_features(
    inputs: Sequence[str | Path], feature_spec: FeatureSpec, separator: str | None, allow_duplicate_ids: bool,
    memory_limit: str | int | None, log: Log, sql: str | None = None, as_of: str | None = None,
) -> tuple[Input, FeatureData]:
    """Open the inputs, check the memory the matrix will need, and build it (warnings logged)."""
    inp = open_and_report(inputs, separator, feature_spec, sql, as_of, log)
    planned = resolve_features(feature_spec, inp.schema(), inp.label)
    check_memory(inp, len(planned.features), sum(c.max_levels for c in planned.categorical), memory_limit)
    log(f"reading {inp.label}")
    data = build_features(inp, feature_spec, allow_duplicate_ids=allow_duplicate_ids)
    for w in data.warnings:
        log(f"warning: {w}")
    return inp, data


def open_and_report(inputs: Sequence[str | Path], separator: str | None, spec: FeatureSpec, sql: str | None,
                    as_of: str | None, log: Log) -> Input:
    """The input of any command (files, --sql or the spec's [source]); what a preset dropped is logged."""
    inp = open_source(inputs, separator, spec, sql, as_of)
    if inp.info and "rfm" in inp.info:
        from engine.duck.rfm import summary_line

        log(summary_line(inp.info))
    return inp


def run(
    inputs: Sequence[str | Path],
    k: int | str,
    out: str | Path,
    *,
    k_range: str = DEFAULT_KS,
    repeats: int = DEFAULT_REPEATS,
    spec: str | Path | FeatureSpec | None = None,
    features: str | None = None,
    id_col: str | None = None,
    missing: str | None = None,
    scale: str | None = None,
    exclude: Sequence[str] | None = None,
    seed: int = 0,
    threads: int | None = None,
    n_init: int | None = None,
    silhouette_sample: int | None = None,
    allow_duplicate_ids: bool = False,
    memory_limit: str | int | None = None,
    separator: str | None = None,
    cost_per_contact: float | None = None,
    revenue_per_response: float | None = None,
    overwrite: bool = False,
    sql: str | None = None,
    preset: dict[str, str] | None = None,
    as_of: str | None = None,
    db: str | Path | None = None,
    partition_by_segment: bool = False,
    log: Log = quiet,
) -> RunResult:
    """Segment the customers in ``inputs`` into ``k`` segments and write a run directory ``out``.

    With ``k="auto"`` a sweep over ``k_range`` chooses k first (see ``engine.fit.sweep``); the sweep's
    table goes into ``metrics.json`` and ``sweep.*`` beside the other outputs.
    """
    t_start = time.perf_counter()
    out = Path(out)
    if seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed}")
    auto = k == "auto"
    ks = parse_ks(k_range) if auto else None
    if not auto:
        k = parse_k(k)
    if silhouette_sample is not None and silhouette_sample < 0:
        raise InputError(f"--silhouette-sample must be 0 or more, not {silhouette_sample}")
    feature_spec = plan_directory_output(out, overwrite, inputs, spec, features, id_col=id_col, missing=missing,
                                         scale=scale, exclude=exclude, preset=preset)
    feature_spec = replace(feature_spec, business=feature_spec.business.with_figures(cost_per_contact, revenue_per_response))
    if db is not None:
        check_target(Path(db), overwrite, "file")
    with thread_limit(threads) as n_threads:
        inp, data = prepare_features(inputs, feature_spec, separator, allow_duplicate_ids, memory_limit, log,
                                     sql, as_of)
        n, d = data.X.shape
        outcome = None
        if auto:
            log(f"{n:,} rows x {d} features ({data.rows_dropped:,} dropped for missing values); "
                f"choosing k in {ks[0]}..{ks[-1]}")
            outcome = sweep_matrix(data.X, ks, seed=seed, n_init=n_init, repeats=repeats, log=log)
            k = outcome.recommended_k
            log(f"chose {outcome.reason}")
        else:
            log(f"{n:,} rows x {d} features ({data.rows_dropped:,} dropped for missing values); fitting k={k}")
        params = FitParams(k=k, seed=seed, n_init=n_init)
        fit = fit_kmeans(ArraySource(data.X), params)  # with --k auto too: the run's own restarts
        t0 = time.perf_counter()
        warnings = list(data.warnings)
        silhouette, sample_n = score(data, fit.labels, k, silhouette_sample, seed, warnings)
        for w in warnings[len(data.warnings):]:
            log(f"warning: {w}")
        t_sil = time.perf_counter() - t0
        t0 = time.perf_counter()
        insight = Insight(inp, data, fit.labels, fit.centers, k, seed)
        profiles = insight.profiles
        for w in insight.warnings:
            log(f"warning: {w}")
        warnings += insight.warnings
        t_prof = time.perf_counter() - t0
    options = {
        "inputs": [str(i) for i in inputs], "k": "auto" if auto else k, "k_range": k_range if auto else None,
        "repeats": repeats if auto else None, "spec": data.spec.source, "features": features,
        "id_col": data.spec.id_col, "missing": data.spec.missing, "scale": data.spec.scale,
        "exclude": list(data.spec.exclude), "seed": seed, "threads": threads, "n_init": n_init,
        "silhouette_sample": silhouette_sample, "separator": inp.separator,
        "allow_duplicate_ids": allow_duplicate_ids, "memory_limit": memory_limit, "sql": sql, "preset": preset,
        "as_of": as_of, "db": str(db) if db is not None else None, "partition_by_segment": partition_by_segment,
        "cost_per_contact": cost_per_contact, "revenue_per_response": revenue_per_response,
    }
    info = {
        "seed": seed,
        "options": options,
        "inertia": fit.inertia,
        "params": {"k": k, "n_init": params.restarts(n), "init_sample": params.init_sample,
                   "batch_size": params.batch_size, "max_iter": params.max_iter, "tol": params.tol},
        "input": {**source_facts(inp), "fingerprint": fingerprint(inp)},
        "versions": versions(),
    }
    model = Model(data.spec, data.fitted, fit.centers, info)
    metrics: dict[str, Any] = {
        "k": k,
        "rows": data.n_rows,
        "rows_used": n,
        "rows_dropped": data.rows_dropped,
        "missing": data.missing,
        "non_finite": data.non_finite,
        "features": list(data.fitted.names),
        "inertia": fit.inertia,
        "silhouette": silhouette,
        "silhouette_sample": sample_n,
        "n_iter": fit.n_iter,
        "n_steps": fit.n_steps,
        "n_init": params.restarts(n),
        "segment_sizes": np.bincount(fit.labels, minlength=k).tolist(),
        "seed": seed,
        "threads": {"numba": n_threads, "polars": pl.thread_pool_size()},
        "options": options,
        "warnings": warnings,
        "sweep": outcome.summary() if outcome else None,
        "insight": insight.summary,
        "input": info["input"],
        "versions": info["versions"],
    }
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite) as tmp:
        model.save(tmp / "model.json")
        meta = {"k": k, "features": ",".join(data.fitted.names), "model_hash": model.digest()}
        write_segments(tmp / "segments.parquet", data.ids, fit.labels, fit.dist2, data.kept, meta)
        if partition_by_segment:
            write_partitions(tmp / "segments.parquet", tmp / PARTITION_DIR, k)
        insight.write(tmp, meta)
        if outcome:
            write_sweep(tmp, outcome, {"ks": ks, "seed": seed, "repeats": repeats})
        seconds = {**data.seconds, **fit.seconds, "silhouette": t_sil, "profile": t_prof,
                   "write": time.perf_counter() - t0}
        seconds["total"] = time.perf_counter() - t_start
        metrics["seconds"] = {key: round(v, 4) for key, v in seconds.items()}
        write_json(tmp / "metrics.json", metrics)
    if db is not None:
        write_database(out, Path(db), overwrite)
        log(f"wrote {db}")
    log(f"wrote {out}")
    return RunResult(out, metrics, profiles, model)


@dataclass
class SweepResult:
    out: Path
    outcome: SweepOutcome
    summary: dict[str, Any]


def sweep(
    inputs: Sequence[str | Path],
    ks: str | Sequence[int],
    out: str | Path,
    *,
    spec: str | Path | FeatureSpec | None = None,
    features: str | None = None,
    id_col: str | None = None,
    missing: str | None = None,
    scale: str | None = None,
    exclude: Sequence[str] | None = None,
    seed: int = 0,
    threads: int | None = None,
    n_init: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    silhouette_sample: int | None = None,
    compare: Sequence[str] = (),
    compare_sample: int = 20_000,
    allow_duplicate_ids: bool = False,
    memory_limit: str | int | None = None,
    separator: str | None = None,
    overwrite: bool = False,
    sql: str | None = None,
    preset: dict[str, str] | None = None,
    as_of: str | None = None,
    log: Log = quiet,
) -> SweepResult:
    """Fit every k in ``ks`` (``"2..12"``) on the same features and write ``out``/sweep.*."""
    t_start = time.perf_counter()
    out = Path(out)
    if seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed}")
    k_list = parse_ks(ks)
    feature_spec = plan_directory_output(out, overwrite, inputs, spec, features, id_col=id_col, missing=missing,
                                         scale=scale, exclude=exclude, preset=preset)
    with thread_limit(threads):
        inp, data = prepare_features(inputs, feature_spec, separator, allow_duplicate_ids, memory_limit, log,
                                     sql, as_of)
        log(f"{data.X.shape[0]:,} rows x {data.X.shape[1]} features; fitting k={k_list[0]}..{k_list[-1]}")
        outcome = sweep_matrix(data.X, k_list, seed=seed, n_init=n_init, repeats=repeats,
                               silhouette_sample=silhouette_sample or SWEEP_SILHOUETTE_SAMPLE,
                               compare=compare, compare_sample=compare_sample, log=log)
    params = {"ks": k_list, "seed": seed, "repeats": repeats, "n_init": n_init, "compare": list(compare),
              "compare_sample": compare_sample, "rows": data.n_rows, "rows_used": int(data.X.shape[0]),
              "features": list(data.fitted.names), "input": {**source_facts(inp), "fingerprint": fingerprint(inp)},
              "versions": versions()}
    with atomic_dir(out, overwrite) as tmp:
        write_sweep(tmp, outcome, params)
    summary = {**outcome.summary(), "params": params, "seconds": round(time.perf_counter() - t_start, 4)}
    log(f"wrote {out}")
    return SweepResult(out, outcome, summary)


def predict(
    model: str | Path | Model,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    threads: int | None = None,
    separator: str | None = None,
    overwrite: bool = False,
    allow_duplicate_ids: bool = False,
    memory_limit: str | int | None = None,
    sql: str | None = None,
    as_of: str | None = None,
    log: Log = quiet,
) -> dict[str, Any]:
    """Assign the customers in ``inputs`` to the segments of a saved model; write ``out`` (Parquet)."""
    t_start = time.perf_counter()
    out = Path(out)
    check_target(out, overwrite, "file")
    check_not_inside_inputs(out, inputs)
    model = model if isinstance(model, Model) else load_model(model)
    with thread_limit(threads):
        inp = open_and_report(inputs, separator, model.spec, sql, as_of, log)
        check_memory(inp, len(model.spec.features), len(model.fitted.names) - len(model.spec.features), memory_limit)
        log(f"reading {inp.label}")
        data = build_features(inp, model.spec, fitted=model.fitted, allow_duplicate_ids=allow_duplicate_ids)
        labels, dist2, inertia = assign_rows(data.X, model.centers)
    with atomic_file(out, overwrite) as tmp:
        write_segments(tmp, data.ids, labels, dist2, data.kept,
                       {"k": model.k, "features": ",".join(model.fitted.names), "model_hash": model.digest()})
    log(f"wrote {out}")
    return {
        "out": str(out),
        "k": model.k,
        "rows": data.n_rows,
        "rows_used": int(data.X.shape[0]),
        "rows_dropped": data.rows_dropped,
        "inertia": inertia,
        "segment_sizes": np.bincount(labels, minlength=model.k).tolist(),
        "seconds": round(time.perf_counter() - t_start, 4),
    }
