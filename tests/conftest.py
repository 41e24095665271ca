"""Shared paths, fixtures and helpers for the test suite.

The real dataset lives outside the repository, in ``../shared/data`` beside the clone; it is
never copied into the repo. Synthetic data comes from ``engine.synth.customers.generate_customers``
and is made once per session.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numba

import polars as pl
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
DATA_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "marketing_campaign.csv"
# a run with the built-in customers spec (it declares [business], so impact.parquet is written)
RUN_FILES = ("segments.parquet", "profiles.parquet", "model.json", "metrics.json", "describe.json", "projection.parquet",
             "impact.parquet", "offers.parquet")


@pytest.fixture(scope="session")
def data_csv() -> Path:
    """The shared marketing_campaign.csv (tab-separated, 2,240 rows)."""
    assert DATA_CSV.is_file(), f"shared dataset missing: {DATA_CSV} (clone ../shared beside the repo)"
    return DATA_CSV


@pytest.fixture(scope="session")
def data_frame(data_csv: Path) -> pl.DataFrame:
    """The shared CSV read independently of the engine (Response kept as text)."""
    return pl.read_csv(data_csv, separator="\t", infer_schema_length=None)


@pytest.fixture(scope="session")
def generated_parquet(tmp_path_factory) -> Path:
    """A small synthetic customer file (5,000 rows, 4 planted segments), made once."""
    from engine.synth.customers import generate_customers

    path = tmp_path_factory.mktemp("generated") / "customers.parquet"
    generate_customers(path, 5_000, segments=4, seed=1)
    return path


@pytest.fixture(scope="session")
def separated_parquet(tmp_path_factory) -> Path:
    """30,000 synthetic customers in 5 well-separated planted segments (spread 0.25, seed 3)."""
    from engine.synth.customers import generate_customers

    path = tmp_path_factory.mktemp("separated") / "customers.parquet"
    generate_customers(path, 30_000, segments=5, seed=3, spread=0.25)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A not-yet-existing run directory inside a fresh tmp dir."""
    return tmp_path / "run"


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


def invoke(args: list[str], **kwargs):
    """Invoke ``segment`` in-process; exceptions other than SystemExit propagate as ``result.exception``."""
    from cli import main

    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


@contextmanager
def num_threads(t: int):
    """Run numba kernels on ``t`` threads inside the block (skip where the machine has fewer)."""
    if t > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba has fewer than {t} threads here")
    previous = numba.get_num_threads()
    numba.set_num_threads(t)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def run_once(tmp_path_factory, name: str, data: Path, k: int) -> Path:
    """`segment run DATA --spec customers --k K` into a fresh session directory; the run dir."""
    out = tmp_path_factory.mktemp(name) / "run"
    result = invoke(["run", data, "--spec", "customers", "--k", str(k), "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, data_csv: Path) -> Path:
    """One run of the shared CSV with the built-in customers spec and k=4, made once."""
    return run_once(tmp_path_factory, "shared_run", data_csv, 4)


@pytest.fixture(scope="session")
def marketing_run(tmp_path_factory, data_csv: Path) -> Path:
    """One run of the shared CSV with the built-in marketing spec (ten engineered features), k=4."""
    out = tmp_path_factory.mktemp("marketing") / "run"
    result = invoke(["run", data_csv, "--spec", "marketing", "--k", "4", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def perturb_period(data: Path, out: Path, seed: int = 2015) -> Path:
    """A second period of the shared CSV, the same layout (tab-separated): 10% of the customers
    leave, incomes rise about 5% and spending falls about 10% (each customer by a factor of his
    own, lognormal with sigma 0.10 and 0.25), and 5% new customers join (copies of sampled ones
    with ``ID + 100000``). Seeded: the same file every time."""
    import numpy as np

    frame = pl.read_csv(data, separator="\t", infer_schema_length=None)
    rng = np.random.default_rng(seed)
    n = frame.height
    keep, income, spend = rng.random(n) >= 0.10, rng.lognormal(np.log(1.05), 0.10, n), rng.lognormal(np.log(0.90), 0.25, n)
    amounts = [c for c in frame.columns if c.startswith("Mnt")]
    period = frame.with_columns((pl.col("Income") * pl.Series(income)).round(0).cast(pl.Int64).alias("Income"),
                                *[(pl.col(c) * pl.Series(spend)).round(0).cast(pl.Int64).alias(c) for c in amounts])
    joined = frame.sample(n=n // 20, seed=seed).with_columns((pl.col("ID") + 100_000).alias("ID"))
    pl.concat([period.filter(pl.Series(keep)), joined]).write_csv(out, separator="\t")
    return out


@pytest.fixture(scope="session")
def period2_csv(tmp_path_factory, data_csv: Path) -> Path:
    """The shared CSV one period later (see ``perturb_period``)."""
    return perturb_period(data_csv, tmp_path_factory.mktemp("period2") / "marketing_campaign_q2.csv")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary or swapped-out siblings of an output named ``name`` in ``parent``."""
    return sorted(
        p.name for p in Path(parent).iterdir()
        if p.name.startswith(f".{name}.") and (".tmp" in p.name or ".old-" in p.name)
    )


# ----------------------------------------------------------------------------- NUMBA_DISABLE_JIT

def jit_only(why: str):
    """Skip under NUMBA_DISABLE_JIT=1 (``make coverage``) a test of what only compiled kernels do."""
    return pytest.mark.skipif(numba.config.DISABLE_JIT, reason=f"needs the numba JIT: {why}")


# Tests that take minutes when the kernels run in the interpreter (NUMBA_DISABLE_JIT=1): full runs,
# sweeps and fits of tens of thousands of rows. They get the ``jit_heavy`` marker and ``make coverage``
# leaves them out (-m "not slow and not jit_heavy"); the normal suite runs them. Each entry is a test
# id or the start of one (every parametrisation), with the seconds it took under coverage with the
# JIT disabled on the 2-core machine, and the faster tests that run the same code in its place.
JIT_HEAVY = {
    "tests/test_rfm.py::test_run_with_rfm_preset_through_the_cli": "864 s: run + predict of 48,000 customers",
    "tests/test_rfm.py::test_spec_with_rfm_source": "267 s: a run of 48,000 customers (RFM via the spec)",
    "tests/test_sql.py::test_run_from_sql_query": "173 s: runs of the shared CSV through --sql",
    "tests/test_indices.py::test_fit_hands_over_the_cluster_sums_of_its_labels[600000": "207 s: 600,000-row fits "
    "(the 5,000-row case stays)",
    "tests/test_report.py::test_report_with_sweep_chart_renders": "112 s: a sweep k=2..10 before the report",
    "tests/test_kernels.py::test_silhouette_blobs_3000_by_16": "104 s: interpreted silhouette of 3,000 rows "
    "(the other silhouette tests stay)",
    "tests/test_cli.py::test_run_overwrite_replaces_the_previous_run": "73 s: three runs of the shared CSV",
    "tests/test_estimator.py::test_labels_equal_the_engine_fit_for_the_same_seed[50000": "65 s: a 50,000-row fit "
    "(the 1,500-row cases stay)",
    "tests/test_fit.py::test_fit_larger_than_init_sample_runs_minibatch": "62 s: a 60,000-row fit "
    "(test_weighted and test_fit's 20,000-row cases run the mini-batch path)",
    "tests/test_fit.py::test_exactly_k_distinct_rows_gives_k_clusters_and_zero_inertia[40000": "22 s: 40,000 rows",
    "tests/test_insight.py::test_names_are_stable_and_can_be_overridden": "61 s: three runs of the shared CSV",
    "tests/test_insight.py::test_run_describes_its_columns_from_every_nth_row_above_the_sample_size": "27 s",
    "tests/test_end_to_end.py::test_overwrite_leaves_no_temporary_siblings": "53 s: repeated runs of the shared CSV",
    "tests/test_end_to_end.py::test_failed_overwrite_keeps_the_previous_run": "22 s: two runs of the shared CSV",
    "tests/test_compare.py::test_deterministic": "43 s: the compared algorithms fitted twice more",
    "tests/test_reproducible.py::test_run_records_seed_options_versions_and_fingerprint": "60,000-row runs in "
    "subprocesses (thread_runs)",
    "tests/test_reproducible.py::test_recorded_options_reproduce_the_run": "60,000-row runs in subprocesses",
    "tests/test_reproducible.py::test_runs_used_the_mini_batch_path": "60,000-row runs in subprocesses",
    "tests/test_reproducible.py::test_threads_option_is_recorded": "60,000-row runs in subprocesses",
    "tests/test_reproducible.py::test_another_seed_on_separated_customers": "runs of 30,000 customers",
    **{f"tests/test_sweep.py::test_sweep_{name}": "the shared CSV swept over k=2..10 with 3 bootstrap repeats "
       "(the file took over 20 min; test_small_sweep_with_repeats_and_a_compared_algorithm stays)"
       for name in ("writes_its_files", "table_columns_and_rows", "table_values_are_sane", "json", "chart",
                    "matches_independent_fits", "seed_matters")},
    "tests/test_sweep.py::test_sweep_is_deterministic": "three sweeps of the shared CSV, k=2..6, 2 repeats",
    "tests/test_atomic.py::test_disk_full_during_run_keeps_the_previous_outputs": "about 5 min each: two runs of "
    "5,000 customers (the interpreted silhouette is quadratic in the rows)",
    "tests/test_atomic.py::test_disk_full_during_predict_keeps_the_previous_file": "a run of 5,000 customers",
    "tests/test_atomic.py::test_disk_full_on_a_first_run_leaves_nothing": "a run of 5,000 customers",
    "tests/test_sweep.py::test_sweep_compare_adds_rows": "179 s: the shared CSV swept over k=2..5 with gmm and ward",
    "tests/test_reproducible.py::test_fingerprint_of_a_run_changes_with_one_byte_and_not_for_a_copy": "113 s: three "
    "runs of the shared CSV (the other fingerprint tests stay)",
    "tests/test_sweep.py::test_run_auto_": "a sweep k=2..6 then the run",
    **{f"tests/test_stream.py::test_{name}": "runs of 200,000 (or 2,240 and 5,000) customers in memory and "
       "streamed (the scratch-source, relocation and sample tests stay)"
       for name in ("streamed_run_equals_the_in_memory_run_on_many_blocks", "stream_flag_on_the_shared_dataset",
                    "a_memory_limit_below_the_estimate_streams", "a_fit_on_the_scratch_file_is_the_in_memory_fit",
                    "a_full_disk_in_a_streamed_run_keeps")},
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for prefix, why in JIT_HEAVY.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.jit_heavy(reason=why))
                break
