"""The RFM preset: per-customer recency, frequency and monetary features from transactions, in DuckDB.

One row per customer (the customer column, under its own name), from the transactions up to and
including the as-of date:

* ``recency_days``: days from the last purchase to the as-of date;
* ``frequency``: distinct orders with a purchase (rows with a purchase when there is no order column);
* ``monetary``: net spend, purchases minus refunds, floored at 0;
* ``tenure_days``: days from the first purchase to the as-of date;
* ``avg_basket``: gross purchase amount per order.

Policies (also in the README):

* A row with a positive amount is a purchase, a negative amount is a refund. Refunds lower
  ``monetary`` but are not orders: they move neither recency, frequency, tenure nor the basket.
  Rows with a zero amount count for nothing.
* Rows without a customer id are dropped and counted (``null_customer_rows``), and so are rows
  without a date or an amount. A customer with refunds only has no purchase, hence no recency: the
  missing-value policy then drops it from the fit (it keeps a null segment).
* Dates may be DATE or TIMESTAMP columns, or text: ISO 8601 (``2024-03-01``, ``2024-03-01
  13:45:00``, ``2024-03-01T13:45:00.123+01:00``), ``2024/03/01``, ``20240301``, ``01.03.2024``
  (day first), ``03/01/2024`` (US, month first), ``01-Mar-2024``, with or without a time. A text
  date in none of these formats is an error that shows it.
* ``--as-of`` defaults to the day after the latest transaction. Transactions after the as-of date
  are left out (and counted), so features can be computed as of a past date.

The SQL is written here only: identifiers quoted with ``engine.duck.connect.ident``, the as-of date
bound through the ``params`` table, and the query runs sandboxed over the INPUT files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.duck import connect as duck
from engine.errors import InputError, did_you_mean
from engine.input.files import Input
from engine.features.spec import Feature, FeatureSpec
from engine.duck.source import INPUT_VIEW, PARAMS_TABLE, run_query

RFM_FEATURES = ("recency_days", "frequency", "monetary", "tenure_days", "avg_basket")
LOG_FEATURES = ("frequency", "monetary", "avg_basket")  # heavy right tails: log1p before scaling
TEXT_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%Y%m%d",
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y",
    "%d-%b-%Y", "%d %b %Y",
)


def rfm_spec(customer: str, date: str, amount: str, order: str | None = None) -> FeatureSpec:
    """The preset as a feature spec (what ``--preset rfm --customer-col ...`` means)."""
    preset = {"preset": "rfm", "customer": customer, "date": date, "amount": amount}
    if order:
        preset["order"] = order
    return complete(FeatureSpec(preset=preset, source="preset rfm"))


def complete(spec: FeatureSpec) -> FeatureSpec:
    """A spec with an RFM source and no declared features gets the RFM features and id column, and,
    unless it declares business measures, the RFM ones: revenue is monetary, recency, frequency
    and tenure the features of those names (so names and actions speak of value and lapse)."""
    if not spec.preset or not spec.auto:
        return spec
    features = tuple(Feature(n, n, log1p=n in LOG_FEATURES) for n in RFM_FEATURES)
    business = spec.business
    if not business.measures():
        business = replace(business, revenue="monetary", recency="recency_days", frequency="frequency",
                           tenure="tenure_days")
    return replace(spec, features=features, id_col=spec.id_col or spec.preset["customer"], business=business)


def timestamp_sql(column: str) -> str:
    """A TIMESTAMP from a date, timestamp or text column (see the module's list of formats)."""
    col = duck.ident(column)
    formats = "[" + ", ".join(duck.literal(f) for f in TEXT_FORMATS) + "]"
    return (f"COALESCE(TRY_CAST({col} AS TIMESTAMP), "
            f"TRY_STRPTIME(TRIM(CAST({col} AS VARCHAR)), {formats}))")


def clean_sql(preset: dict[str, str]) -> str:
    """Rows with a customer, a date and an amount, up to the as-of date (default: day after the last)."""
    order = f", {duck.ident(preset['order'])} AS ord" if preset.get("order") else ""
    return f"""
    typed AS (
        SELECT {duck.ident(preset['customer'])} AS cust, {timestamp_sql(preset['date'])} AS ts,
               TRY_CAST({duck.ident(preset['amount'])} AS DOUBLE) AS amount{order},
               {duck.ident(preset['date'])} AS raw_date, {duck.ident(preset['amount'])} AS raw_amount
        FROM {duck.ident(INPUT_VIEW)}
    ),
    bounds AS (
        SELECT COALESCE((SELECT as_of FROM {duck.ident(PARAMS_TABLE)}),
                        (SELECT CAST(max(ts) AS DATE) + 1 FROM typed WHERE cust IS NOT NULL)) AS as_of
    ),
    clean AS (
        SELECT typed.* FROM typed, bounds
        WHERE cust IS NOT NULL AND ts IS NOT NULL AND amount IS NOT NULL AND CAST(ts AS DATE) <= bounds.as_of
    )"""


def features_sql(preset: dict[str, str]) -> str:
    """The per-customer features: one row per customer, customer column under its own name."""
    frequency = "count(DISTINCT ord) FILTER (WHERE amount > 0)" if preset.get("order") else \
        "count(*) FILTER (WHERE amount > 0)"
    return f"""WITH {clean_sql(preset)}
    SELECT cust AS {duck.ident(preset['customer'])},
           CAST(date_diff('day', CAST(max(ts) FILTER (WHERE amount > 0) AS DATE), any_value(bounds.as_of)) AS DOUBLE)
               AS recency_days,
           CAST({frequency} AS DOUBLE) AS frequency,
           greatest(sum(amount), 0.0) AS monetary,
           CAST(date_diff('day', CAST(min(ts) FILTER (WHERE amount > 0) AS DATE), any_value(bounds.as_of)) AS DOUBLE)
               AS tenure_days,
           sum(amount) FILTER (WHERE amount > 0) / nullif({frequency}, 0) AS avg_basket
    FROM clean, bounds
    GROUP BY cust
    ORDER BY cust"""


def facts_sql(preset: dict[str, str]) -> str:
    """Counts for metrics.json, and an example of a text date or amount that cannot be read."""
    used = "cust IS NOT NULL AND ts IS NOT NULL AND amount IS NOT NULL AND CAST(ts AS DATE) <= bounds.as_of"
    return f"""WITH {clean_sql(preset)}
    SELECT count(*) AS transactions,
           count(*) FILTER (WHERE cust IS NULL) AS null_customer_rows,
           count(*) FILTER (WHERE cust IS NOT NULL AND ts IS NULL) AS null_date_rows,
           count(*) FILTER (WHERE cust IS NOT NULL AND ts IS NOT NULL AND amount IS NULL) AS null_amount_rows,
           count(*) FILTER (WHERE cust IS NOT NULL AND amount IS NOT NULL AND CAST(ts AS DATE) > bounds.as_of)
               AS after_as_of_rows,
           count(*) FILTER (WHERE {used} AND amount < 0) AS refund_rows,
           coalesce(-sum(amount) FILTER (WHERE {used} AND amount < 0), 0) AS refund_amount,
           any_value(bounds.as_of) AS as_of,
           CAST(any_value(raw_date) FILTER (WHERE raw_date IS NOT NULL AND ts IS NULL) AS VARCHAR) AS bad_date,
           CAST(any_value(raw_amount) FILTER (WHERE raw_amount IS NOT NULL AND amount IS NULL) AS VARCHAR)
               AS bad_amount
    FROM typed, bounds"""


def check_columns(con, preset: dict[str, str], where: str) -> None:
    """Every named column exists in the input (with a suggestion if not)."""
    columns = [row[0] for row in con.execute(f"DESCRIBE {duck.ident(INPUT_VIEW)}").fetchall()]
    for key in ("customer", "date", "amount", "order"):
        name = preset.get(key)
        if name is not None and name not in columns:
            raise InputError(f"{where}: --{key}-col {name!r} not found{did_you_mean(name, columns)}")


FACTS = ("transactions", "null_customer_rows", "null_date_rows", "null_amount_rows", "after_as_of_rows",
         "refund_rows", "refund_amount", "as_of", "bad_date", "bad_amount")


def facts(con, preset: dict[str, str], where: str) -> dict[str, Any]:
    check_columns(con, preset, where)
    found = dict(zip(FACTS, con.sql(facts_sql(preset)).fetchall()[0]))
    if found["bad_date"] is not None:
        raise InputError(f"{where}: column {preset['date']!r} holds {found['bad_date']!r}, which is not a date "
                         "in a known format (ISO 8601 such as 2024-03-01 13:45:00, 2024/03/01, 01.03.2024, "
                         "03/01/2024 as month first, 01-Mar-2024)")
    if found["bad_amount"] is not None:
        raise InputError(f"{where}: column {preset['amount']!r} holds {found['bad_amount']!r}, which is not a number")
    if found["transactions"] == 0:
        raise InputError(f"{where}: no transactions")
    if found["as_of"] is None:
        raise InputError(f"{where}: no transaction has a customer id and a date")
    result = {k: int(found[k]) for k in FACTS[:6]}
    result["refund_amount"] = float(found["refund_amount"])
    result["as_of"] = found["as_of"].isoformat()
    return result


def open_rfm(inputs: Sequence[str | Path], separator: str | None, preset: dict[str, str],
             as_of: dt.date | None, threads: int | None = None) -> Input:
    """Per-customer RFM features from the transaction files ``inputs``, as a ``"sql"`` Input."""
    where = "--preset rfm"
    found: dict[str, Any] = {}

    def checks(con) -> dict[str, Any]:
        found.update(facts(con, preset, where))
        return {"preset": dict(preset), "rfm": dict(found)}

    inp = run_query(features_sql(preset), inputs, separator, as_of, where, threads, checks=checks)
    # The query ran with params.as_of as given; record the date it resolved to, so the same
    # features can be rebuilt (segment sql's customers view, --db) without the default moving.
    inp.info["as_of"] = found["as_of"]
    return inp


def summary_line(info: dict[str, Any]) -> str:
    """One line for stderr: what the preset dropped and how it treated refunds."""
    r = info["rfm"]
    return (f"rfm: {r['transactions']:,} transactions as of {r['as_of']}; dropped {r['null_customer_rows']:,} "
            f"without a customer id, {r['null_date_rows']:,} without a date, {r['null_amount_rows']:,} without "
            f"an amount, {r['after_as_of_rows']:,} after the as-of date; {r['refund_rows']:,} refunds "
            f"({r['refund_amount']:,.2f}) subtracted from monetary")
