"""Benchmark: ground-truth explanation metrics by method x pre-training x degree, with chance baselines;
the share of attribution on suppressor/confounder regions where such benchmarks are evaluated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ui.common import lazy_tabs, page_start, stop_when_empty, user_errors
from xai_core.metrics import queries
from xai_core.metrics.chance_maps import CHANCE_METHODS
from xai_core.metrics.registry import GROUND_TRUTH_METRICS
from xai_core.attribution import equivalence_column
from xai_core.metrics.figures import accuracy_scatter, degree_lines, metric_box, qualitative_grid
from xai_core.metrics.qualitative import Grid, grid_samples, load_grid, stored_map_index
from xai_core.metrics.sanity_results import FAIL_RULE, sanity_figure, sanity_frame, sanity_summary, sanity_verdicts
from xai_core.metrics.sanity_similarity import SANITY_SIMILARITIES
from xai_core.metrics.regions import region_frame, region_summary
from xai_core.metrics.statistics import ci_table, ci_text, summarise
from xai_core.stamp import change_stamp

FILL_COMMANDS = """xaudit demo --quick --no-serve                  # data, checkpoints, maps and metrics in one go
# or step by step:
xaudit train-grid --dataset mri-lesions         # pre-training x fine-tuning degree grid
xaudit explain --checkpoint NAME --methods saliency,integrated_gradients   # per checkpoint
xaudit evaluate                                 # ground-truth metrics + chance baselines"""

TABLES = ("gt_metrics", "checkpoints", "samples", "predictions")  # what the cached reads below read
MAP_TABLES = ("attribution_maps", "checkpoints", "samples")  # what the qualitative grid reads
SANITY_TABLES = ("drift_metrics", "checkpoints", "samples")  # what the sanity-check section reads


@st.cache_data(show_spinner=False, max_entries=8)
def _gt(selection: str, stamp: tuple) -> pd.DataFrame:
    """Keyed on the selection and :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return queries.gt_frame(selection)


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(selection: str, metric: str, stamp: tuple) -> pd.DataFrame:
    return summarise(_gt(selection, stamp), ["method", "pretrain", "degree"], [metric], n_boot=1000)


@st.cache_data(show_spinner=False, max_entries=32)
def _wide(selection: str, metric: str, stamp: tuple) -> tuple[pd.DataFrame, list[str]]:
    """The mean [CI] table (a note column next to equivalent methods) and the notes' explanations."""
    wide = ci_table(_summary(selection, metric, stamp))
    notes, why = equivalence_column(list(wide.index))
    if any(notes):
        wide.insert(0, "note", notes)
    return wide, why


@st.cache_data(show_spinner=False, max_entries=32)
def _chance(selection: str, metric: str, stamp: tuple) -> str:
    """The chance caption: the baselines' means (and a random ranking's expected precision), or ""."""
    df = _gt(selection, stamp)
    base_means = df[df["method"].isin(CHANCE_METHODS)].groupby("method")[metric].mean()
    if base_means.empty:
        return ""
    text = "; ".join(f"{name} = {value:.3f}" for name, value in base_means.items())
    chance = queries.chance_precision(selection)
    if metric == "precision" and np.isfinite(chance):
        text += f"; expected precision of a random ranking (mean lesion share) = {chance:.3f}"
    return text


@st.cache_data(show_spinner=False, max_entries=32)
def _acc(method: str, metric: str, selection: str, stamp: tuple) -> pd.DataFrame:
    return queries.accuracy_frame(method, metric, selection)


@st.cache_data(show_spinner=False, max_entries=4)
def _map_index(map_stamp: tuple) -> pd.DataFrame:
    """Stored maps of the grid's checkpoints on test samples; keyed on :func:`change_stamp` of :data:`MAP_TABLES`."""
    return stored_map_index("test")


@st.cache_data(show_spinner=False, max_entries=4)
def _grid_samples(map_stamp: tuple) -> pd.DataFrame:
    return grid_samples(_map_index(map_stamp))


@st.cache_data(show_spinner=False, max_entries=16)
def _grid(sample_pk: int, arch: str, map_stamp: tuple) -> Grid:
    return load_grid(_map_index(map_stamp), sample_pk, arch)


# Figures are cached as objects (st.cache_resource): st.cache_data would hand out unpickled copies,
# and unpickling a plotly figure validates it again, about as slow as building it. st.plotly_chart
# reads a figure without changing it.
@st.cache_resource(show_spinner=False, max_entries=32)
def _degree_figure(selection: str, metric: str, stamp: tuple) -> go.Figure:
    return degree_lines(_summary(selection, metric, stamp), metric)


@st.cache_resource(show_spinner=False, max_entries=64)
def _box_figure(selection: str, metric: str, method: str, stamp: tuple) -> go.Figure:
    return metric_box(_gt(selection, stamp), metric, method)


@st.cache_resource(show_spinner=False, max_entries=64)
def _scatter(method: str, metric: str, selection: str, stamp: tuple) -> tuple[go.Figure, dict | None, str] | None:
    """The accuracy scatter with its fit; None with fewer than two checkpoints that have an accuracy."""
    acc = _acc(method, metric, selection, stamp).dropna(subset=["accuracy"])
    return accuracy_scatter(acc, metric) if len(acc) >= 2 else None


@st.cache_resource(show_spinner=False, max_entries=16)
def _grid_figure(sample_pk: int, arch: str, map_stamp: tuple) -> go.Figure:
    return qualitative_grid(_grid(sample_pk, arch, map_stamp))


@st.cache_data(show_spinner=False, max_entries=4)
def _sanity(sanity_stamp: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sanity-check medians per layer and verdicts; keyed on :func:`change_stamp` of :data:`SANITY_TABLES`."""
    summary = sanity_summary(sanity_frame())
    return summary, sanity_verdicts(summary)


def sanity_checks() -> None:
    """Adebayo et al.'s sanity checks: per method × architecture the similarity of the trained
    model's maps to a randomised model's, by randomised layer, and which methods fail."""
    summary, verdicts = _sanity(change_stamp(*SANITY_TABLES))
    if summary.empty:
        st.caption("No sanity checks yet; run `xaudit sanity CHECKPOINT --methods saliency,baseline_sobel "
                   "--mode cascading` (or independent, data).")
        return
    c1, c2 = st.columns(2)
    modes = list(dict.fromkeys(summary["mode"]))
    mode = c1.radio("Test", modes, horizontal=True, key="sanity_mode")
    measure = c2.selectbox("Similarity", SANITY_SIMILARITIES.list(), key="sanity_measure",
                           format_func=lambda k: SANITY_SIMILARITIES.get(k).label)
    st.plotly_chart(sanity_figure(summary, mode, measure), width="stretch")
    shown = verdicts[verdicts["mode"] == mode].assign(flag=lambda v: np.where(v["verdict"] == "fails", "⚠ fails", "passes"))
    st.table(shown[["arch", "method", "flag", "step", "spearman", "steps"]].round(3))
    st.caption(FAIL_RULE + " Medians over the images, pooled over the checkpoints of an architecture; the Sobel edge "
               "map (baseline_sobel) never looks at the model and is the control that must fail.")


def one_sample_grid() -> None:
    """The MRI study's qualitative figure: a test sample with stored maps (fullest first), its maps
    across pre-training × degree (rows) and method (columns) over the image and lesion contour."""
    map_stamp = change_stamp(*MAP_TABLES)
    samples = _grid_samples(map_stamp)
    if samples.empty:
        st.caption("No stored maps of test samples yet; run `xaudit explain --checkpoint NAME --split test` "
                   "for the grid's checkpoints.")
        return
    c1, c2 = st.columns([1, 2])
    archs = list(dict.fromkeys(samples["arch"]))  # the architecture with the fullest grid first
    arch = c1.selectbox("Architecture", archs, key="grid_arch")
    rows = samples[samples["arch"] == arch].set_index("sample_pk")
    pick = c2.selectbox("Test sample (most cells stored first)", rows.index.tolist(), key="grid_sample",
                        format_func=lambda pk: f"{rows.loc[pk, 'sample_id']}  ({rows.loc[pk, 'cells']} maps)")
    st.plotly_chart(_grid_figure(int(pick), arch, map_stamp), width="stretch")
    st.caption(f"Sample {rows.loc[pick, 'sample_id']} ({rows.loc[pick, 'dataset']}): rows pre-training source / "
               "fine-tuning degree, columns attribution methods; each map is |map| scaled to its own maximum, over "
               "the grey image; green: the lesion contour. An empty cell: that map is not stored.")


def inspect_sample(df: pd.DataFrame, methods: list[str], metric: str, stored: list[str]) -> None:
    """One checkpoint's samples of one method, worst first; the chosen sample's metrics and a link
    that opens it on the Explain page (``stored``: the metrics the table shows)."""
    c1, c2 = st.columns(2)
    method = c1.selectbox("Method", methods, key="sample_method")
    ck = c2.selectbox("Checkpoint", sorted(df["checkpoint"].unique()), key="ck")
    rows = df[(df["checkpoint"] == ck) & (df["method"] == method)].sort_values(metric, kind="stable")
    if rows.empty:
        st.caption(f"No {method} rows for {ck}.")
        return
    pick = st.selectbox(
        "Sample (sorted by the metric, worst first)", rows.index.tolist(),
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


@st.cache_data(show_spinner=False, max_entries=8)
def _region_summary(selection: str, stamp: tuple) -> pd.DataFrame:
    """:func:`region_summary` of the stored ``region_share`` values; keyed on :func:`change_stamp` of :data:`TABLES`."""
    return region_summary(region_frame(selection), n_boot=1000)


def region_section(selection: str, stamp: tuple) -> None:
    """Suppressor and confounder benchmarks (``xaudit data build --variant``): per dataset and method
    the share of attribution on the second region with its 95% CI against a uniform map's share,
    and which methods put mass there. Draws nothing when no such values are stored."""
    summary = _region_summary(selection, stamp)
    if summary.empty:
        return
    st.subheader("Suppressor and confounder regions: attribution off the lesion")
    table = summary.assign(**{"share [95% CI]": [ci_text(m, lo, hi) for m, lo, hi in
                                                 zip(summary["mean"], summary["ci_low"], summary["ci_high"], strict=True)]})
    st.table(table[["dataset", "variant", "method", "n", "share [95% CI]", "chance", "ratio", "verdict"]]
             .round({"chance": 3, "ratio": 2}).set_index(["dataset", "method"]))
    for (name, variant), rows in summary.groupby(["dataset", "variant"], sort=True):
        real = rows[~rows["method"].isin(CHANCE_METHODS)]
        above = real.loc[real["verdict"] == "above chance", "method"].tolist()
        st.caption(f"{name} ({variant}): " + (f"methods that put mass on the {variant} region: {', '.join(above)}"
                                               if above else f"no method puts more mass on the {variant} region "
                                                             "than a uniform map"))
    st.caption("share: mean share of |attribution| on the second region (lower is better; a suppressor carries no "
               "class information, a confounder marker only goes with the class) over the samples that have one; "
               "chance: the region's share of the image (a uniform map); ratio = share / chance; verdict: the 95% "
               "bootstrap CI above, below or around chance.")


VIEWS = ("Reading the table", "Long table", "Against the degree", "Per-image distribution", "Accuracy vs explanation",
         "Inspect a sample", "One sample across the grid", "Sanity checks", "Faithfulness")


@st.cache_data(show_spinner=False, max_entries=8)
def _faithfulness(selection: str, stamp: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(faithfulness per method, mean deletion curve per method) of the stored values."""
    from xai_core.metrics.faithfulness_job import faithfulness_wide, mean_curves

    return faithfulness_wide(selection), mean_curves("deletion_auc", selection)


with user_errors():
    stamp = page_start(
        "Benchmark: are the explanations right?",
        "Ground-truth metrics of each attribution method against the exact lesion masks, per pre-training "
        "source and fine-tuning degree; bootstrap 95% CIs; random-map and Sobel-edge baselines show chance.",
        TABLES,
    )
    stop_when_empty(stamp, "gt_metrics", "ground-truth metrics", FILL_COMMANDS)

    col1, col2 = st.columns(2)
    selection = col1.selectbox("Samples", ["correct", "all", "incorrect"], index=0,
                               help="Correctly classified test samples (the MRI study's choice), all, or only errors.")
    df = _gt(selection, stamp)
    stored = [k for k in GROUND_TRUTH_METRICS.list() if k in df and df[k].notna().any()] or GROUND_TRUTH_METRICS.list()
    metric = col2.selectbox("Metric", stored, format_func=lambda k: GROUND_TRUTH_METRICS.get(k).label,
                            help="; ".join(f"{k}: {GROUND_TRUTH_METRICS.get(k).describe()}" for k in stored))
    if df.empty:
        st.warning(f"No stored metrics for the '{selection}' selection; run `xaudit evaluate --selection {selection}`.")
        st.stop()

    st.subheader(f"Mean {metric} by method × pre-training × degree (mean [95% CI])")
    wide, why = _wide(selection, metric, stamp)
    st.table(wide)  # static: a data grid costs the browser ~0.3-0.5 s per page view

    # only the open tab runs and is drawn; the first tab, open on arrival, holds text only
    views = lazy_tabs(VIEWS, "benchmark_view")
    if views["Reading the table"].open:
        with views["Reading the table"]:
            chance = _chance(selection, metric, stamp)
            if chance:
                st.caption("Chance: " + chance)
            for text in why:
                st.caption(text)
            st.caption(f"Each cell: mean {metric} over the {selection} samples [95% bootstrap CI]; rows are "
                       "attribution methods (baselines: chance), columns pre-training source / fine-tuning degree. "
                       "The other tabs hold the long table, the study's figure, distributions, accuracy and single "
                       "samples.")
    if views["Long table"].open:
        views["Long table"].dataframe(_summary(selection, metric, stamp), width="stretch")

    if views["Against the degree"].open:
        with views["Against the degree"]:
            st.caption(f"Mean {metric} against the fine-tuning degree, one panel per method (the MRI study's figure); "
                       "one line per pre-training source with its 95% CI band; degrees from the frozen backbone (tl) "
                       "to all layers trained.")
            st.plotly_chart(_degree_figure(selection, metric, stamp), width="stretch")

    methods = sorted(df["method"].unique())
    if views["Per-image distribution"].open:
        with views["Per-image distribution"]:
            box_method = st.selectbox("Method for the box plots", methods, key="box_method",
                                      index=methods.index("saliency") if "saliency" in methods else 0)
            st.plotly_chart(_box_figure(selection, metric, box_method, stamp), width="stretch")

    real_methods = [m for m in methods if m not in CHANCE_METHODS]
    if views["Accuracy vs explanation"].open:
        with views["Accuracy vs explanation"]:
            if not real_methods:
                st.caption("Only baseline maps are stored; explain a checkpoint with a method first.")
            else:
                method = st.selectbox("Method", real_methods, key="acc_method")
                scatter = _scatter(method, metric, selection, stamp)
                if scatter is None:
                    st.caption("At least two evaluated checkpoints with predictions are needed for the scatter.")
                else:
                    figure, fit, no_fit = scatter
                    st.plotly_chart(figure, width="stretch")
                    if fit is None:
                        st.caption(f"No regression: {no_fit}")
                    elif not fit["effects"].empty:
                        st.caption("Pre-training effect at matched accuracy (OLS: metric ~ accuracy + source):")
                        st.table(fit["effects"])

    if views["Inspect a sample"].open:
        with views["Inspect a sample"]:
            if not real_methods:
                st.caption("Only baseline maps are stored; explain a checkpoint with a method first.")
            else:
                inspect_sample(df, real_methods, metric, stored)

    if views["One sample across the grid"].open:
        with views["One sample across the grid"]:
            one_sample_grid()

    if views["Sanity checks"].open:
        with views["Sanity checks"]:
            sanity_checks()

    if views["Faithfulness"].open:
        with views["Faithfulness"]:
            faith, curve = _faithfulness(selection, stamp)
            if faith.empty:
                st.caption("No faithfulness metrics yet; run `xaudit faithfulness` (it runs the checkpoints).")
            else:
                st.caption("Is the map faithful to the model? Deletion/insertion AUC, ROAD and faithfulness "
                           f"correlation per method on the {selection} samples, mean [95% bootstrap CI]; "
                           "see `xaudit metrics` for each metric's meaning.")
                st.table(faith)
                if not curve.empty:
                    st.caption("Mean deletion curve: target score against the share of pixels removed, most "
                               "relevant first (a faithful map falls fast).")
                    st.line_chart(curve.pivot(index="x", columns="method", values="score"))

    region_section(selection, stamp)  # suppressor / confounder benchmarks (drawn only when stored)
