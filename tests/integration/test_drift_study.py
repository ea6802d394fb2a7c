"""The drift study's analysis core on real SQLite/PostgreSQL rows: TL→epoch and cross-method pairs
of the drift job, drift along epochs, the study-grain tables, and the old pooled tables left to
the final TL→FT pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sqlalchemy import select

from db import Checkpoint, Prediction, session_scope
from models.finetune import TrainConfig
from models.grid import train
from tests.easy_data import register_easy_dataset
from xai_core.errors import ConfigError, UnknownNameError
from xai_core.cli import run
from xai_core.metrics import drift
from xai_core.findings import NO_DIFFERENCE, REPRODUCED, UNTESTABLE, headline_findings
from xai_core.metrics.queries import (
    drift_by_epoch,
    drift_frame,
    drift_study_table,
    drift_table,
    export_table,
    phase_accuracy_table,
    reversal_table,
)
from xai_core.metrics.registry import list_drift_metrics
from xai_core.report import write_report
from tests.seed import add_checkpoint, add_dataset_rows, add_drift_rows, add_maps, add_scored_checkpoint

DIAG = np.hypot(15, 15)


def _blob(h: int, r: float, c: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :h]
    return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0).astype(np.float32)


def _set(checkpoint_id: int, **values: object) -> None:
    with session_scope() as session:
        row = session.get(Checkpoint, checkpoint_id)
        for key, value in values.items():
            setattr(row, key, value)


def _maps(n: int, h: int, col: float) -> np.ndarray:
    return np.stack([_blob(h, 6, col) for _ in range(n)])


def seed_tl_ft_epochs(arch: str = "resnet50", n: int = 6, h: int = 16) -> dict[str, object]:
    """A tl-ft run with two FT epoch checkpoints (parent TL), as ``train(protocol="tl-ft",
    save_every=1)`` stores it: TL LayerCAM blob at column 6, epoch 1 at 7, epoch 2 and FT at 8;
    Grad-CAM++ on TL at column 9 and on FT equal to LayerCAM's. Every prediction correct."""
    masks = np.zeros((n, h, h), bool)
    masks[:, 5:9, 5:9] = True
    labels = [i % 2 for i in range(n)]
    pks = add_dataset_rows(f"tiny-{arch}", masks, labels)
    tl = add_checkpoint(f"{arch}-tl", arch, "natural", "tl", "tl", pks, labels, labels)
    e1 = add_checkpoint(f"{arch}-ft-e1", arch, "natural", "all", "epoch", pks, labels, labels, parent_id=tl)
    e2 = add_checkpoint(f"{arch}-ft-e2", arch, "natural", "all", "epoch", pks, labels, labels, parent_id=tl)
    ft = add_checkpoint(f"{arch}-ft", arch, "natural", "all", "ft", pks, labels, labels, parent_id=tl)
    _set(e1, epoch=1, metrics={"accuracy": 0.5})
    _set(e2, epoch=2, metrics={"accuracy": 1.0})
    _set(ft, history=[{"epoch": 1, "val_acc": 0.75}, {"epoch": 2, "val_acc": 0.875}])
    add_maps(tl, "layercam", pks, _maps(n, h, 6))
    add_maps(tl, "gradcam_plus_plus", pks, _maps(n, h, 9))
    add_maps(e1, "layercam", pks, _maps(n, h, 7))
    add_maps(e2, "layercam", pks, _maps(n, h, 8))
    add_maps(ft, "layercam", pks, _maps(n, h, 8))
    add_maps(ft, "gradcam_plus_plus", pks, _maps(n, h, 8))
    return {"pks": pks, "tl": tl, "e1": e1, "e2": e2, "ft": ft}


def test_drift_job_adds_epoch_and_cross_method_pairs(workspace: Path) -> None:
    s = seed_tl_ft_epochs()
    results = drift()
    got = sorted((r.checkpoint_a_id, r.checkpoint_b_id, r.method, r.computed) for r in results)
    assert got == sorted([
        (s["tl"], s["ft"], "gradcam_plus_plus", 6), (s["tl"], s["ft"], "layercam", 6),
        (s["tl"], s["e1"], "layercam", 6), (s["tl"], s["e2"], "layercam", 6),  # no Grad-CAM++ maps on epochs
        (s["tl"], s["tl"], "layercam:gradcam_plus_plus", 6), (s["ft"], s["ft"], "layercam:gradcam_plus_plus", 6),
    ])
    assert all(r.computed == 0 for r in drift())  # resumable, the new pairs too
    every = drift_frame(kind="all", metrics=["peak_displacement"])
    assert every.groupby("kind").size().to_dict() == {"tl-ft": 12, "epoch": 12, "cross-method": 12}
    epochs = every[every["kind"] == "epoch"]
    assert set(epochs["phase_b"]) == {"epoch"} and sorted(set(epochs["epoch_b"])) == [1, 2]
    assert set(epochs["degree_b"]) == {"all"} and set(epochs["phase_a"]) == {"tl"}
    cross = every[every["kind"] == "cross-method"].set_index("checkpoint_b_id")["peak_displacement"]
    np.testing.assert_allclose(cross.loc[s["tl"]], 3 / DIAG, atol=1e-9)  # TL: columns 6 vs 9
    np.testing.assert_allclose(cross.loc[s["ft"]], 0.0, atol=1e-9)  # FT: the same maps
    # the default frame and every pooled TL→FT table read only the final FT pairs
    pooled = drift_frame()
    assert len(pooled) == 12 and set(pooled["phase_b"]) == {"ft"} and set(pooled["kind"]) == {"tl-ft"}
    table = drift_table(n_boot=100)
    row = table[(table["method"] == "layercam") & (table["metric"] == "peak_displacement")].iloc[0]
    assert row["n"] == 6 and row["mean"] == pytest.approx(2 / DIAG)  # not (1 + 2 + 2) / 3 epochs pooled
    assert set(table["method"]) == {"layercam", "gradcam_plus_plus"}  # no layercam:gradcam_plus_plus rows
    assert set(reversal_table()[0]["method"]) == {"layercam", "gradcam_plus_plus"}
    # a cross-method pair named twice (explicitly and by the default) is computed once
    again = drift(pairs=[(s["tl"], s["tl"])], methods=["layercam:gradcam_plus_plus"])
    assert [(r.checkpoint_b_id, r.computed, r.skipped) for r in again] == [(s["tl"], 0, 6)]
    with pytest.raises(ConfigError, match="two or more different methods"):
        drift(cross_methods=("layercam",))
    with pytest.raises(UnknownNameError, match="layer_cam"):
        drift(cross_methods=("layer_cam", "gradcam_plus_plus"))


def test_drift_by_epoch_values_and_accuracy(workspace: Path, tmp_path: Path) -> None:
    s = seed_tl_ft_epochs()
    drift(cross_methods=None)
    curve = drift_by_epoch("peak_displacement", n_boot=100)
    assert list(curve.columns[:10]) == ["arch", "pretrain", "degree", "method", "epoch", "mean", "ci_low",
                                        "ci_high", "n", "n_clusters"]
    assert curve[["arch", "pretrain", "degree", "method", "epoch"]].values.tolist() == [
        ["resnet50", "natural", "all", "layercam", 1], ["resnet50", "natural", "all", "layercam", 2]]
    np.testing.assert_allclose(curve["mean"], [1 / DIAG, 2 / DIAG], atol=1e-9)  # blob moved 1 then 2 px
    np.testing.assert_allclose(curve["ci_low"], curve["mean"], atol=1e-9)  # every image moved alike
    assert curve["n"].tolist() == [6, 6] and curve["n_clusters"].tolist() == [6, 6]
    assert curve["val_accuracy"].tolist() == [0.75, 0.875]  # from the FT run's history
    assert curve["test_accuracy"].tolist() == [0.5, 1.0]  # the epoch checkpoints' own metrics
    iou = drift_by_epoch(n_boot=100)  # default iou_top20: epoch 2 equals FT's maps, shifted 2 px from TL
    assert iou["epoch"].tolist() == [1, 2] and iou["mean"].iat[0] > iou["mean"].iat[1]
    path, n = export_table("drift-epochs", tmp_path / "epochs.csv", n_boot=100)
    assert n == 2 and pd.read_csv(path)["val_accuracy"].tolist() == [0.75, 0.875]
    assert drift_by_epoch(n_boot=100).pipe(len) == 2
    _set(s["ft"], history=[])  # a run still in progress: no validation accuracy yet
    assert drift_by_epoch(n_boot=100)["val_accuracy"].isna().all()


def _study(pks: list[int], tl_accuracy: float = 0.85, tl_auc: float = 0.96) -> None:
    """Three architectures' TL→FT pairs (2 classes); LayerCAM IoU 0.8 / 0.5 / 0.2 by architecture and
    Grad-CAM++ the reverse (the ranking reverses); displacement 0 everywhere (stable)."""
    rng = np.random.default_rng(0)
    for i, arch in enumerate(ARCH_NAMES):
        tl, _ = add_scored_checkpoint(f"{arch}-tl", pks, tl_accuracy if i == 0 else 0.85, degree="tl", phase="tl",
                                      arch=arch)
        ft, _ = add_scored_checkpoint(f"{arch}-ft", pks, 0.95, parent_id=tl, arch=arch)
        _set(tl, metrics={"roc_auc": tl_auc})
        _set(ft, metrics={"roc_auc": 0.5, "roc_auc_macro": 0.99})  # the macro AUC wins where stored
        for method, level in (("layercam", 0.8 - 0.3 * i), ("gradcam_plus_plus", 0.2 + 0.3 * i)):
            add_drift_rows(tl, ft, method, pks[:30], level + rng.normal(0, 0.02, 30))


ARCH_NAMES = ("densenet121", "resnet50v2", "inception_v3")


def _finding(findings: list, start: str):
    return next(f for f in findings if f.claim.startswith(start))


def test_drift_study_verdicts_and_tables(workspace: Path) -> None:
    masks = np.zeros((40, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    pks = add_dataset_rows("bench", masks, [i % 2 for i in range(40)])
    _study(pks)
    findings = headline_findings(n_boot=300)
    phases = _finding(findings, "Both phases work")
    assert phases.verdict == REPRODUCED
    assert ("densenet121 (mri, densenet121-tl → densenet121-ft): TL accuracy 0.85, AUC 0.960; FT accuracy 0.95, "
            "AUC 0.990 (chance 0.50)") in phases.evidence
    arch = _finding(findings, "The displacement stays small")
    assert arch.verdict == REPRODUCED  # IoU drift differs by architecture, displacement is 0 everywhere
    assert "layercam: η² IoU drift 0.9" in arch.evidence and "displacement 0.000 [0.000, 0.000]" in arch.evidence
    assert "resamples images within each architecture" in arch.rule
    rev = _finding(findings, "Drift is architecture-dependent")
    assert rev.verdict == REPRODUCED
    assert ("gradcam_plus_plus vs layercam: τ -1.00 [-1.00, -1.00], reversal on the data, reversal in 100% of 300 "
            "replicates") in rev.evidence
    assert "layercam: densenet121 0.798 > resnet50v2 0.503 > inception_v3 0.200" in rev.evidence
    table = phase_accuracy_table()
    assert table["arch"].tolist() == sorted(ARCH_NAMES)
    assert table["ft_auc"].tolist() == [0.99] * 3 and table["tl_auc"].tolist() == [0.96] * 3
    assert table["both_working"].all() and table["chance"].tolist() == [0.5] * 3
    study = drift_study_table(n_boot=200, metrics=["iou_top20"])
    assert len(study) == 6 and {"sd", "q25", "q75", "iqr", "pair"} <= set(study.columns)
    row = study[(study["arch"] == "densenet121") & (study["method"] == "layercam")].iloc[0]
    assert row["pair"] == "densenet121-tl → densenet121-ft" and row["degree"] == "all" and row["n"] == 30
    assert row["mean"] == pytest.approx(0.8, abs=0.01) and row["sd"] == pytest.approx(0.02, abs=0.008)


def test_near_chance_tl_makes_the_phases_untestable(workspace: Path) -> None:
    masks = np.zeros((40, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    _study(add_dataset_rows("bench", masks, [i % 2 for i in range(40)]), tl_accuracy=0.5, tl_auc=0.9)
    findings = headline_findings(n_boot=200)
    phases = _finding(findings, "Both phases work")
    assert phases.verdict == UNTESTABLE
    assert "TL accuracy 0.50, AUC 0.900 — near chance" in phases.evidence
    assert "A model of densenet121 (mri) is near chance" in phases.rule
    assert not phase_accuracy_table().set_index("arch").at["densenet121", "tl_working"]
    rev = _finding(findings, "Drift is architecture-dependent")  # two working architectures remain
    assert "Left out as near chance: densenet121-tl (test accuracy 0.50)" in rev.evidence


def test_report_has_the_drift_study_section(workspace: Path, tmp_path: Path) -> None:
    masks = np.zeros((40, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    _study(add_dataset_rows("bench", masks, [i % 2 for i in range(40)]))
    out = write_report(tmp_path / "r")
    page = out.read_text()
    section = page[page.index("<h2>The drift study at its grain"):]
    assert "TL vs FT test accuracy and ROC-AUC" in section and "What the demo&#x27;s stand-ins limit" not in section
    assert "What the demo's stand-ins limit" in section and "τ takes only the values" in section
    phases = pd.read_csv(out.parent / "phase-accuracy.csv")
    assert len(phases) == 3 and phases["both_working"].all()
    study = pd.read_csv(out.parent / "drift-study.csv")
    assert {"sd", "q25", "q75", "iqr"} <= set(study.columns) and len(study) == 6 * len(list_drift_metrics())
    reversals = pd.read_csv(out.parent / "reversals.csv")
    assert reversals[["tau_ci_low", "reversal_share"]].values.tolist() == [[-1.0, 1.0]]
    cards = page.count('<div class="card">')
    # no ground-truth rows: one card for them, then phases, drift, architecture, reversal; then the three
    # "Beyond the studies" cards (faithfulness, sanity, suppressor region: not testable here)
    assert cards == 8


def test_real_tl_ft_training_with_epoch_checkpoints(workspace: Path) -> None:
    """A tiny tl-ft training saving every epoch: the drift job pairs TL with the FT epochs (not the TL
    epochs, whose parent is not a TL checkpoint), true positives from the stored predictions."""
    splits = register_easy_dataset()
    tl, ft = train(splits, arch="vgg16", pretrain="none", protocol="tl-ft", width=0.125, epochs=2, save_every=1,
                   batch_size=32, config=TrainConfig(device="cpu"))
    pks = [int(p) for p in splits.test_pks]
    with session_scope() as session:
        epochs = session.scalars(select(Checkpoint).where(Checkpoint.phase == "epoch").order_by(Checkpoint.id)).all()
        kinds = {e.id: (e.parent_id, e.degree, e.epoch) for e in epochs}
        correct = {ck: {p.sample_pk for p in session.scalars(select(Prediction).where(
            Prediction.checkpoint_id == ck, Prediction.correct.is_(True)))} for ck in [tl.id, ft.id, *kinds]}
    ft_epochs = [i for i, (parent, degree, _) in kinds.items() if parent == tl.id]
    assert [kinds[i][1:] for i in ft_epochs] == [("all", 1), ("all", 2)] and len(kinds) == 4
    rng = np.random.default_rng(0)
    for ck in [tl.id, ft.id, *kinds]:
        add_maps(ck, "layercam", pks, rng.random((len(pks), 8, 8)).astype(np.float32))
    for ck in (tl.id, ft.id):
        add_maps(ck, "gradcam_plus_plus", pks, rng.random((len(pks), 8, 8)).astype(np.float32))
    results = drift()
    computed = {(r.checkpoint_a_id, r.checkpoint_b_id, r.method): r.computed for r in results}
    both = lambda a, b: len(correct[a] & correct[b])  # noqa: E731
    assert computed == {
        (tl.id, ft.id, "layercam"): both(tl.id, ft.id), (tl.id, ft.id, "gradcam_plus_plus"): both(tl.id, ft.id),
        **{(tl.id, e, "layercam"): both(tl.id, e) for e in ft_epochs},
        (tl.id, tl.id, "layercam:gradcam_plus_plus"): len(correct[tl.id]),
        (ft.id, ft.id, "layercam:gradcam_plus_plus"): len(correct[ft.id]),
    }
    n_metrics, n = len(list_drift_metrics()), len(pks)
    drift(selection="all")  # the rest of the test images too (a model this tiny may get few right)
    every = drift_frame(kind="all")
    assert every.groupby("kind").size().to_dict() == {"tl-ft": 2 * n, "epoch": 2 * n, "cross-method": 2 * n}
    # the old pooled tables: final FT rows only
    summary = drift_table(n_boot=100)
    assert set(summary["n"]) == {n} and len(summary) == 2 * n_metrics
    assert set(drift_frame()["checkpoint_b_id"]) == {ft.id}
    assert set(reversal_table(n_boot=50)[0]["method"]) == {"layercam", "gradcam_plus_plus"}
    curve = drift_by_epoch(n_boot=100)
    assert curve["epoch"].tolist() == [1, 2] and curve["n"].tolist() == [n, n]
    with session_scope() as session:
        history = session.get(Checkpoint, ft.id).history
    assert curve["val_accuracy"].tolist() == pytest.approx([h["val_acc"] for h in history])


def test_cli_cross_methods_and_new_exports(workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_tl_ft_epochs()
    assert run(["drift", "--cross-methods", "none"]) == 0
    out = capsys.readouterr().out
    assert "drift: 24 pairs computed" in out and "layercam:gradcam_plus_plus" not in out  # 2 TL→FT + 2 epochs
    assert run(["drift"]) == 0  # the default adds LayerCAM vs Grad-CAM++ on TL and FT
    assert "drift: 12 pairs computed (24 already stored)" in capsys.readouterr().out
    assert run(["drift", "--cross-methods", "layercam"]) == 2
    assert "error: cross_methods needs two or more different methods" in capsys.readouterr().err
    for name, rows in (("drift-epochs", 2), ("cross-method", 2 * 3), ("phase-accuracy", 1), ("drift-study", 16)):
        assert run(["export", name, str(tmp_path / f"{name}.csv"), "--n-boot", "100"]) == 0
        assert f"wrote {rows} rows" in capsys.readouterr().out, name


def test_working_but_weaker_tl_is_not_the_study_s_both_phases(workspace: Path) -> None:
    """TL above chance but below the study's AUC: 'not reproduced', naming the weaker models."""
    masks = np.zeros((40, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    _study(add_dataset_rows("bench", masks, [i % 2 for i in range(40)]), tl_auc=0.9)
    phases = _finding(headline_findings(n_boot=100), "Both phases work")
    assert phases.verdict == NO_DIFFERENCE
    assert phases.evidence.endswith("Below AUC 0.95: densenet121 (mri), inception_v3 (mri), resnet50v2 (mri).")
