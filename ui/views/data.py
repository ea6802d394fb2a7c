"""Data: browse a dataset (image with its lesion-mask contour and, for a suppressor/confounder
variant, its second-region contour; class counts and lesion-area histograms, a few examples of
every class) and the slices of a NIfTI anatomy volume (the MNI152
template or an uploaded file)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ui.common import lazy_tabs, page_start, user_errors
from xai_core.catalog import sample_frame
from xai_core.data import list_datasets, sample_arrays, sample_region
from xai_core.data.anatomy import mni152_path, read_canonical, read_uploaded

AXES = {"axial": 2, "coronal": 1, "sagittal": 0}
VIEWS = ("Samples", "Anatomy slice browser")
TABLES = ("datasets", "samples")  # what the cached reads below read
BINS = 30  # lesion-area histogram bins
EXAMPLES = 4  # example images per class
EXAMPLE_PX = 160  # examples are enlarged (nearest neighbour) to at least this many pixels
LIME = np.array([0, 255, 0], np.uint8)
ORANGE = np.array([255, 140, 0], np.uint8)  # the second region (suppressor / confounder)


@st.cache_data(show_spinner=False, max_entries=4)
def _datasets(stamp: tuple) -> list[dict]:
    """Registered datasets; keyed on :func:`change_stamp` of :data:`TABLES` (workspace and rows)."""
    return list_datasets()


@st.cache_data(show_spinner=False, max_entries=8)
def _samples(stamp: tuple, name: str) -> pd.DataFrame:
    """:func:`sample_frame` (pk, sample id, label, split, lesion area; no arrays), keyed on
    :func:`change_stamp` of :data:`TABLES` and the name."""
    return sample_frame(name)


def _shown(frame: pd.DataFrame, split: str, label: int | None) -> pd.DataFrame:
    """The samples of ``split`` (or all) and class ``label`` (or all)."""
    keep = np.ones(len(frame), bool)
    if split != "all":
        keep &= (frame["split"] == split).to_numpy()
    if label is not None:
        keep &= (frame["label"] == label).to_numpy()
    return frame[keep]


# Figures are cached as objects: st.cache_data would unpickle a copy, and unpickling a plotly
# figure validates it again, about as slow as building it; st.plotly_chart does not change them.
@st.cache_resource(show_spinner="Loading the dataset…", max_entries=64)
def _image_figure(stamp: tuple, name: str, sample_pk: int, title: str) -> go.Figure:
    """Grey image with the lesion-mask contour (level 0.5 of the mask as bytes: a quarter of the
    float32 payload) on top; the arrays come from the process's dataset cache
    (:func:`sample_arrays`), not a per-run copy of the dataset."""
    image, mask = sample_arrays(name, sample_pk)
    region, kind = sample_region(name, sample_pk)
    fig = go.Figure(go.Heatmap(z=image, colorscale="gray", showscale=False, name="image",
                               hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra></extra>"))
    for outline, label, colour in ((mask, "lesion mask", "lime"), (region, f"{kind} region", "orange")):
        if outline is not None and outline.any():
            fig.add_trace(go.Contour(z=outline.astype(np.uint8), showscale=False, name=label, hoverinfo="skip",
                                     contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"},
                                     line={"color": colour, "width": 2}))
    fig.update_layout(title=title, height=420, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      xaxis={"visible": False, "constrain": "domain"},
                      yaxis={"visible": False, "autorange": "reversed", "scaleanchor": "x"})
    return fig


@st.cache_resource(show_spinner=False, max_entries=32)
def _distribution_figure(stamp: tuple, name: str, split: str, label: int | None,
                         class_names: tuple[str, ...]) -> go.Figure:
    """Images per class (bars) above the lesion area by class (overlaid histograms, 30 shared
    bins computed here), one colour per class, for the filtered samples: one figure, not two."""
    shown = _shown(_samples(stamp, name), split, label)
    counts = shown["label"].value_counts().reindex(range(len(class_names)), fill_value=0)
    areas = shown["lesion_area"].to_numpy()
    edges = np.histogram_bin_edges(areas, bins=BINS) if len(areas) else np.arange(BINS + 1)
    fig = make_subplots(rows=2, cols=1, row_heights=[0.4, 0.6], vertical_spacing=0.2,
                        subplot_titles=("Images per class", "Lesion area by class"))
    colours = [qualitative.Plotly[i % len(qualitative.Plotly)] for i in range(len(class_names))]
    fig.add_trace(go.Bar(x=list(class_names), y=counts.to_numpy(), marker_color=colours, name="images",
                         showlegend=False), row=1, col=1)
    for k, cls in enumerate(class_names):
        hist, _ = np.histogram(areas[shown["label"].to_numpy() == k], bins=edges)
        if hist.any():
            fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=hist, width=np.diff(edges), name=cls,
                                 marker_color=colours[k], opacity=0.6,
                                 hovertemplate="%{x:.0f} px: %{y}<extra>" + cls + "</extra>"), row=2, col=1)
    fig.update_layout(barmode="overlay", height=480, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      legend={"orientation": "h", "y": -0.15})
    fig.update_yaxes(title_text="images", row=1, col=1)
    fig.update_xaxes(title_text="lesion area (px)", row=2, col=1)
    fig.update_yaxes(title_text="images", row=2, col=1)
    return fig


def _boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    return mask & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])


def _outlined(image: np.ndarray, mask: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 of a grey image (clipped to [0, 1], the benchmark's tissue range, so every example
    shares one grey scale) with the mask's boundary pixels in lime (the second region's, if any, in
    orange), enlarged by a whole factor to at least :data:`EXAMPLE_PX` pixels (sharp pixels in the browser)."""
    grey = np.round(255 * np.clip(image, 0.0, 1.0)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if region is not None:
        rgb[_boundary(region)] = ORANGE
    rgb[_boundary(mask)] = LIME
    factor = max(1, -(-EXAMPLE_PX // image.shape[0]))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


@st.cache_data(show_spinner="Loading the dataset…", max_entries=8)
def _class_examples(stamp: tuple, name: str, split: str,
                    class_names: tuple[str, ...]) -> list[tuple[str, list[np.ndarray], list[str]]]:
    """Per class: its name, the first :data:`EXAMPLES` images of ``split`` (or all) outlined
    (:func:`_outlined`) and their sample ids."""
    frame = _shown(_samples(stamp, name), split, None)
    out = []
    for k, cls in enumerate(class_names):
        rows = frame[frame["label"] == k].head(EXAMPLES)
        images = [_outlined(*sample_arrays(name, int(pk)), sample_region(name, int(pk))[0]) for pk in rows["pk"]]
        out.append((cls, images, rows["sample_id"].tolist()))
    return out


@st.cache_resource(show_spinner="Reading the volume…", max_entries=2)
def _volume(path: str) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float]]:
    """:func:`read_canonical` and the intensity range, kept by path (the packaged template; an
    upload is read each time); read-only, so the cached array is shared without a copy per run."""
    volume, zooms = read_canonical(path)
    volume.setflags(write=False)
    return volume, zooms, (float(volume.min()), float(volume.max()))


def _slice_figure(volume: np.ndarray, axis: int, index: int, title: str) -> go.Figure:
    """One slice of a RAS+ volume shown with superior/anterior at the top."""
    plane = np.take(volume, index, axis=axis).T
    fig = go.Figure(go.Heatmap(z=plane, colorscale="gray", showscale=False, name="slice"))
    fig.update_layout(title=title, height=420, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      xaxis={"visible": False, "constrain": "domain"},
                      yaxis={"visible": False, "scaleanchor": "x"})
    return fig


def samples_view(stamp: tuple, datasets: list[dict]) -> None:
    """Dataset, split and class selectors; one sample's image with its lesion contour; the
    filtered samples' class counts and lesion areas."""
    by_name = {d["name"]: d for d in datasets}
    c1, c2, c3 = st.columns(3)
    name = c1.selectbox("Dataset", list(by_name), key="dataset")
    info = by_name[name]
    split = c2.selectbox("Split", ["all", "train", "val", "test"], key="split")
    class_choice = c3.selectbox("Class", ["all", *info["class_names"]], key="class")
    class_names = tuple(info["class_names"])
    label = None if class_choice == "all" else class_names.index(class_choice)
    shown = _shown(_samples(stamp, name), split, label)
    st.caption(f"{info['kind']} dataset, {info['n']} images of {info['size']} px; "
               + ", ".join(f"{c}: {k}" for c, k in info["class_counts"].items())
               + f"; {len(shown)} shown with this filter")
    if shown.empty:
        st.warning("No samples match this split and class.")
        return
    left, right = st.columns([3, 2])
    number = left.number_input("Sample", min_value=1, max_value=len(shown), value=1, step=1,
                               key="sample", help="position within the filtered samples")
    row = shown.iloc[int(number) - 1]
    left.plotly_chart(_image_figure(stamp, name, int(row["pk"]), row["sample_id"]), width="stretch")
    region, kind = sample_region(name, int(row["pk"]))
    left.caption(f"Sample {row['sample_id']} · label {class_names[int(row['label'])]} · split {row['split']} · "
                 f"lesion area {int(row['lesion_area'])} px"
                 + ("" if region is None else f" · {kind} region (orange) {int(region.sum())} px"))
    right.plotly_chart(_distribution_figure(stamp, name, split, label, class_names), width="stretch")
    st.subheader("Examples of every class")
    for cls, images, ids in _class_examples(stamp, name, split, class_names):
        st.markdown(f"**{cls}**" + ("" if images else ": no images in this split"))
        if images:
            st.image(images, caption=ids, width=EXAMPLE_PX, output_format="PNG")  # lossless: sharp outlines
    st.caption("The first images of each class in the chosen split, lesion boundary in green"
               + (f", {kind} region in orange (xaudit data build --variant {kind})." if region is not None else "."))


def anatomy_view() -> None:
    """The slices of the MNI152 template or an uploaded NIfTI volume along one plane."""
    upload = st.file_uploader("NIfTI volume (.nii or .nii.gz); default: the MNI152 T1 template",
                              type=["nii", "gz"], key="volume")
    if upload is not None:
        volume, zooms = read_uploaded(upload.name, upload.getvalue())
        source, (lo, hi) = upload.name, (float(volume.min()), float(volume.max()))
    else:
        volume, zooms, (lo, hi) = _volume(str(mni152_path()))
        source = "MNI152 T1 template (nilearn)"
    a1, a2 = st.columns([1, 3])
    plane = a1.radio("Plane", list(AXES), key="plane")
    axis = AXES[plane]
    depth = volume.shape[axis]
    index = a2.slider("Slice", 0, depth - 1, depth // 2, key="slice")
    st.plotly_chart(_slice_figure(volume, axis, index, f"{source}: {plane} slice {index}"), width="stretch")
    st.caption(f"{source}: shape {tuple(volume.shape)}, voxel {tuple(round(z, 2) for z in zooms)} mm, "
               f"intensity {lo:.3g}..{hi:.3g}")


with user_errors():
    stamp = page_start(
        "Data",
        "Benchmark and imported datasets: each image with its ground-truth lesion contour, and the "
        "anatomy the benchmark is drawn from.",
        TABLES,
    )
    # only the open tab runs and is drawn (the anatomy browser's uploader, slider and slice wait
    # until its tab is opened)
    views = lazy_tabs(VIEWS, "data_view")
    if views["Samples"].open:
        with views["Samples"]:
            datasets = _datasets(stamp)
            if datasets:
                samples_view(stamp, datasets)
            else:
                st.info("No datasets in this workspace yet. Build the lesion benchmark with "
                        "`xaudit data build --name mri-lesions` (or import your own images with "
                        "`xaudit data import DIR --name NAME`); the anatomy it is drawn from is in the "
                        "next tab.")
    if views["Anatomy slice browser"].open:
        with views["Anatomy slice browser"], user_errors():
            anatomy_view()
