"""The tiny study the sweep tests run (seconds on one core): 32 px, VGG-16 at width 0.125, one epoch,
two pre-training sources × TL and all-layers FT, two methods, drift with a cross-method comparison."""

from __future__ import annotations

from typing import Any


def tiny_study(name: str = "tiny", **methods: Any) -> dict[str, Any]:
    """The study as a mapping (what the YAML file holds)."""
    return {
        "name": name,
        "report": False,
        "dataset": {"name": "tiny-lesions", "build": {"n": 48, "size": 32, "seed": 0}},
        "models": {"archs": ["vgg16"], "width": 0.125,
                   "pretrain": {"sources": ["natural"], "steps": 2, "size": 32},
                   "protocol": "grid", "degrees": ["tl", "all"],
                   "training": {"epochs": 1, "batch_size": 16, "amp": False}},
        "methods": {"names": ["saliency", "gradcam"], "samples": 8, "shard": 4, **methods},
        "metrics": {"baselines": True},
        "drift": {"pairs": "tl-ft", "cross_methods": ["saliency", "gradcam"]},
        "selections": {"metrics": "all", "drift": "all"},
    }
