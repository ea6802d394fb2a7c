"""What the two metric jobs read and write: stored map groups, predictions, lesion masks and images,
the metric values already stored, and bulk inserts (one transaction per chunk).

Both jobs are resumable per metric: a (map or map pair, metric) value already stored is not
recomputed, so registering a new metric and re-running the job fills in only that metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from db import AttributionMap, Dataset, Prediction, Sample, session_scope
from xai_core.attribution.store import read_maps_by_hash
from xai_core.data.dataset import cached_dataset
from xai_core.errors import UnknownNameError, WorkspaceError

CHUNK = 256  # maps (or map pairs) per chunk: one read of the store and one DB transaction each


def map_groups(session: Any, checkpoint_id: int, methods: Sequence[str] | None) -> list[tuple[str, str]]:
    """Distinct (method, params hash) with stored maps for a checkpoint, optionally filtered."""
    groups = session.execute(
        select(AttributionMap.method, AttributionMap.params_hash)
        .where(AttributionMap.checkpoint_id == checkpoint_id)
        .distinct()
        .order_by(AttributionMap.method, AttributionMap.params_hash)
    ).all()
    groups = [(m, h) for m, h in groups]
    if methods:
        have = sorted({m for m, _ in groups})
        unknown = [m for m in methods if m not in have]
        if unknown:
            raise UnknownNameError(
                f"no stored {', '.join(unknown)} maps for checkpoint {checkpoint_id} (stored: {', '.join(have) or 'none'}); "
                f"run `xaudit explain --checkpoint {checkpoint_id} --methods {','.join(unknown)}` first"
            )
        groups = [(m, h) for m, h in groups if m in set(methods)]
    return groups


def map_samples(session: Any, checkpoint_id: int, method: str, params_hash: str) -> set[int]:
    """Sample pks with a stored map of (checkpoint, method, params hash)."""
    return set(session.scalars(select(AttributionMap.sample_pk).where(
        AttributionMap.checkpoint_id == checkpoint_id, AttributionMap.method == method,
        AttributionMap.params_hash == params_hash)).all())


def predictions(session: Any, checkpoint_id: int) -> dict[int, tuple[int, bool]]:
    """``{sample pk: (predicted class, correct)}`` of a checkpoint's stored predictions."""
    rows = session.execute(
        select(Prediction.sample_pk, Prediction.pred, Prediction.correct).where(Prediction.checkpoint_id == checkpoint_id)
    ).all()
    return {int(pk): (int(pred), bool(ok)) for pk, pred, ok in rows}


def no_predictions(checkpoint: Any) -> WorkspaceError:
    """The error for a checkpoint without stored predictions (its correct samples are unknown)."""
    return WorkspaceError(
        f"checkpoint {checkpoint.name!r} has no stored predictions, so correct/incorrect samples are unknown; "
        "train it with `xaudit train` (which stores test predictions) or re-import it"
    )


def stored_metrics(session: Any, model: Any, **where: Any) -> dict[int, set[str]]:
    """``{sample pk: metrics stored}`` of ``model`` (``GroundTruthMetric`` / ``DriftMetric``) rows
    matching the column values ``where``."""
    rows = session.execute(select(model.sample_pk, model.metric).where(
        *[getattr(model, column) == value for column, value in where.items()])).all()
    out: dict[int, set[str]] = {}
    for pk, metric in rows:
        out.setdefault(int(pk), set()).add(metric)
    return out


def missing(sample_pks: Sequence[int], stored: dict[int, set[str]], metrics: Sequence[str]) -> list[int]:
    """The samples of ``sample_pks`` lacking at least one of ``metrics``."""
    wanted = set(metrics)
    return [int(p) for p in sample_pks if not wanted <= stored.get(int(p), set())]


def needed(sample_pks: Sequence[int], stored: dict[int, set[str]], metrics: Sequence[str]) -> list[str]:
    """The ``metrics`` at least one of ``sample_pks`` lacks (what a chunk computes)."""
    return [k for k in metrics if any(k not in stored.get(int(p), ()) for p in sample_pks)]


def read_stored_maps(checkpoint_id: int, method: str, phash: str, sample_pks: Sequence[int]) -> np.ndarray:
    """``(N, H, W)`` float32 stored maps for (checkpoint, method, params hash or its prefix)."""
    return read_maps_by_hash(checkpoint_id, method, phash, sample_pks).maps


def _dataset_arrays(session: Any, sample_pks: Sequence[int], dataset: Any = None) -> tuple[Any, dict[int, int]]:
    """The (cached) dataset holding ``sample_pks`` and a map sample pk -> row in it."""
    if dataset is not None:
        pks = np.asarray(dataset.sample_pks, dtype=np.int64)
        pos = {int(p): i for i, p in enumerate(pks.tolist())}
        absent = [int(p) for p in sample_pks if int(p) not in pos]
        if absent:
            raise WorkspaceError(f"sample {absent[0]} is not in the given dataset; pass the dataset the maps were made on")
        return dataset, pos
    ids = session.scalars(select(Sample.dataset_id).where(Sample.id.in_([int(p) for p in sample_pks])).distinct()).all()
    if len(ids) != 1:
        raise WorkspaceError(
            f"the samples span {len(ids)} datasets; evaluate one dataset's maps at a time"
            if ids else "the samples are not in the database; rebuild the dataset with `xaudit data build`"
        )
    ds = cached_dataset(session.get(Dataset, ids[0]).name)
    pks = np.asarray(ds.sample_pks, dtype=np.int64)
    return ds, {int(p): i for i, p in enumerate(pks.tolist())}


def masks_and_images(sample_pks: Sequence[int], need_images: bool,
                     dataset: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(N, H, W)`` lesion masks (and float32 images when ``need_images``) of ``sample_pks``, from
    ``dataset`` when given (anything with ``images``, ``masks`` and ``sample_pks``) or the
    samples' dataset in the workspace (:func:`~xai_core.data.dataset.cached_dataset`)."""
    with session_scope() as session:
        ds, pos = _dataset_arrays(session, sample_pks, dataset)
    idx = np.asarray([pos[int(p)] for p in sample_pks], dtype=np.int64)
    masks = np.asarray(ds.masks)[idx].astype(bool)
    images = np.asarray(ds.images)[idx].astype(np.float32) if need_images else None
    return masks, images


def any_regions(sample_pks: Sequence[int], dataset: Any = None) -> bool:
    """Whether ``dataset`` (when given) or the datasets of ``sample_pks`` have second masks (a
    suppressor/confounder variant): one small query, no arrays loaded."""
    if dataset is not None:
        return getattr(dataset, "regions", None) is not None
    if not len(sample_pks):
        return False
    with session_scope() as session:
        ids = select(Sample.dataset_id).where(Sample.id.in_([int(p) for p in sample_pks])).distinct()
        params = session.scalars(select(Dataset.params).where(Dataset.id.in_(ids))).all()
    return any((p or {}).get("variant", "none") != "none" for p in params)


def regions_of(sample_pks: Sequence[int], dataset: Any = None) -> np.ndarray | None:
    """``(N, H, W)`` bool second masks (suppressor / confounder region) of ``sample_pks``, or None
    when their dataset has none (a dataset without a variant, or one given without ``regions``)."""
    if not len(sample_pks):
        return None
    with session_scope() as session:
        ds, pos = _dataset_arrays(session, sample_pks, dataset)
    regions = getattr(ds, "regions", None)
    if regions is None:
        return None
    return np.asarray(regions)[np.asarray([pos[int(p)] for p in sample_pks], dtype=np.int64)].astype(bool)


def insert_rows(model: Any, rows: list[dict[str, Any]]) -> None:
    """Bulk-insert ``rows`` of ``model`` in one transaction."""
    if rows:
        with session_scope() as session:
            session.execute(insert(model), rows)


def long_rows(fixed: dict[str, Any], sample_pks: Sequence[int], values: dict[str, np.ndarray],
              stored: dict[int, set[str]], per_sample: dict[str, Sequence[Any]] | None = None) -> list[dict[str, Any]]:
    """One row per (sample, metric) not yet in ``stored``: ``fixed`` columns, ``sample_pk``, the
    ``per_sample`` columns' i-th values, ``metric`` and its float ``value``."""
    columns = {k: v.tolist() for k, v in values.items()}
    extra = per_sample or {}
    rows = []
    for i, pk in enumerate(sample_pks):
        have = stored.get(int(pk), ())
        base = {**fixed, "sample_pk": int(pk), **{k: v[i] for k, v in extra.items()}}
        rows += [{**base, "metric": k, "value": float(col[i])} for k, col in columns.items() if k not in have]
    return rows
