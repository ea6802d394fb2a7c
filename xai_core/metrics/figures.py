"""Plotly figures of the result tables, shared by the dashboard pages and the HTML report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xai_core.errors import XAuditError
from xai_core.metrics.drift_evidence import Evidence, symmetric_limit
from xai_core.metrics.order import ordered_degrees
from xai_core.metrics.qualitative import Grid
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


# ------------------------------------------------------------------------------------------
# maps over the image: the drift evidence and the MRI study's qualitative grid
# ------------------------------------------------------------------------------------------
LESION_COLOUR = "lime"
MAP_OPACITY = 0.6


def _axis_name(axis: str, index: int) -> str:
    """Plotly's name of the ``index``-th (1-based) x or y axis: ``x``, ``x2``, …"""
    return axis if index == 1 else f"{axis}{index}"


def _map_panel(fig: go.Figure, image: np.ndarray, overlay: np.ndarray, mask: np.ndarray, row: int, col: int,
               coloraxis: str, hover: str) -> None:
    """One panel: the grey image, ``overlay`` on a shared colour axis (semi-transparent) and the lesion contour."""
    fig.add_trace(go.Heatmap(z=np.asarray(image, np.float32), colorscale="gray", showscale=False, hoverinfo="skip",
                             name="image"), row=row, col=col)
    fig.add_trace(go.Heatmap(z=np.asarray(overlay, np.float32), coloraxis=coloraxis, opacity=MAP_OPACITY, name="map",
                             hovertemplate=hover + "<br>row %{y}, col %{x}: %{z:.3g}<extra></extra>"), row=row, col=col)
    if np.any(mask):
        fig.add_trace(go.Contour(z=np.asarray(mask, np.float32), showscale=False, name="lesion", hoverinfo="skip",
                                 contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"},
                                 line={"color": LESION_COLOUR, "width": 2}), row=row, col=col)


def _image_axes(fig: go.Figure, n_panels: int) -> None:
    """Every panel an image: no ticks, rows downwards, square pixels."""
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    for i in range(1, n_panels + 1):
        fig.layout[f"yaxis{'' if i == 1 else i}"].scaleanchor = _axis_name("x", i)


def drift_evidence(ev: Evidence, titles: tuple[str, str] = ("TL", "FT"), colormap: str = "Inferno") -> go.Figure:
    """One sample's drift evidence (:class:`~xai_core.metrics.drift_evidence.Evidence`): the image
    with the lesion contour under (a) the normalised TL map, (b) the normalised FT map (one colour
    scale) and (c) their difference FT − TL (diverging, centred at 0), each with the arrow from the
    TL map's centre of mass to the FT map's."""
    subtitles = [f"(a) {titles[0]}", f"(b) {titles[1]}", "(c) FT − TL"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=subtitles, horizontal_spacing=0.04)
    for col, (overlay, axis, hover) in enumerate(
            [(ev.map_a, "coloraxis", "TL share"), (ev.map_b, "coloraxis", "FT share"), (ev.diff, "coloraxis2", "FT − TL")], 1):
        _map_panel(fig, ev.image, overlay, ev.mask, 1, col, axis, hover)
        (ra, ca), (rb, cb) = ev.centre_a, ev.centre_b
        fig.add_trace(go.Scatter(x=[ca, cb], y=[ra, rb], mode="markers", name="centre of mass",
                                 marker={"symbol": ["circle-open", "x"], "size": 9, "color": "white",
                                         "line": {"width": 2, "color": "white"}},
                                 text=["TL centre", "FT centre"], showlegend=False,
                                 hovertemplate="%{text}: row %{y:.1f}, col %{x:.1f}<extra></extra>"), row=1, col=col)
        fig.add_annotation(x=cb, y=rb, ax=ca, ay=ra, xref=_axis_name("x", col), yref=_axis_name("y", col),
                           axref=_axis_name("x", col), ayref=_axis_name("y", col), showarrow=True, arrowhead=2,
                           arrowsize=1.2, arrowwidth=2, arrowcolor="cyan", text="", name="displacement")
    top = float(max(np.max(ev.map_a), np.max(ev.map_b)))
    limit = symmetric_limit(ev.diff)
    fig.update_layout(
        coloraxis={"colorscale": colormap, "cmin": 0.0, "cmax": top if top > 0 else 1.0, "showscale": False},
        coloraxis2={"colorscale": "RdBu_r", "cmin": -limit, "cmid": 0.0, "cmax": limit,
                    "colorbar": {"thickness": 10, "len": 0.8, "title": {"text": "FT − TL"}}},
        height=360, margin={"l": 0, "r": 0, "t": 40, "b": 0}, showlegend=False,
    )
    _image_axes(fig, 3)
    return fig


def qualitative_grid(grid: Grid, colormap: str = "Inferno") -> go.Figure:
    """The MRI study's qualitative figure: one sample (a :class:`~xai_core.metrics.qualitative.Grid`),
    rows pre-training × degree, columns methods; each cell the map (``|map| / max|map|``) over the
    image with the lesion contour; an empty cell where that map is not stored."""
    n_rows, n_cols = max(1, len(grid.rows)), max(1, len(grid.methods))
    fig = make_subplots(rows=n_rows, cols=n_cols, column_titles=list(grid.methods),
                        row_titles=[f"{p} / {d}" for p, d in grid.rows],
                        horizontal_spacing=0.01, vertical_spacing=min(0.02, 0.5 / n_rows))
    for r, (pretrain, degree) in enumerate(grid.rows, 1):
        for c, method in enumerate(grid.methods, 1):
            shown = grid.maps.get((pretrain, degree, method))
            if shown is not None:
                _map_panel(fig, grid.image, shown, grid.mask, r, c, "coloraxis", f"{pretrain} / {degree} · {method}")
    fig.update_layout(coloraxis={"colorscale": colormap, "cmin": 0.0, "cmax": 1.0,
                                 "colorbar": {"thickness": 10, "len": min(1.0, 3.0 / n_rows), "x": 1.06, "xanchor": "left",
                                              "title": {"text": "|map| / max"}}},
                      height=150 * n_rows + 60, margin={"l": 0, "r": 120, "t": 40, "b": 0}, showlegend=False)
    fig.update_annotations(font_size=11)
    _image_axes(fig, n_rows * n_cols)
    return fig


def method_colours(methods: list[str]) -> dict[str, str]:
    """One colour per attribution method (sorted), the same in every panel."""
    palette = px.colors.qualitative.D3
    return {m: palette[i % len(palette)] for i, m in enumerate(sorted(methods))}


def drift_epoch_lines(curve: pd.DataFrame, metric: str) -> go.Figure:
    """Drift along fine-tuning ("when did the evidence move"): one panel per architecture, one line
    per method (and run: pre-training / degree, when an architecture has several) of the mean
    ``metric`` of each FT epoch checkpoint against its TL checkpoint with its 95% CI band; the run's
    validation accuracy per epoch on the second y axis (dotted, grey). ``curve``: columns arch,
    pretrain, degree, method, epoch, mean, ci_low, ci_high, n, val_accuracy (as
    :func:`~xai_core.metrics.queries.drift_by_epoch` returns them)."""
    archs = sorted(curve["arch"].unique())
    n_cols = max(1, len(archs))
    fig = make_subplots(rows=1, cols=n_cols, subplot_titles=archs, specs=[[{"secondary_y": True}] * n_cols],
                        horizontal_spacing=0.08)
    colours = method_colours(list(curve["method"].unique()))
    dashes = ["solid", "dash", "dot", "dashdot"]
    shown: set[str] = set()
    for col, arch in enumerate(archs, 1):
        data = curve[curve["arch"] == arch]
        runs = sorted(set(zip(data["pretrain"], data["degree"])))
        for k, (pretrain, degree) in enumerate(runs):
            run = data[(data["pretrain"] == pretrain) & (data["degree"] == degree)]
            suffix = f" ({pretrain} / {degree})" if len(runs) > 1 else ""
            for method in sorted(run["method"].unique()):
                cell = run[run["method"] == method].sort_values("epoch")
                x, colour, name = list(cell["epoch"]), colours[method], method + suffix
                fig.add_trace(go.Scatter(x=x + x[::-1], y=list(cell["ci_high"]) + list(cell["ci_low"])[::-1],
                                         mode="lines", fill="toself", fillcolor=_rgba(colour, 0.2), line={"width": 0},
                                         hoverinfo="skip", showlegend=False, legendgroup=name, name=f"{name} CI"),
                              row=1, col=col, secondary_y=False)
                fig.add_trace(go.Scatter(x=x, y=list(cell["mean"]), mode="lines+markers", name=name, legendgroup=name,
                                         line={"color": colour, "dash": dashes[k % len(dashes)]},
                                         showlegend=name not in shown, customdata=list(cell["n"]),
                                         hovertemplate=f"{arch} · {name}<br>epoch %{{x}}: %{{y:.3f}} "
                                                       "(n = %{customdata})<extra></extra>"),
                              row=1, col=col, secondary_y=False)
                shown.add(name)
            acc = run.groupby("epoch")["val_accuracy"].mean().dropna()
            if not acc.empty:
                label = "val accuracy" + suffix
                fig.add_trace(go.Scatter(x=list(acc.index), y=list(acc.values), mode="lines+markers", name=label,
                                         legendgroup=label, showlegend=label not in shown,
                                         line={"color": "grey", "dash": "dot", "width": 1.5},
                                         marker={"symbol": "diamond", "size": 6},
                                         hovertemplate=f"{arch}: epoch %{{x}} val accuracy %{{y:.3f}}<extra></extra>"),
                              row=1, col=col, secondary_y=True)
                shown.add(label)
    fig.update_xaxes(title_text="FT epoch", tickvals=sorted(int(e) for e in curve["epoch"].unique()))
    fig.update_yaxes(matches="y", secondary_y=False)  # one drift scale: architectures compare at a glance
    fig.update_yaxes(range=[0, 1.02], showgrid=False, tickmode="linear", tick0=0, dtick=0.2, secondary_y=True)
    for col in range(1, n_cols + 1):  # tick labels on the outer axes only: inner ones would collide
        fig.update_yaxes(showticklabels=col == 1, secondary_y=False, col=col)
        fig.update_yaxes(showticklabels=col == n_cols, secondary_y=True, col=col)
    fig.update_yaxes(title_text=f"{metric} vs TL", secondary_y=False, col=1)
    fig.update_yaxes(title_text="val accuracy", secondary_y=True, col=n_cols)
    fig.update_layout(height=380, legend_title_text="method", margin={"t": 40})
    return fig
