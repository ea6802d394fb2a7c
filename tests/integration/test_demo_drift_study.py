"""The demo's drift study stages at the quick size, on SQLite and PostgreSQL: a five-class dataset, each
architecture's TL→FT pair with one epoch checkpoint per FT epoch, LayerCAM and Grad-CAM++ maps of
every one of them, and drift rows of every kind; a second run computes nothing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from db import AttributionMap, Checkpoint, session_scope
from xai_core import demo
from xai_core.data import load_dataset
from xai_core.metrics.queries import drift_frame

SILENT = lambda *a: None  # noqa: E731


def test_quick_drift_study_stages(workspace: Path) -> None:
    s = demo.quick_settings()
    d = s.drift_study
    assert demo.stage_drift_data(s, SILENT) == f"{d.n_images} images, 5 classes"
    data = load_dataset(d.dataset)
    assert data.class_names == ["ellipse", "lobulated", "spiculated", "ring", "multifocal"]
    assert sorted(set(data.labels.tolist())) == [0, 1, 2, 3, 4]

    summary = demo.stage_drift_train(s, SILENT)
    pairs = demo.drift_study_pairs(s)
    assert sorted(pairs) == sorted(d.archs)
    assert all(f"{arch} TL " in summary for arch in d.archs)
    with session_scope() as session:
        for arch, (tl, ft) in pairs.items():
            tl_row, ft_row = session.get(Checkpoint, tl), session.get(Checkpoint, ft)
            assert (tl_row.phase, ft_row.phase, ft_row.degree, ft_row.num_classes) == ("tl", "ft", "all", 5)
            assert len(ft_row.history) == d.ft_epochs and len(tl_row.history) == d.tl_epochs
            epochs = session.scalars(select(Checkpoint.epoch).where(Checkpoint.parent_id == tl,
                                                                    Checkpoint.phase == "epoch")).all()
            assert sorted(epochs) == list(range(1, d.ft_epochs + 1))
    checkpoints = demo.drift_study_checkpoints(s)
    assert len(checkpoints) == len(d.archs) * (2 + d.ft_epochs)

    demo.stage_drift_explain(s, SILENT)
    with session_scope() as session:
        per = dict(session.execute(select(AttributionMap.method, func.count()).where(
            AttributionMap.checkpoint_id.in_(checkpoints)).group_by(AttributionMap.method)).all())
    assert per == {m: len(checkpoints) * d.maps_per_checkpoint for m in d.methods}
    assert demo.stage_drift_explain(s, SILENT).endswith("(0 new maps)")
    assert demo.stage_drift_train(s, SILENT) == summary  # stored pairs are not retrained

    demo.stage_drift(s, SILENT)
    rows = drift_frame(kind="all")
    study = rows[rows["dataset"] == d.dataset]
    per_kind = study.groupby("kind")["checkpoint_b_id"].nunique().to_dict()
    assert per_kind == {"tl-ft": len(d.archs), "epoch": len(d.archs) * d.ft_epochs,
                        "cross-method": 2 * len(d.archs)}
