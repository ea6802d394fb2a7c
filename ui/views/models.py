"""Models: checkpoints with metrics and lineage, training curves, confusion matrix, per-class
one-vs-rest AUC and true positives (more than two classes), accuracy by pre-training x degree (a
coloured table), and a form that starts a training run as a background job."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import sample_colorscale

from models import DEGREES, list_architectures, list_pretraining_sources
from models.prediction import per_class_table
from ui.common import lazy_tabs, user_errors
from xai_core.background import JobState, list_jobs, start
from xai_core.catalog import (
    CHECKPOINT_TABLES,
    CheckpointDetail,
    accuracy_grid,
    checkpoint_detail,
    checkpoint_table,
    dataset_names,
    trained_archs,
)
from xai_core.stamp import change_stamp

COLUMNS = ["id", "name", "arch", "width", "pretrain", "degree", "phase", "epoch", "lineage", "dataset",
           "accuracy", "balanced_accuracy", "roc_auc", "train_time_s", "device"]
POLL_S = 2.0  # how often the training panel refreshes while a job runs
RECENT = 3  # finished training jobs shown under the form


@st.cache_data(show_spinner=False, max_entries=4)
def _checkpoints(stamp: tuple) -> pd.DataFrame:
    """Keyed on :func:`change_stamp` of the checkpoint tables (workspace and rows)."""
    return checkpoint_table()


@st.cache_data(show_spinner=False, max_entries=32)
def _detail(checkpoint_id: int, stamp: tuple) -> CheckpointDetail:
    return checkpoint_detail(checkpoint_id)


@st.cache_data(show_spinner=False, max_entries=4)
def _datasets(stamp: tuple) -> list[str]:
    return dataset_names()


def _accuracy_colour(value: float) -> str:
    """CSS for one accuracy cell: Viridis from 0.5 (chance) to 1.0, dark text on the light end."""
    if pd.isna(value):
        return ""
    t = min(1.0, max(0.0, (float(value) - 0.5) / 0.5))
    return f"background-color: {sample_colorscale('Viridis', [t])[0]}; color: {'black' if t > 0.6 else 'white'}"


@st.cache_data(show_spinner=False, max_entries=16)
def _accuracy_table(arch: str, stamp: tuple) -> pd.DataFrame:
    return accuracy_grid(_checkpoints(stamp), arch)


# Figures are cached as objects: st.cache_data would unpickle a copy, and unpickling a plotly
# figure validates it again, about as slow as building it; st.plotly_chart does not change them.
@st.cache_resource(show_spinner=False, max_entries=64)
def _detail_figures(checkpoint_id: int, stamp: tuple) -> list[go.Figure]:
    """Training curves (or the pretext task's) and the test confusion matrix of one checkpoint, as present."""
    detail = _detail(checkpoint_id, stamp)
    history, figures = detail.history, []
    if history and "epoch" in history[0]:
        curves = pd.DataFrame(history).melt("epoch", ["train_loss", "val_loss", "train_acc", "val_acc"])
        figures.append(px.line(curves, x="epoch", y="value", color="variable", markers=True, title="Training curves"))
    elif history and "step" in history[0]:
        figures.append(px.line(pd.DataFrame(history), x="step", y=["loss", "acc"], markers=True,
                               title="Pre-training (pretext task)"))
    if detail.metrics.get("confusion_matrix"):
        names = detail.class_names
        cm = pd.DataFrame(detail.metrics["confusion_matrix"], index=names, columns=names)
        figures.append(px.imshow(cm, text_auto=True, labels={"x": "predicted", "y": "true"},
                                 title="Confusion matrix (test split)", color_continuous_scale="Blues"))
    return figures


def _metric_text(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.3f}" if metrics.get(key) is not None else "-"


def describe(params: dict) -> str:
    """One line naming a training job's settings."""
    what = f"degree {params['degree']}" if params["protocol"] == "single" else "TL then full FT"
    return f"{params['arch']} from {params['pretrain']}, {what}, {params['epochs']} epochs on {params['dataset']}"


def job_line(job: JobState) -> None:
    """A running job's progress bar, a failed job's error line or a finished job's checkpoints."""
    if job.active:
        st.progress(job.fraction, text=f"{describe(job.params)}: {job.message or job.state}"[:200])
    elif job.state == "failed":
        st.error(f"Training failed ({describe(job.params)}): {job.error}")
    else:
        saved = ", ".join(f"#{c['id']} {c['name']}" for c in (job.result or {}).get("checkpoints", []))
        st.success(f"Saved {saved} ({describe(job.params)})")


def training_jobs(active_ids: tuple[str, ...]) -> None:
    """Running training jobs and the most recent finished ones; when one of ``active_ids`` (the
    jobs running at the page's last full run) has ended, the whole page runs again (its new
    checkpoints appear in the tables)."""
    jobs = list_jobs("train")
    for job in [j for j in jobs if j.active] + [j for j in jobs if not j.active][:RECENT]:
        job_line(job)
    if any(j.id in active_ids and not j.active for j in jobs):
        st.rerun()


def accuracy_view(frame: pd.DataFrame, stamp: tuple) -> None:
    """Test accuracy of one architecture by pre-training source × fine-tuning degree, coloured like a heatmap."""
    archs = trained_archs(frame)
    if not archs:
        st.caption("No fine-tuned checkpoint with a test accuracy yet.")
        return
    arch_choice = st.selectbox("Architecture", archs, key="heat_arch")
    heat = _accuracy_table(arch_choice, stamp)
    # a heatmap as a coloured static table: a plotly figure or a data grid costs the browser 0.1-0.3 s
    st.table(heat.style.map(_accuracy_colour).format("{:.3f}", na_rep="—"))
    st.caption("Test accuracy of the newest checkpoint per cell; colour from 0.5 (chance, dark) to 1.0 (light).")


def checkpoint_view(frame: pd.DataFrame, stamp: tuple) -> None:
    """One checkpoint: lineage, test metrics, training curves and confusion matrix."""
    options = {f"#{r.id} {r.name}": int(r.id) for r in frame.itertuples()}
    label = st.selectbox("Checkpoint", list(options), index=len(options) - 1, key="detail")
    row = frame[frame["id"] == options[label]].iloc[0]
    st.markdown(f"**Lineage:** {row['lineage']}")
    detail = _detail(int(row["id"]), stamp)
    metrics = detail.metrics
    c1, c2, c3 = st.columns(3)
    c1.metric("Accuracy", _metric_text(metrics, "accuracy"))
    c2.metric("Balanced accuracy", _metric_text(metrics, "balanced_accuracy"))
    c3.metric("ROC-AUC", _metric_text(metrics, "roc_auc"),
              help="one-vs-rest, macro over the classes" if len(detail.class_names) > 2 else None)
    if len(detail.class_names) > 2:
        table = per_class_table(metrics, detail.class_names).set_index("class")
        st.table(table.style.format({"roc_auc_ovr": "{:.3f}", "recall": "{:.3f}"}, na_rep="—"))
        st.caption("Per class on the test split: one-vs-rest ROC-AUC, true positives (correct predictions "
                   "among the images of that class), images and recall"
                   + ("" if metrics.get("roc_auc_per_class") else
                      "; this checkpoint was saved before per-class metrics were recorded (—)") + ".")
    for figure in _detail_figures(int(row["id"]), stamp):
        st.plotly_chart(figure, width="stretch")


def train_view(stamp: tuple, running: tuple[str, ...]) -> None:
    """The training form (a background job per submission) and the jobs' progress and outcomes."""
    names = _datasets(stamp)
    if not names:
        st.info("No dataset yet. Build the benchmark first: `xaudit data build --name mri-lesions`.")
        return
    archs_all, sources = list_architectures(), list_pretraining_sources()
    with st.form("train"):
        ds = st.selectbox("Dataset", names)
        a1, a2, a3 = st.columns(3)
        arch = a1.selectbox("Architecture", archs_all, index=archs_all.index("vgg16"))
        pre = a2.selectbox("Pre-training", sources, index=sources.index("natural"))
        degree = a3.selectbox("Degree", list(DEGREES), index=len(DEGREES) - 1)
        b1, b2, b3 = st.columns(3)
        protocol = b1.selectbox("Protocol", ["single", "tl-ft"])
        width = b2.number_input("Width (vgg16)", 0.0625, 1.0, 0.125, step=0.0625)
        epochs = b3.number_input("Epochs", 1, 200, 8)
        submitted = st.form_submit_button("Train")
    st.caption("Training runs in the background: you can leave this page, and the progress is here when "
               "you come back (also from another browser).")
    if submitted:
        with user_errors():  # e.g. the same job running already: one line, the panel below still shows
            start("train", dataset=ds, arch=arch, pretrain=pre, degree=degree, protocol=protocol,
                  width=float(width) if arch == "vgg16" else 1.0, epochs=int(epochs))
            running = tuple(j.id for j in list_jobs("train") if j.active)
    st.fragment(training_jobs, run_every=POLL_S if running else None)(running)


VIEWS = ("Accuracy by pre-training × degree", "Checkpoint detail", "Train a model")


st.title("Models")
st.caption("Checkpoints of every pre-training source and fine-tuning degree, their test metrics and lineage.")

with user_errors():
    stamp = change_stamp(*CHECKPOINT_TABLES)
    frame = _checkpoints(stamp)
    running = tuple(j.id for j in list_jobs("train") if j.active)
    if running:
        st.info(f"{len(running)} training job(s) running: progress in the “Train a model” tab.")
    if frame.empty:
        st.info(
            "No checkpoints yet. Train the demo grid with "
            "`xaudit train-grid --dataset mri-lesions --archs vgg16 --width 0.125 --pretrain natural,mri` "
            "or one model with `xaudit train --dataset mri-lesions --arch vgg16 --width 0.125 --degree all`, "
            "or use the form below."
        )
        st.subheader("Train a model")
        train_view(stamp, running)
        st.stop()

    st.subheader("Checkpoints")
    st.table(frame[COLUMNS].set_index("id"))  # static: a data grid costs the browser ~0.3-0.5 s per page view
    # only the open tab runs and is drawn
    views = lazy_tabs(VIEWS, "models_view")
    if views["Accuracy by pre-training × degree"].open:
        with views["Accuracy by pre-training × degree"]:
            accuracy_view(frame, stamp)
    if views["Checkpoint detail"].open:
        with views["Checkpoint detail"]:
            checkpoint_view(frame, stamp)
    if views["Train a model"].open:
        with views["Train a model"]:
            train_view(stamp, running)
