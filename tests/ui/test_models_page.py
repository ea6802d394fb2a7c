"""AppTest of the Models page on a tiny real workspace (checkpoints trained in the test)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from plotly.colors import sample_colorscale
from streamlit.testing.v1 import AppTest

from db import Checkpoint, session_scope
from models.finetune import TrainConfig
from models.grid import train_grid
from tests.easy_data import register_easy_dataset
from xai_core.background import JobState, list_jobs, read_job
from xai_core.data import build_dataset

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "models.py")


def open_view(at: AppTest, label: str) -> AppTest:
    """Open one of the page's lazy tabs (only the open tab's content runs) and rerun."""
    at.session_state["models_view"] = label
    at.run()
    assert not at.exception, at.exception
    return at


def wait_for(jid: str, timeout_s: float = 300) -> JobState:
    """The job's state once it has ended."""
    deadline = time.time() + timeout_s
    while (state := read_job(jid)) is not None and state.active and time.time() < deadline:
        time.sleep(0.1)
    assert state is not None and not state.active, state
    return state


def test_empty_workspace_shows_commands(workspace: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    infos = [i.value for i in at.info]
    assert any("No checkpoints yet" in i and "xaudit train-grid" in i for i in infos)
    assert any("xaudit data build" in i for i in infos)


def test_table_lineage_heatmap_and_training_from_the_page(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAUDIT_THREADS", "1")  # the training job's process: one torch thread, like the tests
    splits = register_easy_dataset()  # in-memory images, learnable in 2 epochs (table and heatmap)
    build_dataset("tiny", n=40, size=32, seed=1)  # a real dataset for the page's training form
    rows = train_grid(splits, archs=["vgg16"], pretrains=["none"], degrees=["tl", "all"], width=0.125,
                      config=TrainConfig(epochs=2, batch_size=32, device="cpu"))
    tl_id, all_id = rows[0]["checkpoint_id"], rows[1]["checkpoint_id"]
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    table = at.table[0].value
    assert table.loc[all_id, "lineage"] == f"tl #{tl_id} → ft #{all_id}"
    assert table.loc[tl_id, "degree"] == "tl" and table.loc[all_id, "pretrain"] == "none"
    with session_scope() as session:
        acc = {r: session.get(Checkpoint, r).metrics["accuracy"] for r in (tl_id, all_id)}
    assert table.loc[all_id, "accuracy"] == pytest.approx(acc[all_id])
    heat = at.table[1].value
    assert heat.loc["none", "tl"] == pytest.approx(acc[tl_id]) and heat.loc["none", "all"] == pytest.approx(acc[all_id])
    assert list(heat.columns) == ["tl", "all"]
    assert not at.get("plotly_chart")  # a coloured table; the other tabs' figures are drawn when opened
    css = at.table[1].proto.arrow_data.styler.styles
    for col, ck in enumerate((tl_id, all_id)):  # Viridis from 0.5 (chance) to 1.0, per cell
        t = min(1.0, max(0.0, (acc[ck] - 0.5) / 0.5))
        rule = next(r for r in css.split("}") if f"_row0_col{col}" in r)
        assert f"background-color: {sample_colorscale('Viridis', [t])[0]}" in rule
    # training curves and confusion matrix of the selected (last) checkpoint
    open_view(at, "Checkpoint detail")
    curves, confusion = (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
    assert curves["layout"]["title"]["text"] == "Training curves"
    assert sorted({t["name"] for t in curves["data"]}) == ["train_acc", "train_loss", "val_acc", "val_loss"]
    assert confusion["layout"]["title"]["text"] == "Confusion matrix (test split)"
    assert at.metric[0].value == f"{acc[all_id]:.3f}"
    open_view(at, "Train a model")

    # start a run from the page: a background job (TL then FT on the same dataset, one epoch each)
    form_boxes = {sb.label: sb for sb in at.selectbox}
    form_boxes["Dataset"].set_value("tiny")
    form_boxes["Pre-training"].set_value("none")
    form_boxes["Protocol"].set_value("tl-ft")
    at.number_input[1].set_value(1)
    at.button[0].click().run()
    assert not at.exception, at.exception
    (job,) = list_jobs("train")
    assert job.params == {"dataset": "tiny", "arch": "vgg16", "pretrain": "none", "degree": "all",
                          "protocol": "tl-ft", "width": 0.125, "epochs": 1}
    assert job.active and job.pid != os.getpid()  # not in the page's script run
    bars = at.get("progress")
    assert len(bars) == 1 and "vgg16 from none, TL then full FT, 1 epochs on tiny" in bars[0].proto.text

    # the same settings again while it runs: refused in one line, the running job still shown
    at.button[0].click().run()
    assert [e.value for e in at.error] == [
        f"the same train job is already {read_job(job.id).state} (since " + at.error[0].value.split("(since ")[1]]
    assert "wait for it to finish" in at.error[0].value and len(at.get("progress")) == 1
    assert len(list_jobs("train")) == 1
    assert "1 training job(s) running" in at.info[0].value  # above the tabs, whichever is open

    finished = wait_for(job.id)
    assert finished.state == "done", finished.error
    # a new session (a reload) reads the job back from the workspace: its outcome and checkpoints
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert not any("running" in i.value for i in at.info)
    open_view(at, "Train a model")
    assert not at.get("progress")
    assert at.success and "Saved" in at.success[0].value and "tlft-s0-ft" in at.success[0].value
    with session_scope() as session:
        ft = session.query(Checkpoint).filter(Checkpoint.name == "tiny-vgg16-w0.125-none-tlft-s0-ft").one()
        assert ft.parent_id is not None and session.get(Checkpoint, ft.parent_id).phase == "tl"
        assert f"#{ft.id} tiny-vgg16-w0.125-none-tlft-s0-ft" in at.success[0].value
    table = at.table[0].value
    assert table.loc[ft.id, "lineage"] == f"tl #{ft.parent_id} → ft #{ft.id}"


def test_a_failed_training_job_shows_its_error_line(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAUDIT_THREADS", "1")
    build_dataset("tiny", n=40, size=32, seed=1)
    at = AppTest.from_file(PAGE, default_timeout=120).run()  # no checkpoint yet: the form without tabs
    boxes = {sb.label: sb for sb in at.selectbox}
    boxes["Architecture"].set_value("inception_v3")  # needs inputs of at least 75 px; the dataset has 32
    boxes["Pre-training"].set_value("none")
    at.button[0].click().run()
    assert not at.exception, at.exception
    (job,) = list_jobs("train")
    assert wait_for(job.id).state == "failed"
    at.run()
    (error,) = at.error
    assert error.value.startswith("Training failed (inception_v3 from none, degree all, 8 epochs on tiny): ")
    assert read_job(job.id).error == "inception_v3 needs inputs of at least 75 px; dataset has 32 px"
    assert error.value.endswith(": inception_v3 needs inputs of at least 75 px; dataset has 32 px")


def test_per_class_auc_of_a_five_class_checkpoint(workspace: Path) -> None:
    """A checkpoint trained on the five-class benchmark (one epoch): its detail tab shows one row
    per class with the stored one-vs-rest AUC, true positives, images and recall."""
    build_dataset("k5", n=50, size=32, seed=0, classes=5)  # 10 per class: 7 train, 2 val, 1 test
    row = train_grid("k5", archs=["vgg16"], pretrains=["none"], degrees=["all"], width=0.125,
                     config=TrainConfig(epochs=1, batch_size=32, device="cpu"))[-1]  # (the TL cell first)
    with session_scope() as session:
        ck = session.get(Checkpoint, row["checkpoint_id"])
        metrics, num_classes = dict(ck.metrics), ck.num_classes
    assert num_classes == 5 and metrics["n_per_class"] == {str(k): 1 for k in range(5)}
    at = open_view(AppTest.from_file(PAGE, default_timeout=120).run(), "Checkpoint detail")
    table = at.table[-1].value
    assert table.index.tolist() == ["ellipse", "lobulated", "spiculated", "ring", "multifocal"]
    assert table.columns.tolist() == ["roc_auc_ovr", "true_positives", "n", "recall"]
    for k, name in enumerate(table.index):
        assert float(table.loc[name, "roc_auc_ovr"]) == pytest.approx(metrics["roc_auc_per_class"][str(k)])
        assert int(table.loc[name, "true_positives"]) == metrics["true_positives_per_class"][str(k)]
        assert int(table.loc[name, "n"]) == 1
    assert sum(metrics["true_positives_per_class"].values()) == round(metrics["accuracy"] * 5)
    assert at.metric[2].value == f"{metrics['roc_auc']:.3f}"
