"""The explain job: compute a checkpoint's maps for a dataset's samples and keep them in the map
store (:mod:`xai_core.attribution.store`); reads by method parameters; the dashboard's
"stored or computed now" request.

A job skips every sample already indexed, so it can be interrupted and resumed; a request for
stored maps never runs the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import select
from torch import nn

import models
from db import Checkpoint, Dataset, Sample, session_scope
from xai_core.attribution.capabilities import check_supported
from xai_core.attribution.engine import explain_with_info
from xai_core.attribution.registry import get_method, params_hash, split_target
from xai_core.attribution.store import (
    CHUNK,
    StoredMaps,
    index_chunk,
    read_maps_by_hash,
    store_dir,
    stored_pks,
    write_chunk,
)
from xai_core.config import database_url, home
from xai_core.data import cached_dataset
from xai_core.errors import InvalidValueError, WorkspaceError, XAuditError
from xai_core.progress import Progress, silent

TARGETS = ("predicted", "true")


# ------------------------------------------------------------------------------------------
# samples
# ------------------------------------------------------------------------------------------
@dataclass
class SampleBatch:
    """Images (N, H, W), labels and DB keys of the samples to explain, in request order."""

    images: np.ndarray
    labels: np.ndarray
    sample_pks: np.ndarray
    dataset: str
    masks: np.ndarray | None = None


def dataset_to_explain(dataset: str | None, checkpoint_id: int, sample_pks: Sequence[int] | None) -> str:
    """The dataset to explain: as given, else the first sample's, else the checkpoint's."""
    if dataset:
        return dataset
    with session_scope() as session:
        if sample_pks is not None and len(sample_pks) > 0:
            name = session.scalar(select(Dataset.name).join(Sample, Sample.dataset_id == Dataset.id)
                                  .where(Sample.id == int(sample_pks[0])))
            if name is None:
                raise WorkspaceError(f"sample {sample_pks[0]} is not in the database; see `xaudit data list`")
            return name
        name = session.scalar(select(Dataset.name).join(Checkpoint, Checkpoint.dataset_id == Dataset.id)
                              .where(Checkpoint.id == checkpoint_id))
    if name is None:
        raise WorkspaceError(f"checkpoint {checkpoint_id} has no dataset on record; pass --dataset NAME")
    return name


def select_samples(dataset: str, split: str | None = None, sample_pks: Sequence[int] | None = None,
                   limit: int | None = None) -> SampleBatch:
    """The images to explain: the ``split`` of ``dataset`` or the given ``sample_pks`` (in order)."""
    ds = cached_dataset(dataset, None if sample_pks is not None else split)
    pks_all = np.asarray(ds.sample_pks, dtype=np.int64)
    if sample_pks is not None:
        want = np.asarray(list(sample_pks), dtype=np.int64)
        order = np.argsort(pks_all)
        pos = np.searchsorted(pks_all[order], want)
        pos = np.clip(pos, 0, len(pks_all) - 1)
        found = pks_all[order][pos] == want
        if not bool(found.all()):
            missing = want[~found][:5].tolist()
            raise WorkspaceError(f"sample(s) {missing} are not in dataset {dataset!r}; pick samples of that dataset")
        index = order[pos]
    else:
        index = np.arange(len(pks_all))
    if limit is not None:
        if limit < 1:
            raise InvalidValueError(f"--limit must be >= 1 (got {limit})")
        index = index[:limit]
    masks = getattr(ds, "masks", None)
    return SampleBatch(
        images=np.asarray(ds.images)[index], labels=np.asarray(ds.labels)[index], sample_pks=pks_all[index],
        dataset=dataset, masks=None if masks is None else np.asarray(masks)[index],
    )


def dataset_mean(dataset: str) -> float:
    """Mean intensity of the dataset's train split (all samples when it has none): baseline=mean."""
    try:
        images = np.asarray(cached_dataset(dataset, "train").images)
    except XAuditError:  # no train split
        images = np.empty((0,))
    if images.size == 0:
        images = np.asarray(cached_dataset(dataset, None).images)
    return round(float(images.mean(dtype=np.float64)), 6)


# ------------------------------------------------------------------------------------------
# the job
# ------------------------------------------------------------------------------------------
@dataclass
class ExplainJobResult:
    """What a job did."""

    checkpoint_id: int
    method: str
    params_hash: str
    params: dict[str, Any]
    computed: int
    skipped: int
    seconds: float
    device: str


def _resolve_params(method: str, params: dict[str, Any] | None, dataset: str | None) -> dict[str, Any]:
    spec = get_method(method)
    resolved = spec.resolve(params or {})
    if resolved.get("baseline") == "mean" and resolved.get("baseline_value") is None:
        if dataset is None:
            raise InvalidValueError("baseline=mean needs a dataset (or --param baseline_value=...)")
        resolved["baseline_value"] = dataset_mean(dataset)
    return resolved


@lru_cache(maxsize=4)
def _cached_load(checkpoint_id: int, sha256: str, workspace: tuple[str, str]) -> tuple[nn.Module, dict[str, Any]]:
    """``models.load(checkpoint_id)`` kept for the process (the dashboard's on-demand requests).

    Keyed on the checkpoint's file hash from its row (``sha256``) and the workspace (folder and
    database URL), so a file replaced under the same id or name is loaded afresh."""
    return models.load(checkpoint_id)


def _checkpoint_meta(checkpoint_ref: Any, model: nn.Module | None) -> tuple[nn.Module, dict[str, Any]]:
    """The model (the caller's when given, else loaded and kept) and its checkpoint metadata."""
    row = models.resolve_checkpoint(checkpoint_ref, missing_ok=True)
    if row is None:
        raise WorkspaceError(
            f"checkpoint {checkpoint_ref} is not registered; import it first with `xaudit models import FILE`"
        )
    if model is not None:  # the caller holds the loaded weights: read the metadata from the DB row only
        return model, {"checkpoint_id": row.id, "sha256": row.sha256, "arch": row.arch,
                       "input_size": row.input_size}
    return _cached_load(int(row.id), str(row.sha256), (str(home()), database_url()))


def explain_checkpoint(
    checkpoint_ref: int | str,
    method: str,
    sample_pks: Sequence[int] | None = None,
    split: str | None = "test",
    params: dict[str, Any] | None = None,
    progress: Progress = silent,
    *,
    dataset: str | None = None,
    limit: int | None = None,
    target: str = "predicted",
    batch_size: int | None = None,
    device: str | None = None,
    model: nn.Module | None = None,
    chunk_size: int = CHUNK,
) -> ExplainJobResult:
    """Compute and store ``method`` maps of a registered checkpoint for ``sample_pks`` (or the
    ``split`` of its dataset). Resumable: samples already stored are skipped.

    ``target``: ``"predicted"`` (the checkpoint's predicted class) or ``"true"`` (the label).
    ``model`` may be passed when the caller already holds the loaded checkpoint (dashboard cache).
    """
    params, p_target = split_target(params)
    target = p_target if target == "predicted" else target
    if target not in TARGETS:
        raise InvalidValueError(f"target must be one of {', '.join(TARGETS)} (got {target!r})")
    get_method(method)
    net, meta = _checkpoint_meta(checkpoint_ref, model)
    ckpt_id = int(meta["checkpoint_id"])
    check_supported(method, meta["arch"])
    name = dataset_to_explain(dataset, ckpt_id, sample_pks)
    resolved = _resolve_params(method, params, name)
    hashed = {**get_method(method).hashed_params(resolved), **({"target": "true"} if target == "true" else {})}
    phash = params_hash(method, {**resolved, "target": target})
    batch = select_samples(name, split, sample_pks, limit)
    done = stored_pks(ckpt_id, method, phash)
    todo = np.asarray([i for i, pk in enumerate(batch.sample_pks.tolist()) if pk not in done], dtype=np.int64)
    total = len(batch.sample_pks)
    skipped = total - len(todo)
    progress(skipped, total, f"{method}: {skipped} stored")
    folder = store_dir(meta["sha256"], method, phash)
    seconds = 0.0
    dev = ""
    for start in range(0, len(todo), chunk_size):
        idx = todo[start:start + chunk_size]
        tgt = batch.labels[idx] if target == "true" else None
        result = explain_with_info(
            net, batch.images[idx], method, tgt, arch=meta["arch"], input_size=meta.get("input_size"),
            batch_size=batch_size, device=device, **resolved,
        )
        path = write_chunk(folder, result.maps)
        index_chunk(ckpt_id, method, phash, hashed, batch.sample_pks[idx], result, path)
        seconds += result.seconds
        dev = result.device
        progress(skipped + start + len(idx), total, f"{method} on {dev}")
    return ExplainJobResult(ckpt_id, method, phash, hashed, len(todo), skipped, seconds, dev)


# ------------------------------------------------------------------------------------------
# reads by method parameters
# ------------------------------------------------------------------------------------------
def _hash_for(method: str, params: dict[str, Any] | None, checkpoint_id: int, target: str) -> str:
    rest, p_target = split_target(params)
    target = p_target if target == "predicted" else target
    resolved = get_method(method).resolve(rest)
    if resolved.get("baseline") == "mean" and resolved.get("baseline_value") is None:
        resolved["baseline_value"] = dataset_mean(dataset_to_explain(None, checkpoint_id, None))
    return params_hash(method, {**resolved, "target": target})


def read_maps(checkpoint_id: int, method: str, sample_pks: Sequence[int], params: dict[str, Any] | None = None,
              target: str = "predicted") -> StoredMaps:
    """Stored maps for ``sample_pks`` (all must be stored, else :class:`WorkspaceError`)."""
    return read_maps_by_hash(checkpoint_id, method, _hash_for(method, params, int(checkpoint_id), target), sample_pks)


def stored_samples(checkpoint_id: int, method: str, params: dict[str, Any] | None = None,
                   target: str = "predicted") -> set[int]:
    """Sample keys whose ``method`` map (these parameters; ``None``: its defaults) of ``checkpoint_id`` is stored."""
    return stored_pks(int(checkpoint_id), method, _hash_for(method, params, int(checkpoint_id), target))


def load_maps(checkpoint_id: int, method: str, sample_pks: Sequence[int], params: dict[str, Any] | None = None,
              target: str = "predicted") -> np.ndarray:
    """Stored ``(N, H, W)`` float32 maps of ``checkpoint_id`` for ``sample_pks`` (request order).

    ``params=None`` means the method's defaults (the same hash :func:`explain_checkpoint` uses).
    Missing maps raise :class:`WorkspaceError` naming the command that computes them.
    """
    return read_maps(checkpoint_id, method, sample_pks, params, target).maps


@dataclass
class SampleMaps:
    """Maps for the dashboard: cached or freshly computed, and how long it took."""

    maps: np.ndarray
    targets: np.ndarray
    seconds: float  # wall time of this request
    compute_seconds: float  # compute time of the maps (when they were made)
    device: str
    from_cache: bool


def explain_samples_info(checkpoint_id: int, sample_pks: Sequence[int], method: str, *,
                         model: nn.Module | None = None, target: str = "predicted",
                         device: str | None = None, **params: Any) -> SampleMaps:
    """Stored maps of ``sample_pks``, computing and storing the missing ones first."""
    tic = time.perf_counter()
    phash_missing = True
    try:
        stored = read_maps(checkpoint_id, method, sample_pks, params, target)
        phash_missing = False
    except WorkspaceError:
        pass
    if phash_missing:
        explain_checkpoint(checkpoint_id, method, sample_pks=list(sample_pks), split=None, params=params,
                           target=target, device=device, model=model)
        stored = read_maps(checkpoint_id, method, sample_pks, params, target)
    return SampleMaps(stored.maps, stored.targets, time.perf_counter() - tic, float(stored.seconds.sum()),
                      stored.device[0] if stored.device else "", not phash_missing)


def explain_samples(checkpoint_id: int, sample_pks: Sequence[int], method: str, **params: Any) -> np.ndarray:
    """``(N, H, W)`` maps of ``sample_pks``: served from the store, or computed, stored and returned."""
    return explain_samples_info(checkpoint_id, sample_pks, method, **params).maps
