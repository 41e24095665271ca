"""Synthetic invoice lines in the public online-retail format (``segment generate --kind retail``).

The columns and conventions of the public "Online Retail" data set (one row per invoice line,
no amount column), so the RFM preset is tried the way a new user would try it:

| column | type | |
| --- | --- | --- |
| ``InvoiceNo`` | text | ``536365`` up, in time order; a cancellation is ``C`` + its own number |
| ``StockCode`` | text | ``85123A``-style product codes |
| ``Description`` | text | the product's name, upper case |
| ``Quantity`` | integer | negative on cancellation lines |
| ``InvoiceDate`` | text | month first, unpadded: ``12/1/2010 8:26`` |
| ``UnitPrice`` | float | the product's price |
| ``CustomerID`` | integer, nullable | empty for guest invoices (about 10% of invoices) |
| ``Country`` | text | the customer's country (about 85% United Kingdom) |

Customers fall in planted behaviour groups (``GROUPS``: how many invoices, when, how many lines
and units), and every group leans towards some product categories (``PREFERENCE``): a line's
product comes from the customer's group-preferred categories with probability ``LOYALTY``,
else from the whole catalogue; within a category, products are Zipf-popular. So segments found
by the RFM preset differ in what they buy, and their top products by lift are meaningful. About
2% of invoices are cancelled in part, 0 to 20 days later but within the period (a ``C``
invoice with negative quantities). The period is 2010-12-01 08:00 to 2011-12-09 20:00, as in the public file.

Customers come in blocks of ``BLOCK_CUSTOMERS``, each from ``default_rng([seed, STREAM, block])``;
the catalogue from ``default_rng([seed, STREAM, CATALOGUE])``. The whole file is built in memory
(about 80 bytes per line), then written as CSV (``.csv``) or Parquet (any other suffix).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.outputs.write import atomic_file

GROUPS = ("wholesale", "regular", "lapsed", "occasional", "new")
SHARES = np.array([0.08, 0.37, 0.20, 0.20, 0.15])
INVOICES = np.array([30.0, 8.0, 5.0, 2.0, 2.0])  # mean invoices per customer
LINES = np.array([14.0, 7.0, 6.0, 4.0, 5.0])  # mean lines per invoice (1 + Poisson)
UNITS = np.array([24.0, 6.0, 6.0, 3.0, 4.0])  # mean units per line (1 + Poisson)
WINDOW = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 0.45], [0.0, 1.0], [0.85, 1.0]])  # active part of the period
CATEGORIES = ("LANTERN", "BAG", "MUG", "CHRISTMAS", "GARDEN", "PARTY")
CATEGORY_PRICE = np.array([3.5, 2.1, 1.6, 2.9, 4.2, 0.9])  # typical unit price
#: Group x category: how a group's loyal lines spread over the categories.
PREFERENCE = np.array([
    [0.05, 0.35, 0.05, 0.05, 0.05, 0.45],  # wholesale: bags and party goods in bulk
    [0.30, 0.10, 0.30, 0.10, 0.10, 0.10],  # regular: lanterns and mugs
    [0.05, 0.05, 0.10, 0.70, 0.05, 0.05],  # lapsed: last Christmas
    [0.10, 0.10, 0.10, 0.10, 0.50, 0.10],  # occasional: garden
    [0.15, 0.15, 0.40, 0.10, 0.10, 0.10],  # new: mugs
])
LOYALTY = 0.6
PRODUCTS_PER_CATEGORY = 40
ITEMS = ("HOLDER", "SET OF 4", "DESIGN", "VINTAGE", "RETROSPOT", "JUMBO", "HEART", "STAR", "WOODEN", "GLASS")
COUNTRIES = ("United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands", "Belgium", "Switzerland")
COUNTRY_SHARES = np.array([0.85, 0.035, 0.03, 0.025, 0.02, 0.015, 0.015, 0.01])
GUEST_SHARE = 0.10  # invoices without a customer id
CANCEL_SHARE = 0.02  # invoices later cancelled in part
START = dt.datetime(2010, 12, 1, 8, 0)
PERIOD_SECONDS = int((dt.datetime(2011, 12, 9, 20, 0) - START).total_seconds())
FIRST_INVOICE = 536_365
FIRST_CUSTOMER = 12_346
BLOCK_CUSTOMERS = 4_096
STREAM = 0x7274  # "rt"
CATALOGUE = 1 << 30
COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")


def catalogue(seed: int) -> pl.DataFrame:
    """The products: code, description, category, price and popularity within the category."""
    rng = np.random.default_rng([seed, STREAM, CATALOGUE])
    n = len(CATEGORIES) * PRODUCTS_PER_CATEGORY
    category = np.repeat(np.arange(len(CATEGORIES)), PRODUCTS_PER_CATEGORY)
    codes = rng.choice(np.arange(10_000, 99_999), n, replace=False)
    letters = rng.choice(["", "", "", "A", "B", "C"], n)
    words = rng.choice(ITEMS, (n, 2))
    rank = np.tile(np.arange(1, PRODUCTS_PER_CATEGORY + 1), len(CATEGORIES))
    return pl.DataFrame({
        "code": [f"{c}{s}" for c, s in zip(codes, letters)],
        "description": [f"{a} {b} {CATEGORIES[c]} {i}" for (a, b), c, i in zip(words, category, rank)],
        "category": category,
        "price": np.round(CATEGORY_PRICE[category] * rng.lognormal(0.0, 0.35, n), 2),
        "weight": 1.0 / rank,  # Zipf popularity inside the category
    })


def pick_products(rng: np.random.Generator, group: np.ndarray, products: pl.DataFrame) -> np.ndarray:
    """One product index per line: from the group's preferred categories (``LOYALTY``), else any."""
    category = products["category"].to_numpy()
    weight = products["weight"].to_numpy()
    loyal = rng.random(group.size) < LOYALTY
    cum = np.cumsum(PREFERENCE, axis=1)
    chosen = (rng.random(group.size)[:, None] > cum[group]).sum(axis=1).clip(0, len(CATEGORIES) - 1)
    chosen = np.where(loyal, chosen, rng.integers(0, len(CATEGORIES), group.size))
    out = np.empty(group.size, dtype=np.int64)
    for c in range(len(CATEGORIES)):  # within the category: Zipf by popularity
        members = np.flatnonzero(category == c)
        rows = np.flatnonzero(chosen == c)
        p = weight[members] / weight[members].sum()
        out[rows] = members[rng.choice(members.size, rows.size, p=p)]
    return out


def block_invoices(seed: int, block: int, customers: int) -> dict[str, np.ndarray]:
    """The invoices of one block of customers: customer index, group, country, time, line count."""
    rng = np.random.default_rng([seed, STREAM, block])
    lo = block * BLOCK_CUSTOMERS
    n = min(customers, lo + BLOCK_CUSTOMERS) - lo
    group = np.searchsorted(np.cumsum(SHARES), rng.random(BLOCK_CUSTOMERS), side="right")[:n].clip(0, len(GROUPS) - 1)
    country = np.searchsorted(np.cumsum(COUNTRY_SHARES), rng.random(n), side="right").clip(0, len(COUNTRIES) - 1)
    invoices = np.maximum(rng.poisson(INVOICES[group]), 1)
    cust = np.repeat(np.arange(n), invoices)
    g = group[cust]
    start, width = WINDOW[g, 0], WINDOW[g, 1] - WINDOW[g, 0]
    seconds = ((start + width * rng.random(cust.size)) * PERIOD_SECONDS).astype(np.int64)
    return {"customer": lo + cust, "group": g, "country": country[cust], "seconds": seconds,
            "lines": 1 + rng.poisson(LINES[g] - 1), "guest": rng.random(cust.size) < GUEST_SHARE,
            "cancel": rng.random(cust.size) < CANCEL_SHARE, "delay": rng.integers(0, 21, cust.size) * 86_400}


def invoice_lines(inv: dict[str, np.ndarray], products: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Every line of every invoice (numbered in time order), then the cancellation lines."""
    order = np.lexsort((inv["customer"], inv["seconds"]))
    inv = {k: v[order] for k, v in inv.items()}
    number = FIRST_INVOICE + np.arange(order.size)
    line_of = np.repeat(np.arange(order.size), inv["lines"])
    rng = np.random.default_rng([seed, STREAM, CATALOGUE + 1])
    g = inv["group"][line_of]
    product = pick_products(rng, g, products)
    quantity = 1 + rng.poisson(UNITS[g] - 1)
    cancelled = inv["cancel"][line_of] & (rng.random(line_of.size) < 0.5)
    lines = pl.DataFrame({
        "invoice": number[line_of], "cancel": np.zeros(line_of.size, dtype=bool), "product": product,
        "Quantity": quantity.astype(np.int64), "seconds": inv["seconds"][line_of],
        "customer": np.where(inv["guest"][line_of], -1, inv["customer"][line_of] + FIRST_CUSTOMER),
        "country": inv["country"][line_of]})
    back = lines.filter(pl.Series(cancelled)).with_columns(
        pl.lit(True).alias("cancel"), -pl.col("Quantity"),
        (pl.col("seconds") + pl.Series(inv["delay"][line_of][cancelled])).clip(upper_bound=PERIOD_SECONDS))
    return pl.concat([lines, back]).sort("seconds", "invoice", "cancel", maintain_order=True)


def retail_frame(customers: int, seed: int) -> pl.DataFrame:
    """The whole file as a frame, in the public format's column order."""
    products = catalogue(seed)
    blocks = [block_invoices(seed, b, customers) for b in range(-(-customers // BLOCK_CUSTOMERS))]
    inv = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    lines = invoice_lines(inv, products, seed)
    cancel_numbers = {n: FIRST_INVOICE + len(inv["seconds"]) + i for i, n in
                      enumerate(lines.filter("cancel")["invoice"].unique(maintain_order=True).to_list())}
    start = pl.lit(START)
    return lines.with_columns(
        pl.when(pl.col("cancel")).then(pl.lit("C") + pl.col("invoice").replace_strict(cancel_numbers, default=0)
                                       .cast(pl.String))
        .otherwise(pl.col("invoice").cast(pl.String)).alias("InvoiceNo"),
        products["code"].gather(pl.Series(lines["product"])).alias("StockCode"),
        products["description"].gather(pl.Series(lines["product"])).alias("Description"),
        (start + pl.duration(seconds=pl.col("seconds"))).dt.strftime("%-m/%-d/%Y %-H:%M").alias("InvoiceDate"),
        products["price"].gather(pl.Series(lines["product"])).alias("UnitPrice"),
        pl.when(pl.col("customer") >= 0).then(pl.col("customer")).alias("CustomerID"),
        pl.Series(np.array(COUNTRIES)[lines["country"].to_numpy()]).alias("Country"),
    ).select(COLUMNS)


def generate_retail(out, customers: int, seed: int = 0, overwrite: bool = False) -> dict:
    """Write the invoice lines of ``customers`` customers to ``out`` (CSV if it ends in .csv, else
    Parquet), atomically."""
    started = time.perf_counter()
    for name, value in (("customers", customers), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"--{name} must be a whole number, not {value!r}")
    if customers < 1:
        raise InputError(f"--customers must be at least 1, not {customers}")
    if seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed}")
    frame = retail_frame(int(customers), int(seed))
    path = Path(out)
    with atomic_file(path, overwrite) as tmp:
        if path.suffix.lower() == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp, compression="zstd")
    return {"path": str(out), "kind": "retail", "customers": int(customers), "rows": frame.height,
            "invoices": frame["InvoiceNo"].n_unique(), "seed": int(seed), "seconds": time.perf_counter() - started}
