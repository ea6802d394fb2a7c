"""Explain: one sample, one or several attribution methods side by side over the image and lesion,
for the class the model predicts or the sample's true class."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import models
from ui.common import page_start, user_errors
from xai_core.attribution import capabilities, explain_samples_info, get_method, list_methods
from xai_core.attribution.jobs import select_samples
from xai_core.catalog import SampleRow, sample_index
from xai_core.config import device
from xai_core.metrics import explanation_precision

COLORMAPS = ["Jet", "Hot", "Inferno", "Viridis", "RdBu_r", "Turbo"]
TARGETS = {"predicted class": "predicted", "true class": "true"}  # radio label -> explain target
FILL_COMMANDS = """xaudit data build --name mri-lesions          # a benchmark dataset
xaudit train --dataset mri-lesions --arch vgg16 # a checkpoint to explain"""


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=4)
def _model(checkpoint_id: int, sha256: str, workspace: tuple) -> tuple[torch.nn.Module, dict]:
    """The loaded checkpoint (kept across reruns; keyed by id, file hash and the workspace: its
    folder and database URL, the first two parts of a :func:`change_stamp`)."""
    return models.load(checkpoint_id)


TABLES = ("checkpoints", "datasets", "samples")  # what the cached reads below read


@st.cache_data(show_spinner=False, max_entries=4)
def _checkpoints(stamp: tuple) -> list[dict]:
    """Checkpoints trained on a dataset (the ones with samples to explain); keyed on
    :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return [c for c in models.list_checkpoints() if c["dataset"] is not None]


@st.cache_data(show_spinner=False, max_entries=64)
def _probabilities(checkpoint_id: int, sha256: str, sample_pk: int, stamp: tuple) -> np.ndarray:
    """The model's class probabilities for one sample (:func:`models.predict`: the checkpoint's own
    input preparation, channels and normalisation)."""
    model, _ = _model(checkpoint_id, sha256, stamp[:2])
    dataset = next(c["dataset"] for c in _checkpoints(stamp) if c["id"] == checkpoint_id)
    return models.predict(model, select_samples(dataset, sample_pks=[sample_pk]).images)[1][0]


@st.cache_data(show_spinner=False, max_entries=16)
def _samples(stamp: tuple, dataset: str, split: str | None) -> list[SampleRow]:
    """:func:`sample_index`; keyed on :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return sample_index(dataset, split)


def _overlay(image: np.ndarray, attribution: np.ndarray, mask: np.ndarray | None, *, opacity: float,
             colormap: str, top_percent: float, title: str) -> go.Figure:
    """Grey image, attribution heat map (only the top-k% pixels) and the lesion contour."""
    shown = attribution.astype(np.float32).copy()
    if top_percent < 100:
        cut = np.percentile(shown, 100 - top_percent)
        shown[shown < cut] = np.nan  # transparent
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False, hoverinfo="skip", name="image"))
    fig.add_trace(go.Heatmap(z=shown, colorscale=colormap, opacity=opacity, showscale=True, name="attribution",
                             colorbar={"thickness": 10, "len": 0.8}))
    if mask is not None and mask.any():
        fig.add_trace(go.Contour(z=mask.astype(np.float32), showscale=False, name="lesion", hoverinfo="skip",
                                 contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"},
                                 line={"color": "lime", "width": 2}))
    fig.update_layout(title=title, margin={"l": 0, "r": 0, "t": 30, "b": 0}, height=360,
                      xaxis={"visible": False, "constrain": "domain"},
                      yaxis={"visible": False, "autorange": "reversed", "scaleanchor": "x"})
    return fig


with user_errors():
    stamp = page_start(
        "Explain",
        "Attribution maps of one sample, computed on demand (GPU when present) and stored; "
        "the lesion contour is the ground truth the benchmark knows.",
        TABLES,
    )
    checkpoints = _checkpoints(stamp)
    if not checkpoints:
        st.info("No checkpoints trained on a dataset in this workspace yet. Create one with:")
        st.code(FILL_COMMANDS, language="bash")
        st.stop()

    # ?checkpoint=<id>&sample=<Sample.id>&method=<name>[&target=true] (links from the Benchmark and Drift pages)
    query = st.query_params
    labels = {c["id"]: f"{c['name']}  ({c['arch']}, {c['phase']}, {c['dataset']})" for c in checkpoints}
    ids = list(labels)
    wanted = int(query["checkpoint"]) if query.get("checkpoint", "").isdigit() else None
    left, right = st.columns([2, 1])
    ckpt_id = left.selectbox("Checkpoint", ids, format_func=labels.get,
                             index=ids.index(wanted) if wanted in ids else len(ids) - 1)
    ckpt = next(c for c in checkpoints if c["id"] == ckpt_id)
    dataset = ckpt["dataset"]
    wanted_sample = int(query["sample"]) if query.get("sample", "").isdigit() else None
    split = right.selectbox("Split", ["test", "val", "train", "all"], index=3 if wanted_sample else 0)
    samples = _samples(stamp, dataset, None if split == "all" else split)
    if not samples:
        st.info(f"Dataset {dataset} has no {split} samples.")
        st.stop()
    sample_labels = {pk: f"{sid}  (label {lab}, {sp})" for pk, sid, lab, sp in samples}
    pks = list(sample_labels)
    pk = st.selectbox("Sample", pks, format_func=sample_labels.get,
                      index=pks.index(wanted_sample) if wanted_sample in pks else 0)

    caps = capabilities(ckpt["arch"])
    st.write("Methods")
    chosen: list[str] = []
    columns = st.columns(5)
    for i, name in enumerate(list_methods()):
        spec = get_method(name)
        supported = caps[name] is True
        default = name == query.get("method", "saliency")
        if columns[i % 5].checkbox(spec.title, value=default and supported, key=f"method-{name}",
                                   disabled=not supported,
                                   help=(spec.doc.splitlines()[0] if supported else str(caps[name]))):
            chosen.append(name)

    target_label = st.radio("Explain the", list(TARGETS), horizontal=True, key="target",
                            index=1 if query.get("target") == "true" else 0,
                            help="the class whose score the attribution explains: the model's prediction, or "
                                 "the sample's label (they differ on a misclassified sample)")
    target = TARGETS[target_label]
    c1, c2, c3 = st.columns(3)
    opacity = c1.slider("Opacity", 0.0, 1.0, 0.55, 0.05)
    colormap = c2.selectbox("Colour map", COLORMAPS)
    top_percent = c3.slider("Show top-k% of pixels", 1, 100, 100)

    model, meta = _model(int(ckpt_id), ckpt["sha256"], stamp[:2])  # the workspace: folder and database
    batch = select_samples(dataset, sample_pks=[int(pk)])
    image = batch.images[0]
    mask = None if batch.masks is None else batch.masks[0].astype(bool)
    probs = _probabilities(int(ckpt_id), ckpt["sha256"], int(pk), stamp)
    class_names = meta.get("class_names") or [str(i) for i in range(len(probs))]
    pred = int(probs.argmax())
    m1, m2, m3 = st.columns(3)
    m1.metric("Prediction", class_names[pred], help="the class the model predicts for this sample")
    m2.metric("Probability", f"{probs[pred]:.3f}")
    m3.metric("True label", class_names[int(batch.labels[0])] if int(batch.labels[0]) < len(class_names)
              else str(int(batch.labels[0])))

    if not chosen:
        st.info("Tick one or more methods above.")
        st.stop()
    figures = st.columns(min(len(chosen), 3))
    for i, name in enumerate(chosen):
        with st.spinner(f"{get_method(name).title}…"):
            result = explain_samples_info(int(ckpt_id), [int(pk)], name, model=model, target=target)
        attribution = result.maps[0]
        col = figures[i % len(figures)]
        col.plotly_chart(_overlay(image, attribution, mask, opacity=opacity, colormap=colormap,
                                  top_percent=top_percent, title=get_method(name).title),
                         width="stretch", key=f"fig-{name}")
        origin = "from the store" if result.from_cache else "computed now"
        text = (f"{origin} in {result.seconds:.2f} s · compute {result.compute_seconds:.2f} s on "
                f"{result.device} · explains class {class_names[int(result.targets[0])]}")
        if mask is not None and mask.any():
            precision = float(explanation_precision(attribution[None], mask[None])[0])
            text += f" · precision {precision:.3f}"
        col.caption(text)
    st.caption(f"Dashboard compute device: `{device()}`")
