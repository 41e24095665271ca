"""What ``streamlit run`` is given: the dashboard page (``app.py``) as an ``st.App``, with the
route that streams CSV exports (``GET /export/<token>``, see ``export.py``) on the same server."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.routing import Route

from engine.dashboard.export import export_route

app = st.App(str(Path(__file__).with_name("app.py")), routes=[Route("/export/{token}", export_route)])
