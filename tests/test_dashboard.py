"""`segment dashboard`: every view driven headless with Streamlit's AppTest (filters, paging,
export, what-if, predict, compare), the checks made before the server starts, the read-only
DuckDB session, and one real-browser run (headless Debian chromium through Playwright) against
`segment dashboard` serving on 127.0.0.1. The browser test fails, not skips, without chromium
or Playwright (`make test` installs both)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import invoke

from engine.dashboard import data, export, predict, whatif
from engine.dashboard.rundata import load_run
from engine.dashboard.serve import COMPARE_ENV, RUN_ENV
from engine.duck.dashboard import ID_TEXT, DashboardDB, RowFilter
from engine.errors import InputError

APP = Path(__file__).resolve().parents[1] / "engine" / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
CATEGORY_SPEC = """
id = "ID"
numeric = ["Response"]
[features]
age = "2014 - Year_Birth"
income = { expr = "Income", clip = [0.0, 0.99] }
spending = { expr = "MntWines + MntFruits + MntMeatProducts", log1p = true }
[categorical]
Education = { max_levels = 3 }
[business]
revenue = "MntWines + MntFruits + MntMeatProducts"
response = "Response"
cost_per_contact = 2
revenue_per_response = 12
"""


@pytest.fixture(scope="module")
def category_run(tmp_path_factory, data_csv: Path) -> Path:
    """The shared CSV with a spec that one-hots Education (a select box in the form), k=3; also
    the other run of the Compare view (the same customers, other segments)."""
    folder = tmp_path_factory.mktemp("category")
    spec = folder / "spec.toml"
    spec.write_text(CATEGORY_SPEC, encoding="utf-8")
    out = folder / "run"
    result = invoke(["run", data_csv, "--spec", spec, "--k", "3", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def labelled(marketing_run: Path, data_frame: pl.DataFrame) -> pl.DataFrame:
    """The shared CSV (read by Polars, not the engine) with the run's segment of every row."""
    segments = pl.read_parquet(marketing_run / "segments.parquet")
    assert segments["ID"].to_list() == data_frame["ID"].to_list()
    return data_frame.with_columns(segments["segment"])


def app_test(monkeypatch, run: Path, compare: Path | None = None, view: str | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(RUN_ENV, str(run))
    if compare is None:
        monkeypatch.delenv(COMPARE_ENV, raising=False)
    else:
        monkeypatch.setenv(COMPARE_ENV, str(compare))
    at = AppTest.from_file(str(APP), default_timeout=180)
    if view:
        at.session_state["view"] = view
    at.run()
    assert not at.exception, at.exception
    return at


def match_count(at) -> int:
    text = next(m.value for m in at.markdown if m.value.startswith("**") and "match" in m.value)
    return int(text.split()[0].strip("*").replace(",", ""))


def test_overview_kpis_cards_and_charts(monkeypatch, marketing_run: Path) -> None:
    at = app_test(monkeypatch, marketing_run)
    metrics = json.loads((marketing_run / "metrics.json").read_text())
    cards = {m.label: m.value for m in at.metric}
    top20 = metrics["insight"]["overall"]["revenue_concentration"]["top20"]
    assert cards == {"Customers": f"{metrics['rows']:,}", "Segmented": f"{metrics['rows_used']:,}",
                     "Dropped": f"{metrics['rows_dropped']:,}", "Segments (k)": str(metrics["k"]),
                     "Silhouette": f"{metrics['silhouette']:.3f}", "Top-20% revenue share": f"{top20:.1%}"}
    profiles = pl.read_parquet(marketing_run / "profiles.parquet")
    text = " ".join(m.value for m in at.markdown)
    captions = [c.value for c in at.caption]
    assert any("spec built-in spec 'marketing'" in c for c in captions), captions
    for row in profiles.iter_rows(named=True):
        assert f"**{row['segment']}: {row['name']}**" in text
        assert f"{row['size']:,} customers · {row['share']:.1%} of customers" in text
        assert f"response lift {row['response_lift']:.2f}" in text
        assert row["action"] in captions
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    assert titles == ["Profile heatmap: segment mean vs population (z-score)", "Segment sizes"]
    assert [t.label for t in at.tabs] == ["Overview", "Explore", "Campaign what-if", "Predict"]


def test_explore_filters_and_paging(monkeypatch, marketing_run: Path, labelled: pl.DataFrame) -> None:
    at = app_test(monkeypatch, marketing_run, view="Explore")
    segmented = labelled.filter(pl.col("segment").is_not_null())
    assert match_count(at) == segmented.height
    table = at.dataframe[0].value
    assert list(table.columns[:4]) == ["ID", "segment", "segment_name", "distance"]
    assert table["ID"].astype(int).tolist() == segmented["ID"].head(50).to_list()
    at.number_input(key="page").set_value(3).run()
    assert at.dataframe[0].value["ID"].astype(int).tolist() == segmented["ID"].slice(100, 50).to_list()
    at.selectbox(key="page_size").set_value(100).run()
    assert at.dataframe[0].value["ID"].astype(int).tolist() == segmented["ID"].slice(200, 100).to_list()

    labels = at.multiselect(key="segments").options
    at.multiselect(key="segments").set_value([labels[2], labels[-1]]).run()  # segment 2 and the unsegmented rows
    expected = labelled.filter((pl.col("segment") == 2) | pl.col("segment").is_null())
    assert labels[-1] == "unsegmented (missing values)"
    assert match_count(at) == expected.height
    assert at.number_input(key="page").value == 3  # still in range: 667 rows make 7 pages of 100
    assert at.dataframe[0].value["ID"].astype(int).tolist() == expected["ID"].slice(200, 100).to_list()

    at.multiselect(key="range_columns").set_value(["income"]).run()
    low, high = at.slider(key="range:income").value
    assert (low, high) == (labelled["Income"].min(), labelled["Income"].max())
    at.slider(key="range:income").set_range(30000.0, 60000.0).run()
    expected = expected.filter(pl.col("Income").is_between(30000, 60000))
    assert match_count(at) == expected.height
    assert at.number_input(key="page").value == min(3, -(-expected.height // 100))  # never beyond the last
    at.text_input(key="id_text").input("55").run()
    expected = expected.filter(pl.col("ID").cast(pl.String).str.contains("55", literal=True))
    assert 0 < match_count(at) == expected.height
    assert at.dataframe[0].value["ID"].astype(int).tolist() == expected["ID"].to_list()
    at.text_input(key="id_text").input("no such id").run()
    assert match_count(at) == 0
    assert "no customer matches the filters" in [c.value for c in at.caption]


@pytest.fixture(scope="module")
def split_input(tmp_path_factory, generated_parquet: Path) -> Path:
    """The generated customers in two Parquet files of a directory (2,000 and 3,000 rows)."""
    folder = tmp_path_factory.mktemp("split") / "customers"
    folder.mkdir()
    frame = pl.read_parquet(generated_parquet)
    frame.head(2000).write_parquet(folder / "part-0.parquet")
    frame.slice(2000).write_parquet(folder / "part-1.parquet")
    return folder


@pytest.mark.parametrize("source", ["parquet", "sql"])
def test_explore_pages_parquet_files_and_sql_inputs(monkeypatch, split_input: Path, tmp_path: Path, source: str) -> None:
    """Two Parquet files read by row position across the file boundary, and a SQL-fed run (its query
    run again, in the order of segments.parquet); a run without [business] has no what-if."""
    out = tmp_path / "run"
    extra = ["--sql", "SELECT * FROM input WHERE Income > 20000"] if source == "sql" else []
    result = invoke(["run", split_input, *extra, "--features", "Income,Recency,MntWines", "--id-col", "ID", "--k", "3",
                     "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    segments = pl.read_parquet(out / "segments.parquet")
    customers = pl.read_parquet(split_input)
    if source == "sql":
        customers = customers.filter(pl.col("Income") > 20000)
    labelled = segments.join(customers, on="ID", how="left", maintain_order="left")
    at = app_test(monkeypatch, out, view="Explore")
    segmented = labelled.filter(pl.col("segment").is_not_null())
    assert match_count(at) == segmented.height
    at.selectbox(key="page_size").set_value(100).run()
    at.number_input(key="page").set_value(20).run()  # rows 1,900..1,999 then 2,000.. of the input
    page = at.dataframe[0].value
    expected = segmented.slice(1900, 100)
    assert page["ID"].tolist() == expected["ID"].to_list()
    assert page["Income"].tolist() == expected["Income"].to_list()
    assert page["segment"].tolist() == expected["segment"].to_list()
    at.session_state["view"] = "Campaign what-if"
    at.run()
    assert "no impact.parquet" in at.info[0].value
    at.session_state["view"] = "Overview"
    at.run()
    assert {m.label: m.value for m in at.metric}["Top-20% revenue share"] == "n/a"
    assert not at.exception


def test_rfm_run_explore_and_predict(monkeypatch, tmp_path: Path) -> None:
    """A --preset rfm run: the preset's query runs again over the transactions (the recorded path
    is relative, as given), the table pages its per-customer rows, and the form takes its features."""
    from engine.synth.transactions import generate_transactions

    monkeypatch.chdir(tmp_path)
    generate_transactions(tmp_path / "tx.parquet", 3000, seed=2)
    result = invoke(["run", "tx.parquet", "--preset", "rfm", "--customer-col", "customer_id", "--date-col", "ts",
                     "--amount-col", "amount", "--order-col", "order_id", "--k", "4", "--out", "rfm", "--quiet"])
    assert result.exit_code == 0, result.output
    segments = pl.read_parquet(tmp_path / "rfm" / "segments.parquet")
    at = app_test(monkeypatch, tmp_path / "rfm", view="Explore")
    assert match_count(at) == segments["segment"].drop_nulls().len()
    at.number_input(key="page").set_value(2).run()
    page = at.dataframe[0].value
    expected = segments.filter(pl.col("segment").is_not_null()).slice(50, 50)
    assert page["customer_id"].tolist() == expected["customer_id"].to_list()
    assert page["segment"].tolist() == expected["segment"].to_list()
    assert {"recency_days", "frequency", "monetary"} <= set(page.columns)
    at.session_state["view"] = "Predict"
    at.run()
    at.button[0].click().run()
    assert len(at.success) == 1 and not at.error and not at.exception


def test_explore_without_the_input(monkeypatch, marketing_run: Path, tmp_path: Path) -> None:
    """The overview works without the input; the customer table says why it cannot be shown."""
    for change, message in ((lambda m: m["input"].update(files=[str(tmp_path / "gone.csv")]), "is gone"),
                            (lambda m: m["input"].update(fingerprint="sha256:0"), "changed since the run")):
        copy = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(marketing_run, copy)
        metrics = json.loads((copy / "metrics.json").read_text())
        change(metrics)
        (copy / "metrics.json").write_text(json.dumps(metrics))
        at = app_test(monkeypatch, copy, view="Explore")
        assert message in at.info[0].value and "The customer table needs the run's input" in at.info[0].value
        at.session_state["view"] = "Overview"
        at.run()
        assert len(at.metric) == 6 and not at.exception


def test_explore_distribution_from_the_run_sample(monkeypatch, marketing_run: Path, labelled: pl.DataFrame) -> None:
    at = app_test(monkeypatch, marketing_run, view="Explore")
    at.selectbox(key="dist_column").set_value("income").run()
    at.selectbox(key="dist_segment").set_value(3).run()
    chart = json.loads(at.get("plotly_chart")[-1].proto.spec)
    population, segment = chart["data"]
    assert population["name"] == "population" and segment["name"].startswith("3: ")
    assert sum(population["y"]) == pytest.approx(1.0) and sum(segment["y"]) == pytest.approx(1.0)
    incomes = labelled.filter(pl.col("segment") == 3)["Income"].drop_nulls()
    segmented = labelled.filter(pl.col("segment").is_not_null())["Income"]
    lo, hi = segmented.min(), segmented.max()
    width = (hi - lo) / data.HIST_BINS
    first_bin = (incomes < lo + width).sum() / incomes.len()
    assert segment["y"][0] == pytest.approx(first_bin)
    assert "every row" in " ".join(c.value for c in at.caption)


def export_rows(csv_text: str) -> pl.DataFrame:
    return pl.read_csv(csv_text.encode(), infer_schema_length=0)


def test_export_csv_builder(marketing_run: Path, labelled: pl.DataFrame, data_csv: Path) -> None:
    run = load_run(marketing_run)
    source = data.row_source(run)
    income = data.column_values(run, source, "income")
    rows = RowFilter(segments=(1,), ranges=(("income", 40000.0, 80000.0),))
    job = export.Export(source, rows, (("income", income),), run.names(), export.file_name(rows, run.names()))
    name = run.names()[1]
    assert job.file_name.startswith(f"segment-1-{export.slug(name)}-") and job.file_name.endswith(".csv")
    chunks = list(export.stream(job))
    text = b"".join(chunks).decode()
    assert text.count('"ID"') == 1  # one header
    got = export_rows(text)
    expected = labelled.filter((pl.col("segment") == 1) & pl.col("Income").is_between(40000, 80000))
    assert got.columns == [*labelled.columns[:-1], "segment", "segment_name", "distance"]
    assert got["ID"].to_list() == expected["ID"].cast(pl.String).to_list()
    assert set(got["segment_name"].to_list()) == {name}
    # every input column exactly as written in the file: the CSV's own lines, field by field
    raw = {line.split("\t")[0]: line.split("\t") for line in data_csv.read_text().splitlines()[1:]}
    for row in got.head(20).iter_rows():
        assert [v or "" for v in row[:-3]] == raw[row[0]]

    db = DashboardDB(source)
    try:  # streamed: small batches give many chunks and the same bytes
        db.set_columns(None)
        small = list(export.csv_chunks(db.export_reader(RowFilter(segments=(1,)), batch_rows=100), run.names()))
        assert len(small) > 5
        whole = b"".join(export.stream(export.Export(source, RowFilter(segments=(1,)), (), run.names(), "x.csv")))
        assert b"".join(small) == whole
        db.set_columns(pa.table({ID_TEXT: data.column_values(run, source, ID_TEXT)}))
        nothing = b"".join(export.csv_chunks(db.export_reader(RowFilter(id_text="no such id")), run.names()))
        assert nothing.decode().splitlines() == [text.splitlines()[0]]
    finally:
        db.close()
    today = export.file_name(RowFilter(), run.names()).rsplit("-", 3)
    assert today[0] == "all-segments"
    assert export.file_name(RowFilter(segments=(0, 2), unsegmented=True), run.names()).startswith(
        "segments-0-2-unsegmented-")


def test_export_link_names_the_filtered_rows(monkeypatch, marketing_run: Path) -> None:
    at = app_test(monkeypatch, marketing_run, view="Explore")
    labels = at.multiselect(key="segments").options
    at.multiselect(key="segments").set_value([labels[0]]).run()
    button = at.get("link_button")[0]
    assert button.proto.label == f"Download {match_count(at):,} customers as CSV"
    token = button.proto.url.removeprefix("export/")
    job = export.lookup(token)
    assert job is not None and job.rows == RowFilter(segments=(0,)) and job.file_name.startswith("segment-0-")
    lines = b"".join(export.stream(job)).decode().splitlines()
    assert len(lines) == 1 + match_count(at)
    assert export.lookup("not-a-token") is None


def test_campaign_what_if(monkeypatch, marketing_run: Path) -> None:
    at = app_test(monkeypatch, marketing_run, view="Campaign what-if")
    recorded = json.loads((marketing_run / "metrics.json").read_text())["insight"]["impact"]
    cards = {m.label: m.value for m in at.metric}
    cut = recorded["best_cutoff"]
    assert cards[f"Best cut-off: the top {cut['segments']} segment(s) by ROI"] == f"{cut['profit']:,.0f}"
    assert cards["Profit of the segments contacted"] == f"{cut['profit']:,.0f}"  # default: the best cut-off
    assert cards["Mass campaign (everyone)"] == f"{recorded['everyone']['profit']:,.0f}"
    table = at.dataframe[0].value
    assert table["best_cutoff"].tolist() == [r <= cut["segments"] for r in table["rank"].fillna(99)]

    at.slider(key="cost").set_value(2.0).run()
    at.slider(key="revenue").set_value(15.0).run()
    reference = invoke(["impact", marketing_run, "--cost-per-contact", "2", "--revenue-per-response", "15", "--json"])
    assert reference.exit_code == 0, reference.output
    impact = json.loads(reference.stdout)
    cards = {m.label: m.value for m in at.metric}
    cut = impact["best_cutoff"]
    assert cards[f"Best cut-off: the top {cut['segments']} segment(s) by ROI"] == f"{cut['profit']:,.0f}"
    assert cards["Mass campaign (everyone)"] == f"{impact['everyone']['profit']:,.0f}"
    segments = [r for r in impact["table"] if r["scope"] == "segment"]
    at.multiselect(key="contacted").set_value([0, 2]).run()
    chosen = [r for r in segments if r["segment"] in (0, 2)]
    assert {m.label: m.value for m in at.metric}["Profit of the segments contacted"] == \
        f"{sum(r['profit'] for r in chosen):,.0f}"
    shown = at.dataframe[0].value
    assert shown.loc[shown["contacted"], "segment"].astype(int).tolist() == sorted(
        [0, 2], key=lambda j: next(r["rank"] for r in segments if r["segment"] == j))
    gains = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(s.get("line", {}).get("dash") == "dash" and s.get("type") == "line" for s in gains["layout"]["shapes"])
    with pytest.raises(InputError, match="--cost-per-contact must be a number of 0 or more"):
        whatif.what_if(marketing_run, -1.0, 11.0, ())


def one_row_csv(path: Path, header: list[str], values: dict) -> Path:
    """The form's row as a CSV the CLI reads (the shared file's header, its separator)."""
    cells = ["" if values.get(c) is None else str(values[c]) for c in header]
    path.write_text("\t".join(header) + "\n" + "\t".join(cells) + "\n", encoding="utf-8")
    return path


def cli_predict(model: Path, csv: Path, out: Path):
    return invoke(["predict", model, csv, "--out", out, "--quiet"])


def test_predict_form_good_and_bad(monkeypatch, marketing_run: Path, data_csv: Path, tmp_path: Path) -> None:
    at = app_test(monkeypatch, marketing_run, view="Predict")
    run = load_run(marketing_run)
    fields = {f.column: f for f in predict.form_fields(run)}
    assert fields["Dt_Customer"].kind == "date" and fields["Dt_Customer"].date_format == "%d-%m-%Y"
    assert fields["Income"].kind == "integer" and "Response" not in fields and "Z_Revenue" not in fields
    assert len(at.number_input) + len(at.date_input) == len(fields)
    header = data_csv.read_text().splitlines()[0].split("\t")
    row = {c: f.default for c, f in fields.items()}
    row.update({"ID": 1, "Dt_Customer": fields["Dt_Customer"].default.strftime("%d-%m-%Y"), "Response": 0})

    at.number_input(key="in:Income").set_value(90000)
    at.number_input(key="in:MntWines").set_value(900)
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    ok = cli_predict(marketing_run, one_row_csv(tmp_path / "ok.csv", header, {**row, "Income": 90000,
                                                                              "MntWines": 900}), tmp_path / "ok.parquet")
    assert ok.exit_code == 0, ok.output
    expected = pl.read_parquet(tmp_path / "ok.parquet")["segment"][0]
    assert [s.value for s in at.success] == [f"Segment {expected}: {run.names()[expected]}"]
    distances = at.dataframe[0].value
    assert int(distances["segment"].iloc[0]) == expected and distances["distance"].is_monotonic_increasing

    at.number_input(key="in:MntWines").set_value(-5000)
    at.button[0].click().run()
    bad_csv = one_row_csv(tmp_path / "bad.csv", header, {**row, "Income": 90000, "MntWines": -5000})
    bad = cli_predict(marketing_run, bad_csv, tmp_path / "bad.parquet")
    assert bad.exit_code == 2
    message = bad.output.strip().removeprefix("Error: ")
    assert [e.value for e in at.error] == [message.replace(str(bad_csv), predict.FORM)]
    assert not at.success and not at.exception

    at.number_input(key="in:MntWines").set_value(100)
    at.multiselect(key="in:@missing").set_value(["Income"])
    at.button[0].click().run()
    empty = cli_predict(marketing_run, one_row_csv(tmp_path / "empty.csv", header, {**row, "Income": None}),
                        tmp_path / "empty.parquet")
    assert empty.exit_code == 2
    assert [e.value for e in at.error] == [empty.output.strip().removeprefix("Error: ").replace(
        str(tmp_path / "empty.csv"), predict.FORM)]


def test_predict_form_category_select_box(monkeypatch, category_run: Path) -> None:
    at = app_test(monkeypatch, category_run, view="Predict")
    run = load_run(category_run)
    levels = run.model.fitted.levels["Education"]
    box = at.selectbox(key="in:Education")
    assert box.options == [*levels, predict.OTHER_LEVEL]
    results = set()
    for level in box.options:
        at.selectbox(key="in:Education").set_value(level)
        at.button[0].click().run()
        assert not at.error and len(at.success) == 1
        results.add(at.success[0].value)
    fields = predict.form_fields(run)
    defaults = {f.column: f.default for f in fields}
    for level in box.options:  # the same answers from the function behind the form
        got = predict.predict_values(run, fields, {**defaults, "Education": level})
        assert f"Segment {got.segment}: {got.name}" in results


def test_compare_sizes_and_migration(monkeypatch, marketing_run: Path, category_run: Path) -> None:
    at = app_test(monkeypatch, marketing_run, compare=category_run, view="Compare")
    assert [t.label for t in at.tabs][-1] == "Compare"
    sizes = at.dataframe[0].value
    a = pl.read_parquet(marketing_run / "profiles.parquet")
    b = pl.read_parquet(category_run / "profiles.parquet")
    assert sizes["size"].tolist() == [*a["size"].to_list(), *b["size"].to_list()]
    assert sizes["run"].tolist() == ["this run"] * a.height + ["other run"] * b.height
    matrix = pl.from_pandas(at.dataframe[1].value)
    sa = pl.read_parquet(marketing_run / "segments.parquet")
    sb = pl.read_parquet(category_run / "segments.parquet")
    joined = sa.join(sb, on="ID", suffix="_b")
    for j in range(a.height):
        row = matrix.filter(pl.col("from") == f"{j}: {a['name'][j]}").row(0, named=True)
        for i in range(b.height):
            n = joined.filter((pl.col("segment") == j) & (pl.col("segment_b") == i)).height
            assert row[f"{i}: {b['name'][i]}"] == n
    assert sum(sum(r[1:]) for r in matrix.iter_rows()) == sa.height  # every customer, once
    assert len(at.get("plotly_chart")) == 2


def test_compare_uses_migration_parquet_and_needs_shared_customers(marketing_run: Path, category_run: Path,
                                                                   tmp_path: Path) -> None:
    from engine.dashboard.compare import migration_matrix

    other = tmp_path / "other"
    shutil.copytree(category_run, other)
    pl.DataFrame({"from_segment": ["0", "1", "new"], "to_segment": ["1", "gone", "0"],
                  "customers": [5, 3, 2]}).write_parquet(other / "migration.parquet")
    matrix = migration_matrix(load_run(marketing_run), load_run(other))
    assert matrix["from"].to_list()[-1] == "new" and matrix.columns[-1] == "gone"
    assert matrix.select(pl.exclude("from")).sum_horizontal().sum() == 10
    (other / "migration.parquet").unlink()
    segments = pl.read_parquet(other / "segments.parquet").with_columns(pl.col("ID") + 1_000_000)
    meta = pq.read_metadata(category_run / "segments.parquet").metadata
    table = segments.to_arrow().replace_schema_metadata({**meta})
    pq.write_table(table, other / "segments.parquet")
    with pytest.raises(InputError, match="the two runs share no customers"):
        migration_matrix(load_run(marketing_run), load_run(other))


def test_session_connection_is_read_only_and_sandboxed(marketing_run: Path) -> None:
    run = load_run(marketing_run)
    source = data.row_source(run)
    db = DashboardDB(source)
    try:
        with pytest.raises(InputError, match="'@id' is not loaded"):
            db.segment_counts(RowFilter(id_text="55"))
        db.set_columns(pa.table({ID_TEXT: data.column_values(run, source, ID_TEXT)}))
        with pytest.raises(duckdb.Error, match="read-only|Cannot execute statement"):
            db.con.execute("CREATE TABLE t AS SELECT 1")
        with pytest.raises(duckdb.PermissionException):
            db.con.execute("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(duckdb.PermissionException):
            db.con.execute(f"COPY (SELECT 1) TO '{marketing_run / 'x.csv'}'")
        with pytest.raises(duckdb.Error):
            db.con.execute("SET enable_external_access = true")
        # user text is a bound value, never SQL
        assert db.segment_counts(RowFilter(id_text="'; DROP TABLE x; --")) == {}
        assert sum(db.segment_counts(RowFilter(id_text="%")).values()) == 0  # LIKE wildcards match literally
        for rows in (RowFilter(), RowFilter(segments=(1, 3)), RowFilter(segments=(2,), unsegmented=True),
                     RowFilter(segments=(), unsegmented=True)):  # segments alone: the profiles' sizes
            assert data.matching(db, rows, run) == db.segment_counts(rows)
        with pytest.raises(InputError, match="is not loaded"):
            db.segment_counts(RowFilter(ranges=(("income", 0.0, 1.0),)))
        with pytest.raises(InputError, match="page size"):
            data.page(db, RowFilter(), 1, 7, {})
    finally:
        db.close()


def newer_copy(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    table = pq.read_table(target / "profiles.parquet")
    meta = {**pq.read_metadata(target / "profiles.parquet").metadata, b"segment.format_version": b"2"}
    pq.write_table(table.replace_schema_metadata(meta), target / "profiles.parquet")
    return target


def test_run_directory_checks_before_the_server_starts(marketing_run: Path, category_run: Path,
                                                       tmp_path: Path) -> None:
    cases = {}
    cases["missing"] = (tmp_path / "nope", "run directory not found")
    (tmp_path / "empty").mkdir()
    cases["empty"] = (tmp_path / "empty", "is not a segment run directory")
    cases["newer"] = (newer_copy(marketing_run, tmp_path / "newer"), "written by a newer segment (format version 2")
    half = tmp_path / "half"
    shutil.copytree(marketing_run, half)
    (half / "metrics.json").unlink()
    cases["no metrics"] = (half, "is half-written: metrics.json is missing")
    cut = tmp_path / "cut"
    shutil.copytree(marketing_run, cut)
    (cut / "segments.parquet").write_bytes((marketing_run / "segments.parquet").read_bytes()[:5000])
    cases["truncated"] = (cut, "segments.parquet is half-written or damaged")
    mixed = tmp_path / "mixed"
    shutil.copytree(marketing_run, mixed)
    shutil.copy(category_run / "profiles.parquet", mixed / "profiles.parquet")
    cases["mixed"] = (mixed, "profiles.parquet is from another run than model.json")
    (tmp_path / ".writing.tmp-1-abcdef12").mkdir()
    cases["writing"] = (tmp_path / "writing", "is not complete: a run is writing it")
    for name, (path, message) in cases.items():
        result = invoke(["dashboard", path])
        assert result.exit_code == 2, (name, result.output)
        assert message in result.output, (name, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, name
    compare = invoke(["dashboard", marketing_run, "--compare", cases["newer"][0]])
    assert compare.exit_code == 2 and "newer segment" in compare.output
    itself = invoke(["dashboard", marketing_run, "--compare", marketing_run])
    assert itself.exit_code == 2 and "is the run itself" in itself.output


def test_bad_port_and_missing_streamlit(monkeypatch, marketing_run: Path) -> None:
    assert invoke(["dashboard", marketing_run, "--port", "0"]).exit_code == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke(["dashboard", marketing_run, "--port", str(port)])
        assert result.exit_code == 2 and f"--port {port}: cannot listen on 127.0.0.1" in result.output
    monkeypatch.setitem(sys.modules, "streamlit", None)
    result = invoke(["dashboard", marketing_run])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: segment dashboard needs Streamlit, which is not installed: "
                                     "pip install 'segment-engine[dashboard]' (the dashboard extra)")


def test_other_host_warns(monkeypatch, marketing_run: Path) -> None:
    """Another --host is announced before the server starts (the server is not started here:
    tests bind to 127.0.0.1 only)."""
    from engine.dashboard import serve

    started = []

    class Refused:  # stands in for the server process: it exits at once
        returncode = 3

        def __init__(self, command, **_):
            started.append(command)

        def poll(self):
            return self.returncode

        def wait(self, timeout=None):
            return self.returncode

    monkeypatch.setattr(serve, "check_address", lambda host, port: None)
    monkeypatch.setattr(serve.subprocess, "Popen", Refused)
    result = invoke(["dashboard", marketing_run, "--host", "0.0.0.0", "--port", "8999"])
    assert "warning: --host 0.0.0.0: the dashboard, and the customer data it shows, is visible" in result.stderr
    assert result.exit_code == 2 and "the dashboard server stopped before serving (exit code 3)" in result.output
    assert "--server.address=0.0.0.0" in started[0] and "--server.port=8999" in started[0]
    assert "--browser.gatherUsageStats=false" in started[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
def test_dashboard_in_a_real_browser(marketing_run: Path, tmp_path: Path, labelled: pl.DataFrame) -> None:
    from playwright.sync_api import sync_playwright  # `make test` installs it; missing, the test fails

    assert Path(CHROMIUM).is_file(), "chromium is not installed (make test installs it: apt-get install -y chromium)"
    run = load_run(marketing_run)
    fields = predict.form_fields(run)
    expected = predict.predict_values(run, fields, {f.column: f.default for f in fields})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    segment = Path(sys.executable).with_name("segment")
    server = subprocess.Popen([str(segment), "dashboard", str(marketing_run), "--port", str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not answers(url):
            assert server.poll() is None, f"segment dashboard exited with {server.returncode}"
            assert time.monotonic() < deadline, "the dashboard did not answer /_stcore/health"
            time.sleep(0.3)
        assert server.stdout.readline().strip() == f"dashboard of {marketing_run.resolve()} at {url} (Ctrl-C to stop)"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                browse(browser.new_page(viewport={"width": 1400, "height": 1700}), url, run, labelled, expected,
                       tmp_path / "dashboard.png")
            finally:
                browser.close()
    finally:
        server.send_signal(signal.SIGTERM)  # by its own pid; it stops its Streamlit server with it
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0
    assert not answers(url), "the Streamlit server outlived segment dashboard"
    width, height = png_size(tmp_path / "dashboard.png")
    assert (width, height) == (1400, 1700) and (tmp_path / "dashboard.png").stat().st_size > 100_000


def browse(page, url: str, run, labelled: pl.DataFrame, expected, shot: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    for name in run.names().values():  # every segment name is rendered
        page.get_by_text(f"{next(j for j, n in run.names().items() if n == name)}: {name}", exact=True).first \
            .wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=90_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shot))

    page.get_by_role("tab", name="Explore").click()
    segmented = labelled.filter(pl.col("segment").is_not_null()).height
    page.get_by_text(f"{segmented:,} customers match").wait_for(timeout=60_000)
    page.get_by_label("Customer id contains").fill("55")
    page.get_by_label("Customer id contains").press("Enter")
    matching = labelled.filter(pl.col("segment").is_not_null()
                               & pl.col("ID").cast(pl.String).str.contains("55", literal=True)).height
    page.get_by_text(f"{matching:,} customers match").wait_for(timeout=60_000)
    link = page.get_by_role("link", name=f"Download {matching:,} customers as CSV")
    csv = page.request.get(f"{url}/{link.get_attribute('href')}")
    assert csv.ok and 'attachment; filename="all-segments-' in csv.headers["content-disposition"]
    assert len(csv.text().splitlines()) == matching + 1

    page.get_by_role("tab", name="Predict").click()
    page.get_by_role("button", name="Predict the segment").click()
    page.get_by_text(f"Segment {expected.segment}: {expected.name}").wait_for(timeout=60_000)
    assert errors == []


def test_the_distribution_sample_is_the_one_the_profiles_drew(monkeypatch, data_csv: Path) -> None:
    """Above the profiles' SAMPLE_ROWS both hold the rows of the run's hash sample, with the run's seed."""
    from engine.duck.open import open_source
    from engine.features.build import build_features
    from engine.features.spec import load_spec
    from engine.insight import profiles
    from engine.insight.onepass import InsightPass, feed_input

    monkeypatch.setattr(profiles, "SAMPLE_ROWS", 50)
    spec = load_spec("customers")
    inp = open_source([str(data_csv)], None, spec)
    built = build_features(inp, spec)
    acc = InsightPass(inp.schema(), inp.label, built.spec, {}, 2, 3)
    feed_input(acc, inp, np.zeros(built.n_rows, dtype=np.int32), block_rows=1 << 16)
    assert data.run_sample(50, seed=3) is None
    drawn = data.run_sample(built.n_rows, seed=3)
    assert drawn.tolist() == acc.sample.rows.tolist() and drawn.size == 50
    assert drawn.tolist() != data.run_sample(built.n_rows, seed=4).tolist()


@pytest.fixture(scope="module")
def acted_run(tmp_path_factory, data_csv: Path) -> Path:
    """A run of the shared data explained (rules.json) and measured (plan -> simulated outcomes ->
    measure.parquet): what the dashboard shows beside the profiles."""
    base = tmp_path_factory.mktemp("acted")
    out, plan, outcomes = base / "run", base / "plan.parquet", base / "outcomes.csv"
    steps = [["run", data_csv, "--spec", "customers", "--k", "4", "--out", out, "--quiet"],
             ["explain", out],
             ["plan", out, "--lift", "0.1", "--holdout-share", "0.3", "--seed", "1", "--out", plan],
             ["generate", "--kind", "outcome", "--plan", plan, "--true-lift", "0.04,0.08,0,0.1", "--seed", "1",
              "--out", outcomes],
             ["measure", plan, outcomes, "--response-col", "response"]]
    for args in steps:
        result = invoke(args)
        assert result.exit_code == 0, (args[0], result.output)
    return out


def test_overview_shows_offers_and_rules(monkeypatch, acted_run: Path) -> None:
    at = app_test(monkeypatch, acted_run)
    profiles = pl.read_parquet(acted_run / "profiles.parquet")
    captions = [c.value for c in at.caption]
    for offer in profiles["offer"].drop_nulls().to_list():
        assert f"Offer: {offer}" in captions
    rules = json.loads((acted_run / "rules.json").read_text())
    text = " ".join(m.value for m in at.markdown)
    assert "Segment rules" in [h.value for h in at.subheader]
    for s in rules["segments"]:
        assert f"(fidelity {s['fidelity']:.1%})" in text and (s["rule"] or "no rule") in text


def test_campaign_tab_shows_the_measured_test(monkeypatch, acted_run: Path) -> None:
    at = app_test(monkeypatch, acted_run, view="Campaign what-if")
    assert "Campaign test against the holdout" in [h.value for h in at.subheader]
    shown = at.dataframe[-1].value  # the last table on the tab, after the what-if's
    measured = pl.read_parquet(acted_run / "measure.parquet")
    assert len(shown) == measured.height
    assert list(shown["lift"]) == pytest.approx(measured["lift"].to_list(), nan_ok=True)


def test_compare_shows_a_refresh_migration(monkeypatch, marketing_run: Path, period2_csv: Path, tmp_path: Path) -> None:
    """`segment refresh` writes migration.parquet; the compare view shows exactly its counts."""
    q2 = tmp_path / "q2"
    result = invoke(["refresh", marketing_run, period2_csv, "--out", q2])
    assert result.exit_code == 0, result.output
    at = app_test(monkeypatch, marketing_run, compare=q2, view="Compare")
    matrix = pl.from_pandas(at.dataframe[1].value)
    written = pl.read_parquet(q2 / "migration.parquet")
    assert matrix.select(pl.exclude("from")).sum_horizontal().sum() == written["customers"].sum()
    assert matrix["from"].to_list()[-1] == "new" and "gone" in matrix.columns
