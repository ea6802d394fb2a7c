"""Admin: accounts, studies and the audit log."""

from __future__ import annotations

import streamlit as st

from ui.common import user_errors
from xai_core.review import accounts

st.title("Admin")
with user_errors():
    st.dataframe(accounts.list_users(), hide_index=True)
