"""PCA before k-means: ``[pca]`` and ``--pca``, the saved projection, predict, the sweep and the
report. (Bad values of --pca and [pca] are cases in test_bad_input.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import invoke, num_threads, read_json
from engine.errors import InputError
from engine.features import pca as pca_module
from engine.features.pca import PCA, fit_pca
from engine.features.spec import PCASetting, load_spec, parse_pca_option
from engine.fit.model import FORMAT_VERSION, PCA_FORMAT_VERSION, load_model
from engine.fit.scores import adjusted_rand_score


def run(data: Path, out: Path, *extra: str) -> Path:
    result = invoke(["run", data, "--spec", "marketing", "--k", "4", "--out", out, "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def pca_run(tmp_path_factory, data_csv: Path) -> Path:
    """The shared CSV, --spec marketing, k=4, --pca 0.9."""
    return run(data_csv, tmp_path_factory.mktemp("pca") / "run", "--pca", "0.9")


def labels(run_dir: Path) -> np.ndarray:
    return pl.read_parquet(run_dir / "segments.parquet")["segment"].drop_nulls().to_numpy()


def test_all_components_give_the_same_partition_as_no_pca(data_csv: Path, marketing_run: Path, tmp_path: Path) -> None:
    """A rotation keeps every distance: with as many components as features, the partition is the
    run's without PCA (ARI 1.0)."""
    rotated = run(data_csv, tmp_path / "rotated", "--pca", "10")
    assert read_json(rotated / "metrics.json")["pca"]["components"] == 10
    assert adjusted_rand_score(labels(marketing_run), labels(rotated)) == 1.0


def test_pca_run_records_components_variance_and_loadings(pca_run: Path) -> None:
    metrics = read_json(pca_run / "metrics.json")
    pca = metrics["pca"]
    ratio = pca["explained_variance_ratio"]
    assert pca["setting"] == {"variance": 0.9} and pca["features"] == 10
    assert pca["components"] == len(ratio) == len(pca["loadings"])
    # the fewest components that keep 90%: one fewer would not
    assert pca["cumulative_variance_ratio"][-1] >= 0.9 > sum(ratio[:-1])
    assert ratio == sorted(ratio, reverse=True)
    assert set(pca["loadings"][0]) == {"component", *metrics["features"]}
    assert metrics["options"]["features"]["pca"] == "0.9"
    model = read_json(pca_run / "model.json")
    assert model["format_version"] == PCA_FORMAT_VERSION and model["spec"]["pca"] == {"variance": 0.9}
    assert len(model["centroids"]["scaled"][0]) == pca["components"]
    assert len(model["centroids"]["original"][0]) == 10  # mapped back to the features


def test_profiles_stay_in_original_units(pca_run: Path, marketing_run: Path) -> None:
    profiles = pl.read_parquet(pca_run / "profiles.parquet")
    raw = pl.read_parquet(marketing_run / "profiles.parquet")
    assert profiles.columns == raw.columns
    # the mean income of the segmented customers, weighted by size, is the same whatever the space
    for frame in (profiles, raw):
        total = (frame["income_mean"] * frame["size"]).sum() / frame["size"].sum()
        assert total == pytest.approx(raw["income_mean"].dot(raw["size"]) / raw["size"].sum(), rel=1e-9)
    assert profiles["income_mean"].max() > 50_000  # dollars, not z-scores


def test_predict_reproduces_the_pca_run(pca_run: Path, data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.parquet"
    result = invoke(["predict", pca_run, data_csv, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).equals(pl.read_parquet(pca_run / "segments.parquet"))


def test_components_match_scikit_learn(data_csv: Path) -> None:
    from sklearn.decomposition import PCA as SkPCA  # scikit-learn: the reference

    rng = np.random.default_rng(5)
    X = (rng.normal(size=(3_000, 6)) @ rng.normal(size=(6, 6))).astype(np.float32)
    names = tuple(f"f{i}" for i in range(6))
    ours = fit_pca(X, PCASetting(components=4), names, seed=0)
    ref = SkPCA(n_components=4, svd_solver="full").fit(X.astype(np.float64))
    signs = np.sign((ours.components * ref.components_).sum(axis=1))
    assert np.all(signs != 0)
    np.testing.assert_allclose(ours.components, ref.components_ * signs[:, None], atol=1e-6)
    np.testing.assert_allclose(ours.explained_variance, ref.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X.astype(np.float64)) * signs, atol=1e-4)
    # each component's largest loading is positive (reruns draw the same signs)
    assert np.all(ours.components[np.arange(4), np.abs(ours.components).argmax(axis=1)] > 0)


def test_variance_share_keeps_the_fewest_components() -> None:
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(2_000, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])).astype(np.float32)
    names = tuple("abcde")
    full = fit_pca(X, PCASetting(components=5), names, 0).explained_variance_ratio
    for share in (0.5, 0.8, 0.95, 0.999):
        m = fit_pca(X, PCASetting(variance=share), names, 0).n_components
        assert full[:m].sum() >= share - 1e-12 and (m == 1 or full[:m - 1].sum() < share)


def test_large_inputs_are_fitted_on_a_seeded_sample(monkeypatch) -> None:
    monkeypatch.setattr(pca_module, "SAMPLE_ROWS", 500)
    X = np.random.default_rng(2).normal(size=(4_000, 3)).astype(np.float32)
    a = fit_pca(X, PCASetting(components=2), ("a", "b", "c"), seed=3)
    b = fit_pca(X, PCASetting(components=2), ("a", "b", "c"), seed=3)
    c = fit_pca(X, PCASetting(components=2), ("a", "b", "c"), seed=4)
    assert a.sample == 500
    assert np.array_equal(a.components, b.components) and np.array_equal(a.mean, b.mean)
    assert not np.array_equal(a.mean, c.mean)  # another seed, another sample


def test_pca_run_is_bitwise_the_same_on_one_and_two_threads(data_csv: Path, tmp_path: Path) -> None:
    with num_threads(1):
        one = run(data_csv, tmp_path / "one", "--pca", "3", "--threads", "1")
    with num_threads(2):
        two = run(data_csv, tmp_path / "two", "--pca", "3", "--threads", "2")
    assert read_json(one / "model.json")["pca"] == read_json(two / "model.json")["pca"]
    assert read_json(one / "model.json")["centroids"] == read_json(two / "model.json")["centroids"]
    assert pl.read_parquet(one / "segments.parquet").equals(pl.read_parquet(two / "segments.parquet"))


def test_sweep_and_k_auto_run_on_the_components(data_csv: Path, tmp_path: Path) -> None:
    result = invoke(["sweep", data_csv, "--spec", "marketing", "--k", "2..4", "--repeats", "1", "--pca", "3",
                     "--out", tmp_path / "sweep", "--quiet"])
    assert result.exit_code == 0, result.output
    sweep = read_json(tmp_path / "sweep" / "sweep.json")
    assert sweep["params"]["pca"]["components"] == 3 and sweep["recommended_k"] in (2, 3, 4)
    auto = invoke(["run", data_csv, "--spec", "marketing", "--k", "auto", "--k-range", "2..4", "--repeats", "1",
                   "--pca", "3", "--out", tmp_path / "auto", "--quiet"])
    assert auto.exit_code == 0, auto.output
    metrics = read_json(tmp_path / "auto" / "metrics.json")
    assert metrics["k"] == metrics["sweep"]["recommended_k"] and metrics["pca"]["components"] == 3
    assert len(read_json(tmp_path / "auto" / "model.json")["centroids"]["scaled"][0]) == 3


def test_a_spec_pca_table_is_used_and_the_flag_overrides_it(data_csv: Path, tmp_path: Path) -> None:
    builtin = (Path(load_spec.__code__.co_filename).parent / "specs" / "marketing.toml").read_text()
    spec = tmp_path / "pca.toml"
    spec.write_text(builtin.replace("[features]", "[pca]\ncomponents = 2\n\n[features]", 1))
    assert load_spec(spec).pca == PCASetting(components=2)
    result = invoke(["run", data_csv, "--spec", spec, "--k", "3", "--out", tmp_path / "a", "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "a" / "metrics.json")["pca"]["components"] == 2
    result = invoke(["run", data_csv, "--spec", spec, "--k", "3", "--pca", "4", "--out", tmp_path / "b", "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "b" / "metrics.json")["pca"]["components"] == 4


def test_a_model_without_pca_is_written_and_read_as_before(marketing_run: Path) -> None:
    data = read_json(marketing_run / "model.json")
    assert data["format_version"] == FORMAT_VERSION == 1
    assert "pca" not in data and "pca" not in data["spec"]
    model = load_model(marketing_run)
    assert model.pca is None and model.transform(np.ones((2, 10), np.float32)).shape == (2, 10)


def test_a_pca_model_is_validated_on_load(pca_run: Path, tmp_path: Path) -> None:
    model = read_json(pca_run / "model.json")
    broken = json.loads(json.dumps(model))
    broken["pca"]["components"][0][0] += 0.5  # no longer orthonormal
    (tmp_path / "a.json").write_text(json.dumps(broken))
    with pytest.raises(InputError, match="orthonormal"):
        load_model(tmp_path / "a.json")
    stripped = {k: v for k, v in model.items() if k != "pca"}
    (tmp_path / "b.json").write_text(json.dumps(stripped))
    with pytest.raises(InputError, match="pca"):
        load_model(tmp_path / "b.json")
    loaded = load_model(pca_run)
    assert isinstance(loaded.pca, PCA) and loaded.to_dict()["pca"] == model["pca"]


def test_report_shows_the_pca_section(pca_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = invoke(["report", pca_run, "--out", out])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "PCA before k-means" in text and "Loadings" in text and "pc1" in text


@pytest.mark.parametrize("value, expected", [("3", PCASetting(components=3)), (3, PCASetting(components=3)),
                                             ("0.9", PCASetting(variance=0.9)), (0.75, PCASetting(variance=0.75))])
def test_pca_option_values(value, expected) -> None:
    assert parse_pca_option(value) == expected


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "1.0", "0.0", "nan", "banana", "", True])
def test_bad_pca_option_values_name_the_value(value) -> None:
    with pytest.raises(InputError, match="--pca") as info:
        parse_pca_option(value)
    assert repr(value) in str(info.value)
