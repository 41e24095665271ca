"""What ``streamlit run`` is given: the dashboard page (``app.py``) as an ``st.App``, with the
route that streams CSV exports (``GET /export/<token>``, see ``export.py``) on the same server.

Importing this module also imports what the page needs and draws one chart (about 2 s here),
before the server answers ``/_stcore/health``: the first visitor does not wait for imports."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.routing import Route

import engine.api  # noqa: F401  (loaded before the server answers: the input fingerprint, predict's kernels)
from engine.dashboard import compare, data, figures, predict, whatif  # noqa: F401  (likewise, the page's modules)
from engine.dashboard.export import export_route
from engine.outputs import charts  # noqa: F401

PAGE = Path(__file__).with_name("app.py")


def warm() -> None:
    import plotly.graph_objects as go  # plotly builds its figure classes on first use

    go.Figure([go.Heatmap(z=[[0.0]]), go.Bar(x=[0.0], y=["a"])]).to_json()


warm()
app = st.App(str(PAGE), routes=[Route("/export/{token}", export_route)])
