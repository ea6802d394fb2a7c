"""``evaluate``: the registered ground-truth metrics of stored attribution maps against the lesion masks.

Reads maps from the attribution store, computes every registered ground-truth metric (or the
ones named) in vectorised chunks and bulk-inserts one ``GroundTruthMetric`` row per (map, metric)
in one DB transaction per chunk. Resumable per metric: values already stored for (checkpoint,
method, params hash, sample, metric) are skipped, so a newly registered metric is filled in for
maps evaluated before. Progress goes through a ``(done, total, message)`` callback.

Sample selection (stored with every row): ``correct`` (default; the MRI study evaluates correctly
classified test images), ``incorrect`` or ``all`` — read from the checkpoint's ``Prediction``
rows; samples without a lesion mask (or a mask covering the whole image) are left out because
the metrics are undefined there. The second-region metrics (``region_share``, registered with
``needs_region``) are computed only for samples of a suppressor/confounder dataset whose second
mask is not empty; no value is stored for the others (it would be undefined).

Chance-level maps (:mod:`xai_core.metrics.chance_maps`): with ``baselines`` the same samples of
every evaluated checkpoint are also scored with a random map (``baseline_random``) and a Sobel
edge map of the image (``baseline_sobel``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from db import AttributionMap, Checkpoint, GroundTruthMetric, session_scope
from models.checkpoints import resolve_checkpoint
from xai_core.errors import ConfigError, ShapeError, WorkspaceError
from xai_core.metrics.chance_maps import CHANCE_MAPS
from xai_core.metrics.ground_truth import constant_maps, ground_truth_metrics
from xai_core.metrics.registry import get_ground_truth_metric, list_ground_truth_metrics, list_region_metrics
from xai_core.metrics.stored import (
    CHUNK,
    any_regions,
    insert_rows,
    long_rows,
    map_groups,
    map_samples,
    masks_and_images,
    missing,
    needed,
    predictions,
    read_stored_maps,
    regions_of,
    stored_metrics,
)
from xai_core.progress import Progress, silent

GT_SELECTIONS = ("correct", "all", "incorrect")


@dataclass
class EvaluateResult:
    """What ``evaluate`` did for one (checkpoint, method, params hash)."""

    checkpoint_id: int
    method: str
    params_hash: str
    selection: str
    computed: int  # maps with at least one new metric value
    skipped: int  # maps whose every requested metric was stored already
    note: str = ""

    @property
    def rows(self) -> int:
        """Maps computed (alias of ``computed``)."""
        return self.computed


@dataclass
class MetricPlan:
    """One (checkpoint, method, params hash): the samples to compute and what is stored for them."""

    checkpoint_id: int
    method: str
    params_hash: str
    todo: list[int]
    skipped: int
    preds: dict[int, tuple[int, bool]]
    stored: dict[int, set[str]]


def select_samples(preds: dict[int, tuple[int, bool]], pks: Iterable[int], selection: str) -> list[int]:
    """The sorted ``pks`` with a prediction that ``selection`` keeps (correct / incorrect / all)."""
    keep = []
    for pk in sorted({int(p) for p in pks}):
        if pk not in preds:
            continue
        ok = preds[pk][1]
        if selection == "all" or (selection == "correct" and ok) or (selection == "incorrect" and not ok):
            keep.append(pk)
    return keep


def gt_rows(checkpoint_id: int, method: str, phash: str, selection: str, pks: Sequence[int],
            preds: dict[int, tuple[int, bool]], maps: np.ndarray, masks: np.ndarray, metrics: Sequence[str],
            stored: dict[int, set[str]] | None = None, n_directions: int = 8,
            regions: np.ndarray | None = None) -> list[dict[str, Any]]:
    """``GroundTruthMetric`` rows of ``maps`` against ``masks`` (and the second masks ``regions``):
    one per (sample, metric of ``metrics``) not in ``stored`` (``{sample pk: metrics}``) whose
    value is defined (a region metric is NaN for a sample without a region: no row)."""
    if maps.shape != masks.shape:
        raise ShapeError(
            f"{method} maps of checkpoint {checkpoint_id} are {maps.shape[1:]} but the lesion masks are {masks.shape[1:]}; "
            "explain at the dataset's image size"
        )
    stored = stored or {}
    values = ground_truth_metrics(maps, masks, n_directions=n_directions, metrics=needed(pks, stored, metrics),
                                  regions=regions)
    fixed = {"checkpoint_id": checkpoint_id, "method": method, "params_hash": phash, "selection": selection}
    per_sample = {"correct": [preds[int(p)][1] for p in pks], "constant_map": constant_maps(maps).tolist()}
    return [r for r in long_rows(fixed, pks, values, stored, per_sample) if np.isfinite(r["value"])]


def _todo(chosen: list[int], stored: dict[int, set[str]], metrics: Sequence[str], dataset: Any) -> list[int]:
    """The samples of ``chosen`` lacking a metric: the lesion metrics for every sample, the region
    metrics only for samples with a non-empty second mask."""
    regional = [k for k in metrics if k in set(list_region_metrics())]
    if not regional or not chosen:
        return missing(chosen, stored, metrics)
    base = [k for k in metrics if k not in regional]
    if not any_regions(chosen, dataset):  # the default benchmark: no second masks to load
        return missing(chosen, stored, base)
    regions = regions_of(chosen, dataset)
    has = np.zeros(len(chosen), bool) if regions is None else regions.reshape(len(chosen), -1).any(axis=1)
    with_region = missing([p for p, h in zip(chosen, has.tolist()) if h], stored, metrics)
    return sorted(with_region + missing([p for p, h in zip(chosen, has.tolist()) if not h], stored, base))


def metric_plans(checkpoints: Sequence[int | str] | None, methods: Sequence[str] | None, selection: str,
                 baselines: bool, metrics: Sequence[str], dataset: Any = None,
                 max_samples: int | None = None) -> tuple[list[MetricPlan], list[EvaluateResult]]:
    """What to compute per (checkpoint, method, params hash), and notes on checkpoints skipped.
    ``max_samples`` keeps only the first that many selected samples (by id) of each group: a fixed
    subset, so a second run with the same value finds everything stored."""
    plans: list[MetricPlan] = []
    notes: list[EvaluateResult] = []
    problems: list[str] = []
    with session_scope() as session:
        if checkpoints:
            ckpts = [resolve_checkpoint(ref) for ref in checkpoints]
        else:
            ids = session.scalars(select(AttributionMap.checkpoint_id).distinct()).all()
            ckpts = [session.get(Checkpoint, i) for i in sorted(ids)]
        if not ckpts:
            raise WorkspaceError("no attribution maps are stored yet; run `xaudit explain` first")
        for ck in ckpts:
            groups = map_groups(session, ck.id, methods)
            if not groups:  # only possible for an explicitly requested checkpoint
                problems.append(f"checkpoint {ck.name!r} has no stored attribution maps; "
                                f"run `xaudit explain --checkpoint {ck.id}` first")
                notes.append(EvaluateResult(ck.id, "-", "-", selection, 0, 0, "skipped: no stored maps"))
                continue
            preds = predictions(session, ck.id)
            if not preds:  # skip it and say so; an error only when nothing can be evaluated
                problems.append(f"checkpoint {ck.name!r} has no stored predictions, so correct/incorrect samples "
                                "are unknown; train it with `xaudit train` (which stores test predictions)")
                notes.append(EvaluateResult(ck.id, "-", "-", selection, 0, 0, "skipped: no stored predictions"))
                continue
            union: set[int] = set()
            chance = [(c.method, c.params_hash) for c in CHANCE_MAPS.values()] if baselines else []
            for method, phash in [*groups, *chance]:
                is_chance = (method, phash) in chance
                chosen = sorted(union) if is_chance else select_samples(preds, map_samples(session, ck.id, method, phash),
                                                                        selection)[:max_samples]
                union.update(chosen)
                stored = stored_metrics(session, GroundTruthMetric, checkpoint_id=ck.id, method=method, params_hash=phash)
                todo = _todo(chosen, stored, metrics, dataset)
                if chosen or not is_chance:
                    plans.append(MetricPlan(ck.id, method, phash, todo, len(chosen) - len(todo), preds, stored))
    if not plans and problems:
        raise WorkspaceError(problems[0])
    return plans, notes


def plan_maps(plan: MetricPlan, pks: list[int], masks: np.ndarray, images: np.ndarray | None) -> np.ndarray:
    """The maps of ``pks``: made on the fly for a chance-level method, else read from the store."""
    chance = CHANCE_MAPS.get(plan.method)
    if chance is not None and chance.params_hash == plan.params_hash:
        return chance.make(np.asarray(pks), masks, images)
    return read_stored_maps(plan.checkpoint_id, plan.method, plan.params_hash, pks)


def evaluate(
    checkpoints: Sequence[int | str] | None = None,
    methods: Sequence[str] | None = None,
    selection: str = "correct",
    baselines: bool = True,
    progress: Progress = silent,
    *,
    metrics: Sequence[str] | None = None,
    chunk_size: int = CHUNK,
    n_directions: int = 8,
    dataset: Any = None,
) -> list[EvaluateResult]:
    """Ground-truth metrics of every stored map of ``checkpoints`` (default: all with maps).

    ``metrics``: registered ground-truth metric names (default: all registered). For each
    (checkpoint, method, params hash): the selected samples that have a lesion mask and lack one
    of the metrics, in chunks of ``chunk_size``: read maps and masks, compute the missing metrics,
    insert ``GroundTruthMetric`` rows (one transaction per chunk). With ``baselines`` the union of
    those samples is also scored with the chance-level maps ``baseline_random`` and
    ``baseline_sobel``. Returns one :class:`EvaluateResult` per group.

    Masks (and images for the Sobel map) come from the samples' dataset
    (:func:`~xai_core.data.dataset.cached_dataset`), or from ``dataset`` when the caller already
    holds it loaded (anything with ``images``, ``masks`` and ``sample_pks`` arrays, e.g. a
    ``LoadedDataset``).
    """
    if selection not in GT_SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(GT_SELECTIONS)} (got {selection!r})")
    names = ([get_ground_truth_metric(k).name for k in metrics] if metrics
             else list_ground_truth_metrics() + list_region_metrics())
    regional = any(get_ground_truth_metric(k).needs_region for k in names)
    plans, notes = metric_plans(checkpoints, methods, selection, baselines, names, dataset)
    total = sum(len(p.todo) for p in plans)
    done_n = 0
    progress(0, total, "evaluate")
    results = []
    for plan in plans:
        written = 0
        chance = CHANCE_MAPS.get(plan.method)
        for start in range(0, len(plan.todo), chunk_size):
            pks = plan.todo[start : start + chunk_size]
            masks, images = masks_and_images(pks, chance is not None and chance.needs_images, dataset)
            regions = regions_of(pks, dataset) if regional else None
            area = masks.reshape(len(pks), -1).sum(axis=1)
            keep = (area > 0) & (area < masks[0].size)  # metrics are undefined without lesion / background
            done_n += len(pks) - int(keep.sum())
            if not keep.all():
                pks = [p for p, k in zip(pks, keep.tolist()) if k]
                masks = masks[keep]
                images = None if images is None else images[keep]
                regions = None if regions is None else regions[keep]
            if pks:
                insert_rows(GroundTruthMetric, gt_rows(plan.checkpoint_id, plan.method, plan.params_hash, selection,
                                                       pks, plan.preds, plan_maps(plan, pks, masks, images), masks, names,
                                                       plan.stored, n_directions, regions))
                written += len(pks)
                done_n += len(pks)
            progress(done_n, total, f"checkpoint {plan.checkpoint_id} {plan.method}")
        results.append(EvaluateResult(plan.checkpoint_id, plan.method, plan.params_hash, selection, written,
                                      plan.skipped))
    return results + notes
