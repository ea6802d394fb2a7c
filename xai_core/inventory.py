"""What a workspace holds, what is missing, and the command that computes each missing part."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from db import AttributionMap, Checkpoint, Dataset, DriftMetric, GroundTruthMetric, Sample, session_scope
from xai_core.metrics.sanity_randomise import SELECTION as SANITY_SELECTION


@dataclass(frozen=True)
class Part:
    name: str
    count: int
    detail: str
    command: str  # what computes it when missing

    @property
    def present(self) -> bool:
        return self.count > 0


def inventory() -> list[Part]:
    """One :class:`Part` per stage of the data flow, in order."""
    with session_scope() as s:
        datasets = s.scalars(select(Dataset.name).order_by(Dataset.id)).all()
        n_samples = s.scalar(select(func.count(Sample.id))) or 0
        phases = dict(s.execute(select(Checkpoint.phase, func.count()).group_by(Checkpoint.phase)).all())
        methods = dict(s.execute(select(AttributionMap.method, func.count()).group_by(AttributionMap.method)).all())
        n_gt, k_gt = s.execute(select(func.count(), func.count(GroundTruthMetric.metric.distinct()))).one()
        n_drift, k_drift = s.execute(select(func.count(), func.count(DriftMetric.metric.distinct()))
                                     .where(DriftMetric.selection != SANITY_SELECTION)).one()
    n_ckpt = sum(v for k, v in phases.items() if k != "epoch")
    return [
        Part("Datasets", len(datasets), f"{', '.join(datasets)} ({n_samples} images)" if datasets else "",
             "xaudit data build --name mri-lesions"),
        Part("Checkpoints", n_ckpt, ", ".join(f"{v} {k}" for k, v in sorted(phases.items())),
             "xaudit train-grid --dataset mri-lesions"),
        Part("Attribution maps", sum(methods.values()),
             f"{len(methods)} methods: " + ", ".join(sorted(methods)) if methods else "",
             "xaudit explain --checkpoint C --methods saliency,integrated_gradients --split test"),
        Part("Ground-truth metrics", n_gt, f"{n_gt} per-sample values of {k_gt} metrics" if n_gt else "",
             "xaudit evaluate"),
        Part("TL→FT drift", n_drift, f"{n_drift} per-sample values of {k_drift} metrics" if n_drift else "",
             "xaudit drift"),
    ]
