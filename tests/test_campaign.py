"""Campaign tests with a holdout: the sizing against the closed form, the seeded stratified
assignment, plan -> simulated campaign -> measure recovering planted lifts, the coverage of the
95% intervals over repeated seeds, Newcombe's published intervals, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from scipy import stats

from benchmarks.campaign_coverage import coverage
from conftest import invoke
from engine.insight.campaign import CampaignTest, holdout_needed, lift_interval, p_value, power_of

TRUE_LIFTS = (0.04, 0.08, 0.0, 0.1)


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory, data_csv: Path) -> Path:
    """A k=4 run of the shared data (built-in customers spec: Response is the response), of its own:
    segment measure writes measure.parquet into it."""
    out = tmp_path_factory.mktemp("campaign") / "run"
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "4", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def closed_form(p0: float, lift: float, alpha: float, power: float, ratio: float) -> float:
    """The holdout of the two-proportion test with n_t = ratio * n_h (pooled null variance)."""
    p1 = p0 + lift
    pbar = (ratio * p1 + p0) / (1 + ratio)
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return ((za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / ratio)) + zb * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1) / ratio))
            / lift) ** 2


@pytest.mark.parametrize("p0, lift, alpha, power, share", [
    (0.10, 0.02, 0.05, 0.8, 0.5), (0.03, 0.01, 0.05, 0.9, 0.5), (0.25, 0.05, 0.01, 0.8, 0.2), (0.5, 0.1, 0.1, 0.7, 0.1),
])
def test_holdout_needed_is_the_closed_form(p0: float, lift: float, alpha: float, power: float, share: float) -> None:
    ours = holdout_needed(p0, 10**9, CampaignTest(lift, alpha, power, share))
    assert ours == math.ceil(closed_form(p0, lift, alpha, power, (1 - share) / share) - 1e-9)
    if (p0, lift, share) == (0.10, 0.02, 0.5):
        assert ours == 3841  # the usual textbook figure for 10% against 12%


def test_without_a_share_the_holdout_is_the_smallest_that_reaches_the_power() -> None:
    test = CampaignTest(0.05, 0.05, 0.8)
    n = holdout_needed(0.15, 5_000, test)
    assert power_of(0.15, 0.05, 5_000 - n, n, 0.05) >= 0.8 > power_of(0.15, 0.05, 5_001 - n, n - 1, 0.05)
    assert holdout_needed(0.15, 300, test) is None  # even half and half cannot detect it


def test_newcombe_intervals_and_p_values_match_published_and_scipy() -> None:
    """Newcombe (1998), Table II, method 10 (hybrid score)."""
    z = stats.norm.ppf(0.975)
    for (x1, n1, x2, n2), (lo, hi) in {(56, 70, 48, 80): (0.0524, 0.3339), (9, 10, 3, 10): (0.1705, 0.8090),
                                       (6, 7, 2, 7): (0.0582, 0.8062), (5, 56, 0, 29): (-0.0381, 0.1926)}.items():
        low, high = lift_interval(x1, n1, x2, n2, z)
        assert (round(low, 4), round(high, 4)) == (lo, hi)
    pooled = 104 / 150
    zstat = (56 / 70 - 48 / 80) / math.sqrt(pooled * (1 - pooled) * (1 / 70 + 1 / 80))
    assert p_value(56, 70, 48, 80) == pytest.approx(2 * stats.norm.sf(zstat), rel=1e-9)


def test_plan_is_seeded_and_stratified(campaign_run: Path, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    result = invoke(["plan", campaign_run, "--lift", "0.1", "--seed", "3", "--out", a])
    assert result.exit_code == 0, result.output
    assert "holdout_needed" in result.output and f"wrote {a}" in result.output
    assert invoke(["plan", campaign_run, "--lift", "0.1", "--seed", "3", "--out", b]).exit_code == 0
    assert invoke(["plan", campaign_run, "--lift", "0.1", "--seed", "4", "--out", c]).exit_code == 0
    plan_a, plan_b, plan_c = (pl.read_parquet(p) for p in (a, b, c))
    assert plan_a.equals(plan_b) and not plan_a.equals(plan_c)
    segments = pl.read_parquet(campaign_run / "segments.parquet").drop_nulls("segment")
    assert plan_a.columns == ["ID", "segment", "group"]
    assert plan_a["ID"].to_list() == segments["ID"].to_list()  # every segmented customer, once
    summary = invoke(["plan", campaign_run, "--lift", "0.1", "--seed", "3", "--out", a, "--overwrite", "--json"])
    import json

    table = pl.DataFrame(json.loads(summary.output)["segments"])
    counts = plan_a.group_by("segment", "group").len()
    for row in table.iter_rows(named=True):
        held = counts.filter((pl.col("segment") == row["segment"]) & (pl.col("group") == "holdout"))["len"]
        assert int(held.sum()) == row["holdout"]
        assert row["holdout"] + row["treated"] == row["customers"]
        assert row["large_enough"] == (row["power"] >= 0.8)
    # the holdouts differ between seeds in who, not in how many
    assert plan_c.group_by("segment", "group").len().sort("segment", "group").equals(
        counts.sort("segment", "group"))
    shared = invoke(["plan", campaign_run, "--lift", "0.1", "--holdout-share", "0.25", "--out", tmp_path / "s.parquet"])
    assert shared.exit_code == 0, shared.output
    share = pl.read_parquet(tmp_path / "s.parquet").group_by("segment").agg((pl.col("group") == "holdout").mean())
    assert all(abs(v - 0.25) < 0.01 for v in share["group"].to_list())


def test_plan_then_simulated_campaign_then_measure(campaign_run: Path, tmp_path: Path) -> None:
    plan, outcomes = tmp_path / "plan.parquet", tmp_path / "outcomes.csv"
    assert invoke(["plan", campaign_run, "--lift", "0.1", "--holdout-share", "0.3", "--seed", "1",
                   "--out", plan]).exit_code == 0
    generated = invoke(["generate", "--kind", "outcome", "--plan", plan, "--true-lift",
                        ",".join(map(str, TRUE_LIFTS)), "--seed", "1", "--out", outcomes])
    assert generated.exit_code == 0, generated.output
    result = invoke(["measure", plan, outcomes, "--response-col", "response"])
    assert result.exit_code == 0, result.output
    measured = pl.read_parquet(campaign_run / "measure.parquet")
    assert f"wrote {campaign_run / 'measure.parquet'}" in result.output
    segments = measured.filter(pl.col("scope") == "segment").sort("segment")
    for row, truth in zip(segments.iter_rows(named=True), TRUE_LIFTS):
        se = math.sqrt(row["treated_rate"] * (1 - row["treated_rate"]) / row["treated"]
                       + row["holdout_rate"] * (1 - row["holdout_rate"]) / row["holdout"])
        assert abs(row["lift"] - truth) < 4 * se
        assert row["lift_low"] < row["lift"] < row["lift_high"]
        assert row["incremental_revenue"] == pytest.approx(row["lift"] * row["treated"] * 11)  # Z_Revenue
        assert row["cost"] == pytest.approx(row["treated"] * 3)  # Z_CostContact
    everyone = measured.filter(pl.col("scope") == "all").row(0, named=True)
    assert everyone["treated"] + everyone["holdout"] == pl.read_parquet(plan).height
    assert invoke(["report", campaign_run]).exit_code == 0
    assert "Campaign test: measured lift against the holdout" in (campaign_run / "report.html").read_text()


def test_the_95_intervals_cover_the_planted_lifts(campaign_run: Path) -> None:
    """150 seeds x 4 segments = 600 intervals: 95% coverage gives 0.95 +- 0.009 (one standard error);
    the bounds are about three standard errors, so 90% intervals would fail it."""
    found = coverage(campaign_run, 150, 0.05, 0.3, TRUE_LIFTS)
    found = found.filter(pl.col("segment") >= 0)  # -1: the all-segments row
    assert found.height == 600
    assert 0.925 <= found["covered"].mean() <= 0.975
    by_segment = found.group_by("segment").agg(pl.col("lift").mean(), pl.col("true_lift").first())
    for row in by_segment.iter_rows(named=True):  # unbiased: mean of 150 estimates within 0.02
        assert abs(row["lift"] - row["true_lift"]) < 0.02


@pytest.mark.parametrize("args, message", [
    (["--lift", "0"], "--lift must be an absolute lift"),
    (["--lift", "-0.02"], "--lift must be an absolute lift"),
    (["--lift", "0.02", "--power", "1"], "--power must be a power, above 0 and below 1, not 1.0"),
    (["--lift", "0.02", "--alpha", "0"], "--alpha must be"),
    (["--lift", "0.02", "--holdout-share", "1.5"], "--holdout-share must be"),
])
def test_bad_plan_options(campaign_run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "plan.parquet"
    result = invoke(["plan", campaign_run, *args, "--out", out])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_run_without_a_response_cannot_be_planned(data_csv: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke(["run", data_csv, "--features", "Income,Recency", "--k", "2", "--out", run, "--quiet"]).exit_code == 0
    result = invoke(["plan", run, "--lift", "0.02", "--out", tmp_path / "p.parquet"])
    assert result.exit_code == 2 and "no response rate" in result.output
    assert not (tmp_path / "p.parquet").exists()


@pytest.fixture
def planned(campaign_run: Path, tmp_path: Path) -> Path:
    plan = tmp_path / "plan.parquet"
    assert invoke(["plan", campaign_run, "--lift", "0.1", "--out", plan]).exit_code == 0
    return plan


def write_outcomes(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_csv(path)
    return path


@pytest.mark.parametrize("make, args, message", [
    (lambda ids: pl.DataFrame({"customer": ids, "response": [0] * len(ids)}), [], "no column 'ID'"),
    (lambda ids: pl.DataFrame({"ID": ids, "bought": [0] * len(ids)}), [], "no column 'response' (--response-col)"),
    (lambda ids: pl.DataFrame({"ID": ids, "response": [2] * len(ids)}), [], "holds 2; a response is 0 or 1"),
    (lambda ids: pl.DataFrame({"ID": [i + 10**7 for i in ids], "response": [0] * len(ids)}), [],
     "none of the"),
    (lambda ids: pl.DataFrame({"ID": ids + ids[:1], "response": [0] * (len(ids) + 1)}), [], "has 2 outcomes"),
    (lambda ids: pl.DataFrame({"ID": ids, "response": [0] * len(ids)}), ["--id-col", "Id"], "no column 'Id' (--id-col)"),
])
def test_bad_outcomes(planned: Path, campaign_run: Path, tmp_path: Path, make, args, message) -> None:
    ids = pl.read_parquet(planned)["ID"].to_list()
    outcomes = write_outcomes(tmp_path / "outcomes.csv", make(ids))
    before = (campaign_run / "measure.parquet").read_bytes() if (campaign_run / "measure.parquet").exists() else None
    out = tmp_path / "measure.parquet"
    result = invoke(["measure", planned, outcomes, "--response-col", "response", *args, "--out", out])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()
    after = (campaign_run / "measure.parquet").read_bytes() if (campaign_run / "measure.parquet").exists() else None
    assert before == after


def test_unknown_outcome_ids_are_counted_not_an_error(planned: Path, tmp_path: Path) -> None:
    ids = pl.read_parquet(planned)["ID"].to_list()
    frame = pl.DataFrame({"ID": ids[:-5] + [10**7 + i for i in range(7)], "response": [1, 0] * ((len(ids) + 2) // 2)})
    outcomes = write_outcomes(tmp_path / "outcomes.csv", frame)
    out = tmp_path / "m.parquet"
    result = invoke(["measure", planned, outcomes, "--response-col", "response", "--out", out])
    assert result.exit_code == 0, result.output
    assert "7 ids not in the plan; 5 planned customers without an outcome" in result.output
    table = pl.read_parquet(out)
    assert table.filter(pl.col("scope") == "all")["treated"][0] + table.filter(pl.col("scope") == "all")["holdout"][0] \
        == len(ids) - 5


@pytest.mark.parametrize("args, message", [
    (["--true-lift", "0.05"], "--kind outcome needs --plan"),
    (["--plan", "PLAN"], "--kind outcome needs --true-lift"),
    (["--plan", "PLAN", "--true-lift", "0.01,0.02"], "gives 2 lifts for 4 segments"),
    (["--plan", "PLAN", "--true-lift", "0.9"], "outside 0..1"),
    (["--plan", "PLAN", "--true-lift", "lots"], "--true-lift must be a number"),
    (["--plan", "PLAN", "--true-lift", "0.05", "--customers", "10"], "not --customers"),
])
def test_bad_simulated_outcomes(planned: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "outcomes.csv"
    args = [str(planned) if a == "PLAN" else a for a in args]
    result = invoke(["generate", "--kind", "outcome", *args, "--out", out])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_simulated_outcome_is_seeded(planned: Path, tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.parquet" for n in "abc")
    for path, seed in ((a, 1), (b, 1), (c, 2)):
        assert invoke(["generate", "--kind", "outcome", "--plan", planned, "--true-lift", "0.05", "--seed", seed,
                       "--out", path]).exit_code == 0
    assert pl.read_parquet(a).equals(pl.read_parquet(b)) and not pl.read_parquet(a).equals(pl.read_parquet(c))
    assert pl.read_parquet(a).columns == ["ID", "response"]
