"""Transaction data that just works: the public online-retail format end to end (an amount that
is an expression, a response window, segment impact), --sql composed with the preset, errors that
name what the user gave, and the checks on expressions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from conftest import invoke, read_json
from engine.duck.rfm import open_rfm
from test_rfm import assert_same, polars_rfm

AS_OF = dt.date(2011, 11, 8)
COLUMNS = ["--customer-col", "CustomerID", "--date-col", "InvoiceDate", "--amount-col", "Quantity * UnitPrice",
           "--order-col", "InvoiceNo"]
DONE_WHEN = ["--preset", "rfm", *COLUMNS, "--k", "4", "--response-window", "30", "--as-of", "2011-11-08"]
WORDS = {"Recent buyers", "Lapsed buyers", "Frequent buyers", "Infrequent buyers", "High value", "Low value",
         "New customers", "Long-standing customers", "Big baskets", "Small baskets"}


@pytest.fixture(scope="session")
def retail_csv(tmp_path_factory) -> Path:
    """Invoice lines of 1,500 customers in the public online-retail format (seed 3)."""
    path = tmp_path_factory.mktemp("retail_tx") / "tx.csv"
    result = invoke(["generate", "--kind", "retail", "--customers", "1500", "--seed", "3", "--out", path])
    assert result.exit_code == 0, result.output
    assert "invoice lines" in result.output
    return path


def read_retail(path: Path) -> pl.DataFrame:
    """The file read independently, with the preset's names: order_id, customer_id, ts, amount."""
    tx = pl.read_csv(path, infer_schema_length=None)
    assert tx.columns == ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                          "CustomerID", "Country"]
    return tx.select(pl.col("InvoiceNo").alias("order_id"), pl.col("CustomerID").alias("customer_id"),
                     pl.col("InvoiceDate").str.strptime(pl.Datetime, "%m/%d/%Y %H:%M").alias("ts"),
                     (pl.col("Quantity") * pl.col("UnitPrice")).alias("amount"))


def polars_responders(tx: pl.DataFrame, as_of: dt.date, days: int) -> set[int]:
    window = tx.filter(pl.col("customer_id").is_not_null() & (pl.col("amount") > 0)
                       & (pl.col("ts").dt.date() > as_of) & (pl.col("ts").dt.date() <= as_of + dt.timedelta(days)))
    return set(window["customer_id"].unique().to_list())


def test_the_public_retail_format_runs_with_no_workaround(retail_csv: Path, tmp_path: Path) -> None:
    """The issue's command, then segment impact, on a file with the public format's columns."""
    out = tmp_path / "r"
    result = invoke(["run", retail_csv, *DONE_WHEN, "--out", out])
    assert result.exit_code == 0, result.output
    assert "response: a purchase in the 30 days to 2011-12-08" in result.output
    impact = invoke(["impact", out])
    assert impact.exit_code == 0, impact.output
    assert "mass campaign" in impact.output and "Everyone (mass campaign)" in impact.output
    tx = read_retail(retail_csv)
    responders = polars_responders(tx, AS_OF, 30)
    segments = pl.read_parquet(out / "segments.parquet")
    assert segments.columns == ["CustomerID", "segment", "distance"]
    expected = (segments.drop_nulls("segment").with_columns(pl.col("CustomerID").is_in(list(responders))
                                                             .alias("r"))
                .group_by("segment").agg(pl.col("r").sum().cast(pl.Int64)).sort("segment")["r"].to_list())
    profiles = pl.read_parquet(out / "profiles.parquet").sort("segment")
    assert profiles["responses"].to_list() == expected and sum(expected) > 100
    # the revenue per response: the mean purchase amount in the window per responding customer
    known = set(segments["CustomerID"].to_list())
    window = tx.filter(pl.col("customer_id").is_in(list(responders & known)) & (pl.col("amount") > 0)
                       & (pl.col("ts").dt.date() > AS_OF) & (pl.col("ts").dt.date() <= AS_OF + dt.timedelta(30)))
    metrics = read_json(out / "metrics.json")
    assert metrics["input"]["rfm"]["revenue_per_response"] == pytest.approx(window["amount"].sum()
                                                                             / len(responders & known))
    assert metrics["insight"]["impact"]["revenue_per_response"] == metrics["input"]["rfm"]["revenue_per_response"]
    assert any("cost per contact not declared" in w for w in metrics["warnings"])
    # names in business words, never the raw feature names
    for name in profiles["name"].to_list():
        assert set(name.split(" · ")) <= WORDS, name
    assert "recency days" not in result.output.lower()


def test_expression_columns_and_the_window_equal_polars(retail_csv: Path) -> None:
    preset = {"preset": "rfm", "customer": "CustomerID", "date": "InvoiceDate", "amount": "Quantity * UnitPrice",
              "order": "InvoiceNo", "response_window": 30}
    inp = open_rfm([retail_csv], None, preset, AS_OF)
    ours = inp.frame.collect().rename({"CustomerID": "customer_id"})
    tx = read_retail(retail_csv)
    assert_same(ours, polars_rfm(tx, AS_OF))
    responders = polars_responders(tx, AS_OF, 30)
    assert ours.filter(pl.col("response") == 1)["customer_id"].to_list() == sorted(responders & set(ours["customer_id"]))
    facts = inp.info["rfm"]
    later = tx.filter(pl.col("customer_id").is_not_null() & (pl.col("ts").dt.date() > AS_OF + dt.timedelta(30)))
    assert facts["after_as_of_rows"] == later.height  # only what falls after the window is dropped
    assert facts["outcome_rows"] == tx.filter(pl.col("customer_id").is_not_null() & (pl.col("ts").dt.date() > AS_OF)
                                              & (pl.col("ts").dt.date() <= AS_OF + dt.timedelta(30))).height


def test_the_window_ends_with_the_data_without_as_of(retail_csv: Path) -> None:
    preset = {"preset": "rfm", "customer": "CustomerID", "date": "InvoiceDate", "amount": "Quantity * UnitPrice",
              "response_window": 14}
    facts = open_rfm([retail_csv], None, preset, None).info["rfm"]
    last = read_retail(retail_csv).drop_nulls("customer_id")["ts"].max().date()
    assert facts["window_end"] == last.isoformat() and facts["after_as_of_rows"] == 0
    assert facts["as_of"] == (last - dt.timedelta(14)).isoformat()


def test_sql_composes_with_the_preset(retail_csv: Path, tmp_path: Path) -> None:
    """--sql's result is the transaction table: with INPUT (sandboxed) and alone; the same segments
    as the expression, and segment sql's customers view works."""
    query = "SELECT *, Quantity * UnitPrice AS amount FROM input WHERE Country <> 'EIRE'"
    columns = ["--customer-col", "CustomerID", "--date-col", "InvoiceDate", "--amount-col", "amount",
               "--order-col", "InvoiceNo"]
    a, b = tmp_path / "a", tmp_path / "b"
    result = invoke(["run", retail_csv, "--sql", query, "--preset", "rfm", *columns, "--k", "3", "--out", a, "--quiet"])
    assert result.exit_code == 0, result.output
    alone = query.replace("FROM input", f"FROM read_csv('{retail_csv}')")
    result = invoke(["run", "--sql", alone, "--preset", "rfm", *columns, "--k", "3", "--out", b, "--quiet"])
    assert result.exit_code == 0, result.output
    sa, sb = pl.read_parquet(a / "segments.parquet"), pl.read_parquet(b / "segments.parquet")
    assert sa.equals(sb)
    expected = read_retail(retail_csv).height - pl.read_csv(retail_csv, infer_schema_length=None).filter(
        pl.col("Country") == "EIRE").height
    assert read_json(a / "metrics.json")["input"]["rfm"]["transactions"] == expected
    view = invoke(["sql", a, "SELECT count(*) AS n FROM customers WHERE segment IS NOT NULL", "--format", "csv"])
    assert view.exit_code == 0 and view.output.split() == ["n", str(sa["segment"].drop_nulls().len())]
    refused = invoke(["run", retail_csv, "--sql", "SELECT * FROM read_csv('/etc/passwd')", "--preset", "rfm",
                      *columns, "--k", "3", "--out", tmp_path / "c"])
    assert refused.exit_code == 2 and "refused" in refused.output


def test_errors_name_the_spec_key_or_the_flag_the_user_gave(retail_csv: Path, tmp_path: Path) -> None:
    spec = tmp_path / "retail.toml"
    spec.write_text('[source]\npreset = "rfm"\ncustomer = "CustomerID"\ndate = "InvoiceDate"\n'
                    'amount = "Quantity * UnitPrce"\n', encoding="utf-8")
    from_spec = invoke(["run", retail_csv, "--spec", spec, "--k", "3", "--out", tmp_path / "a"])
    assert from_spec.exit_code == 2
    assert f"{spec}: [source] amount 'Quantity * UnitPrce'" in from_spec.output
    assert "--amount-col" not in from_spec.output and "did you mean 'UnitPrice'" in from_spec.output
    flags = invoke(["run", retail_csv, "--preset", "rfm", "--customer-col", "CustomerID", "--date-col", "InvoiceDate",
                    "--amount-col", "Quantity * UnitPrce", "--k", "3", "--out", tmp_path / "b"])
    assert flags.exit_code == 2 and "--amount-col 'Quantity * UnitPrce'" in flags.output
    spec.write_text(spec.read_text().replace("UnitPrce", "UnitPrice"), encoding="utf-8")
    product = invoke(["run", retail_csv, "--spec", spec, "--product-col", "Prodcut", "--k", "3", "--out",
                      tmp_path / "c"])  # the spec's columns, a flag's product: the flag is named
    assert product.exit_code == 2 and "--product-col 'Prodcut' not found" in product.output
    assert not any((tmp_path / d).exists() for d in "abc")


@pytest.mark.parametrize("args, message", [
    (["--amount-col", "Quantity *"], "--amount-col 'Quantity *' is neither a column of the input nor an SQL expression"),
    (["--amount-col", "Quantity * UnitPrice AS amount"], "is neither a column of the input nor an SQL expression"),
    (["--amount-col", "Quantity /* open"], "unterminated /* comment"),
    (["--amount-col", "1) FROM input; DROP TABLE x; SELECT (1"], "--amount-col"),
    (["--amount-col", "sum(Quantity)"], "must appear in the GROUP BY clause"),
    (["--amount-col", "(SELECT count(*) FROM read_csv('/etc/passwd'))"], "refused"),
    (["--amount-col", "Quantity * UnitPrice", "--product-col", "Prodcut"], "--product-col 'Prodcut' not found"),
    (["--amount-col", "Quantity * UnitPrice", "--response-window", "0"], "--response-window must be a whole number"),
    (["--amount-col", "Quantity * UnitPrice", "--customer-col", "frequency"], "one of the preset's own columns"),
])
def test_bad_transaction_options(retail_csv: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--customer-col": "CustomerID", "--date-col": "InvoiceDate"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [v for kv in base.items() for v in kv]
    out = tmp_path / "run"
    result = invoke(["run", retail_csv, "--preset", "rfm", *flat, "--k", "3", "--out", out])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_product_and_window_flags_need_transactions(data_csv: Path, tmp_path: Path) -> None:
    for flag, value in (("--product-col", "MntWines"), ("--response-window", "30")):
        result = invoke(["run", data_csv, "--spec", "customers", flag, value, "--k", "2", "--out", tmp_path / "r"])
        assert result.exit_code == 2 and f"{flag} needs transactions" in result.output
