"""Synthetic customers shaped like the "Customer Personality Analysis" data set.

Latent model
------------
Every customer lives in a latent space of ``N_TRAITS`` standardized behavioural traits:
income level, spending propensity, children at home, age, deal-proneness, web / catalog /
store channel affinity, web visits, recency (recent vs lapsed), and four traits that only
shape the detail (wine-vs-meat mix, "treats" mix, gold, campaign responsiveness).

* ``segments`` prototypes are drawn from ``numpy.random.default_rng(seed)`` as
  ``N(0, PROTO_SD**2)`` points by rejection sampling: a candidate is kept only if its
  noise-free profile of the ten usual clustering features (age, income, children,
  log spending, the four purchase counts, web visits, recency; in units of the real data's
  spread) is at least ``MIN_PROFILE_DIST`` from every earlier prototype's, so prototypes
  are far apart where it shows, not just in offsetting traits. Each prototype sits on a
  whole number of children (stratified over the real 0..3 distribution), so no segment
  straddles a rounding step. Prototypes are centred on the population mean. Segment
  sizes are Dirichlet weights with a floor (5% each for up to 10 segments).
* A customer is its segment's prototype plus Gaussian noise of standard deviation
  ``spread`` in every trait; the idiosyncratic noise of the category mix, the channel
  mix and the purchase count is scaled by ``spread`` too. ``spread=1.0`` gives realistic,
  overlapping segments (k-means silhouette ~0.15-0.2, like the real data's 0.17; ARI
  ~0.4-0.6); ``spread`` around 0.25 gives segments that k-means on the ten standardized
  features recovers almost perfectly (ARI >= 0.99 in our checks).
* Traits become columns through fixed monotone transforms calibrated on the real data:
  log-normal income; log-normal total spending (saturating near ``SPEND_CAP``) driven by
  income (richer customers spend more), the spending trait and fewer children, split
  over six categories by a softmax; purchase counts that grow with spending and are
  split over web / catalog / store by a softmax; logistic recency; rounded counts; Bernoulli campaign responses. Everything is clipped to
  the ranges of the real CSV. Education leans on income (ordered logit); marital status,
  customer date, complaints and the ~1% missing incomes are drawn independently.

Randomness for the rows comes in fixed blocks of ``BLOCK_ROWS`` rows, each from its own
child generator ``default_rng([seed, BLOCK_STREAM, block_index])``. So a chunk never
depends on earlier chunks' draws, and the values do not depend on ``chunk_rows`` either:
the same ``rows``, ``segments``, ``seed`` and ``spread`` give the same data for any
``chunk_rows`` (only the row-group layout of the file changes).
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InputError
from engine.outputs.write import atomic_file

# ---------------------------------------------------------------------------- schema

MNT_COLUMNS = ("MntWines", "MntFruits", "MntMeatProducts", "MntFishProducts",
               "MntSweetProducts", "MntGoldProds")
CMP_COLUMNS = ("AcceptedCmp3", "AcceptedCmp4", "AcceptedCmp5", "AcceptedCmp1",
               "AcceptedCmp2")

SCHEMA = pa.schema(
    [("ID", pa.int64()), ("Year_Birth", pa.int32()), ("Education", pa.string()),
     ("Marital_Status", pa.string()), ("Income", pa.float64()),
     ("Kidhome", pa.int32()), ("Teenhome", pa.int32()), ("Dt_Customer", pa.date32()),
     ("Recency", pa.int32())]
    + [(c, pa.int32()) for c in MNT_COLUMNS]
    + [(c, pa.int32()) for c in ("NumDealsPurchases", "NumWebPurchases",
                                 "NumCatalogPurchases", "NumStorePurchases",
                                 "NumWebVisitsMonth")]
    + [(c, pa.int32()) for c in CMP_COLUMNS]
    + [("Complain", pa.int32()), ("Z_CostContact", pa.int32()), ("Z_Revenue", pa.int32()),
       ("Response", pa.int32()), ("true_segment", pa.int32())]
)

# ------------------------------------------------------- ranges of the real CSV (inclusive)

INCOME_RANGE = (1730.0, 162397.0)
AGE_RANGE = (18, 74)                      # Year_Birth 1940..1996, age = 2014 - Year_Birth
REFERENCE_YEAR = 2014
DATE_FIRST = _dt.date(2012, 7, 30)
DATE_LAST = _dt.date(2014, 6, 29)
MNT_MAX = (1493, 199, 1725, 259, 263, 362)
COUNT_MAX = {"NumDealsPurchases": 15, "NumWebPurchases": 27, "NumCatalogPurchases": 28,
             "NumStorePurchases": 13, "NumWebVisitsMonth": 20}
RECENCY_MAX = 99
Z_COST_CONTACT = 3
Z_REVENUE = 11

# --------------------------------------------------------------- category frequencies

# Education is ordered by typical income; the cumulative shares match the real data.
EDUCATION_VALUES = ("Basic", "2n Cycle", "Graduation", "Master", "PhD")
EDUCATION_FREQ = (54, 203, 1127, 370, 486)
EDUCATION_INCOME_TILT = 1.2               # ordered-logit slope on the income trait
MARITAL_VALUES = ("Married", "Together", "Single", "Divorced", "Widow", "Alone",
                  "Absurd", "YOLO")
MARITAL_FREQ = (864, 580, 480, 232, 77, 3, 2, 2)
INCOME_NULL_SHARE = 24 / 2240
COMPLAIN_RATE = 21 / 2240

# ------------------------------------------------------------------- latent traits

(T_INCOME, T_SPEND, T_KIDS, T_AGE, T_DEALS, T_WEB, T_CATALOG, T_STORE, T_VISITS,
 T_RECENCY, T_WINE_MEAT, T_TREATS, T_GOLD, T_RESPONSE) = range(14)
N_TRAITS = 14
PROTO_SD = 0.8                            # sd of prototypes around the population mean
TOTAL_SD = math.sqrt(PROTO_SD**2 + 1.0)   # population sd of a trait at spread 1
MIN_PROFILE_DIST = 2.75                   # wanted distance between prototype profiles
PROTO_TRIES = 256                         # candidates per prototype (best one if none fit)
SIZE_ALPHA = 3.0                          # Dirichlet concentration of segment sizes
# Scale of the ten clustering features in the CSV (age, Income, children, log1p(spend),
# deals, web, catalog, store, web visits, recency): prototype profiles are compared in it.
PROFILE_SD = (12.0, 21500.0, 0.75, 1.47, 1.92, 2.74, 2.93, 3.25, 2.43, 28.9)

# ----------------------------------------------------------- transforms (from the CSV)

LOG_INCOME = (10.79, 0.40)                # mean, sd of log income
LOG_SPEND = (6.10, 1.50)                  # mean, sd of log1p(spending) before the cap
SPEND_CAP = 2800.0                        # spending saturates: s / (1 + s / SPEND_CAP)
SPEND_WEIGHTS = ((T_INCOME, 0.72), (T_SPEND, 0.55), (T_KIDS, -0.30))
CATEGORY_SHARE = (0.50, 0.043, 0.275, 0.062, 0.045, 0.073)
CATEGORY_NOISE = 0.45
MIX_SLOPE = 0.6                           # effect of the three category-mix traits
PURCHASES = (0.22, 0.395, 0.12)           # log1p(purchases) = a + b*log1p(spend) + noise
CHANNEL_SHARE = (4.1 / 12.6, 2.7 / 12.6, 5.8 / 12.6)   # web, catalog, store
CHANNEL_NOISE = 0.25
CHANNEL_SLOPES = ((T_WEB, 0.5), (T_CATALOG, 0.6), (T_STORE, 0.5))
CATALOG_INCOME_SLOPE = 0.3                # catalog buyers are richer
AGE = (45.0, 11.5)
KIDS = (0.95, 0.72)                       # total children before rounding
CHILDREN_FREQ = (633, 1116, 416, 50)      # customers with 0..3 children in the CSV
TEEN_AGE = (43.0, 6.0)                    # logistic split of children into teens by age
DEALS = (0.55, 0.65, 0.18)                # log mean, deals-trait slope, kids slope
VISITS = (1.62, 0.25, -0.28)              # log mean, visits-trait slope, income slope
RECENCY_SLOPE = 1.7
# Campaign logits: base, response-trait slope, income slope, recency slope.
CAMPAIGN_LOGIT = {"AcceptedCmp3": (-3.25, 1.2, -0.3, 0.0),
                  "AcceptedCmp4": (-3.30, 1.2, 0.6, 0.0),
                  "AcceptedCmp5": (-3.90, 1.2, 1.4, 0.0),
                  "AcceptedCmp1": (-4.00, 1.2, 1.2, 0.0),
                  "AcceptedCmp2": (-5.50, 1.2, 0.6, 0.0),
                  "Response": (-2.50, 1.2, 0.4, -0.7)}

# ------------------------------------------------------------------ random layout

BLOCK_ROWS = 16_384
BLOCK_STREAM = 0x6E6E                     # keeps block generators apart from default_rng(seed)
N_CATEGORY_NOISE, N_CHANNEL_NOISE = 6, 3
NORMAL_CATEGORY = N_TRAITS                # rows of the normals matrix, after the traits
NORMAL_CHANNEL = NORMAL_CATEGORY + N_CATEGORY_NOISE
NORMAL_PURCHASES = NORMAL_CHANNEL + N_CHANNEL_NOISE
N_NORMALS = NORMAL_PURCHASES + 1
(U_SEGMENT, U_EDUCATION, U_MARITAL, U_DATE, U_INCOME_NULL, U_COMPLAIN) = range(6)
U_CAMPAIGN = 6                            # one uniform per CAMPAIGN_LOGIT entry
N_UNIFORMS = U_CAMPAIGN + len(CAMPAIGN_LOGIT)


def generate_customers(out, rows: int, segments: int = 5, seed: int = 0, spread: float = 1.0,
                       chunk_rows: int = 1_000_000, progress=None, overwrite: bool = False) -> dict:
    """Write ``rows`` synthetic customers with ``segments`` planted segments to Parquet.

    ``spread`` scales the within-segment noise (1.0: realistic overlap; ~0.25: clean
    segments). The file is written chunk by chunk (``chunk_rows`` rows at a time, one row
    group each) to a hidden temporary file beside ``out`` that replaces ``out`` only when
    complete; an existing ``out`` is replaced only with ``overwrite``.
    ``progress(rows_written, rows_total)`` is called after each chunk.
    """
    started = time.perf_counter()
    out_path = _validate(out, rows, segments, seed, spread, chunk_rows, progress)
    model = _build_model(int(seed), int(segments))
    with atomic_file(out_path, overwrite) as tmp:
        _write_chunks(str(tmp), model, int(rows), int(seed), float(spread), int(chunk_rows), progress)
    return {"path": str(out), "rows": rows, "segments": segments, "seed": seed,
            "spread": spread, "seconds": time.perf_counter() - started}


def _validate(out, rows, segments, seed, spread, chunk_rows, progress) -> Path:
    for name, value in (("rows", rows), ("segments", segments), ("chunk_rows", chunk_rows),
                        ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{name} must be an integer, got {value!r}")
    for name, value in (("rows", rows), ("segments", segments), ("chunk_rows", chunk_rows)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    if seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    if isinstance(spread, bool) or not isinstance(spread, (int, float, np.floating, np.integer)):
        raise InputError(f"spread must be a number, got {spread!r}")
    if not math.isfinite(spread) or spread <= 0:
        raise InputError(f"spread must be a positive finite number, got {spread}")
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be callable or None, got {progress!r}")
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise InputError(f"output path must be a non-empty str or Path, got {out!r}")
    return Path(os.fspath(out))


def _write_chunks(path, model, rows, seed, spread, chunk_rows, progress) -> None:
    with pq.ParquetWriter(path, SCHEMA, compression="zstd", write_statistics=True) as writer:
        for start in range(0, rows, chunk_rows):
            stop = min(rows, start + chunk_rows)
            table = _make_chunk(model, seed, spread, start, stop)
            writer.write_table(table, row_group_size=stop - start)
            del table
            if progress is not None:
                progress(stop, rows)


# --------------------------------------------------------------------------- model


def _build_model(seed: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Prototypes (N_TRAITS x segments, float32) and cumulative segment weights."""
    rng = np.random.default_rng(seed)
    floor = min(0.05, 0.5 / segments)
    weights = floor + (1.0 - segments * floor) * rng.dirichlet(np.full(segments, SIZE_ALPHA))
    children = _household_children(rng, segments)
    protos = np.empty((segments, N_TRAITS))
    profiles = np.empty((segments, len(PROFILE_SD)))
    for s in range(segments):
        cands = rng.normal(0.0, PROTO_SD, size=(PROTO_TRIES, N_TRAITS))
        cands[:, T_KIDS] = (children[s] - KIDS[0]) * TOTAL_SD / KIDS[1]
        cand_profiles = _profile(cands.T / TOTAL_SD)
        diff = cand_profiles[:, None, :] - profiles[None, :s, :]
        nearest = np.sqrt((diff**2).sum(axis=2)).min(axis=1, initial=np.inf)
        fits = np.flatnonzero(nearest >= MIN_PROFILE_DIST)
        best = fits[0] if fits.size else int(np.argmax(nearest))
        protos[s], profiles[s] = cands[best], cand_profiles[best]
    centre = weights @ protos
    centre[T_KIDS] = 0.0                  # keep whole numbers of children
    protos -= centre
    cum = np.cumsum(weights)
    cum[-1] = 1.0
    return protos.T.astype(np.float32), cum


def _household_children(rng: np.random.Generator, segments: int) -> np.ndarray:
    """Whole number of children of each prototype: stratified quantiles of the real
    distribution in random order, so segments differ and none straddles a rounding step."""
    cum = np.cumsum(CHILDREN_FREQ) / np.sum(CHILDREN_FREQ)
    quantiles = (np.arange(segments) + 0.5) / segments
    return rng.permutation(np.searchsorted(cum, quantiles)).astype(np.float64)


def _profile(u: np.ndarray) -> np.ndarray:
    """Noise-free clustering features of latent points ``u`` (N_TRAITS x m), as m x 10
    in units of the CSV's spread. Prototypes are kept apart in this space: the latent
    distance alone can hide offsetting traits (say, richer but thriftier)."""
    lv = _levels(u.astype(np.float32), None)
    feats = (np.clip(lv["age"], *AGE_RANGE), np.clip(np.exp(lv["log_income"]), *INCOME_RANGE),
             np.clip(lv["children"], 0, 4), lv["log_spend"],
             np.clip(lv["deals"], 0, COUNT_MAX["NumDealsPurchases"]),
             np.clip(lv["web"], 0, COUNT_MAX["NumWebPurchases"]),
             np.clip(lv["catalog"], 0, COUNT_MAX["NumCatalogPurchases"]),
             np.clip(lv["store"], 0, COUNT_MAX["NumStorePurchases"]),
             np.clip(lv["visits"], 0, COUNT_MAX["NumWebVisitsMonth"]), lv["recency"])
    return np.stack(feats, axis=1) / np.asarray(PROFILE_SD)


def _draw_randoms(seed: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Normals (N_NORMALS x n) and uniforms (N_UNIFORMS x n) for rows start..stop-1."""
    first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
    span = (last - first + 1) * BLOCK_ROWS
    normals = np.empty((N_NORMALS, span), dtype=np.float32)
    uniforms = np.empty((N_UNIFORMS, span), dtype=np.float32)
    for i, block in enumerate(range(first, last + 1)):
        rng = np.random.default_rng([seed, BLOCK_STREAM, block])
        cols = slice(i * BLOCK_ROWS, (i + 1) * BLOCK_ROWS)
        normals[:, cols] = rng.standard_normal((N_NORMALS, BLOCK_ROWS), dtype=np.float32)
        uniforms[:, cols] = rng.random((N_UNIFORMS, BLOCK_ROWS), dtype=np.float32)
    lo = start - first * BLOCK_ROWS
    return normals[:, lo:lo + stop - start], uniforms[:, lo:lo + stop - start]


def _make_chunk(model, seed: int, spread: float, start: int, stop: int) -> pa.Table:
    protos, cum = model
    normals, uniforms = _draw_randoms(seed, start, stop)
    normals *= np.float32(spread)                  # all within-segment noise scales with spread
    segment = np.searchsorted(cum, uniforms[U_SEGMENT], side="right")
    np.minimum(segment, len(cum) - 1, out=segment)
    u = protos[:, segment]
    u += normals[:N_TRAITS]
    u *= np.float32(1.0 / TOTAL_SD)                # ~N(0, 1) marginally at spread 1
    lv = _levels(u, normals)
    cols = {"ID": np.arange(start + 1, stop + 1, dtype=np.int64)}
    cols.update(_demographics(lv, u, uniforms))
    cols.update(_spending(lv, u, normals))
    cols.update(_counts(lv))
    cols.update(_campaigns(u, uniforms))
    cols["true_segment"] = segment.astype(np.int32)
    return _assemble(cols, stop - start)


# ---------------------------------------------------------------------- transforms


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _clip_round(x: np.ndarray, hi: float, lo: float = 0.0) -> np.ndarray:
    return np.clip(np.rint(x), lo, hi).astype(np.int32)


def _levels(u: np.ndarray, noise: np.ndarray | None) -> dict:
    """Continuous (unrounded, unclipped) quantities from latent traits ``u``; ``noise`` is
    the spread-scaled normals matrix, or None for noise-free prototype profiles."""
    lv = {"age": AGE[0] + AGE[1] * u[T_AGE], "children": KIDS[0] + KIDS[1] * u[T_KIDS],
          "log_income": LOG_INCOME[0] + LOG_INCOME[1] * u[T_INCOME],
          "recency": RECENCY_MAX * _sigmoid(RECENCY_SLOPE * u[T_RECENCY]),
          "deals": np.exp(DEALS[0] + DEALS[1] * u[T_DEALS] + DEALS[2] * u[T_KIDS]),
          "visits": np.exp(VISITS[0] + VISITS[1] * u[T_VISITS] + VISITS[2] * u[T_INCOME])}
    mix = sum(np.float32(w) * u[t] for t, w in SPEND_WEIGHTS)
    spend = np.expm1(np.maximum(LOG_SPEND[0] + np.float32(LOG_SPEND[1]) * mix, 0.0))
    lv["spend"] = spend / (1.0 + spend / np.float32(SPEND_CAP))
    lv["log_spend"] = np.log1p(lv["spend"])
    log_count = PURCHASES[0] + PURCHASES[1] * lv["log_spend"]
    logits = np.log(np.asarray(CHANNEL_SHARE, dtype=np.float32))[:, None] + np.stack(
        [np.float32(w) * u[t] for t, w in CHANNEL_SLOPES])
    logits[1] += CATALOG_INCOME_SLOPE * u[T_INCOME]
    if noise is not None:
        log_count = log_count + np.float32(PURCHASES[2]) * noise[NORMAL_PURCHASES]
        logits += np.float32(CHANNEL_NOISE) * noise[NORMAL_CHANNEL:NORMAL_PURCHASES]
    shares = np.exp(logits - logits.max(axis=0))
    shares *= np.expm1(np.maximum(log_count, 0.0)) / shares.sum(axis=0)
    lv["web"], lv["catalog"], lv["store"] = shares
    return lv


def _demographics(lv: dict, u: np.ndarray, uniforms: np.ndarray) -> dict:
    age = _clip_round(lv["age"], AGE_RANGE[1], AGE_RANGE[0])
    children = _clip_round(lv["children"], 4)
    teen_share = _sigmoid((age - TEEN_AGE[0]) / TEEN_AGE[1])
    teens = np.minimum(np.rint(children * teen_share).astype(np.int32), 2)
    kids = np.minimum(children - teens, 2)
    income = np.rint(np.clip(np.exp(lv["log_income"].astype(np.float64)), *INCOME_RANGE))
    n_days = (DATE_LAST - DATE_FIRST).days + 1
    day0 = (DATE_FIRST - _dt.date(1970, 1, 1)).days
    days = day0 + np.minimum((uniforms[U_DATE] * n_days).astype(np.int32), n_days - 1)
    return {"Year_Birth": (REFERENCE_YEAR - age).astype(np.int32),
            "Education": _education(u[T_INCOME], uniforms[U_EDUCATION]),
            "Marital_Status": _categorical(MARITAL_VALUES, MARITAL_FREQ, uniforms[U_MARITAL]),
            "Income": pa.array(income, mask=uniforms[U_INCOME_NULL] < INCOME_NULL_SHARE),
            "Kidhome": kids, "Teenhome": children - kids,
            "Dt_Customer": pa.array(days.astype(np.int32), type=pa.date32())}


def _categorical(values, freq, uniform: np.ndarray) -> pa.Array:
    cum = np.cumsum(freq) / np.sum(freq)
    idx = np.minimum(np.searchsorted(cum, uniform, side="right"), len(values) - 1)
    return pa.array(values).take(pa.array(idx.astype(np.int8)))


def _education(income_u: np.ndarray, uniform: np.ndarray) -> pa.Array:
    """Ordered logit: higher income shifts customers towards higher degrees."""
    thresholds = _education_thresholds()
    logit_u = np.log(uniform + 1e-9) - np.log1p(-uniform + 1e-9)
    score = logit_u + np.float32(EDUCATION_INCOME_TILT) * income_u
    idx = np.zeros(income_u.shape, dtype=np.int8)
    for t in thresholds:
        idx += score > t
    return pa.array(EDUCATION_VALUES).take(pa.array(idx))


@functools.cache
def _education_thresholds() -> np.ndarray:
    """Cut points on the score (logistic noise + tilt * N(0, 1) income) that give the real
    education shares; the score's distribution function comes from Gauss-Hermite nodes."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    weights = weights / weights.sum()
    grid = np.linspace(-12.0, 12.0, 4801)
    cdf = _sigmoid(grid[:, None] - EDUCATION_INCOME_TILT * nodes[None, :]) @ weights
    cum = np.cumsum(EDUCATION_FREQ)[:-1] / np.sum(EDUCATION_FREQ)
    return np.interp(cum, cdf, grid).astype(np.float32)


def _spending(lv: dict, u: np.ndarray, noise: np.ndarray) -> dict:
    """Split total spending over the six categories by a softmax of the mix traits."""
    logits = np.log(np.asarray(CATEGORY_SHARE, dtype=np.float32))[:, None] + (
        np.float32(CATEGORY_NOISE) * noise[NORMAL_CATEGORY:NORMAL_CHANNEL])
    logits[0] += MIX_SLOPE * u[T_WINE_MEAT]
    logits[2] -= MIX_SLOPE * u[T_WINE_MEAT]
    logits[[1, 3, 4]] += MIX_SLOPE * u[T_TREATS]
    logits[5] += MIX_SLOPE * u[T_GOLD]
    shares = np.exp(logits - logits.max(axis=0))
    shares *= lv["spend"] / shares.sum(axis=0)
    return {name: _clip_round(shares[i], MNT_MAX[i]) for i, name in enumerate(MNT_COLUMNS)}


def _counts(lv: dict) -> dict:
    pairs = (("NumDealsPurchases", "deals"), ("NumWebPurchases", "web"),
             ("NumCatalogPurchases", "catalog"), ("NumStorePurchases", "store"),
             ("NumWebVisitsMonth", "visits"))
    cols = {col: _clip_round(lv[key], COUNT_MAX[col]) for col, key in pairs}
    cols["Recency"] = _clip_round(lv["recency"], RECENCY_MAX)
    return cols


def _campaigns(u: np.ndarray, uniforms: np.ndarray) -> dict:
    cols = {}
    for i, (name, (base, w_resp, w_inc, w_rec)) in enumerate(CAMPAIGN_LOGIT.items()):
        logit = base + w_resp * u[T_RESPONSE] + w_inc * u[T_INCOME] + w_rec * u[T_RECENCY]
        cols[name] = (uniforms[U_CAMPAIGN + i] < _sigmoid(logit)).astype(np.int32)
    cols["Complain"] = (uniforms[U_COMPLAIN] < COMPLAIN_RATE).astype(np.int32)
    return cols


def _assemble(cols: dict, n: int) -> pa.Table:
    cols["Z_CostContact"] = np.full(n, Z_COST_CONTACT, dtype=np.int32)
    cols["Z_Revenue"] = np.full(n, Z_REVENUE, dtype=np.int32)
    arrays = [c if isinstance(c, pa.Array) else pa.array(c, type=f.type)
              for f in SCHEMA for c in (cols[f.name],)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
