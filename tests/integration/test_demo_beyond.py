"""The demo's "beyond" stage at the quick size, on SQLite and PostgreSQL: deletion and insertion AUC of
the chosen methods and of the chance maps on the first correctly classified test images of the
all-layers FT checkpoints, the three-step cascading sanity check (with the Sobel control) on the mri/all
checkpoint, a second run that computes nothing, and the report's "Beyond the studies" cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import func, select

import models
from db import Checkpoint, DriftMetric, GroundTruthMetric, Prediction, session_scope
from xai_core import demo
from xai_core.attribution import explain_checkpoint
from xai_core.attribution.jobs import stored_samples
from xai_core.metrics.sanity_randomise import SELECTION
from xai_core.report import write_report

SILENT = lambda *a: None  # noqa: E731


def _correct_with_maps(checkpoint: int, methods: list[str], s: demo.DemoSettings) -> list[int]:
    """The checkpoint's correctly classified samples whose maps of every method are stored, by id."""
    stored = set.intersection(*(stored_samples(checkpoint, m, s.method_params.get(m)) for m in methods))
    with session_scope() as session:
        correct = session.scalars(select(Prediction.sample_pk).where(Prediction.checkpoint_id == checkpoint,
                                                                     Prediction.correct)).all()
    return sorted(set(int(p) for p in correct) & stored)


def test_quick_beyond_stage(workspace: Path, tmp_path: Path) -> None:
    s = demo.quick_settings()
    b, c = s.beyond.faithfulness, s.beyond.sanity
    assert b is not None and c is not None and (b.samples, c.samples, c.pretrain) == (4, 4, "mri")
    demo.build_demo(quick=True, only=("data", "pretrain", "train"))
    checkpoints = demo.study_checkpoints(s, tuple(b.degrees))
    assert len(checkpoints) == 2  # the all-layers FT checkpoint of each source
    methods = list(b.methods)
    for ck in checkpoints:  # the maps the explain stage stores for these methods
        model, _ = models.load(ck)
        for m in methods:
            explain_checkpoint(ck, m, split="test", limit=s.maps_per_checkpoint, params=dict(s.method_params.get(m, {})),
                               model=model)

    summary = demo.stage_beyond(s, SILENT)
    target = demo.sanity_checkpoint(s, "mri")
    with session_scope() as session:
        assert session.get(Checkpoint, target).degree == "all" and session.get(Checkpoint, target).pretrain == "mri"
        faith = session.execute(
            select(GroundTruthMetric.checkpoint_id, GroundTruthMetric.method, GroundTruthMetric.metric,
                   func.count(), func.min(GroundTruthMetric.value), func.max(GroundTruthMetric.value))
            .where(GroundTruthMetric.metric.in_(b.metrics))
            .group_by(GroundTruthMetric.checkpoint_id, GroundTruthMetric.method, GroundTruthMetric.metric)).all()
        sanity = session.execute(
            select(DriftMetric.method_a, DriftMetric.metric, func.count(), func.min(DriftMetric.value))
            .where(DriftMetric.selection == SELECTION, DriftMetric.checkpoint_a_id == target)
            .group_by(DriftMetric.method_a, DriftMetric.metric)).all()
    expected = {}
    for ck in checkpoints:
        n = min(b.samples, len(_correct_with_maps(ck, methods, s)))
        for m in [*methods, "baseline_random", "baseline_sobel"] if n else []:
            for key in b.metrics:
                expected[(ck, m, key)] = n
    assert {(ck, m, k): n for ck, m, k, n, _, _ in faith} == expected and expected
    assert all(0.0 <= lo <= hi <= 1.0 for *_, lo, hi in faith)  # AUCs of softmax scores over [0, 1]
    steps = len(c.layers)  # head; head … block3; every layer
    counts = {(m, k): n for m, k, n, _ in sanity}
    assert counts == {(m, k): steps * c.samples for m in [*c.methods, c.control]
                      for k in ("sanity_spearman", "sanity_ssim", "sanity_hog")}
    control = {k: lo for m, k, _, lo in sanity if m == c.control}
    np.testing.assert_allclose(control["sanity_spearman"], 1.0, atol=1e-9)  # the control never changes
    total = sum(expected.values()) // len(b.metrics)
    assert summary == (f"deletion_auc, insertion_auc of {total} new maps on {len(checkpoints)} checkpoints; "
                       f"cascading sanity check of 3 methods on checkpoint {target} (9 new steps × methods)")
    assert demo.stage_beyond(s, SILENT) == (f"deletion_auc, insertion_auc of 0 new maps on {len(checkpoints)} "
                                            f"checkpoints; cascading sanity check of 3 methods on checkpoint {target} "
                                            "(0 new steps × methods)")

    page = write_report(tmp_path / "report").read_text()
    section = page[page.index("<h2>Beyond the studies</h2>"):page.index("<h2>Reader studies</h2>")]
    assert section.count('<div class="card">') == 3  # faithfulness, sanity, suppressor (not testable here)
    assert "Petsiuk et al. 2018 (faithfulness)" in section and "Adebayo et al. 2018 (sanity checks)" in section
    assert "no suppressor or confounder dataset is evaluated in this workspace" in section
    assert "<h3>Faithfulness</h3>" in section and "<h3>Sanity checks (Adebayo et al. 2018)</h3>" in section
