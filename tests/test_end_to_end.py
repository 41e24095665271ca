"""Whole runs: the shared dataset against independent computations, planted segments,
determinism, atomic outputs, the numba cache and predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from conftest import REPO, RUN_FILES, invoke, jit_only, leftovers, read_json, run_once
from engine.features.build import build_features
from engine.input.files import open_input
from engine.features.spec import load_spec

MNT = ["MntWines", "MntFruits", "MntMeatProducts", "MntFishProducts", "MntSweetProducts", "MntGoldProds"]


@pytest.fixture(scope="session")
def large_parquet(tmp_path_factory) -> Path:
    """40,000 realistic (overlapping) customers: more rows than the init sample, so the
    mini-batch path runs."""
    from engine.synth.customers import generate_customers

    path = tmp_path_factory.mktemp("large") / "customers.parquet"
    generate_customers(path, 40_000, segments=5, seed=11)
    return path


@pytest.fixture(scope="session")
def large_run(tmp_path_factory, large_parquet: Path) -> Path:
    return run_once(tmp_path_factory, "large_run", large_parquet, 5)


def independent_matrix(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The customers spec by hand (polars + numpy): returns (kept mask, z-scored float64 matrix)."""
    kept = frame["Income"].is_not_null().to_numpy()
    f = frame.filter(pl.Series(kept))
    income = f["Income"].to_numpy().astype(np.float64)
    lo, hi = np.quantile(frame["Income"].drop_nulls().to_numpy().astype(np.float64), [0.0, 0.99], method="linear")
    col = lambda name: f[name].to_numpy().astype(np.float64)  # noqa: E731
    raw = np.column_stack([
        2014 - col("Year_Birth"),
        np.clip(income, lo, hi),
        col("Kidhome") + col("Teenhome"),
        np.log1p(sum(col(c) for c in MNT)),
        col("NumDealsPurchases"),
        col("NumWebPurchases"),
        col("NumCatalogPurchases"),
        col("NumStorePurchases"),
        col("NumWebVisitsMonth"),
        col("Recency"),
        sum(col(f"AcceptedCmp{i}") for i in range(1, 6)),  # not Response: the business response
    ])
    return kept, (raw - raw.mean(axis=0)) / raw.std(axis=0, ddof=0)


def centroids(run: Path) -> np.ndarray:
    return np.array(read_json(run / "model.json")["centroids"]["scaled"], dtype=np.float64)


# ----------------------------------------------------------------------------- the shared dataset

def test_shared_run_metrics(shared_run: Path) -> None:
    assert sorted(p.name for p in shared_run.iterdir()) == sorted(RUN_FILES)
    m = read_json(shared_run / "metrics.json")
    assert m["k"] == 4
    assert m["rows"] == 2240
    assert m["rows_dropped"] == 24
    assert m["silhouette"] is not None and -1.0 <= m["silhouette"] <= 1.0
    assert m["silhouette_sample"] == 2216
    assert m["inertia"] > 0
    assert m["n_iter"] >= 1
    assert sum(m["segment_sizes"]) == 2216 and len(m["segment_sizes"]) == 4
    assert "total" in m["seconds"]
    model = read_json(shared_run / "model.json")
    assert model["k"] == 4 and len(model["centroids"]["scaled"]) == 4
    assert all(len(c) == 11 for c in model["centroids"]["scaled"])


def test_shared_run_segments(shared_run: Path, data_frame: pl.DataFrame, data_csv: Path) -> None:
    seg = pl.read_parquet(shared_run / "segments.parquet")
    assert seg.columns == ["ID", "segment", "distance"]
    assert seg.height == 2240
    assert_series_equal(seg["ID"], data_frame["ID"], check_dtypes=False)  # input order
    assert seg["segment"].null_count() == 24
    assert (seg["segment"].is_null() == data_frame["Income"].is_null()).all()  # exactly the blank-Income rows
    assert (seg["distance"].is_null() == seg["segment"].is_null()).all()
    present = seg.drop_nulls()
    assert present["segment"].min() >= 0 and present["segment"].max() <= 3
    assert sorted(present["segment"].unique().to_list()) == [0, 1, 2, 3]
    assert (present["distance"] >= 0).all()
    # distance is the Euclidean distance between the scaled row and its centroid
    data = build_features(open_input([data_csv]), load_spec("customers"))
    C = centroids(shared_run)
    labels = present["segment"].to_numpy()
    expected = np.linalg.norm(data.X.astype(np.float64) - C[labels], axis=1)
    np.testing.assert_allclose(present["distance"].to_numpy(), expected, rtol=1e-4, atol=1e-4)
    # ... and each row sits with its nearest centroid
    all_d = np.linalg.norm(data.X[:, None, :].astype(np.float64) - C[None], axis=2)
    assert (expected <= all_d.min(axis=1) + 1e-4).all()


def test_shared_run_profiles(shared_run: Path, data_frame: pl.DataFrame) -> None:
    prof = pl.read_parquet(shared_run / "profiles.parquet")
    assert prof.height == 4
    assert prof["segment"].to_list() == [0, 1, 2, 3]
    assert prof["size"].sum() == 2216
    assert prof["share"].sum() == pytest.approx(1.0)
    for name in ("income", "age", "spending", "recency"):
        assert f"{name}_mean" in prof.columns and f"{name}_median" in prof.columns
    seg = pl.read_parquet(shared_run / "segments.parquet")
    joined = data_frame.with_columns(seg["segment"]).filter(pl.col("segment").is_not_null())
    ours = (
        joined.group_by("segment")
        .agg(
            pl.len().alias("size"),
            pl.col("Income").mean().alias("income_mean"),
            pl.sum_horizontal(MNT).mean().alias("spending_mean"),
            (2014 - pl.col("Year_Birth")).median().alias("age_median"),
        )
        .sort("segment")
    )
    assert prof["size"].to_list() == ours["size"].to_list()
    np.testing.assert_allclose(prof["income_mean"].to_numpy(), ours["income_mean"].to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(prof["spending_mean"].to_numpy(), ours["spending_mean"].to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(prof["age_median"].to_numpy(), ours["age_median"].to_numpy(), rtol=1e-6)


def test_independent_matrix_matches_the_engine(data_frame: pl.DataFrame, data_csv: Path) -> None:
    kept, X = independent_matrix(data_frame)
    data = build_features(open_input([data_csv]), load_spec("customers"))
    assert data.kept.tolist() == kept.tolist()
    np.testing.assert_allclose(data.X, X, atol=1e-4)


@pytest.mark.slow
def test_quality_bar_against_sklearn(shared_run: Path, data_frame: pl.DataFrame) -> None:
    _, X = independent_matrix(data_frame)
    reference = KMeans(n_clusters=4, n_init=10, random_state=0).fit(X)
    metrics = read_json(shared_run / "metrics.json")
    assert metrics["inertia"] <= 1.01 * reference.inertia_, (metrics["inertia"], reference.inertia_)
    # the reported inertia is the SSE of the written segments and centroids
    seg = pl.read_parquet(shared_run / "segments.parquet").drop_nulls()
    labels = seg["segment"].to_numpy()
    sse = float(((X - centroids(shared_run)[labels]) ** 2).sum())
    assert metrics["inertia"] == pytest.approx(sse, rel=1e-4)
    assert metrics["inertia"] == pytest.approx(float((seg["distance"].cast(pl.Float64) ** 2).sum()), rel=1e-4)
    # silhouette over all 2,216 rows (the sample is clamped to them) is the exact one
    assert metrics["silhouette"] == pytest.approx(silhouette_score(X, labels), abs=1e-3)


# ----------------------------------------------------------------------------- planted segments

@pytest.mark.slow
def test_planted_segments_are_recovered(separated_parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["run", separated_parquet, "--spec", "customers", "--k", "5", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    truth = pl.read_parquet(separated_parquet, columns=["ID", "true_segment"])
    seg = pl.read_parquet(out / "segments.parquet")
    assert_series_equal(seg["ID"], truth["ID"])
    both = truth.with_columns(seg["segment"]).filter(pl.col("segment").is_not_null())
    assert both.height > 0.95 * truth.height
    assert adjusted_rand_score(both["true_segment"].to_numpy(), both["segment"].to_numpy()) >= 0.95


# ----------------------------------------------------------------------------- determinism

@pytest.mark.slow
@pytest.mark.parametrize("which", ["shared", "large"])
def test_same_seed_same_result(which: str, tmp_path: Path, data_csv: Path, large_parquet: Path) -> None:
    src, k = (data_csv, "4") if which == "shared" else (large_parquet, "5")
    runs = []
    for name, extra in (("a", []), ("b", []), ("one_thread", ["--threads", "1"])):
        out = tmp_path / name
        result = invoke(["run", src, "--spec", "customers", "--k", k, "--seed", "7", "--out", out, "--quiet", *extra])
        assert result.exit_code == 0, result.output
        runs.append(out)
    a, b, one = runs
    assert_frame_equal(pl.read_parquet(a / "segments.parquet"), pl.read_parquet(b / "segments.parquet"))
    np.testing.assert_array_equal(centroids(a), centroids(b))
    assert_series_equal(pl.read_parquet(a / "segments.parquet")["segment"],
                        pl.read_parquet(one / "segments.parquet")["segment"])
    assert read_json(a / "metrics.json")["inertia"] == read_json(b / "metrics.json")["inertia"]


@pytest.mark.slow
def test_large_run_uses_mini_batches(large_run: Path) -> None:
    m = read_json(large_run / "metrics.json")
    assert m["rows"] == 40_000
    assert m["n_steps"] > 0
    seg = pl.read_parquet(large_run / "segments.parquet")
    assert seg.height == 40_000
    assert seg["segment"].null_count() == m["rows_dropped"]
    present = seg.drop_nulls()
    assert m["inertia"] == pytest.approx(float((present["distance"].cast(pl.Float64) ** 2).sum()), rel=1e-4)


# ----------------------------------------------------------------------------- atomic outputs

def test_overwrite_leaves_no_temporary_siblings(tmp_path: Path, data_csv: Path) -> None:
    out = tmp_path / "run"
    for k in ("3", "4"):
        extra = ["--overwrite"] if k == "4" else []
        result = invoke(["run", data_csv, "--spec", "customers", "--k", k, "--out", out, "--quiet", *extra])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert leftovers(tmp_path, "run") == []
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert read_json(out / "metrics.json")["k"] == 4
    assert pl.read_parquet(out / "profiles.parquet").height == 4


def test_failed_overwrite_keeps_the_previous_run(tmp_path: Path, data_csv: Path) -> None:
    out = tmp_path / "run"
    assert invoke(["run", data_csv, "--spec", "customers", "--k", "3", "--out", out, "--quiet"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = invoke(["run", data_csv, "--features", "Incme", "--k", "4", "--out", out, "--quiet", "--overwrite"])
    assert result.exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path, "run") == []


# ----------------------------------------------------------------------------- predict

@pytest.mark.slow
def test_predict_on_generated_data_reproduces_the_run(large_run: Path, large_parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.parquet"
    result = invoke(["predict", large_run, large_parquet, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    pred = pl.read_parquet(out)
    run = pl.read_parquet(large_run / "segments.parquet")
    assert_series_equal(pred["ID"], run["ID"])
    assert_series_equal(pred["segment"], run["segment"])
    assert_frame_equal(pred, run)


# ----------------------------------------------------------------------------- numba cache

@pytest.mark.slow
@jit_only("numba's on-disk cache: with the JIT disabled nothing is compiled or cached")
def test_second_process_compiles_nothing(tmp_path: Path, large_parquet: Path) -> None:
    """Every kernel is cached on disk: a second `segment run` in a new process loads them all."""
    script = Path(sys.executable).parent / "segment"
    command = [str(script)] if script.exists() else [sys.executable, str(REPO / "cli.py")]
    env = {**os.environ, "NUMBA_DEBUG_CACHE": "1"}
    outputs = []
    for name in ("first", "second"):
        proc = subprocess.run(
            [*command, "run", str(large_parquet), "--spec", "customers", "--k", "5", "--out", str(tmp_path / name),
             "--quiet", "--json"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    second = outputs[1]
    assert "[cache] data loaded" in second  # the marker format is right: kernels did come from the cache
    saved = [ln for ln in second.splitlines() if "[cache] data saved" in ln]
    assert saved == [], saved
    # predict reuses the same cached kernels
    proc = subprocess.run(
        [*command, "predict", str(tmp_path / "second"), str(large_parquet), "--out", str(tmp_path / "p.parquet"),
         "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in (proc.stdout + proc.stderr).splitlines() if "[cache] data saved" in ln] == []


CACHE_PROBE = """
import json, sys
import numba
import engine
engine.run([sys.argv[1]], 5, sys.argv[2], spec="customers")
engine.predict(sys.argv[2], [sys.argv[1]], sys.argv[3])
stats = {}
for name, mod in sorted(sys.modules.items()):
    if name == "kernels" or name.startswith("kernels."):
        for attr, obj in vars(mod).items():
            if isinstance(obj, numba.core.dispatcher.Dispatcher) and obj.signatures:
                key = obj.py_func.__module__ + "." + obj.py_func.__name__
                stats[key] = [sum(obj.stats.cache_hits.values()), sum(obj.stats.cache_misses.values())]
print(json.dumps(stats))
"""


@pytest.mark.slow
@jit_only("numba's on-disk cache: with the JIT disabled nothing is compiled or cached")
def test_every_kernel_used_by_run_and_predict_is_loaded_from_the_cache(tmp_path: Path, large_run: Path,
                                                                       large_parquet: Path) -> None:
    """Stronger than the debug marker: a kernel without ``cache=True`` prints nothing but still
    compiles. In a new process (the caches exist: ``large_run`` ran the same paths), every
    dispatcher that got a signature must have been a cache hit, never a miss."""
    proc = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE, str(large_parquet), str(tmp_path / "run"), str(tmp_path / "p.parquet")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats, "no numba kernel ran"
    assert {"kernels.assign.assign", "kernels.kmeanspp.kmeanspp", "kernels.minibatch.minibatch_update"} <= set(stats)
    missed = {name: hm for name, hm in stats.items() if hm[1] or not hm[0]}
    assert missed == {}, f"compiled instead of loaded (hits, misses): {missed}"


@pytest.mark.slow
def test_categorical_spec_runs_and_predicts(tmp_path: Path, generated_parquet: Path) -> None:
    spec = tmp_path / "cat.toml"
    spec.write_text('id = "ID"\n[features]\nincome = "Income"\nrecency = "Recency"\n'
                    '[categorical]\nEducation = { max_levels = 3 }\n')
    out = tmp_path / "run"
    result = invoke(["run", generated_parquet, "--spec", spec, "--k", "3", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    profiles = pl.read_parquet(out / "profiles.parquet")
    shares = [c for c in profiles.columns if c.startswith("Education=") and c.endswith("_mean")]
    assert len(shares) == 3
    assert all(0.0 <= v <= 1.0 for c in shares for v in profiles[c].to_list())
    pred = tmp_path / "pred.parquet"
    result = invoke(["predict", out, generated_parquet, "--out", pred, "--quiet"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(pred).equals(pl.read_parquet(out / "segments.parquet"))


@pytest.mark.slow
def test_threads_option_limits_numba_and_polars(tmp_path: Path, data_csv: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "segment"), "run", str(data_csv), "--spec", "customers", "--k", "4",
         "--out", str(out), "--threads", "1", "--quiet"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_json(out / "metrics.json")["threads"] == {"numba": 1, "polars": 1}
