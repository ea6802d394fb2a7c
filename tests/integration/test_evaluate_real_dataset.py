"""``evaluate`` on a dataset built by the real generator (masks and images via ``load_dataset``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.seed import add_checkpoint, add_maps
from xai_core.cli import main
from xai_core.data import build_dataset, load_dataset
from xai_core.metrics import evaluate, ground_truth_metrics, list_ground_truth_metrics, sobel_maps
from xai_core.metrics.queries import benchmark_table, gt_frame
from xai_core.metrics.stored import read_stored_maps


def test_evaluate_reads_masks_and_images_through_load_dataset(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_dataset("tiny", n=12, size=32, seed=0)
    data = load_dataset("tiny")
    pks = data.sample_pks.tolist()
    labels = data.labels.tolist()
    preds = [y if i % 4 else 1 - y for i, y in enumerate(labels)]  # every 4th sample wrong
    ck = add_checkpoint("vgg-natural-all", "vgg16", "natural", "all", "all", pks, preds, labels)
    rng = np.random.default_rng(0)
    maps = (data.masks * 3.0 + rng.random(data.masks.shape)).astype(np.float32)
    phash = add_maps(ck, "saliency", pks, maps)

    results = evaluate([ck])
    correct = [i for i in range(len(pks)) if i % 4 and 0 < data.masks[i].sum() < data.masks[i].size]
    assert {r.method: r.computed for r in results} == {
        "saliency": len(correct), "baseline_random": len(correct), "baseline_sobel": len(correct)}
    frame = gt_frame("correct")
    sal = frame[frame.method == "saliency"].sort_values("sample_pk")
    chosen = [pks[i] for i in correct]
    assert sal["sample_pk"].tolist() == chosen
    expected = ground_truth_metrics(read_stored_maps(ck, "saliency", phash, chosen), data.masks[correct])
    for key in list_ground_truth_metrics():
        np.testing.assert_allclose(sal[key].to_numpy(), expected[key], atol=1e-12)
    assert (sal["precision"] == 1.0).all()  # lesion pixels carry +3: always the top-n
    sob = frame[frame.method == "baseline_sobel"].sort_values("sample_pk")
    ref = ground_truth_metrics(sobel_maps(data.images[correct]), data.masks[correct])
    np.testing.assert_allclose(sob["precision"].to_numpy(), ref["precision"], atol=1e-12)
    table = benchmark_table("correct", metrics=("precision",), n_boot=200)
    rnd = table[table.method == "baseline_random"].iloc[0]
    share = np.mean([data.masks[i].mean() for i in correct])
    assert rnd["mean"] == pytest.approx(share, abs=0.1)  # random maps score about the lesion share

    # the CLI on the same workspace: resumes, then adds the misclassified samples
    monkeypatch.setattr(sys, "argv", ["xaudit", "evaluate", "--checkpoint", "vgg-natural-all", "--selection", "all"])
    main()
    out = capsys.readouterr().out
    n_wrong = len([i for i in range(len(pks)) if i % 4 == 0])
    assert f"evaluated {3 * n_wrong} maps ({3 * len(correct)} already stored), selection=all" in out
    assert len(gt_frame("incorrect")) == 3 * n_wrong
