"""The ``evaluate`` job end to end: stored maps -> GroundTruthMetric rows, baselines, resume, queries."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from db import GroundTruthMetric, session_scope
from xai_core.errors import ConfigError, ShapeError, UnknownNameError, WorkspaceError
from xai_core.metrics import GROUND_TRUTH_KEYS, evaluate, ground_truth_metrics, random_maps, sobel_maps
from xai_core.metrics.jobs import read_stored_maps
from xai_core.metrics.queries import accuracy_frame, benchmark_table, export_table, gt_frame
from xai_core.metrics.testing import add_checkpoint, add_dataset_rows, add_maps


def _seed(workspace: Path) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    n, h = 6, 16
    masks = np.zeros((n, h, h), bool)
    for i in range(n):
        masks[i, 2 + i : 6 + i, 3:8] = True
    masks[3] = False  # no lesion: metrics undefined, sample excluded
    images = rng.random((n, h, h)).astype(np.float32)
    labels = [0, 1, 0, 1, 0, 1]
    pks = add_dataset_rows("tiny", masks, labels)
    preds = [0, 1, 0, 1, 0, 0]  # sample 5 misclassified
    ck = add_checkpoint("vgg-mri-all", "vgg16", "mri", "all", "ft", pks, preds, labels)
    sal = (2.0 * masks + rng.random((n, h, h))).astype(np.float32)
    add_maps(ck, "saliency", pks, sal)
    add_maps(ck, "gradcam", pks, rng.random((n, h, h)).astype(np.float32))
    data = SimpleNamespace(images=images, masks=masks, sample_pks=np.asarray(pks), labels=np.asarray(labels))
    return SimpleNamespace(ck=ck, pks=pks, masks=masks, images=images, data=data)


def _rows(method: str) -> list[GroundTruthMetric]:
    with session_scope() as session:
        return list(session.scalars(select(GroundTruthMetric).where(GroundTruthMetric.method == method)
                                    .order_by(GroundTruthMetric.sample_pk)).all())


def test_evaluate_values_baselines_and_resume(workspace: Path) -> None:
    s = _seed(workspace)
    calls: list[tuple[int, int]] = []
    results = evaluate(dataset=s.data, chunk_size=3, progress=lambda d, t, _m: calls.append((d, t)))
    assert {(r.method, r.computed, r.skipped) for r in results} == {
        ("gradcam", 4, 0), ("saliency", 4, 0), ("baseline_random", 4, 0), ("baseline_sobel", 4, 0)}
    assert calls[-1] == (20, 20)  # 5 selected per group; the lesion-less sample is dropped when its mask is read
    chosen = [0, 1, 2, 4]  # correct and with a lesion
    pks = [s.pks[i] for i in chosen]
    phash = next(r.params_hash for r in results if r.method == "saliency")
    expected = {
        "saliency": ground_truth_metrics(read_stored_maps(s.ck, "saliency", phash, pks), s.masks[chosen]),
        "baseline_random": ground_truth_metrics(random_maps(np.asarray(pks), 16, 16), s.masks[chosen]),
        "baseline_sobel": ground_truth_metrics(sobel_maps(s.images[chosen]), s.masks[chosen]),
    }
    for method, values in expected.items():
        rows = _rows(method)
        assert [r.sample_pk for r in rows] == pks
        assert all(r.selection == "correct" and r.correct for r in rows)
        for key in GROUND_TRUTH_KEYS:
            np.testing.assert_allclose([getattr(r, key) for r in rows], values[key], atol=1e-12, err_msg=f"{method} {key}")
    # the saliency maps put twice the mass on the lesion: precision 1 (float16 storage keeps the order)
    assert [r.precision for r in _rows("saliency")] == [1.0] * 4
    assert np.mean([r.precision for r in _rows("baseline_random")]) < 0.5

    again = evaluate(dataset=s.data)
    assert all(r.computed == 0 and r.skipped == 4 for r in again)
    more = evaluate(dataset=s.data, selection="all", methods=["saliency"])
    assert [(r.method, r.computed) for r in more] == [("saliency", 1), ("baseline_random", 1), ("baseline_sobel", 1)]
    extra = [r for r in _rows("saliency") if r.sample_pk == s.pks[5]][0]
    assert extra.selection == "all" and not extra.correct


def test_queries_and_export(workspace: Path, tmp_path: Path) -> None:
    s = _seed(workspace)
    evaluate(dataset=s.data, selection="all")
    assert len(gt_frame("correct")[lambda d: d.method == "saliency"]) == 4
    assert len(gt_frame("incorrect")[lambda d: d.method == "saliency"]) == 1
    assert len(gt_frame("all")) == 4 * 5
    table = benchmark_table("correct", n_boot=200)
    row = table[(table.method == "saliency") & (table.metric == "precision")].iloc[0]
    assert (row["pretrain"], row["degree"], row["n"], row["mean"]) == ("mri", "all", 4, 1.0)
    acc = accuracy_frame("saliency")
    assert acc["accuracy"].iloc[0] == pytest.approx(5 / 6) and acc["precision"].iloc[0] == 1.0
    path, n = export_table("gt-metrics", tmp_path / "gt.csv")
    back = pd.read_csv(path)
    assert n == len(back) == 20 and set(GROUND_TRUTH_KEYS) <= set(back.columns)
    path, n = export_table("benchmark", tmp_path / "bench.parquet", n_boot=200)
    assert len(pd.read_parquet(path)) == n == 4 * len(GROUND_TRUTH_KEYS)


def test_evaluate_errors(workspace: Path) -> None:
    with pytest.raises(WorkspaceError, match="no attribution maps"):
        evaluate()
    s = _seed(workspace)
    with pytest.raises(ConfigError, match="selection"):
        evaluate(selection="true_positive", dataset=s.data)
    with pytest.raises(UnknownNameError, match="lrp"):
        evaluate(methods=["lrp"], dataset=s.data)
    with pytest.raises(UnknownNameError, match="no registered checkpoint"):
        evaluate(checkpoints=["nope"], dataset=s.data)
    lonely = add_checkpoint("no-preds", "vgg16", "mri", "all", "ft", [], [], [])
    add_maps(lonely, "saliency", s.pks, np.ones((6, 16, 16), np.float32))
    with pytest.raises(WorkspaceError, match="no stored predictions"):
        evaluate(checkpoints=[lonely], dataset=s.data)
    wrong = SimpleNamespace(images=s.images[:, :8, :8], masks=s.masks[:, :8, :8], sample_pks=s.data.sample_pks)
    with pytest.raises(ShapeError, match="explain at the dataset's image size"):
        evaluate(checkpoints=[s.ck], dataset=wrong)
    # a default run skips it and says so, and still evaluates the others
    results = evaluate(dataset=s.data, baselines=False)
    assert [(r.checkpoint_id, r.note) for r in results if r.note] == [(lonely, "skipped: no stored predictions")]
    assert sum(r.computed for r in results) == 8
    assert sum(r.rows for r in results) == 8
    empty = add_checkpoint("no-maps", "vgg16", "mri", "all", "ft", s.pks, [0] * 6, [0] * 6)
    with pytest.raises(WorkspaceError, match="no stored attribution maps"):
        evaluate(checkpoints=["no-maps"], dataset=s.data)
    mixed = evaluate(checkpoints=["no-maps", s.ck], dataset=s.data)  # one usable: notes, no error
    assert [(r.checkpoint_id, r.note) for r in mixed if r.note] == [(empty, "skipped: no stored maps")]
