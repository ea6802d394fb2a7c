"""AppTest of the Explain page on a tiny real workspace (generated dataset, registered checkpoint)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import models
from db import Dataset, session_scope
from xai_core.attribution import load_maps
from xai_core.attribution.jobs import select_samples
from xai_core.data import build_dataset
from xai_core.metrics import explanation_precision

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "explain.py")
SIZE = 32


def _seed() -> int:
    build_dataset("tiny", n=12, size=SIZE, seed=0, train_frac=0.5, val_frac=0.1)
    with session_scope() as session:
        ds_id = session.scalar(select(Dataset.id).where(Dataset.name == "tiny"))
    torch.manual_seed(0)
    model = models.build("vgg16", 2, 1, 0.125).eval()
    return int(models.save_checkpoint(model, name="ck-page", arch="vgg16", width=0.125, num_classes=2, in_chans=1,
                                      input_size=SIZE, pretrain="none", degree="all", phase="ft",
                                      dataset_id=ds_id).id)


def _array(z: object) -> np.ndarray:
    """A plotly JSON array: plain nested lists or a typed array {dtype, bdata (base64), shape}."""
    if isinstance(z, dict):
        shape = tuple(int(v) for v in str(z["shape"]).split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.asarray([[np.nan if v is None else v for v in row] for row in z], dtype=np.float64)  # type: ignore[union-attr]


def test_empty_workspace_says_how_to_fill_it(workspace: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No checkpoints" in i.value for i in at.info)
    assert any("xaudit train" in c.value for c in at.code)


def test_overlay_of_two_methods_with_lesion_contour(workspace: Path) -> None:
    ckpt = _seed()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.checkbox(key="method-saliency").value is True
    at.checkbox(key="method-layercam").check().run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    fig = json.loads(charts[0].proto.spec)
    kinds = [t["type"] for t in fig["data"]]
    assert kinds == ["heatmap", "heatmap", "contour"]  # image, attribution, lesion contour
    assert fig["data"][1]["opacity"] == 0.55
    captions = [c.value for c in at.caption]
    pk = at.selectbox[2].value
    stored = load_maps(ckpt, "saliency", [pk])
    batch = select_samples("tiny", sample_pks=[pk])
    precision = float(explanation_precision(stored, batch.masks.astype(bool))[0])
    text = next(c for c in captions if "compute" in c and "cpu" in c)
    assert f"precision {precision:.3f}" in text
    assert np.allclose(_array(fig["data"][1]["z"]), stored[0], rtol=1e-6)
    assert [m.label for m in at.metric] == ["Prediction", "Probability", "True label"]

    # rerun: served from the store; top-k% hides the rest of the map
    at.slider[1].set_value(10).run()
    assert not at.exception, at.exception
    assert any("from the store" in c.value for c in at.caption)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    z = _array(fig["data"][1]["z"])
    assert 0.05 < np.isfinite(z).mean() <= 0.15


def test_explain_the_true_class(workspace: Path) -> None:
    """On a sample the (untrained) model misclassifies, the radio switches the explained class from
    the prediction to the label: another map, stored apart, and the caption names that class."""
    ckpt = _seed()
    model, meta = models.load(ckpt)
    names = meta["class_names"]
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert at.radio(key="target").options == ["predicted class", "true class"]
    assert at.radio(key="target").value == "predicted class"
    batch = select_samples("tiny", "test")  # the page's default split
    pred = models.predict(model, batch.images)[0]
    wrong = [(int(pk), int(lab)) for pk, lab, p in zip(batch.sample_pks, batch.labels, pred) if p != lab]
    assert wrong, "the seeded model classifies every test sample correctly; pick another seed"
    pk, label = wrong[0]
    at.selectbox[2].set_value(pk).run()
    assert at.metric[0].value == names[1 - label] and at.metric[2].value == names[label]
    predicted = _array(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][1]["z"])
    assert any(f"explains class {names[1 - label]}" in c.value for c in at.caption)
    at.radio(key="target").set_value("true class").run()
    assert not at.exception, at.exception
    true_map = _array(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][1]["z"])
    np.testing.assert_allclose(true_map, load_maps(ckpt, "saliency", [pk], target="true")[0], rtol=1e-6)
    np.testing.assert_allclose(predicted, load_maps(ckpt, "saliency", [pk])[0], rtol=1e-6)
    assert not np.allclose(true_map, predicted)
    assert any(f"explains class {names[label]}" in c.value for c in at.caption)


def test_imported_three_channel_checkpoint_on_grey_samples(workspace: Path, tmp_path: Path) -> None:
    """A torchvision resnet18 state dict (3 input channels) imported for the grey dataset: the page
    predicts through ``models.predict`` (grey replicated) and explains with (H, W) maps."""
    build_dataset("tiny", n=12, size=SIZE, seed=0, train_frac=0.5, val_frac=0.1)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=2).eval()
    torch.save(reference.state_dict(), tmp_path / "rgb.pth")
    ckpt = models.import_checkpoint(tmp_path / "rgb.pth", "resnet18", 2, name="rgb", dataset="tiny").id
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    pk = at.selectbox[2].value
    image = select_samples("tiny", sample_pks=[pk]).images[0]
    with torch.no_grad():
        probs = torch.softmax(reference(torch.from_numpy(image)[None, None].repeat(1, 3, 1, 1)), 1)[0].numpy()
    names = models.load(ckpt)[1]["class_names"]
    assert at.metric[0].value == names[int(probs.argmax())]
    assert at.metric[1].value == f"{probs.max():.3f}"
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    z = _array(fig["data"][1]["z"])
    assert z.shape == (SIZE, SIZE)
    np.testing.assert_allclose(z, load_maps(ckpt, "saliency", [pk])[0], rtol=1e-6)
