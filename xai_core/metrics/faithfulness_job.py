"""``faithfulness``: the registered faithfulness metrics of stored attribution maps, with the model.

Like :func:`~xai_core.metrics.evaluate_job.evaluate` (same map groups, sample selection, chance
maps and resumability per metric) but every metric runs the checkpoint: it is loaded **once** per
checkpoint and each chunk of maps is scored on the device in big batches of perturbed images
(:mod:`xai_core.metrics.faithfulness`). Values are stored long-form as ``GroundTruthMetric`` rows
under the metric's key (:meth:`~xai_core.metrics.registry.FaithfulnessSpec.key`: the name for the
default parameters), one DB transaction per chunk; the curves behind a value (deletion/insertion
curves, ROAD's score change per percentile) are written atomically next to the maps, under
``$XAUDIT_HOME/faithfulness/``. Every parameter is checked against the image size before anything
is computed or stored.

Each map is scored for the class it explains (stored with the map); the chance maps for the
checkpoint's predicted class.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

import models
from db import Dataset, GroundTruthMetric, Sample, session_scope
from xai_core.attribution.jobs import dataset_mean
from xai_core.attribution.store import read_maps_by_hash
from xai_core.config import workspace_dir
from xai_core.errors import ConfigError
from xai_core.metrics import faithfulness as _faithfulness  # noqa: F401  (registers the metrics)
from xai_core.metrics.chance_maps import CHANCE_MAPS
from xai_core.metrics.evaluate_job import GT_SELECTIONS, EvaluateResult, metric_plans, plan_maps
from xai_core.metrics.faithfulness import FaithBatch, check_params, model_forward
from xai_core.metrics.ground_truth import constant_maps
from xai_core.metrics.registry import FaithfulnessSpec, get_faithfulness_metric, list_faithfulness_metrics
from xai_core.metrics.stored import insert_rows, long_rows, masks_and_images, needed
from xai_core.metrics.statistics import summarise
from xai_core.progress import Progress, silent

CHUNK = 64  # maps per chunk: one DB transaction; the perturbed images of a chunk run in big batches


def resolve_metrics(metrics: Sequence[str] | None = None,
                    params: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[FaithfulnessSpec, dict[str, Any], str]]:
    """``(spec, resolved parameters, stored key)`` per requested metric (default: all registered);
    ``params`` maps a metric name to its parameter values. Unknown names or values raise."""
    names = [get_faithfulness_metric(k).name for k in metrics] if metrics else list_faithfulness_metrics()
    extra = [k for k in (params or {}) if k not in names]
    if extra:
        raise ConfigError(f"parameters given for {', '.join(extra)}, which is not computed; add it to --metrics")
    out = []
    for name in names:
        spec = get_faithfulness_metric(name)
        resolved = spec.resolve((params or {}).get(name))
        if "percentiles" in resolved:
            check_params(name, {"percentiles": resolved["percentiles"]}, (1, 1))
        out.append((spec, resolved, spec.key(resolved)))
    return out


def curve_dir(checkpoint_id: int, method: str, params_hash: str, key: str, create: bool = True) -> Path:
    """Where the curves of (checkpoint, method, params hash, metric key) are written."""
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    return workspace_dir("faithfulness", str(checkpoint_id), f"{method}-{params_hash[:16]}", tag, create=create)


def _write_curves(folder: Path, pks: Sequence[int], curves: np.ndarray, x: np.ndarray, key: str) -> Path:
    """One ``.npz`` of a chunk's curves, written atomically (temp file then rename)."""
    path = folder / f"chunk-{int(pks[0])}-{len(pks)}.npz"
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, sample_pks=np.asarray(pks, np.int64), curves=curves.astype(np.float32), x=x, key=key)
    os.replace(tmp, path)
    return path


def read_curves(checkpoint_id: int, method: str, params_hash: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sample pks, curves (N, L), x (L,))`` stored for a metric key (last write wins per sample)."""
    folder = curve_dir(checkpoint_id, method, params_hash, key, create=False)
    files = sorted(folder.glob("chunk-*.npz"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not files:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0)
    parts = [np.load(f) for f in files]
    pks = np.concatenate([p["sample_pks"] for p in parts])
    curves = np.concatenate([p["curves"] for p in parts])
    _, last = np.unique(pks[::-1], return_index=True)
    keep = len(pks) - 1 - last
    return pks[keep], curves[keep], parts[-1]["x"]


def _dataset_of(sample_pk: int) -> str:
    with session_scope() as session:
        return str(session.scalar(select(Dataset.name).join(Sample, Sample.dataset_id == Dataset.id)
                                  .where(Sample.id == int(sample_pk))))


def faithfulness(
    checkpoints: Sequence[int | str] | None = None,
    methods: Sequence[str] | None = None,
    selection: str = "correct",
    baselines: bool = True,
    progress: Progress = silent,
    *,
    metrics: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    chunk_size: int = CHUNK,
    limit: int | None = None,
    max_samples: int | None = None,
    device: str | None = None,
    dataset: Any = None,
) -> list[EvaluateResult]:
    """Faithfulness metrics of every stored map of ``checkpoints`` (default: all with maps).

    ``metrics``: registered faithfulness metric names (default: all); ``params``: ``{metric:
    {parameter: value}}``; ``limit``: at most this many maps per (checkpoint, method) in this run;
    ``max_samples``: only the first that many selected samples (by id) of each (checkpoint, method),
    a fixed subset (a rerun computes nothing new, unlike ``limit``).
    Samples, chance maps and resumability as :func:`~xai_core.metrics.evaluate_job.evaluate`.
    Returns one :class:`~xai_core.metrics.evaluate_job.EvaluateResult` per group.
    """
    if selection not in GT_SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(GT_SELECTIONS)} (got {selection!r})")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1 (got {limit})")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"max_samples must be >= 1 (got {max_samples})")
    chosen = resolve_metrics(metrics, params)
    keys = [key for _, _, key in chosen]
    plans, notes = metric_plans(checkpoints, methods, selection, baselines, keys, max_samples=max_samples)
    for plan in plans:
        plan.todo = plan.todo[:limit] if limit else plan.todo
    checked: set[tuple[int, int]] = set()
    for plan in plans:  # every parameter against the image size first: nothing is stored on bad input
        if plan.todo:
            hw = masks_and_images(plan.todo[:1], False, dataset)[0].shape[1:]
            if hw not in checked:
                for spec, resolved, _ in chosen:
                    check_params(spec.name, resolved, hw)
                checked.add(hw)
    total = sum(len(p.todo) for p in plans)
    done_n = 0
    progress(0, total, "faithfulness")
    results = []
    forwards: dict[int, Any] = {}
    means: dict[str, float] = {}
    need_mean = any(resolved.get("removal") == "mean" for _, resolved, _ in chosen)
    for plan in plans:
        written = 0
        if plan.todo and plan.checkpoint_id not in forwards:  # the checkpoint is loaded once
            forwards.clear()
            forwards[plan.checkpoint_id] = model_forward(models.load(plan.checkpoint_id)[0], device)
        for start in range(0, len(plan.todo), chunk_size):
            pks = plan.todo[start:start + chunk_size]
            masks, images = masks_and_images(pks, True, dataset)
            mean_value = None
            if need_mean:
                name = _dataset_of(pks[0])
                mean_value = means.setdefault(name, dataset_mean(name))
            if plan.method in CHANCE_MAPS and CHANCE_MAPS[plan.method].params_hash == plan.params_hash:
                maps = plan_maps(plan, pks, masks, images)
                targets = np.asarray([plan.preds[int(p)][0] for p in pks], np.int64)
            else:
                stored = read_maps_by_hash(plan.checkpoint_id, plan.method, plan.params_hash, pks)
                maps, targets = stored.maps, stored.targets
            batch = FaithBatch(forwards[plan.checkpoint_id], images, maps, targets, np.asarray(pks, np.int64),
                               mean_value)
            values: dict[str, np.ndarray] = {}
            for spec, resolved, key in chosen:
                if key not in needed(pks, plan.stored, [key]):
                    continue
                out = spec.fn(batch, resolved)
                values[key] = np.asarray(out.values, np.float64)
                if out.curves is not None:
                    _write_curves(curve_dir(plan.checkpoint_id, plan.method, plan.params_hash, key), pks,
                                  out.curves, out.curve_x, key)
            fixed = {"checkpoint_id": plan.checkpoint_id, "method": plan.method, "params_hash": plan.params_hash,
                     "selection": selection}
            per_sample = {"correct": [plan.preds[int(p)][1] for p in pks], "constant_map": constant_maps(maps).tolist()}
            insert_rows(GroundTruthMetric, long_rows(fixed, pks, values, plan.stored, per_sample))
            written += len(pks)
            done_n += len(pks)
            progress(done_n, total, f"checkpoint {plan.checkpoint_id} {plan.method}")
        results.append(EvaluateResult(plan.checkpoint_id, plan.method, plan.params_hash, selection, written,
                                      plan.skipped))
    return results + notes


def faithfulness_table(selection: str = "correct", metrics: Sequence[str] | None = None,
                       n_boot: int = 1000) -> pd.DataFrame:
    """Per (method, metric key): ``n, mean, median, ci_low, ci_high`` (bootstrap 95% CI) of the
    stored faithfulness values, plus the metric's ``label`` and ``better`` direction; ``metrics``
    are stored keys (default: every registered metric with its default parameters)."""
    from xai_core.metrics.queries import gt_frame

    keys = list(metrics) if metrics else list_faithfulness_metrics()
    frame = gt_frame(selection, metrics=keys)
    frame = frame[frame[keys].notna().any(axis=1)]
    table = summarise(frame, ["method"], keys, n_boot=n_boot)
    table = table[table["n"] > 0].reset_index(drop=True)
    table["label"] = [get_faithfulness_metric(k).label for k in table["metric"]]
    table["better"] = [get_faithfulness_metric(k).better for k in table["metric"]]
    return table


def mean_curves(key: str = "deletion_auc", selection: str = "correct") -> pd.DataFrame:
    """The mean stored curve of metric ``key`` per method: columns ``method, x, score``
    (over the maps whose value is stored for ``selection``)."""
    from xai_core.metrics.queries import gt_frame

    frame = gt_frame(selection, metrics=[key]).dropna(subset=[key])
    rows = []
    for (ck, method, phash), group in frame.groupby(["checkpoint_id", "method", "params_hash"]):
        pks, curves, x = read_curves(int(ck), str(method), str(phash), key)
        keep = np.isin(pks, group["sample_pk"].to_numpy())
        if keep.any():
            rows.append(pd.DataFrame({"method": method, "x": np.tile(x, int(keep.sum())),
                                      "score": curves[keep].reshape(-1)}))
    if not rows:
        return pd.DataFrame(columns=["method", "x", "score"])
    return pd.concat(rows).groupby(["method", "x"], as_index=False)["score"].mean()


def faithfulness_wide(selection: str = "correct", n_boot: int = 1000) -> pd.DataFrame:
    """The Benchmark page's and the report's table: one row per method, one column per stored
    faithfulness metric (default parameters) headed ``name (direction)``, cells ``mean [95% CI]``;
    empty when nothing is stored."""
    from xai_core.metrics.statistics import ci_text

    table = faithfulness_table(selection, n_boot=n_boot)
    if table.empty:
        return pd.DataFrame()
    table = table.assign(cell=[ci_text(m, lo, hi) for m, lo, hi in zip(table["mean"], table["ci_low"],
                                                                       table["ci_high"], strict=True)],
                         column=[f"{k} ({get_faithfulness_metric(k).direction})" for k in table["metric"]])
    order = [c for c in dict.fromkeys(table["column"])]
    return table.pivot_table(index="method", columns="column", values="cell", aggfunc="first")[order]
