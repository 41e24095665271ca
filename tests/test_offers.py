"""Offers per segment: the affinity index by category and channel on the shared data, and the top
products by lift on generated retail transactions, each equal to an independent Polars
computation; the offer line in the terminal, profiles.parquet and the report; one-hot levels in
names; the spec's [business.offers] checked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import invoke, read_json

CATEGORIES = {"Wines": "MntWines", "Fruits": "MntFruits", "Meat": "MntMeatProducts", "Fish": "MntFishProducts",
              "Sweets": "MntSweetProducts", "Gold": "MntGoldProds"}
CHANNELS = {"Web": "NumWebPurchases", "Catalog": "NumCatalogPurchases", "Store": "NumStorePurchases",
            "Deals": "NumDealsPurchases"}
AS_OF = dt.date(2011, 11, 8)
RETAIL_ARGS = ["--preset", "rfm", "--customer-col", "CustomerID", "--date-col", "InvoiceDate", "--amount-col",
               "Quantity * UnitPrice", "--order-col", "InvoiceNo", "--as-of", AS_OF.isoformat()]


def polars_affinity(frame: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """segment, item, index: share of the group's sum in the segment over the population's."""
    long = frame.unpivot(index="segment", on=list(columns.values()), variable_name="column", value_name="v")
    per = long.group_by("segment", "column").agg(pl.col("v").sum())
    per = per.with_columns((pl.col("v") / pl.col("v").sum().over("segment")).alias("seg_share"))
    pop = long.group_by("column").agg(pl.col("v").sum().alias("pop"))
    pop = pop.with_columns((pl.col("pop") / pl.col("pop").sum()).alias("pop_share"))
    names = {v: k for k, v in columns.items()}
    return (per.join(pop, on="column").with_columns((pl.col("seg_share") / pl.col("pop_share")).alias("index"),
                                                    pl.col("column").replace_strict(names).alias("item"))
            .select("segment", "item", "index").sort("segment", "item"))


def expected_line(ours: pl.DataFrame, segment: int, top: int = 2) -> str:
    """The offer line built from an independent affinity table."""
    def best(kind_table: pl.DataFrame) -> str:
        rows = kind_table.filter((pl.col("segment") == segment) & (pl.col("index") > 1)).sort(
            "index", descending=True).head(top)
        return ", ".join(f"{r['item']} ({r['index']:.2f}x)" for r in rows.iter_rows(named=True))

    cats, chans = best(ours["categories"]), best(ours["channels"])
    return " ".join([p for p in (cats, f"via {chans}" if chans else "") if p])


def test_offers_on_the_shared_data_equal_polars(shared_run: Path, data_frame: pl.DataFrame) -> None:
    segments = pl.read_parquet(shared_run / "segments.parquet").drop_nulls("segment")
    joined = data_frame.join(segments, on="ID").select("segment", *CATEGORIES.values(), *CHANNELS.values())
    reference = {"categories": polars_affinity(joined, CATEGORIES), "channels": polars_affinity(joined, CHANNELS)}
    offers = pl.read_parquet(shared_run / "offers.parquet")
    assert offers.columns == ["segment", "kind", "item", "value", "segment_share", "population_share", "index", "rank"]
    for group, kind in (("categories", "category"), ("channels", "channel")):
        ours = offers.filter(pl.col("kind") == kind).select("segment", "item", "index").sort("segment", "item")
        ref = reference[group]
        assert ours.select("segment", "item").equals(ref.select("segment", "item").cast({"segment": pl.Int32}))
        np.testing.assert_allclose(ours["index"].to_numpy(), ref["index"].to_numpy(), rtol=1e-12)
    # the sums behind the index are the segment's own: value = its sum of the column
    wines = offers.filter((pl.col("item") == "Wines")).sort("segment")["value"].to_list()
    assert wines == joined.group_by("segment").agg(pl.col("MntWines").sum()).sort("segment")["MntWines"].cast(
        pl.Float64).to_list()
    profiles = pl.read_parquet(shared_run / "profiles.parquet").sort("segment")
    lines = profiles["offer"].to_list()
    assert lines == [expected_line(reference, j) for j in range(profiles.height)]
    assert read_json(shared_run / "metrics.json")["insight"]["offers"] == lines
    ranked = offers.filter(pl.col("rank").is_not_null())
    assert (ranked["index"] > 1).all() and ranked["rank"].max() <= 2


def test_the_offer_is_beside_the_action_in_the_terminal_and_the_report(data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "3", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    profiles = pl.read_parquet(out / "profiles.parquet")
    for row in profiles.iter_rows(named=True):
        assert f"-> {row['action']}; offer: {row['offer']}" in result.output
    assert invoke(["report", out]).exit_code == 0
    html = (out / "report.html").read_text()
    assert "Offers: what each segment over-indexes on" in html and "Affinity index by channel" in html
    assert profiles["offer"][0].split(" (")[0] in html


@pytest.fixture(scope="session")
def retail_csv(tmp_path_factory) -> Path:
    """Invoice lines of 1,500 customers in the public online-retail format (seed 3)."""
    path = tmp_path_factory.mktemp("retail") / "tx.csv"
    result = invoke(["generate", "--kind", "retail", "--customers", "1500", "--seed", "3", "--out", path, "--quiet"])
    assert result.exit_code == 0, result.output
    return path


def polars_product_lift(tx: pl.DataFrame, segments: pl.DataFrame, min_support: int) -> pl.DataFrame:
    """segment, item, support, index: the documented lift, computed independently."""
    bought = (tx.filter(pl.col("CustomerID").is_not_null() & (pl.col("Quantity") * pl.col("UnitPrice") > 0)
                        & (pl.col("ts").dt.date() <= AS_OF))
              .select("CustomerID", "StockCode").unique()
              .join(segments.drop_nulls("segment"), on="CustomerID"))
    support = bought.group_by("segment", "StockCode").len().rename({"len": "support"})
    pairs = support.group_by("segment").agg(pl.col("support").sum().alias("pairs"))
    buyers = support.group_by("StockCode").agg(pl.col("support").sum().alias("buyers"))
    total = support["support"].sum()
    return (support.join(pairs, on="segment").join(buyers, on="StockCode")
            .with_columns(((pl.col("support") / pl.col("pairs")) / (pl.col("buyers") / total)).alias("index"))
            .filter(pl.col("support") >= min_support).rename({"StockCode": "item"})
            .select("segment", "item", "support", "index").sort("segment", "item"))


def test_top_products_by_lift_on_generated_transactions_equal_polars(retail_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["run", retail_csv, *RETAIL_ARGS, "--product-col", "StockCode", "--k", "4", "--out", out])
    assert result.exit_code == 0, result.output
    tx = pl.read_csv(retail_csv, infer_schema_length=None).with_columns(
        pl.col("InvoiceDate").str.strptime(pl.Datetime, "%m/%d/%Y %H:%M").alias("ts"))
    segments = pl.read_parquet(out / "segments.parquet")
    ref = polars_product_lift(tx, segments, 10)
    offers = pl.read_parquet(out / "offers.parquet").filter(pl.col("kind") == "product").sort("segment", "item")
    assert offers.height == ref.height > 100
    assert offers["item"].to_list() == ref["item"].to_list()
    assert offers["value"].to_list() == ref["support"].cast(pl.Float64).to_list()
    np.testing.assert_allclose(offers["index"].to_numpy(), ref["index"].to_numpy(), rtol=1e-12)
    # the offer: the two highest lifts among products with at least 10 buyers in the segment
    profiles = pl.read_parquet(out / "profiles.parquet").sort("segment")
    for j, line in enumerate(profiles["offer"].to_list()):
        top = ref.filter(pl.col("segment") == j).sort(["index", "support", "item"], descending=[True, True, False])
        top = top.filter(pl.col("index") > 1).head(2)
        assert line == "top products: " + ", ".join(f"{r['item']} ({r['index']:.2f}x)" for r in top.iter_rows(named=True))
        assert f"offer: {line}" in result.output


def test_min_support_keeps_one_off_products_out(retail_csv: Path, tmp_path: Path) -> None:
    spec = tmp_path / "retail.toml"
    spec.write_text('[source]\npreset = "rfm"\ncustomer = "CustomerID"\ndate = "InvoiceDate"\n'
                    'amount = "Quantity * UnitPrice"\norder = "InvoiceNo"\nproduct = "StockCode"\n'
                    "[business.offers]\nmin_support = 1\ntop = 3\n", encoding="utf-8")
    out = tmp_path / "run"
    result = invoke(["run", retail_csv, "--spec", spec, "--as-of", AS_OF.isoformat(), "--k", "4", "--out", out,
                     "--quiet"])
    assert result.exit_code == 0, result.output
    everything = pl.read_parquet(out / "offers.parquet").filter(pl.col("kind") == "product")
    assert everything["value"].min() == 1  # with no minimum, products bought by one customer take part
    ranked = everything.filter(pl.col("rank").is_not_null())
    assert ranked["rank"].max() == 3
    default = tmp_path / "default"
    assert invoke(["run", retail_csv, *RETAIL_ARGS, "--product-col", "StockCode", "--k", "4", "--out", default,
                   "--quiet"]).exit_code == 0
    assert pl.read_parquet(default / "offers.parquet")["value"].min() >= 10


def test_one_hot_levels_name_the_segments_they_separate(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 600
    group = np.repeat([0, 1], n // 2)
    data = pl.DataFrame({"id": np.arange(n), "income": np.where(group == 0, 30_000, 80_000) + rng.normal(0, 3000, n),
                         "gender": np.where(rng.random(n) < np.where(group == 0, 0.9, 0.1), "female", "male")})
    path = tmp_path / "people.csv"
    data.write_csv(path)
    spec = tmp_path / "spec.toml"
    spec.write_text('id = "id"\n[features]\nincome = "income"\n[categorical]\ngender = { max_levels = 2 }\n',
                    encoding="utf-8")
    out = tmp_path / "run"
    assert invoke(["run", path, "--spec", spec, "--k", "2", "--out", out, "--quiet"]).exit_code == 0
    profiles = pl.read_parquet(out / "profiles.parquet").sort("income_mean")
    for row, income, level in zip(profiles.iter_rows(named=True), ("Low income", "High income"), ("female", "male")):
        assert row[f"gender={level}_mean"] > 0.5  # the level is most of the segment: "Mostly"
        words = sorted([(abs(row["income_z"]), income), (row[f"gender={level}_z"], f"Mostly {level}")], reverse=True)
        assert row["name"] == " · ".join(w for _, w in words), row["name"]
    assert profiles["name"].to_list() == ["Mostly female · Low income", "Mostly male · High income"]


@pytest.mark.parametrize("toml, message", [
    ("[business.offers]\ncolours = { a = 'x' }\n", "unknown key 'colours'"),
    ("[business.offers]\n[business.offers.categories]\nWines = 'MntWines'\n", "needs two or more columns"),
    ("[business.offers]\ntop = 0\n", "top must be a whole number"),
    ("[business.offers]\nmin_support = 'many'\n", "min_support must be a whole number"),
    ("[business.offers.channels]\nWeb = 'NumWebPurchases'\nShop = 'NumShopPurchases'\n", "NumShopPurchases"),
])
def test_bad_offers_sections(data_csv: Path, tmp_path: Path, toml: str, message: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('id = "ID"\n[features]\nincome = "Income"\nrecency = "Recency"\n' + toml, encoding="utf-8")
    out = tmp_path / "run"
    result = invoke(["run", data_csv, "--spec", spec, "--k", "2", "--out", out, "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()
