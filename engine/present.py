"""Terminal tables and numbers: the one place that decides how a value looks on screen.

The rules, the same in ``run``, ``sweep``, ``impact``, ``sql``, ``describe``, ``explain``, ``refresh``
and ``compare``:

* Ids print as written: ``12346``, never ``12,346`` (a column is an id when it is the run's id
  column or its name says so: ``id``, ``ID``, ``*_id``, ``*ID``).
* Other integers, and whole floats, print with thousands separators: ``1,204``; ``258``.
* Ratios (shares, rates, ROI, power) print as percentages: ``448.8%``.
* Other floats print with four significant digits, or as whole numbers from 1,000 up:
  ``51.8``, ``0.1235``, ``68,117``.
* A missing value prints as ``-``.
* A population stability index (PSI) prints with three decimals: ``0.092``.
* A rule's threshold (already rounded to 2-3 significant figures) prints as it is, with thousands
  separators from 10,000 up: ``1970``, ``1180``, ``0.37``, ``69,300``.

May import: polars only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

ID_NAME = re.compile(r"^(id|ID|Id|row_id|.*_id|.*ID|.*_Id)$")
RATIO_NAME = re.compile(r"^(share|rate|roi|power|top10|top20|top25)$|.*_(share|rate|roi)$")
DIGITS = 4


def is_id(name: str, ids: Iterable[str] = ()) -> bool:
    return name in set(ids) or bool(ID_NAME.match(name))


def is_ratio(name: str) -> bool:
    return bool(RATIO_NAME.match(name))


def number(value: Any, *, as_id: bool = False, ratio: bool = False, digits: int = DIGITS) -> str:
    """One value for a terminal (see the module's rules)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if as_id:
        return str(value)
    if ratio:
        return percent(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1000 or (value.is_integer() and abs(value) < 1e15):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def threshold(value: float) -> str:
    """A rule's threshold (see the module's rules)."""
    return f"{value:,.0f}" if abs(value) >= 10_000 and float(value).is_integer() else f"{value:g}"


def percent(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def cells(frame: pl.DataFrame, ids: Iterable[str] = ()) -> list[list[str]]:
    """Every value of ``frame`` as text, by the column's kind."""
    ids = tuple(ids)
    kinds = [(is_id(c, ids), is_ratio(c)) for c in frame.columns]
    return [[number(v, as_id=i, ratio=r) for v, (i, r) in zip(row, kinds)] for row in frame.iter_rows()]


def table(frame: pl.DataFrame, ids: Iterable[str] = ()) -> str:
    """A table for a terminal: a header, a rule, text left-aligned and numbers right-aligned."""
    text = [frame.schema[c] in (pl.String, pl.Categorical) for c in frame.columns]
    return grid([str(c) for c in frame.columns], cells(frame, ids), text)


def grid(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[bool]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if t else v.rjust(w) for v, w, t in zip(values, widths, left)).rstrip()

    lines = [line(header)]
    lines.append("-" * len(lines[0]))
    lines += [line(r) for r in rows]
    return "\n".join(lines)


def profiles(frame: pl.DataFrame, stat: str = "mean") -> str:
    """The profile table: one row per feature, one column per segment."""
    features = [c[: -len(stat) - 1] for c in frame.columns if c.endswith(f"_{stat}")]
    header = ["segment"] + [str(s) for s in frame["segment"].to_list()]
    rows = [["size"] + [number(v) for v in frame["size"].to_list()],
            ["share"] + [percent(v) for v in frame["share"].to_list()]]
    rows += [[f"{name} ({stat})"] + [number(v) for v in frame[f"{name}_{stat}"].to_list()] for name in features]
    return grid(header, rows, [True] + [False] * (len(header) - 1))


def names(frame: pl.DataFrame) -> str:
    """One line per segment: its name and recommended action (and revenue share when declared), and
    beside the action its next best offer when the run has one."""
    lines = []
    for row in frame.iter_rows(named=True):
        extra = f", {percent(row['revenue_share'])} of revenue" if row.get("revenue_share") is not None else ""
        offer = f"; offer: {row['offer']}" if row.get("offer") else ""
        lines.append(f"segment {row['segment']}: {row['name']} ({percent(row['share'])} of customers{extra}) "
                     f"-> {row['action']}{offer}")
    return "\n".join(lines)


def run_summary(m: dict[str, Any], out: str, written: Sequence[str]) -> str:
    """The closing lines of ``segment run``: metrics, the sweep's choice, the campaign, the files."""
    sil = "n/a" if m["silhouette"] is None else f"{m['silhouette']:.4f}"
    lines = [f"k={m['k']}  rows={number(m['rows'])}  dropped={number(m['rows_dropped'])}  "
             f"inertia={m['inertia']:.6g}  silhouette={sil} (sample {number(m['silhouette_sample'])})  "
             f"iterations={m['n_iter']}  time={m['seconds']['total']:.2f} s"]
    if m.get("pca"):
        p = m["pca"]
        lines.append(f"k-means on {p['components']} principal components of the {p['features']} features, keeping "
                     f"{percent(p['cumulative_variance_ratio'][-1])} of their variance (per component: "
                     + ", ".join(percent(r) for r in p["explained_variance_ratio"]) + ")")
    if m["sweep"]:
        lines.append(f"k chosen by sweep: {m['sweep']['reason']}")
    impact = m["insight"].get("impact")
    if impact:
        e, best = impact["everyone"], impact["best_segment"]
        lines.append(f"mass campaign: {number(e['customers'])} contacted, {number(e['responses'])} responses, "
                     f"profit {number(float(e['profit']))}, ROI {percent(e['roi'])}; best segment {best['segment']}: "
                     f"profit {number(float(best['profit']))}, ROI {percent(best['roi'])}")
    lines.append(f"wrote {str(out).rstrip('/')}/: {', '.join(written)}")
    return "\n".join(lines)


def impact(frame: pl.DataFrame, summary: dict[str, Any]) -> str:
    """The targeting table, then the mass campaign and the best cut-off."""
    shown = frame.select("rank", "segment", "name", "customers", "responses", "cost", "revenue", "profit", "roi",
                         "cum_response_share", "cum_profit")
    e, cut = summary["everyone"], summary["best_cutoff"]
    cost, revenue = summary["cost_per_contact"], summary["revenue_per_response"]
    lines = [table(shown),
             f"cost per contact {number(float(cost))}, revenue per response {number(float(revenue))}",
             f"mass campaign: {number(e['customers'])} contacted x {number(float(cost))} = cost "
             f"{number(float(e['cost']))}; {number(e['responses'])} responses x {number(float(revenue))} = revenue "
             f"{number(float(e['revenue']))}; profit {number(float(e['profit']))}; ROI {percent(e['roi'])}"]
    if cut:
        lines.append(f"best cut-off: the top {cut['segments']} segment(s) by ROI, {number(cut['customers'])} "
                     f"contacted, profit {number(float(cut['profit']))}, ROI {percent(cut['roi'])}, "
                     f"{percent(cut['response_share'])} of responses")
    return "\n".join(lines)


def describe(summary: dict[str, Any]) -> str:
    """The input summary: one row per column, then the correlation matrix."""
    cols = ["column", "type", "nulls", "distinct", "min", "max", "mean", "std", "p5", "p50", "p95", "skew"]
    counts = ("nulls", "distinct")  # an id column's statistics are ids too, its counts are not
    rows = [[number(e.get(c), as_id=is_id(str(e["column"])) and c not in counts) for c in cols]
            for e in summary["columns"]]
    text = [f"{summary['input']}: {number(summary['rows'])} rows, {len(summary['columns'])} columns",
            grid(cols, rows, [True, True] + [False] * (len(cols) - 2))]
    corr = summary["correlation"]
    if len(corr["columns"]) > 1:
        header = ["correlation"] + corr["columns"]
        body = [[a] + [number(v, digits=2) for v in row] for a, row in zip(corr["columns"], corr["matrix"])]
        text += ["", grid(header, body, [True] + [False] * len(corr["columns"]))]
    return "\n".join(text)


def predict_summary(result: dict[str, Any], out: str) -> str:
    sizes = ", ".join(f"{j}: {number(s)}" for j, s in enumerate(result["segment_sizes"]))
    return (f"assigned {number(result['rows_used'])} of {number(result['rows'])} rows to {result['k']} segments "
            f"({sizes}); wrote {out}")


def rules(found: dict[str, Any]) -> str:
    """``segment explain``: the overall fidelity, then one line per segment: its fidelity and rule."""
    lines = [f"rules of a depth-{found['depth']} decision tree (fitted on {number(found['sample'])} customers) "
             f"reproduce the segment of {percent(found['fidelity'])} of {number(found['rows'])} customers"]
    for s in found["segments"]:
        rule = s["rule"] or "no rule at this depth (its customers fall under other segments' rules)"
        lines.append(f"segment {s['segment']} {s['name']}: fidelity {percent(s['fidelity'])}, precision "
                     f"{percent(s['precision'])}: {rule}")
    return "\n".join(lines)


def migration(matrix: pl.DataFrame) -> str:
    """The migration matrix: one row per period-A segment (and ``new``), one column per period-B
    segment (and ``gone``); each cell the customers and, in brackets, their share of the row."""
    cols = [c for c in matrix.columns if c != "from_segment"]
    rows = []
    for row in matrix.iter_rows():
        counts = list(row[1:])
        total = sum(counts)
        rows.append([f"{row[0]}"] + [f"{number(v)} ({percent(v / total if total else None)})" for v in counts]
                    + [number(total)])
    return grid(["from \\ to"] + cols + ["total"], rows, [True] + [False] * (len(cols) + 1))


def movements(summary: dict[str, Any]) -> str:
    """How many stayed, moved, are new or gone, then the largest movements in words."""
    total = summary["customers"]
    share = (lambda n: percent(n / total if total else None))  # noqa: E731
    lines = [f"{number(total)} customers in either period: {number(summary['stayed'])} stayed in their segment "
             f"({share(summary['stayed'])}), {number(summary['moved'])} moved ({share(summary['moved'])}), "
             f"{number(summary['new'])} new, {number(summary['gone'])} gone, {number(summary['unsegmented'])} "
             "unsegmented (a missing value) in A or B"]
    if summary["pairing"] == "centroid distance":
        lines.append("segments paired by centroid distance: "
                     + ", ".join(f"A {i} = B {j}" for i, j in summary["pairs"]))
    lines += [m["text"] for m in summary["moves"]]
    return "\n".join(lines)


def drift(frame: pl.DataFrame, features: Sequence[str]) -> str:
    """drift.parquet: sizes and shares per segment, then per feature the shift of its mean (own
    units) and, in brackets, its PSI."""
    labels = ["all" if s is None else str(s) for s in frame["segment"].to_list()]
    sizes = [[label, str(name), number(a), number(b), f"{c:+,}", percent(sa), percent(sb),
              f"{sc * 100:+.1f} pts" if sc is not None else "-"]
             for label, name, a, b, c, sa, sb, sc in zip(labels, *(frame[c].to_list() for c in (
                 "name", "customers_a", "customers_b", "customers_change", "share_a", "share_b", "share_change")))]
    head = ["segment", "name", "customers A", "customers B", "change", "share A", "share B", "share change"]
    shift_rows = [[f] + [f"{shift_text(s)} ({'-' if p is None else f'{p:.3f}'})" for s, p in
                         zip(frame[f"{f}_shift"].to_list(), frame[f"{f}_psi"].to_list())] for f in features]
    return "\n".join([grid(head, sizes, [False, True] + [False] * 6), "",
                      "mean shift in own units (PSI), per segment:",
                      grid(["feature"] + labels, shift_rows, [True] + [False] * len(labels))])


def shift_text(value: float | None) -> str:
    if value is None:
        return "-"
    return ("+" if value > 0 else "") + number(value, digits=3)


def plan(frame: pl.DataFrame, summary: dict[str, Any], out: str) -> str:
    """``segment plan``: the per-segment table, then the test and what was written."""
    shown = frame.select("segment", "name", "customers", "base_rate", "target_rate", "holdout_needed", "holdout",
                         "treated", "holdout_share", "power", "min_detectable_lift", "large_enough")
    small = frame.filter(~pl.col("large_enough"))["segment"].to_list()
    share = "the smallest holdout that reaches the power" if summary["holdout_share"] is None else \
        f"a {percent(summary['holdout_share'])} holdout in every segment"
    lines = [table(shown),
             f"test: detect a lift of {number(summary['lift'])} in response rate (two-sided, alpha "
             f"{number(summary['alpha'])}, power {percent(summary['power'])}), {share}; seed {summary['seed']}"]
    if small:
        lines.append(f"too small to detect the lift: segment(s) {', '.join(map(str, small))} (split anyway; "
                     "their results will be flagged)")
    held = int(frame["holdout"].sum())
    lines.append(f"wrote {out}: {number(int(frame['customers'].sum()))} customers, {number(held)} in holdout")
    return "\n".join(lines)


def measure(frame: pl.DataFrame, summary: dict[str, Any], out: str) -> str:
    """``segment measure``: lifts with their intervals per segment, then what was matched."""
    shown = frame.select("segment", "name", "treated", "treated_rate", "holdout", "holdout_rate", "lift",
                         "lift_low", "lift_high", "p_value", "incremental_revenue", "roi", "conclusive")
    lines = [table(shown)]
    for row in frame.iter_rows(named=True):
        if row["note"]:
            where = "all segments" if row["segment"] is None else f"segment {row['segment']}"
            lines.append(f"{where}: {row['note']}")
    lines.append(f"lift: treated rate - holdout rate, with its {percent(summary['confidence'])} interval; "
                 f"cost per contact {number(summary['cost_per_contact'])}, revenue per response "
                 f"{number(summary['revenue_per_response'])}")
    lines.append(f"matched {number(summary['matched'])} of {number(summary['outcome_rows'])} outcome rows to the "
                 f"plan; {number(summary['unknown_ids'])} ids not in the plan; {number(summary['without_outcome'])} "
                 f"planned customers without an outcome" + (f"; {number(summary['missing_response'])} with no "
                                                            "response value" if summary["missing_response"] else ""))
    lines.append(f"wrote {out}")
    return "\n".join(lines)
