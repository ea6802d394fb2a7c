"""The faithfulness job and ``xaudit faithfulness`` on a real tiny workspace: a built dataset, a
registered vgg16 checkpoint with stored predictions and saliency maps; values equal the core
functions on the same arrays, the job resumes, and bad parameters are one line, exit 2, nothing stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

import models
from db import GroundTruthMetric, Prediction, session_scope
from models.prediction import predict
from xai_core.attribution import explain_checkpoint, load_maps
from xai_core.cli import run
from tests.seed import tiny_checkpoint
from xai_core.metrics.faithfulness import curve_auc, model_forward, perturbation_curves, road_scores
from xai_core.metrics.faithfulness_job import faithfulness, faithfulness_table, mean_curves, read_curves

SIZE = 32


def _setup() -> tuple[int, torch.nn.Module, object]:
    ck, model, test = tiny_checkpoint(SIZE)
    pred, probs = predict(model, test.images, device="cpu")
    with session_scope() as session:
        session.add_all(Prediction(checkpoint_id=ck, sample_pk=int(pk), pred=int(p), prob=float(pr.max()),
                                   correct=True) for pk, p, pr in zip(test.sample_pks, pred, probs))
    return ck, model, test


def _count() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(GroundTruthMetric)) or 0)


def test_job_values_resume_curves_and_cli(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, model, test = _setup()
    explain_checkpoint(ckpt, "saliency", split="test", limit=4, device="cpu")
    pks = [int(p) for p in test.sample_pks[:4]]

    # bad input first: one line, exit 2, nothing stored
    assert run(["faithfulness", "--metrics", "deletion_auc", "--param", "steps=7", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1:]  # after the progress bar
    assert err == ["error: steps=7 does not divide the 1024 pixels of a 32x32 image; choose a divisor, e.g. 4, 8, 16, 32"]
    assert run(["faithfulness", "--metrics", "road_morf", "--param", "percentiles=0,50", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1:]  # after the progress bar
    assert err == ["error: ROAD percentile 0.0 is out of range; each percentile must be strictly between 0 and 100, "
                   "e.g. 10,20,30,40,50,60,70,80,90"]
    assert _count() == 0

    params = {"deletion_auc": {"steps": 8}, "road_morf": {"percentiles": "20,80"},
              "faithfulness_correlation": {"runs": 10, "subset": 64}}
    metrics = ["deletion_auc", "road_morf", "faithfulness_correlation"]
    results = faithfulness([ckpt], ["saliency"], "all", baselines=False, metrics=metrics, params=params,
                           device="cpu", chunk_size=3)
    assert [(r.method, r.computed, r.skipped) for r in results] == [("saliency", 4, 0)]
    keys = ["deletion_auc[steps=8]", "road_morf[percentiles=20,80]", "faithfulness_correlation[runs=10,subset=64]"]
    with session_scope() as session:
        rows = session.execute(select(GroundTruthMetric.sample_pk, GroundTruthMetric.metric, GroundTruthMetric.value)
                               .where(GroundTruthMetric.checkpoint_id == ckpt)).all()
    stored = {(int(pk), m): v for pk, m, v in rows}
    assert len(stored) == 12 and {m for _, m in stored} == set(keys)

    # the stored values are the core functions' on the same arrays (targets: the maps' classes)
    maps = load_maps(ckpt, "saliency", pks)
    targets = predict(model, test.images[:4], device="cpu")[0]
    fwd = model_forward(model, "cpu")
    curves = perturbation_curves(fwd, test.images[:4], maps, targets, steps=8)
    np.testing.assert_allclose([stored[(p, keys[0])] for p in pks], curve_auc(curves), atol=1e-9)
    road = road_scores(fwd, test.images[:4], maps, targets, percentiles="20,80", sample_keys=pks).mean(axis=1)
    np.testing.assert_allclose([stored[(p, keys[1])] for p in pks], road, atol=1e-9)
    got_pks, got_curves, x = read_curves(ckpt, "saliency", results[0].params_hash, keys[0])
    order = np.argsort(got_pks)
    assert got_pks[order].tolist() == pks and np.allclose(x, np.linspace(0, 1, 9))
    np.testing.assert_allclose(got_curves[order], curves, atol=1e-6)  # float32 on disk

    again = faithfulness([ckpt], ["saliency"], "all", baselines=False, metrics=metrics, params=params, device="cpu")
    assert [(r.computed, r.skipped) for r in again] == [(0, 4)] and _count() == 12

    table = faithfulness_table("all", metrics=keys)
    assert set(table["metric"]) == set(keys) and (table["n"] == 4).all()
    np.testing.assert_allclose(table.set_index("metric").loc[keys[0], "mean"], curve_auc(curves).mean(), atol=1e-9)
    curve_mean = mean_curves(keys[0], "all")
    np.testing.assert_allclose(curve_mean["score"].to_numpy(), curves.mean(axis=0), atol=1e-6)

    # the CLI: default parameters, a limit, and the chance maps of the same samples
    code = run(["faithfulness", "--metrics", "deletion_auc", "--param", "steps=16", "--selection", "all",
                "--limit", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "faithfulness: 6 maps computed (0 already stored), selection=all" in out  # 2 x 3 methods
    assert "baseline_random    computed      2" in out and "baseline_sobel     computed      2" in out
    assert run(["metrics", "--params"]) == 0
    listing = capsys.readouterr().out
    assert "faithfulness metrics:" in listing and "steps=16" in listing and "road_lerf" in listing

    from xai_core.report import faithfulness_sections

    tables: dict = {}
    section = "".join(faithfulness_sections(tables))  # the CLI run stored default deletion AUCs of 3 methods
    assert "<h3>Faithfulness</h3>" in section and "deletion_auc (lower is better)" in section
    assert sorted(tables["faithfulness"]["method"]) == ["baseline_random", "baseline_sobel", "saliency"]


def test_report_section_without_values(workspace: Path) -> None:
    from xai_core.report import faithfulness_sections

    assert "No faithfulness metrics yet" in "".join(faithfulness_sections({}))
