"""Test fixture: stored sanity-check values (``drift_metrics`` rows with ``selection = "sanity"``)."""

from __future__ import annotations

from collections.abc import Sequence

from db import DriftMetric
from xai_core.metrics.sanity_randomise import randomisation_key
from xai_core.metrics.sanity_similarity import list_sanity_similarities
from xai_core.metrics.stored import insert_rows

STEPS = ["head", "block5", "block4", "block3", "block2", "block1"]
OFFSETS = (-0.02, -0.01, 0.01, 0.02)  # per sample around the planted median (their median is 0)


def add_sanity_rows(checkpoint_id: int, method: str, sample_pks: Sequence[int], medians: Sequence[float],
                    mode: str = "cascading", steps: Sequence[str] = STEPS) -> None:
    """Every similarity of ``method`` on (up to four) samples, per step: ``median + offset`` (capped at 1),
    so a step's median over the samples is its planted value unless the cap bites."""
    rows = [{"checkpoint_a_id": checkpoint_id, "checkpoint_b_id": checkpoint_id, "method_a": method,
             "params_hash_a": "p", "method_b": method, "params_hash_b": randomisation_key(mode, step, 0),
             "sample_pk": int(pk), "metric": metric, "value": min(1.0, median + offset), "selection": "sanity"}
            for step, median in zip(steps, medians, strict=True)
            for pk, offset in zip(sample_pks, OFFSETS)
            for metric in list_sanity_similarities()]
    insert_rows(DriftMetric, rows)
