"""Profiles with business columns, names, actions, impact and describe, end to end through the CLI
on the shared marketing dataset (built-in spec `marketing`: ten engineered features, k=4).

Every figure is checked against an independent Polars computation over the CSV joined with
segments.parquet row for row."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from conftest import invoke, read_json

SPENDING = ["MntWines", "MntFruits", "MntMeatProducts", "MntFishProducts", "MntSweetProducts", "MntGoldProds"]


@pytest.fixture(scope="session")
def joined(marketing_run: Path, data_frame: pl.DataFrame) -> pl.DataFrame:
    """The CSV with revenue, response and the run's segment, computed without the engine."""
    seg = pl.read_parquet(marketing_run / "segments.parquet")
    assert seg["ID"].to_list() == data_frame["ID"].to_list()
    return data_frame.with_columns(
        pl.sum_horizontal(SPENDING).cast(pl.Float64).alias("revenue"),
        pl.col("Response").cast(pl.String).str.strip_chars().cast(pl.Int64).alias("response"),
        seg["segment"],
    )


def test_profiles_have_names_actions_and_business_columns(marketing_run: Path) -> None:
    p = pl.read_parquet(marketing_run / "profiles.parquet")
    assert p.height == 4 and p.columns[:6] == ["segment", "name", "action", "offer", "size", "share"]
    for feature in ("age", "income", "spending", "purchases", "children", "tenure_days", "web_share", "deal_share",
                    "recency", "campaigns_accepted"):
        assert {f"{feature}_mean", f"{feature}_median", f"{feature}_z"} <= set(p.columns)
    for column in ("revenue_sum", "revenue_share", "revenue_index", "revenue_top10_share", "revenue_top20_share",
                   "revenue_top25_share", "responses", "response_rate", "response_lift", "frequency_mean",
                   "deals_z", "tenure_median"):
        assert column in p.columns
    names = p["name"].to_list()
    assert len(set(names)) == 4 and all(names)
    assert all(p["action"].to_list())
    assert sum(p["revenue_share"].to_list()) == pytest.approx(1.0)
    assert sum(p["share"].to_list()) == pytest.approx(1.0)


def test_revenue_share_and_concentration_match_polars(marketing_run: Path, joined: pl.DataFrame) -> None:
    p = pl.read_parquet(marketing_run / "profiles.parquet")
    kept = joined.filter(pl.col("segment").is_not_null())
    total = kept["revenue"].sum()
    expected = kept.group_by("segment").agg(pl.col("revenue").sum() / total).sort("segment")
    assert p["revenue_share"].to_list() == pytest.approx(expected["revenue"].to_list(), rel=1e-12)
    top = p.sort("revenue_share", descending=True).row(0, named=True)
    assert top["revenue_share"] == pytest.approx(expected["revenue"].max(), rel=1e-12)

    def top_share(values: pl.Series, pct: int) -> float:
        n = math.ceil(len(values) * pct / 100)
        return values.sort(descending=True).head(n).sum() / values.sum()

    overall = read_json(marketing_run / "metrics.json")["insight"]["overall"]
    for pct in (10, 20, 25):
        assert overall["revenue_concentration"][f"top{pct}"] == pytest.approx(top_share(kept["revenue"], pct), rel=1e-12)
        for row in p.iter_rows(named=True):
            values = kept.filter(pl.col("segment") == row["segment"])["revenue"]
            assert row[f"revenue_top{pct}_share"] == pytest.approx(top_share(values, pct), rel=1e-12)
    assert overall["revenue_sum"] == total


def test_means_z_scores_and_response_match_polars(marketing_run: Path, joined: pl.DataFrame) -> None:
    p = pl.read_parquet(marketing_run / "profiles.parquet")
    kept = joined.filter(pl.col("segment").is_not_null()).with_columns(
        (2014 - pl.col("Year_Birth")).cast(pl.Float64).alias("age"))
    by = kept.group_by("segment").agg(pl.col("age").mean(), pl.col("Income").median(),
                                      pl.col("response").sum().alias("responses"),
                                      pl.col("response").mean().alias("rate")).sort("segment")
    assert p["age_mean"].to_list() == pytest.approx(by["age"].to_list())
    assert p["income_median"].to_list() == pytest.approx(by["Income"].to_list())
    z = (by["age"] - kept["age"].mean()) / kept["age"].std(ddof=0)
    assert p["age_z"].to_list() == pytest.approx(z.to_list())
    assert p["responses"].to_list() == by["responses"].to_list()
    assert p["response_lift"].to_list() == pytest.approx((by["rate"] / kept["response"].mean()).to_list())
    # the population z-scores of each feature average to zero over customers
    assert (p["age_z"] * p["size"]).sum() == pytest.approx(0.0, abs=1e-9)


def test_impact_mass_campaign_by_hand(marketing_run: Path) -> None:
    imp = pl.read_parquet(marketing_run / "impact.parquet")
    everyone = imp.filter(pl.col("scope") == "everyone").row(0, named=True)
    # 334 responses among 2,240 customers, contacts at 3, responses worth 11
    assert everyone["customers"] == 2240 and everyone["responses"] == 334
    assert everyone["cost"] == 2240 * 3 == 6720
    assert everyone["revenue"] == 334 * 11 == 3674
    assert everyone["profit"] == 3674 - 6720 == -3046
    assert everyone["roi"] == pytest.approx(-3046 / 6720)
    segs = imp.filter(pl.col("scope") == "segment")
    assert segs.height == 4
    for row in segs.iter_rows(named=True):
        assert row["cost"] == row["customers"] * 3 and row["revenue"] == row["responses"] * 11
        assert row["roi"] == pytest.approx((row["revenue"] - row["cost"]) / row["cost"])
    assert segs["roi"].to_list() == sorted(segs["roi"].to_list(), reverse=True)  # contacted in ROI order
    rest = imp.filter(pl.col("scope") == "unsegmented").row(0, named=True)
    assert rest["customers"] == 24  # the rows dropped for a blank income
    last = imp.filter(pl.col("scope") != "everyone").row(-1, named=True)
    assert (last["cum_customers"], last["cum_responses"], last["cum_profit"]) == (2240, 334, -3046)
    metrics = read_json(marketing_run / "metrics.json")
    assert metrics["insight"]["impact"]["everyone"]["roi"] == pytest.approx(-3046 / 6720)
    assert metrics["insight"]["overall"]["cost_per_contact"] == 3 and metrics["insight"]["overall"]["revenue_per_response"] == 11


def test_impact_command_recomputes_with_other_figures(marketing_run: Path, tmp_path: Path) -> None:
    result = invoke(["impact", marketing_run, "--cost-per-contact", "2", "--revenue-per-response", "15", "--json",
                     "--out", tmp_path / "impact.parquet"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["everyone"]["profit"] == 334 * 15 - 2240 * 2 == 530
    written = pl.read_parquet(tmp_path / "impact.parquet")
    assert written.filter(pl.col("scope") == "everyone")["cost"].item() == 4480
    text = invoke(["impact", marketing_run])
    assert text.exit_code == 0, text.output
    assert "334 responses x 11 = revenue 3,674" in text.stdout and "profit -3,046" in text.stdout


def test_names_are_stable_and_can_be_overridden(marketing_run: Path, data_csv: Path, tmp_path: Path) -> None:
    names = pl.read_parquet(marketing_run / "profiles.parquet")["name"].to_list()
    again = tmp_path / "again"
    assert invoke(["run", data_csv, "--spec", "marketing", "--k", "4", "--out", again, "--quiet"]).exit_code == 0
    assert pl.read_parquet(again / "profiles.parquet")["name"].to_list() == names
    spec_text = (Path(__file__).parents[1] / "engine" / "features" / "specs" / "marketing.toml").read_text()
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text + '\n[business.names]\n1 = "Segment one"\n\n[[business.actions]]\naction = "Call"\n'
                    'when = "response_lift > 2"\n\n[[business.actions]]\naction = "Email"\nwhen = "TRUE"\n')
    out = tmp_path / "override"
    result = invoke(["run", data_csv, "--spec", spec, "--k", "4", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    p = pl.read_parquet(out / "profiles.parquet")
    assert p["name"].to_list() == [n if j != 1 else "Segment one" for j, n in enumerate(names)]
    expected = ["Call" if lift > 2 else "Email" for lift in p["response_lift"].to_list()]
    assert p["action"].to_list() == expected and "Call" in expected


def test_run_prints_names_actions_and_impact(data_csv: Path, tmp_path: Path) -> None:
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "3", "--out", tmp_path / "r",
                     "--cost-per-contact", "1"])
    assert result.exit_code == 0, result.output
    assert "segment 0: " in result.stdout and " -> " in result.stdout
    assert "mass campaign: 2,240 contacted, 334 responses, profit 1,434" in result.stdout  # 334*11 - 2240*1
    assert read_json(tmp_path / "r" / "metrics.json")["options"]["business"]["cost_per_contact"] == 1.0


def test_run_without_business_columns_has_no_impact(data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    result = invoke(["run", data_csv, "--features", "Income,Recency,MntWines", "--k", "3", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert not (out / "impact.parquet").exists()
    p = pl.read_parquet(out / "profiles.parquet")
    assert len(set(p["name"].to_list())) == 3 and "revenue_share" not in p.columns


def test_describe_matches_polars(data_csv: Path, data_frame: pl.DataFrame) -> None:
    result = invoke(["describe", data_csv, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 2240
    cols = {c["column"]: c for c in summary["columns"]}
    assert len(cols) == len(data_frame.columns)
    income = cols["Income"]
    assert income["nulls"] == 24 and income["kind"] == "numeric"
    assert income["mean"] == pytest.approx(data_frame["Income"].mean())
    assert income["p50"] == pytest.approx(data_frame["Income"].median())
    assert income["skew"] == pytest.approx(data_frame["Income"].skew())
    assert income["max"] == 666666 and cols["Education"]["distinct"] == 5
    assert cols["Dt_Customer"]["kind"] == "text" and cols["Dt_Customer"]["mean"] is None
    corr = summary["correlation"]
    i, j = corr["columns"].index("Income"), corr["columns"].index("MntWines")
    expected = data_frame.drop_nulls("Income").select(pl.corr("Income", "MntWines")).item()
    assert corr["matrix"][i][j] == pytest.approx(expected) and corr["matrix"][j][i] == corr["matrix"][i][j]
    text = invoke(["describe", data_csv, "--columns", "Income,Recency"])
    assert text.exit_code == 0 and "2,240 rows, 2 columns" in text.stdout and "correlation" in text.stdout


def test_run_writes_describe_and_projection(marketing_run: Path) -> None:
    described = read_json(marketing_run / "describe.json")
    assert described["rows"] == 2240 and "Dt_Customer" in {c["column"] for c in described["columns"]}
    proj = pl.read_parquet(marketing_run / "projection.parquet")
    assert proj.columns == ["pc1", "pc2", "segment"] and proj.height == 2216
    info = read_json(marketing_run / "metrics.json")["insight"]["projection"]
    assert 0 < info["explained_variance"][1] <= info["explained_variance"][0] < 1


def spec_with(tmp_path: Path, business: str, features: str = 'income = "Income"\nrecency = "Recency"') -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(f'id = "ID"\nnumeric = ["Response"]\n\n[features]\n{features}\n\n[business]\n{business}\n')
    return path


@pytest.mark.parametrize(("business", "message"), [
    ('revenu = "MntWines"', "[business]: unknown key 'revenu' (did you mean 'revenue'"),
    ('cost_per_contact = -3', "[business] cost_per_contact must be a number of 0 or more, not -3"),
    ('response = ""', "[business] response must be a non-empty string"),
    ('response = "Responze"', "feature 'business.response' uses unknown column 'Responze' (did you mean 'Response'?)"),
    ('response = "Education"', "column 'Education' used by feature 'business.response' is String, not numeric"),
    ('response = "Kidhome"', "business response 'Kidhome' has 48 values other than 0 and 1"),
    ('revenue = "MntWines +"', "feature 'business.revenue': cannot parse 'MntWines +'"),
    ('[business.names]\n9 = "Nine"', "[business.names]: segment 9 does not exist (k=3: segments 0..2)"),
    ('[business.names]\nx = "Nine"', "[business] names: key 'x' is not a segment number"),
    ('[business.names]\n0 = "Same"\n1 = "Same"', "the name 'Same' is given to two segments"),
    ('[[business.actions]]\naction = "Call"\nwhen = "lift > 2"', "[[business.actions]] 'Call': unknown profile column 'lift'"),
    ('[[business.actions]]\naction = "Call"\nif = "TRUE"', "actions rule 1: unknown key 'if'"),
    ('[business.wording]\nincome = ["Poor"]', "[business] wording.income must be two phrases [low, high]"),
    ('recency = "Recency * 2"', "feature 'recency' and business recency are different expressions"),
])
def test_bad_business_section(data_csv: Path, tmp_path: Path, business: str, message: str) -> None:
    out = tmp_path / "run"
    result = invoke(["run", data_csv, "--spec", spec_with(tmp_path, business), "--k", "3", "--out", out, "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert not out.exists()


def test_bad_campaign_figures_and_run_dirs(data_csv: Path, marketing_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    bad = invoke(["run", data_csv, "--spec", "customers", "--k", "3", "--out", out, "--cost-per-contact", "-1"])
    assert bad.exit_code == 2 and "--cost-per-contact must be a number of 0 or more, not -1.0" in bad.output
    assert not out.exists()
    nan = invoke(["impact", marketing_run, "--revenue-per-response", "nan"])
    assert nan.exit_code == 2 and "--revenue-per-response must be a number of 0 or more" in nan.output
    missing = invoke(["impact", tmp_path / "nope"])
    assert missing.exit_code == 2 and "run directory not found" in missing.output
    plain = tmp_path / "plain"
    assert invoke(["run", data_csv, "--features", "Income,Recency", "--k", "2", "--out", plain, "--quiet"]).exit_code == 0
    no_impact = invoke(["impact", plain])
    assert no_impact.exit_code == 2 and "the run has no impact.parquet" in no_impact.output
    (marketing_run / "taken.parquet").write_bytes(b"x")
    taken = invoke(["impact", marketing_run, "--out", marketing_run / "taken.parquet"])
    assert taken.exit_code == 2 and "already exists" in taken.output
    (marketing_run / "taken.parquet").unlink()


def test_describe_bad_inputs(data_csv: Path, tmp_path: Path) -> None:
    unknown = invoke(["describe", data_csv, "--columns", "Incme"])
    assert unknown.exit_code == 2 and "column 'Incme' not found (did you mean 'Income'?)" in unknown.output
    assert invoke(["describe", tmp_path / "nope.csv"]).exit_code == 2
    (tmp_path / "empty.csv").write_text("")
    empty = invoke(["describe", tmp_path / "empty.csv"])
    assert empty.exit_code == 2 and "input file is empty" in empty.output


def test_describe_parquet_with_nan_and_dates(tmp_path: Path) -> None:
    import datetime as dt

    path = tmp_path / "x.parquet"
    pl.DataFrame({"a": [1.0, float("nan"), 3.0, None], "d": [dt.date(2020, 1, 1)] * 3 + [None],
                  "b": [True, False, True, True]}).write_parquet(path)
    result = invoke(["describe", path, "--json"])
    assert result.exit_code == 0, result.output
    cols = {c["column"]: c for c in json.loads(result.stdout)["columns"]}
    assert cols["a"]["nulls"] == 1 and cols["a"]["non_finite"] == 1 and cols["a"]["mean"] == 2.0
    assert cols["d"]["kind"] == "temporal" and cols["d"]["min"] == "2020-01-01"
    assert cols["b"]["mean"] == pytest.approx(0.75)


def test_large_inputs_estimate_medians_and_concentration_from_a_uniform_sample(
        data_csv: Path, data_frame: pl.DataFrame, monkeypatch) -> None:
    """Above SAMPLE_ROWS input rows, medians and revenue concentration come from the hash sample
    of SAMPLE_ROWS rows (its segmented rows recorded in the summary); means, sums and sizes stay
    exact, the same bits."""
    import numpy as np

    from engine.insight import profiles
    from engine.insight.onepass import profile_table, sampled_rows
    from engine.features.build import build_features
    from engine.features.spec import load_spec
    from engine.duck.open import open_source

    spec = load_spec("customers")
    inp = open_source([str(data_csv)], None, spec)
    data = build_features(inp, spec)
    labels = np.arange(data.X.shape[0], dtype=np.int32) % 3
    values = labels[np.where(data.kept, np.cumsum(data.kept) - 1, 0)]
    segments = pl.Series(values, dtype=pl.Int32).set(pl.Series(~data.kept), None)
    exact = profile_table(inp, data.spec, {}, segments, 3, 0)
    monkeypatch.setattr(profiles, "SAMPLE_ROWS", 1500)
    sampled = profile_table(inp, data.spec, {}, segments, 3, 0)
    rows = sampled_rows(data.n_rows, 0)
    assert rows.size == 1500 and exact.overall["median_sample"] is None
    assert sampled.overall["median_sample"] == int(data.kept[rows].sum()) < 1500
    e, s = exact.table, sampled.table
    for column in ("size", "income_mean", "revenue_sum", "revenue_share", "responses"):
        assert s[column].to_list() == e[column].to_list()
    assert s["income_median"].to_list() != e["income_median"].to_list()  # estimated, not copied
    assert s["income_median"].to_list() == pytest.approx(e["income_median"].to_list(), rel=0.1)
    assert s["revenue_top20_share"].to_list() == pytest.approx(e["revenue_top20_share"].to_list(), abs=0.1)


def test_the_median_sample_is_drawn_with_the_runs_seed(data_csv: Path, monkeypatch) -> None:
    """Above SAMPLE_ROWS the median sample follows the run's seed: the same labels with another
    seed give other sampled medians, with the same seed the same ones; exact figures do not move."""
    import numpy as np

    from engine.insight import profiles
    from engine.insight.stage import Insight
    from engine.features.build import build_features
    from engine.features.spec import load_spec
    from engine.duck.open import open_source

    spec = load_spec("customers")
    inp = open_source([str(data_csv)], None, spec)
    data = build_features(inp, spec)
    labels = np.arange(data.X.shape[0], dtype=np.int32) % 3
    centers = np.stack([data.X[labels == j].mean(axis=0) for j in range(3)])
    monkeypatch.setattr(profiles, "SAMPLE_ROWS", 1500)
    first, other, again = (Insight(inp, data, labels, centers, 3, seed).profiles for seed in (1, 2, 1))
    assert first.equals(again)
    assert first["income_median"].to_list() != other["income_median"].to_list()
    assert first["revenue_top20_share"].to_list() != other["revenue_top20_share"].to_list()
    for column in ("size", "income_mean", "revenue_sum", "responses"):
        assert first[column].to_list() == other[column].to_list()


def test_run_describes_its_columns_from_the_hash_sample_above_its_size(data_csv: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    from engine.insight import profiles

    monkeypatch.setattr(profiles, "SAMPLE_ROWS", 1000)
    import engine

    engine.run([str(data_csv)], 3, tmp_path / "run", spec="customers", seed=4)
    summary = read_json(tmp_path / "run" / "describe.json")
    assert summary["rows"] == 2240 and summary["sample"] == {"rows": 1000, "seed": 4}
    income = next(c for c in summary["columns"] if c["column"] == "Income")
    full = engine.describe_data([str(data_csv)], ["Income"])["columns"][0]
    assert income["mean"] == pytest.approx(full["mean"], rel=0.05)
    assert full["mean"] != income["mean"]
