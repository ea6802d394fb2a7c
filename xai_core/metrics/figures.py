"""Plotly figures of the result tables, shared by the dashboard pages and the HTML report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from xai_core.errors import XAuditError
from xai_core.metrics.statistics import accuracy_controlled_effect


def metric_box(df: pd.DataFrame, metric: str) -> go.Figure:
    """Per-sample ``metric`` by method, coloured by pre-training, one panel per degree."""
    return px.box(df, x="method", y=metric, color="pretrain", facet_col="degree", points=False)


def accuracy_scatter(acc: pd.DataFrame, metric: str) -> tuple[go.Figure, dict[str, Any] | None, str]:
    """Checkpoints' mean ``metric`` against test accuracy, with the accuracy-controlled OLS fit
    (one line per pre-training source). Returns (figure, fit or None, why no fit)."""
    fig = px.scatter(acc, x="accuracy", y=metric, color="pretrain", symbol="degree",
                     hover_data=[c for c in ("checkpoint", "n") if c in acc])
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
