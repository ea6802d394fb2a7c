"""Test fixtures: seed a workspace with metric-ready rows from arrays.

Inserts ``Checkpoint``, ``Prediction`` and ``AttributionMap`` rows for samples that already exist
(or ``Dataset``/``Sample`` rows when asked) and writes the maps with the attribution store's own
chunk writer, so ``evaluate``/``drift`` read them exactly as they read maps made by ``explain``.
No model weights are involved; checkpoint files are not needed by the metric jobs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

import models

from db import AttributionMap, Checkpoint, Dataset, DriftMetric, GroundTruthMetric, Prediction, Sample, session_scope
from xai_core.attribution.registry import params_hash
from xai_core.attribution.store import relative_path, store_dir, write_chunk
from xai_core.metrics.evaluate_job import gt_rows
from xai_core.metrics.registry import list_drift_metrics, list_ground_truth_metrics
from xai_core.data import build_dataset, load_dataset
from xai_core.metrics.stored import insert_rows, long_rows


def add_dataset_rows(name: str, masks: np.ndarray, labels: Sequence[int], split: str = "test") -> list[int]:
    """``Dataset`` + ``Sample`` rows (lesion areas from ``masks``); returns the sample pks."""
    masks = np.asarray(masks, bool)
    with session_scope() as session:
        ds = Dataset(name=name, kind="synthetic", root=f"datasets/{name}", params={}, class_names=["regular", "irregular"],
                     image_size=int(masks.shape[-1]), n_samples=len(masks))
        session.add(ds)
        session.flush()
        rows = [Sample(dataset_id=ds.id, sample_id=f"{name}-{i:04d}", split=split, label=int(labels[i]),
                       image_path=f"datasets/{name}/img{i}", mask_path=f"datasets/{name}/mask{i}",
                       lesion_area=int(masks[i].sum()), n_lesions=1) for i in range(len(masks))]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def add_checkpoint(name: str, arch: str, pretrain: str, degree: str | None, phase: str, sample_pks: Sequence[int],
                   preds: Sequence[int], labels: Sequence[int], parent_id: int | None = None,
                   dataset_id: int | None = None, input_size: int = 32) -> int:
    """A ``Checkpoint`` row and its ``Prediction`` rows (``correct = pred == label``); returns its id."""
    with session_scope() as session:
        ck = Checkpoint(name=name, arch=arch, width=1.0, num_classes=2, in_chans=1, input_size=input_size,
                        pretrain=pretrain, degree=degree, phase=phase, parent_id=parent_id, dataset_id=dataset_id,
                        path=f"checkpoints/{name}.safetensors", sha256=hashlib.sha256(name.encode()).hexdigest())
        session.add(ck)
        session.flush()
        session.add_all(Prediction(checkpoint_id=ck.id, sample_pk=int(pk), pred=int(p), prob=0.9, correct=int(p) == int(y))
                        for pk, p, y in zip(sample_pks, preds, labels, strict=True))
        return int(ck.id)


def add_maps(checkpoint_id: int, method: str, sample_pks: Sequence[int], maps: np.ndarray,
             params: dict[str, Any] | None = None) -> str:
    """Store ``maps`` for (checkpoint, method) through the attribution store; returns the params hash."""
    phash = params_hash(method, params or {})
    with session_scope() as session:
        sha = session.scalar(select(Checkpoint.sha256).where(Checkpoint.id == checkpoint_id))
    path = write_chunk(store_dir(sha, method, phash), np.asarray(maps, np.float32))
    with session_scope() as session:
        session.add_all(
            AttributionMap(checkpoint_id=checkpoint_id, method=method, params_hash=phash, params=params or {},
                           sample_pk=int(pk), target=0, store_path=relative_path(path), store_index=i)
            for i, pk in enumerate(sample_pks)
        )
    return phash


def add_gt_rows(checkpoint_id: int, method: str, sample_pks: Sequence[int], maps: np.ndarray, masks: np.ndarray,
                correct: Sequence[bool], selection: str = "correct", params_hash: str = "seeded") -> None:
    """``GroundTruthMetric`` rows (every registered metric) computed from arrays, in one transaction."""
    preds = {int(pk): (0, bool(c)) for pk, c in zip(sample_pks, correct, strict=True)}
    insert_rows(GroundTruthMetric, gt_rows(checkpoint_id, method, params_hash, selection, list(sample_pks), preds,
                                           np.asarray(maps, np.float32), np.asarray(masks, bool),
                                           list_ground_truth_metrics()))


def add_precision_rows(checkpoint_id: int, method: str, sample_pks: Sequence[int], precision: Sequence[float],
                       selection: str = "correct") -> None:
    """``GroundTruthMetric`` rows of correctly classified samples with the given precision (every
    other registered ground-truth metric set to the same value): verdict logic tests with known directions."""
    values = {k: np.asarray(precision, float) for k in list_ground_truth_metrics()}
    fixed = {"checkpoint_id": checkpoint_id, "method": method, "params_hash": "seeded", "selection": selection,
             "correct": True, "constant_map": False}
    insert_rows(GroundTruthMetric, long_rows(fixed, list(sample_pks), values, {}))


def add_drift_rows(checkpoint_a_id: int, checkpoint_b_id: int, method: str, sample_pks: Sequence[int],
                   iou: Sequence[float], pearson: Sequence[float] | None = None) -> None:
    """``DriftMetric`` rows (same method on both sides) with the given top-10/20% IoU and Pearson
    values (Spearman = Pearson, every other registered drift metric 0)."""
    n = len(sample_pks)
    corr = np.asarray(iou if pearson is None else pearson, float)
    values = {k: np.zeros(n) for k in list_drift_metrics()} | {
        "iou_top10": np.asarray(iou, float), "iou_top20": np.asarray(iou, float), "pearson": corr, "spearman": corr}
    fixed = {"checkpoint_a_id": checkpoint_a_id, "checkpoint_b_id": checkpoint_b_id, "method_a": method,
             "params_hash_a": "seeded", "method_b": method, "params_hash_b": "seeded", "selection": "true_positive"}
    insert_rows(DriftMetric, long_rows(fixed, list(sample_pks), values, {}))


def add_scored_checkpoint(name: str, sample_pks: Sequence[int], accuracy: float, pretrain: str = "mri",
                          degree: str | None = "all", phase: str = "ft", parent_id: int | None = None,
                          arch: str = "vgg16") -> tuple[int, list[int]]:
    """A checkpoint whose first ``round(accuracy * n)`` predictions on ``sample_pks`` (labels alternate
    0, 1, …) are right, the rest wrong; returns (its id, the correctly classified pks)."""
    labels = [i % 2 for i in range(len(sample_pks))]
    n_right = round(accuracy * len(sample_pks))
    preds = [y if i < n_right else 1 - y for i, y in enumerate(labels)]
    ck = add_checkpoint(name, arch, pretrain, degree, phase, sample_pks, preds, labels, parent_id=parent_id)
    return ck, list(sample_pks[:n_right])


def add_precision_grid(level: Callable[[str, str], float], methods: dict[str, float], degrees: Sequence[str],
                       sources: Sequence[str] = ("natural", "mri"), n_images: int = 40,
                       accuracy: Callable[[str, str], float] = lambda s, d: 0.9, image_sd: float = 0.05,
                       noise_sd: float = 0.01, sobel: float | None = None, seed: int = 0) -> list[int]:
    """A benchmark of ``n_images`` test images and one ``vgg-{source}-{degree}`` checkpoint per cell with
    known precision: ``level(source, degree) + methods[method]`` + an image effect (mean 0, shared by
    every checkpoint and method: the clustered structure) + independent row noise; ``sobel`` adds
    ``baseline_sobel`` rows at that level (+ the image effect). Returns the sample pks."""
    masks = np.zeros((n_images, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    pks = add_dataset_rows("bench", masks, [i % 2 for i in range(n_images)])
    rng = np.random.default_rng(seed)
    image = rng.normal(0, image_sd, n_images)
    image -= image.mean()
    for source in sources:
        for degree in degrees:
            ck, right = add_scored_checkpoint(f"vgg-{source}-{degree}", pks, accuracy(source, degree), source,
                                              degree, degree)
            effect = image[: len(right)]
            for method, offset in methods.items():
                add_precision_rows(ck, method, right, level(source, degree) + offset + effect
                                   + rng.normal(0, noise_sd, len(right)))
            if sobel is not None:
                add_precision_rows(ck, "baseline_sobel", right, sobel + effect)
    return pks


def tiny_checkpoint(size: int = 32) -> tuple[int, torch.nn.Module, Any]:
    """A built 24-image dataset ``tiny`` (``size`` px) and an untrained vgg16 width-0.125 checkpoint ``ck``
    linked to it: (checkpoint id, the model, the test split)."""
    build_dataset("tiny", n=24, size=size, seed=0, train_frac=0.5, val_frac=0.1)
    with session_scope() as session:
        ds_id = session.scalar(select(Dataset.id).where(Dataset.name == "tiny"))
    torch.manual_seed(0)
    model = models.build("vgg16", 2, 1, 0.125).eval()
    info = models.save_checkpoint(model, name="ck", arch="vgg16", width=0.125, num_classes=2, in_chans=1,
                                  input_size=size, pretrain="none", degree="all", phase="ft", dataset_id=ds_id)
    return int(info.id), model, load_dataset("tiny", "test")
