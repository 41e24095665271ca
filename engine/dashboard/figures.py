"""The dashboard's own charts (Plotly), beside the report's in ``engine.outputs.charts``, which
the dashboard reuses for the heatmap, the segment sizes and the gains curve."""

from __future__ import annotations

import polars as pl


def distribution_figure(hist: pl.DataFrame, column: str, segment_label: str):
    """One column's histogram in a segment against the population (shares of rows per bin)."""
    import plotly.graph_objects as go  # plotly stays off the CLI's start-up path

    mids = ((hist["low"] + hist["high"]) / 2).to_list()
    width = float(hist["high"][0] - hist["low"][0]) if hist.height else 1.0
    fig = go.Figure()
    fig.add_trace(go.Bar(x=mids, y=hist["population"].to_list(), width=width, name="population",
                         marker={"color": "rgba(128,128,128,0.45)"}))
    fig.add_trace(go.Bar(x=mids, y=hist["segment"].to_list(), width=width, name=segment_label,
                         marker={"color": "rgba(31,119,180,0.65)"}))
    fig.update_layout(title=f"{column}: {segment_label} against the population", barmode="overlay",
                      yaxis={"tickformat": ".0%", "title": "share of rows"}, xaxis={"title": column}, height=380,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def gains_with_cutoff(fig, cutoff_share: float | None):
    """The report's gains figure with the best cut-off marked on both panels."""
    if cutoff_share is not None:
        fig.add_vline(x=cutoff_share, line_dash="dash", line_color="green", row=1, col=1)
        fig.add_vline(x=cutoff_share, line_dash="dash", line_color="green", row=1, col=2,
                      annotation_text="best cut-off")
    return fig


def migration_figure(matrix: pl.DataFrame):
    """Customers from run A's segments (rows) to run B's (columns), with each row's shares."""
    import plotly.graph_objects as go  # plotly stays off the CLI's start-up path

    rows = matrix.columns[0]
    targets = matrix.columns[1:]
    counts = [[row[t] for t in targets] for row in matrix.iter_rows(named=True)]
    shares = [[(v / sum(r) if sum(r) else 0.0) for v in r] for r in counts]
    text = [[f"{v:,}<br>{s:.0%}" for v, s in zip(r, sr)] for r, sr in zip(counts, shares)]
    fig = go.Figure(go.Heatmap(z=shares, x=targets, y=matrix[rows].to_list(), text=text, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "row share"},
                               hovertemplate="%{y} -> %{x}: %{text}<extra></extra>"))
    fig.update_layout(title="Migration: customers from this run's segments (rows) to the other run's (columns)",
                      xaxis={"title": "other run", "type": "category"},
                      yaxis={"title": "this run", "type": "category", "autorange": "reversed"},
                      height=220 + 50 * matrix.height)
    return fig


def compare_sizes_figure(sizes: pl.DataFrame):
    """Segment shares of two runs side by side (``run``, ``label``, ``share``)."""
    import plotly.graph_objects as go  # plotly stays off the CLI's start-up path

    fig = go.Figure()
    for run in sizes["run"].unique(maintain_order=True).to_list():
        part = sizes.filter(pl.col("run") == run)
        fig.add_trace(go.Bar(x=part["share"].to_list(), y=part["label"].to_list(), orientation="h", name=run,
                             text=[f"{n:,}" for n in part["size"].to_list()], textposition="auto"))
    fig.update_layout(title="Segment sizes in the two runs", xaxis={"tickformat": ".0%"}, barmode="group",
                      yaxis={"autorange": "reversed"}, height=200 + 45 * sizes.height)
    return fig
