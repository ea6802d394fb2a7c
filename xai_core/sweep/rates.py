"""This machine's measured rates, read from what earlier runs stored, for the plan's cost estimate.

* training: seconds per (epoch × training image) of stored TL/FT checkpoints of the same
  architecture, width and input size (``train_time_s`` over the epochs in ``history``);
* pre-training: seconds per step of stored pre-training checkpoints of the source, architecture
  and width (``train_time_s`` over ``metrics.steps``; ImageNet weights: the load time);
* maps: mean ``seconds`` per stored map of the method on checkpoints of the same architecture,
  width and input size.

Every function returns None when nothing comparable is stored ("no measured rate"); dataset
builds, metrics, drift and reports keep no timings, so they have none.
"""

from __future__ import annotations

import statistics

from sqlalchemy import func, select

from db import AttributionMap, Checkpoint, Sample, session_scope


def data_seconds(n: int | None, size: int | None) -> float | None:
    """Dataset builds keep no timing: no measured rate."""
    return None


def pretrain_seconds(source: str, arch: str, width: float, steps: int | None) -> float | None:
    """Estimated pre-training seconds from stored pre-training checkpoints of (source, arch, width)."""
    with session_scope() as session:
        rows = session.execute(select(Checkpoint.train_time_s, Checkpoint.metrics).where(
            Checkpoint.phase == "pretrain", Checkpoint.pretrain == source, Checkpoint.arch == arch,
            Checkpoint.width == float(width))).all()
    per_step = [t / m["steps"] for t, m in rows if t and m and m.get("steps")]
    if per_step and steps:
        return statistics.median(per_step) * steps
    loads = [t for t, m in rows if t and not (m or {}).get("steps")]
    return statistics.median(loads) if loads else None


def train_seconds(arch: str, width: float, size: int | None, epochs: int, n_train: int | None) -> float | None:
    """Estimated training seconds of ``epochs`` epochs over ``n_train`` images."""
    if size is None or n_train is None:
        return None
    with session_scope() as session:
        rows = session.execute(select(Checkpoint.train_time_s, Checkpoint.history, Checkpoint.dataset_id).where(
            Checkpoint.phase.in_(("tl", "ft")), Checkpoint.arch == arch, Checkpoint.width == float(width),
            Checkpoint.input_size == int(size), Checkpoint.train_time_s > 0)).all()
        counts = dict(session.execute(select(Sample.dataset_id, func.count(Sample.id)).where(
            Sample.split == "train").group_by(Sample.dataset_id)).all())
    rates = [t / (len(h) * counts[d]) for t, h, d in rows if h and counts.get(d)]
    return statistics.median(rates) * epochs * n_train if rates else None


def explain_seconds(arch: str, width: float, size: int | None, method: str, n: int) -> float | None:
    """Estimated seconds for ``n`` maps of ``method`` from the stored maps' compute time."""
    if size is None:
        return None
    with session_scope() as session:
        mean = session.scalar(select(func.avg(AttributionMap.seconds)).join(
            Checkpoint, AttributionMap.checkpoint_id == Checkpoint.id).where(
            AttributionMap.method == method, Checkpoint.arch == arch, Checkpoint.width == float(width),
            Checkpoint.input_size == int(size)))
    return float(mean) * n if mean is not None else None
