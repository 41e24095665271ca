"""Synthetic transactions for the RFM preset (``segment generate --kind transactions``).

Each customer belongs to a planted behaviour group, and the group sets how many orders it
places, when, and how much it spends:

| group | share | orders | basket | active |
| --- | --- | --- | --- | --- |
| 0 vip | 8% | many (about 28) | high (about 180) | the whole period, up to the end |
| 1 regular | 40% | some (about 9) | medium (about 60) | the whole period |
| 2 lapsed | 22% | few (about 6) | medium (about 70) | the first 40% of the period only |
| 3 discount hunter | 15% | many small (about 18) | low (about 20) | the whole period; refunds 15% of lines |
| 4 new | 15% | 1 to 3 | medium (about 50) | the last 10% of the period only |

An order has one or more lines (rows) that share its ``order_id`` and timestamp. A line is
refunded (an extra row with the negative amount, same order, 1 to 30 days later) with a
probability of 3% (15% for discount hunters). About 1% of rows have a null ``customer_id``
(guest checkouts). The period is 2023-01-01 to 2024-12-31; refunds may fall up to 30 days after.

Columns: ``order_id`` int64, ``customer_id`` int64 (nullable), ``ts`` timestamp[us],
``amount`` float64 (cents), ``true_group`` int32 (the planted group, also on guest rows).

Customers come in blocks of ``BLOCK_CUSTOMERS``, each drawn from its own generator
``default_rng([seed, STREAM, block])``, so the data does not depend on how many customers a
chunk holds; customer ``i`` has id ``i + 1``.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InputError
from engine.outputs.write import atomic_file

GROUPS = ("vip", "regular", "lapsed", "discount_hunter", "new")
SHARES = np.array([0.08, 0.40, 0.22, 0.15, 0.15])
ORDERS = np.array([28.0, 9.0, 6.0, 18.0, 2.0])  # mean orders per customer
MIN_ORDERS = np.array([4, 1, 1, 2, 1])
BASKET = np.array([180.0, 60.0, 70.0, 20.0, 50.0])  # mean order value
BASKET_SD = np.array([0.45, 0.6, 0.6, 0.5, 0.6])  # log-scale spread of a customer's mean basket
WINDOW = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 0.4], [0.0, 1.0], [0.9, 1.0]])  # active part of the period
REFUND_RATE = np.array([0.03, 0.03, 0.03, 0.15, 0.03])
EXTRA_LINES = 1.0  # lines per order: 1 + Poisson(EXTRA_LINES)
GUEST_SHARE = 0.01  # rows with a null customer id
PERIOD_START = dt.datetime(2023, 1, 1)
PERIOD_SECONDS = 730 * 86_400
REFUND_DAYS = (1, 30)
BLOCK_CUSTOMERS = 4_096
STREAM = 0x7478  # "tx": keeps these generators apart from engine.synth.customers's
SCHEMA = pa.schema([("order_id", pa.int64()), ("customer_id", pa.int64()), ("ts", pa.timestamp("us")),
                    ("amount", pa.float64()), ("true_group", pa.int32())])


def generate_transactions(out, customers: int, seed: int = 0, chunk_customers: int = 65_536,
                          progress=None, overwrite: bool = False) -> dict:
    """Write the transactions of ``customers`` customers to Parquet (atomically, in chunks)."""
    started = time.perf_counter()
    for name, value in (("customers", customers), ("seed", seed), ("chunk_customers", chunk_customers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"--{name.replace('_', '-')} must be a whole number, not {value!r}")
    if customers < 1 or chunk_customers < 1:
        raise InputError(f"--customers must be at least 1, not {customers}")
    if seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed}")
    per_chunk = max(1, -(-chunk_customers // BLOCK_CUSTOMERS))  # whole blocks per chunk
    n_blocks = -(-customers // BLOCK_CUSTOMERS)
    rows = 0
    with atomic_file(Path(out), overwrite) as tmp:
        with pq.ParquetWriter(str(tmp), SCHEMA, compression="zstd") as writer:
            for first in range(0, n_blocks, per_chunk):
                blocks = range(first, min(n_blocks, first + per_chunk))
                table = pa.concat_tables([block_table(seed, b, customers) for b in blocks])
                writer.write_table(table, row_group_size=max(table.num_rows, 1))
                rows += table.num_rows
                if progress is not None:
                    progress(min(customers, blocks[-1] * BLOCK_CUSTOMERS + BLOCK_CUSTOMERS), customers)
    return {"path": str(out), "kind": "transactions", "customers": customers, "rows": rows, "seed": seed,
            "seconds": time.perf_counter() - started}


def block_table(seed: int, block: int, customers: int) -> pa.Table:
    """The rows of customers ``block * BLOCK_CUSTOMERS`` up to the next block, sorted by time."""
    rng = np.random.default_rng([seed, STREAM, block])
    lo = block * BLOCK_CUSTOMERS
    n = min(customers, lo + BLOCK_CUSTOMERS) - lo
    group = np.searchsorted(np.cumsum(SHARES), rng.random(BLOCK_CUSTOMERS), side="right")[:n].clip(0, 4)
    n_orders = np.maximum(rng.poisson(ORDERS[group]), MIN_ORDERS[group])
    basket = BASKET[group] * np.exp(rng.normal(0.0, BASKET_SD[group]))
    # Orders: customer index, time inside the customer's group window, lines.
    cust = np.repeat(np.arange(n), n_orders)
    g = group[cust]
    start, width = WINDOW[g, 0], WINDOW[g, 1] - WINDOW[g, 0]
    seconds = ((start + width * rng.random(cust.size)) * PERIOD_SECONDS).astype(np.int64)
    order_id = (np.int64(block) << 32) + np.arange(cust.size, dtype=np.int64)
    lines = 1 + rng.poisson(EXTRA_LINES, cust.size)
    # Lines: amounts around the customer's basket split over the order's lines.
    line_order = np.repeat(np.arange(cust.size), lines)
    lc = cust[line_order]
    amount = np.round(basket[lc] / (1 + EXTRA_LINES) * rng.lognormal(0.0, 0.5, lc.size), 2)
    amount = np.maximum(amount, 0.5)
    # Refunds: a negative copy of some lines, a few days later.
    refunded = rng.random(lc.size) < REFUND_RATE[group[lc]]
    delay = rng.integers(REFUND_DAYS[0], REFUND_DAYS[1] + 1, lc.size) * 86_400
    ro = line_order[refunded]
    all_order = np.concatenate([line_order, ro])
    all_cust = cust[all_order]
    all_seconds = np.concatenate([seconds[line_order], seconds[ro] + delay[refunded]])
    all_amount = np.concatenate([amount, -amount[refunded]])
    guest = rng.random(all_order.size) < GUEST_SHARE
    sort = np.lexsort((all_order, all_seconds))
    ts = np.datetime64(PERIOD_START, "us") + (all_seconds[sort] * 1_000_000).astype("timedelta64[us]")
    ids = (lo + 1 + all_cust).astype(np.int64)
    return pa.Table.from_arrays([
        pa.array(order_id[all_order][sort]),
        pa.array(ids[sort], mask=guest[sort]),
        pa.array(ts, pa.timestamp("us")),
        pa.array(all_amount[sort]),
        pa.array(group[all_cust][sort].astype(np.int32)),
    ], schema=SCHEMA)
