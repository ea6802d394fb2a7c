"""xaudit dashboard entry point: page config, navigation and the shared sidebar.

Run with ``python -m ui.launch`` (or ``xaudit demo``); ``XAUDIT_HOME`` (default ./workspace) picks the workspace.
"""

from __future__ import annotations

import streamlit as st

from xai_core.config import database_url, device, home

st.set_page_config(page_title="xaudit", page_icon=":material/radiology:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/data.py", title="Data", icon=":material/neurology:"),
    st.Page("views/models.py", title="Models", icon=":material/model_training:"),
    st.Page("views/explain.py", title="Explain", icon=":material/local_fire_department:"),
    st.Page("views/benchmark.py", title="Benchmark", icon=":material/target:"),
    st.Page("views/drift.py", title="Drift", icon=":material/moving:"),
]

navigation = st.navigation(PAGES)

with st.sidebar:
    st.caption("Workspace")
    st.code(str(home()), language=None)
    url = database_url()
    st.caption("Database: " + ("SQLite in the workspace" if url.startswith("sqlite") else "DATABASE_URL"))
    st.caption(f"Compute device: `{device()}`")

navigation.run()
