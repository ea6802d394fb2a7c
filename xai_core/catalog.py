"""What the dashboard pages list, read from the workspace's database: dataset names, a dataset's
samples (an index and a frame with lesion areas), the checkpoints with their lineage and one checkpoint's detail.

The pages call these through caches keyed on :func:`xai_core.stamp.change_stamp` of the tables
they read (:data:`CHECKPOINT_TABLES` for the checkpoint functions) and hold no queries of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

import models
from db import Checkpoint, Dataset, Sample, session_scope
from xai_core.errors import UnknownNameError
from xai_core.metrics.order import order_columns

CHECKPOINT_TABLES = ("checkpoints", "datasets")  # what checkpoint_table / checkpoint_detail read

SampleRow = tuple[int, str, int, str]  # (Sample.id, sample id, label, split)


def dataset_names() -> list[str]:
    """Names of the registered datasets, oldest first."""
    with session_scope() as session:
        return list(session.scalars(select(Dataset.name).order_by(Dataset.id)).all())


def sample_index(dataset: str, split: str | None = None) -> list[SampleRow]:
    """``(pk, sample_id, label, split)`` of ``dataset``'s samples (one split, or all when None), by pk."""
    query = (select(Sample.id, Sample.sample_id, Sample.label, Sample.split)
             .join(Dataset, Sample.dataset_id == Dataset.id).where(Dataset.name == dataset).order_by(Sample.id))
    if split:
        query = query.where(Sample.split == split)
    with session_scope() as session:
        return [(int(pk), str(sid), int(label), str(sp)) for pk, sid, label, sp in session.execute(query).all()]


def sample_frame(dataset: str) -> pd.DataFrame:
    """One row per sample of ``dataset`` (by pk): ``pk, sample_id, label, split, lesion_area`` (pixels
    of the lesion mask, as recorded when the dataset was built or imported); empty when it has none."""
    query = (select(Sample.id.label("pk"), Sample.sample_id, Sample.label, Sample.split, Sample.lesion_area)
             .join(Dataset, Sample.dataset_id == Dataset.id).where(Dataset.name == dataset).order_by(Sample.id))
    with session_scope() as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=["pk", "sample_id", "label", "split", "lesion_area"])
    return frame.astype({"pk": "int64", "label": "int64", "lesion_area": "int64"})


def lineage(rows: list[dict[str, Any]]) -> dict[int, str]:
    """``"pretrain #1 → tl #3 → ft #4"`` per checkpoint id: its ancestors through ``parent_id``,
    oldest first (a cycle or a missing parent ends the chain)."""
    by_id = {r["id"]: r for r in rows}
    out = {}
    for row in rows:
        chain, seen, cur = [], set(), row
        while cur is not None and cur["id"] not in seen:
            seen.add(cur["id"])
            chain.append(f"{cur['phase']} #{cur['id']}")
            cur = by_id.get(cur["parent_id"]) if cur["parent_id"] else None
        out[row["id"]] = " → ".join(reversed(chain))
    return out


def checkpoint_table() -> pd.DataFrame:
    """Every checkpoint (:func:`models.list_checkpoints` columns) with a ``lineage`` column; empty
    frame when there are none."""
    rows = models.list_checkpoints()
    frame = pd.DataFrame(rows)
    if not frame.empty:
        chains = lineage(rows)
        frame["lineage"] = [chains[i] for i in frame["id"]]
    return frame


@dataclass(frozen=True)
class CheckpointDetail:
    """One checkpoint's training record: per-epoch (or per-step) history, test metrics, class names."""

    id: int
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    class_names: list[str]


def checkpoint_detail(checkpoint_id: int) -> CheckpointDetail:
    """History, metrics and class names of one checkpoint. Class names come from the checkpoint's
    metadata file next to its weights, else its dataset, else ``0..C-1``."""
    with session_scope() as session:
        ck = session.get(Checkpoint, int(checkpoint_id))
        if ck is None:
            raise UnknownNameError(f"no checkpoint #{checkpoint_id} in this workspace; `xaudit models list` shows them")
        dataset = session.get(Dataset, ck.dataset_id) if ck.dataset_id is not None else None
        history, metrics, path, n = list(ck.history or []), dict(ck.metrics or {}), ck.path, int(ck.num_classes)
        names = [str(c) for c in dataset.class_names] if dataset is not None else []
    side = Path(path).with_suffix(".json")
    try:
        names = [str(c) for c in json.loads(side.read_text()).get("class_names") or []] or names
    except (OSError, json.JSONDecodeError, AttributeError):
        pass  # no readable metadata file: the dataset's names
    if len(names) != n:
        names = [str(i) for i in range(n)]
    return CheckpointDetail(int(checkpoint_id), history, metrics, names)


def _trained(frame: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned checkpoints (phases tl and ft) with a test accuracy."""
    return frame[frame["phase"].isin(["tl", "ft"]) & frame["accuracy"].notna()]


def trained_archs(frame: pd.DataFrame) -> list[str]:
    """Architectures with a fine-tuned checkpoint that has a test accuracy (``frame``: :func:`checkpoint_table`)."""
    return [] if frame.empty else sorted(_trained(frame)["arch"].unique())


def accuracy_grid(frame: pd.DataFrame, arch: str) -> pd.DataFrame:
    """Test accuracy of ``arch``'s fine-tuned checkpoints by pre-training source (rows) and degree
    (columns, the study's order); the newest checkpoint of a cell wins. ``frame``: :func:`checkpoint_table`."""
    trained = _trained(frame)
    newest = trained[trained["arch"] == arch].sort_values("id").groupby(["pretrain", "degree"]).last()
    return order_columns(newest["accuracy"].unstack("degree"))
