"""Prediction and classification metrics of a model (its own input preparation: grey images
replicated to its channels, its normalisation in front; :mod:`models.inputs`)."""

from __future__ import annotations

from typing import Any

import numpy as np
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


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, ROC-AUC (binary, or one-vs-rest macro for >2 classes; None
    when the split holds one class) and the confusion matrix (rows = true, cols = predicted)."""
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = probs.shape[1]
    pred = probs.argmax(1)
    auc: float | None
    try:
        if len(np.unique(labels)) < 2:
            auc = None
        elif n_classes == 2:
            auc = float(roc_auc_score(labels, probs[:, 1]))
        else:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(n_classes))))
    except ValueError:
        auc = None
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)) if len(labels) else float("nan"),
        "roc_auc": auc,
        "confusion_matrix": confusion_matrix(labels, pred, labels=list(range(n_classes))).tolist(),
        "n": int(len(labels)),
    }


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 64,
             device: str | None = None) -> dict[str, Any]:
    """:func:`classification_metrics` of ``model`` on ``images``."""
    _, probs = predict(model, images, batch_size, device)
    return classification_metrics(labels, probs)
