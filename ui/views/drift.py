"""Drift: did fine-tuning change the evidence? Drift table with CIs, ranking reversals, drift along the FT
epochs next to the validation accuracy, and one sample's evidence (maps, difference, centre-of-mass arrow)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ui.common import lazy_tabs, page_start, stop_when_empty, user_errors
from xai_core.metrics import queries
from xai_core.metrics.drift_evidence import Evidence, drift_order, load_evidence
from xai_core.metrics.figures import drift_box, drift_epoch_lines, drift_evidence
from xai_core.metrics.registry import DRIFT_METRICS
from xai_core.metrics.statistics import ci_table, ranking_agreement, stability_ranking, summarise

FILL_COMMANDS = """xaudit demo --quick --no-serve                  # everything in one go
# or step by step:
xaudit train --dataset mri-lesions --arch resnet50 --protocol tl-ft   # a TL checkpoint and its FT successor
xaudit explain --checkpoint NAME --methods gradcam_plus_plus,layercam  # for both checkpoints
xaudit drift                                    # TL -> FT drift on samples correct for both"""

EPOCH_COMMANDS = """xaudit train --dataset NAME --arch resnet50 --protocol tl-ft --save-every 1   # keeps each FT epoch
xaudit explain --checkpoint RUN-ft-e1 --methods gradcam_plus_plus,layercam      # each FT epoch checkpoint RUN-ft-eE
xaudit drift                                    # TL -> FT and TL -> epoch pairs"""

TABLES = ("drift_metrics", "checkpoints", "samples")  # what the cached reads below read


@st.cache_data(show_spinner=False, max_entries=4)
def _drift(stamp: tuple) -> pd.DataFrame:
    """Keyed on :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return queries.drift_frame()


@st.cache_data(show_spinner=False, max_entries=4)
def _summary(stamp: tuple) -> pd.DataFrame:
    return summarise(_drift(stamp), ["arch", "method"], DRIFT_METRICS.list(), n_boot=1000)


@st.cache_data(show_spinner=False, max_entries=4)
def _table(stamp: tuple) -> pd.DataFrame:
    """Architecture × method: mean [CI] of every drift metric and the number of samples."""
    wide = ci_table(_summary(stamp), ["arch", "method"], ("metric",))
    wide = wide[[m for m in DRIFT_METRICS.list() if m in wide.columns]]
    return wide.join(_drift(stamp).groupby(["arch", "method"]).size().rename("n"))


@st.cache_data(show_spinner=False, max_entries=16)
def _ranking(metric: str, stamp: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Architecture ranks per method (a pivot) and Kendall's tau between the methods' rankings."""
    ranking = stability_ranking(_drift(stamp), metric=metric)
    return ranking.pivot(index="arch", columns="method", values="rank"), ranking_agreement(ranking)


@st.cache_data(show_spinner=False, max_entries=32)
def _evidence(sides: tuple, a_id: int, b_id: int, sample_pk: int, stamp: tuple) -> Evidence:
    """One sample's TL and FT maps, their difference and centres (``sides``: each side's method and
    parameter hash), over its image and lesion mask."""
    return load_evidence(a_id, sides[0], b_id, sides[1], sample_pk)


@st.cache_data(show_spinner=False, max_entries=16)
def _epochs(metric: str, stamp: tuple) -> pd.DataFrame:
    """Drift of each FT epoch checkpoint against its TL checkpoint, with CIs and validation accuracy."""
    return queries.drift_by_epoch(metric=metric)


# Figures are cached as objects: st.cache_data would unpickle a copy, and unpickling a plotly
# figure validates it again, about as slow as building it; st.plotly_chart does not change them.
@st.cache_resource(show_spinner=False, max_entries=16)
def _box_figure(metric: str, stamp: tuple) -> go.Figure:
    return drift_box(_drift(stamp), metric)


@st.cache_resource(show_spinner=False, max_entries=64)
def _evidence_figure(sides: tuple, a_id: int, b_id: int, sample_pk: int, titles: tuple, stamp: tuple) -> go.Figure:
    return drift_evidence(_evidence(sides, a_id, b_id, sample_pk, stamp), titles)


@st.cache_resource(show_spinner=False, max_entries=16)
def _epoch_figure(metric: str, stamp: tuple) -> go.Figure:
    return drift_epoch_lines(_epochs(metric, stamp), metric)


def along_training(metrics: list[str], stamp: tuple) -> None:
    """When did the evidence move: a drift metric of each FT epoch checkpoint against its TL
    checkpoint per architecture × method (95% CI bands) next to the validation accuracy."""
    metric = st.selectbox("Metric", metrics, index=metrics.index("iou_top20"), key="epoch_metric",
                          format_func=lambda k: DRIFT_METRICS.get(k).label)
    curve = _epochs(metric, stamp)
    if curve.empty:
        st.info("No drift along training yet: it needs the FT epoch checkpoints of a tl-ft run and their maps.")
        st.code(EPOCH_COMMANDS, language="bash")
        return
    st.plotly_chart(_epoch_figure(metric, stamp), width="stretch")
    st.caption(f"Mean {metric} between the TL checkpoint's maps and each FT epoch checkpoint's (same method, "
               "samples correct for both), with the 95% CI of a bootstrap over images; dotted grey, right axis: "
               "the validation accuracy of that epoch. " + DRIFT_METRICS.get(metric).describe() + ".")


def evidence_view(df: pd.DataFrame, metrics: list[str], stamp: tuple) -> None:
    """A checkpoint pair, a method, a drift metric: the pair's samples sorted by that metric
    (largest drift first) with their values; the chosen sample's TL map, FT map and difference
    over the image and lesion, with the centre-of-mass arrow."""
    pairs = df[["checkpoint_a_id", "checkpoint_a", "checkpoint_b_id", "checkpoint_b"]].drop_duplicates()
    pair_labels = {f"{r.checkpoint_a} → {r.checkpoint_b}": (int(r.checkpoint_a_id), int(r.checkpoint_b_id)) for r in pairs.itertuples()}
    c1, c2, c3 = st.columns(3)
    pair_label = c1.selectbox("Checkpoint pair", list(pair_labels), key="pair")
    a_id, b_id = pair_labels[pair_label]
    sub = df[(df["checkpoint_a_id"] == a_id) & (df["checkpoint_b_id"] == b_id)]
    method = c2.selectbox("Method", sorted(sub["method"].unique()), key="pair_method")
    sort_metric = c3.selectbox("Sort by (largest drift first)", metrics, index=metrics.index("iou_top20"),
                               key="evidence_metric", format_func=lambda k: DRIFT_METRICS.get(k).label)
    rows = drift_order(sub[sub["method"] == method], sort_metric)
    st.caption(f"{len(rows)} samples of this pair, largest drift in {sort_metric} first "
               f"({DRIFT_METRICS.get(sort_metric).describe()})")
    st.dataframe(rows.set_index("sample_id")[metrics], width="stretch", height=180, key="evidence_browser")
    pick = st.selectbox("Sample", rows.index.tolist(), key="evidence_sample",
                        format_func=lambda i: f"{rows.loc[i, 'sample_id']}  {sort_metric}={rows.loc[i, sort_metric]:.3f}")
    row = rows.loc[pick]
    sides = ((row["method_a"], row["params_hash_a"]), (row["method_b"], row["params_hash_b"]))
    titles = (f"TL: {row['checkpoint_a']} · {sides[0][0]}", f"FT: {row['checkpoint_b']} · {sides[1][0]}")
    ev = _evidence(sides, a_id, b_id, int(row["sample_pk"]), stamp)
    st.plotly_chart(_evidence_figure(sides, a_id, b_id, int(row["sample_pk"]), titles, stamp), width="stretch")
    st.caption(f"Maps normalised to shares of their total (|map| / Σ|map|), one colour scale for (a) and (b); "
               f"(c) FT − TL, red where fine-tuning added evidence, blue where it removed it; lesion contour in "
               f"green; arrow: centre of mass TL (row {ev.centre_a[0]:.1f}, col {ev.centre_a[1]:.1f}) → FT "
               f"(row {ev.centre_b[0]:.1f}, col {ev.centre_b[1]:.1f}), {ev.shift:.1f} px.")
    st.table(row[metrics].to_frame().T)


def ranking_reversals(stamp: tuple) -> None:
    """Architecture ranks per method for one stability metric, Kendall's tau between the methods'
    rankings, and a warning naming the reversals."""
    metrics = DRIFT_METRICS.list()
    rank_metric = st.selectbox("Stability metric", metrics, index=metrics.index("iou_top20"), key="rank_metric",
                               format_func=lambda k: DRIFT_METRICS.get(k).label)
    ranks, agree = _ranking(rank_metric, stamp)
    left, right = st.columns(2)
    left.caption("Architecture rank per method (1 = most stable)")
    left.table(ranks)  # small tables: static
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


VIEWS = ("Ranking reversals", "Distributions", "Along training", "Evidence of one sample")


with user_errors():
    stamp = page_start(
        "Drift: did fine-tuning change the evidence?",
        "Reference-free drift between the maps of a transfer-learning checkpoint (A) and its fine-tuned "
        "successor (B) on the same samples, per architecture and attribution method.",
        TABLES,
    )
    stop_when_empty(stamp, "drift_metrics", "drift metrics", FILL_COMMANDS)
    df = _drift(stamp)

    st.subheader("Architecture × method drift (mean [95% CI])")
    metrics = DRIFT_METRICS.list()
    st.table(_table(stamp))  # static: a data grid costs the browser ~0.3-0.5 s per page view
    st.caption("; ".join(f"{k}: {DRIFT_METRICS.get(k).describe()}" for k in metrics))

    # only the open tab runs and is drawn; the first one, open on arrival, holds two small static tables
    views = lazy_tabs(VIEWS, "drift_view")
    if views["Ranking reversals"].open:
        with views["Ranking reversals"]:
            ranking_reversals(stamp)
    if views["Distributions"].open:
        with views["Distributions"]:
            dist_metric = st.selectbox("Metric", metrics, index=metrics.index("iou_top20"), key="dist_metric",
                                       format_func=lambda k: DRIFT_METRICS.get(k).label)
            st.plotly_chart(_box_figure(dist_metric, stamp), width="stretch")
    if views["Along training"].open:
        with views["Along training"]:
            along_training(metrics, stamp)
    if views["Evidence of one sample"].open:
        with views["Evidence of one sample"]:
            evidence_view(df, metrics, stamp)
