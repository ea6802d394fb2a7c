"""``xaudit sanity`` on a real tiny workspace: a vgg16 trained two epochs on a generated benchmark,
its saliency maps checked by cascading, independent and data randomisation, against the Sobel edge
map (the model-free control that must fail); values stored long-form in ``drift_metrics``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import spearmanr
from sqlalchemy import func, select

import models
from db import Checkpoint, DriftMetric, session_scope
from models.grid import train
from xai_core.attribution import explain
from xai_core.attribution.jobs import select_samples
from xai_core.cli import run
from xai_core.data import build_dataset
from xai_core.metrics.queries import drift_frame
from xai_core.metrics.sanity_randomise import fresh_model, randomised
from xai_core.metrics.sanity_results import failing_methods, sanity_frame, sanity_summary, sanity_verdicts


def _count(**where: object) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(DriftMetric).where(
            *[getattr(DriftMetric, k) == v for k, v in where.items()])) or 0)


def test_sanity_checks_store_resume_and_flag(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def xaudit(*args: str) -> SimpleNamespace:
        code = run(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(code=code, out=out.out, err=out.err)

    build_dataset("tiny", n=24, size=32, seed=0, train_frac=0.5, val_frac=0.2)
    info = train("tiny", arch="vgg16", pretrain="none", degree="all", width=0.125, epochs=2)[0]

    # bad names: one line naming the valid choices, exit 2, nothing stored
    bad = xaudit("sanity", info.name, "--layers", "block1,block9")
    assert bad.code == 2 and bad.err.strip() == (
        "error: unknown layer 'block9' of vgg16; choose from head, block5, block4, block3, block2, block1 "
        "(the head, then the five conv blocks from the last to the first)")
    bad = xaudit("sanity", info.name, "--mode", "shuffle")
    assert bad.code == 2 and "choose one of cascading, independent, data" in bad.err and "Traceback" not in bad.err
    bad = xaudit("sanity", info.name, "--methods", "saliency,nope")
    assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1 and "'nope'" in bad.err
    assert _count() == 0

    out = xaudit("sanity", info.name, "--methods", "saliency,baseline_sobel", "--limit", "4")
    assert out.code == 0, out.err
    assert _count(selection="sanity") == 2 * 6 * 4 * 3  # methods x steps x samples x similarities
    assert "sanity cascading: 48 samples computed over 12 steps" in out.out
    again = xaudit("sanity", info.name, "--methods", "saliency,baseline_sobel", "--limit", "4")
    assert "sanity cascading: 0 samples computed over 12 steps" in again.out and _count() == 144

    # a stored value equals scipy on maps recomputed by hand: head re-initialised with seed 0
    model, meta = models.load(info.id)
    batch = select_samples("tiny", "test", None, 4)
    fresh = fresh_model("vgg16", 2, 1, 0.125, seed=0)
    target = models.predict(model, batch.images)[0]
    a = explain(model, batch.images, "saliency", target, arch="vgg16")
    b = explain(randomised(model, "vgg16", ["head"], fresh), batch.images, "saliency", target, arch="vgg16")
    frame = sanity_frame()
    head = frame[(frame["method"] == "saliency") & (frame["step"] == "head")].sort_values("sample_pk")
    assert head["sample_pk"].tolist() == sorted(int(p) for p in batch.sample_pks)
    order = np.argsort(batch.sample_pks)
    expected = [spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel())[0] for i in order]
    np.testing.assert_allclose(head["sanity_spearman"], expected, rtol=1e-9)

    # the edge map never changes (fails); the trained model's saliency does (passes)
    sobel = frame[frame["method"] == "baseline_sobel"]
    np.testing.assert_allclose(sobel[["sanity_spearman", "sanity_ssim", "sanity_hog"]], 1.0, atol=1e-12)
    out = xaudit("sanity", info.name, "--methods", "saliency,baseline_sobel", "--mode", "independent", "--limit", "4",
                 "--layers", "head,block1")
    assert out.code == 0 and _count() == 144 + 2 * 2 * 4 * 3
    verdicts = sanity_verdicts(sanity_summary(sanity_frame())).set_index(["method", "mode"])
    assert verdicts.loc[("baseline_sobel", "cascading"), "verdict"] == "fails"
    assert verdicts.loc[("baseline_sobel", "independent"), "verdict"] == "fails"
    saliency = verdicts.loc[("saliency", "cascading")]
    assert saliency["verdict"] == "passes" and saliency["step"] == "block1" and saliency["spearman"] < 0.5
    assert sorted(failing_methods(verdicts.reset_index())) == [
        "baseline_sobel on vgg16 (cascading)", "baseline_sobel on vgg16 (independent)"]
    assert drift_frame(kind="all").empty  # the sanity rows stay out of the drift study

    # data randomisation: a shuffled-label copy trained once with the same recipe, then reused
    out = xaudit("sanity", info.name, "--mode", "data", "--limit", "4")
    assert out.code == 0, out.err
    with session_scope() as session:
        copy = session.scalar(select(Checkpoint).where(Checkpoint.name == f"{info.name}-shuffled0"))
        assert copy.metrics["shuffle_labels"] == 0 and copy.arch == "vgg16" and copy.degree == "all"
        assert copy.metrics["config"]["epochs"] == 2
        n_checkpoints = session.scalar(select(func.count()).select_from(Checkpoint))
    assert _count(checkpoint_b_id=copy.id, params_hash_b="sanity:data:labels:s0") == 4 * 3
    again = xaudit("sanity", info.name, "--mode", "data", "--limit", "4")
    assert "0 samples computed" in again.out
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Checkpoint)) == n_checkpoints
    bad = xaudit("sanity", info.name, "--mode", "data", "--layers", "head")
    assert bad.code == 2 and "--layers applies to the cascading and independent modes" in bad.err
