"""The study's order of fine-tuning degrees (tl, 1conv … 4conv, all) for every table, figure and export.

Pivot tables and ``groupby`` sort strings alphabetically ("1conv … 4conv, all, tl"); the MRI study
(and every reader) orders degrees by how much of the network is trained. Unknown labels (``-`` for
checkpoints without a degree, imported models) follow the known ones, alphabetically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from models.architectures import DEGREES


def degree_rank(degree: str) -> int:
    """Position of ``degree`` in :data:`DEGREES` (tl = 0 … all = 5); unknown labels rank last."""
    return DEGREES.index(degree) if degree in DEGREES else len(DEGREES)


def ordered_degrees(values: Iterable[str]) -> list[str]:
    """The distinct degree labels of ``values`` in the study's order."""
    return sorted({str(v) for v in values}, key=lambda d: (degree_rank(d), d))


def _key(column: pd.Series) -> pd.Series:
    if column.name != "degree":
        return column
    return column.map(lambda d: (degree_rank(str(d)), str(d)))


def sort_by_degree(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``frame`` sorted by the columns ``by`` (stable), the ``degree`` column in the study's order."""
    cols = [c for c in by if c in frame.columns]
    if frame.empty or not cols:
        return frame
    return frame.sort_values(cols, key=_key, kind="stable").reset_index(drop=True)


def order_columns(wide: pd.DataFrame, level: str = "degree") -> pd.DataFrame:
    """Columns of a pivot whose ``level`` (in a MultiIndex, or the columns themselves) holds degrees,
    reordered into the study's order; other levels keep their (sorted) order."""
    cols = wide.columns
    if isinstance(cols, pd.MultiIndex) and level in cols.names:
        pos = cols.names.index(level)
        ordered = sorted(cols, key=lambda c: tuple((degree_rank(str(v)), str(v)) if i == pos else (0, str(v))
                                                   for i, v in enumerate(c)))
        return wide[ordered]
    if cols.name == level or set(map(str, cols)) <= {*DEGREES, "-"}:
        return wide[ordered_degrees(cols)]
    return wide
