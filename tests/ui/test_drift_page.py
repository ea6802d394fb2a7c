"""AppTest of the Drift page on a tiny real workspace (maps in the attribution store, drift job run)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from xai_core.metrics import drift
from db import Checkpoint, session_scope
from tests.seed import add_checkpoint, add_dataset_rows, add_maps
from xai_core.data import build_dataset
from xai_core.data.dataset import load_dataset

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "drift.py")


H = 16
SHIFTS = [1, 5, 3, 0, 2]  # resnet50 / gradcam_plus_plus: the FT blob moves this many columns, per sample


def _blob(r: float, c: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :H]
    return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0).astype(np.float32)


def _array(z: object) -> np.ndarray:
    """A plotly JSON array: plain nested lists or a typed array {dtype, bdata (base64), shape}."""
    if isinstance(z, dict):
        shape = tuple(int(v) for v in str(z["shape"]).split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.asarray(z, dtype=np.float64)


def _centre(m: np.ndarray) -> tuple[float, float]:
    """(row, col) centre of mass by hand."""
    yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
    return float((m * yy).sum() / m.sum()), float((m * xx).sum() / m.sum())


def _seed() -> list[str]:
    """Five samples of a real generated dataset (images and masks on disk); returns their sample ids."""
    build_dataset("tiny", n=12, size=H, seed=0, train_frac=0.5, val_frac=0.1)
    ds = load_dataset("tiny")
    n = 5
    pks, labels = [int(p) for p in ds.sample_pks[:n]], [int(y) for y in ds.labels[:n]]
    base = np.stack([_blob(6, 6) for _ in range(n)])
    # IoU-20 stability: densenet stable under gradcam_plus_plus, unstable under layercam; resnet the reverse
    shifts = {("densenet201", "gradcam_plus_plus"): [0] * n, ("densenet201", "layercam"): [5] * n,
              ("resnet50", "gradcam_plus_plus"): SHIFTS, ("resnet50", "layercam"): [0] * n}
    for arch in ("densenet201", "resnet50"):
        tl = add_checkpoint(f"{arch}-tl", arch, "imagenet", "tl", "tl", pks, labels, labels)
        ft = add_checkpoint(f"{arch}-ft", arch, "imagenet", "all", "ft", pks, labels, labels, parent_id=tl)
        for method in ("gradcam_plus_plus", "layercam"):
            add_maps(tl, method, pks, base)
            add_maps(ft, method, pks, np.stack([_blob(6, 6 + s) for s in shifts[(arch, method)]]))
    drift()
    return list(ds.sample_ids[:n])


def test_empty_workspace_shows_fill_commands(workspace: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No drift metrics" in i.value for i in at.info)
    assert any("xaudit drift" in c.value for c in at.code)


def test_drift_table_reversal_and_maps(workspace: Path) -> None:
    _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    table = at.table[0].value
    stable = table.loc[("densenet201", "gradcam_plus_plus")]
    assert stable["iou_top20"].startswith("1.000 [1.000, 1.000]")
    assert stable["n"] == 5
    moved = table.loc[("resnet50", "gradcam_plus_plus")]
    assert moved["peak_displacement"].startswith(f"{np.mean(SHIFTS) / np.hypot(15, 15):.3f}")
    ranks = at.table[1].value
    assert ranks.loc["densenet201", "gradcam_plus_plus"] == 1 and ranks.loc["densenet201", "layercam"] == 2
    agree = at.table[2].value
    assert agree.iloc[0]["kendall_tau"] == -1.0 and bool(agree.iloc[0]["reversal"])
    assert at.warning and "Ranking reversal" in at.warning[0].value
    assert not at.get("plotly_chart")  # on arrival: the table and the ranking tab (static tables) only
    at.session_state["drift_view"] = "Distributions"
    at.run()
    assert not at.exception, at.exception
    (box,) = at.get("plotly_chart")
    spec = json.loads(box.proto.spec)
    assert sorted({t["name"] for t in spec["data"]}) == ["gradcam_plus_plus", "layercam"]
    at.session_state["drift_view"] = "Evidence of one sample"
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1  # TL map, FT map and difference in one figure


def test_switching_pair_and_metric(workspace: Path) -> None:
    _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="rank_metric").set_value("com_displacement").run()
    assert not at.exception
    ranks = at.table[1].value
    assert ranks.loc["resnet50", "layercam"] == 1
    at.session_state["drift_view"] = "Evidence of one sample"
    at.run()
    at.selectbox(key="pair").set_value("resnet50-tl → resnet50-ft").run()
    assert not at.exception
    metrics_row = at.table[-1].value
    assert float(metrics_row["iou_top20"].iloc[0]) < 1.0


def test_evidence_view_browser_order_and_arrow(workspace: Path) -> None:
    ids = _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.session_state["drift_view"] = "Evidence of one sample"
    at.run()
    at.selectbox(key="pair").set_value("resnet50-tl → resnet50-ft").run()
    assert not at.exception, at.exception
    by_shift = [ids[i] for i in np.argsort(SHIFTS, kind="stable")[::-1]]  # largest shift first: 5, 3, 2, 1, 0
    browser = at.dataframe[0].value
    assert list(browser.index) == by_shift
    assert browser["iou_top20"].is_monotonic_increasing and browser["iou_top20"].iloc[-1] == 1.0
    at.selectbox(key="evidence_metric").set_value("com_displacement").run()
    browser = at.dataframe[0].value
    assert list(browser.index) == by_shift and browser["com_displacement"].is_monotonic_decreasing

    # the first sample (shift 5): image, map, lesion contour and centres in each of the three panels
    (chart,) = at.get("plotly_chart")
    fig = json.loads(chart.proto.spec)
    assert [t["type"] for t in fig["data"]] == ["heatmap", "heatmap", "contour", "scatter"] * 3
    assert [t["name"] for t in fig["data"][:3]] == ["image", "map", "lesion"]
    ds = load_dataset("tiny")
    shown = ids.index(by_shift[0])
    assert np.allclose(_array(fig["data"][0]["z"]), ds.images[shown])
    assert np.allclose(_array(fig["data"][2]["z"]), ds.masks[shown])
    normalised = _blob(6, 11) / _blob(6, 11).sum()
    assert np.allclose(_array(fig["data"][5]["z"]), normalised, rtol=2e-3, atol=1e-9)  # panel (b): the FT map's shares (store: float16)
    row_a, col_a = _centre(_blob(6, 6))
    row_b, col_b = _centre(_blob(6, 6 + 5))
    arrows = [a for a in fig["layout"]["annotations"] if a.get("showarrow")]
    assert len(arrows) == 3
    for arrow in arrows:
        assert np.allclose([arrow["ax"], arrow["ay"], arrow["x"], arrow["y"]], [col_a, row_a, col_b, row_b], atol=1e-3)
    assert fig["layout"]["coloraxis2"]["cmid"] == 0
    assert float(at.table[-1].value["com_displacement"].iloc[0]) == pytest.approx(
        np.hypot(row_b - row_a, col_b - col_a) / np.hypot(15, 15), abs=1e-3)
    # picking another sample shows it: the last one (no shift) has both centres in one place
    picker = at.selectbox(key="evidence_sample")
    picker.select_index(len(picker.options) - 1).run()
    assert not at.exception, at.exception
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    arrow = next(a for a in fig["layout"]["annotations"] if a.get("showarrow"))
    assert np.allclose([arrow["ax"], arrow["ay"], arrow["x"], arrow["y"]], [col_a, row_a, col_a, row_a], atol=1e-3)
    assert float(at.table[-1].value["com_displacement"].iloc[0]) == 0.0
    assert by_shift[-1] in at.selectbox(key="evidence_sample").options[-1]


def _seed_epochs() -> None:
    """Two tl-ft runs with two FT epoch checkpoints each (as ``train(protocol="tl-ft", save_every=1)``
    stores them): LayerCAM's blob moves 1 then 2 columns (resnet50) or 3 then 3 (densenet201)."""
    n, h = 4, 16
    masks = np.zeros((n, h, h), bool)
    masks[:, 5:9, 5:9] = True
    labels = [0, 1, 0, 1]
    pks = add_dataset_rows("tiny", masks, labels)
    for arch, (c1, c2) in (("resnet50", (7, 8)), ("densenet201", (9, 9))):
        tl = add_checkpoint(f"{arch}-tl", arch, "natural", "tl", "tl", pks, labels, labels)
        e1 = add_checkpoint(f"{arch}-ft-e1", arch, "natural", "all", "epoch", pks, labels, labels, parent_id=tl)
        e2 = add_checkpoint(f"{arch}-ft-e2", arch, "natural", "all", "epoch", pks, labels, labels, parent_id=tl)
        ft = add_checkpoint(f"{arch}-ft", arch, "natural", "all", "ft", pks, labels, labels, parent_id=tl)
        with session_scope() as session:
            session.get(Checkpoint, e1).epoch = 1
            session.get(Checkpoint, e2).epoch = 2
            session.get(Checkpoint, ft).history = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.75}]
        for ck, col in ((tl, 6), (e1, c1), (e2, c2), (ft, c2)):
            add_maps(ck, "layercam", pks, np.stack([_blob(6, col) for _ in range(n)]))
    drift()


def test_drift_along_training(workspace: Path) -> None:
    _seed_epochs()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.session_state["drift_view"] = "Along training"
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="epoch_metric").set_value("peak_displacement").run()
    assert not at.exception, at.exception
    (chart,) = at.get("plotly_chart")
    fig = json.loads(chart.proto.spec)
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["densenet201", "resnet50"]  # one panel each
    lines = {(t["xaxis"], t["name"]): t for t in fig["data"]}
    diag = np.hypot(15, 15)
    resnet = lines[("x2", "layercam")]  # second panel
    assert list(resnet["x"]) == [1, 2] and np.allclose(resnet["y"], [1 / diag, 2 / diag])
    assert np.allclose(lines[("x", "layercam")]["y"], [3 / diag, 3 / diag])
    band = lines[("x2", "layercam CI")]  # every image moved alike: the CI is the mean
    assert np.allclose(band["y"], [1 / diag, 2 / diag, 2 / diag, 1 / diag])
    acc = lines[("x2", "val accuracy")]
    assert acc["yaxis"] == "y4" and list(acc["y"]) == [0.5, 0.75]  # the second panel's right axis


def test_drift_along_training_without_epochs_says_how(workspace: Path) -> None:
    _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.session_state["drift_view"] = "Along training"
    at.run()
    assert not at.exception, at.exception
    assert any("No drift along training" in i.value for i in at.info)
    assert any("--save-every 1" in c.value for c in at.code)
