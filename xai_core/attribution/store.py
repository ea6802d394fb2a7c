"""Attribution store: maps kept per (checkpoint sha256, method, parameter hash), indexed in the DB.

Layout under the workspace (``$XAUDIT_HOME``)::

    attributions/<sha256[:16]>/<method>-<params_hash[:16]>/chunk-0000.npy   (K, H, W) float16

Each chunk is written atomically (temporary file, then a no-clobber hard link to its final name)
and its ``AttributionMap`` rows (sample, chunk path relative to the workspace, row in the chunk,
explained class, seconds per map, device) are added in one DB transaction. A job skips every
sample already indexed, so it can be interrupted and resumed; a request for stored maps never runs
the model.

Chunks are float16 (about 3 significant digits, relative error <= 2^-11): before the cast a
chunk is multiplied by a power of two that puts its largest magnitude in [2^14, 2^15), so tiny
gradients do not underflow and large relevances do not overflow; the exponent is kept in one
extra last row of the chunk (:func:`_encode`), and reads divide it out.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from torch import nn

import models
from db import AttributionMap, Checkpoint, Dataset, Sample, session_scope
from xai_core.attribution.capabilities import check_supported
from xai_core.attribution.engine import explain_with_info
from xai_core.attribution.registry import get_method, params_hash, split_target
from xai_core.config import home, workspace_dir
from xai_core.data import load_dataset
from xai_core.errors import InvalidValueError, WorkspaceError, XAuditError
from xai_core.progress import Progress, silent

CHUNK = 64  # maps per chunk file
TARGETS = ("predicted", "true")


# ------------------------------------------------------------------------------------------
# chunk encoding: float16 with a power-of-two scale kept in an extra row
# ------------------------------------------------------------------------------------------
def _encode(maps: np.ndarray) -> np.ndarray:
    """(K, H, W) float32 -> (K + 1, H, W) float16; the last row's first value is log2(scale)."""
    peak = float(np.max(np.abs(maps))) if maps.size else 0.0
    exp = 0 if peak == 0.0 or not math.isfinite(peak) else int(math.floor(math.log2(peak)))
    scale_exp = 14 - exp  # peak lands in [2^14, 2^15): no overflow, smallest normal far below
    scale_exp = max(min(scale_exp, 60), -60)
    out = np.zeros((maps.shape[0] + 1, *maps.shape[1:]), dtype=np.float16)
    out[:-1] = (maps.astype(np.float64) * 2.0**scale_exp).astype(np.float16)
    out[-1].flat[0] = scale_exp
    return out


def _scale(chunk: np.ndarray) -> float:
    return 2.0 ** (-float(chunk[-1].flat[0]))


# ------------------------------------------------------------------------------------------
# paths and writes
# ------------------------------------------------------------------------------------------
def store_dir(sha256: str, method: str, phash: str) -> Path:
    """``attributions/<sha[:16]>/<method>-<hash[:16]>`` in the workspace (created)."""
    return workspace_dir("attributions", sha256[:16], f"{method}-{phash[:16]}")


def write_chunk(folder: Path, maps: np.ndarray) -> Path:
    """Write ``maps`` as the next free ``chunk-XXXX.npy`` in ``folder`` atomically; return its path.

    The file is complete before it gets its name (``os.link`` of a finished temporary file, which
    fails instead of overwriting when a concurrent job took the same index).
    """
    data = _encode(maps)
    fd, tmp = tempfile.mkstemp(prefix=".chunk-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        index = len(list(folder.glob("chunk-*.npy")))
        while True:
            final = folder / f"chunk-{index:04d}.npy"
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                index += 1
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _rel(path: Path) -> str:
    return str(path.resolve().relative_to(home()))


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


def _dataset_name(dataset: str | None, checkpoint_id: int, sample_pks: Sequence[int] | None) -> str:
    if dataset:
        return dataset
    with session_scope() as session:
        if sample_pks is not None and len(sample_pks) > 0:
            row = session.get(Sample, int(sample_pks[0]))
            if row is None:
                raise WorkspaceError(f"sample {sample_pks[0]} is not in the database; see `xaudit data list`")
            ds = session.get(Dataset, row.dataset_id)
            assert ds is not None
            return ds.name
        ck = session.get(Checkpoint, checkpoint_id)
        if ck is None or ck.dataset_id is None:
            raise WorkspaceError(
                f"checkpoint {checkpoint_id} has no dataset on record; pass --dataset NAME"
            )
        ds = session.get(Dataset, ck.dataset_id)
        assert ds is not None
        return ds.name


@lru_cache(maxsize=4)
def _cached_dataset(home_dir: str, name: str, split: str | None, stamp: tuple) -> Any:
    return load_dataset(name, split)


def _dataset(name: str, split: str | None) -> Any:
    """``load_dataset(name, split)``, cached per workspace and dataset version (row id, size)."""
    with session_scope() as session:
        row = session.scalar(select(Dataset).where(Dataset.name == name))
        stamp = (row.id, row.n_samples, str(row.created_at)) if row is not None else (None,)
    return _cached_dataset(str(home()), name, split, stamp)


def select_samples(dataset: str, split: str | None = None, sample_pks: Sequence[int] | None = None,
                   limit: int | None = None) -> SampleBatch:
    """The images to explain: the ``split`` of ``dataset`` or the given ``sample_pks`` (in order)."""
    ds = _dataset(dataset, None if sample_pks is not None else split)
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
        images = np.asarray(_dataset(dataset, "train").images)
    except XAuditError:  # no train split
        images = np.empty((0,))
    if images.size == 0:
        images = np.asarray(_dataset(dataset, None).images)
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


def stored_pks(checkpoint_id: int, method: str, phash: str) -> set[int]:
    """Sample keys whose map is already indexed for (checkpoint, method, params hash)."""
    with session_scope() as session:
        return set(session.scalars(select(AttributionMap.sample_pk).where(
            AttributionMap.checkpoint_id == checkpoint_id, AttributionMap.method == method,
            AttributionMap.params_hash == phash)).all())


def _load_model(checkpoint_ref: Any, model: nn.Module | None = None) -> tuple[nn.Module, dict[str, Any]]:
    loaded, meta = _cached_load(str(checkpoint_ref), str(home()))
    return (model if model is not None else loaded), meta


@lru_cache(maxsize=4)
def _cached_load(ref: str, _home: str) -> tuple[nn.Module, dict[str, Any]]:
    """``models.load(ref)`` kept for the process (the dashboard's on-demand requests)."""
    return models.load(ref)


def _checkpoint_meta(checkpoint_ref: Any, model: nn.Module | None) -> tuple[nn.Module, dict[str, Any]]:
    """The model (the caller's when given, else loaded and kept) and its checkpoint metadata."""
    if model is not None:  # the caller holds the loaded weights: read the metadata from the DB row only
        row = models.resolve_checkpoint(checkpoint_ref)
        if row is None:
            raise WorkspaceError(
                f"checkpoint {checkpoint_ref} is not registered; import it first with `xaudit models import FILE`"
            )
        return model, {"checkpoint_id": row.id, "sha256": row.sha256, "arch": row.arch,
                       "input_size": row.input_size}
    model_, meta = _load_model(checkpoint_ref)
    if meta.get("checkpoint_id") is None:
        raise WorkspaceError(
            f"checkpoint {checkpoint_ref} is not registered; import it first with `xaudit models import FILE`"
        )
    # the cache is keyed by the reference: reload when the registered file changed under the same name
    with session_scope() as session:
        row = session.get(Checkpoint, int(meta["checkpoint_id"]))
        stale = row is None or row.sha256 != meta["sha256"]
    if stale:
        _cached_load.cache_clear()
        model_, meta = _load_model(checkpoint_ref)
    return model_, meta


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
    name = _dataset_name(dataset, ckpt_id, sample_pks)
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
        _index_chunk(ckpt_id, method, phash, hashed, batch.sample_pks[idx], result, path)
        seconds += result.seconds
        dev = result.device
        progress(skipped + start + len(idx), total, f"{method} on {dev}")
    return ExplainJobResult(ckpt_id, method, phash, hashed, len(todo), skipped, seconds, dev)


def _index_chunk(ckpt_id: int, method: str, phash: str, hashed: dict[str, Any], pks: np.ndarray,
                 result: Any, path: Path) -> None:
    """One transaction: one ``AttributionMap`` row per map of the chunk (already-indexed skipped)."""
    rel = _rel(path)
    per_map = result.seconds / max(1, len(pks))
    with session_scope() as session:
        existing = set(session.scalars(select(AttributionMap.sample_pk).where(
            AttributionMap.checkpoint_id == ckpt_id, AttributionMap.method == method,
            AttributionMap.params_hash == phash, AttributionMap.sample_pk.in_([int(p) for p in pks]))).all())
        session.add_all(
            AttributionMap(checkpoint_id=ckpt_id, method=method, params_hash=phash, params=hashed,
                           sample_pk=int(pk), target=int(t), store_path=rel, store_index=i,
                           seconds=float(per_map), device=result.device)
            for i, (pk, t) in enumerate(zip(pks.tolist(), result.targets.tolist(), strict=True))
            if int(pk) not in existing
        )


# ------------------------------------------------------------------------------------------
# reads
# ------------------------------------------------------------------------------------------
@dataclass
class StoredMaps:
    """Maps read from the store, with their index rows' metadata (request order)."""

    maps: np.ndarray  # (N, H, W) float32
    targets: np.ndarray  # (N,) int64
    seconds: np.ndarray  # (N,) compute seconds per map when it was made
    device: list[str]
    params_hash: str


def _hash_for(method: str, params: dict[str, Any] | None, checkpoint_id: int, target: str) -> str:
    rest, p_target = split_target(params)
    target = p_target if target == "predicted" else target
    resolved = get_method(method).resolve(rest)
    if resolved.get("baseline") == "mean" and resolved.get("baseline_value") is None:
        resolved["baseline_value"] = dataset_mean(_dataset_name(None, checkpoint_id, None))
    return params_hash(method, {**resolved, "target": target})


def read_maps(checkpoint_id: int, method: str, sample_pks: Sequence[int], params: dict[str, Any] | None = None,
              target: str = "predicted") -> StoredMaps:
    """Stored maps for ``sample_pks`` (all must be stored, else :class:`WorkspaceError`)."""
    return read_maps_by_hash(checkpoint_id, method, _hash_for(method, params, int(checkpoint_id), target), sample_pks)


def read_maps_by_hash(checkpoint_id: int, method: str, phash: str, sample_pks: Sequence[int]) -> StoredMaps:
    """Stored maps of (checkpoint, method, parameter hash) for ``sample_pks``, in that order;
    ``phash`` may be a prefix of the hash (as drift rows across methods keep it)."""
    pks = [int(p) for p in sample_pks]
    same_hash = (AttributionMap.params_hash == phash if len(phash) >= 64
                 else AttributionMap.params_hash.startswith(phash))
    with session_scope() as session:
        rows = session.execute(select(
            AttributionMap.sample_pk, AttributionMap.store_path, AttributionMap.store_index,
            AttributionMap.target, AttributionMap.seconds, AttributionMap.device,
        ).where(AttributionMap.checkpoint_id == int(checkpoint_id), AttributionMap.method == method,
                same_hash, AttributionMap.sample_pk.in_(pks))).all()
    by_pk = {r[0]: r for r in rows}
    missing = [p for p in pks if p not in by_pk]
    if missing:
        raise WorkspaceError(
            f"{len(missing)} of {len(pks)} {method} maps of checkpoint {checkpoint_id} are not stored "
            f"(e.g. sample {missing[0]}); run `xaudit explain --checkpoint {checkpoint_id} --methods {method}`"
        )
    ordered = [by_pk[p] for p in pks]
    paths = sorted({r[1] for r in ordered})
    root = home()
    chunks: dict[str, np.ndarray] = {}
    for rel in paths:
        file = root / rel
        if not file.is_file():
            raise WorkspaceError(f"attribution chunk {rel} is missing from the workspace; re-run `xaudit explain`")
        chunks[rel] = np.load(file, mmap_mode="r", allow_pickle=False)
    if not pks:
        return StoredMaps(np.empty((0, 0, 0), np.float32), np.empty(0, np.int64), np.empty(0), [], phash)
    first = chunks[ordered[0][1]]
    out = np.empty((len(pks), *first.shape[1:]), dtype=np.float32)
    positions = np.arange(len(pks))
    path_of = np.asarray([r[1] for r in ordered], dtype=object)
    index_of = np.asarray([r[2] for r in ordered], dtype=np.int64)
    for rel in paths:  # one vectorised gather per chunk file
        sel = positions[path_of == rel]
        chunk = chunks[rel]
        out[sel] = np.asarray(chunk[index_of[sel]], dtype=np.float32) * _scale(chunk)
    return StoredMaps(out, np.asarray([r[3] for r in ordered], dtype=np.int64),
                      np.asarray([r[4] for r in ordered], dtype=np.float64), [r[5] for r in ordered], phash)


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
