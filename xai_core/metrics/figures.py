"""Plotly figures of the result tables, shared by the dashboard pages and the HTML report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xai_core.errors import XAuditError
from xai_core.metrics.order import ordered_degrees
from xai_core.metrics.statistics import accuracy_controlled_effect

PANEL_COLUMNS = 4


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def source_colours(sources: list[str]) -> dict[str, str]:
    """One colour per pre-training source (sorted), the same in every figure."""
    palette = px.colors.qualitative.Plotly
    return {s: palette[i % len(palette)] for i, s in enumerate(sorted(sources))}


def degree_lines(summary: pd.DataFrame, metric: str) -> go.Figure:
    """The MRI study's main figure: mean ``metric`` against the fine-tuning degree (tl … all), one
    line with its 95% CI band per pre-training source, one small panel per method (shared y axis).
    ``summary``: a :func:`~xai_core.metrics.statistics.summarise` long table by method, pretrain, degree."""
    data = summary[summary["metric"] == metric] if "metric" in summary else summary
    methods = sorted(data["method"].unique())
    degrees = ordered_degrees(data["degree"])
    n_rows = max(1, -(-len(methods) // PANEL_COLUMNS))
    fig = make_subplots(rows=n_rows, cols=PANEL_COLUMNS, subplot_titles=methods, shared_yaxes=True,
                        vertical_spacing=0.28 / n_rows + 0.04, horizontal_spacing=0.03)
    sources = sorted(data["pretrain"].unique())
    colours = source_colours(sources)
    for k, method in enumerate(methods):
        row, col = k // PANEL_COLUMNS + 1, k % PANEL_COLUMNS + 1
        for source in sources:
            cell = data[(data["method"] == method) & (data["pretrain"] == source)].set_index("degree").reindex(degrees)
            cell = cell.dropna(subset=["mean"])
            x, color = list(cell.index), colours[source]
            fig.add_trace(go.Scatter(x=x + x[::-1], y=list(cell["ci_high"]) + list(cell["ci_low"])[::-1],
                                     mode="lines", fill="toself", fillcolor=_rgba(color, 0.2), line={"width": 0},
                                     hoverinfo="skip", showlegend=False, legendgroup=source), row=row, col=col)
            fig.add_trace(go.Scatter(x=x, y=list(cell["mean"]), mode="lines+markers", name=source, legendgroup=source,
                                     line={"color": color}, showlegend=k == 0,
                                     hovertemplate=f"{method} / {source}<br>%{{x}}: %{{y:.3f}}<extra></extra>"),
                          row=row, col=col)
    fig.update_xaxes(categoryorder="array", categoryarray=degrees, tickangle=0, tickfont={"size": 10})
    fig.update_yaxes(matches="y")  # one y scale for every panel: methods compare at a glance
    fig.update_yaxes(title_text=metric, col=1)
    fig.update_layout(height=220 * n_rows + 80, legend_title_text="pre-training", margin={"t": 40})
    return fig


def metric_box(df: pd.DataFrame, metric: str, method: str | None = None) -> go.Figure:
    """Per-sample ``metric`` of one ``method`` (all methods when None) by fine-tuning degree in the
    study's order, coloured by pre-training."""
    data = df if method is None else df[df["method"] == method]
    return px.box(data, x="degree", y=metric, color="pretrain", points=False,
                  category_orders={"degree": ordered_degrees(data["degree"]), "pretrain": sorted(data["pretrain"].unique())},
                  color_discrete_map=source_colours(list(data["pretrain"].unique())), title=f"{method}: per-image {metric}" if method else None)


def accuracy_scatter(acc: pd.DataFrame, metric: str) -> tuple[go.Figure, dict[str, Any] | None, str]:
    """Checkpoints' mean ``metric`` against test accuracy, with the accuracy-controlled OLS fit
    (one line per pre-training source). Returns (figure, fit or None, why no fit)."""
    fig = px.scatter(acc, x="accuracy", y=metric, color="pretrain", symbol="degree",
                     category_orders={"degree": ordered_degrees(acc["degree"])}, hover_data=[c for c in ("checkpoint", "n") if c in acc])
    try:
        fit = accuracy_controlled_effect(acc, performance=metric)
    except (XAuditError, np.linalg.LinAlgError, ValueError) as exc:
        return fig, None, str(exc)
    xs = np.linspace(acc["accuracy"].min(), acc["accuracy"].max(), 20)
    for source, intercept in fit["intercepts"].items():
        fig.add_trace(go.Scatter(x=xs, y=intercept + fit["slope"] * xs, mode="lines",
                                 name=f"fit {source}", line={"dash": "dash"}))
    return fig, fit, ""


def ci_bars(summary: pd.DataFrame, x: str, color: str, title: str = "") -> go.Figure:
    """Means with their 95% CI as error bars, from a :func:`summarise` long table (one metric)."""
    data = summary.assign(err_plus=summary["ci_high"] - summary["mean"],
                          err_minus=summary["mean"] - summary["ci_low"])
    return px.bar(data, x=x, y="mean", color=color, barmode="group", error_y="err_plus",
                  error_y_minus="err_minus", title=title)


def drift_box(df: pd.DataFrame, metric: str) -> go.Figure:
    """Per-sample drift ``metric`` by architecture, coloured by method."""
    return px.box(df, x="arch", y=metric, color="method", points=False)
