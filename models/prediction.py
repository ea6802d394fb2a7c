"""Prediction and classification metrics of a model (its own input preparation: grey images
replicated to its channels, its normalisation in front; :mod:`models.inputs`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score
from torch import nn

from models.inputs import prepare_images, preprocessed
from xai_core.config import device as pick_device


@torch.no_grad()
def run_batched(module: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    outs = [module(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else x.to(device)


@torch.no_grad()
def predict(
    model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 64, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class ``(N,)`` int64 and softmax probabilities ``(N,C)`` float32 (eval mode)."""
    dev = pick_device(device)
    was_training = model.training
    model.eval().to(dev)
    x = prepare_images(images, model)
    logits = run_batched(preprocessed(model, model), x, dev, batch_size).float()
    model.train(was_training)
    probs = torch.softmax(logits, dim=1).cpu().numpy().astype(np.float32)
    return probs.argmax(1).astype(np.int64), probs


def _ovr_auc(labels: np.ndarray, probs: np.ndarray, k: int) -> float | None:
    """One-vs-rest ROC-AUC of class ``k`` (score ``probs[:, k]``); None when the split holds only
    class ``k`` or none of it."""
    positive = labels == k
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, probs[:, k]))


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, ROC-AUC and the confusion matrix (rows = true, cols = predicted).

    ``roc_auc``: binary AUC of class 1, or sklearn's one-vs-rest macro for >2 classes (None when the
    split lacks a class). Per class ``k`` (keys ``"0".."C-1"``, strings so they survive JSON):
    ``roc_auc_per_class`` one-vs-rest AUC of ``probs[:, k]`` (None when class ``k`` is absent or
    alone), ``true_positives_per_class`` correct predictions among the samples of true class ``k``
    and ``n_per_class`` those samples; ``roc_auc_macro`` the mean of the defined per-class AUCs
    (equal to ``roc_auc`` when every class is present; None when none is defined)."""
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = probs.shape[1]
    pred = probs.argmax(1)
    auc: float | None
    try:
        if len(np.unique(labels)) < (2 if n_classes == 2 else n_classes):  # a class absent: undefined
            auc = None
        elif n_classes == 2:
            auc = float(roc_auc_score(labels, probs[:, 1]))
        else:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(n_classes))))
    except ValueError:
        auc = None
    per_class = {str(k): _ovr_auc(labels, probs, k) for k in range(n_classes)}
    defined = [v for v in per_class.values() if v is not None]
    correct = pred == labels
    return {
        "accuracy": float(correct.mean()) if len(labels) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)) if len(labels) else float("nan"),
        "roc_auc": auc,
        "roc_auc_macro": float(np.mean(defined)) if defined else None,
        "roc_auc_per_class": per_class,
        "true_positives_per_class": {str(k): int(c) for k, c in
                                     enumerate(np.bincount(labels[correct], minlength=n_classes)[:n_classes])},
        "n_per_class": {str(k): int(c) for k, c in enumerate(np.bincount(labels, minlength=n_classes)[:n_classes])},
        "confusion_matrix": confusion_matrix(labels, pred, labels=list(range(n_classes))).tolist(),
        "n": int(len(labels)),
    }


def per_class_table(metrics: dict[str, Any], class_names: list[str]) -> pd.DataFrame:
    """One row per class of a checkpoint's test metrics (:func:`classification_metrics`): ``class``,
    ``roc_auc_ovr``, ``true_positives``, ``n``, ``recall`` (true positives / n); NaN where the
    metrics lack a value (checkpoints saved before the per-class metrics existed)."""
    def value(key: str, k: int) -> float:
        got = (metrics.get(key) or {}).get(str(k))
        return float("nan") if got is None else float(got)

    rows = []
    for k, name in enumerate(class_names):
        tp, n = value("true_positives_per_class", k), value("n_per_class", k)
        rows.append({"class": name, "roc_auc_ovr": value("roc_auc_per_class", k), "true_positives": tp, "n": n,
                     "recall": tp / n if n > 0 else float("nan")})
    frame = pd.DataFrame(rows, columns=["class", "roc_auc_ovr", "true_positives", "n", "recall"])
    return frame.astype({"true_positives": "Int64", "n": "Int64"})


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 64,
             device: str | None = None) -> dict[str, Any]:
    """:func:`classification_metrics` of ``model`` on ``images``."""
    _, probs = predict(model, images, batch_size, device)
    return classification_metrics(labels, probs)
