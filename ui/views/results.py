"""Results of the reading studies (admins)."""

from __future__ import annotations

import streamlit as st

from ui.common import user_errors
from xai_core.review import studies

st.title("Reading-study results")
with user_errors():
    st.dataframe(studies.list_studies(), hide_index=True)
