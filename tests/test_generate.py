"""engine.synth.customers.generate_customers: schema, ranges, planted segments, chunking,
reproducibility, atomic output and argument checks."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from engine.errors import InputError
from engine.synth.customers import generate_customers

EXPECTED_SCHEMA = [
    ("ID", pa.int64()), ("Year_Birth", pa.int32()), ("Education", pa.string()),
    ("Marital_Status", pa.string()), ("Income", pa.float64()), ("Kidhome", pa.int32()),
    ("Teenhome", pa.int32()), ("Dt_Customer", pa.date32()), ("Recency", pa.int32()),
    ("MntWines", pa.int32()), ("MntFruits", pa.int32()), ("MntMeatProducts", pa.int32()),
    ("MntFishProducts", pa.int32()), ("MntSweetProducts", pa.int32()),
    ("MntGoldProds", pa.int32()), ("NumDealsPurchases", pa.int32()),
    ("NumWebPurchases", pa.int32()), ("NumCatalogPurchases", pa.int32()),
    ("NumStorePurchases", pa.int32()), ("NumWebVisitsMonth", pa.int32()),
    ("AcceptedCmp3", pa.int32()), ("AcceptedCmp4", pa.int32()), ("AcceptedCmp5", pa.int32()),
    ("AcceptedCmp1", pa.int32()), ("AcceptedCmp2", pa.int32()), ("Complain", pa.int32()),
    ("Z_CostContact", pa.int32()), ("Z_Revenue", pa.int32()), ("Response", pa.int32()),
    ("true_segment", pa.int32()),
]

# Inclusive ranges seen in marketing_campaign.csv (Income without its 666666 outlier).
CSV_RANGES = {
    "Year_Birth": (1940, 1996), "Income": (1730, 162397), "Kidhome": (0, 2),
    "Teenhome": (0, 2), "Recency": (0, 99), "MntWines": (0, 1493), "MntFruits": (0, 199),
    "MntMeatProducts": (0, 1725), "MntFishProducts": (0, 259), "MntSweetProducts": (0, 263),
    "MntGoldProds": (0, 362), "NumDealsPurchases": (0, 15), "NumWebPurchases": (0, 27),
    "NumCatalogPurchases": (0, 28), "NumStorePurchases": (0, 13),
    "NumWebVisitsMonth": (0, 20), "AcceptedCmp3": (0, 1), "AcceptedCmp4": (0, 1),
    "AcceptedCmp5": (0, 1), "AcceptedCmp1": (0, 1), "AcceptedCmp2": (0, 1),
    "Complain": (0, 1), "Response": (0, 1),
}
EDUCATION = {"Graduation", "PhD", "Master", "2n Cycle", "Basic"}
MARITAL = {"Married", "Together", "Single", "Divorced", "Widow", "Alone", "Absurd", "YOLO"}
MNT = ["MntWines", "MntFruits", "MntMeatProducts", "MntFishProducts", "MntSweetProducts",
       "MntGoldProds"]


@pytest.fixture(scope="module")
def realistic(tmp_path_factory) -> tuple[Path, dict]:
    """20,000 customers, 5 segments, default spread 1.0, seed 0."""
    out = tmp_path_factory.mktemp("gen") / "customers.parquet"
    return out, generate_customers(out, 20_000, segments=5, seed=0)


@pytest.fixture(scope="module")
def frame(realistic) -> pl.DataFrame:
    return pl.read_parquet(realistic[0])


def clustering_features(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The ten standardized features of the brief (rows with null Income dropped)."""
    kept = frame.filter(pl.col("Income").is_not_null())
    feats = kept.select(
        age=2014 - pl.col("Year_Birth"), income=pl.col("Income"),
        children=pl.col("Kidhome") + pl.col("Teenhome"),
        log_spend=pl.sum_horizontal(MNT).log1p(),
        deals="NumDealsPurchases", web="NumWebPurchases", catalog="NumCatalogPurchases",
        store="NumStorePurchases", visits="NumWebVisitsMonth", recency="Recency",
    ).to_numpy().astype(np.float64)
    feats = (feats - feats.mean(axis=0)) / feats.std(axis=0)
    return feats, kept["true_segment"].to_numpy()


def kmeans_labels(feats: np.ndarray, k: int) -> np.ndarray:
    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(feats)


def leftover_temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and ".tmp-" in p.name)


# ------------------------------------------------------------------------- schema, values


def test_schema_is_exact(realistic) -> None:
    schema = pq.read_schema(realistic[0])
    assert [(f.name, f.type) for f in schema] == EXPECTED_SCHEMA


def test_summary(realistic) -> None:
    out, summary = realistic
    assert summary["path"] == str(out)
    assert (summary["rows"], summary["segments"], summary["seed"], summary["spread"]) == (
        20_000, 5, 0, 1.0)
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0


def test_values_within_csv_ranges(frame: pl.DataFrame) -> None:
    for col, (lo, hi) in CSV_RANGES.items():
        assert lo <= frame[col].min() and frame[col].max() <= hi, col
    assert set(frame["Education"].unique()) <= EDUCATION
    assert set(frame["Marital_Status"].unique()) <= MARITAL
    assert frame["Dt_Customer"].min() >= dt.date(2012, 7, 30)
    assert frame["Dt_Customer"].max() <= dt.date(2014, 6, 29)
    assert frame.drop("Income").null_count().sum_horizontal().item() == 0


def test_categories_have_realistic_frequencies(frame: pl.DataFrame) -> None:
    edu = frame["Education"].value_counts(normalize=True, sort=True)
    assert edu["Education"][0] == "Graduation"
    assert set(edu["Education"]) == EDUCATION
    marital = dict(frame["Marital_Status"].value_counts(normalize=True).iter_rows())
    assert marital["Married"] > marital["Together"] > marital["Single"] > marital["Divorced"]
    assert all(marital.get(v, 0.0) < 0.01 for v in ("Alone", "Absurd", "YOLO"))


def test_income_nulls_constants_and_ids(frame: pl.DataFrame) -> None:
    assert 0.002 <= frame["Income"].null_count() / frame.height <= 0.03
    assert frame["Z_CostContact"].unique().to_list() == [3]
    assert frame["Z_Revenue"].unique().to_list() == [11]
    assert frame["ID"].n_unique() == frame.height
    assert frame["ID"].min() == 1 and frame["ID"].max() == frame.height


def test_segments_present_and_not_tiny(frame: pl.DataFrame) -> None:
    shares = frame["true_segment"].value_counts(normalize=True)
    assert sorted(shares["true_segment"]) == [0, 1, 2, 3, 4]
    assert shares["proportion"].min() >= 0.03
    assert shares["proportion"].max() - shares["proportion"].min() > 0.02   # unequal sizes


def test_income_drives_spending_and_spending_drives_purchases(frame: pl.DataFrame) -> None:
    kept = frame.drop_nulls("Income").with_columns(
        log_spend=pl.sum_horizontal(MNT).log1p(),
        purchases=pl.col("NumWebPurchases") + pl.col("NumCatalogPurchases")
        + pl.col("NumStorePurchases"))
    assert kept.select(pl.corr("Income", "log_spend")).item() > 0.5
    assert kept.select(pl.corr("log_spend", "purchases")).item() > 0.5


# ------------------------------------------------------------------ reproducibility, chunks


def test_same_seed_same_table_different_seed_different(tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.parquet" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (3, 3, 4)):
        generate_customers(path, 5_000, segments=4, seed=seed, chunk_rows=2_000)
    a, b, c = (pq.read_table(p) for p in paths)
    assert a.equals(b)
    assert not a.equals(c)


def test_values_do_not_depend_on_chunk_rows(tmp_path: Path) -> None:
    generate_customers(tmp_path / "one.parquet", 40_000, seed=5, chunk_rows=40_000)
    generate_customers(tmp_path / "many.parquet", 40_000, seed=5, chunk_rows=7_777)
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "many.parquet"))


def test_chunking_writes_row_groups_and_reports_progress(tmp_path: Path) -> None:
    out = tmp_path / "chunked.parquet"
    calls = []
    generate_customers(out, 25_000, chunk_rows=10_000, progress=lambda d, t: calls.append((d, t)))
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 25_000
    assert meta.num_row_groups >= 3
    assert all(meta.row_group(i).num_rows <= 10_000 for i in range(meta.num_row_groups))
    assert meta.row_group(0).column(0).statistics.has_min_max
    assert calls == [(10_000, 25_000), (20_000, 25_000), (25_000, 25_000)]


# ---------------------------------------------------------------------------- atomic output


def test_no_temp_files_after_success(tmp_path: Path) -> None:
    generate_customers(str(tmp_path / "ok.parquet"), 1_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.parquet"]


def test_failure_leaves_no_output_and_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "fail.parquet"

    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        generate_customers(out, 25_000, chunk_rows=10_000, progress=boom)
    assert not out.exists()
    assert leftover_temps(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_output_intact(tmp_path: Path) -> None:
    out = tmp_path / "keep.parquet"
    generate_customers(out, 1_000, seed=1)
    before = out.read_bytes()

    def boom(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_customers(out, 5_000, seed=2, chunk_rows=1_000, progress=boom, overwrite=True)
    assert out.read_bytes() == before
    assert leftover_temps(tmp_path) == []


def test_overwrites_existing_file_with_normal_permissions(tmp_path: Path) -> None:
    out = tmp_path / "again.parquet"
    generate_customers(out, 1_000)
    generate_customers(out, 2_000, overwrite=True)
    assert pq.ParquetFile(out).metadata.num_rows == 2_000
    probe = tmp_path / "probe"
    probe.touch()                                  # what the umask gives a new file
    assert os.stat(out).st_mode & 0o777 == os.stat(probe).st_mode & 0o777


def test_existing_file_is_kept_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "kept.parquet"
    generate_customers(out, 1_000)
    before = out.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        generate_customers(out, 2_000)
    assert out.read_bytes() == before
    assert leftover_temps(tmp_path) == []


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"rows": 0}, "rows"),
        ({"rows": -5}, "rows"),
        ({"segments": 0}, "segments"),
        ({"spread": 0.0}, "spread"),
        ({"spread": -1.0}, "spread"),
        ({"spread": float("nan")}, "spread"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"seed": -1}, "seed"),
        ({"rows": 2.5}, "rows"),
        ({"progress": 3}, "progress"),
    ],
)
def test_bad_arguments_raise_input_error(tmp_path: Path, kwargs: dict, word: str) -> None:
    args = {"rows": 100, **kwargs}
    with pytest.raises(InputError, match=word) as info:
        generate_customers(tmp_path / "x.parquet", **args)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_parent_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        generate_customers(tmp_path / "nope" / "x.parquet", 10)


def test_output_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        generate_customers(tmp_path, 10)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ planted segments


@pytest.mark.parametrize("segments", [3, 5, 7])
def test_kmeans_recovers_well_separated_segments(tmp_path: Path, segments: int) -> None:
    out = tmp_path / "sep.parquet"
    generate_customers(out, 20_000, segments=segments, seed=1, spread=0.25)
    feats, truth = clustering_features(pl.read_parquet(out))
    assert len(np.unique(truth)) == segments
    assert adjusted_rand_score(truth, kmeans_labels(feats, segments)) >= 0.95


def test_default_spread_overlaps_like_real_customers(frame: pl.DataFrame) -> None:
    feats, truth = clustering_features(frame)
    labels = kmeans_labels(feats, 5)
    sample = np.random.default_rng(0).choice(len(feats), 5_000, replace=False)
    silhouette = silhouette_score(feats[sample], labels[sample])
    assert 0.1 <= silhouette <= 0.45
    assert adjusted_rand_score(truth, labels) < 0.85
