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
