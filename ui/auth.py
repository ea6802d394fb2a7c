"""Who is using the dashboard: the sign-in form, the acting account, sign-out, page access.

With no admin account the dashboard is single-user (no sign-in; the local user acts as admin).
Once an admin exists every visitor signs in; the session token lives in Streamlit's server-side
session state and is checked against the database on every run, so signing out (or an admin
disabling the account) ends it at once. Reviewers may open only the pages in
:data:`REVIEWER_PAGES`; any other page is refused and the refusal is logged.
"""

from __future__ import annotations

import streamlit as st

from xai_core.errors import XAuditError
from xai_core.review import accounts, audit
from xai_core.review.accounts import LOCAL, Actor

TOKEN = "xaudit_token"
REVIEWER_PAGES = ("review",)  # url paths a reviewer may open


def current_actor() -> Actor | None:
    """The signed-in account, :data:`~xai_core.review.accounts.LOCAL` in single-user mode, or None
    when sign-in is required and nobody (or an ended session) is signed in."""
    if not accounts.login_enabled():
        return LOCAL
    token = st.session_state.get(TOKEN)
    actor = accounts.session_actor(token)
    if actor is None and token:
        st.session_state.pop(TOKEN, None)
    return actor


def sign_in_page() -> None:
    """The sign-in form (the only page before signing in)."""
    st.title("Sign in to xaudit")
    st.caption("This workspace has accounts: sign in with the name and password your study lead gave you.")
    with st.form("sign-in"):
        name = st.text_input("Name", max_chars=100)
        password = st.text_input("Password", type="password", max_chars=accounts.MAX_PASSWORD)
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            st.session_state[TOKEN] = accounts.authenticate(name, password)
        except XAuditError as exc:
            st.error(str(exc))
        else:
            st.rerun()


def sign_out(actor: Actor) -> None:
    """The sidebar's account line and sign-out button (which ends the session server-side)."""
    st.caption(f"Signed in as **{actor.name}** ({actor.role})")
    if st.button("Sign out", icon=":material/logout:", key="sign-out"):
        accounts.logout(st.session_state.get(TOKEN))
        st.session_state.clear()
        st.rerun()


def allowed(actor: Actor, url_path: str) -> bool:
    """Whether ``actor`` may open the page at ``url_path``."""
    return actor.is_admin or url_path in REVIEWER_PAGES


def refuse_page(actor: Actor, title: str) -> None:
    """Log and show the refusal of a page ``actor`` may not open, then stop the run."""
    audit.record_now(actor.name, "page", audit.REFUSED, title)
    st.error(f"The {title} page is for admins; you are signed in as a reviewer.")
    st.stop()


def acting() -> Actor:
    """The actor ``app.py`` established for this run (pages call this, never the session token)."""
    return st.session_state.get("actor", LOCAL)
