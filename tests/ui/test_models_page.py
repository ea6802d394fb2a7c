"""AppTest of the Models page on a tiny real workspace (checkpoints trained in the test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import Checkpoint, session_scope
from models.finetune import TrainConfig
from models.grid import train_grid
from tests.easy_data import register_easy_dataset

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "models.py")


def test_empty_workspace_shows_commands(workspace: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    infos = [i.value for i in at.info]
    assert any("No checkpoints yet" in i and "xaudit train-grid" in i for i in infos)
    assert any("xaudit data build" in i for i in infos)


def test_table_lineage_heatmap_and_training_from_the_page(workspace: Path) -> None:
    from xai_core.data import build_dataset

    splits = register_easy_dataset()  # in-memory images, learnable in 2 epochs (table and heatmap)
    build_dataset("tiny", n=40, size=32, seed=1)  # a real dataset for the page's training form
    rows = train_grid(splits, archs=["vgg16"], pretrains=["none"], degrees=["tl", "all"], width=0.125,
                      config=TrainConfig(epochs=2, batch_size=32, device="cpu"))
    tl_id, all_id = rows[0]["checkpoint_id"], rows[1]["checkpoint_id"]
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[all_id, "lineage"] == f"tl #{tl_id} → ft #{all_id}"
    assert table.loc[tl_id, "degree"] == "tl" and table.loc[all_id, "pretrain"] == "none"
    with session_scope() as session:
        acc = {r: session.get(Checkpoint, r).metrics["accuracy"] for r in (tl_id, all_id)}
    assert table.loc[all_id, "accuracy"] == pytest.approx(acc[all_id])
    heat = at.table[0].value
    assert heat.loc["none", "tl"] == pytest.approx(acc[tl_id]) and heat.loc["none", "all"] == pytest.approx(acc[all_id])
    assert list(heat.columns) == ["tl", "all"]
    # heatmap, training curves and confusion matrix of the selected (last) checkpoint
    assert len(at.get("plotly_chart")) == 3
    assert at.metric[0].value == f"{acc[all_id]:.3f}"

    # start a run from the page: TL then FT on the same dataset, one epoch each
    form_boxes = {sb.label: sb for sb in at.selectbox}
    form_boxes["Dataset"].set_value("tiny")
    form_boxes["Pre-training"].set_value("none")
    form_boxes["Protocol"].set_value("tl-ft")
    at.number_input[1].set_value(1)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.success and "Saved" in at.success[0].value and "tlft-s0-ft" in at.success[0].value
    with session_scope() as session:
        ft = session.query(Checkpoint).filter(Checkpoint.name == "tiny-vgg16-w0.125-none-tlft-s0-ft").one()
        assert ft.parent_id is not None and session.get(Checkpoint, ft.parent_id).phase == "tl"
