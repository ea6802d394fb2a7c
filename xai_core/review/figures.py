"""Plotly figures of a reading study's results (the Results page; the report can share them)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# (column, its CI columns, panel title, axis range) of the two outcomes a reviewer gives
OUTCOMES = (("evidence_match", "evidence_ci_low", "evidence_ci_high", "Evidence match (1–5)", [1, 5]),
            ("plausible", "plausible_ci_low", "plausible_ci_high", "Share rated plausible", [0, 1]))


def mean_ratings_figure(means: pd.DataFrame, by: str) -> go.Figure:
    """Mean rating and share plausible per level of ``by`` with their CIs as asymmetric error bars,
    one panel per outcome. ``means``: a :func:`~xai_core.review.statistics.mean_ratings` table
    (levels in its row order, e.g. degrees in the study's order)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[o[3] for o in OUTCOMES], horizontal_spacing=0.1)
    levels = means[by].astype(str).tolist()
    for col, (value, low, high, title, bounds) in enumerate(OUTCOMES, start=1):
        mean = means[value].astype(float)
        fig.add_trace(go.Scatter(
            x=levels, y=mean, mode="markers", name=title, showlegend=False, marker={"size": 10},
            error_y={"type": "data", "symmetric": False, "array": (means[high].astype(float) - mean).tolist(),
                     "arrayminus": (mean - means[low].astype(float)).tolist()},
            customdata=means[["n_ratings", "n_readers", "n_cases"]].to_numpy(),
            hovertemplate="%{x}: %{y:.2f}<br>%{customdata[0]} ratings, %{customdata[1]} readers, "
                          "%{customdata[2]} images<extra></extra>"), row=1, col=col)
        fig.update_yaxes(range=[bounds[0] - 0.05 * (bounds[1] - bounds[0]), bounds[1] + 0.05 * (bounds[1] - bounds[0])],
                         row=1, col=col)
        fig.update_xaxes(title_text=by, type="category", row=1, col=col)
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
