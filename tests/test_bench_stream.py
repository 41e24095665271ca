"""The stream benchmark's pure helpers: reading --sizes, and the table rows and targets it renders
from a result (a fake one here; the figures themselves are measured in benchmarks/, never here)."""

from __future__ import annotations

import pytest

from benchmarks import stream

GIB = 2**30


def run(seconds: float, rss: float, profile: float = 0.0, inertia: float = 1.0) -> dict:
    return {"seconds": seconds, "peak_rss": rss * GIB, "inertia": inertia,
            "stages": {"read": 1.0, "features": 0.5, "scale": 0.25, "init": 0.5, "refine": 1.5, "profile": profile}}


def entry(rows: int, streamed: dict, floor: float, memory: dict | None = None) -> dict:
    e = {"rows": rows, "file_bytes": rows * 18, "generate": None, "streamed": streamed,
         "streamed_floor": {"seconds": floor, "peak_rss": 0.5 * GIB, "steps": {}}}
    if memory is not None:
        e["memory"] = memory
        e["floor"] = {"skipped": "needs about 16.0 GiB, 9.0 GiB available"}
    return e


def test_sizes_accept_suffixes_and_underscores_and_come_back_sorted() -> None:
    assert stream.parse_sizes("10M,1000000,30_000_000,200k") == [200_000, 1_000_000, 10_000_000, 30_000_000]
    assert stream.parse_sizes(" 1g ") == [10**9]


@pytest.mark.parametrize("text", ["", "ten", "1.5M", "-5", "0", "1M,1000000", "1M,,2M"])
def test_bad_sizes_are_refused_with_the_flag_named(text: str) -> None:
    with pytest.raises(ValueError, match="--sizes"):
        stream.parse_sizes(text)


def test_a_size_renders_both_runs_against_their_own_floor() -> None:
    e = entry(10_000_000, run(20.0, 1.5, profile=4.0), floor=10.0,
              memory={"skipped": "needs about 41.6 GiB, 19.0 GiB available"})
    memory, streamed = stream.size_rows(e)
    assert memory.startswith("| 10,000,000 | in memory | skipped: needs about 41.6 GiB, 19.0 GiB available |")
    assert "skipped: needs about 16.0 GiB" in memory  # its floor was skipped too
    cells = [c.strip() for c in streamed.strip("|").split("|")]
    assert cells[:8] == ["10,000,000", "streamed", "20.00", "500,000", "1.50 GiB", "10.00 s, 0.50 GiB", "2.00x", "1.60x"]
    assert cells[8:] == ["1.00", "0.75", "2.00", "0.00", "4.00", "0.00"]  # read, features+scale, fit, ..., profile
    assert len(cells) == stream.TABLE_HEAD.splitlines()[0].count("|") - 1


def test_targets_compare_the_largest_size_with_one_a_tenth_as_large() -> None:
    result = {"runs": {"1000000": entry(1_000_000, run(2.0, 0.5), 1.0),
                       "10000000": entry(10_000_000, run(10.0, 1.0), 4.0),
                       "100000000": entry(100_000_000, run(120.0, 2.5, profile=30.0), 60.0,
                                          memory=run(100.0, 20.0, inertia=1.0))}}
    lines = "\n".join(stream.targets(result))
    assert "| time(100,000,000) / time(10,000,000), streamed | 120.00 s / 10.00 s | 12.00 | <= 11 |" in lines
    assert "| peak RSS, 100,000,000 rows streamed | 2.50 GiB | | <= 2 GiB |" in lines
    assert "| 2.00x (1.50x without the profile stage) | <= 1.5x |" in lines
    assert "| 833,333 rows/s |" in lines
    assert "| inertia in memory / streamed | 100,000,000: the same | the same | the same |" in lines
    result["runs"]["10000000"]["memory"] = run(9.0, 2.0, inertia=2.0)
    assert "100,000,000: the same; 10,000,000: 2 / 1 | different |" not in "\n".join(stream.targets(result))
    assert "10,000,000: 2 / 1; 100,000,000: the same | different |" in "\n".join(stream.targets(result))


def test_targets_fall_back_to_the_smallest_size_and_skip_failed_runs() -> None:
    result = {"runs": {"200000": entry(200_000, run(1.0, 0.3), 0.5),
                       "1000000": entry(1_000_000, run(4.0, 0.6), 1.0),
                       "30000000": {"rows": 30_000_000, "streamed": {"failed": "killed"}}}}
    lines = "\n".join(stream.targets(result))
    assert "time(1,000,000) / time(200,000), streamed | 4.00 s / 1.00 s | 4.00 | <= 5.5 |" in lines
    assert "30,000,000" not in lines
    assert stream.targets({"runs": {}}) == []


def test_a_stream_only_run_replaces_its_readme_section_and_keeps_the_rest(tmp_path, monkeypatch) -> None:
    import benchmarks.__main__ as bench

    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nthe full run's table\n", encoding="utf-8")
    monkeypatch.setattr(bench, "README", readme)
    machine = {"cores": 2, "memory_gib": 23.5, "cpu": "cpu", "python": "3.11"}

    def result(when: str, seconds: float) -> dict:
        return {"when": when, "machine": machine, "command": "python -m benchmarks --only stream",
                "stream": {"sizes": [1_000_000], "features": 16, "k": 8,
                           "runs": {"1000000": entry(1_000_000, run(seconds, 0.5), 1.0)}}}

    bench.write_stream_section(result("first", 3.0))
    bench.write_stream_section(result("second", 7.0))
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nthe full run's table\n\n")
    assert text.count(bench.STREAM_BEGIN) == 1 and text.count(bench.STREAM_END) == 1
    assert "(second)" in text and "(first)" not in text and "| 7.00 |" in text
    # a full run writes the whole file, its streamed section included; a later stream-only run replaces that
    bench.write_readme({**result("full", 5.0), "repeat": 5}, "| the full run's comparisons |")
    bench.write_stream_section(result("third", 9.0))
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(bench.INTRO) and "| the full run's comparisons |" in text
    assert text.count(bench.STREAM_BEGIN) == 1 and "Streamed runs (third)" in text and "Streamed runs (full)" not in text
