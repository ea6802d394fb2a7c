"""Networks of xaudit: architecture registry, pre-training sources, fine-tuning degrees,
training and checkpoint I/O.

Public API::

    build(arch, num_classes, in_chans=1, width=1.0) -> nn.Module
    list_architectures() -> list[str];  get_architecture(arch) -> ArchSpec
    freeze_for_degree(model, arch, degree);  DEGREES
    load(ref) -> (model, metadata)                     # checkpoint id, name or file path
    predict(model, images, batch_size=64) -> (pred, probs)
    prepare_images(images, model); set_preprocess(model, name)   # inputs: grey replicated, normalisation
    pretrain(...), train(...), train_grid(...)         # jobs (progress callback)
    list_pretraining_sources()
"""

from __future__ import annotations

import importlib
from typing import Any

from models.architectures import (
    DEGREES,
    ArchSpec,
    build,
    freeze_for_degree,
    frozen_blocks,
    get_architecture,
    list_architectures,
    register,
    set_train_mode,
    trainable_blocks,
)

# Heavier parts are imported on first use (keeps ``import models`` light for the pages).
_LAZY = {
    "load": "models.checkpoints",
    "save_checkpoint": "models.checkpoints",
    "import_checkpoint": "models.checkpoints",
    "list_checkpoints": "models.checkpoints",
    "resolve_checkpoint": "models.checkpoints",
    "predict": "models.prediction",
    "model_input": "models.inputs",
    "prepare_images": "models.inputs",
    "set_preprocess": "models.inputs",
    "list_preprocessing": "models.inputs",
    "train": "models.grid",
    "train_grid": "models.grid",
    "fit": "models.finetune",
    "evaluate": "models.prediction",
    "pretrain": "models.pretraining",
    "list_pretraining_sources": "models.pretraining",
    "get_pretraining_source": "models.pretraining",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEGREES",
    "ArchSpec",
    "build",
    "freeze_for_degree",
    "frozen_blocks",
    "get_architecture",
    "list_architectures",
    "register",
    "set_train_mode",
    "trainable_blocks",
    *_LAZY,
]
