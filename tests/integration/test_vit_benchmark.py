"""A ViT on the lesion benchmark end to end: train (TL then FT), explain with Grad-CAM on the
token grid, attention rollout and saliency, then the unchanged ``evaluate`` and ``drift`` jobs;
and a patch size that does not divide the images: one line, exit 2, nothing stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from db import Checkpoint, session_scope
from models.grid import train
from xai_core.attribution.jobs import explain_checkpoint
from xai_core.cli import run
from xai_core.data import build_dataset, load_dataset
from xai_core.errors import ConfigError
from xai_core.metrics import drift, drift_metrics, evaluate, ground_truth_metrics, list_ground_truth_metrics
from xai_core.metrics.queries import drift_frame, gt_frame
from xai_core.metrics.stored import read_stored_maps

METHODS = ("gradcam", "attention_rollout", "saliency")


def test_vit_tiny_trains_explains_and_is_scored_by_the_unchanged_metrics(workspace: Path) -> None:
    build_dataset("vitbench", n=24, size=32, seed=0)
    data = load_dataset("vitbench")
    tl, ft = train("vitbench", arch="vit_tiny", pretrain="none", protocol="tl-ft", epochs=2, batch_size=8)
    assert (tl.metadata["phase"], ft.metadata["phase"], ft.metadata["arch"]) == ("tl", "ft", "vit_tiny")
    hashes = {}
    for ck in (tl, ft):
        for method in METHODS:
            job = explain_checkpoint(ck.id, method, split="test")
            assert job.computed > 0
            hashes[method] = job.params_hash
    test_pks = [int(pk) for pk, split in zip(data.sample_pks, data.splits) if split == "test"]
    maps = read_stored_maps(ft.id, "attention_rollout", hashes["attention_rollout"], test_pks)
    assert maps.shape == (len(test_pks), 32, 32) and np.allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-3)

    # ground truth: the stored rows are the registered metrics of the stored maps and masks
    results = evaluate([tl.id, ft.id], selection="all")
    assert {r.method for r in results} >= set(METHODS)
    frame = gt_frame("all")
    index = {int(pk): i for i, pk in enumerate(data.sample_pks)}
    for method in METHODS:
        rows = frame[(frame.method == method) & (frame.checkpoint_id == ft.id)].sort_values("sample_pk")
        pks = rows["sample_pk"].astype(int).tolist()
        assert pks and set(pks) <= set(test_pks)
        expected = ground_truth_metrics(read_stored_maps(ft.id, method, hashes[method], pks),
                                        data.masks[[index[pk] for pk in pks]])
        for key in list_ground_truth_metrics():
            np.testing.assert_allclose(rows[key].to_numpy(), expected[key], atol=1e-9, err_msg=f"{method} {key}")

    # drift TL -> FT on the ViT maps, as for the CNNs
    done = drift(pairs=[(tl.id, ft.id)], methods=list(METHODS), selection="all", cross_methods=None)
    assert {r.method_a for r in done} == set(METHODS) and all(r.computed == len(test_pks) for r in done)
    got = drift_frame(methods=["gradcam"]).sort_values("sample_pk")
    pks = got["sample_pk"].astype(int).tolist()
    assert pks == sorted(test_pks)
    expected = drift_metrics(read_stored_maps(tl.id, "gradcam", hashes["gradcam"], pks),
                             read_stored_maps(ft.id, "gradcam", hashes["gradcam"], pks))
    for key in ("iou_top20", "pearson", "com_displacement"):
        np.testing.assert_allclose(got[key].to_numpy(), expected[key], atol=1e-9)


def test_patch_size_that_does_not_divide_the_images_stores_nothing(
        workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_dataset("odd", n=24, size=36, seed=0)
    with pytest.raises(ConfigError, match="^vit_tiny: the patch size 8 does not divide the image size 36x36"):
        train("odd", arch="vit_tiny", pretrain="none", epochs=1)
    code = run(["train", "--dataset", "odd", "--arch", "vit_tiny", "--pretrain", "none", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("error: vit_tiny: the patch size 8 does not divide the image size 36x36; "
                                            "use images whose sides are multiples of 8 (e.g. 32 px)")
    code = run(["pretrain", "--source", "natural", "--arch", "vit_tiny", "--size", "36", "--steps", "1"])
    assert code == 2 and "patch size 8 does not divide the image size 36x36" in capsys.readouterr().err
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Checkpoint)) == 0
    assert not list(workspace.glob("checkpoints/**/*.safetensors"))
