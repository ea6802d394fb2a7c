"""Training jobs against a real SQLite workspace: TL→FT lineage, predictions, grid resume, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

import models
import models.grid as training
from db import Checkpoint, Prediction, session_scope
from models.finetune import TrainConfig
from models.grid import train, train_grid
from models.pretraining import pretrain
from models.splits import DataSplits
from tests.easy_data import register_easy_dataset
from xai_core.cli import run
from xai_core.data import build_dataset, load_dataset


def registered_splits() -> DataSplits:
    return register_easy_dataset()


def test_tl_ft_protocol_lineage_predictions_and_epoch_checkpoints(workspace: Path) -> None:
    splits = registered_splits()
    pre = pretrain("natural", arch="vgg16", width=0.125, size=32, steps=2, batch_size=8)
    tl, ft = train(splits, arch="vgg16", pretrain="natural", protocol="tl-ft", width=0.125, epochs=2,
                   save_every=1, batch_size=32, config=TrainConfig(device="cpu"))
    with session_scope() as session:
        tl_row, ft_row = session.get(Checkpoint, tl.id), session.get(Checkpoint, ft.id)
        assert (tl_row.phase, tl_row.degree, tl_row.parent_id) == ("tl", "tl", pre.id)
        assert (ft_row.phase, ft_row.degree, ft_row.parent_id) == ("ft", "all", tl.id)
        assert tl_row.dataset_id == splits.dataset_id and ft_row.pretrain == "natural"
        assert len(ft_row.history) == 2 and ft_row.train_time_s > 0 and ft_row.device == "cpu"
        epochs = session.scalars(select(Checkpoint).where(Checkpoint.phase == "epoch").order_by(Checkpoint.id)).all()
        assert [(e.degree, e.epoch) for e in epochs] == [("tl", 1), ("tl", 2), ("all", 1), ("all", 2)]
        for row in (tl_row, ft_row):
            preds = session.scalars(select(Prediction).where(Prediction.checkpoint_id == row.id)
                                    .order_by(Prediction.sample_pk)).all()
            assert [p.sample_pk for p in preds] == splits.test_pks.tolist()
            labels = splits.test[1]
            assert [p.correct for p in preds] == [p.pred == lab for p, lab in zip(preds, labels, strict=True)]
            assert row.metrics["accuracy"] == pytest.approx(np.mean([p.correct for p in preds]))
            assert all(0.5 <= p.prob <= 1.0 for p in preds)
            assert sum(map(sum, row.metrics["confusion_matrix"])) == len(labels)
    # the stored predictions are what the reloaded checkpoint predicts
    model, meta = models.load(ft.id)
    pred, _ = models.predict(model, splits.test[0], device="cpu")
    with session_scope() as session:
        stored = session.scalars(select(Prediction.pred).where(Prediction.checkpoint_id == ft.id)
                                 .order_by(Prediction.sample_pk)).all()
    assert list(stored) == pred.tolist()
    assert meta["class_names"] == ["dark", "bright"] and meta["input_size"] == 32


def test_train_grid_is_resumable_and_links_degrees_to_tl(workspace: Path) -> None:
    splits = registered_splits()
    calls: list[tuple[int, int, str]] = []
    rows = train_grid(splits, archs=["vgg16"], pretrains=["none"], degrees=["tl", "3conv"], width=0.125,
                      config=TrainConfig(epochs=1, batch_size=32, device="cpu"),
                      progress=lambda d, t, m: calls.append((d, t, m)))
    assert [(r["degree"], r["skipped"]) for r in rows] == [("tl", False), ("3conv", False)]
    assert calls[-1][0] == calls[-1][1]  # the bar ends full
    with session_scope() as session:
        tl = session.get(Checkpoint, rows[0]["checkpoint_id"])
        c3 = session.get(Checkpoint, rows[1]["checkpoint_id"])
        assert tl.parent_id is None and c3.parent_id == tl.id and c3.phase == "ft" and c3.degree == "3conv"
        # 3conv continued from the TL cell: its two frozen blocks equal the TL checkpoint's
        n_before = session.scalar(select(func.count(Checkpoint.id)))
    m_tl, _ = models.load(tl.id)
    m_c3, _ = models.load(c3.id)
    for i in range(0, 14):  # blocks 1-2 = features.0..13
        for a, b in zip(m_tl.features[i].parameters(), m_c3.features[i].parameters(), strict=True):
            assert torch.equal(a, b)
    again = train_grid(splits, archs=["vgg16"], pretrains=["none"], degrees=["tl", "3conv"], width=0.125,
                       config=TrainConfig(epochs=1, batch_size=32, device="cpu"))
    assert [r["skipped"] for r in again] == [True, True]
    assert [r["checkpoint_id"] for r in again] == [r["checkpoint_id"] for r in rows]
    with session_scope() as session:
        assert session.scalar(select(func.count(Checkpoint.id))) == n_before


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors_are_one_line_and_models_list(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(monkeypatch, capsys, "models", "list")
    assert code == 0 and "no checkpoints yet" in out
    code, _, err = _cli(monkeypatch, capsys, "train", "--dataset", "x", "--degree", "7conv")
    assert code == 2 and err.strip().count("\n") == 0 and "unknown fine-tuning degree '7conv'" in err
    code, _, err = _cli(monkeypatch, capsys, "train", "--dataset", "x", "--arch", "alexnet")
    assert code == 2 and "unknown architecture 'alexnet'" in err
    code, _, err = _cli(monkeypatch, capsys, "pretrain", "--source", "radimagenet")
    assert code == 2 and "unknown pre-training source" in err
    file = tmp_path / "m.pt"
    torch.save(models.build("vgg16", 3, width=0.125).state_dict(), file)
    code, _, err = _cli(monkeypatch, capsys, "models", "import", str(file), "--arch", "vgg16", "--num-classes", "2",
                        "--width", "0.125")
    assert code == 2 and "'classifier.4.weight' has shape (3, 64), expected (2, 64)" in err
    code, out, _ = _cli(monkeypatch, capsys, "models", "import", str(file), "--arch", "vgg16", "--num-classes", "3",
                        "--width", "0.125", "--name", "mine")
    assert code == 0 and "imported checkpoint 1 mine" in out
    code, out, _ = _cli(monkeypatch, capsys, "models", "list")
    assert code == 0 and "mine" in out and "external" in out


def test_train_from_a_built_dataset_stores_a_prediction_per_test_sample(workspace: Path) -> None:
    build_dataset("tiny", n=40, size=32, seed=1)
    (info,) = train("tiny", arch="vgg16", pretrain="none", degree="2conv", width=0.125, epochs=1, batch_size=16,
                    config=TrainConfig(device="cpu"))
    test = load_dataset("tiny", split="test")
    with session_scope() as session:
        row = session.get(Checkpoint, info.id)
        preds = session.scalars(select(Prediction).where(Prediction.checkpoint_id == info.id)
                                .order_by(Prediction.sample_pk)).all()
        assert row.dataset_id is not None and row.input_size == 32 and row.phase == "ft"
    assert [p.sample_pk for p in preds] == sorted(test.sample_pks.tolist())
    by_pk = dict(zip(test.sample_pks.tolist(), test.labels.tolist(), strict=True))
    assert all(p.correct == (p.pred == by_pk[p.sample_pk]) for p in preds)
    _, meta = models.load(info.id)
    assert meta["class_names"] == list(test.class_names)


def test_cli_augment_flag_reaches_the_training_config(workspace: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[object] = []
    monkeypatch.setattr(training, "train", lambda *a, **kw: seen.append(kw["config"]) or [])
    monkeypatch.setattr(training, "train_grid", lambda *a, **kw: seen.append(kw["config"]) or [])
    assert _cli(monkeypatch, capsys, "train", "--dataset", "x", "--augment")[0] == 0
    assert _cli(monkeypatch, capsys, "train-grid", "--dataset", "x", "--augment")[0] == 0
    assert _cli(monkeypatch, capsys, "train-grid", "--dataset", "y")[0] == 0
    assert [getattr(c, "augment", None) for c in seen] == [True, True, None]  # None: the grid's defaults
