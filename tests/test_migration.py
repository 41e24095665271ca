"""``segment refresh`` and ``segment compare``: migration between periods and segment drift.
(Repeated ids, a missing id column, a run without a model and a refresh with another spec are
cases in test_bad_input.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import invoke, read_json
from engine.fit.model import load_model
from engine.synth.customers import generate_customers



def refresh(run_dir: Path, data: Path, out: Path, *extra) -> Path:
    result = invoke(["refresh", run_dir, data, "--out", out, "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return out


def migration(run_dir: Path) -> dict[tuple[str, str], int]:
    frame = pl.read_parquet(run_dir / "migration.parquet")
    return {(r["from_segment"], r["to_segment"]): r["customers"] for r in frame.iter_rows(named=True)}


@pytest.fixture(scope="module")
def identity(tmp_path_factory, marketing_run: Path, data_csv: Path) -> Path:
    """The shared marketing run refreshed with its own input."""
    return refresh(marketing_run, data_csv, tmp_path_factory.mktemp("identity") / "q1")


@pytest.fixture(scope="module")
def next_period(tmp_path_factory, marketing_run: Path, period2_csv: Path) -> Path:
    return refresh(marketing_run, period2_csv, tmp_path_factory.mktemp("next") / "q2")


def test_refreshing_the_same_input_is_the_identity(identity: Path, marketing_run: Path) -> None:
    cells = migration(identity)
    assert all(a == b for a, b in cells)  # every customer stays where they were (unsegmented too)
    assert pl.read_parquet(identity / "segments.parquet").equals(pl.read_parquet(marketing_run / "segments.parquet"))
    assert load_model(identity).digest() == load_model(marketing_run).digest()  # no new fit
    names = pl.read_parquet(identity / "profiles.parquet")["name"]
    assert names.equals(pl.read_parquet(marketing_run / "profiles.parquet")["name"])
    drift = pl.read_parquet(identity / "drift.parquet")
    psi = drift.select(pl.col("^.*_psi$")).to_numpy()
    assert np.allclose(psi, 0.0) and np.allclose(drift.select(pl.col("^.*_shift$")).to_numpy(), 0.0)
    summary = read_json(identity / "metrics.json")["migration"]
    assert summary["moved"] == summary["new"] == summary["gone"] == 0


def test_refit_of_the_same_input_keeps_every_id(marketing_run: Path, data_csv: Path, tmp_path: Path) -> None:
    out = refresh(marketing_run, data_csv, tmp_path / "refit", "--refit")
    refreshed = read_json(out / "metrics.json")["refresh"]
    assert refreshed["refit"] and refreshed["pairs"] == [[j, j] for j in range(4)] and refreshed["moved"] == []
    assert max(refreshed["centre_shift"]) < 0.05
    assert all(a == b for a, b in migration(out))


def planted_periods(tmp_path: Path) -> tuple[Path, Path, pl.DataFrame]:
    """4 well-separated planted groups; period B moves 10% of the customers to another group (each
    takes every column but its ID from a customer of the next group)."""
    a = tmp_path / "a.parquet"
    generate_customers(a, 8_000, segments=4, seed=5, spread=0.25)
    frame = pl.read_parquet(a)
    rng = np.random.default_rng(9)
    group = frame["true_segment"].to_numpy()
    movers = np.sort(rng.choice(frame.height, size=frame.height // 10, replace=False))
    donors = np.array([rng.choice(np.flatnonzero(group == (group[m] + 1) % 4)) for m in movers])
    rows = np.arange(frame.height)
    rows[movers] = donors
    b = tmp_path / "b.parquet"
    frame.select(pl.exclude("ID"))[rows].with_columns(frame["ID"]).select(frame.columns).write_parquet(b)
    return a, b, pl.DataFrame({"ID": frame["ID"].to_numpy()[movers], "donor": frame["ID"].to_numpy()[donors]})


def test_planted_moves_show_in_the_matrix(tmp_path: Path) -> None:
    a, b, moved = planted_periods(tmp_path)
    result = invoke(["run", a, "--spec", "customers", "--k", "4", "--out", tmp_path / "run", "--quiet"])
    assert result.exit_code == 0, result.output
    out = refresh(tmp_path / "run", b, tmp_path / "q2")
    seg = pl.read_parquet(tmp_path / "run" / "segments.parquet").select("ID", "segment")
    # the model assigns a mover as it assigned the donor whose values it now has
    to = seg.join(moved, on="ID", how="left").with_columns(pl.coalesce("donor", "ID").alias("donor"))
    to = to.join(seg.rename({"ID": "donor", "segment": "to"}), on="donor", how="left")
    expected = to.group_by("segment", "to").len()
    cells = migration(out)
    label = (lambda s: "unsegmented" if s is None else str(s))  # noqa: E731  (a row with a missing value)
    assert cells == {(label(r["segment"]), label(r["to"])): r["len"] for r in expected.iter_rows(named=True)}
    off = sum(n for (f, t), n in cells.items() if f != t and "unsegmented" not in (f, t))
    assert 0.9 * moved.height <= off <= moved.height  # the movers, between planted groups
    refit = refresh(tmp_path / "run", b, tmp_path / "q2r", "--refit")
    refit_off = sum(n for (f, t), n in migration(refit).items() if f != t and "unsegmented" not in (f, t))
    assert abs(refit_off - off) <= 0.05 * moved.height


def test_migration_counts_add_up_to_the_union_of_customers(next_period: Path, marketing_run: Path,
                                                          period2_csv: Path, data_csv: Path) -> None:
    a = set(pl.read_csv(data_csv, separator="\t", columns=["ID"])["ID"].to_list())
    b = set(pl.read_csv(period2_csv, separator="\t", columns=["ID"])["ID"].to_list())
    cells = migration(next_period)
    assert sum(cells.values()) == len(a | b)
    assert sum(n for (f, _), n in cells.items() if f == "new") == len(b - a)
    assert sum(n for (_, t), n in cells.items() if t == "gone") == len(a - b)
    assert ("new", "gone") not in cells
    summary = read_json(next_period / "metrics.json")["migration"]
    parts = ("stayed", "moved", "new", "gone", "unsegmented")
    assert sum(summary[p] for p in parts) == summary["customers"] == len(a | b)


def test_drift_sizes_shifts_and_psi(next_period: Path, marketing_run: Path) -> None:
    drift = pl.read_parquet(next_period / "drift.parquet")
    cells = migration(next_period)
    seg = drift.filter(pl.col("segment").is_not_null())
    for row in seg.iter_rows(named=True):
        j = str(row["segment"])
        assert row["customers_b"] == sum(n for (_, t), n in cells.items() if t == j)
        assert row["customers_a"] == sum(n for (f, _), n in cells.items() if f == j)
        assert row["customers_change"] == row["customers_b"] - row["customers_a"]
    pa, pb = (pl.read_parquet(d / "profiles.parquet") for d in (marketing_run, next_period))
    for f in ("income", "spending", "age"):
        np.testing.assert_allclose(seg[f"{f}_shift"].to_numpy(), (pb[f"{f}_mean"] - pa[f"{f}_mean"]).to_numpy(),
                                   rtol=1e-9, atol=1e-9)
    everyone = drift.filter(pl.col("segment").is_null()).row(0, named=True)
    assert everyone["name"] == "all customers" and everyone["share_a"] == everyone["share_b"] == 1.0
    assert everyone["income_shift"] > 0 > everyone["spending_shift"]  # the perturbation: incomes up, spending down
    assert everyone["income_psi"] > everyone["children_psi"]  # children were not perturbed


def test_refresh_prints_the_matrix_with_row_shares_and_the_top_movements(marketing_run: Path, period2_csv: Path,
                                                                         tmp_path: Path) -> None:
    result = invoke(["refresh", marketing_run, period2_csv, "--out", tmp_path / "q2", "--quiet", "--top", "3"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "from \\ to" in text and "gone" in text and "new" in text and "%)" in text
    moves = [line for line in text.splitlines() if " customers moved from " in line]
    assert 1 <= len(moves) <= 3
    as_json = invoke(["refresh", marketing_run, period2_csv, "--out", tmp_path / "q2", "--quiet", "--overwrite",
                      "--json"])
    assert json.loads(as_json.stdout)["migration"]["moves"][0]["text"] == moves[0]


def test_report_of_a_refresh_shows_the_migration_heatmap(next_period: Path, tmp_path: Path) -> None:
    result = invoke(["report", next_period, "--out", tmp_path / "r.html"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r.html").read_text()
    assert "Migration from the earlier period" in text and "chart-migration" in text and "PSI" in text


def test_compare_a_refresh_with_its_run_pairs_by_id(marketing_run: Path, next_period: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = invoke(["compare", marketing_run, next_period, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    summary = read_json(out / "compare.json")
    assert summary["pairing"] == "ids"
    assert pl.read_parquet(out / "migration.parquet").equals(pl.read_parquet(next_period / "migration.parquet"))
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json", "drift.parquet",
                                                     "migration.parquet"]


def test_compare_two_independent_runs_pairs_by_centroid_distance(tmp_path: Path) -> None:
    """Two fits of the same well-separated customers with other seeds find the same segments,
    whatever their numbers: paired by centroid distance, every customer stays."""
    data = tmp_path / "c.parquet"
    generate_customers(data, 6_000, segments=4, seed=2, spread=0.25)
    for seed in ("0", "11"):
        result = invoke(["run", data, "--spec", "customers", "--k", "4", "--seed", seed, "--n-init", "1",
                         "--out", tmp_path / seed, "--quiet"])
        assert result.exit_code == 0, result.output
    compared = invoke(["compare", tmp_path / "0", tmp_path / "11", "--json"])
    assert compared.exit_code == 0, compared.output
    summary = json.loads(compared.stdout)
    assert summary["pairing"] == "centroid distance" and sorted(j for _, j in summary["pairs"]) == [0, 1, 2, 3]
    assert summary["moved"] == summary["new"] == summary["gone"] == 0
    a, b = (pl.read_parquet(tmp_path / s / "segments.parquet")["segment"] for s in ("0", "11"))
    paired = dict(summary["pairs"])
    assert (a.drop_nulls().replace_strict(paired) == b.drop_nulls()).all()


def test_compare_runs_with_different_specs_warns_and_keeps_the_common_features(
        marketing_run: Path, shared_run: Path) -> None:
    result = invoke(["compare", marketing_run, shared_run])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "different feature specs" in warnings[0]
    assert "mean shift in own units" in result.stdout
    assert "age" in result.stdout and "tenure_days" not in result.stdout  # only the marketing spec has tenure


def test_segment_sql_queries_the_migration_and_drift(next_period: Path) -> None:
    result = invoke(["sql", next_period, "SELECT CAST(sum(customers) AS BIGINT) AS n FROM migration WHERE to_segment = 'gone'",
                     "--format", "json"])
    assert result.exit_code == 0, result.output
    gone = sum(n for (_, t), n in migration(next_period).items() if t == "gone")
    assert json.loads(result.stdout) == [{"n": gone}]
    drift = invoke(["sql", next_period, "SELECT count(*) AS n FROM drift", "--format", "json"])
    assert json.loads(drift.stdout) == [{"n": pl.read_parquet(next_period / "drift.parquet").height}]


def test_refit_flags_the_segments_whose_centre_moved_past_the_threshold(marketing_run: Path, period2_csv: Path,
                                                                        tmp_path: Path) -> None:
    first = refresh(marketing_run, period2_csv, tmp_path / "a", "--refit")
    shifts = read_json(first / "metrics.json")["refresh"]["centre_shift"]
    threshold = sorted(shifts)[1]  # between the smallest shifts and the largest: some flagged, some not
    result = invoke(["refresh", marketing_run, period2_csv, "--out", tmp_path / "b", "--refit",
                     "--move-threshold", str(threshold)])
    assert result.exit_code == 0, result.output
    refreshed = read_json(tmp_path / "b" / "metrics.json")["refresh"]
    assert refreshed["moved"] == [j for j, s in enumerate(shifts) if s > threshold] and refreshed["moved"]
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: segment")]
    assert len(warned) == len(refreshed["moved"]) and all("--move-threshold" in w for w in warned)
