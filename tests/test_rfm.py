"""The RFM preset and `segment generate --kind transactions`: features equal an independent Polars
computation on more than 1,000,000 generated transactions; refunds, null ids, text dates, as-of."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import invoke, read_json
from engine.errors import InputError
from engine.synth.transactions import generate_transactions
from engine.duck.rfm import RFM_FEATURES, open_rfm

PRESET = {"preset": "rfm", "customer": "customer_id", "date": "ts", "amount": "amount", "order": "order_id"}
RFM_ARGS = ["--preset", "rfm", "--customer-col", "customer_id", "--date-col", "ts", "--amount-col", "amount"]


@pytest.fixture(scope="session")
def transactions(tmp_path_factory) -> Path:
    """About 1,040,000 generated transactions of 48,000 customers (seed 2)."""
    path = tmp_path_factory.mktemp("tx") / "tx.parquet"
    summary = generate_transactions(path, 48_000, seed=2)
    assert summary["rows"] >= 1_000_000
    return path


def polars_rfm(tx: pl.DataFrame, as_of: dt.date | None = None, order: bool = True) -> pl.DataFrame:
    """The documented policy, written independently in Polars."""
    tx = tx.filter(pl.col("customer_id").is_not_null() & pl.col("ts").is_not_null() & pl.col("amount").is_not_null())
    if as_of is None:
        as_of = tx["ts"].max().date() + dt.timedelta(days=1)
    tx = tx.filter(pl.col("ts").dt.date() <= as_of)
    buy = pl.col("amount") > 0
    orders = pl.col("order_id").filter(buy).drop_nulls().n_unique() if order else buy.sum()
    days = lambda e: (pl.lit(as_of) - e.dt.date()).dt.total_days().cast(pl.Float64)  # noqa: E731
    return (
        tx.group_by("customer_id")
        .agg(
            days(pl.col("ts").filter(buy).max()).alias("recency_days"),
            orders.cast(pl.Float64).alias("frequency"),
            pl.max_horizontal(pl.col("amount").sum(), pl.lit(0.0)).alias("monetary"),
            days(pl.col("ts").filter(buy).min()).alias("tenure_days"),
            (pl.col("amount").filter(buy).sum() / orders).alias("avg_basket"),
        )
        .with_columns(pl.when(pl.col("frequency") > 0).then(pl.col("avg_basket")).alias("avg_basket"))
        .sort("customer_id")
    )


def assert_same(ours: pl.DataFrame, ref: pl.DataFrame) -> None:
    assert ours["customer_id"].to_list() == ref["customer_id"].to_list()
    for name in RFM_FEATURES:
        a, b = ours[name].to_numpy(), ref[name].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-9, atol=1e-6, err_msg=name)


def test_generated_transactions_are_realistic(transactions):
    tx = pl.read_parquet(transactions)
    assert tx.columns == ["order_id", "customer_id", "ts", "amount", "true_group"]
    assert 0.005 < tx["customer_id"].null_count() / tx.height < 0.02  # guest checkouts
    refunds = tx.filter(pl.col("amount") < 0)
    assert 0.02 < refunds.height / tx.height < 0.1
    per_customer = tx.drop_nulls("customer_id").group_by("customer_id").agg(
        pl.col("order_id").n_unique().alias("orders"), pl.len().alias("lines"), pl.col("true_group").first())
    assert per_customer["orders"].mean() > 5 and per_customer["lines"].mean() > per_customer["orders"].mean()
    by_group = per_customer.group_by("true_group").agg(pl.col("orders").mean()).sort("true_group")
    assert by_group["orders"][0] > 3 * by_group["orders"][4]  # vip order far more often than new customers
    assert set(by_group["true_group"].to_list()) == {0, 1, 2, 3, 4}


def test_generation_does_not_depend_on_chunking(tmp_path):
    generate_transactions(tmp_path / "a.parquet", 9_000, seed=5, chunk_customers=4096)
    generate_transactions(tmp_path / "b.parquet", 9_000, seed=5, chunk_customers=100_000)
    a, b = pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet")
    assert a.equals(b)
    assert a["customer_id"].drop_nulls().max() == 9_000


@pytest.mark.slow
def test_rfm_equals_polars_on_a_million_transactions(transactions):
    inp = open_rfm([transactions], None, PRESET, None)
    ours = inp.frame.collect()
    tx = pl.read_parquet(transactions)
    assert_same(ours, polars_rfm(tx))
    facts = inp.info["rfm"]
    assert facts["transactions"] == tx.height
    assert facts["null_customer_rows"] == tx["customer_id"].null_count()
    used = tx.drop_nulls("customer_id")
    assert facts["refund_rows"] == used.filter(pl.col("amount") < 0).height
    assert facts["refund_amount"] == pytest.approx(-used.filter(pl.col("amount") < 0)["amount"].sum())


def test_rfm_as_of_and_no_order_column(transactions):
    as_of = dt.date(2024, 6, 30)
    preset = {k: v for k, v in PRESET.items() if k != "order"}
    inp = open_rfm([transactions], None, preset, as_of)
    tx = pl.read_parquet(transactions)
    ref = polars_rfm(tx, as_of, order=False)
    assert_same(inp.frame.collect(), ref)
    later = tx.drop_nulls("customer_id").filter(pl.col("ts").dt.date() > as_of).height
    assert inp.info["rfm"]["after_as_of_rows"] == later > 0


def test_run_with_rfm_preset_through_the_cli(transactions, tmp_path):
    out = tmp_path / "run"
    result = invoke(["run", transactions, *RFM_ARGS, "--order-col", "order_id", "--k", "5", "--out", out])
    assert result.exit_code == 0, result.output
    assert "without a customer id" in result.output  # the null-id count reaches stderr
    segments = pl.read_parquet(out / "segments.parquet")
    assert segments.columns == ["customer_id", "segment", "distance"]  # the customer column, its own name
    metrics = read_json(out / "metrics.json")
    tx = pl.read_parquet(transactions, columns=["customer_id"])
    assert metrics["input"]["rfm"]["null_customer_rows"] == tx["customer_id"].null_count()
    assert metrics["features"] == list(RFM_FEATURES)
    assert metrics["rows"] == tx["customer_id"].n_unique() - 1  # one row per known customer
    # The planted groups are found: each segment is dominated by one group.
    groups = pl.read_parquet(transactions, columns=["customer_id", "true_group"]).drop_nulls().unique("customer_id")
    joined = segments.drop_nulls("segment").join(groups, on="customer_id")
    purity = joined.group_by("segment", "true_group").len().group_by("segment").agg(
        (pl.col("len").max() / pl.col("len").sum()).alias("p"))
    assert purity["p"].mean() > 0.7
    # The preset declares its business measures: revenue shares, and actions that speak of value
    # (VIP for the big spenders) and lapse (reactivation for the lapsed group).
    profiles = pl.read_parquet(out / "profiles.parquet")
    assert sum(profiles["revenue_share"].to_list()) == pytest.approx(1.0)
    actions = set(profiles["action"].to_list())
    assert {"VIP / loyalty programme", "Reactivation campaign"} <= actions, actions
    lapsed = profiles.sort("recency_days_mean", descending=True).row(0, named=True)
    assert lapsed["action"] == "Reactivation campaign"
    # predict on the same transactions rebuilds the same features and labels
    pred = tmp_path / "pred.parquet"
    result = invoke(["predict", out, transactions, "--out", pred, "--quiet"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(pred)["segment"].equals(segments["segment"])


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("cust;when;amt;ord\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_text_dates_refunds_and_null_ids(tmp_path):
    path = write_csv(tmp_path / "tx.csv", [
        "a;2024-03-01 10:00:00;100.0;1",
        "a;2024-03-01T10:00:00;50.0;1",       # same order, second line
        "a;03/05/2024;20.0;2",                # US month first: 5 March
        "a;2024/03/06;-30.0;1",               # refund: lowers monetary only
        "b;01.02.2024;10.0;3",                # day first with dots: 1 February
        "b;20240210;-25.0;3",                 # refund larger than the purchases: monetary floors at 0
        ";2024-03-09;999.0;4",                # no customer id: dropped and counted
        "c;2024-03-02;-5.0;5",                # refunds only: no purchase, no recency
    ])
    inp = open_rfm([path], None, {"preset": "rfm", "customer": "cust", "date": "when", "amount": "amt",
                                  "order": "ord"}, None)
    frame = inp.frame.collect().sort("cust")
    assert inp.info["rfm"]["as_of"] == "2024-03-07"  # day after the last dated row with a customer
    assert inp.info["rfm"]["null_customer_rows"] == 1
    assert inp.info["rfm"]["refund_rows"] == 3
    a, b, c = frame.rows(named=True)
    assert a == {"cust": "a", "recency_days": 2.0, "frequency": 2.0, "monetary": 140.0, "tenure_days": 6.0,
                 "avg_basket": 85.0}
    assert b["monetary"] == 0.0 and b["frequency"] == 1.0 and b["recency_days"] == 35.0
    assert c["recency_days"] is None and c["frequency"] == 0.0 and c["avg_basket"] is None


def test_unreadable_text_date_is_an_error(tmp_path):
    path = write_csv(tmp_path / "tx.csv", ["a;2024-03-01;1.0;1", "b;yesterday;2.0;2"])
    result = invoke(["run", path, "--preset", "rfm", "--customer-col", "cust", "--date-col", "when",
                     "--amount-col", "amt", "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2
    assert "'yesterday'" in result.output and "not a date" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--customer-col", "cust", "--date-col", "when", "--amount-col", "amt"], "needs --preset rfm"),
    (["--preset", "rfm", "--customer-col", "cust", "--date-col", "when"], "needs --amount-col"),
    (["--preset", "rfm", "--customer-col", "cutsomer", "--date-col", "when", "--amount-col", "amt"],
     "--customer-col 'cutsomer' not found"),
    (["--preset", "rfm", "--customer-col", "cust", "--date-col", "when", "--amount-col", "amt", "--as-of", "soon"],
     "--as-of must be a date"),
    (["--preset", "rfm", "--customer-col", "cust", "--date-col", "when", "--amount-col", "cust"],
     "'a', which is not a number"),
    (["--preset", "rfm", "--customer-col", "cust", "--date-col", "when", "--amount-col", "amt", "--spec", "customers"],
     "not both"),
])
def test_bad_preset_options(tmp_path, args, message):
    path = write_csv(tmp_path / "tx.csv", ["a;2024-03-01;1.0;1", "b;2024-03-02;2.0;2"])
    result = invoke(["run", path, *args, "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_generate_transactions_cli(tmp_path):
    out = tmp_path / "tx.parquet"
    result = invoke(["generate", "--kind", "transactions", "--customers", "300", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert pq.read_metadata(out).num_rows > 300
    bad = invoke(["generate", "--kind", "transactions", "--rows", "300", "--out", tmp_path / "x.parquet"])
    assert bad.exit_code == 2 and "--customers" in bad.output
    bad = invoke(["generate", "--kind", "transactions", "--customers", "0", "--out", tmp_path / "x.parquet"])
    assert bad.exit_code == 2 and "at least 1" in bad.output


def test_spec_with_rfm_source(tmp_path, transactions):
    spec = tmp_path / "rfm.toml"
    spec.write_text('[source]\npreset = "rfm"\ncustomer = "customer_id"\ndate = "ts"\namount = "amount"\n'
                    '[features]\nrecency = "recency_days"\nspend = { expr = "monetary", log1p = true }\n')
    result = invoke(["sweep", transactions, "--spec", spec, "--k", "2..3", "--repeats", "0", "--out",
                     tmp_path / "sweep", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "sweep" / "sweep.json")["params"]["features"] == ["recency", "spend"]


def test_the_features_are_the_same_bits_every_time(transactions) -> None:
    """Sums of amounts are exact decimals: DuckDB added doubles in the order its threads reached
    them, and the same query gave monetary values a last bit apart on some runs."""
    seen = set()
    for _ in range(6):
        inp = open_rfm([transactions], None, PRESET, None, threads=2)
        frame = inp.frame.collect()
        seen.add(b"".join(frame[c].to_numpy().tobytes() for c in ("monetary", "avg_basket")))
    assert len(seen) == 1
