"""``segment report``: one self-contained HTML file for a run directory.

Plotly draws the charts (see ``engine.outputs.charts``); its JavaScript is embedded once, inline, so the
file opens offline with no CDN. The figures are embedded as JSON in a ``<script
type="application/json">`` block and drawn by a few lines of our own script, which marks every
chart ``data-rendered`` once Plotly has drawn it and records script errors in ``#report-errors``
(the browser test reads both).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import polars as pl

from engine.insight.migration import matrix
from engine.outputs import charts
from engine.outputs.write import atomic_file
from engine.outputs.rundir import RunDir, read_run, recorded_option

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1300px;padding:0 24px 48px;color:#222}
h1{margin-top:28px}h2{margin-top:40px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{padding:4px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f5f5f5}td.t,th.t{text-align:left}.kpi{display:inline-block;margin:6px 18px 6px 0}
.kpi b{display:block;font-size:22px}.note{color:#666;font-size:13px}.scroll{overflow-x:auto}
"""

#: Runs first, before Plotly's script: script errors and console.error calls are kept for DRAW.
CATCH = """
window.reportErrors = [];
window.addEventListener("error", function (e) { window.reportErrors.push(e.message); });
window.addEventListener("unhandledrejection", function (e) { window.reportErrors.push(String(e.reason)); });
(function () {
  var original = console.error;
  console.error = function () {
    window.reportErrors.push(Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
"""

DRAW = """
(function () {
  var errors = document.getElementById("report-errors");
  function record(message) {
    var item = document.createElement("li");
    item.textContent = String(message);
    errors.appendChild(item);
    errors.hidden = false;
    document.body.setAttribute("data-errors", String(errors.children.length));
  }
  window.reportErrors.forEach(record);
  window.reportErrors = {push: record};
  var figures = JSON.parse(document.getElementById("report-figures").textContent);
  var done = 0, names = Object.keys(figures);
  names.forEach(function (id) {
    var fig = figures[id];
    try {
      Plotly.newPlot(id, fig.data, fig.layout, {responsive: true, displaylogo: false}).then(function (gd) {
        gd.setAttribute("data-rendered", "1");
        done += 1;
        if (done === names.length) { document.body.setAttribute("data-charts-rendered", String(done)); }
      }, function (err) { record(id + ": " + err); });
    } catch (err) { record(id + ": " + err); }
  });
})();
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cell(value: Any, fmt: str = "") -> str:
    if value is None:
        return '<td>-</td>'
    if isinstance(value, str):
        return f'<td class="t">{esc(value)}</td>'
    if fmt == "%":
        return f"<td>{value:.1%}</td>"
    if isinstance(value, float):
        return f"<td>{value:,.0f}</td>" if abs(value) >= 1000 else f"<td>{value:.3g}</td>"
    return f"<td>{value:,}</td>" if isinstance(value, int) else f"<td>{esc(value)}</td>"


def html_table(frame: pl.DataFrame, percent: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"t" if frame.schema[c] == pl.String else ""}">{esc(c)}</th>' for c in frame.columns)
    body = "".join("<tr>" + "".join(cell(v, "%" if c in percent else "") for c, v in row.items()) + "</tr>"
                   for row in frame.iter_rows(named=True))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def kpis(items: list[tuple[str, str]]) -> str:
    return "".join(f'<div class="kpi"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in items)


def profile_features(run: RunDir) -> list[str]:
    """The features of the run, in order, that have z-scores in the profile table."""
    names = [f for f in run.metrics.get("features", []) if f"{f}_z" in run.profiles.columns]
    return names or [c[:-2] for c in run.profiles.columns if c.endswith("_z")]


class Figures:
    """The report's Plotly figures as JSON, by the id of the ``<div>`` each is drawn into."""

    def __init__(self) -> None:
        self.json: dict[str, Any] = {}

    def chart(self, fig_id: str, fig) -> str:
        self.json[fig_id] = json.loads(fig.to_json())
        return f'<div id="{fig_id}" class="chart"></div>'


def summary_section(m: dict[str, Any], overall: dict[str, Any]) -> str:
    """Key figures, the run's input, spec, features and seed, and its warnings."""
    sil = "n/a" if m.get("silhouette") is None else f"{m['silhouette']:.3f}"
    summary = [("segments", str(m["k"])), ("customers", f"{m['rows']:,}"), ("segmented", f"{m['rows_used']:,}"),
               ("dropped for missing values", f"{m['rows_dropped']:,}"), ("silhouette", sil),
               ("inertia (scaled SSE)", f"{m['inertia']:.4g}"), ("seconds", f"{m['seconds']['total']:.2f}")]
    conc = overall.get("revenue_concentration")
    if conc:
        summary.append(("revenue from the top 20% of customers", f"{conc['top20']:.1%}"))
    return ("<h2>Run summary</h2>" + kpis(summary)
            + f'<p class="note">input {esc(", ".join(m.get("input", {}).get("files", [])))}; spec {esc(recorded_option(m, "features", "spec"))}; '
            f'features {esc(", ".join(m.get("features", [])))}; seed {esc(m.get("seed"))}; '
            f'rows with a missing feature are left out of every per-segment figure.</p>'
            + "".join(f'<p class="note">warning: {esc(w)}</p>' for w in m.get("warnings", [])))


def segments_section(profiles: pl.DataFrame, overall: dict[str, Any], figures: Figures) -> str:
    """Names, actions, sizes and business columns per segment; revenue concentration."""
    cols = ["segment", "name", "action", "size", "share"]
    cols += [c for c in ("revenue_share", "revenue_index", "revenue_top20_share", "response_rate", "response_lift")
             if c in profiles.columns]
    text = ("<h2>Segments: names and recommended actions</h2>"
            + html_table(profiles.select(cols), percent=("share", "revenue_share", "revenue_top20_share",
                                                         "response_rate"))
            + figures.chart("chart-sizes", charts.sizes_figure(profiles)))
    conc = overall.get("revenue_concentration")
    if conc:
        rows = [{"customers": "all segmented", **{k: v for k, v in conc.items()}}]
        rows += [{"customers": f"segment {r['segment']}", "top10": r["revenue_top10_share"],
                  "top20": r["revenue_top20_share"], "top25": r["revenue_top25_share"]}
                 for r in profiles.iter_rows(named=True)]
        text += ("<h3>Revenue concentration: share of revenue from the top 10%, 20% and 25% of customers</h3>"
                 + html_table(pl.DataFrame(rows), percent=("top10", "top20", "top25")))
    return text


def profiles_section(run: RunDir, figures: Figures) -> str:
    """The z-score heatmap and the per-segment means and medians."""
    profiles = run.profiles
    features = profile_features(run)
    return ("<h2>Profiles</h2>" + figures.chart("chart-heatmap", charts.heatmap_figure(profiles, features))
            + html_table(profiles.select("segment", *[f"{f}_{s}" for f in features for s in ("mean", "median")])))


def impact_section(run: RunDir, insight: dict[str, Any], figures: Figures) -> str:
    """The campaign table (segments ranked by profit) and its gains chart."""
    imp = insight.get("impact") or {}
    e = imp.get("everyone") or {}
    shown = run.impact.select("rank", "segment", "name", "action", "customers", "responses", "response_rate", "cost",
                              "revenue", "profit", "roi", "cum_customer_share", "cum_response_share", "cum_profit")
    note = (f"cost per contact {imp.get('cost_per_contact'):g}, revenue per response {imp.get('revenue_per_response'):g}. "
            f"Mass campaign: {e.get('customers', 0):,} contacted, {e.get('responses', 0):,} responses, "
            f"profit {e.get('profit', 0):,.0f}, ROI {e.get('roi') or 0:.1%}." if imp else "")
    return ("<h2>Business impact</h2>" + f'<p class="note">{esc(note)}</p>'
            + html_table(shown, percent=("response_rate", "roi", "cum_customer_share", "cum_response_share"))
            + figures.chart("chart-gains", charts.gains_figure(run.impact)))


def offers_section(run: RunDir) -> str:
    """Each segment's next best offer, then its affinity index (or lift) per item."""
    text = "<h2>Offers: what each segment over-indexes on</h2>"
    if "offer" in run.profiles.columns:
        text += html_table(run.profiles.select("segment", "name", "action", "offer"))
    for kind, title in (("category", "Affinity index by category"), ("channel", "Affinity index by channel"),
                        ("product", "Top products by lift")):
        part = run.offers.filter(pl.col("kind") == kind)
        if kind == "product":
            part = part.filter(pl.col("rank").is_not_null())
        if not part.height:
            continue
        text += f"<h3>{esc(title)}</h3>"
        if kind == "product":
            text += html_table(part.select("segment", "rank", "item", pl.col("value").alias("buyers"), "index"))
        else:
            wide = part.select("segment", "item", "index").pivot(on="item", index="segment", values="index")
            text += html_table(wide.sort("segment"))
    return text + ('<p class="note">index: the segment\'s share of spend (or purchases) on an item over the '
                   "population's; above 1, it buys more of it than the average customer. Products: the share of the "
                   "segment's purchases, with a minimum number of buyers.</p>")


def measure_section(run: RunDir) -> str:
    """The campaign test's results: lifts with their 95% intervals, flags for small holdouts."""
    shown = run.measure.select("segment", "name", "treated", "treated_rate", "holdout", "holdout_rate", "lift",
                               "lift_low", "lift_high", "p_value", "incremental_revenue", "roi", "conclusive", "note")
    return ("<h2>Campaign test: measured lift against the holdout</h2>"
            '<p class="note">lift = treated response rate - holdout response rate, with its 95% confidence interval '
            "(lift_low..lift_high); a segment with conclusive = false had too small a holdout to detect the "
            "planned lift.</p>"
            + html_table(shown, percent=("treated_rate", "holdout_rate", "roi")))


def eda_section(describe: dict[str, Any], figures: Figures) -> str:
    """The summary of the input columns the spec reads, and their correlations."""
    eda = pl.DataFrame([{k: (None if c.get(k) is None else str(c.get(k)) if k in ("min", "max") else c.get(k))
                         for k in ("column", "type", "nulls", "distinct", "min", "max", "mean", "p50", "skew")}
                        for c in describe["columns"]], infer_schema_length=None)
    corr = describe.get("correlation") or {}
    sample = describe.get("sample") or {}
    rows = sample.get("rows", describe["rows"])
    sampled = f" (statistics from a uniform sample of {rows:,} rows)" if rows < describe["rows"] else ""
    return (f"<h2>Input data (EDA)</h2><p class=\"note\">{describe['rows']:,} rows{sampled}; "
            "the columns the spec reads.</p>"
            + html_table(eda)
            + (figures.chart("chart-correlation", charts.correlation_figure(corr)) if len(corr.get("columns", [])) > 1 else ""))


def pca_section(pca: dict[str, Any]) -> str:
    """PCA before k-means: the variance each component explains and its loadings on the features."""
    ratio, cumulative = pca["explained_variance_ratio"], pca["cumulative_variance_ratio"]
    variance = pl.DataFrame({"component": [f"pc{j + 1}" for j in range(len(ratio))], "variance_share": ratio,
                             "cumulative_share": cumulative})
    loadings = pl.DataFrame(pca["loadings"])
    setting = ", ".join(f"{k} {v:g}" for k, v in pca["setting"].items())
    return ("<h2>PCA before k-means</h2>"
            + f'<p class="note">k-means ran on {pca["components"]} principal components of the {pca["features"]} '
            f'scaled features ({esc(setting)}; fitted on {pca["sample"]:,} rows), keeping {cumulative[-1]:.1%} '
            "of their variance. Profiles, names and rules are in the features' own units.</p>"
            + html_table(variance, percent=("variance_share", "cumulative_share"))
            + "<h3>Loadings (each component's weight on each scaled feature)</h3>" + html_table(loadings))


def rules_section(rules: dict[str, Any]) -> str:
    """``segment explain``'s rules: per segment its rule, fidelity and precision; per leaf its support
    and purity."""
    segments = pl.DataFrame([{"segment": s["segment"], "name": s["name"], "rule": s["rule"] or "(none at this depth)",
                              "customers": s["customers"], "fidelity": s["fidelity"], "precision": s["precision"]}
                             for s in rules["segments"]], infer_schema_length=None)
    leaves = pl.DataFrame([{"leaf": leaf["leaf"], "segment": leaf["segment"], "rule": leaf["rule"],
                            "customers": leaf["customers"], "support": leaf["support"], "purity": leaf["purity"]}
                           for leaf in rules["leaves"]], infer_schema_length=None)
    fidelity = rules["fidelity"] or 0.0
    return ("<h2>Rules</h2>"
            + f'<p class="note">A depth-{rules["depth"]} decision tree on the input columns the spec uses, fitted on '
            f'{rules["sample"]:,} customers, read off as rules; they put {fidelity:.1%} of the {rules["rows"]:,} '
            "segmented customers back in their segment (fidelity, measured on every row). rules.sql has them as "
            "one CASE expression and one WHERE clause per segment.</p>"
            + html_table(segments, percent=("fidelity", "precision"))
            + "<h3>Leaves: support (share of customers) and purity (share in the leaf's segment)</h3>"
            + html_table(leaves, percent=("support", "purity")))


def migration_section(run: RunDir, figures: Figures) -> str:
    """A refresh's migration (heatmap of where each earlier segment's customers went) and drift."""
    summary = run.metrics.get("migration") or {}
    names_b = run.profiles["name"].to_list()
    earlier = (run.metrics.get("refresh") or {}).get("from", "the earlier run")
    moves = "".join(f"<li>{esc(m['text'])}</li>" for m in summary.get("moves", []))
    sizes = run.drift.select("segment", "name", "customers_a", "customers_b", "customers_change", "share_a", "share_b",
                             "share_change")
    shifts = run.drift.select("segment", *[c for c in run.drift.columns if c.endswith(("_shift", "_psi"))])
    return ("<h2>Migration from the earlier period</h2>"
            + f'<p class="note">Period A is {esc(earlier)}; period B this run. {summary.get("stayed", 0):,} customers '
            f'stayed in their segment, {summary.get("moved", 0):,} moved, {summary.get("new", 0):,} are new and '
            f'{summary.get("gone", 0):,} gone.</p>' + (f"<ul>{moves}</ul>" if moves else "")
            + figures.chart("chart-migration", charts.migration_figure(matrix(run.migration), names_b, names_b))
            + "<h3>Drift per segment (the last row: all customers)</h3>"
            + html_table(sizes, percent=("share_a", "share_b", "share_change"))
            + "<h3>Mean shift per feature in its own units, and its population stability index (PSI)</h3>"
            + html_table(shifts))


def build_report(run: RunDir) -> str:
    """The report's HTML text."""
    from plotly.offline import get_plotlyjs  # plotly is heavy: off the CLI's start-up path

    m, profiles = run.metrics, run.profiles
    insight = m.get("insight") or {}
    overall = insight.get("overall") or {}
    figures = Figures()
    sections = [summary_section(m, overall), segments_section(profiles, overall, figures),
                profiles_section(run, figures)]
    if run.projection is not None:
        sections.append("<h2>PCA projection</h2>"
                        + figures.chart("chart-projection", charts.projection_figure(run.projection, profiles,
                                                                                     insight.get("projection") or {})))
    if m.get("pca"):
        sections.append(pca_section(m["pca"]))
    if run.sweep is not None and run.sweep_json is not None:
        sections.append("<h2>Choosing k</h2>" + f'<p class="note">{esc(run.sweep_json.get("reason", ""))}</p>'
                        + figures.chart("chart-sweep", charts.sweep_figure(run.sweep, run.sweep_json["recommended_k"],
                                                                           run.sweep_json.get("knee"))))
    if run.rules is not None:
        sections.append(rules_section(run.rules))
    if run.migration is not None and run.drift is not None:
        sections.append(migration_section(run, figures))
    if run.impact is not None:
        sections.append(impact_section(run, insight, figures))
    if run.offers is not None:
        sections.append(offers_section(run))
    if run.measure is not None:
        sections.append(measure_section(run))
    if run.describe is not None:
        sections.append(eda_section(run.describe, figures))
    data = json.dumps(figures.json, allow_nan=False).replace("</", "<\\/")
    title = f"Segmentation report: {run.path.name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style><script>{CATCH}</script><script>{get_plotlyjs()}</script></head><body>"
            f"<h1>{esc(title)}</h1><ul id=\"report-errors\" hidden></ul>{''.join(sections)}"
            f'<script type="application/json" id="report-figures">{data}</script><script>{DRAW}</script></body></html>')


def write_report(run_dir: str | Path, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``); returns the path."""
    run = read_run(run_dir)
    path = Path(out) if out is not None else run.path / "report.html"
    text = build_report(run)
    with atomic_file(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
