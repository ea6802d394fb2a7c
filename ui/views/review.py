"""Review: a reviewer's reading queue (the Reading page of issue 12)."""

from __future__ import annotations

import streamlit as st

from ui.auth import acting
from ui.common import user_errors
from xai_core.review import reading

st.title("Review")
with user_errors():
    actor = acting()
    if not actor.name or actor.is_admin:
        st.info("Reading studies are rated by reviewer accounts: sign in as a reviewer.")
        st.stop()
    for study in reading.reviewer_studies(actor.name):
        queue = reading.queue(study, actor.name)
        st.write(f"{study}: {sum(r for _, _, r in queue)} of {len(queue)} rated")
