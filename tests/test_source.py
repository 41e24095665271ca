"""engine.input.files: opening Parquet files, directories, globs and CSV with a sniffed separator."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from engine.errors import InputError
from engine.input.files import open_input, sniff_separator

FRAME = pl.DataFrame({"id": [1, 2, 3], "a": [1.5, 2.5, 3.5], "b": [10, 20, 30]})


def test_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    FRAME.write_parquet(path)
    inp = open_input([path])
    assert inp.format == "parquet"
    assert inp.files == (path,)
    assert str(path) in inp.label
    assert isinstance(inp.frame, pl.LazyFrame)
    assert inp.frame.collect().equals(FRAME)


def test_parquet_directory_reads_every_file_in_order(tmp_path: Path) -> None:
    d = tmp_path / "parts"
    d.mkdir()
    FRAME.head(2).write_parquet(d / "part-0.parquet")
    FRAME.tail(1).write_parquet(d / "part-1.parquet")
    (d / "README.md").write_text("not data")
    inp = open_input([d])
    assert inp.format == "parquet"
    assert [p.name for p in inp.files] == ["part-0.parquet", "part-1.parquet"]
    assert inp.frame.collect().equals(FRAME)


def test_parquet_glob(tmp_path: Path) -> None:
    FRAME.head(1).write_parquet(tmp_path / "a.parquet")
    FRAME.slice(1, 2).write_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.csv").write_text("id,a,b\n9,9,9\n")
    inp = open_input([str(tmp_path / "*.parquet")])
    assert len(inp.files) == 2
    assert inp.frame.collect().equals(FRAME)


def test_glob_matching_nothing_is_an_input_error(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing-*.parquet")
    with pytest.raises(InputError, match="nothing-"):
        open_input([pattern])


def test_several_inputs_are_concatenated(tmp_path: Path) -> None:
    FRAME.head(2).write_parquet(tmp_path / "one.parquet")
    FRAME.tail(1).write_parquet(tmp_path / "two.parquet")
    inp = open_input([tmp_path / "one.parquet", tmp_path / "two.parquet"])
    assert inp.frame.collect().equals(FRAME)
    assert "(+1 more)" in inp.label


@pytest.mark.parametrize("sep", ["\t", ",", ";"])
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".txt"])
def test_csv_separator_is_sniffed(tmp_path: Path, sep: str, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    FRAME.write_csv(path, separator=sep)
    assert sniff_separator(path) == sep
    inp = open_input([path])
    assert inp.format == "csv"
    assert inp.separator == sep
    assert inp.frame.collect().equals(FRAME)


def test_csv_with_decimal_commas_in_text_still_sniffs_semicolon(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv"
    path.write_text('id;name;a\n1;"Smith, J";1\n2;"Doe, A";2\n3;"Roe, B";3\n')
    assert sniff_separator(path) == ";"
    frame = open_input([path]).frame.collect()
    assert frame.columns == ["id", "name", "a"]
    assert frame["name"].to_list() == ["Smith, J", "Doe, A", "Roe, B"]


def test_explicit_separator_wins(tmp_path: Path) -> None:
    path = tmp_path / "pipe.csv"
    FRAME.write_csv(path, separator="|")
    inp = open_input([path], separator="|")
    assert inp.separator == "|"
    assert inp.frame.collect().equals(FRAME)


def test_shared_dataset_is_tab_separated(data_csv: Path) -> None:
    inp = open_input([data_csv])
    assert inp.format == "csv"
    assert inp.separator == "\t"
    schema = inp.schema()
    assert "ID" in schema and "Income" in schema and len(schema) == 29
    assert inp.frame.select(pl.len()).collect().item() == 2240
    assert inp.frame.select(pl.col("Income").null_count()).collect().item() == 24


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "no-such-file.parquet"
    with pytest.raises(InputError, match="no-such-file.parquet"):
        open_input([path])


def test_no_inputs_is_an_input_error() -> None:
    with pytest.raises(InputError):
        open_input([])


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet", "empty.dat"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as info:
        open_input([path])
    assert name in str(info.value)


def test_whitespace_only_csv_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n   \n")
    with pytest.raises(InputError, match="blank.csv"):
        open_input([path])


def test_binary_junk_with_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "junk.bin"
    path.write_bytes(os.urandom(4096).replace(b"PAR1", b"XXXX"))
    with pytest.raises(InputError, match="junk.bin"):
        open_input([path])


def test_binary_junk_with_csv_suffix(tmp_path: Path) -> None:
    path = tmp_path / "junk.csv"
    path.write_bytes(b"\x00\x01\x02garbage\x00" * 100)
    with pytest.raises(InputError, match="junk.csv"):
        open_input([path])


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(InputError, match="corrupt.parquet"):
        open_input([path])


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    FRAME.write_parquet(good)
    bad = tmp_path / "truncated.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated.parquet"):
        open_input([bad])


def test_parquet_without_suffix_is_detected_by_magic(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    FRAME.write_parquet(path)
    inp = open_input([path])
    assert inp.format == "parquet"
    assert inp.frame.collect().equals(FRAME)


def test_mixing_parquet_and_csv_is_an_input_error(tmp_path: Path) -> None:
    FRAME.write_parquet(tmp_path / "a.parquet")
    FRAME.write_csv(tmp_path / "b.csv")
    with pytest.raises(InputError, match="mix"):
        open_input([tmp_path / "a.parquet", tmp_path / "b.csv"])


def test_parquet_files_with_different_columns_are_an_input_error(tmp_path: Path) -> None:
    FRAME.write_parquet(tmp_path / "a.parquet")
    FRAME.drop("b").write_parquet(tmp_path / "b.parquet")
    from engine.features.build import build_features
    from engine.features.spec import FeatureSpec

    with pytest.raises(InputError):  # at open or at the latest when read: never a raw Polars error
        build_features(open_input([tmp_path / "a.parquet", tmp_path / "b.parquet"]), FeatureSpec())


def test_directory_without_data_files(tmp_path: Path) -> None:
    d = tmp_path / "nodata"
    d.mkdir()
    (d / "notes.md").write_text("hello")
    with pytest.raises(InputError, match="nodata"):
        open_input([d])
