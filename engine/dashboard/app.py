"""The Streamlit script of ``segment dashboard`` (run by ``streamlit run``, through ``asgi.py``).

The run directory comes from the environment (``SEGMENT_DASHBOARD_RUN``, and
``SEGMENT_DASHBOARD_COMPARE`` for ``--compare``), set by ``serve.py``; nothing in the page names
a path. The tabs are lazy (``st.tabs(..., on_change="rerun")``): only the open tab runs, so the
first paint is the Overview alone. Run data is cached with ``st.cache_data`` keyed on the run
directory's stamp (path, modification time, inode); the large shared objects (the row source,
filter columns, labels) with ``st.cache_resource`` under the same key, so every session reads
them once; each session keeps one read-only DuckDB connection in ``st.session_state``.
"""

from __future__ import annotations

import os

import polars as pl
import pyarrow as pa
import streamlit as st

from engine.dashboard import data, export, predict, whatif
from engine.dashboard.compare import compare_sizes, migration_matrix
from engine.dashboard.figures import compare_sizes_figure, distribution_figure, gains_with_cutoff, migration_figure
from engine.dashboard.rundata import Run, load_run, stamp
from engine.dashboard.serve import COMPARE_ENV, RUN_ENV
from engine.duck.dashboard import DashboardDB, RowFilter, RowSource
from engine.errors import InputError
from engine.outputs import charts

TABS = ("Overview", "Explore", "Campaign what-if", "Predict")
COMPARE_TAB = "Compare"
UNSEGMENTED = "unsegmented (missing values)"


@st.cache_data(show_spinner=False)
def cached_run(key: tuple) -> Run:
    return load_run(key[0])


@st.cache_resource(show_spinner=False)
def cached_source(key: tuple) -> RowSource | str:
    """The run's row source, or why the customer table is not available."""
    try:
        return data.row_source(cached_run(key))
    except InputError as exc:
        return str(exc)


@st.cache_resource(show_spinner=False, max_entries=64)
def cached_column(key: tuple, name: str) -> pa.Array:
    source = cached_source(key)
    return data.column_values(cached_run(key), source, name)


@st.cache_resource(show_spinner=False)
def cached_labels(key: tuple) -> pl.Series:
    return data.segment_labels(cached_run(key))


@st.cache_data(show_spinner=False)
def cached_range(key: tuple, name: str) -> tuple[float, float]:
    return data.value_range(cached_column(key, name))


@st.cache_data(show_spinner=False, max_entries=256)
def cached_distribution(key: tuple, name: str, segment: int) -> pl.DataFrame:
    run = cached_run(key)
    sample = data.run_sample(run.metrics["rows"], run.metrics["seed"])
    return data.distribution(cached_column(key, name), cached_labels(key), segment, sample)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_whatif(key: tuple, cost: float, revenue: float, contacted: tuple[int, ...]) -> whatif.WhatIf:
    return whatif.what_if(key[0], cost, revenue, contacted)


@st.cache_data(show_spinner=False)
def cached_migration(key: tuple, other: tuple) -> pl.DataFrame | str:
    try:
        return migration_matrix(cached_run(key), cached_run(other))
    except InputError as exc:
        return str(exc)


def session_db(key: tuple, source: RowSource) -> DashboardDB:
    """This session's read-only connection (one per session: connections are not thread-safe)."""
    state = st.session_state
    if state.get("db_key") != key:
        if "db" in state:
            state["db"].close()
        state["db"], state["db_key"] = DashboardDB(source), key
    return state["db"]


def fmt(value, pattern: str = "{:,.0f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def segment_label(j: int, names: dict[int, str]) -> str:
    return f"{j}: {names.get(j, '')}"


def kpis(run: Run) -> None:
    m = run.metrics
    conc = ((m.get("insight") or {}).get("overall") or {}).get("revenue_concentration") or {}
    cards = [("Customers", fmt(m.get("rows"))), ("Segmented", fmt(m.get("rows_used"))),
             ("Dropped", fmt(m.get("rows_dropped"))), ("Segments (k)", fmt(m.get("k"))),
             ("Silhouette", fmt(m.get("silhouette"), "{:.3f}")),
             ("Top-20% revenue share", fmt(conc.get("top20"), "{:.1%}"))]
    for column, (label, value) in zip(st.columns(len(cards)), cards):
        column.metric(label, value)


def segment_cards(run: Run) -> None:
    profiles = run.profiles
    per_row = min(4, max(profiles.height, 1))
    rows = list(profiles.iter_rows(named=True))
    for start in range(0, len(rows), per_row):
        for column, row in zip(st.columns(per_row), rows[start:start + per_row]):
            with column.container(border=True):
                st.markdown(f"**{row['segment']}: {row['name']}**")
                st.caption(row.get("action") or "no action")
                if row.get("offer"):
                    st.caption(f"Offer: {row['offer']}")
                st.markdown(f"{row['size']:,} customers · {row['share']:.1%} of customers  \n"
                            f"revenue share {fmt(row.get('revenue_share'), '{:.1%}')} · "
                            f"response lift {fmt(row.get('response_lift'), '{:.2f}')}")


def overview(run: Run) -> None:
    kpis(run)
    for warning in run.metrics.get("warnings") or []:
        st.warning(warning)
    segment_cards(run)
    features = [f for f in run.metrics.get("features", []) if f"{f}_z" in run.profiles.columns]
    st.plotly_chart(charts.heatmap_figure(run.profiles, features), key="heatmap")
    st.plotly_chart(charts.sizes_figure(run.profiles), key="sizes")
    if run.outputs.rules:
        rules(run.outputs.rules)


def rules(found: dict) -> None:
    """``segment explain``'s rules (rules.json), one per segment with its fidelity."""
    st.subheader("Segment rules")
    st.caption(f"A depth-{found['depth']} decision tree's rules reproduce the segment of "
               f"{found['fidelity']:.1%} of {found['rows']:,} customers (measured on every row). "
               "The same rules as SQL are in rules.sql.")
    for s in found["segments"]:
        st.markdown(f"**{s['segment']}: {s['name']}** (fidelity {s['fidelity']:.1%})  \n"
                    f"`{s['rule'] or 'no rule at this depth'}`")


def sidebar_filters(key: tuple, run: Run, source: RowSource | str) -> RowFilter:
    """The customer filters (sidebar: they apply to Explore and to its export)."""
    names = run.names()
    bar = st.sidebar
    bar.header("Customer filters")
    options = [segment_label(j, names) for j in sorted(names)]
    has_dropped = (run.metrics.get("rows_dropped") or 0) > 0
    chosen = bar.multiselect("Segments", options + ([UNSEGMENTED] if has_dropped else []), default=options,
                             key="segments")
    picked = tuple(int(o.split(":", 1)[0]) for o in chosen if o != UNSEGMENTED)
    columns = {c.label: c.name for c in data.filter_columns(run)}
    ranges = []
    if isinstance(source, RowSource):
        for label in bar.multiselect("Ranges of", list(columns), key="range_columns"):
            low, high = cached_range(key, columns[label])
            if high <= low:
                bar.caption(f"{label}: one value ({low:g})")
                continue
            lo, hi = bar.slider(label, low, high, (low, high), key=f"range:{columns[label]}")
            if (lo, hi) != (low, high):
                ranges.append((columns[label], float(lo), float(hi)))
    id_text = bar.text_input("Customer id contains", key="id_text").strip()
    every = len(picked) == len(names) and UNSEGMENTED not in chosen
    return RowFilter(None if every else picked, UNSEGMENTED in chosen, tuple(ranges), id_text)


def explore(key: tuple, run: Run, source: RowSource | str, rows: RowFilter) -> None:
    if not isinstance(source, RowSource):
        st.info(f"The customer table needs the run's input: {source}.")
        return
    db = session_db(key, source)
    db.set_columns(pa.table({c: cached_column(key, c) for c in rows.columns()}) if rows.columns() else None)
    counts = data.matching(db, rows, run)
    total = sum(counts.values())
    names = run.names()
    st.markdown(f"**{total:,} customers match** "
                + " · ".join(f"{segment_label(j, names) if j is not None else UNSEGMENTED}: {n:,}"
                             for j, n in sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))))
    left, right = st.columns([1, 3])
    size = left.selectbox("Rows per page", data.PAGE_SIZES, index=1, key="page_size")
    pages = max(1, -(-total // size))
    if st.session_state.get("page", 1) > pages:
        st.session_state["page"] = pages
    number = right.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key="page")
    st.dataframe(data.page(db, rows, int(number), size, names), hide_index=True, key="customers")
    st.caption(f"page {int(number):,} of {pages:,} · rows {(int(number) - 1) * size + 1:,} to "
               f"{min(int(number) * size, total):,} of {total:,}" if total else "no customer matches the filters")
    export_link(key, source, rows, names, total)
    distributions(key, run)


def export_link(key: tuple, source: RowSource, rows: RowFilter, names: dict[int, str], total: int) -> None:
    st.subheader("Export")
    columns = tuple((c, cached_column(key, c)) for c in rows.columns())
    job = export.Export(source, rows, columns, names, export.file_name(rows, names))
    token = export.register(job)
    st.markdown(f"The {total:,} matching customers as CSV (`{job.file_name}`): every input column, then the "
                "segment, its name and the distance to its centre; streamed, so millions of rows download "
                "without filling memory.")
    st.link_button(f"Download {total:,} customers as CSV", f"export/{token}", disabled=total == 0, key="export")


def distributions(key: tuple, run: Run) -> None:
    st.subheader("Distributions: a segment against the population")
    names = run.names()
    columns = {c.label: c.name for c in data.filter_columns(run)}
    left, right = st.columns(2)
    label = left.selectbox("Feature or measure", list(columns), key="dist_column")
    segment = right.selectbox("Segment", sorted(names), format_func=lambda j: segment_label(j, names), key="dist_segment")
    hist = cached_distribution(key, columns[label], int(segment))
    st.plotly_chart(distribution_figure(hist, label, segment_label(int(segment), names)), key="distribution")
    sample = data.run_sample(run.metrics["rows"], run.metrics["seed"])
    st.caption("Segmented rows of the run's sample: " + ("every row." if sample is None else
               f"the uniform sample of {len(sample):,} rows the profiles' medians came from."))


def campaign(key: tuple, run: Run) -> None:
    if run.outputs.impact is None:
        st.info("This run has no impact.parquet: declare a response column and the campaign figures in the "
                "spec's [business] to get the what-if.")
        return
    recorded = (run.metrics.get("insight") or {}).get("impact") or {}
    base_cost, base_revenue = float(recorded.get("cost_per_contact", 1.0)), float(recorded.get("revenue_per_response", 1.0))
    left, right = st.columns(2)
    cost = left.slider("Cost per contact", 0.0, max(10.0, 4 * base_cost), base_cost, 0.1, key="cost")
    revenue = right.slider("Revenue per response", 0.0, max(50.0, 4 * base_revenue), base_revenue, 0.5, key="revenue")
    names = run.names()
    best = cached_whatif(key, float(cost), float(revenue), ()).best_cutoff
    chosen = st.multiselect("Segments contacted (default: the best cut-off)", sorted(names), default=best,
                            format_func=lambda j: segment_label(j, names), key="contacted")
    result = cached_whatif(key, float(cost), float(revenue), tuple(sorted(chosen)))
    e, c, cut = result.summary["everyone"], result.contacted, result.summary.get("best_cutoff") or {}
    cards = st.columns(3)
    cards[0].metric("Profit of the segments contacted", fmt(c["profit"]),
                    help=f"{c['customers']:,} contacted, {c['responses']:,} responses, ROI {fmt(c['roi'], '{:.1%}')}")
    cards[1].metric(f"Best cut-off: the top {cut.get('segments', 0)} segment(s) by ROI", fmt(cut.get("profit")),
                    help=f"ROI {fmt(cut.get('roi'), '{:.1%}')}")
    cards[2].metric("Mass campaign (everyone)", fmt(e["profit"]), help=f"ROI {fmt(e['roi'], '{:.1%}')}")
    st.caption(f"Contacting {len(chosen)} segment(s): {c['customers']:,} customers "
               f"({fmt(c['customer_share'], '{:.1%}')}), {c['responses']:,} responses "
               f"({fmt(c['response_share'], '{:.1%}')} of all), cost {fmt(c['cost'])}, revenue {fmt(c['revenue'])}, "
               f"profit {fmt(c['profit'])}, ROI {fmt(c['roi'], '{:.1%}')}.")
    st.dataframe(impact_styled(whatif.shown_table(result, tuple(chosen))), hide_index=True, key="impact")
    cut_share = None
    if cut:
        cut_share = cut["customers"] / e["customers"] if e["customers"] else None
    st.plotly_chart(gains_with_cutoff(charts.gains_figure(result.table), cut_share), key="gains")
    if run.outputs.measure is not None:
        campaign_test(run.outputs.measure)


MEASURE_COLUMNS = ("segment", "name", "treated", "treated_rate", "holdout", "holdout_rate", "lift", "lift_low",
                   "lift_high", "p_value", "incremental_revenue", "roi", "conclusive", "note")


def campaign_test(measured: pl.DataFrame) -> None:
    """``segment measure``'s results (measure.parquet): the lift per segment with its interval."""
    st.subheader("Campaign test against the holdout")
    st.caption("Lift = treated response rate - holdout response rate, with its 95% interval; a segment whose "
               "holdout is too small to conclude is flagged.")
    shown = measured.select([c for c in MEASURE_COLUMNS if c in measured.columns])
    st.dataframe(shown, hide_index=True, key="measure")


IMPACT_FORMATS = {"customers": "{:,}", "responses": "{:,}", "response_rate": "{:.1%}", "cost": "{:,.0f}",
                  "revenue": "{:,.0f}", "profit": "{:,.0f}", "roi": "{:.1%}", "cum_response_share": "{:.1%}",
                  "cum_profit": "{:,.0f}"}


def impact_styled(table: pl.DataFrame):
    """The impact table for the page: the best cut-off's rows highlighted, money and shares
    formatted (pandas' Styler, which st.dataframe draws)."""
    frame = table.to_pandas()
    for column in ("rank", "segment"):
        frame[column] = frame[column].astype("Int64")
    return frame.style.apply(lambda row: ["background-color: #d8f0d8" if row["best_cutoff"] else ""] * len(row),
                             axis=1).format(IMPACT_FORMATS, na_rep="-")


def prediction(run: Run) -> None:
    fields = predict.form_fields(run)
    st.caption("One customer, assigned as `segment predict` would: the model's feature pipeline, its fitted "
               "statistics and the same assignment kernel. Fields start at the population's median.")
    values = {}
    with st.form("predict"):
        columns = st.columns(3)
        for i, f in enumerate(fields):
            where = columns[i % 3]
            if f.kind == "category":
                values[f.column] = where.selectbox(f.column, f.options, key=f"in:{f.column}")
            elif f.kind == "date":
                values[f.column] = where.date_input(f.column, f.default, key=f"in:{f.column}")
            elif f.kind == "text":
                values[f.column] = where.text_input(f.column, f.default, key=f"in:{f.column}") or None
            elif f.kind == "integer":
                values[f.column] = where.number_input(f.column, value=f.default, step=1, key=f"in:{f.column}")
            else:
                values[f.column] = where.number_input(f.column, value=f.default, key=f"in:{f.column}")
        missing = st.multiselect("Missing values (these fields are left empty)", [f.column for f in fields],
                                 key="in:@missing")
        submitted = st.form_submit_button("Predict the segment")
    if not submitted:
        return
    try:
        result = predict.predict_values(run, fields, {**values, **{c: None for c in missing}})
    except InputError as exc:
        st.error(str(exc))
        return
    st.success(f"Segment {result.segment}: {result.name}")
    st.markdown(f"Recommended action: **{result.action or 'none'}**")
    st.dataframe(result.distances, hide_index=True, key="distances")


def comparison(key: tuple, other_key: tuple, run: Run, other: Run) -> None:
    st.markdown(f"This run: `{run.path}` · other run: `{other.path}`")
    sizes = compare_sizes(run, other)
    st.plotly_chart(compare_sizes_figure(sizes), key="compare_sizes")
    st.dataframe(sizes, hide_index=True, key="compare_table")
    matrix = cached_migration(key, other_key)
    if isinstance(matrix, str):
        st.info(f"No migration matrix: {matrix}.")
        return
    st.plotly_chart(migration_figure(matrix), key="migration")
    st.dataframe(matrix, hide_index=True, key="migration_table")


def guarded(render, *args) -> None:
    """Bad input in a view is one line in the page, not a traceback."""
    try:
        render(*args)
    except InputError as exc:
        st.error(str(exc))


def main() -> None:
    st.set_page_config(page_title="Segments", layout="wide")
    try:
        key = stamp(os.environ[RUN_ENV])
        run = cached_run(key)
        other_key = stamp(os.environ[COMPARE_ENV]) if os.environ.get(COMPARE_ENV) else None
        other = cached_run(other_key) if other_key else None
    except (InputError, KeyError, OSError) as exc:
        st.error(f"cannot open the run: {exc}")
        st.stop()
    st.title(f"Segments of {run.path.name}")
    st.caption(f"{run.path} · k={run.metrics.get('k')} · spec {run.outputs.option('features', 'spec')}")
    source = cached_source(key)
    rows = sidebar_filters(key, run, source)
    labels = [*TABS, *([COMPARE_TAB] if other else [])]
    tabs = st.tabs(labels, key="view", on_change="rerun")
    views = [(overview, (run,)), (explore, (key, run, source, rows)), (campaign, (key, run)), (prediction, (run,))]
    if other:
        views.append((comparison, (key, other_key, run, other)))
    for tab, (render, args) in zip(tabs, views):
        with tab:
            if tab.open:
                guarded(render, *args)


if __name__ == "__main__":  # streamlit runs the script as __main__; importing it draws nothing
    main()
