"""Robustness: every command rejects bad input with one clean `Error: ...` line and exit code 2.

Each case in ``CASES`` builds its bad input under a fresh tmp directory, runs the CLI in-process
and checks: exit code 2; exactly one `Error:` line (the only line on stderr with --quiet, apart from
click's usage hint for its own option checks), nothing on stdout, no traceback; the message names
the file, column, value or option; and the tmp tree (names, sizes, mtimes, bytes), the shared run,
the generated Parquet and the shared CSV are unchanged, with no hidden `.name.tmp-*` siblings.

Messages printed (from a real run; <tmp> is the case's directory, <csv> marketing_campaign.csv,
<run> the shared run; "run+predict" means both commands print the same line). BUG marks a
line that the tests below expect to differ.

Input files (run+predict)
  path does not exist         Error: input not found: <tmp>/nope.parquet
  PNG bytes, .bin suffix      Error: <tmp>/image.bin: not a Parquet or CSV file (use a .parquet, .csv or .tsv name)
  random bytes, .parquet      Error: <tmp>/random.parquet: not a readable Parquet file (Parquet magic bytes not
                              found in footer. Either the file is corrupted or this is not a parquet file.)
  truncated Parquet           Error: <tmp>/truncated.parquet: not a readable Parquet file (Parquet magic bytes not
                              found in footer. Either the file is corrupted or this is not a parquet file.)
  empty .csv / .parquet       Error: input file is empty: <tmp>/empty.csv   (resp. <tmp>/empty.parquet)
  header-only CSV (BUG)       Error: <tmp>/header.csv: column 'Year_Birth' used by feature 'age' is String, not
                              numeric (list it in numeric = [...] to parse text numbers, or one-hot it under
                              [categorical])          -- expected: "<tmp>/header.csv: no rows"
  schemas: extra column       Error: <tmp>/parts/part-1.parquet: columns differ from <tmp>/parts/part-0.parquet
  (directory or glob)         (extra); all input files must have the same schema
  schemas: int32 vs float64   Error: <tmp>/parts/part-1.parquet: column 'Income' is int32 here but double in
                              <tmp>/parts/part-0.parquet; all input files must have the same schema
Rows and values (run)
  only feature blank in every CSV row, --missing drop (BUG)
                              Error: <tmp>/blank.csv: column 'a' used by feature 'a' is String, not numeric (list
                              it in numeric = [...] ...)   -- expected: "feature 'a' has no values"
  zero rows left after drop   Error: <tmp>/small.parquet: no rows left after dropping rows with missing values
                              (see missing = median)
  feature entirely null       Error: <tmp>/small.parquet: feature 'b' has no values (all 6 rows are missing or not
  (drop or median)            finite)
  --features Incme            Error: <csv>: feature 'Incme' uses unknown column 'Incme' (did you mean 'Income'?)
  --features Education        Error: <csv>: column 'Education' used by feature 'Education' is String, not numeric
                              (list it in numeric = [...] to parse text numbers, or one-hot it under [categorical])
  a constant feature          exit 0; stderr "warning: constant feature(s) dropped: c"; metrics.json warnings
                              ["constant feature(s) dropped: c"]; model.json fitted.dropped ["c"]
  every feature constant      Error: <tmp>/small.parquet: every feature is constant; nothing to segment on
  NaN/inf, --missing drop     exit 0; those rows get null segment and distance; metrics.json non_finite {"a": 3},
                              missing {"a": 3}, rows_dropped 3
  NaN/inf, --missing error    Error: <tmp>/small.parquet: missing values in feature(s) a (3) (use missing = drop or
                              median)
Ids
  --id-col nope               Error: <csv>: id column 'nope' not found (did you mean 'Income'?)
  --id-col IDs                Error: <csv>: id column 'IDs' not found (did you mean 'ID'?)
  duplicated ids (run;        Error: <tmp>/small.parquet: id column 'ID' has 1 duplicated values (e.g. 3); fix the
  predict alike)              input or pass --allow-duplicate-ids     (with the flag: exit 0, run and predict)
  null ids (run;              Error: <tmp>/small.parquet: id column 'ID' has 1 missing values
  predict alike)
Options
  --k 0 / --k -1              Error: --k must be at least 1, not 0   (resp. not -1)
  k above distinct rows       Error: k=3 is larger than the number of distinct rows in the data
  --silhouette-sample 100     exit 0; metrics.json silhouette_sample 6 (the row count) and warnings
  on 6 rows (BUG)             ["--silhouette-sample 100 clamped to the 6 rows available"]; nothing on stderr
                              -- expected: the same "warning: ..." line on stderr
  --threads 0 (run+predict)   Error: --threads must be at least 1, not 0
  --memory-limit 1MB          Error: <csv>: 2,238 rows x 11 features need about 400.7 MiB of memory, but only
                              976.6 KiB is available (use fewer rows or features, or a larger --memory-limit)
                              (predict; run streams instead, and refuses only what cannot stream: --k auto)
  --memory-limit banana       Error: --memory-limit: cannot read 'banana' as a size (use e.g. 8GiB or 500MB)
Spec TOML
  syntax error                Error: <tmp>/syntax.toml: TOML syntax error: Invalid value (at line 3, column 7)
  scael = "robust"            Error: <tmp>/typo.toml: unknown key 'scael' (did you mean 'scale'?)
  x = "Incme * 2"             Error: <csv>: feature 'x' uses unknown column 'Incme' (did you mean 'Income'?)
  x = "Income +* 2"           Error: <csv>: feature 'x': cannot parse 'Income +* 2': unable to parse 'Income +* 2'
                              as Expr
Outputs
  run --out file.txt          Error: output <tmp>/file.txt exists and is a file, not a directory
  run dir exists              Error: output <tmp>/out already exists (use --overwrite to replace it)
  --overwrite, not a run dir  Error: output <tmp>/out is not a segment run directory (no model.json); refusing to
                              replace it
  run --out . (+--overwrite)  Error: output . is the working directory or one of its parents; name a new directory
  predict/generate --out .    Error: Invalid value for '--out': File '.' is a directory.   (after click's usage hint)
  run out in input dir        Error: output <tmp>/inputs/run is inside input directory <tmp>/inputs; write it
                              somewhere else
  predict out in input dir    exit 0, writes <tmp>/inputs/pred.parquet  -- expected: refused like run
  (BUG)
  predict --out INPUT         exit 0, replaces the input with the predictions  -- expected: refused
  --overwrite (BUG)
  predict out exists          Error: output <tmp>/pred.parquet already exists (use --overwrite to replace it)
  generate out exists         Error: output <tmp>/g.parquet already exists (use --overwrite to replace it)
  out in a missing directory  Error: cannot write <tmp>/nodir/p.parquet: directory <tmp>/nodir does not exist
  (predict, generate)         (generate: <tmp>/nodir/g.parquet)
Models (predict)
  model not found             Error: model not found: <tmp>/no-run
  truncated JSON              Error: <tmp>/half.json: not a valid model file: Expecting value: line 112 column 4
                              (char 2000)
  binary junk                 Error: <tmp>/junk.json: not a valid model file: 'utf-8' codec can't decode byte 0xcd
                              in position 0: invalid continuation byte
  format_version 99           Error: <tmp>/v99.json: model format version 99 is not supported (this engine reads
                              versions 1 and 2)
  centroids of wrong width    Error: <tmp>/shape.json: every centroid must have 11 values (one per feature or
                              component)
  "k": true                   Error: <tmp>/ktrue.json: k=True does not match the 4 centroids
  scaler scale 0              Error: <tmp>/scale0.json: model scaler scales must be positive
  NaN literal                 Error: <tmp>/nan.json: not a valid model file: NaN is not allowed in a model file
  "centroids": [1, 2]         Error: <tmp>/flat.json: centroids must be an object with a "scaled" list
  "spec": []                  Error: <tmp>/speclist.json: model feature spec must be an object
  input lacks Income          Error: <tmp>/no-income.parquet: feature 'income' uses unknown column 'Income'
Generate
  --rows 0                    Error: rows must be at least 1, got 0
  --segments 0                Error: segments must be at least 1, got 0
  --spread 0                  Error: spread must be a positive finite number, got 0.0
PCA (run; sweep alike)
  --pca 0 / --pca 1.5         Error: --pca must be a whole number of components (1 or more) or a share of variance
                              between 0 and 1 (such as 0.9), not '0'   (resp. not '1.5')
  --pca 11, 10 features       Error: --pca 11: more components than the 10 features (age, income, spending, ...)
  [pca] variance = 1.5        Error: <tmp>/pca.toml: [pca] variance must be a share between 0 and 1 (such as
                              0.9), not 1.5
Explain, refresh, compare
  explain --depth 0           Error: --depth must be a whole number from 1 to 12, not 0
  explain --min-share 0.7     Error: --min-share must be a share from 0 up to 0.5, not 0.7
  a run without a model       Error: <tmp>/nomodel is not a segment run directory (model.json is missing)
  (explain, refresh, compare)
  refresh --spec marketing    Error: built-in spec 'marketing' defines other features than the run's model
  on a customers run          (catalog_purchases, deal_purchases, ... differ); a refresh keeps the run's features:
                              segment the new period with segment run, then segment compare the two runs
  refresh: repeated ids       Error: <tmp>/dupes.parquet: id column 'ID' has repeated values (e.g. 5524); a
                              migration matches each customer once
  refresh: INPUT lacks ID     Error: <tmp>/noid.parquet: id column 'ID' not found
  compare: repeated ids       Error: run A (<tmp>/dupe-run): id column 'ID' has repeated values (e.g. 3); a
                              migration matches each customer once
  compare: no id column       Error: run A (<tmp>/rowid-run): the run has no id column (segments are keyed by row
                              number); migration joins customers by id: give the runs an id column (--id-col)
Internal error (fit_kmeans patched to raise RuntimeError("boom"))
  exit 1                      Error: internal error: boom (run `segment --debug ...` for the traceback)
  segment --debug run ...     the traceback (ending "RuntimeError: boom"), then the same Error line; exit 1
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from conftest import invoke, leftovers, read_json

TEMP_SIBLING = re.compile(r"^\..+\.(tmp|old)-")
USAGE_HINT = re.compile(r"^(Usage: main \w+ \[OPTIONS\]|Try 'main \w+ (-h|--help)' for help\.$)")


# ----------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Ctx:
    """Where a case builds its files: ``tmp`` (also the working directory is ``tmp/cwd``)."""

    tmp: Path
    csv: Path
    gen: Path  # 5,000 synthetic customers (Parquet)
    run: Path  # a run of the shared CSV with --spec customers, k=4

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    @property
    def pred(self) -> Path:
        return self.tmp / "pred.parquet"


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ctx], list]  # writes the bad input under ctx.tmp; returns the CLI arguments
    names: tuple[str, ...]  # what the message must name (file, column, value or option)
    precious: str | None = None  # an existing output (relative to tmp) whose bytes must survive


def frame(**columns) -> pl.DataFrame:
    return pl.DataFrame(columns)


def write(path: Path, data: bytes | str | pl.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, pl.DataFrame):
        data.write_parquet(path)
    elif isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def junk(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


SMALL = dict(ID=[1, 2, 3, 4, 5, 6], a=[1.0, 2.0, 3.0, 10.0, 11.0, 12.0], b=[5.0, 1.0, 4.0, 2.0, 6.0, 3.0])


def run_args(inp, ctx: Ctx, *extra) -> list:
    return ["run", inp, "--k", "2", "--out", ctx.out, "--quiet", *extra]


def predict_args(inp, ctx: Ctx, *extra) -> list:
    return ["predict", ctx.run, inp, "--out", ctx.pred, "--quiet", *extra]


# Bad input files: each is tried with `run` and with `predict`.
def missing_path(ctx):
    return ctx.tmp / "nope.parquet"


def png_bin(ctx):
    return write(ctx.tmp / "image.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + junk(2000))


def random_parquet(ctx):
    return write(ctx.tmp / "random.parquet", junk(4096))


def truncated_parquet(ctx):
    path = write(ctx.tmp / "truncated.parquet", pl.read_parquet(ctx.gen).head(500))
    data = path.read_bytes()
    return write(path, data[:-100])


def empty_csv(ctx):
    return write(ctx.tmp / "empty.csv", b"")


def empty_parquet(ctx):
    return write(ctx.tmp / "empty.parquet", b"")


def header_only_csv(ctx):
    header = ctx.csv.read_text(encoding="utf-8").splitlines()[0]
    return write(ctx.tmp / "header.csv", header + "\n")


def parts(ctx, second: pl.DataFrame) -> Path:
    base = frame(ID=[1, 2, 3], Income=[1.0, 2.0, 3.0], Recency=[5, 6, 7])
    write(ctx.tmp / "parts" / "part-0.parquet", base)
    write(ctx.tmp / "parts" / "part-1.parquet", second)
    return ctx.tmp / "parts"


def extra_column_dir(ctx):
    return parts(ctx, frame(ID=[4, 5], Income=[4.0, 5.0], Recency=[8, 9], extra=[0, 1]))


def extra_column_glob(ctx):
    return str(extra_column_dir(ctx)) + "/*.parquet"


def int32_vs_float64(ctx):
    return parts(ctx, frame(ID=[4, 5], Income=pl.Series([4, 5], dtype=pl.Int32), Recency=[8, 9]))


INPUT_FILES = [
    ("missing-path", missing_path, ("nope.parquet",)),
    ("png-with-bin-suffix", png_bin, ("image.bin",)),
    ("random-bytes-parquet", random_parquet, ("random.parquet",)),
    ("truncated-parquet", truncated_parquet, ("truncated.parquet",)),
    ("empty-csv", empty_csv, ("empty.csv",)),
    ("empty-parquet", empty_parquet, ("empty.parquet",)),
    ("header-only-csv", header_only_csv, ("header.csv", "no rows")),
    ("schemas-extra-column-dir", extra_column_dir, ("part-1.parquet", "extra")),
    ("schemas-extra-column-glob", extra_column_glob, ("part-1.parquet", "extra")),
    ("schemas-int32-vs-float64", int32_vs_float64, ("part-1.parquet", "Income")),
]

CASES: list[Case] = []
for _id, _make, _names in INPUT_FILES:
    CASES.append(Case(f"run:{_id}", lambda c, m=_make: run_args(m(c), c, "--spec", "customers"), _names))
    CASES.append(Case(f"predict:{_id}", lambda c, m=_make: predict_args(m(c), c), _names))


def small(ctx, name="small.parquet", **columns) -> Path:
    return write(ctx.tmp / name, frame(**{**SMALL, **columns}))


def model_with(ctx, name: str, change: Callable[[dict], object]) -> Path:
    """The shared run's model.json with one field changed, written to tmp/NAME."""
    model = json.loads((ctx.run / "model.json").read_text())
    change(model)
    return write(ctx.tmp / name, json.dumps(model))


def set_in(path: list, value) -> Callable[[dict], None]:
    def change(model: dict) -> None:
        node = model
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def drop_last_column(model: dict) -> None:
    model["centroids"]["scaled"] = [row[:-1] for row in model["centroids"]["scaled"]]


def spec_file(ctx, name: str, text: str) -> Path:
    return write(ctx.tmp / name, text)


def out_dir_with(ctx, files: dict[str, str]) -> Path:
    for name, text in files.items():
        write(ctx.out / name, text)
    return ctx.out


CASES += [
    # --- rows and values
    Case("run:only-feature-blank-everywhere-drop",
         lambda c: run_args(write(c.tmp / "blank.csv", "ID,a,b\n1,,x\n2,,y\n3,,z\n"), c,
                            "--features", "a", "--missing", "drop"), ("blank.csv", "'a'", "no values")),
    Case("run:zero-rows-left-after-drop",
         lambda c: run_args(small(c, a=[1.0, None, 3.0, None, 5.0, None], b=[None, 2.0, None, 4.0, None, 6.0]), c,
                            "--features", "a,b", "--missing", "drop"), ("small.parquet", "no rows left")),
    Case("run:feature-entirely-null",
         lambda c: run_args(small(c, b=pl.Series([None] * 6, dtype=pl.Float64)), c, "--features", "a,b"),
         ("small.parquet", "'b'")),
    Case("run:feature-entirely-null-median",
         lambda c: run_args(small(c, b=pl.Series([None] * 6, dtype=pl.Float64)), c, "--features", "a,b",
                            "--missing", "median"), ("small.parquet", "'b'")),
    # --- feature columns
    Case("run:feature-missing-suggests", lambda c: run_args(c.csv, c, "--features", "Incme,Recency"),
         ("Incme", "Income")),
    Case("run:feature-not-numeric", lambda c: run_args(c.csv, c, "--features", "Income,Education"),
         ("Education",)),
    Case("run:every-feature-constant",
         lambda c: run_args(small(c, a=[7.0] * 6, b=[1.0] * 6), c, "--features", "a,b"),
         ("small.parquet", "constant")),
    Case("run:nan-inf-with-missing-error",
         lambda c: run_args(small(c, a=[1.0, float("nan"), float("inf"), float("-inf"), 5.0, 6.0]), c,
                            "--features", "a,b", "--missing", "error"), ("small.parquet", "a (3)")),
    # --- ids
    Case("run:id-col-missing", lambda c: run_args(c.csv, c, "--spec", "customers", "--id-col", "nope"), ("nope",)),
    Case("run:id-col-missing-suggests", lambda c: run_args(c.csv, c, "--spec", "customers", "--id-col", "IDs"),
         ("IDs", "'ID'")),
    Case("run:duplicate-ids", lambda c: run_args(small(c, ID=[1, 2, 3, 3, 5, 6]), c, "--features", "a,b"),
         ("small.parquet", "'ID'", "--allow-duplicate-ids")),
    Case("run:null-ids", lambda c: run_args(small(c, ID=[1, 2, None, 4, 5, 6]), c, "--features", "a,b"),
         ("small.parquet", "'ID'")),
    Case("predict:null-ids",
         lambda c: predict_args(write(c.tmp / "nullids.parquet", pl.read_parquet(c.gen).head(50).with_columns(
             pl.when(pl.col("ID") == 3).then(None).otherwise(pl.col("ID")).alias("ID"))), c),
         ("nullids.parquet", "'ID'", "missing")),
    Case("predict:duplicate-ids",
         lambda c: predict_args(write(c.tmp / "dupes.parquet",
                                      pl.read_parquet(c.gen).head(50).with_columns(pl.lit(7).alias("ID"))), c),
         ("dupes.parquet", "'ID'", "--allow-duplicate-ids")),
    # --- k and sizes
    Case("run:k-0", lambda c: ["run", c.csv, "--spec", "customers", "--k", "0", "--out", c.out, "--quiet"],
         ("--k", "0")),
    Case("run:k-negative", lambda c: ["run", c.csv, "--spec", "customers", "--k", "-1", "--out", c.out, "--quiet"],
         ("--k", "-1")),
    Case("run:k-above-distinct-rows",
         lambda c: ["run", small(c, ID=[1, 2, 3, 4, 5], a=[1.0, 1.0, 2.0, 2.0, 1.0], b=[0.0, 0.0, 5.0, 5.0, 0.0]),
                    "--features", "a,b", "--k", "3", "--out", c.out, "--quiet"], ("k=3", "distinct")),
    Case("run:threads-0", lambda c: run_args(c.csv, c, "--spec", "customers", "--threads", "0"),
         ("--threads", "0")),
    Case("predict:threads-0", lambda c: predict_args(c.csv, c, "--threads", "0"), ("--threads", "0")),
    # --- spec files
    Case("run:spec-toml-syntax-error",
         lambda c: run_args(c.csv, c, "--spec", spec_file(c, "syntax.toml", 'id = "ID"\n[features]\nage = \n')),
         ("syntax.toml", "line 3")),
    Case("run:spec-unknown-key",
         lambda c: run_args(c.csv, c, "--spec", spec_file(c, "typo.toml", 'scael = "robust"\n')),
         ("typo.toml", "scael", "'scale'")),
    Case("run:spec-expression-unknown-column",
         lambda c: run_args(c.csv, c, "--spec", spec_file(c, "unknown.toml", '[features]\nx = "Incme * 2"\n')),
         ("Incme", "'Income'")),
    Case("run:spec-expression-does-not-parse",
         lambda c: run_args(c.csv, c, "--spec", spec_file(c, "parse.toml", '[features]\nx = "Income +* 2"\n')),
         ("'x'", "Income +* 2")),
    # --- outputs
    Case("run:out-is-a-file",
         lambda c: ["run", c.csv, "--spec", "customers", "--k", "2", "--out", write(c.tmp / "file.txt", "keep me"),
                    "--quiet"], ("file.txt",), precious="file.txt"),
    Case("run:out-dir-exists-no-overwrite",
         lambda c: ["run", c.csv, "--spec", "customers", "--k", "2", "--quiet",
                    "--out", out_dir_with(c, {"model.json": "{}", "metrics.json": "{}"})], ("out", "--overwrite"),
         precious="out/model.json"),
    Case("run:overwrite-non-run-dir",
         lambda c: ["run", c.csv, "--spec", "customers", "--k", "2", "--quiet", "--overwrite",
                    "--out", out_dir_with(c, {"thesis.tex": "years of work", "data/notes.txt": "more"})],
         ("out", "not a segment run or sweep directory"), precious="out/thesis.tex"),
    Case("run:out-dot", lambda c: ["run", c.csv, "--spec", "customers", "--k", "2", "--out", ".", "--quiet"],
         ("output .", "working directory")),
    Case("run:out-dot-overwrite",
         lambda c: ["run", c.csv, "--spec", "customers", "--k", "2", "--out", ".", "--quiet", "--overwrite"],
         ("output .", "working directory")),
    Case("run:out-inside-input-dir",
         lambda c: ["run", small(c, "inputs/data.parquet").parent, "--features", "a,b", "--k", "2", "--quiet",
                    "--out", c.tmp / "inputs" / "run"], ("inputs/run", "input directory")),
    Case("predict:out-inside-input-dir",
         lambda c: ["predict", c.run, write(c.tmp / "inputs" / "data.parquet", pl.read_parquet(c.gen).head(50)).parent,
                    "--out", c.tmp / "inputs" / "pred.parquet", "--quiet"], ("inputs/pred.parquet", "input")),
    Case("predict:out-is-its-input-overwrite",
         lambda c: ["predict", c.run, write(c.tmp / "data.parquet", pl.read_parquet(c.gen).head(50)),
                    "--out", c.tmp / "data.parquet", "--overwrite", "--quiet"], ("data.parquet", "input"),
         precious="data.parquet"),
    Case("predict:out-exists-no-overwrite",
         lambda c: ["predict", c.run, c.csv, "--out", write(c.pred, b"previous bytes"), "--quiet"],
         ("pred.parquet", "--overwrite"), precious="pred.parquet"),
    Case("predict:out-dot", lambda c: ["predict", c.run, c.csv, "--out", ".", "--quiet"], ("output .", "working directory")),
    Case("predict:out-in-missing-dir",
         lambda c: ["predict", c.run, c.csv, "--out", c.tmp / "nodir" / "p.parquet", "--quiet"], ("nodir",)),
    # --- predict: models
    Case("predict:model-missing", lambda c: ["predict", c.tmp / "no-run", c.csv, "--out", c.pred, "--quiet"],
         ("no-run",)),
    Case("predict:model-truncated-json",
         lambda c: ["predict", write(c.tmp / "half.json", (c.run / "model.json").read_text()[:2000]), c.csv,
                    "--out", c.pred, "--quiet"], ("half.json",)),
    Case("predict:model-binary-junk",
         lambda c: ["predict", write(c.tmp / "junk.json", junk(3000)), c.csv, "--out", c.pred, "--quiet"],
         ("junk.json",)),
    Case("predict:model-format-version-99",
         lambda c: ["predict", model_with(c, "v99.json", set_in(["format_version"], 99)), c.csv,
                    "--out", c.pred, "--quiet"], ("v99.json", "99")),
    Case("predict:model-centroids-wrong-shape",
         lambda c: ["predict", model_with(c, "shape.json", drop_last_column), c.csv, "--out", c.pred, "--quiet"],
         ("shape.json", "centroid")),
    Case("predict:model-k-true",
         lambda c: ["predict", model_with(c, "ktrue.json", set_in(["k"], True)), c.csv, "--out", c.pred, "--quiet"],
         ("ktrue.json", "k=True")),
    Case("predict:model-scale-0",
         lambda c: ["predict", model_with(c, "scale0.json", set_in(["fitted", "scaler", "scale", 0], 0)), c.csv,
                    "--out", c.pred, "--quiet"], ("scale0.json", "scale")),
    Case("predict:model-nan-literal",
         lambda c: ["predict", model_with(c, "nan.json", set_in(["centroids", "scaled", 0, 0], float("nan"))),
                    c.csv, "--out", c.pred, "--quiet"], ("nan.json", "NaN")),
    Case("predict:model-centroids-flat-list",
         lambda c: ["predict", model_with(c, "flat.json", set_in(["centroids"], [1, 2])), c.csv,
                    "--out", c.pred, "--quiet"], ("flat.json", "centroids")),
    Case("predict:model-spec-is-a-list",
         lambda c: ["predict", model_with(c, "speclist.json", set_in(["spec"], [])), c.csv,
                    "--out", c.pred, "--quiet"], ("speclist.json", "spec")),
    Case("predict:input-lacks-a-model-feature",
         lambda c: predict_args(write(c.tmp / "no-income.parquet", pl.read_parquet(c.gen).drop("Income")), c),
         ("no-income.parquet", "Income")),
    # --- generate
    Case("generate:rows-0", lambda c: ["generate", "--rows", "0", "--out", c.tmp / "g.parquet", "--quiet"],
         ("rows", "0")),
    Case("generate:segments-0",
         lambda c: ["generate", "--rows", "10", "--segments", "0", "--out", c.tmp / "g.parquet", "--quiet"],
         ("segments", "0")),
    Case("generate:spread-0",
         lambda c: ["generate", "--rows", "10", "--spread", "0", "--out", c.tmp / "g.parquet", "--quiet"],
         ("spread", "0")),
    Case("generate:out-in-missing-dir",
         lambda c: ["generate", "--rows", "10", "--out", c.tmp / "nodir" / "g.parquet", "--quiet"], ("nodir",)),
    Case("generate:out-exists-no-overwrite",
         lambda c: ["generate", "--rows", "10", "--out", write(c.tmp / "g.parquet", b"previous bytes"), "--quiet"],
         ("g.parquet", "--overwrite"), precious="g.parquet"),
    Case("generate:out-dot", lambda c: ["generate", "--rows", "10", "--out", ".", "--quiet"], ("'.'",)),
    # --- memory
    Case("run:memory-limit-1MB", lambda c: ["run", c.csv, "--k", "auto", "--out", c.out, "--quiet", "--spec",
                                            "customers", "--memory-limit", "1MB"],
         ("cannot stream", "--k auto", "--memory-limit")),  # a run that fits no limit streams, but --k auto cannot
    Case("run:memory-limit-banana", lambda c: run_args(c.csv, c, "--spec", "customers", "--memory-limit", "banana"),
         ("--memory-limit", "banana")),
    Case("predict:memory-limit-1MB", lambda c: predict_args(c.csv, c, "--memory-limit", "1MB"),
         ("need about", "--memory-limit")),
]


def run_copy_without_model(ctx) -> Path:
    """The shared run's files but model.json, in tmp/nomodel."""
    target = ctx.tmp / "nomodel"
    target.mkdir()
    for path in ctx.run.iterdir():
        if path.is_file() and path.name != "model.json":
            (target / path.name).write_bytes(path.read_bytes())
    return target


def shared_rows(ctx, name: str, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Path:
    """200 rows of the shared CSV, changed, as Parquet (a new period for a refresh of the shared run)."""
    return write(ctx.tmp / name, change(pl.read_csv(ctx.csv, separator="\t", infer_schema_length=None).head(200)))


def small_run(ctx, name: str, *extra) -> Path:
    """A run of a small table, made for the case (e.g. with repeated ids, or no id column)."""
    data = small(ctx, f"{name}.parquet", **({} if "--allow-duplicate-ids" not in extra else {"ID": [1, 2, 3, 3, 5, 6]}))
    if "no-id" in extra:
        data = write(data, pl.read_parquet(data).drop("ID"))
        extra = tuple(e for e in extra if e != "no-id")
    result = invoke(["run", data, "--features", "a,b", "--k", "2", "--out", ctx.tmp / name, "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return ctx.tmp / name


def explain_args(run, *extra) -> list:
    return ["explain", run, *extra]


def refresh_args(ctx, inp, *extra) -> list:
    return ["refresh", ctx.run, inp, "--out", ctx.out, "--quiet", *extra]


CASES += [
    # --- PCA
    Case("run:pca-0", lambda c: run_args(c.csv, c, "--spec", "marketing", "--pca", "0"), ("--pca", "'0'")),
    Case("run:pca-1.5", lambda c: run_args(c.csv, c, "--spec", "marketing", "--pca", "1.5"), ("--pca", "'1.5'")),
    Case("run:pca-more-components-than-features", lambda c: run_args(c.csv, c, "--spec", "marketing", "--pca", "11"),
         ("--pca 11", "10 features")),
    Case("sweep:pca-0", lambda c: ["sweep", c.csv, "--spec", "marketing", "--pca", "0", "--out", c.out, "--quiet"],
         ("--pca", "'0'")),
    Case("run:spec-pca-variance-1.5",
         lambda c: run_args(c.csv, c, "--spec", spec_file(c, "pca.toml", '[features]\nx = "Income"\ny = "Recency"\n'
                                                                          '[pca]\nvariance = 1.5\n')),
         ("pca.toml", "variance", "1.5")),
    # --- explain
    Case("explain:depth-0", lambda c: explain_args(c.run, "--depth", "0"), ("--depth", "0")),
    Case("explain:min-share-0.7", lambda c: explain_args(c.run, "--min-share", "0.7"), ("--min-share", "0.7")),
    Case("explain:run-without-model", lambda c: explain_args(run_copy_without_model(c)), ("nomodel", "model.json")),
    # --- refresh and compare
    Case("refresh:run-without-model",
         lambda c: ["refresh", run_copy_without_model(c), c.csv, "--out", c.out, "--quiet"], ("nomodel", "model.json")),
    Case("refresh:spec-with-other-features", lambda c: refresh_args(c, c.csv, "--spec", "marketing"),
         ("marketing", "other features")),
    Case("refresh:repeated-ids",
         lambda c: refresh_args(c, shared_rows(c, "dupes.parquet", lambda f: f.with_columns(
             pl.when(pl.col("ID") == f["ID"][1]).then(f["ID"][0]).otherwise(pl.col("ID")).alias("ID")))),
         ("dupes.parquet", "'ID'", "repeated")),
    Case("refresh:input-lacks-the-id-column",
         lambda c: refresh_args(c, shared_rows(c, "noid.parquet", lambda f: f.drop("ID"))), ("noid.parquet", "'ID'")),
    Case("compare:run-without-model", lambda c: ["compare", run_copy_without_model(c), c.run, "--quiet"],
         ("nomodel", "model.json")),
    Case("compare:repeated-ids",
         lambda c: ["compare", small_run(c, "dupe-run", "--allow-duplicate-ids"), c.run, "--quiet"],
         ("dupe-run", "'ID'", "repeated")),
    Case("compare:no-id-column", lambda c: ["compare", small_run(c, "rowid-run", "no-id"), c.run, "--quiet"],
         ("rowid-run", "no id column")),
]


# ----------------------------------------------------------------------------- checks

def snapshot(roots: list[Path], hashed: Path) -> dict[str, tuple]:
    """Every file and directory under ``roots`` (hidden ones too): kind, size, mtime; the bytes'
    hash for files under ``hashed``."""
    state: dict[str, tuple] = {}
    for root in roots:
        if root.is_file():
            st = root.stat()
            state[str(root)] = ("file", st.st_size, st.st_mtime_ns)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                entry: tuple = ("dir" if name in dirnames else "file", st.st_size, st.st_mtime_ns)
                if name in filenames and hashed in path.parents:
                    entry += (hashlib.sha256(path.read_bytes()).hexdigest(),)
                state[str(path)] = entry
    return state


def temp_siblings(roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                found += [str(Path(dirpath) / n) for n in dirnames + filenames if TEMP_SIBLING.match(n)]
    return found


def error_line(result, names: tuple[str, ...] = (), exit_code: int = 2) -> str:
    """The one `Error: ...` line: the only line on stderr (the commands run with --quiet) apart from
    click's usage hint, nothing on stdout, no traceback, and naming every fragment in ``names``."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    # Click's own option checks (e.g. `--out .` where a file is wanted) put its usage hint first.
    rest = [ln for ln in result.stderr.splitlines() if ln.strip() and not USAGE_HINT.match(ln)]
    assert rest == errors, f"more than the one error line:\n{result.stderr}"
    assert result.stdout == "", result.stdout
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


@pytest.fixture
def ctx(tmp_path: Path, data_csv: Path, generated_parquet: Path, shared_run: Path, monkeypatch) -> Ctx:
    """Case files go under tmp_path; the working directory is tmp_path/cwd (so `--out .` points there)."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return Ctx(tmp_path, data_csv, generated_parquet, shared_run)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clean_error_and_changes_nothing(case: Case, ctx: Ctx) -> None:
    args = case.build(ctx)
    roots = [ctx.tmp, ctx.run, ctx.gen.parent, ctx.csv]
    precious = (ctx.tmp / case.precious).read_bytes() if case.precious else None
    before = snapshot(roots, ctx.tmp)
    result = invoke(args)
    error_line(result, case.names)
    assert snapshot(roots, ctx.tmp) == before, "the filesystem changed"
    assert temp_siblings(roots) == []
    for name in ("out", "pred.parquet", "g.parquet", "cwd", "inputs"):
        assert leftovers(ctx.tmp, name) == []
    if precious is not None:
        assert (ctx.tmp / case.precious).read_bytes() == precious


# ------------------------------------------------------- accepted with a warning (exit 0)

def test_constant_feature_is_dropped_with_a_warning(ctx: Ctx) -> None:
    data = small(ctx, c=[3.0] * 6)
    result = invoke(["run", data, "--features", "a,c,b", "--k", "2", "--out", ctx.out])
    assert result.exit_code == 0, result.output
    warned = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:") and "constant" in ln]
    assert len(warned) == 1 and warned[0].endswith("dropped: c"), result.stderr
    metrics = read_json(ctx.out / "metrics.json")
    assert metrics["features"] == ["a", "b"]
    assert any("constant" in w and "c" in w for w in metrics["warnings"]), metrics["warnings"]
    assert read_json(ctx.out / "model.json")["fitted"]["dropped"] == ["c"]


def test_nan_and_inf_rows_get_null_segments_and_are_counted(ctx: Ctx) -> None:
    data = write(ctx.tmp / "nan.parquet", frame(ID=[1, 2, 3, 4, 5, 6, 7, 8],
                             a=[1.0, float("nan"), float("inf"), float("-inf"), 11.0, 12.0, 2.0, 13.0],
                             b=[5.0, 1.0, 4.0, 2.0, 6.0, 3.0, 5.5, 6.5]))
    result = invoke(["run", data, "--features", "a,b", "--missing", "drop", "--k", "2", "--out", ctx.out, "--quiet"])
    assert result.exit_code == 0, result.output
    segments = pl.read_parquet(ctx.out / "segments.parquet")
    assert segments["ID"].to_list() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert segments["segment"].is_null().to_list() == [False, True, True, True, False, False, False, False]
    assert segments["distance"].is_null().to_list() == segments["segment"].is_null().to_list()
    metrics = read_json(ctx.out / "metrics.json")
    assert metrics["non_finite"] == {"a": 3}
    assert metrics["rows_dropped"] == 3 and metrics["rows_used"] == 5 and metrics["rows"] == 8


def test_duplicate_ids_are_accepted_with_the_flag(ctx: Ctx) -> None:
    data = small(ctx, ID=[1, 2, 3, 3, 5, 6])
    result = invoke(["run", data, "--features", "a,b", "--k", "2", "--out", ctx.out, "--quiet",
                     "--allow-duplicate-ids"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(ctx.out / "segments.parquet")["ID"].to_list() == [1, 2, 3, 3, 5, 6]
    pred = invoke(["predict", ctx.out, data, "--out", ctx.pred, "--quiet", "--allow-duplicate-ids"])
    assert pred.exit_code == 0, pred.output
    assert pl.read_parquet(ctx.pred)["ID"].to_list() == [1, 2, 3, 3, 5, 6]


def test_silhouette_sample_above_the_row_count_is_clamped_aloud(ctx: Ctx) -> None:
    data = small(ctx)
    result = invoke(["run", data, "--features", "a,b", "--k", "2", "--out", ctx.out, "--silhouette-sample", "100"])
    assert result.exit_code == 0, result.output
    metrics = read_json(ctx.out / "metrics.json")
    assert metrics["silhouette_sample"] == metrics["rows_used"] == 6
    assert any("--silhouette-sample 100" in w and "clamped" in w for w in metrics["warnings"]), metrics["warnings"]
    warned = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:") and "clamped" in ln]
    assert len(warned) == 1, f"no clamping warning on stderr:\n{result.stderr}"
    assert "--silhouette-sample 100" in warned[0]


# ----------------------------------------------------------------------------- internal errors

def test_internal_error_is_exit_1_one_line_and_debug_shows_the_traceback(ctx: Ctx, monkeypatch) -> None:
    import engine.api

    def boom(*_args, **_kwargs):
        raise RuntimeError("boom\nsecond line of detail")

    monkeypatch.setattr(engine.api, "fit_kmeans", boom)
    data = small(ctx)
    args = ["run", data, "--features", "a,b", "--k", "2", "--out", ctx.out, "--quiet"]
    before = snapshot([ctx.tmp], ctx.tmp)
    message = error_line(invoke(args), ("internal error", "boom", "--debug"), exit_code=1)
    assert "second line" not in message
    debug = invoke(["--debug", *args])
    assert debug.exit_code == 1, debug.output
    assert "Traceback (most recent call last)" in debug.output and "RuntimeError: boom" in debug.output
    assert debug.output.rstrip().splitlines()[-1].startswith("Error: internal error: boom")
    assert snapshot([ctx.tmp], ctx.tmp) == before
    assert not ctx.out.exists()
