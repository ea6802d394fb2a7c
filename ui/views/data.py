"""Data: browse a dataset (image with its lesion-mask contour, class and lesion-area histograms)
and the slices of a NIfTI anatomy volume (the MNI152 template or an uploaded file)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from ui.common import page_start, user_errors
from xai_core.data import list_datasets, load_dataset
from xai_core.data.anatomy import mni152_path, read_canonical, read_uploaded

AXES = {"axial": 2, "coronal": 1, "sagittal": 0}


TABLES = ("datasets", "samples")  # what the cached reads below read


@st.cache_data(show_spinner=False, max_entries=4)
def _datasets(stamp: tuple) -> list[dict]:
    """Registered datasets; keyed on :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return list_datasets()


@st.cache_data(show_spinner="Loading the dataset…", max_entries=4)
def _load(stamp: tuple, name: str, version: int, split: str | None) -> dict[str, np.ndarray | list]:
    """Arrays of one dataset, keyed by :func:`change_stamp` of :data:`TABLES`, name, dataset id
    (a rebuilt dataset gets a new id) and split."""
    ds = load_dataset(name, split)
    return {"images": ds.images, "masks": ds.masks, "labels": ds.labels, "sample_ids": list(ds.sample_ids),
            "splits": ds.splits, "class_names": list(ds.class_names)}


@st.cache_data(show_spinner="Reading the volume…", max_entries=2)
def _volume(path: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """:func:`read_canonical`, cached by path (the packaged template; an upload is read each time)."""
    return read_canonical(path)


def _image_figure(image: np.ndarray, mask: np.ndarray, title: str) -> go.Figure:
    """Grey image with the lesion-mask contour (level 0.5) on top."""
    fig = go.Figure(go.Heatmap(z=image, colorscale="gray", showscale=False, name="image",
                               hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra></extra>"))
    if mask.any():
        fig.add_trace(go.Contour(z=mask.astype(np.float32), showscale=False, name="lesion mask", hoverinfo="skip",
                                 contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"},
                                 line={"color": "lime", "width": 2}))
    fig.update_layout(title=title, height=420, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      xaxis={"visible": False, "constrain": "domain"},
                      yaxis={"visible": False, "autorange": "reversed", "scaleanchor": "x"})
    return fig


def _slice_figure(volume: np.ndarray, axis: int, index: int, title: str) -> go.Figure:
    """One slice of a RAS+ volume shown with superior/anterior at the top."""
    plane = np.take(volume, index, axis=axis).T
    fig = go.Figure(go.Heatmap(z=plane, colorscale="gray", showscale=False, name="slice"))
    fig.update_layout(title=title, height=420, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      xaxis={"visible": False, "constrain": "domain"},
                      yaxis={"visible": False, "scaleanchor": "x"})
    return fig


with user_errors():
    stamp = page_start(
        "Data",
        "Benchmark and imported datasets: each image with its ground-truth lesion contour, and the "
        "anatomy the benchmark is drawn from.",
        TABLES,
    )
    datasets = _datasets(stamp)
    if not datasets:
        st.info("No datasets in this workspace yet. Build the lesion benchmark with "
                "`xaudit data build --name mri-lesions` (or import your own images with "
                "`xaudit data import DIR --name NAME`).")
    else:
        by_name = {d["name"]: d for d in datasets}
        c1, c2, c3 = st.columns(3)
        name = c1.selectbox("Dataset", list(by_name), key="dataset")
        info = by_name[name]
        split_choice = c2.selectbox("Split", ["all", "train", "val", "test"], key="split")
        class_choice = c3.selectbox("Class", ["all", *info["class_names"]], key="class")
        data = _load(stamp, name, int(info["id"]), None if split_choice == "all" else split_choice)
        labels = np.asarray(data["labels"])
        class_names = data["class_names"]
        keep = np.arange(len(labels)) if class_choice == "all" else np.nonzero(
            labels == class_names.index(class_choice))[0]
        st.caption(f"{info['kind']} dataset, {info['n']} images of {info['size']} px; "
                   + ", ".join(f"{c}: {k}" for c, k in info["class_counts"].items())
                   + f"; {len(keep)} shown with this filter")
        if len(keep) == 0:
            st.warning("No samples match this split and class.")
        else:
            left, right = st.columns([3, 2])
            number = left.number_input("Sample", min_value=1, max_value=len(keep), value=1, step=1,
                                       key="sample", help="position within the filtered samples")
            i = int(keep[int(number) - 1])
            mask = np.asarray(data["masks"][i])
            sid, label = data["sample_ids"][i], class_names[int(labels[i])]
            left.plotly_chart(_image_figure(data["images"][i], mask, sid), width="stretch")
            left.caption(f"Sample {sid} · label {label} · split {data['splits'][i]} · "
                         f"lesion area {int(mask.sum())} px")
            areas = np.asarray(data["masks"])[keep].sum(axis=(1, 2))
            frame = pd.DataFrame({"class": [class_names[int(k)] for k in labels[keep]], "lesion area (px)": areas})
            counts = frame["class"].value_counts().reindex(class_names, fill_value=0).reset_index()
            counts.columns = ["class", "images"]
            right.plotly_chart(px.bar(counts, x="class", y="images", title="Images per class", height=220),
                               width="stretch")
            right.plotly_chart(px.histogram(frame, x="lesion area (px)", color="class", barmode="overlay",
                                            nbins=30, title="Lesion area by class", height=260),
                               width="stretch")

st.subheader("Anatomy slice browser")
with user_errors():
    upload = st.file_uploader("NIfTI volume (.nii or .nii.gz); default: the MNI152 T1 template",
                              type=["nii", "gz"], key="volume")
    if upload is not None:
        volume, zooms = read_uploaded(upload.name, upload.getvalue())
        source = upload.name
    else:
        volume, zooms = _volume(str(mni152_path()))
        source = "MNI152 T1 template (nilearn)"
    a1, a2 = st.columns([1, 3])
    plane = a1.radio("Plane", list(AXES), key="plane")
    axis = AXES[plane]
    depth = volume.shape[axis]
    index = a2.slider("Slice", 0, depth - 1, depth // 2, key="slice")
    st.plotly_chart(_slice_figure(volume, axis, index, f"{source}: {plane} slice {index}"), width="stretch")
    st.caption(f"{source}: shape {tuple(volume.shape)}, voxel {tuple(round(z, 2) for z in zooms)} mm, "
               f"intensity {float(volume.min()):.3g}..{float(volume.max()):.3g}")
