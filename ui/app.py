"""xaudit dashboard entry point: page config, sign-in, navigation and the shared sidebar.

Run with ``python -m ui.launch`` (or ``xaudit demo``); ``XAUDIT_HOME`` (default ./workspace) picks the workspace.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from ui.auth import allowed, current_actor, refuse_page, sign_in_page, sign_out
from xai_core.config import database_url, device, home
from xai_core.errors import XAuditError

st.set_page_config(page_title="xaudit", page_icon=":material/radiology:", layout="wide")

# (script, title, icon); the first is the default page, for reviewers their Review page
PAGES = [
    ("views/overview.py", "Overview", ":material/home:"),
    ("views/data.py", "Data", ":material/neurology:"),
    ("views/models.py", "Models", ":material/model_training:"),
    ("views/explain.py", "Explain", ":material/local_fire_department:"),
    ("views/benchmark.py", "Benchmark", ":material/target:"),
    ("views/drift.py", "Drift", ":material/moving:"),
    ("views/review.py", "Review", ":material/rate_review:"),
    ("views/results.py", "Results", ":material/fact_check:"),
    ("views/admin.py", "Admin", ":material/admin_panel_settings:"),
]


def pages(default: str) -> list:
    """Every page, with ``default`` (a script) as the landing page."""
    return [st.Page(script, title=title, icon=icon, default=script == default) for script, title, icon in PAGES]


try:
    actor = current_actor()
except XAuditError as exc:  # the database cannot be opened: one line, nothing else can work
    st.error(str(exc))
    st.stop()
if actor is None:
    # The sign-in form answers every page's URL and keeps it (with its query): after the sign-in the
    # rerun opens that page, so a deep link survives; an unknown path would be Streamlit's "Page not found".
    st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="sign-in", default=True)]
                  + [st.Page(sign_in_page, title="Sign in", url_path=Path(script).stem) for script, _, _ in PAGES],
                  position="hidden").run()
    st.stop()

# a reviewer's sidebar lists only their pages; any other page they open by URL is refused below
default = "views/overview.py" if actor.is_admin else "views/review.py"
all_pages = pages(default)
navigation = st.navigation(all_pages, position="sidebar" if actor.is_admin else "hidden")


def path_of(page: StreamlitPage) -> str:
    """The page's url path for access checks: the default page is served at the root (its
    ``url_path`` is ""), so it is checked under its own name."""
    return page.url_path or Path(default).stem


with st.sidebar:
    if not actor.is_admin:
        for page in all_pages:
            if allowed(actor, path_of(page)):
                st.page_link(page)
    if actor.name:
        sign_out(actor)
    st.caption("Workspace")
    st.code(str(home()), language=None)
    url = database_url()
    st.caption("Database: " + ("SQLite in the workspace" if url.startswith("sqlite") else "DATABASE_URL"))
    st.caption(f"Compute device: `{device()}`")

if not allowed(actor, path_of(navigation)):
    refuse_page(actor, navigation.title)
st.session_state["actor"] = actor  # the pages read who is acting from here
navigation.run()
