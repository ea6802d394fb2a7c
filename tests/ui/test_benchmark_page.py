"""AppTest of the Benchmark page on a tiny real workspace."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.seed import add_checkpoint, add_dataset_rows, add_gt_rows, add_maps
from xai_core.data import build_dataset
from xai_core.data.dataset import load_dataset
from xai_core.metrics import explanation_precision, random_maps

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "benchmark.py")


def _values(array: object) -> np.ndarray:
    """A plotly JSON array: a plain list or a typed array {dtype, bdata (base64)}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array, dtype=float)


def open_view(at: AppTest, label: str) -> AppTest:
    """Open one of the page's lazy tabs (only the open tab's content runs) and rerun."""
    at.session_state["benchmark_view"] = label
    at.run()
    assert not at.exception, at.exception
    return at


def _seed() -> dict[str, float]:
    rng = np.random.default_rng(0)
    n, h = 8, 16
    masks = np.zeros((n, h, h), bool)
    masks[:, 4:8, 4:10] = True
    labels = [i % 2 for i in range(n)]
    pks = add_dataset_rows("tiny", masks, labels)
    means = {}
    for k, (pretrain, degree, quality) in enumerate(
        [("imagenet", "tl", 0.2), ("imagenet", "all", 0.5), ("mri", "tl", 0.6), ("mri", "all", 0.9)]
    ):
        preds = [y if i < 6 + k % 2 else 1 - y for i, y in enumerate(labels)]
        ck = add_checkpoint(f"vgg-{pretrain}-{degree}", "vgg16", pretrain, degree, degree, pks, preds, labels)
        maps = rng.random((n, h, h)).astype(np.float32) + 3 * quality * masks
        correct = [p == y for p, y in zip(preds, labels)]
        add_gt_rows(ck, "saliency", pks, maps, masks, correct)
        add_gt_rows(ck, "baseline_random", pks, random_maps(np.asarray(pks), h, h), masks, correct)
        sel = np.asarray(correct)
        means[f"{pretrain}/{degree}"] = float(explanation_precision(maps[sel], masks[sel]).mean())
    return means


def test_empty_workspace_shows_fill_commands(workspace: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No ground-truth metrics" in i.value for i in at.info)
    assert any("xaudit evaluate" in c.value for c in at.code)


def test_tables_chart_and_click_through(workspace: Path) -> None:
    means = _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    wide = at.table[0].value
    assert list(wide.index) == ["baseline_random", "saliency"]
    # the study's degree order, not the alphabet ("all" before "tl")
    assert list(wide.columns) == ["imagenet / tl", "imagenet / all", "mri / tl", "mri / all"]
    cell = wide.loc["saliency", "mri / all"]
    assert cell.startswith(f"{means['mri/all']:.3f} [")
    assert wide.loc["saliency", "imagenet / tl"].startswith(f"{means['imagenet/tl']:.3f}")
    assert any("Chance: baseline_random" in c.value for c in at.caption)
    # on arrival only the text tab is drawn: no second grid, no figure
    assert len(at.table) == 1 and not at.dataframe and not at.get("plotly_chart")

    long = open_view(at, "Long table").dataframe[0].value
    assert len(long) == 8 and set(long["method"]) == {"baseline_random", "saliency"}  # 2 methods x 4 cells
    lines = json.loads(open_view(at, "Against the degree").get("plotly_chart")[0].proto.spec)
    titles = [a["text"] for a in lines["layout"]["annotations"]]
    assert titles == ["baseline_random", "saliency"]  # one small panel per method
    assert lines["layout"]["xaxis"]["categoryarray"] == ["tl", "all"]
    named = [t for t in lines["data"] if t.get("mode") == "lines+markers"]
    assert sorted({t["name"] for t in named}) == ["imagenet", "mri"]
    mri = next(t for t in named if t["name"] == "mri" and "saliency" in t["hovertemplate"])
    assert mri["x"] == ["tl", "all"] and mri["y"][1] == pytest.approx(means["mri/all"], abs=1e-9)
    assert len(at.get("plotly_chart")) == 1 and not at.dataframe  # only the open tab is drawn

    box = json.loads(open_view(at, "Per-image distribution").get("plotly_chart")[0].proto.spec)
    assert box["layout"]["title"]["text"].startswith("saliency") and at.selectbox(key="box_method").value == "saliency"
    at.selectbox(key="box_method").set_value("baseline_random").run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"].startswith("baseline_random")

    scatter = json.loads(open_view(at, "Accuracy vs explanation").get("plotly_chart")[0].proto.spec)
    points = [t for t in scatter["data"] if t.get("mode") == "markers"]
    ys = {t["name"]: _values(t["y"]) for t in points}  # one point per checkpoint, named "source, degree"
    assert all(len(y) == 1 for y in ys.values())
    assert {name: float(y[0]) for name, y in ys.items()} == pytest.approx(
        {key.replace("/", ", "): value for key, value in means.items()}, abs=1e-9)

    open_view(at, "Inspect a sample")
    link = [c.value for c in at.caption if "Explain page link" in c.value]
    assert link and "&method=saliency" in link[0] and "?checkpoint=" in link[0]
    # switching the metric re-renders the table with that metric
    at.selectbox[1].set_value("mass_accuracy").run()
    assert not at.exception
    assert "Mean mass_accuracy" in " ".join(s.value for s in at.subheader)


def test_incorrect_selection_and_user_error(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox[0].set_value("incorrect").run()
    assert not at.exception
    wide = at.table[0].value
    assert "saliency" in wide.index
    monkeypatch.setenv("DATABASE_URL", "sqlite:////nonexistent-dir/x/xaudit.db")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.error and "cannot open the database" in at.error[0].value


def test_equivalent_methods_are_noted_next_to_their_rows(workspace: Path) -> None:
    st.cache_data.clear()  # the page's caches ignore the workspace on main (fixed on another branch)
    n, h = 6, 16
    masks = np.zeros((n, h, h), bool)
    masks[:, 4:8, 4:10] = True
    labels = [i % 2 for i in range(n)]
    pks = add_dataset_rows("tiny", masks, labels)
    ck = add_checkpoint("vgg-mri-tl", "vgg16", "mri", "tl", "tl", pks, labels, labels)
    maps = np.random.default_rng(0).random((n, h, h)).astype(np.float32) + masks
    for method in ("lrp", "input_x_gradient", "saliency"):
        add_gt_rows(ck, method, pks, maps, masks, [True] * n)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    wide = at.table[0].value
    assert wide.loc["lrp", "note"] == "same maps as input_x_gradient"
    assert wide.loc["input_x_gradient", "note"] == "same maps as lrp" and wide.loc["saliency", "note"] == ""
    assert any("Ancona et al. 2018" in c.value for c in at.caption)


def _array(z: object) -> np.ndarray:
    """A plotly JSON array: plain nested lists or a typed array {dtype, bdata (base64), shape}."""
    if isinstance(z, dict):
        shape = tuple(int(v) for v in str(z["shape"]).split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.asarray(z, dtype=np.float64)


def test_one_sample_across_the_grid(workspace: Path) -> None:
    build_dataset("tiny", n=12, size=16, seed=0, train_frac=0.5, val_frac=0.1)
    ds = load_dataset("tiny")
    test = np.flatnonzero(np.asarray(ds.splits) == "test")
    train = np.flatnonzero(np.asarray(ds.splits) == "train")
    pks, labels = [int(ds.sample_pks[i]) for i in test], [int(ds.labels[i]) for i in test]
    rng = np.random.default_rng(0)
    stored: dict[tuple[str, str, str], np.ndarray] = {}
    for pretrain in ("natural", "mri"):
        for degree in ("all", "tl"):
            ck = add_checkpoint(f"vgg-{pretrain}-{degree}", "vgg16", pretrain, degree, degree if degree == "tl" else "ft",
                                pks, labels, labels)
            for method in ("saliency", "gradcam"):
                maps = rng.normal(size=(len(pks), 16, 16)).astype(np.float32)
                add_maps(ck, method, pks, maps)
                stored[(pretrain, degree, method)] = maps
            add_gt_rows(ck, "saliency", pks, stored[(pretrain, degree, "saliency")], ds.masks[test], [True] * len(pks))
    # not cells: an epoch snapshot and a train sample's maps
    epoch = add_checkpoint("vgg-mri-all-e1", "vgg16", "mri", "all", "epoch", pks, labels, labels)
    add_maps(epoch, "lrp", pks, rng.normal(size=(len(pks), 16, 16)).astype(np.float32))
    ck_train = add_checkpoint("vgg-train", "vgg16", "mri", "all", "ft", [int(ds.sample_pks[train[0]])], [0], [0])
    add_maps(ck_train, "lrp", [int(ds.sample_pks[train[0]])], np.ones((1, 16, 16), np.float32))

    at = open_view(AppTest.from_file(PAGE, default_timeout=60).run(), "One sample across the grid")
    picker = at.selectbox(key="grid_sample")
    assert picker.options == [f"{ds.sample_ids[i]}  (8 maps)" for i in test]  # test samples only, 8 cells each
    picker.select_index(1).run()
    assert not at.exception, at.exception
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    cells = [t for t in fig["data"] if t["name"] == "map"]
    assert len(cells) == 2 * 2 * 2  # pre-trainings x degrees x methods
    assert sum(t["name"] == "lesion" for t in fig["data"]) == 8 and sum(t["name"] == "image" for t in fig["data"]) == 8
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles == ["gradcam", "saliency", "mri / tl", "mri / all", "natural / tl", "natural / all"]
    # the first cell (row mri / tl, column gradcam): |map| / max|map| of sample 1 (float16 store)
    expected = np.abs(stored[("mri", "tl", "gradcam")][1])
    assert np.allclose(_array(cells[0]["z"]), expected / expected.max(), atol=2e-3)
    assert np.allclose(_array(fig["data"][0]["z"]), ds.images[test[1]])


def test_faithfulness_tab_shows_mean_and_ci_per_method(workspace: Path) -> None:
    from xai_core.metrics.stored import insert_rows, long_rows
    from db import GroundTruthMetric

    means = _seed()
    assert means
    at = open_view(AppTest.from_file(PAGE, default_timeout=60).run(), "Faithfulness")
    assert any("No faithfulness metrics yet" in c.value for c in at.caption)
    pks = list(range(1, 9))
    for method, values in {"saliency": np.linspace(0.1, 0.3, 8), "baseline_random": np.full(8, 0.5)}.items():
        fixed = {"checkpoint_id": 1, "method": method, "params_hash": "seeded", "selection": "correct",
                 "correct": True, "constant_map": False}
        insert_rows(GroundTruthMetric, long_rows(fixed, pks, {"deletion_auc": values}, {}))
    at = open_view(AppTest.from_file(PAGE, default_timeout=60).run(), "Faithfulness")
    table = at.table[-1].value
    assert list(table.index) == ["baseline_random", "saliency"]
    assert list(table.columns) == ["deletion_auc (lower is better)"]
    assert table.loc["baseline_random"].iloc[0] == "0.500 [0.500, 0.500]"
    assert table.loc["saliency"].iloc[0].startswith("0.200 [")


def test_region_section_shows_which_methods_put_mass_on_the_second_region(workspace: Path) -> None:
    """A confounder benchmark evaluated: a section with per-method share [CI], chance and verdict;
    maps built on the marker are named as putting mass there, the random baseline is not."""
    from xai_core.metrics import evaluate
    from xai_core.metrics.statistics import ci_text
    from xai_core.metrics.regions import region_frame, region_summary

    st.cache_data.clear()
    build_dataset("conf", n=24, size=32, seed=3, variant="confounder", confounder_strength=0.5)
    data = load_dataset("conf")
    pks, labels = data.sample_pks.tolist(), data.labels.tolist()
    ck = add_checkpoint("vgg-conf", "vgg16", "imagenet", "all", "all", pks, labels, labels)
    maps = (data.regions * 4.0 + np.random.default_rng(0).random(data.masks.shape)).astype(np.float32)
    add_maps(ck, "saliency", pks, maps)
    evaluate([ck])
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "Suppressor and confounder regions: attribution off the lesion" in [s.value for s in at.subheader]
    table = at.table[1].value
    expected = region_summary(region_frame("correct"), n_boot=1000).set_index("method")
    row = table.loc[("conf", "saliency")]
    sal = expected.loc["saliency"]
    assert row["share [95% CI]"] == ci_text(sal["mean"], sal["ci_low"], sal["ci_high"])
    assert row["verdict"] == "above chance" and int(row["n"]) == int(data.regions.any(axis=(1, 2)).sum())
    assert table.loc[("conf", "baseline_random"), "verdict"] != "above chance"
    assert any(c.value == "conf (confounder): methods that put mass on the confounder region: saliency"
               for c in at.caption)
