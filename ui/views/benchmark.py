"""Benchmark: ground-truth explanation metrics by method x pre-training x degree, with chance baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ui.common import user_errors
from xai_core.metrics import queries
from xai_core.metrics.chance_maps import CHANCE_METHODS
from xai_core.metrics.registry import GROUND_TRUTH_METRICS
from xai_core.attribution import equivalence_column
from xai_core.metrics.figures import accuracy_scatter, degree_lines, metric_box
from xai_core.metrics.statistics import ci_table, summarise
from xai_core.stamp import change_stamp

FILL_COMMANDS = """xaudit demo --quick --no-serve                  # data, checkpoints, maps and metrics in one go
# or step by step:
xaudit train-grid --dataset mri-lesions         # pre-training x fine-tuning degree grid
xaudit explain --checkpoint NAME --methods saliency,integrated_gradients   # per checkpoint
xaudit evaluate                                 # ground-truth metrics + chance baselines"""

TABLES = ("gt_metrics", "checkpoints", "samples", "predictions")  # what the cached reads below read


@st.cache_data(show_spinner=False, max_entries=8)
def _gt(selection: str, stamp: tuple) -> pd.DataFrame:
    """Keyed on the selection and :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return queries.gt_frame(selection)


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(selection: str, metric: str, stamp: tuple) -> pd.DataFrame:
    return summarise(_gt(selection, stamp), ["method", "pretrain", "degree"], [metric], n_boot=1000)


@st.cache_data(show_spinner=False, max_entries=32)
def _acc(method: str, metric: str, selection: str, stamp: tuple) -> pd.DataFrame:
    return queries.accuracy_frame(method, metric, selection)


st.title("Benchmark: are the explanations right?")
st.caption(
    "Ground-truth metrics of each attribution method against the exact lesion masks, per pre-training "
    "source and fine-tuning degree; bootstrap 95% CIs; random-map and Sobel-edge baselines show chance."
)

with user_errors():
    counts = queries.count_rows()
    if counts["gt_metrics"] == 0:
        st.info("No ground-truth metrics in this workspace yet. Fill it with:")
        st.code(FILL_COMMANDS, language="bash")
        st.stop()

    col1, col2 = st.columns(2)
    selection = col1.selectbox("Samples", ["correct", "all", "incorrect"], index=0,
                               help="Correctly classified test samples (the MRI study's choice), all, or only errors.")
    stamp = change_stamp(*TABLES)
    df = _gt(selection, stamp)
    stored = [k for k in GROUND_TRUTH_METRICS.list() if k in df and df[k].notna().any()] or GROUND_TRUTH_METRICS.list()
    metric = col2.selectbox("Metric", stored, format_func=lambda k: GROUND_TRUTH_METRICS.get(k).label,
                            help="; ".join(f"{k}: {GROUND_TRUTH_METRICS.get(k).describe()}" for k in stored))
    if df.empty:
        st.warning(f"No stored metrics for the '{selection}' selection; run `xaudit evaluate --selection {selection}`.")
        st.stop()

    summary = _summary(selection, metric, stamp)
    st.subheader(f"Mean {metric} by method × pre-training × degree (mean [95% CI])")
    wide = ci_table(summary)
    notes, why = equivalence_column(list(wide.index))
    if any(notes):
        wide.insert(0, "note", notes)
    st.dataframe(wide, width="stretch", column_config={"note": st.column_config.TextColumn(width="medium")})
    for text in why:
        st.caption(text)
    chance = queries.chance_precision(selection)
    base = summary[summary["method"].isin(CHANCE_METHODS)]
    if not base.empty:
        base_means = df[df["method"].isin(CHANCE_METHODS)].groupby("method")[metric].mean()
        text = "; ".join(f"{name} = {value:.3f}" for name, value in base_means.items())
        if metric == "precision" and np.isfinite(chance):
            text += f"; expected precision of a random ranking (mean lesion share) = {chance:.3f}"
        st.caption("Chance: " + text)
    with st.expander("Long table (n, mean, median, CI)"):
        st.dataframe(summary, width="stretch")

    st.subheader(f"Mean {metric} against fine-tuning degree, per method (the MRI study's figure)")
    st.caption("One line per pre-training source with its 95% CI band; degrees from the frozen backbone (tl) "
               "to all layers trained.")
    st.plotly_chart(degree_lines(summary, metric), width="stretch")

    st.subheader("Per-image distribution of one method")
    methods = sorted(df["method"].unique())
    box_method = st.selectbox("Method for the box plots", methods, key="box_method",
                              index=methods.index("saliency") if "saliency" in methods else 0)
    st.plotly_chart(metric_box(df, metric, box_method), width="stretch")

    st.subheader("Accuracy vs explanation performance")
    real_methods = sorted(m for m in df["method"].unique() if m not in CHANCE_METHODS)
    if real_methods:
        method = st.selectbox("Method", real_methods, key="acc_method")
        acc = _acc(method, metric, selection, stamp).dropna(subset=["accuracy"])
        if len(acc) >= 2:
            scatter, fit, why = accuracy_scatter(acc, metric)
            st.plotly_chart(scatter, width="stretch")
            if fit is None:
                st.caption(f"No regression: {why}")
            elif not fit["effects"].empty:
                st.caption("Pre-training effect at matched accuracy (OLS: metric ~ accuracy + source):")
                st.table(fit["effects"])
        else:
            st.caption("At least two evaluated checkpoints with predictions are needed for the scatter.")

        st.subheader("Inspect a sample")
        ck_names = sorted(df["checkpoint"].unique())
        ck = st.selectbox("Checkpoint", ck_names, key="ck")
        rows = df[(df["checkpoint"] == ck) & (df["method"] == method)].sort_values(metric, kind="stable")
        if rows.empty:
            st.caption(f"No {method} rows for {ck}.")
        else:
            options = rows.index.tolist()
            pick = st.selectbox(
                "Sample (sorted by the metric, worst first)", options,
                format_func=lambda i: f"{rows.loc[i, 'sample_id']}  {metric}={rows.loc[i, metric]:.3f}", key="sample",
            )
            chosen = rows.loc[pick]
            params = {"checkpoint": str(int(chosen["checkpoint_id"])), "sample": str(int(chosen["sample_pk"])), "method": method}
            st.table(chosen[stored].to_frame().T)
            try:
                st.page_link("views/explain.py", label="Open this sample on the Explain page", icon="🔥", query_params=params)
            except Exception:  # page not registered (page run on its own): plain link
                st.markdown(f"[Open this sample on the Explain page](/explain?checkpoint={params['checkpoint']}"
                            f"&sample={params['sample']}&method={method})")
            st.caption(f"Explain page link: ?checkpoint={params['checkpoint']}&sample={params['sample']}&method={method}")
