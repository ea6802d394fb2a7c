"""Drift: did fine-tuning change the evidence? TL vs FT maps, drift table with CIs, ranking reversals."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from ui.common import user_errors
from xai_core.metrics import queries
from xai_core.metrics.figures import drift_box
from xai_core.metrics.registry import DRIFT_METRICS
from xai_core.metrics.statistics import ci_table, ranking_agreement, stability_ranking, summarise
from xai_core.metrics.stored import read_stored_maps
from xai_core.stamp import change_stamp

FILL_COMMANDS = """xaudit demo --quick --no-serve                  # everything in one go
# or step by step:
xaudit train --dataset mri-lesions --arch resnet50 --protocol tl-ft   # a TL checkpoint and its FT successor
xaudit explain --checkpoint NAME --methods gradcam_plus_plus,layercam  # for both checkpoints
xaudit drift                                    # TL -> FT drift on samples correct for both"""

TABLES = ("drift_metrics", "checkpoints", "samples")  # what the cached reads below read


@st.cache_data(show_spinner=False, max_entries=4)
def _drift(stamp: tuple) -> pd.DataFrame:
    """Keyed on :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return queries.drift_frame()


@st.cache_data(show_spinner=False, max_entries=4)
def _summary(stamp: tuple) -> pd.DataFrame:
    return summarise(_drift(stamp), ["arch", "method"], DRIFT_METRICS.list(), n_boot=1000)


st.title("Drift: did fine-tuning change the evidence?")
st.caption(
    "Reference-free drift between the maps of a transfer-learning checkpoint (A) and its fine-tuned "
    "successor (B) on the same samples, per architecture and attribution method."
)

with user_errors():
    counts = queries.count_rows()
    if counts["drift_metrics"] == 0:
        st.info("No drift metrics in this workspace yet. Fill it with:")
        st.code(FILL_COMMANDS, language="bash")
        st.stop()
    stamp = change_stamp(*TABLES)
    df = _drift(stamp)

    st.subheader("Architecture × method drift (mean [95% CI])")
    metrics = DRIFT_METRICS.list()
    summary = _summary(stamp)
    wide = ci_table(summary, ["arch", "method"], ("metric",))
    wide = wide[[m for m in metrics if m in wide.columns]]
    n_per = df.groupby(["arch", "method"]).size().rename("n")
    st.dataframe(wide.join(n_per), width="stretch")
    st.caption("; ".join(f"{k}: {DRIFT_METRICS.get(k).describe()}" for k in metrics))

    st.subheader("Ranking reversals")
    rank_metric = st.selectbox("Stability metric", metrics, index=metrics.index("iou_top20"),
                               format_func=lambda k: DRIFT_METRICS.get(k).label)
    ranking = stability_ranking(df, metric=rank_metric)
    agree = ranking_agreement(ranking)
    left, right = st.columns(2)
    left.caption("Architecture rank per method (1 = most stable)")
    left.table(ranking.pivot(index="arch", columns="method", values="rank"))  # small tables: static
    right.caption("Kendall's tau between methods' rankings")
    if agree.empty:
        right.write("Needs at least two methods on at least two architectures.")
    else:
        right.table(agree)
        flagged = agree[agree["reversal"]]
        if not flagged.empty:
            st.warning(
                "Ranking reversal: "
                + "; ".join(f"{r.method_a} vs {r.method_b} (tau = {r.kendall_tau:.2f}; {r.reversed_pairs})" for r in flagged.itertuples())
                + " — which architecture looks stable depends on the attribution method."
            )

    st.subheader("Distributions")
    dist_metric = st.selectbox("Metric", metrics, index=metrics.index("iou_top20"), key="dist_metric",
                               format_func=lambda k: DRIFT_METRICS.get(k).label)
    st.plotly_chart(drift_box(df, dist_metric), width="stretch")

    st.subheader("TL and FT maps of one sample")
    pairs = df[["checkpoint_a_id", "checkpoint_a", "checkpoint_b_id", "checkpoint_b"]].drop_duplicates()
    pair_labels = {f"{r.checkpoint_a} → {r.checkpoint_b}": (int(r.checkpoint_a_id), int(r.checkpoint_b_id)) for r in pairs.itertuples()}
    pair_label = st.selectbox("Checkpoint pair", list(pair_labels))
    a_id, b_id = pair_labels[pair_label]
    sub = df[(df["checkpoint_a_id"] == a_id) & (df["checkpoint_b_id"] == b_id)]
    method = st.selectbox("Method", sorted(sub["method"].unique()), key="pair_method")
    rows = sub[sub["method"] == method].sort_values("iou_top20", kind="stable")
    pick = st.selectbox("Sample (largest drift first)", rows.index.tolist(),
                        format_func=lambda i: f"{rows.loc[i, 'sample_id']}  IoU20={rows.loc[i, 'iou_top20']:.2f}")
    row = rows.loc[pick]
    sides = ((row["method_a"], row["params_hash_a"]), (row["method_b"], row["params_hash_b"]))
    maps = [read_stored_maps(ck, m, h, [int(row["sample_pk"])])[0] for ck, (m, h) in zip((a_id, b_id), sides)]
    c1, c2 = st.columns(2)
    titles = (f"A (TL): {row['checkpoint_a']} · {sides[0][0]}", f"B (FT): {row['checkpoint_b']} · {sides[1][0]}")
    for col, title, m in ((c1, titles[0], maps[0]), (c2, titles[1], maps[1])):
        fig = px.imshow(abs(m), color_continuous_scale="inferno", title=title)
        fig.update_layout(coloraxis_showscale=False, margin={"l": 0, "r": 0, "t": 40, "b": 0})
        col.plotly_chart(fig, width="stretch")
    st.table(row[metrics].to_frame().T)
