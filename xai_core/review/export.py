"""Exports of a reading study for spreadsheets: CSV with reviewer text neutralised."""

from __future__ import annotations

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as the start of a formula


def spreadsheet_safe(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(…)``, ``+cmd|…``) prefixed with
    ``'`` so it is shown as text (OWASP's advice on CSV injection); anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def spreadsheet_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell :func:`spreadsheet_safe` (notes are free text from reviewers)."""
    text = frame.select_dtypes(include=["object", "string"]).columns
    return frame.assign(**{c: frame[c].map(spreadsheet_safe) for c in text})


def to_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV with every text cell :func:`spreadsheet_safe`."""
    return spreadsheet_safe_frame(frame).to_csv(index=False)
