"""DuckDB on both sides: `--sql` and `[source] sql` as the input, `segment sql` over a run, `--db`,
hive partitions, Parquet metadata, and the sandbox (no file but the declared inputs, no writes)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import invoke, read_json

FEATURES = "Income,Recency,MntWines,NumWebPurchases"


@pytest.fixture(scope="session")
def db_run(tmp_path_factory, data_csv) -> tuple[Path, Path]:
    """The shared CSV segmented with --db and --partition-by-segment; (run dir, database file)."""
    base = tmp_path_factory.mktemp("db_run")
    out, db = base / "run", base / "results.duckdb"
    result = invoke(["run", data_csv, "--features", FEATURES, "--id-col", "ID", "--k", "4", "--out", out,
                     "--db", db, "--partition-by-segment", "--quiet"])
    assert result.exit_code == 0, result.output
    return out, db


def sql(run: Path, query: str, fmt: str = "json"):
    result = invoke(["sql", run, query, "--format", fmt])
    return result


def sql_json(run: Path, query: str) -> list[dict]:
    result = sql(run, query)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_sql_answers_equal_polars(db_run, data_csv):
    run, _ = db_run
    segments = pl.read_parquet(run / "segments.parquet")
    rows = sql_json(run, "SELECT segment, count(*) AS n, avg(distance) AS d FROM segments "
                         "WHERE segment IS NOT NULL GROUP BY 1 ORDER BY 1")
    ref = (segments.drop_nulls("segment").group_by("segment")
           .agg(pl.len().alias("n"), pl.col("distance").mean().alias("d")).sort("segment"))
    assert [r["segment"] for r in rows] == ref["segment"].to_list()
    assert [r["n"] for r in rows] == ref["n"].to_list()
    assert [r["d"] for r in rows] == pytest.approx(ref["d"].to_list(), rel=1e-6)
    # customers: the input joined with its segment
    data = pl.read_csv(data_csv, separator="\t", infer_schema_length=None)
    joined = data.join(segments, on="ID", how="left")
    rows = sql_json(run, "SELECT segment, avg(MntWines) AS wines, count(*) AS n FROM customers GROUP BY 1 ORDER BY 1")
    ref = joined.group_by("segment").agg(pl.col("MntWines").mean().alias("wines"), pl.len().alias("n")) \
        .sort("segment", nulls_last=True)
    assert [r["segment"] for r in rows] == ref["segment"].to_list()
    assert [r["n"] for r in rows] == ref["n"].to_list()
    assert [r["wines"] for r in rows] == pytest.approx(ref["wines"].to_list())
    # profiles, centroids and metrics
    profiles = pl.read_parquet(run / "profiles.parquet")
    assert [r["size"] for r in sql_json(run, "SELECT size FROM profiles ORDER BY segment")] == profiles["size"].to_list()
    metrics = read_json(run / "metrics.json")
    (row,) = sql_json(run, "SELECT k, rows, inertia, features, seconds_total FROM metrics")
    assert (row["k"], row["rows"], row["features"]) == (4, metrics["rows"], metrics["features"])
    assert row["inertia"] == pytest.approx(metrics["inertia"])
    model = read_json(run / "model.json")
    cents = sql_json(run, "SELECT * FROM centroids ORDER BY segment")
    flat = [c[f] for c in cents for f in FEATURES.split(",")]
    assert flat == pytest.approx([v for row in model["centroids"]["original"] for v in row])


def test_sql_formats(db_run):
    run, _ = db_run
    query = "SELECT segment, count(*) AS n FROM segments GROUP BY 1 ORDER BY 1 NULLS LAST"
    csv = sql(run, query, "csv")
    assert csv.exit_code == 0 and csv.output.splitlines()[0] == "segment,n"
    assert pl.read_csv(csv.output.encode())["n"].sum() == 2240
    table = sql(run, query, "table")
    assert table.exit_code == 0 and table.output.splitlines()[0].split() == ["segment", "n"]


def test_partitions_are_hive_and_pruned(db_run):
    run, _ = db_run
    parts = sorted(p.parent.name for p in (run / "segments").rglob("part-0.parquet"))
    assert parts == ["segment=0", "segment=1", "segment=2", "segment=3", "segment=__HIVE_DEFAULT_PARTITION__"]
    whole = pl.read_parquet(run / "segments.parquet")
    con = duckdb.connect()
    got = con.sql(f"SELECT ID, distance FROM read_parquet('{run}/segments/**/*.parquet', hive_partitioning = true) "
                  "WHERE segment = 2 ORDER BY ID").fetchall()
    ref = whole.filter(pl.col("segment") == 2).sort("ID").select("ID", "distance").rows()
    assert got == [(i, pytest.approx(d)) for i, d in ref]
    query = (f"SELECT count(*) FROM read_parquet('{run}/segments/**/*.parquet', hive_partitioning = true) "
             "WHERE segment = 2")
    only = str(run / "segments" / "segment=2" / "part-0.parquet")
    assert files_read(profiled(con, query)) == [("1", only)]
    # The measure sees a scan that is not pruned: with the optimizer off, every partition is read.
    con.sql("PRAGMA disable_optimizer")
    assert [n for n, _ in files_read(profiled(con, query))] == ["5"]
    # `segment sql`'s segments relation (segment cast to INTEGER over the partitions) prunes too.
    rows = sql_json(run, "EXPLAIN (ANALYZE, FORMAT json) SELECT count(*) FROM segments WHERE segment = 2")
    assert files_read(json.loads(rows[0]["explain_value"])) == [("1", str(Path(only).resolve()))]


def profiled(con, query: str) -> dict:
    """DuckDB's profile of ``query``, run: EXPLAIN (ANALYZE, FORMAT json)."""
    return json.loads(con.sql(f"EXPLAIN (ANALYZE, FORMAT json) {query}").fetchall()[0][1])


def files_read(profile: dict) -> list[tuple[str, str]]:
    """(files read, file names) of every Parquet scan in a profile."""
    scans: list[tuple[str, str]] = []

    def walk(node: dict) -> None:
        if node.get("name") == "READ_PARQUET":
            info = node["extra_info"]
            scans.append((info["Total Files Read"], info["Filename(s)"]))
        for child in node.get("children", []):
            walk(child)

    for node in profile["operator"]:
        walk(node)
    return scans


def test_parquet_outputs_carry_metadata(db_run):
    run, _ = db_run
    model_hash = None
    for name in ("segments.parquet", "profiles.parquet", "segments/segment=0/part-0.parquet"):
        meta = pq.read_metadata(run / name).metadata
        assert meta[b"segment.format_version"] == b"1"
        assert meta[b"segment.k"] == b"4"
        assert meta[b"segment.features"].decode() == FEATURES
        model_hash = model_hash or meta[b"segment.model_hash"]
        assert meta[b"segment.model_hash"] == model_hash
    from engine.fit.model import load_model

    assert model_hash.decode() == load_model(run).digest()  # the saved model, read back, has the same hash


def test_db_file_opens_in_a_fresh_connection(db_run):
    run, db = db_run
    con = duckdb.connect(str(db), read_only=True)
    relations = dict(con.sql("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    for name in ("segments", "profiles", "centroids", "metrics"):
        assert relations[name] == "BASE TABLE"
    assert relations["customers"] == "VIEW"
    for name in relations:
        con.sql(f'SELECT * FROM "{name}"').fetchall()  # every table and view is readable
    assert con.sql("SELECT count(*) FROM customers").fetchall() == [(2240,)]
    assert con.sql("SELECT count(*) FROM segments").fetchall() == [(2240,)]
    ours = con.sql("SELECT segment, count(*) FROM customers GROUP BY 1 ORDER BY 1 NULLS LAST").fetchall()
    ref = pl.read_parquet(run / "segments.parquet").group_by("segment").len().sort("segment", nulls_last=True).rows()
    assert ours == ref


@pytest.mark.parametrize("query, message", [
    ("SELECT * FROM read_csv('/etc/passwd')", "refused"),
    ("SELECT * FROM '/etc/passwd'", "/etc/passwd does not exist"),  # file scans are off
    ("COPY segments TO 'stolen.csv'", "only a SELECT"),
    ("ATTACH 'other.duckdb'", "only a SELECT"),
    ("DROP VIEW segments", "only a SELECT"),
    ("SET enable_external_access = true", "only a SELECT"),
    ("INSTALL httpfs", "only a SELECT"),
    ("SELECT 1; DROP VIEW segments", "exactly one"),
    ("SELECT * FROM nowhere", "nowhere"),
    ("SELEC 1", "syntax"),
])
def test_sql_refuses_anything_but_reading_the_run(db_run, query, message):
    run, _ = db_run
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    result = sql(run, query, "table")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert message.lower() in result.output.lower()
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_sql_bad_run_directory(tmp_path):
    result = sql(tmp_path / "nope", "SELECT 1")
    assert result.exit_code == 2 and "run directory not found" in result.output
    (tmp_path / "empty").mkdir()
    result = sql(tmp_path / "empty", "SELECT 1")
    assert result.exit_code == 2 and "not a segment run directory" in result.output


def test_run_from_sql_query(tmp_path, generated_parquet):
    """--sql alone may read the user's own files; the result feeds the same pipeline as INPUT."""
    query = f"SELECT ID, Income, Recency, MntWines FROM read_parquet('{generated_parquet}') WHERE Income IS NOT NULL"
    out = tmp_path / "run"
    result = invoke(["run", "--sql", query, "--id-col", "ID", "--k", "3", "--out", out, "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    direct = tmp_path / "direct"
    frame = pl.read_parquet(generated_parquet).filter(pl.col("Income").is_not_null()) \
        .select("ID", "Income", "Recency", "MntWines")
    frame.write_parquet(tmp_path / "same.parquet")
    result = invoke(["run", tmp_path / "same.parquet", "--id-col", "ID", "--k", "3", "--out", direct, "--quiet"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out / "segments.parquet").equals(pl.read_parquet(direct / "segments.parquet"))
    metrics = read_json(out / "metrics.json")
    assert metrics["input"]["format"] == "sql" and metrics["input"]["query"] == query
    # predict and sweep take --sql too
    pred = tmp_path / "pred.parquet"
    result = invoke(["predict", out, "--sql", query, "--out", pred, "--quiet"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(pred)["segment"].equals(pl.read_parquet(out / "segments.parquet")["segment"])
    result = invoke(["sweep", "--sql", query, "--id-col", "ID", "--k", "2..3", "--repeats", "0",
                     "--out", tmp_path / "sweep", "--quiet"])
    assert result.exit_code == 0, result.output
    # a --sql run without INPUT files has no customers view, and says why
    result = sql(out, "SELECT count(*) FROM customers")
    assert result.exit_code == 2 and "not re-run" in result.output


@pytest.mark.parametrize("query, message", [
    ("COPY (SELECT 1) TO 'x.csv'", "only a SELECT"),
    ("SELECT * FROM nowhere_table", "nowhere_table"),
    ("SELECT 1 AS a WHERE false", "no rows"),
])
def test_bad_sql_input(tmp_path, query, message):
    result = invoke(["run", "--sql", query, "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_no_input_at_all(tmp_path):
    result = invoke(["run", "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2 and "no input given" in result.output


def spec_file(tmp_path: Path, query: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(f'id = "ID"\n[source]\nsql = """{query}"""\n', encoding="utf-8")
    return path


def test_spec_source_sql_reads_the_inputs(tmp_path, data_csv):
    spec = spec_file(tmp_path, "SELECT ID, Income, MntWines + MntMeatProducts AS spend FROM input")
    out = tmp_path / "run"
    result = invoke(["run", data_csv, "--spec", spec, "--k", "3", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_json(out / "metrics.json")["features"] == ["Income", "spend"]
    # customers is the spec query's result joined with its segment
    rows = sql_json(out, "SELECT count(*) AS n, count(segment) AS labelled, max(spend) AS top FROM customers")
    data = pl.read_csv(data_csv, separator="\t", infer_schema_length=None)
    assert rows[0]["n"] == 2240 and rows[0]["labelled"] == 2240 - data["Income"].null_count()
    assert rows[0]["top"] == (data["MntWines"] + data["MntMeatProducts"]).max()


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT ID, 1.0 AS x FROM input, (SELECT * FROM '/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
])
def test_spec_sql_cannot_read_other_files(tmp_path, data_csv, query):
    spec = spec_file(tmp_path, query)
    result = invoke(["run", data_csv, "--spec", spec, "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2, result.output
    assert "refused" in result.output or "/etc/passwd does not exist" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_spec_sql_cannot_write(tmp_path, data_csv):
    spec = spec_file(tmp_path, f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
    result = invoke(["run", data_csv, "--spec", spec, "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2 and "only a SELECT" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_sql_with_input_is_sandboxed(tmp_path, data_csv):
    """--sql with INPUT files reads them as `input`, and nothing else."""
    result = invoke(["run", data_csv, "--sql", "SELECT * FROM read_csv('/etc/passwd')", "--k", "2",
                     "--out", tmp_path / "run"])
    assert result.exit_code == 2 and "refused" in result.output


@pytest.mark.parametrize("toml, message", [
    ('[source]\nsql = "SELECT 1"\npreset = "rfm"\n', "not both"),
    ('[source]\nquery = "SELECT 1"\n', "unknown key 'query'"),
    ('[source]\npreset = "rfn"\n', "preset must be one of rfm"),
    ('[source]\npreset = "rfm"\ncustomer = "c"\n', "needs date"),
    ('[source]\nsql = 3\n', "must be a non-empty string"),
    ('source = "x"\n', "[source] must be a table"),
])
def test_bad_source_sections(tmp_path, data_csv, toml, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(toml, encoding="utf-8")
    result = invoke(["run", data_csv, "--spec", spec, "--k", "2", "--out", tmp_path / "run"])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_sql_and_spec_source_conflict(tmp_path, data_csv):
    spec = spec_file(tmp_path, "SELECT * FROM input")
    result = invoke(["run", data_csv, "--spec", spec, "--sql", "SELECT * FROM input", "--k", "2",
                     "--out", tmp_path / "run"])
    assert result.exit_code == 2 and "give one source" in result.output


def test_db_refuses_existing_file(tmp_path, generated_parquet):
    db = tmp_path / "r.duckdb"
    db.write_bytes(b"x")
    result = invoke(["run", generated_parquet, "--k", "2", "--out", tmp_path / "run", "--db", db])
    assert result.exit_code == 2 and "already exists" in result.output
    assert not (tmp_path / "run").exists()
