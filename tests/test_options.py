"""Typed run options bound to the CLI, the presentation rules, and the defects the architecture
review found (each test here failed before its fix)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import polars as pl
import pytest
from test_atomic import assert_disk_full_error, polars_enospc_for

import cli
import engine
from conftest import invoke, read_json
from engine import options as opt
from engine import present
from engine.errors import InputError

COMMANDS = {"run": (opt.RunOptions, cli.run), "sweep": (opt.SweepOptions, cli.sweep),
            "predict": (opt.PredictOptions, cli.predict)}


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_options_are_the_dataclass_fields_with_their_defaults(name: str) -> None:
    """Every CLI field of the command's option groups is a click option with the field's default
    and help: the default lives in engine/options.py only."""
    options_type, command = COMMANDS[name]
    params = {p.name: p for p in command.params}
    for group in opt.group_fields(options_type).values():
        for f in dataclasses.fields(group):
            if not f.metadata.get("cli", True):
                continue
            if (f.name == "stream" and name != "run") or (f.name == "cluster" and name == "sweep"):
                assert f.name not in params  # only segment run streams; run and predict take --cluster
                continue
            param = params[f.name]
            default = None if param.default is getattr(click.core, "UNSET", object()) else param.default
            assert param.help == f.metadata["help"], (name, f.name)
            expected = False if f.metadata.get("is_flag") else None if f.default == () else f.default
            assert default == expected, (name, f.name, default, f.default)
            assert param.required == f.metadata.get("required", False), (name, f.name)


def test_metrics_options_are_the_options_asdict(shared_run: Path) -> None:
    recorded = read_json(shared_run / "metrics.json")["options"]
    groups = opt.group_fields(opt.RunOptions)
    assert set(recorded) == set(groups)
    for name, group in groups.items():
        left_out = {"outputs": {"out", "overwrite"}, "input": {"stream", "cluster"}}.get(name, set())  # not what the model is
        keys = {f.name for f in dataclasses.fields(group)} - left_out
        assert set(recorded[name]) == keys, name
    assert recorded["fit"]["k"] == 4 and "customers" in recorded["features"]["spec"]
    assert read_json(shared_run / "model.json")["options"] == recorded


def test_engine_run_takes_typed_options_or_keywords(data_csv: Path, tmp_path: Path) -> None:
    typed = opt.RunOptions(input=opt.InputOptions(inputs=(str(data_csv),)),
                           features=opt.FeatureOptions(features="Income,Recency,MntWines"),
                           fit=opt.FitOptions(k=3, seed=2), outputs=opt.OutputOptions(out=str(tmp_path / "a")))
    a = engine.run(options=typed)
    b = engine.run([data_csv], 3, tmp_path / "b", features="Income,Recency,MntWines", seed=2)
    assert (tmp_path / "a" / "segments.parquet").read_bytes() == (tmp_path / "b" / "segments.parquet").read_bytes()
    assert a.metrics["options"]["fit"] == b.metrics["options"]["fit"]
    with pytest.raises(InputError, match="unknown option 'sed'"):
        engine.run([data_csv], 3, tmp_path / "c", features="Income", sed=2)


def test_engine_run_validates_a_preset_mapping(data_csv: Path, tmp_path: Path) -> None:
    """It raised TypeError: preset validation lived only in the CLI."""
    with pytest.raises(InputError, match="unknown key 'colour'"):
        engine.run([data_csv], 3, tmp_path / "r", preset={"customer": "ID", "date": "Dt_Customer",
                                                          "amount": "MntWines", "colour": "red"})
    with pytest.raises(InputError, match="needs --amount-col"):
        engine.run([data_csv], 3, tmp_path / "r", preset={"customer": "ID", "date": "Dt_Customer"})
    assert not (tmp_path / "r").exists()


def test_engine_exports_output_error_and_no_internal_error() -> None:
    from engine.errors import OutputError

    assert engine.OutputError is OutputError and "OutputError" in engine.__all__
    assert not hasattr(engine, "InternalError")


# ----------------------------------------------------------------------------- presentation

def test_present_numbers() -> None:
    assert present.number(12346, as_id=True) == "12346"
    assert present.number(12346) == "12,346"
    assert present.number(51.8) == "51.8" and present.number(258.0) == "258"
    assert present.number(4.4881, ratio=True) == "448.8%"
    assert present.number(None) == "-" and present.number(float("nan")) == "-"
    frame = pl.DataFrame({"ID": [12346], "customer_id": [1000], "size": [1204], "roi": [4.4881], "mean": [51.8]})
    assert present.cells(frame) == [["12346", "1000", "1,204", "448.8%", "51.8"]]


def test_ids_print_as_written_and_ratios_as_percentages_everywhere(marketing_run: Path, data_csv: Path) -> None:
    result = invoke(["sql", marketing_run, "SELECT ID, Income FROM customers WHERE ID = 10001"])
    assert result.exit_code == 0, result.output
    assert "10001" in result.output and "10,001" not in result.output
    profiles = invoke(["sql", marketing_run, "SELECT segment, share FROM profiles ORDER BY segment"])
    shares = pl.read_parquet(marketing_run / "profiles.parquet").sort("segment")["share"].to_list()
    for share in shares:
        assert f"{share:.1%}" in profiles.output
    impact = invoke(["impact", marketing_run])
    roi = pl.read_parquet(marketing_run / "impact.parquet").filter(pl.col("scope") == "segment")["roi"].to_list()
    for value in roi:
        assert f"{value:.1%}" in impact.output, impact.output
    described = invoke(["describe", data_csv, "--columns", "ID,Income"])
    assert "11,191" not in described.output and "11191" in described.output


# ----------------------------------------------------------------------------- defects

def test_the_cli_prints_the_files_it_wrote(data_csv: Path, tmp_path: Path) -> None:
    """The hard-coded list omitted sweep_chart.json."""
    out = tmp_path / "auto"
    result = invoke(["run", data_csv, "--features", "Income,Recency,MntWines", "--k", "auto", "--k-range", "2..4",
                     "--repeats", "0", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    line = [ln for ln in result.output.splitlines() if ln.startswith(f"wrote {out}/")][0]
    listed = {name.strip() for name in line.split(":", 1)[1].split(",")}
    assert listed == {p.name for p in out.iterdir()}
    assert "sweep_chart.json" in listed


def test_sweep_silhouette_sample_zero_skips_the_silhouette(data_csv: Path, tmp_path: Path) -> None:
    """It became 10,000, while run treats 0 as 'skip'."""
    result = invoke(["sweep", data_csv, "--features", "Income,Recency,MntWines", "--k", "2..3", "--repeats", "1",
                     "--silhouette-sample", "0", "--out", tmp_path / "s", "--quiet"])
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(tmp_path / "s" / "sweep.parquet")
    assert table["silhouette"].null_count() == table.height
    assert table["stability"].null_count() == 0  # still measured
    run = invoke(["run", data_csv, "--features", "Income,Recency,MntWines", "--k", "3", "--silhouette-sample", "0",
                  "--out", tmp_path / "r", "--quiet", "--json"])
    assert run.exit_code == 0 and read_json(tmp_path / "r" / "metrics.json")["silhouette"] is None


@pytest.mark.parametrize("name", ["sweep.parquet", "projection.parquet", "impact.parquet"])
def test_a_full_disk_writing_any_parquet_output_is_one_line(name: str, marketing_run: Path, data_csv: Path,
                                                           tmp_path: Path, monkeypatch) -> None:
    """These writes bypassed the disk-full translation: a full disk showed as an internal error."""
    monkeypatch.setattr(pl.DataFrame, "write_parquet", polars_enospc_for(name, pl.DataFrame.write_parquet))
    out = tmp_path / "run"
    args = ["run", data_csv, "--spec", "marketing", "--k", "3", "--out", out, "--quiet"]
    if name == "sweep.parquet":
        args[5] = "auto"
        args += ["--k-range", "2..3", "--repeats", "0"]
    result = invoke(args)
    assert_disk_full_error(result, out)
    assert not out.exists()
    if name == "impact.parquet":  # and segment impact --out
        target = tmp_path / "impact.parquet"
        result = invoke(["impact", marketing_run, "--out", target])
        assert_disk_full_error(result, target)
        assert not target.exists()


def test_predict_memory_estimate_counts_one_hot_levels_not_dropped_features(tmp_path: Path, monkeypatch) -> None:
    """It computed the one-hot count as fitted names minus spec features: negative when a constant
    feature was dropped."""
    import engine.api

    data = tmp_path / "c.csv"
    pl.DataFrame({"id": range(200), "a": [float(i % 7) for i in range(200)], "b": [1.0] * 200,
                  "c": [float(i % 5) for i in range(200)]}).write_csv(data)
    run = engine.run([data], 2, tmp_path / "run", features="a,b,c")
    assert len(run.model.fitted.names) < len(run.model.spec.features)  # the constant b was dropped
    seen = []
    real = engine.api.check_memory
    monkeypatch.setattr(engine.api, "check_memory", lambda inp, n, hot, limit: seen.append((n, hot)) or real(inp, n, hot, limit))
    engine.predict(tmp_path / "run", [data], tmp_path / "p.parquet")
    assert seen == [(3, 0)]
