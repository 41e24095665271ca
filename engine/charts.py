"""Charts as self-contained HTML (Plotly, with its JavaScript embedded once: works offline).

Plotly over hand-drawn SVG: interactive hover and zoom, and a well-kept library; the figures are
also saved as Plotly JSON so the HTML report can embed them without redrawing.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl


def sweep_figure(table: pl.DataFrame, recommended_k: int, knee: int | None):
    """Elbow (SSE), silhouette with its 95% interval, and stability against k."""
    import plotly.graph_objects as go
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
