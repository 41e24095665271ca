"""``segment explain``: rules from a shallow decision tree, their fidelity on every row, and the
same rules as SQL that DuckDB runs over the input. (--depth 0 and a run without a model are cases
in test_bad_input.py.)"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from conftest import invoke, leftovers, read_json
from engine.duck.rules import input_sql, query_sql, where_sql
from engine.insight.rules import rounded, rule_segments
from engine.synth.customers import generate_customers


def explain(run_dir: Path, *extra: str) -> dict:
    result = invoke(["explain", run_dir, *extra])
    assert result.exit_code == 0, result.output
    return read_json(run_dir / "rules.json")


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of a session run (explain writes into the run directory)."""
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    """20,000 customers in 4 well-separated planted segments (spread 0.25), segmented with k=4."""
    base = tmp_path_factory.mktemp("planted")
    data = base / "customers.parquet"
    generate_customers(data, 20_000, segments=4, seed=3, spread=0.25)
    result = invoke(["run", data, "--spec", "customers", "--k", "4", "--out", base / "run", "--quiet"])
    assert result.exit_code == 0, result.output
    return base / "run"


@pytest.fixture(scope="module")
def marketing_rules(tmp_path_factory, marketing_run: Path) -> Path:
    """A copy of the shared marketing run, explained with the defaults."""
    run = copy_run(marketing_run, tmp_path_factory.mktemp("rules"))
    explain(run)
    return run


def truth(run_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "segments.parquet").select(pl.first(), pl.col("segment"))


def test_rules_reproduce_a_planted_partition(planted_run: Path) -> None:
    rules = explain(planted_run)
    assert rules["depth"] == 3 and rules["fidelity"] >= 0.95
    assert all(s["fidelity"] >= 0.9 for s in rules["segments"])
    assert all(leaf["support"] >= 0.01 for leaf in rules["leaves"])  # --min-share 0.01


def test_fidelity_is_measured_on_every_row_not_the_sample(marketing_run: Path, tmp_path: Path) -> None:
    run = copy_run(marketing_run, tmp_path)
    rules = explain(run, "--sample", "300")
    assert rules["sample"] <= 300 < rules["rows"] == read_json(run / "metrics.json")["rows_used"]
    joined = truth(run).join(rule_segments(run), on="ID", suffix="_rules").drop_nulls("segment")
    reproduced = int((joined["segment"] == joined["segment_rules"]).fill_null(False).sum())
    assert rules["reproduced"] == reproduced and rules["fidelity"] == pytest.approx(reproduced / joined.height)
    for entry in rules["segments"]:
        mine = joined.filter(pl.col("segment") == entry["segment"])
        hits = int((mine["segment_rules"] == entry["segment"]).fill_null(False).sum())
        assert entry["customers"] == mine.height and entry["reproduced"] == hits
    for leaf in rules["leaves"]:
        assert 0 < leaf["purity"] <= 1 and leaf["customers"] == pytest.approx(leaf["support"] * rules["rows"])


def test_each_where_clause_selects_exactly_the_customers_the_rules_assign(marketing_rules: Path) -> None:
    rules = read_json(marketing_rules / "rules.json")
    facts = read_json(marketing_rules / "metrics.json")["input"]
    assigned = rule_segments(marketing_rules)
    source = input_sql(facts, rules["columns"])
    con = duckdb.connect()
    for entry in rules["segments"]:
        selected = con.sql(f'SELECT "ID" FROM {source} WHERE {where_sql(rules, entry["segment"])}').pl()
        expected = assigned.filter(pl.col("segment") == entry["segment"])["ID"]
        assert sorted(selected["ID"].to_list()) == sorted(expected.to_list()), entry["segment"]
        segmented = selected.join(truth(marketing_rules).drop_nulls("segment"), on="ID")
        assert segmented.height == entry["selected"]  # rules.json counts the segmented customers


def test_rules_sql_holds_a_case_expression_where_clauses_and_a_query_duckdb_runs(marketing_rules: Path) -> None:
    text = (marketing_rules / "rules.sql").read_text()
    rules = read_json(marketing_rules / "rules.json")
    assert text.count("\nWHERE ") == len(rules["segments"]) and "CASE\n" in text
    assert '"Income"' in text and '"MntWines"' in text  # the input's own column names, quoted
    query = text.split("-- The whole query over this run's input, in DuckDB:\n", 1)[1].rstrip().rstrip(";")
    assert query == query_sql(rules, read_json(marketing_rules / "metrics.json")["input"])
    from_sql = duckdb.connect().sql(query).pl()
    assert from_sql.equals(rule_segments(marketing_rules).cast({"segment": from_sql.schema["segment"]}))


def test_categories_read_as_their_names_in_python_and_in_sql(tmp_path: Path) -> None:
    """A partition made by a text column: the rules name its levels, and a missing value is
    "not gold" in both the engine's evaluation and the SQL."""
    tiers = (["gold"] * 300 + ["silver"] * 300 + ["bronze"] * 300 + [None] * 100)
    data = tmp_path / "tiers.parquet"
    pl.DataFrame({"ID": range(1, 1001), "tier": tiers, "a": [0.001 * (i % 7) for i in range(1000)]}).write_parquet(data)
    spec = tmp_path / "tiers.toml"
    spec.write_text('id = "ID"\nscale = "none"\n[features]\na = "a"\n[categorical]\ntier = {}\n')
    result = invoke(["run", data, "--spec", spec, "--k", "4", "--out", tmp_path / "run", "--quiet"])
    assert result.exit_code == 0, result.output
    rules = explain(tmp_path / "run")
    assert rules["fidelity"] == 1.0
    assert any(re.search(r"tier (=|is not) (gold|silver|bronze)", s["rule"]) for s in rules["segments"])
    assigned = rule_segments(tmp_path / "run")
    source = input_sql(read_json(tmp_path / "run" / "metrics.json")["input"], rules["columns"])
    for entry in rules["segments"]:
        selected = duckdb.connect().sql(f'SELECT "ID" FROM {source} WHERE {where_sql(rules, entry["segment"])}').pl()
        assert sorted(selected["ID"].to_list()) == sorted(
            assigned.filter(pl.col("segment") == entry["segment"])["ID"].to_list())


def test_depth_bounds_the_rules(marketing_run: Path, tmp_path: Path) -> None:
    run = copy_run(marketing_run, tmp_path)
    for depth in (1, 2, 4):
        rules = explain(run, "--depth", str(depth))
        assert rules["depth"] == depth and len(rules["leaves"]) <= 2 ** depth
        assert all(len({c["variable"] for c in leaf["conditions"]}) <= depth for leaf in rules["leaves"])


def test_thresholds_have_two_or_three_significant_figures(marketing_rules: Path) -> None:
    rules = read_json(marketing_rules / "rules.json")
    values = [c["value"] for leaf in rules["leaves"] for c in leaf["conditions"] if c["op"] in ("<=", ">")]
    assert values
    assert all(float(f"{v:.3g}") == v for v in values)


@pytest.mark.parametrize("threshold, below, above, expected", [
    (68_117.5, 68_100.0, 68_135.0, 68_100.0),  # 2 figures (68,000) would move rows: 3
    (68_117.5, 64_000.0, 70_000.0, 68_000.0),  # 2 figures are enough
    (0.5, 0.0, 1.0, 0.5),
    (0.36842, 0.3684, 0.36844, 0.368),  # neither fits: 3 figures
])
def test_rounding_keeps_the_sample_split_where_it_can(threshold, below, above, expected) -> None:
    assert rounded(threshold, below, above) == expected


def test_explain_writes_into_the_run_directory_atomically_and_the_report_shows_the_rules(
        marketing_run: Path, tmp_path: Path) -> None:
    run = copy_run(marketing_run, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    explain(run, "--depth", "2")
    first = (run / "rules.json").read_bytes()
    explain(run)  # again: replaces both files, touches nothing else
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    assert set(after) == set(before) | {"rules.json", "rules.sql"}
    assert all(after[name] == data for name, data in before.items())
    assert after["rules.json"] != first and leftovers(run, "rules.json") == leftovers(run, "rules.sql") == []
    out = invoke(["report", run, "--out", tmp_path / "report.html"])
    assert out.exit_code == 0, out.output
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Rules</h2>" in html and "fidelity" in html


def test_printed_lines_are_one_per_segment_with_its_fidelity(marketing_run: Path, tmp_path: Path) -> None:
    run = copy_run(marketing_run, tmp_path)
    result = invoke(["explain", run])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    rules = read_json(run / "rules.json")
    assert len(lines) == 1 + len(rules["segments"])
    for line, entry in zip(lines[1:], rules["segments"]):
        assert line.startswith(f"segment {entry['segment']} ") and f"fidelity {entry['fidelity']:.1%}" in line
    as_json = invoke(["explain", run, "--json"])
    assert json.loads(as_json.stdout)["fidelity"] == rules["fidelity"]
