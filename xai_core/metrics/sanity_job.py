"""``sanity``: the sanity checks of Adebayo et al. (2018) for a checkpoint's attribution methods.

For each method, the map of the trained model is compared with the map of a randomised model on
the same images and the same explained class (the trained model's predicted class, or the label
with ``target="true"``), by every registered sanity similarity
(:mod:`xai_core.metrics.sanity_similarity`):

* ``cascading`` / ``independent``: model-parameter randomisation, one randomised model per step of
  :func:`xai_core.metrics.sanity_randomise.steps` (seeded re-initialisation);
* ``data``: the data-randomisation test, against a model of the same recipe (architecture, width,
  pre-training, degree, training configuration) trained on the dataset's train/val splits with
  permuted labels (:func:`models.grid.shuffled_labels`; no new dataset files). It is trained on
  first use and kept as the checkpoint ``<name>-shuffled<seed>``, or given (``shuffled=``).

Chance maps (``baseline_sobel``, ``baseline_random``) can be checked too: they never look at the
model, so they are the check's negative control and must come out as failing.

Storage, no schema change: one :class:`db.DriftMetric` row per (sample, similarity), A = the
checkpoint, B = the checkpoint itself (model randomisation) or the shuffled-label checkpoint,
``method_a = method_b``, ``params_hash_a`` the method parameters' hash as the explain job computes
it, ``params_hash_b`` the randomisation ``sanity:<mode>:<step>:s<seed>``, ``selection = "sanity"``.
Drift readers select rows by registered drift metric names, so the ``sanity_*`` rows stay out of
them. Resumable per (step, method): what is stored is not computed again, and a run whose values
are all stored loads no model. A bad name (mode, layer, method) raises before anything is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from sqlalchemy import select
from torch import nn

import models
from db import Dataset, DriftMetric, session_scope
from models.finetune import TrainConfig
from models.prediction import predict
from models.pretraining import list_pretraining_sources
from xai_core.attribution.capabilities import check_supported
from xai_core.attribution.engine import explain_with_info
from xai_core.attribution.jobs import TARGETS, dataset_mean, dataset_to_explain, select_samples
from xai_core.attribution.registry import get_method, params_hash
from xai_core.errors import ConfigError, InvalidValueError, UnsupportedError, WorkspaceError
from xai_core.metrics.chance_maps import CHANCE_MAPS
from xai_core.metrics.sanity_randomise import (
    DATA_STEP,
    SELECTION,
    Step,
    check_mode,
    fresh_model,
    randomisation_key,
    randomised,
    steps,
)
from xai_core.metrics.sanity_similarity import list_sanity_similarities, similarities
from xai_core.metrics.stored import insert_rows, long_rows, missing, stored_metrics
from xai_core.progress import Progress, silent

@dataclass
class SanityResult:
    """What ``sanity`` did for one (method, step)."""

    checkpoint_id: int
    reference_id: int  # checkpoint B: the checkpoint itself, or its shuffled-label copy
    method: str
    mode: str
    step: str
    computed: int  # samples with new values
    skipped: int  # samples whose values were all stored


@dataclass
class _Method:
    """One method to check: its resolved parameters and the hash its rows carry."""

    name: str
    params: dict[str, Any]
    phash: str


def check_methods(names: Sequence[str], arch: str) -> list[str]:
    """``names`` without repeats when each is a registered method supported on ``arch`` or a chance
    map; otherwise a one-line :class:`~xai_core.errors.XAuditError`."""
    if not names:
        raise ConfigError("name at least one method (--methods saliency,...), or a chance map "
                          f"({', '.join(CHANCE_MAPS)})")
    for name in names:
        if name not in CHANCE_MAPS:
            check_supported(name, arch)  # unknown names raise UnknownNameError listing the methods
    return list(dict.fromkeys(names))


def _methods(names: Sequence[str], arch: str, params: dict[str, dict[str, Any]] | None, dataset: str,
             target: str) -> list[_Method]:
    """Validate ``names`` (:func:`check_methods`) and resolve their parameters as the explain job does."""
    out = []
    for name in check_methods(names, arch):
        if name in CHANCE_MAPS:
            out.append(_Method(name, {}, CHANCE_MAPS[name].params_hash))
            continue
        spec = get_method(name)
        resolved = spec.resolve(dict((params or {}).get(name) or {}))
        if resolved.get("baseline") == "mean" and resolved.get("baseline_value") is None:
            resolved["baseline_value"] = dataset_mean(dataset)
        out.append(_Method(name, resolved, params_hash(name, {**resolved, "target": target})))
    return out


def _maps(model: nn.Module, method: _Method, images: np.ndarray, targets: np.ndarray, pks: np.ndarray,
          meta: dict[str, Any], batch_size: int | None, device: str | None) -> np.ndarray:
    """``(N, H, W)`` maps of ``method`` on ``model`` for ``images`` explaining ``targets``."""
    if method.name in CHANCE_MAPS:
        blank = np.zeros((len(images), *images.shape[-2:]), dtype=bool)  # chance maps read only the shape
        return CHANCE_MAPS[method.name].make(pks, blank, images)
    return explain_with_info(model, images, method.name, targets, arch=meta["arch"], input_size=meta.get("input_size"),
                             batch_size=batch_size, device=device, **method.params).maps


def _config(row: Any) -> TrainConfig:
    """The training configuration recorded with a checkpoint (unknown keys dropped, no epoch saves)."""
    recorded = dict((row.metrics or {}).get("config") or {})
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{**{k: v for k, v in recorded.items() if k in known}, "save_every": None})


def shuffled_name(name: str, seed: int) -> str:
    """Name of the shuffled-label copy of checkpoint ``name``."""
    return f"{name}-shuffled{int(seed)}"


def shuffled_checkpoint(checkpoint: int | str, seed: int = 0, progress: Progress = silent) -> Any:
    """The checkpoint row of ``checkpoint``'s shuffled-label copy (:func:`shuffled_name`), trained
    now with the same recipe when it does not exist yet (the data-randomisation test's model)."""
    row = models.resolve_checkpoint(checkpoint)
    name = shuffled_name(row.name, seed)
    existing = models.resolve_checkpoint(name, missing_ok=True)
    if existing is not None:
        return existing
    if row.pretrain not in list_pretraining_sources() or row.degree is None or row.dataset_id is None:
        raise UnsupportedError(
            f"checkpoint {row.name!r} was not trained here (pre-training {row.pretrain!r}, degree {row.degree!r}), so "
            "its recipe cannot be repeated on shuffled labels; train one yourself and pass --shuffled CHECKPOINT")
    with session_scope() as session:
        dataset = session.scalar(select(Dataset.name).where(Dataset.id == row.dataset_id))
    if dataset is None:
        raise WorkspaceError(f"the dataset of checkpoint {row.name!r} is gone; pass --shuffled CHECKPOINT")
    config = _config(row)
    from models.grid import train  # lazy: the training stack loads only when a copy is trained

    infos = train(dataset, arch=row.arch, pretrain=row.pretrain, degree=row.degree, width=row.width,
                  seed=config.seed, name=name, in_chans=row.in_chans, config=config, shuffle_labels=seed,
                  progress=progress)
    return models.resolve_checkpoint(infos[-1].id)


def _plan(a: int, b: int, methods: list[_Method], step_list: list[Step], mode: str, seed: int,
          pks: np.ndarray, names: list[str]) -> dict[tuple[str, str], list[int]]:
    """``{(step, method): indexes of the samples lacking a value}`` (only entries with work)."""
    todo: dict[tuple[str, str], list[int]] = {}
    with session_scope() as session:
        for step in step_list:
            for method in methods:
                stored = stored_metrics(session, DriftMetric, checkpoint_a_id=a, checkpoint_b_id=b,
                                        method_a=method.name, params_hash_a=method.phash, method_b=method.name,
                                        params_hash_b=randomisation_key(mode, step.name, seed))
                lacking = set(missing(pks.tolist(), stored, names))
                idx = [i for i, pk in enumerate(pks.tolist()) if pk in lacking]
                if idx:
                    todo[(step.name, method.name)] = idx
    return todo


def check_request(checkpoint: int | str, mode: str, layers: Sequence[str] | None = None,
                  shuffled: int | str | None = None, methods: Sequence[str] | None = None) -> tuple[Any, list[Step]]:
    """The checkpoint row and the steps of a sanity run; a bad mode, layer, method (when given) or
    option combination raises a one-line :class:`~xai_core.errors.XAuditError` (nothing is
    computed or stored)."""
    check_mode(mode)
    row = models.resolve_checkpoint(checkpoint)
    if methods is not None:
        check_methods(methods, row.arch)
    if mode == "data":
        if layers:
            raise ConfigError("--layers applies to the cascading and independent modes; the data test has one step")
        return row, [Step(DATA_STEP, ())]
    if shuffled is not None:
        raise ConfigError("--shuffled applies to --mode data")
    return row, steps(row.arch, mode, layers)


def pending(checkpoint: int | str, methods: Sequence[str], mode: str = "cascading",
            layers: Sequence[str] | None = None, *, split: str = "test", limit: int | None = 16, seed: int = 0,
            params: dict[str, dict[str, Any]] | None = None, target: str = "predicted") -> int:
    """How many (step, method) pairs of a model-randomisation run (``cascading`` / ``independent``,
    the arguments of :func:`sanity`) lack a stored value; 0: the run would compute nothing. Reads the
    database and the split's sample keys; loads no model."""
    row = models.resolve_checkpoint(checkpoint)
    step_list = steps(row.arch, mode, layers)  # the data mode raises: it has no model steps
    dataset = dataset_to_explain(None, int(row.id), None)
    checked = _methods(methods, row.arch, params, dataset, target)
    pks = np.asarray(select_samples(dataset, split, None, limit).sample_pks, dtype=np.int64)
    return len(_plan(int(row.id), int(row.id), checked, step_list, mode, seed, pks, list_sanity_similarities()))


def sanity(
    checkpoint: int | str,
    methods: Sequence[str],
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    *,
    split: str = "test",
    limit: int | None = 16,
    seed: int = 0,
    params: dict[str, dict[str, Any]] | None = None,
    target: str = "predicted",
    shuffled: int | str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: Progress = silent,
) -> list[SanityResult]:
    """Run one sanity check (``mode``: cascading | independent | data) of ``methods`` on the first
    ``limit`` samples of ``split`` of the checkpoint's dataset; returns one result per (step,
    method). ``layers`` restricts the steps (model modes only; see
    :func:`~xai_core.metrics.sanity_randomise.steps`), ``seed`` seeds the re-initialisation (model
    modes) or the label permutation (data), ``params`` holds each method's parameters
    (``{method: {name: value}}``, defaults otherwise), ``shuffled`` names an existing shuffled-label
    checkpoint for the data test instead of training one."""
    if target not in TARGETS:
        raise InvalidValueError(f"target must be one of {', '.join(TARGETS)} (got {target!r})")
    if limit is not None and limit < 1:
        raise InvalidValueError(f"--limit must be >= 1 (got {limit})")
    row, step_list = check_request(checkpoint, mode, layers, shuffled)
    dataset = dataset_to_explain(None, int(row.id), None)
    checked = _methods(methods, row.arch, params, dataset, target)
    names = list_sanity_similarities()
    batch = select_samples(dataset, split, None, limit)
    pks = np.asarray(batch.sample_pks, dtype=np.int64)

    reference = row
    if mode == "data":
        reference = models.resolve_checkpoint(shuffled) if shuffled is not None else shuffled_checkpoint(
            row.id, seed, progress)
        if reference.arch != row.arch or int(reference.input_size) != int(row.input_size):
            raise ConfigError(f"shuffled-label checkpoint {reference.name!r} is a {reference.arch} at "
                              f"{reference.input_size} px; the data test needs a {row.arch} at {row.input_size} px")
    a, b = int(row.id), int(reference.id)
    todo = _plan(a, b, checked, step_list, mode, seed, pks, names)
    total = len(step_list) * len(checked)
    results = [SanityResult(a, b, m.name, mode, s.name, 0, len(pks)) for s in step_list for m in checked
               if (s.name, m.name) not in todo]
    progress(len(results), total, f"sanity {mode}: {len(results)} stored")
    if not todo:
        return results

    model, meta = models.load(a)
    images = np.asarray(batch.images, dtype=np.float32)
    targets = batch.labels if target == "true" else predict(model, images, device=device)[0]
    need = sorted({i for idx in todo.values() for i in idx})
    originals = {m.name: _maps(model, m, images[need], targets[need], pks[need], meta, batch_size, device)
                 for m in checked if any(k[1] == m.name for k in todo)}
    position = {i: j for j, i in enumerate(need)}
    fresh = None
    if mode != "data":
        fresh = fresh_model(row.arch, int(meta["num_classes"]), int(meta.get("in_chans", 1)),
                            float(meta.get("width", 1.0)), seed)
    done = len(results)
    for step in step_list:
        work = [m for m in checked if (step.name, m.name) in todo]
        if not work:
            continue
        variant = models.load(b)[0] if mode == "data" else randomised(model, row.arch, step.layers, fresh)
        for method in work:
            idx = np.asarray(todo[(step.name, method.name)], dtype=np.int64)
            maps_b = _maps(variant, method, images[idx], targets[idx], pks[idx], meta, batch_size, device)
            maps_a = originals[method.name][[position[int(i)] for i in idx]]
            values = similarities(maps_a, maps_b, names)
            columns = {"checkpoint_a_id": a, "checkpoint_b_id": b, "method_a": method.name,
                       "params_hash_a": method.phash, "method_b": method.name,
                       "params_hash_b": randomisation_key(mode, step.name, seed), "selection": SELECTION}
            with session_scope() as session:
                stored = stored_metrics(session, DriftMetric, **{k: v for k, v in columns.items() if k != "selection"})
            insert_rows(DriftMetric, long_rows(columns, pks[idx].tolist(), values, stored))
            results.append(SanityResult(a, b, method.name, mode, step.name, len(idx), len(pks) - len(idx)))
            done += 1
            progress(done, total, f"sanity {mode} {step.name}: {method.name}")
    return results
