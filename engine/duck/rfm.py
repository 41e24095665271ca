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
* Every column option (``--customer-col``, ``--date-col``, ``--amount-col``, ``--order-col``,
  ``--product-col``, or the spec's ``[source]`` keys) is a column name or an SQL expression over
  the input columns (``--amount-col "Quantity * UnitPrice"``). A name that is a column is that
  column; anything else is parsed as one expression (``engine.duck.connect.expression``) and
  checked against the input on the sandboxed connection before any query runs. Errors name the
  option as the user gave it: the flag, or the spec's key. The customer column keeps the text
  given as its name.
* ``--response-window DAYS``: ``response`` is 1 for a customer with a purchase in the DAYS days
  after the as-of date (as-of < day <= as-of + DAYS), else 0. Those transactions are the outcome,
  not dropped; the features still use only the days up to as-of. The as-of date then defaults to
  DAYS days before the latest transaction's day, so the window ends with the data.
  ``revenue_per_response`` (in ``input.rfm``) is the mean purchase amount in the window per
  responding customer.
* ``--product-col``: ``products``, the distinct products of each customer's purchases up to as-of
  (a list column), from which ``engine.insight.offers`` ranks each segment's products by lift.

The SQL is written here only: identifiers quoted with ``engine.duck.connect.ident``, the as-of date
bound through the ``params`` table, and the query runs sandboxed over the INPUT files.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.duck import connect as duck
from engine.errors import InputError, did_you_mean
from engine.input.files import Input
from engine.features.spec import Feature, FeatureSpec
from engine.duck.source import PARAMS_TABLE, Relation, transaction_connection

CLI_SOURCE = "preset rfm"  # FeatureSpec.source of a preset given by flags
COLUMN_KEYS = ("customer", "date", "amount", "order", "product")
FLAGS = {"customer": "--customer-col", "date": "--date-col", "amount": "--amount-col", "order": "--order-col",
         "product": "--product-col", "response_window": "--response-window"}
PRODUCTS = "products"  # --product-col: each customer's distinct products, a list column
RESPONSE = "response"  # --response-window: bought in the window after as-of (1) or not (0)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a bare name: a column, never an expression
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
    return complete(FeatureSpec(preset=preset, source=CLI_SOURCE))


def complete(spec: FeatureSpec) -> FeatureSpec:
    """A spec with an RFM source and no declared features gets the RFM features and id column, and,
    unless it declares business measures, the RFM ones: revenue is monetary, recency, frequency
    and tenure the features of those names (so names and actions speak of value and lapse). With a
    response window, the response is the ``response`` column unless the spec declares one."""
    if not spec.preset:
        return spec
    business = spec.business
    if spec.auto and not business.measures():
        business = replace(business, revenue="monetary", recency="recency_days", frequency="frequency",
                           tenure="tenure_days")
    if spec.preset.get("response_window") and business.response is None:
        business = replace(business, response=RESPONSE)
    if not spec.auto:
        return replace(spec, business=business)
    features = tuple(Feature(n, n, log1p=n in LOG_FEATURES) for n in RFM_FEATURES)
    return replace(spec, features=features, id_col=spec.id_col or spec.preset["customer"], business=business)


def preset_labels(source: str, flagged: Sequence[str] = ()) -> dict[str, str]:
    """How errors name each preset option: ``--preset rfm: --amount-col`` when it came from the
    command line (or the Python API), ``spec.toml: [source] amount`` when from a spec."""
    return {key: f"--preset rfm: {flag}" if source == CLI_SOURCE or key in flagged else f"{source}: [source] {key}"
            for key, flag in FLAGS.items()}


def timestamp_sql(col: str) -> str:
    """A TIMESTAMP from a date, timestamp or text column or expression ``col`` (SQL text; see the
    module's list of formats)."""
    formats = "[" + ", ".join(duck.literal(f) for f in TEXT_FORMATS) + "]"
    return (f"COALESCE(TRY_CAST({col} AS TIMESTAMP), "
            f"TRY_STRPTIME(TRIM(CAST({col} AS VARCHAR)), {formats}))")


def window_of(preset: dict[str, Any]) -> int | None:
    window = preset.get("response_window")
    return None if window is None else int(window)


#: Amounts are summed as exact decimals of 6 places (DuckDB adds DECIMAL(18, 6) values in 128-bit
#: integers): a sum of doubles is added in whatever order DuckDB's threads reach the rows, and
#: the same run gave monetary values a last bit apart on one run in three.
SUM_DECIMAL = "DECIMAL(18, 6)"


def exact_sum(column: str, where: str | None = None) -> str:
    """``sum(column)`` (optionally ``FILTER (WHERE where)``) as a DOUBLE, the same bits on any thread count."""
    condition = f" FILTER (WHERE {where})" if where else ""
    return f"CAST(sum(CAST({column} AS {SUM_DECIMAL})){condition} AS DOUBLE)"


def clean_sql(cols: dict[str, str], relation: Relation, window: int | None) -> str:
    """Rows with a customer, a date and an amount, up to the as-of date (default: the day after
    the last; with a response window, the last day less the window); with a window, ``outcome``: each customer's purchases in it."""
    extra = "".join(f", {cols[k]} AS {alias}" for k, alias in (("order", "ord"), ("product", "prod")) if k in cols)
    default = f"CAST(max(ts) AS DATE) - {window}" if window else "CAST(max(ts) AS DATE) + 1"
    valid = "cust IS NOT NULL AND ts IS NOT NULL AND amount IS NOT NULL"
    outcome = f""",
    outcome AS (
        SELECT cust, {exact_sum('amount')} AS spend FROM typed, bounds
        WHERE {valid} AND amount > 0 AND CAST(ts AS DATE) > bounds.as_of
              AND CAST(ts AS DATE) <= bounds.as_of + {window}
        GROUP BY cust
    )""" if window else ""
    return f"""{relation.with_sql}
    typed AS (
        SELECT {cols['customer']} AS cust, {timestamp_sql(cols['date'])} AS ts,
               TRY_CAST({cols['amount']} AS DOUBLE) AS amount{extra},
               {cols['date']} AS raw_date, {cols['amount']} AS raw_amount
        FROM {relation.name}
    ),
    bounds AS (
        SELECT COALESCE((SELECT as_of FROM {duck.ident(PARAMS_TABLE)}),
                        (SELECT {default} FROM typed WHERE cust IS NOT NULL)) AS as_of,
               (SELECT CAST(max(ts) AS DATE) FROM typed WHERE cust IS NOT NULL) AS last_day
    ),
    clean AS (
        SELECT typed.* FROM typed, bounds WHERE {valid} AND CAST(ts AS DATE) <= bounds.as_of
    ){outcome}"""


def features_sql(cols: dict[str, str], relation: Relation, customer: str, window: int | None = None) -> str:
    """The per-customer features: one row per customer, customer column under the name given
    (then ``products`` with a product column, ``response`` with a window)."""
    frequency = "count(DISTINCT ord) FILTER (WHERE amount > 0)" if "order" in cols else \
        "count(*) FILTER (WHERE amount > 0)"
    products = (f",\n           list(DISTINCT prod ORDER BY prod) FILTER (WHERE amount > 0 AND prod IS NOT NULL) "
                f"AS {PRODUCTS}") if "product" in cols else ""
    response = (f", CAST(outcome.cust IS NOT NULL AS INTEGER) AS {RESPONSE}" if window else "")
    joined = "LEFT JOIN outcome ON outcome.cust = features.cust" if window else ""
    return f"""WITH {clean_sql(cols, relation, window)},
    features AS (
    SELECT cust,
           CAST(date_diff('day', CAST(max(ts) FILTER (WHERE amount > 0) AS DATE), any_value(bounds.as_of)) AS DOUBLE)
               AS recency_days,
           CAST({frequency} AS DOUBLE) AS frequency,
           greatest({exact_sum('amount')}, 0.0) AS monetary,
           CAST(date_diff('day', CAST(min(ts) FILTER (WHERE amount > 0) AS DATE), any_value(bounds.as_of)) AS DOUBLE)
               AS tenure_days,
           {exact_sum('amount', 'amount > 0')} / nullif({frequency}, 0) AS avg_basket{products}
    FROM clean, bounds
    GROUP BY cust
    )
    SELECT features.cust AS {duck.ident(customer)}, features.* EXCLUDE (cust){response}
    FROM features {joined}
    ORDER BY features.cust"""


def facts_sql(cols: dict[str, str], relation: Relation, window: int | None) -> str:
    """Counts for metrics.json, and an example of a text date or amount that cannot be read."""
    valid = "cust IS NOT NULL AND ts IS NOT NULL AND amount IS NOT NULL"
    used = f"{valid} AND CAST(ts AS DATE) <= bounds.as_of"
    end = f"bounds.as_of + {window}" if window else "bounds.as_of"
    responders = ("(SELECT count(*) FROM outcome WHERE cust IN (SELECT cust FROM clean))",
                  f"(SELECT {exact_sum('spend')} FROM outcome WHERE cust IN (SELECT cust FROM clean))") if window \
        else ("NULL", "NULL")
    return f"""WITH {clean_sql(cols, relation, window)}
    SELECT count(*) AS transactions,
           count(*) FILTER (WHERE cust IS NULL) AS null_customer_rows,
           count(*) FILTER (WHERE cust IS NOT NULL AND ts IS NULL) AS null_date_rows,
           count(*) FILTER (WHERE cust IS NOT NULL AND ts IS NOT NULL AND amount IS NULL) AS null_amount_rows,
           count(*) FILTER (WHERE {valid} AND CAST(ts AS DATE) > {end}) AS after_as_of_rows,
           count(*) FILTER (WHERE {used} AND amount < 0) AS refund_rows,
           coalesce(-{exact_sum('amount', f'{used} AND amount < 0')}, 0) AS refund_amount,
           count(*) FILTER (WHERE {valid} AND CAST(ts AS DATE) > bounds.as_of AND CAST(ts AS DATE) <= {end})
               AS outcome_rows,
           any_value(bounds.as_of) AS as_of,
           any_value(bounds.last_day) AS last_day,
           CAST(any_value(raw_date) FILTER (WHERE raw_date IS NOT NULL AND ts IS NULL) AS VARCHAR) AS bad_date,
           CAST(any_value(raw_amount) FILTER (WHERE raw_amount IS NOT NULL AND amount IS NULL) AS VARCHAR)
               AS bad_amount,
           {responders[0]} AS responders,
           {responders[1]} AS response_revenue
    FROM typed, bounds"""


def input_columns(con, relation: Relation) -> list[str]:
    """The columns of the transaction relation."""
    query = f"WITH {relation.with_sql} t AS (SELECT * FROM {relation.name}) SELECT * FROM t LIMIT 0"
    return [d[0] for d in con.sql(query).description]


def column_sql(con, relation: Relation, columns: list[str], key: str, text: str, label: str) -> str:
    """A preset option as SQL: the quoted column of that name, or the checked expression, bound
    against the input as the query will use it (a date parsed, an amount cast). A bare name that
    is no column is reported as such, with the nearest column names."""
    if text in columns:
        return duck.ident(text)
    if NAME.fullmatch(text.strip()):
        raise InputError(f"{label} {text!r} not found{did_you_mean(text, columns)}")
    checked = duck.expression(text, f"{label} {text!r} is neither a column of the input nor an SQL expression")
    used = {"date": timestamp_sql(checked), "amount": f"TRY_CAST({checked} AS DOUBLE)"}.get(key, checked)
    probe = (f"WITH {relation.with_sql} t AS (SELECT * FROM {relation.name}) "
             f"SELECT {used} AS \"@probe\", * FROM t LIMIT 0")
    try:
        with duck.duck_errors(f"{label} {text!r}"):
            width = len(con.sql(probe).description)
    except InputError as exc:  # name the column it misses the nearest columns, as for a bare name
        missing = re.search(r'column "([^"]+)" not found', str(exc))
        raise InputError(f"{exc}{did_you_mean(missing.group(1), columns) if missing else ''}") from None
    if width != len(columns) + 1:
        raise InputError(f"{label} {text!r} must give one value per row, not {width - len(columns)} columns")
    return checked


def resolve_columns(con, relation: Relation, preset: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """Every column option of ``preset`` as SQL text (see ``column_sql``)."""
    columns = input_columns(con, relation)
    return {key: column_sql(con, relation, columns, key, str(preset[key]), labels[key])
            for key in COLUMN_KEYS if preset.get(key) is not None}


FACTS = ("transactions", "null_customer_rows", "null_date_rows", "null_amount_rows", "after_as_of_rows",
         "refund_rows", "refund_amount", "outcome_rows", "as_of", "last_day", "bad_date", "bad_amount",
         "responders", "response_revenue")
COUNTS = ("transactions", "null_customer_rows", "null_date_rows", "null_amount_rows", "after_as_of_rows",
          "refund_rows")


def facts(con, cols: dict[str, str], relation: Relation, preset: dict[str, Any],
          labels: dict[str, str]) -> dict[str, Any]:
    """What the preset found (metrics.json ``input.rfm``), or the first unreadable date or amount."""
    window = window_of(preset)
    found = dict(zip(FACTS, con.sql(facts_sql(cols, relation, window)).fetchall()[0]))
    where = "--preset rfm"
    if found["bad_date"] is not None:
        raise InputError(f"{labels['date']} {preset['date']!r} holds {found['bad_date']!r}, which is not a date "
                         "in a known format (ISO 8601 such as 2024-03-01 13:45:00, 2024/03/01, 01.03.2024, "
                         "03/01/2024 as month first, 01-Mar-2024)")
    if found["bad_amount"] is not None:
        raise InputError(f"{labels['amount']} {preset['amount']!r} holds {found['bad_amount']!r}, which is not a "
                         "number")
    if found["transactions"] == 0:
        raise InputError(f"{where}: no transactions")
    if found["as_of"] is None:
        raise InputError(f"{where}: no transaction has a customer id and a date")
    result: dict[str, Any] = {k: int(found[k]) for k in COUNTS}
    result["refund_amount"] = float(found["refund_amount"])
    result["as_of"] = found["as_of"].isoformat()
    if window:
        responders = int(found["responders"] or 0)
        result.update(response_window=window, outcome_rows=int(found["outcome_rows"]), responders=responders,
                      window_end=(found["as_of"] + dt.timedelta(days=window)).isoformat(),
                      last_day=found["last_day"].isoformat(),
                      revenue_per_response=float(found["response_revenue"]) / responders if responders else None)
    return result


def open_rfm(inputs: Sequence[str | Path], separator: str | None, preset: dict[str, Any],
             as_of: dt.date | None, threads: int | None = None, *, sql: str | None = None,
             labels: dict[str, str] | None = None, spill: Path | None = None) -> Input:
    """Per-customer RFM features from the transaction files ``inputs`` (or the ``--sql`` query's
    result), as a ``"sql"`` Input (written to ``spill``: ``engine.duck.connect.query_input``)."""
    labels = labels or preset_labels(CLI_SOURCE)
    window = window_of(preset)
    taken = (*RFM_FEATURES, *((PRODUCTS,) if preset.get("product") else ()), *((RESPONSE,) if window else ()))
    if str(preset["customer"]) in taken:
        raise InputError(f"{labels['customer']} {preset['customer']!r}: that name is one of the preset's own columns "
                         f"({', '.join(taken)}); rename it in --sql or the input")
    with transaction_connection(inputs, separator, as_of, threads, sql) as (con, relation):
        with duck.duck_errors("--preset rfm"):
            cols = resolve_columns(con, relation, preset, labels)
            found = facts(con, cols, relation, preset, labels)
            query = features_sql(cols, relation, str(preset["customer"]), window)
            frame, rows = duck.query_input(con.sql(query), spill)
    # The query ran with params.as_of as given; record the date it resolved to, so the same
    # features can be rebuilt (segment sql's customers view, --db) without the default moving.
    info = {"query": query, "as_of": found["as_of"], "input_format": relation.input_format,
            "separator": relation.separator, "preset": dict(preset), "rfm": found}
    return Input(frame, relation.files, "sql", relation.separator, query=query, rows=rows, info=info)


def summary_line(info: dict[str, Any]) -> str:
    """One line for stderr: what the preset dropped and how it treated refunds (and the outcome)."""
    r = info["rfm"]
    after = "after the response window" if "response_window" in r else "after the as-of date"
    line = (f"rfm: {r['transactions']:,} transactions as of {r['as_of']}; dropped {r['null_customer_rows']:,} "
            f"without a customer id, {r['null_date_rows']:,} without a date, {r['null_amount_rows']:,} without "
            f"an amount, {r['after_as_of_rows']:,} {after}; {r['refund_rows']:,} refunds "
            f"({r['refund_amount']:,.2f}) subtracted from monetary")
    if "response_window" in r:
        line += (f"; response: a purchase in the {r['response_window']} days to {r['window_end']} "
                 f"({r['outcome_rows']:,} transactions, {r['responders']:,} customers responded)")
        if r["window_end"] > r["last_day"]:
            line += f"; warning: the data end on {r['last_day']}, before the window does"
    return line
