"""Small helpers the pages share: user-error display and cached reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from xai_core.errors import XAuditError


@contextmanager
def user_errors() -> Iterator[None]:
    """Show an XAuditError raised inside the block as one ``st.error`` line instead of a traceback."""
    try:
        yield
    except XAuditError as exc:
        st.error(str(exc))
