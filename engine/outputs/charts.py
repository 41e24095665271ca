"""Charts as self-contained HTML (Plotly, with its JavaScript embedded once: works offline).

Plotly over hand-drawn SVG: interactive hover and zoom, and a well-kept library; the figures are
also saved as Plotly JSON so the HTML report can embed them without redrawing.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl


def sweep_figure(table: pl.DataFrame, recommended_k: int, knee: int | None):
    """Elbow (SSE), silhouette with its 95% interval, and stability against k."""
    import plotly.graph_objects as go  # plotly: off the start-up path
    from plotly.subplots import make_subplots

    km = table.filter(pl.col("algorithm") == "kmeans").sort("k")
    ks = km["k"].to_list()
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Elbow: within-cluster SSE", "Silhouette (95% interval)",
                                                        "Stability (mean ARI on resamples)"))
    fig.add_trace(go.Scatter(x=ks, y=km["inertia"].to_list(), mode="lines+markers", name="SSE"), 1, 1)
    sil, low, high = (km[c].to_list() for c in ("silhouette", "silhouette_low", "silhouette_high"))
    fig.add_trace(go.Scatter(
        x=ks, y=sil, mode="lines+markers", name="silhouette",
        error_y={"type": "data", "symmetric": False,
                 "array": [None if s is None else h - s for s, h in zip(sil, high)],
                 "arrayminus": [None if s is None else s - lo for s, lo in zip(sil, low)]},
    ), 1, 2)
    others = table.filter(pl.col("algorithm") != "kmeans")
    for row in others.iter_rows(named=True):
        fig.add_trace(go.Scatter(x=[row["k"]], y=[row["silhouette"]], mode="markers", name=row["algorithm"],
                                 marker={"symbol": "diamond", "size": 10}), 1, 2)
    if km["stability"].drop_nulls().len():
        fig.add_trace(go.Scatter(x=ks, y=km["stability"].to_list(), mode="lines+markers", name="stability"), 1, 3)
    for col in (1, 2, 3):
        fig.add_vline(x=recommended_k, line_dash="dash", line_color="green", row=1, col=col)
        if knee is not None and knee != recommended_k and col == 1:
            fig.add_vline(x=knee, line_dash="dot", line_color="grey", row=1, col=col)
        fig.update_xaxes(title_text="k", dtick=1, row=1, col=col)
    fig.update_layout(title=f"Choosing k: recommended k={recommended_k}", height=420, showlegend=True)
    return fig


def write_figure(fig, html: Path, json_path: Path | None = None) -> None:
    """Standalone HTML (JavaScript embedded) and, optionally, the figure as Plotly JSON."""
    fig.write_html(html, include_plotlyjs=True, full_html=True)
    if json_path is not None:
        json_path.write_text(fig.to_json(), encoding="utf-8")


def segment_labels(profiles: pl.DataFrame) -> list[str]:
    """"0 · High income · ..." for axis labels (names are unique, numbers keep them short to find)."""
    return [f"{s}: {n}" for s, n in zip(profiles["segment"].to_list(), profiles["name"].to_list())]


def sizes_figure(profiles: pl.DataFrame):
    """Customers per segment, with the revenue share beside the customer share when declared."""
    import plotly.graph_objects as go  # plotly: off the start-up path

    labels = segment_labels(profiles)
    fig = go.Figure(go.Bar(x=profiles["share"].to_list(), y=labels, orientation="h", name="share of customers",
                           text=[f"{s:,} customers" for s in profiles["size"].to_list()], textposition="auto"))
    if "revenue_share" in profiles.columns:
        fig.add_trace(go.Bar(x=profiles["revenue_share"].to_list(), y=labels, orientation="h", name="share of revenue"))
    fig.update_layout(title="Segment sizes", barmode="group", xaxis={"tickformat": ".0%"}, height=160 + 70 * profiles.height,
                      yaxis={"autorange": "reversed"}, margin={"l": 20})
    return fig


def heatmap_figure(profiles: pl.DataFrame, features: list[str]):
    """Segment mean z-scores against the population, one column per feature."""
    import plotly.graph_objects as go  # plotly: off the start-up path

    z = [[row[f"{f}_z"] for f in features] for row in profiles.iter_rows(named=True)]
    means = [[row[f"{f}_mean"] for f in features] for row in profiles.iter_rows(named=True)]
    text = [[("" if v is None else f"{v:.2f}") for v in r] for r in z]
    fig = go.Figure(go.Heatmap(z=z, x=features, y=segment_labels(profiles), colorscale="RdBu", reversescale=True,
                               zmid=0, text=text, texttemplate="%{text}", customdata=means,
                               hovertemplate="%{y}<br>%{x}: z=%{z:.2f}, mean=%{customdata:.4g}<extra></extra>",
                               colorbar={"title": "z"}))
    fig.update_layout(title="Profile heatmap: segment mean vs population (z-score)", height=200 + 60 * profiles.height,
                      yaxis={"autorange": "reversed"}, margin={"l": 20})
    return fig


def projection_figure(projection: pl.DataFrame, profiles: pl.DataFrame, info: dict):
    """The PCA sample, one colour per segment, with the segment centres."""
    import plotly.graph_objects as go  # plotly: off the start-up path

    labels = segment_labels(profiles)
    fig = go.Figure()
    for j, label in enumerate(labels):
        part = projection.filter(pl.col("segment") == j)
        fig.add_trace(go.Scatter(x=part["pc1"].to_list(), y=part["pc2"].to_list(), mode="markers", name=label,
                                   marker={"size": 4, "opacity": 0.6}))
    centres = info.get("centres") or []
    if centres:
        fig.add_trace(go.Scatter(x=[c[0] for c in centres], y=[c[1] for c in centres], mode="markers+text",
                                 text=[str(j) for j in range(len(centres))], textposition="top center", name="centres",
                                 marker={"symbol": "x", "size": 14, "color": "black"}))
    var = info.get("explained_variance") or [0.0, 0.0]
    fig.update_layout(title=f"PCA projection of {projection.height:,} sampled customers",
                      xaxis_title=f"PC1 ({var[0]:.0%} of variance)", yaxis_title=f"PC2 ({var[1]:.0%} of variance)",
                      height=560)
    return fig


def gains_figure(impact: pl.DataFrame):
    """Cumulative share of responses and cumulative profit as segments are contacted in ROI order,
    against a mass campaign (everyone contacted; random targeting lies on the diagonal)."""
    import plotly.graph_objects as go  # plotly: off the start-up path
    from plotly.subplots import make_subplots

    steps = impact.filter(pl.col("scope") != "everyone")
    everyone = impact.filter(pl.col("scope") == "everyone").row(0, named=True)
    x = [0.0, *steps["cum_customer_share"].to_list()]
    labels = ["none", *[f"+ {n}" for n in steps["name"].to_list()]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Cumulative gains: share of responses",
                                                        "Cumulative profit"))
    fig.add_trace(go.Scatter(x=x, y=[0.0, *steps["cum_response_share"].fill_null(0).to_list()], mode="lines+markers",
                             name="segments by ROI", text=labels), 1, 1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="random / mass campaign",
                             line={"dash": "dash", "color": "grey"}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=[0.0, *steps["cum_profit"].to_list()], mode="lines+markers",
                             name="profit, segments by ROI", text=labels), 1, 2)
    fig.add_trace(go.Scatter(x=[1.0], y=[everyone["profit"]], mode="markers", name="mass campaign profit",
                             marker={"symbol": "diamond", "size": 12, "color": "red"}), 1, 2)
    for col in (1, 2):
        fig.update_xaxes(title_text="share of customers contacted", tickformat=".0%", row=1, col=col)
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    fig.update_layout(title="Targeting segments in order of expected ROI vs a mass campaign", height=460)
    return fig


def correlation_figure(correlation: dict):
    """The correlation matrix of the numeric input columns."""
    import plotly.graph_objects as go  # plotly: off the start-up path

    cols = correlation["columns"]
    fig = go.Figure(go.Heatmap(z=correlation["matrix"], x=cols, y=cols, colorscale="RdBu", reversescale=True,
                               zmin=-1, zmax=1, colorbar={"title": "r"}))
    fig.update_layout(title="Correlation of the numeric input columns", height=260 + 22 * len(cols),
                      yaxis={"autorange": "reversed"})
    return fig


def migration_figure(matrix: pl.DataFrame, names_a: list[str], names_b: list[str]):
    """The migration matrix as a heatmap of row shares (where each period-A segment's customers
    went), the customer counts written in the cells."""
    import plotly.graph_objects as go  # plotly: off the start-up path

    rows, cols = matrix["from_segment"].to_list(), [c for c in matrix.columns if c != "from_segment"]
    counts = [[int(v) for v in row[1:]] for row in matrix.iter_rows()]
    shares = [[v / sum(r) if sum(r) else 0.0 for v in r] for r in counts]

    def label(segment: str, names: list[str]) -> str:
        return f"{segment}: {names[int(segment)]}" if segment.isdigit() and int(segment) < len(names) else segment

    fig = go.Figure(go.Heatmap(z=shares, x=[label(c, names_b) for c in cols], y=[label(r, names_a) for r in rows],
                               colorscale="Blues", zmin=0, zmax=1, text=[[f"{v:,}" for v in r] for r in counts],
                               texttemplate="%{text}", colorbar={"title": "row share", "tickformat": ".0%"},
                               hovertemplate="from %{y}<br>to %{x}: %{text} customers (%{z:.1%} of the row)"
                                             "<extra></extra>"))
    fig.update_layout(title="Migration: where each segment's customers went (row shares; counts in the cells)",
                      xaxis={"title": "period B segment", "tickangle": -20, "automargin": True},
                      yaxis={"title": "period A segment", "autorange": "reversed", "automargin": True},
                      height=320 + 60 * len(rows), margin={"l": 20})
    return fig
