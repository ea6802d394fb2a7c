"""AppTest of the Data page on a tiny real workspace (a benchmark built in the test)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from xai_core.data import build_dataset, load_dataset

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "data.py")


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _array(value: object) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array ``{"dtype", "bdata", "shape"}`` (base64)."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(x) for x in shape.split(",")]
        return flat.reshape(shape) if shape else flat
    return np.asarray(value)


def open_view(at: AppTest, label: str) -> AppTest:
    """Open one of the page's lazy tabs (only the open tab's content runs) and rerun."""
    at.session_state["data_view"] = label
    at.run()
    assert not at.exception, at.exception
    return at


def test_empty_workspace_shows_the_build_command(workspace: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("xaudit data build --name mri-lesions" in i.value for i in at.info)
    assert not at.get("plotly_chart")  # the anatomy browser's tab is not open on arrival: not run
    # the anatomy browser still shows the MNI152 template (197 x 233 x 189 voxels, 1 mm)
    open_view(at, "Anatomy slice browser")
    assert any("shape (197, 233, 189)" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 1


def test_sample_view_filters_histograms_and_slice_browser(workspace: Path) -> None:
    build_dataset("tiny", n=8, size=32, seed=2)
    data = load_dataset("tiny")
    areas = data.masks.sum(axis=(1, 2))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="dataset").options == ["tiny"]
    assert any("synthetic dataset, 8 images of 32 px; regular: 4, irregular: 4; 8 shown" in c.value for c in at.caption)
    figs = _figures(at)
    assert len(figs) == 2  # image + contour; class counts above the lesion-area histograms (one figure)
    image_fig = figs[0]
    assert [t["type"] for t in image_fig["data"]] == ["heatmap", "contour"]
    np.testing.assert_allclose(_array(image_fig["data"][0]["z"]).astype(np.float32), data.images[0], rtol=1e-6)
    np.testing.assert_array_equal(_array(image_fig["data"][1]["z"]) > 0.5, data.masks[0])
    assert image_fig["layout"]["title"]["text"] == data.sample_ids[0]
    counts, *histograms = figs[1]["data"]
    assert _array(counts["y"]).tolist() == [4, 4]  # images per class
    # lesion areas (pixels of each mask) in 30 bins shared by the classes, one trace per class
    edges = np.histogram_bin_edges(areas, bins=30)
    assert [h["name"] for h in histograms] == ["regular", "irregular"]
    for k, trace in enumerate(histograms):
        assert _array(trace["y"]).tolist() == np.histogram(areas[data.labels == k], bins=edges)[0].tolist()
        np.testing.assert_allclose(_array(trace["x"]), (edges[:-1] + edges[1:]) / 2)

    # only the irregular class, third sample of it
    at.selectbox(key="class").set_value("irregular").run()
    at.number_input(key="sample").set_value(3).run()
    assert not at.exception, at.exception
    irregular = [i for i, lab in enumerate(data.labels) if lab == 1]
    k = irregular[2]
    caption = next(c.value for c in at.caption if c.value.startswith("Sample "))
    assert caption == (f"Sample {data.sample_ids[k]} · label irregular · split {data.splits[k]} · "
                       f"lesion area {int(data.masks[k].sum())} px")
    image_fig, dist_fig = _figures(at)
    np.testing.assert_allclose(_array(image_fig["data"][0]["z"]).astype(np.float32), data.images[k], rtol=1e-6)
    assert _array(dist_fig["data"][0]["y"]).tolist() == [0, 4]
    assert [h["name"] for h in dist_fig["data"][1:]] == ["irregular"]

    # test split only: as many images as load_dataset gives for it
    at.selectbox(key="class").set_value("all").run()
    at.selectbox(key="split").set_value("test").run()
    n_test = len(load_dataset("tiny", "test"))
    assert any(f"; {n_test} shown" in c.value for c in at.caption)

    # slice browser (its own tab): the coronal slice 100 of the template
    open_view(at, "Anatomy slice browser")
    assert len(_figures(at)) == 1  # the samples tab is closed: not run
    at.radio(key="plane").set_value("coronal").run()
    at.slider(key="slice").set_value(100).run()
    assert _figures(at)[-1]["layout"]["title"]["text"].endswith("coronal slice 100")


def test_missing_files_show_one_error_line(workspace: Path) -> None:
    build_dataset("gone", n=6, size=32, seed=0)
    shutil.rmtree(workspace / "datasets" / "gone")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "files of dataset 'gone' are missing (" + str(workspace / "datasets" / "gone") + "); rebuild it with --overwrite"]


def test_examples_of_every_class_of_a_five_class_benchmark(workspace: Path) -> None:
    """The five-class benchmark: five example rows (class name, then its first four images with
    their sample ids), counts and histograms with five classes; the test split narrows the examples."""
    build_dataset("k5", n=20, size=32, seed=2, classes=5)
    data = load_dataset("k5")
    names = ["ellipse", "lobulated", "spiculated", "ring", "multifocal"]
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("ellipse: 4, lobulated: 4, spiculated: 4, ring: 4, multifocal: 4; 20 shown" in c.value for c in at.caption)
    counts, *histograms = _figures(at)[1]["data"]
    assert _array(counts["y"]).tolist() == [4] * 5 and [h["name"] for h in histograms] == names
    rows = at.get("image")
    assert len(rows) == 5 and all(row.value[0].endswith(".png") for row in rows)
    assert [m.value for m in at.markdown if m.value.startswith("**")] == [f"**{n}**" for n in names]
    for k, row in enumerate(rows):
        ids = [s for s, lab in zip(data.sample_ids, data.labels) if lab == k][:4]
        assert row.captions == ids
    at.selectbox(key="split").set_value("val").run()
    val = load_dataset("k5", "val")  # 4 per class: round(2.8) = 3 train, round(0.6) = 1 val, 0 test
    assert [row.captions for row in at.get("image")] == [
        [s for s, lab in zip(val.sample_ids, val.labels) if lab == k] for k in range(5)]


def test_second_region_is_outlined(workspace: Path) -> None:
    """A suppressor benchmark: the sample figure outlines the second mask (orange contour named
    after the variant) next to the lesion, and the caption gives its size."""
    build_dataset("sup", n=8, size=32, seed=2, variant="suppressor")
    data = load_dataset("sup")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    traces = {t["name"]: t for t in _figures(at)[0]["data"]}
    assert {"image", "lesion mask", "suppressor region"} <= set(traces)
    assert traces["suppressor region"]["line"]["color"] == "orange"
    np.testing.assert_array_equal(_array(traces["suppressor region"]["z"]), data.regions[0].astype(np.uint8))
    region_px = int(data.regions[0].sum())
    assert any(f"suppressor region (orange) {region_px} px" in c.value for c in at.caption)
    assert any("suppressor region in orange" in c.value for c in at.caption)
