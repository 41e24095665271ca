"""Dashboard speed in a real browser: ``segment dashboard RUN`` on a free 127.0.0.1 port, driven by
headless Debian chromium through Playwright (never a downloaded browser).

    segment generate --rows 10000000 --out /tmp/dash10m.parquet
    segment run /tmp/dash10m.parquet --spec customers --k 5 --out /tmp/dash10m_run
    python -m benchmarks.dashboard /tmp/dash10m_run --repeats 5

Measured, in seconds, from the browser's side:

* ``server_start``: ``segment dashboard`` started -> ``/_stcore/health`` answers;
* ``first_paint``: ``page.goto`` -> every segment card's name on screen (a fresh page each time;
  the first visit of the fresh server is reported apart, as ``first_paint_first_visit``), and
  ``charts`` -> both Overview charts drawn;
* ``explore_open``: the Explore tab clicked -> its match count on screen (the first time also
  checks the input's fingerprint);
* per interaction, the action -> the expected new match count or page caption on screen:
  ``segment_filter`` (a segment's chip removed, then put back), ``id_search`` (an id substring
  typed, then cleared; ``id_search_first`` is the first, which also makes the ids' text once),
  ``range_filter`` (a range of income: ``range_filter_add`` adds it, which computes the column
  over every row, then the thumb moves with the keyboard), ``next_page``.

Each expected figure is computed beforehand from the run's files with Polars, so a measurement
ends only when the page shows the right answer. Results print as JSON (and go to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 120_000


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"segment dashboard exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the dashboard did not answer /_stcore/health")


def idle(page) -> None:
    """Wait until the script run the last action started has finished."""
    page.wait_for_function("() => { const a = document.querySelector('[data-testid=stApp]');"
                           " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }",
                           timeout=TIMEOUT_MS)


def timed(page, action, text: str) -> float:
    """Seconds from ``action()`` until ``text`` is on screen and the script run has finished."""
    t = time.perf_counter()
    action()
    page.get_by_text(text, exact=False).first.wait_for(timeout=TIMEOUT_MS)
    idle(page)
    return time.perf_counter() - t


def count_text(n: int) -> str:
    return f"{n:,} customers match"


def first_paint(browser, url: str, names: dict[int, str]) -> tuple[float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    t = time.perf_counter()
    page.goto(url)
    for j, name in names.items():
        page.get_by_text(f"{j}: {name}", exact=True).first.wait_for(timeout=TIMEOUT_MS)
    paint = time.perf_counter() - t
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=TIMEOUT_MS)
    charts = time.perf_counter() - t
    page.close()
    return paint, charts


def expected_counts(run: Path) -> dict:
    """The figures each interaction must show, from the run's files (Polars, not the app)."""
    metrics = json.loads((run / "metrics.json").read_text())
    segments = pl.read_parquet(run / "segments.parquet")
    id_col = segments.columns[0]
    income = (pl.scan_parquet(metrics["input"]["files"]).select(pl.col("Income").cast(pl.Float64)).collect()
              .to_series())
    frame = segments.with_columns(income.alias("income")).filter(pl.col("segment").is_not_null())
    return {"frame": frame, "id_col": id_col, "all": frame.height,
            "without_0": frame.filter(pl.col("segment") != 0).height,
            "id_12": frame.filter(pl.col(id_col).cast(pl.String).str.contains("12", literal=True)).height}


def interactions(browser, url: str, names: dict[int, str], expect: dict, repeats: int) -> dict[str, list[float]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_text(f"0: {names[0]}", exact=True).first.wait_for(timeout=TIMEOUT_MS)
    idle(page)
    out: dict[str, list[float]] = {k: [] for k in ("explore_open", "segment_filter", "id_search_first", "id_search",
                                                   "next_page", "range_filter_add", "range_filter")}
    out["explore_open"].append(timed(page, lambda: page.get_by_role("tab", name="Explore").click(),
                                     count_text(expect["all"])))
    chip = f"0: {names[0]}"
    for _ in range(repeats):
        out["segment_filter"].append(timed(page, lambda: page.get_by_role("button", name=f"Remove {chip}").click(),
                                           count_text(expect["without_0"])))

        def put_back() -> None:
            page.get_by_label("Segments").first.click()
            page.get_by_role("option", name=chip).click()
            page.keyboard.press("Escape")

        out["segment_filter"].append(timed(page, put_back, count_text(expect["all"])))
        box = page.get_by_label("Customer id contains")
        first = "id_search" if out["id_search_first"] else "id_search_first"  # the first makes the ids' text
        out[first].append(timed(page, lambda: (box.fill("12"), box.press("Enter")), count_text(expect["id_12"])))
        out["id_search"].append(timed(page, lambda: (box.fill(""), box.press("Enter")), count_text(expect["all"])))
    for n in range(2, 2 + repeats):
        step = page.get_by_test_id("stNumberInputStepUp").first
        out["next_page"].append(timed(page, step.click, f"page {n:,} of"))
    out["range_filter_add"].append(timed(page, lambda: choose_range(page), "Ranges of"))
    for _ in range(repeats):
        out["range_filter"].append(move_range(page, expect))
    page.close()
    return out


def choose_range(page) -> None:
    page.get_by_label("Ranges of").first.click()
    page.get_by_role("option", name="income", exact=True).click()
    page.keyboard.press("Escape")
    page.locator('input[aria-label="income — end"]').wait_for(state="attached", timeout=TIMEOUT_MS)


def move_range(page, expect: dict) -> float:
    """The upper thumb one page down, then the count the new range must give."""
    thumb = page.locator('input[aria-label="income — end"]')
    t = time.perf_counter()
    thumb.focus()
    thumb.press("PageDown")
    high = float(thumb.input_value())
    low = float(page.locator('input[aria-label="income — start"]').input_value())
    frame = expect["frame"]
    n = frame.filter(pl.col("income").is_between(low, high)).height
    page.get_by_text(count_text(n)).first.wait_for(timeout=TIMEOUT_MS)
    idle(page)
    return time.perf_counter() - t


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3), "n": len(values)}


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    profiles = pl.read_parquet(args.run / "profiles.parquet")
    names = dict(zip(profiles["segment"].to_list(), profiles["name"].to_list()))
    expect = expected_counts(args.run)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    segment = Path(sys.executable).with_name("segment")
    t = time.perf_counter()
    server = subprocess.Popen([str(segment), "dashboard", str(args.run), "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_healthy(url, server)
        result = {"rows": json.loads((args.run / "metrics.json").read_text())["rows"],
                  "segmented": expect["frame"].height, "server_start": round(time.perf_counter() - t, 3)}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            paints = [first_paint(browser, url, names) for _ in range(args.repeats + 1)]
            result["first_paint_first_visit"] = round(paints[0][0], 3)
            result["first_paint"] = summary([p for p, _ in paints[1:]])
            result["charts"] = summary([c for _, c in paints[1:]])
            result.update({k: summary(v) for k, v in interactions(browser, url, names, expect, args.repeats).items()})
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["machine"] = {"cores": os.cpu_count(), "load_average": os.getloadavg()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
