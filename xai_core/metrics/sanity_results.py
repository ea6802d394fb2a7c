"""What the sanity checks show: the stored similarities per sample, their medians per randomised
layer, the pass/fail flag per method × architecture × test, and the figure the Benchmark page and
the report draw.

The flag (:data:`FAIL_RULE`): Adebayo et al. (2018) read a map that survives the randomisation of
the model (or of its training labels) as one that does not explain the model. A method **fails**
a test when the median Spearman rank correlation of ``|map|`` between the trained and the
randomised model, over the images, stays above :data:`FAIL_SPEARMAN` (0.5):

* cascading: at the deepest step stored (``block1``: every layer re-initialised);
* independent: for every layer stored (no single layer's weights move the map);
* data: against the model trained on shuffled labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sqlalchemy import select

from db import Checkpoint, DriftMetric, Sample
from xai_core.metrics.queries import DRIFT_KEY, pivoted, read_frame
from xai_core.metrics.sanity_randomise import DATA_STEP, MODES, SELECTION, parse_randomisation_key
from xai_core.metrics.sanity_similarity import list_sanity_similarities

FAIL_SPEARMAN = 0.5
FAIL_RULE = (
    f"A method fails a sanity check (Adebayo et al. 2018) when its maps barely change: the median Spearman rank "
    f"correlation of |map| between the trained and the randomised model, over the images, stays above "
    f"{FAIL_SPEARMAN:g} — after re-initialising every layer (cascading: the deepest step run, block1 when the "
    f"cascade went all the way), for every single re-initialised layer (independent), or against the model "
    f"trained on shuffled labels (data)."
)
STEP_ORDER = ["head", "block5", "block4", "block3", "block2", "block1", DATA_STEP]
FRAME_COLUMNS = ["checkpoint_id", "checkpoint", "reference_id", "arch", "pretrain", "degree", "method",
                 "params_hash", "mode", "step", "seed", "sample_pk", "sample_id"]


def sanity_frame(methods: list[str] | None = None) -> pd.DataFrame:
    """One row per (checkpoint, method, params, test, step, seed, sample) with the checkpoint's
    name, architecture, pre-training and degree, ``reference_id`` (checkpoint B: itself or its
    shuffled-label copy) and one column per registered sanity similarity."""
    names = list_sanity_similarities()
    d = pivoted(DriftMetric, DRIFT_KEY, names, DriftMetric.selection == SELECTION,
                *([DriftMetric.method_a.in_(list(methods))] if methods else []))
    stmt = (
        select(d.c.checkpoint_a_id.label("checkpoint_id"), Checkpoint.name.label("checkpoint"),
               d.c.checkpoint_b_id.label("reference_id"), Checkpoint.arch, Checkpoint.pretrain, Checkpoint.degree,
               d.c.method_a.label("method"), d.c.params_hash_a.label("params_hash"), d.c.params_hash_b,
               d.c.sample_pk, Sample.sample_id, *[d.c[k] for k in names])
        .join(Checkpoint, Checkpoint.id == d.c.checkpoint_a_id)
        .join(Sample, Sample.id == d.c.sample_pk)
        .order_by(*[d.c[c] for c in DRIFT_KEY])
    )
    df = read_frame(stmt)
    keys = [parse_randomisation_key(k) for k in df["params_hash_b"]]
    keep = np.asarray([k is not None for k in keys], dtype=bool)
    df = df.loc[keep].reset_index(drop=True)
    parsed = [k for k in keys if k is not None]
    df["mode"] = [k[0] for k in parsed]
    df["step"] = [k[1] for k in parsed]
    df["seed"] = [k[2] for k in parsed]
    df["degree"] = df["degree"].fillna("-")
    return df[FRAME_COLUMNS + names].astype({k: float for k in names})


def sanity_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (architecture, method, test, step): ``n`` images and the median of each similarity,
    steps in cascade order (head first, block1 last), pooled over checkpoints, seeds and parameters."""
    names = [k for k in list_sanity_similarities() if k in frame]
    cols = ["arch", "method", "mode", "step", "n", *names]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    out = (frame.groupby(["arch", "method", "mode", "step"], sort=False)
           .agg(n=("sample_pk", "size"), **{k: (k, "median") for k in names}).reset_index())
    out["order"] = [STEP_ORDER.index(s) if s in STEP_ORDER else len(STEP_ORDER) for s in out["step"]]
    out["mode_order"] = [MODES.index(m) if m in MODES else len(MODES) for m in out["mode"]]
    out = out.sort_values(["arch", "method", "mode_order", "order"], kind="stable")
    return out[cols].reset_index(drop=True)


def sanity_verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (architecture, method, test): ``verdict`` (``fails`` / ``passes``, :data:`FAIL_RULE`),
    the deciding ``step`` and its median Spearman ``spearman`` (the largest over the steps for the
    independent test), and ``steps``, how many steps are stored."""
    cols = ["arch", "method", "mode", "verdict", "step", "spearman", "steps"]
    rows = []
    for (arch, method, mode), group in summary.groupby(["arch", "method", "mode"], sort=False):
        if mode == "independent":
            decide = group.loc[group["sanity_spearman"].idxmax()]
        else:  # cascading: the deepest step run; data: its one step
            decide = group.iloc[-1]
        rho = float(decide["sanity_spearman"])
        rows.append({"arch": arch, "method": method, "mode": mode,
                     "verdict": "fails" if rho > FAIL_SPEARMAN else "passes", "step": decide["step"],
                     "spearman": rho, "steps": len(group)})
    return pd.DataFrame(rows, columns=cols)


def failing_methods(verdicts: pd.DataFrame) -> list[str]:
    """``method on arch (test)`` for every failing check, for one-line summaries."""
    bad = verdicts[verdicts["verdict"] == "fails"]
    return [f"{r.method} on {r.arch} ({r.mode})" for r in bad.itertuples()]


def sanity_figure(summary: pd.DataFrame, mode: str, metric: str = "sanity_spearman") -> go.Figure:
    """The similarity curve by randomised layer: one panel per architecture, one line per method
    (median ``metric`` over the images against the step, head first), the fail threshold dashed."""
    rows = summary[summary["mode"] == mode]
    archs = list(dict.fromkeys(rows["arch"])) or ["-"]
    fig = make_subplots(rows=1, cols=len(archs), subplot_titles=archs, shared_yaxes=True)
    for col, arch in enumerate(archs, start=1):
        for method, group in rows[rows["arch"] == arch].groupby("method", sort=True):
            fig.add_trace(go.Scatter(x=list(group["step"]), y=list(group[metric]), mode="lines+markers", name=method,
                                     legendgroup=method, showlegend=col == 1), row=1, col=col)
        if metric == "sanity_spearman":
            fig.add_hline(y=FAIL_SPEARMAN, line_dash="dash", line_color="grey", row=1, col=col)
    fig.update_yaxes(title_text=f"median {metric.removeprefix('sanity_')}", range=[-0.2, 1.05], row=1, col=1)
    fig.update_xaxes(title_text="randomised up to" if mode == "cascading" else "randomised layer")
    fig.update_layout(height=360, margin=dict(t=40, b=40), legend_title_text="method")
    return fig
