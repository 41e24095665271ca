"""`segment report`: one self-contained HTML file, checked in a real headless browser (Debian's
chromium; `make test` installs it when missing). The test fails, not skips, without chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import polars as pl
import pytest

from conftest import invoke

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHARTS = ("chart-sizes", "chart-heatmap", "chart-projection", "chart-gains", "chart-correlation")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert found, "chromium is not installed (make test installs it: apt-get install -y chromium)"
    return found


def browse(html: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, html.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)


def png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the (filtered) scanlines of a PNG, decoded with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    return width, height, [raw[i:i + stride] for i in range(0, len(raw), stride)]


@pytest.fixture(scope="module")
def report_file(marketing_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = invoke(["report", marketing_run, "--out", out])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    return out


def figures(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-figures">(.*?)</script>', html, re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_report_is_self_contained(report_file: Path, marketing_run: Path) -> None:
    html = report_file.read_text(encoding="utf-8")
    # no script or stylesheet fetched from the network: plotly.js is inline, once
    assert not re.search(r'<(script|link|img)[^>]+(src|href)\s*=\s*["\']?(https?:)?//', html, re.I)
    assert html.count("<script") == 4  # error catcher, plotly.js, the figures' JSON, the drawing code
    assert set(figures(html)) == set(CHARTS)
    profiles = pl.read_parquet(marketing_run / "profiles.parquet")
    for name, action in zip(profiles["name"].to_list(), profiles["action"].to_list()):
        assert name in html
        assert action in html.replace("&amp;", "&")
    assert "spec built-in spec &#x27;marketing&#x27;" in html or "spec built-in spec 'marketing'" in html
    for text in ("Run summary", "Business impact", "Input data (EDA)", "Profile heatmap", "PCA projection",
                 "Revenue concentration", "Mass campaign: 2,240 contacted, 334 responses, profit -3,046, ROI -45.3%"):
        assert text in html or text in json.dumps(figures(html))


def test_report_renders_in_a_headless_browser(report_file: Path, tmp_path: Path) -> None:
    dom = browse(report_file, tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000",
                 "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f'data-charts-rendered="{len(CHARTS)}"' in dom.stdout, "not every chart was drawn"
    for chart in CHARTS:
        div = re.search(rf'<div id="{chart}"[^>]*>', dom.stdout).group(0)
        assert 'data-rendered="1"' in div and "js-plotly-plot" in div, div
    assert dom.stdout.count('class="main-svg"') >= len(CHARTS)
    assert '<ul id="report-errors" hidden=""></ul>' in dom.stdout, re.search(r'<ul id="report-errors".*?</ul>', dom.stdout, re.S).group(0)
    assert not re.search(r"<body[^>]*data-errors=", dom.stdout)
    console_errors = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
    assert console_errors == []

    shot = tmp_path / "report.png"
    result = browse(report_file, tmp_path, f"--screenshot={shot}", "--window-size=1400,4000",
                    "--virtual-time-budget=20000")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    width, height, rows = png_rows(shot)
    assert (width, height) == (1400, 4000)
    # a blank page has a handful of distinct scanlines whatever the PNG filters; the report thousands
    assert len(set(rows)) > 1000
    # and many colours: the charts' palettes, not only text on white
    colours = {row[i:i + 3] for row in rows[::7] for i in range(1, len(row) - 3, 4 * 13)}
    assert len(colours) > 50


def test_report_with_sweep_chart_renders(data_csv: Path, tmp_path: Path) -> None:
    run = tmp_path / "auto"
    result = invoke(["run", data_csv, "--spec", "customers", "--k", "auto", "--k-range", "3..5", "--repeats", "0",
                     "--out", run, "--quiet"])
    assert result.exit_code == 0, result.output
    result = invoke(["report", run])  # default: DIR/report.html
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "chart-sweep" in figures(html)
    dom = browse(run / "report.html", tmp_path, "--virtual-time-budget=20000", "--dump-dom")
    assert f'data-charts-rendered="{len(CHARTS) + 1}"' in dom.stdout
    assert '<ul id="report-errors" hidden=""></ul>' in dom.stdout
    assert invoke(["report", run]).exit_code == 0  # the default file is replaced on the next report


def test_report_bad_inputs(marketing_run: Path, tmp_path: Path, report_file: Path) -> None:
    missing = invoke(["report", tmp_path / "nope"])
    assert missing.exit_code == 2 and "run directory not found" in missing.output
    (tmp_path / "empty").mkdir()
    empty = invoke(["report", tmp_path / "empty"])
    assert empty.exit_code == 2 and "is not a segment run directory" in empty.output
    exists = invoke(["report", marketing_run, "--out", report_file])
    assert exists.exit_code == 2 and "already exists" in exists.output
    assert invoke(["report", marketing_run, "--out", report_file, "--overwrite"]).exit_code == 0


def test_report_with_pca_rules_and_migration_renders(data_csv: Path, period2_csv: Path, tmp_path: Path) -> None:
    """A new period refreshed against a PCA run, then explained: the report's PCA, Rules and
    Migration sections, and the migration heatmap drawn in the browser."""
    for args in (["run", data_csv, "--spec", "marketing", "--k", "4", "--pca", "0.9", "--out", tmp_path / "q1"],
                 ["refresh", tmp_path / "q1", period2_csv, "--out", tmp_path / "q2"],
                 ["explain", tmp_path / "q2", "--depth", "2"], ["report", tmp_path / "q2"]):
        result = invoke([*args, "--quiet"] if args[0] in ("run", "refresh") else args)
        assert result.exit_code == 0, result.output
    html = (tmp_path / "q2" / "report.html").read_text(encoding="utf-8")
    for text in ("PCA before k-means", "Loadings", "<h2>Rules</h2>", "Migration from the earlier period", "PSI"):
        assert text in html, text
    assert set(figures(html)) == {*CHARTS, "chart-migration"}
    dom = browse(tmp_path / "q2" / "report.html", tmp_path, "--virtual-time-budget=20000", "--dump-dom")
    assert f'data-charts-rendered="{len(CHARTS) + 1}"' in dom.stdout
    assert '<ul id="report-errors" hidden=""></ul>' in dom.stdout
