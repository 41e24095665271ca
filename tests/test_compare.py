"""Other algorithms beside k-means (``engine.fit.compare``) against scikit-learn and naive references."""

from __future__ import annotations

import naive
import numpy as np
import numpy.testing as npt
import pytest
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.mixture import GaussianMixture

from engine.fit.compare import ALGORITHMS, FITTERS, compact, compare_algorithms, dbscan_eps, sample_rows
from engine.errors import InputError
from engine.fit.scores import sample_indices, score_partition

KEYS = ["algorithm", "k", "inertia", "silhouette", "silhouette_low", "silhouette_high", "calinski_harabasz",
        "davies_bouldin", "noise_share", "sample", "seconds", "note"]
N, K, SAMPLE, SEED = 6_000, 5, 2_000, 0
MIN_ARI = {"gmm": 0.95, "ward": 0.95, "dbscan": 0.9, "hdbscan": 0.95}


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=N, n_features=6, centers=K, random_state=7)
    return np.ascontiguousarray(X, dtype=np.float32), y


@pytest.fixture(scope="module")
def eval_idx():
    return sample_indices(N, 1_500, np.random.default_rng([SEED, 1]))


@pytest.fixture(scope="module")
def idx():
    return sample_rows(N, SAMPLE, SEED)


@pytest.fixture(scope="module")
def partitions(blobs, idx):
    """Every algorithm's partition of the blobs, fitted on the 2,000-row sample."""
    return {name: FITTERS[name](blobs[0], idx, K, SEED) for name in ALGORITHMS}


@pytest.fixture(scope="module")
def table(blobs, eval_idx):
    return compare_algorithms(blobs[0], K, ALGORITHMS, eval_idx=eval_idx, sample=SAMPLE, seed=SEED)


def sample_centroids(X, idx, own):
    """Means (float64) of the sample rows of each cluster; ``own`` is -1 for noise."""
    found = int(own.max()) + 1
    return np.stack([X[idx[own == j]].astype(np.float64).mean(axis=0) for j in range(found)])


def check_extension(X, idx, own, labels):
    """Sample rows keep the algorithm's labels ``own`` (-1: noise); every other row, and the
    noise rows, carry the nearest sample centroid (near ties excepted)."""
    own_c, found = compact(own[own >= 0], int(own.max()) + 1)
    relabelled = np.full(own.shape, -1)
    relabelled[own >= 0] = own_c
    assert np.array_equal(labels[idx[own >= 0]], own_c)
    centroids = sample_centroids(X, idx, relabelled)
    rest = np.ones(X.shape[0], dtype=bool)
    rest[idx[own >= 0]] = False
    ref, _ = naive.assign(X[rest], centroids)
    ties = naive.near_ties(X[rest], centroids)
    assert not ((labels[rest] != ref) & ~ties).any()
    assert labels.dtype == np.int32 and np.array_equal(np.unique(labels), np.arange(found))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_recovers_blobs(name, blobs, partitions):
    X, y = blobs
    part = partitions[name]
    assert part.labels.shape == (N,)
    assert adjusted_rand_score(y, part.labels) >= MIN_ARI[name]
    if name in ("gmm", "ward"):
        assert part.found == K and part.noise_share is None
    else:
        assert 0.0 <= part.noise_share < 0.1


def test_gmm_is_sklearns_prediction(blobs, idx, partitions):
    X = blobs[0]
    gm = GaussianMixture(n_components=K, covariance_type="full", random_state=SEED).fit(X[idx])
    assert np.array_equal(partitions["gmm"].labels, gm.predict(X))


def test_ward_extends_sklearns_sample_labels(blobs, idx, partitions):
    X = blobs[0]
    own = AgglomerativeClustering(n_clusters=K, linkage="ward").fit_predict(X[idx])
    check_extension(X, idx, own, partitions["ward"].labels)


def test_dbscan_eps_and_labels(blobs, idx, partitions):
    X = blobs[0]
    S = X[idx].astype(np.float64)
    min_samples = 2 * X.shape[1]
    kth = np.sort(np.sqrt(naive.sq_distances(S, S)), axis=1)[:, min_samples - 1]  # the row itself first
    eps = dbscan_eps(X[idx], min_samples)
    npt.assert_allclose(eps, np.percentile(kth, 90), rtol=1e-5)
    own = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(X[idx])
    part = partitions["dbscan"]
    assert part.noise_share == pytest.approx((own < 0).mean()) and part.found == own.max() + 1
    assert f"min_samples={min_samples}" in part.note
    check_extension(X, idx, own, part.labels)


def test_hdbscan_extends_sklearns_sample_labels(blobs, idx, partitions):
    X = blobs[0]
    own = HDBSCAN(min_cluster_size=25, copy=True).fit_predict(X[idx])
    part = partitions["hdbscan"]
    assert part.noise_share == pytest.approx((own < 0).mean())
    check_extension(X, idx, own, part.labels)


def test_table_rows(table, partitions, blobs, eval_idx):
    X = blobs[0]
    assert [row["algorithm"] for row in table] == list(ALGORITHMS)
    for row in table:
        part = partitions[row["algorithm"]]
        assert list(row) == KEYS
        assert row["k"] == part.found and row["sample"] == SAMPLE and row["seconds"] >= 0
        assert row["noise_share"] == part.noise_share
        expected = score_partition(X, part.labels, part.found, eval_idx, SEED)
        assert {key: row[key] for key in expected} == expected


@pytest.mark.parametrize("name", ALGORITHMS)
def test_indices_match_references(name, table, partitions, blobs, eval_idx):
    """The scores are those of the returned partition, by independent computations."""
    X = blobs[0]
    row = next(r for r in table if r["algorithm"] == name)
    labels = partitions[name].labels
    means = np.stack([X[labels == j].astype(np.float64).mean(axis=0) for j in range(row["k"])])
    npt.assert_allclose(row["inertia"], naive.sse(X, labels, means), rtol=1e-6)
    npt.assert_allclose(row["calinski_harabasz"], calinski_harabasz_score(X, labels), rtol=1e-5)
    npt.assert_allclose(row["davies_bouldin"], davies_bouldin_score(X, labels), rtol=1e-5)
    npt.assert_allclose(row["silhouette"], silhouette_score(X[eval_idx], labels[eval_idx]), rtol=1e-4)
    assert row["silhouette_low"] <= row["silhouette"] <= row["silhouette_high"]


def test_deterministic(blobs, eval_idx, table):
    again = compare_algorithms(blobs[0], K, ALGORITHMS, eval_idx=eval_idx, sample=SAMPLE, seed=SEED)
    strip = [{key: v for key, v in row.items() if key != "seconds"} for row in table]
    assert strip == [{key: v for key, v in row.items() if key != "seconds"} for row in again]


def test_whole_data_when_sample_is_larger(blobs, eval_idx):
    X = blobs[0][:1_000]
    rows = compare_algorithms(X, K, ["ward"], eval_idx=eval_idx[eval_idx < 1_000], sample=20_000)
    assert rows[0]["sample"] == 1_000 and rows[0]["k"] == K


def test_unknown_algorithm_suggests():
    X = np.zeros((10, 2), dtype=np.float32)
    with pytest.raises(InputError, match=r"'hdbscn' \(did you mean 'hdbscan'.*gmm, ward, dbscan, hdbscan"):
        compare_algorithms(X, 2, ["gmm", "hdbscn"], eval_idx=np.arange(10))


@pytest.mark.parametrize("sample", [1, 0, -5])
def test_sample_below_two(sample):
    X = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    with pytest.raises(InputError, match="sample must be at least 2"):
        compare_algorithms(X, 2, ["dbscan"], eval_idx=np.arange(50), sample=sample)


def test_k_larger_than_sample():
    X = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    with pytest.raises(InputError, match="k must be between 1 and the 10 sample rows"):
        compare_algorithms(X, 11, ["ward"], eval_idx=np.arange(50), sample=10)


@pytest.mark.parametrize("X", [
    np.full((300, 3), 2.5, dtype=np.float32),  # every row the same: eps is 0
    5.0 + 1e-3 * np.random.default_rng(4).uniform(size=(800, 4)).astype(np.float32),  # one dense blob
], ids=["identical", "one-blob"])
def test_dbscan_without_clusters_gives_a_note(X):
    (row,) = compare_algorithms(X, 3, ["dbscan"], eval_idx=np.arange(X.shape[0]))
    assert list(row) == KEYS and row["k"] == 1
    assert all(row[key] is None for key in KEYS[2:8])
    assert "single cluster" in row["note"] and 0.0 <= row["noise_share"] < 1.0


def test_too_few_rows_for_density_algorithms():
    X = np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)
    rows = compare_algorithms(X, 2, ["dbscan", "hdbscan"], eval_idx=np.arange(10))
    for row in rows:
        assert row["k"] == 0 and row["noise_share"] == 1.0 and row["inertia"] is None
        assert "every sample row is noise" in row["note"]


def test_compact():
    labels, found = compact(np.array([4, 0, 4, 2]), 6)
    assert found == 3 and labels.dtype == np.int32 and labels.tolist() == [2, 0, 2, 1]
    same, found = compact(np.array([1, 0, 1]), 2)
    assert found == 2 and same.tolist() == [1, 0, 1]
