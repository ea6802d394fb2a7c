"""The one registry type and the five registries built on it (architectures, pre-training sources,
attribution methods, ground-truth and drift metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import models
from models.architectures import ARCHITECTURES
from models.pretraining import SOURCES
from xai_core.attribution.registry import METHODS
from xai_core.errors import ConfigError, UnknownNameError
from xai_core.metrics import drift_metrics, ground_truth_metrics
from xai_core.metrics.registry import (
    DRIFT_METRICS,
    GROUND_TRUTH_METRICS,
    get_drift_metric,
    list_ground_truth_metrics,
    list_region_metrics,
    register_drift_metric,
    register_ground_truth_metric,
)
from xai_core.registry import Registry


@dataclass(frozen=True)
class Thing:
    name: str
    label: str = ""
    help: str = ""
    paper: str = ""


def test_register_list_get_and_duplicates() -> None:
    reg: Registry[Thing] = Registry("widget")
    reg.add(Thing("b", "Bee"))

    @reg.register(lambda fn: Thing("a", fn.__name__, fn.__doc__ or ""))
    def alpha() -> None:
        """First letter."""

    assert alpha() is None  # the decorator returns the function itself
    assert reg.list() == ["b", "a"] and reg.labels() == {"b": "Bee", "a": "alpha"}
    assert reg.get("a").help == "First letter." and "a" in reg and len(reg) == 2
    with pytest.raises(ConfigError, match="widget 'a' is already registered; choose another name"):
        reg.add(Thing("a"))
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; choose one of b, a$"):
        reg.get("c")
    assert Registry[Thing]("widget", sort=True).list() == []
    sorted_reg: Registry[Thing] = Registry("widget", sort=True)
    for name in ("z", "m", "a"):
        sorted_reg.add(Thing(name))
    assert sorted_reg.list() == ["a", "m", "z"] and [e.name for e in sorted_reg.entries()] == ["a", "m", "z"]
    assert reg.unregister("a").label == "alpha" and reg.list() == ["b"]
    with pytest.raises(UnknownNameError):
        reg.unregister("a")


def test_swapped_restores_the_previous_entry_even_on_errors() -> None:
    reg: Registry[Thing] = Registry("widget")
    original = reg.add(Thing("a", "old"))
    with pytest.raises(RuntimeError):
        with reg.swapped(Thing("a", "new")):
            assert reg.get("a").label == "new"
            raise RuntimeError("boom")
    assert reg.get("a") is original
    with reg.swapped(Thing("fresh")):
        assert reg.list() == ["a", "fresh"]
    assert reg.list() == ["a"]


def test_every_registry_is_the_shared_type_with_metadata() -> None:
    for registry in (ARCHITECTURES, SOURCES, METHODS, GROUND_TRUTH_METRICS, DRIFT_METRICS):
        assert isinstance(registry, Registry) and len(registry) > 0
        for entry in registry.entries():
            assert entry.label and isinstance(entry.help, str) and isinstance(entry.paper, str)
    assert models.list_architectures() == ARCHITECTURES.list() == sorted(ARCHITECTURES.list())
    assert models.list_pretraining_sources() == ["imagenet", "mri", "natural", "none", "procedural"]
    assert METHODS.get("gradcam").label == "Grad-CAM" and METHODS.get("saliency").help
    with pytest.raises(UnknownNameError, match="unknown architecture 'vgg19'; choose one of .*vgg16"):
        models.get_architecture("vgg19")
    with pytest.raises(UnknownNameError, match="unknown pre-training source 'web'; choose one of imagenet, mri"):
        models.get_pretraining_source("web")
    with pytest.raises(ConfigError, match="architecture 'vgg16' is already registered"):
        models.register(models.get_architecture("vgg16"))


def test_metric_metadata_from_the_registry() -> None:
    assert GROUND_TRUTH_METRICS.list() == ["precision", "mass_accuracy", "pointing_game", "roc_auc",
                                           "average_precision", "emd_score", "region_share"]
    # region_share reads the second mask of a suppressor/confounder dataset: listed apart
    assert list_ground_truth_metrics() == GROUND_TRUTH_METRICS.list()[:-1]
    assert list_region_metrics() == ["region_share"] and GROUND_TRUTH_METRICS.get("region_share").sign == -1
    assert DRIFT_METRICS.list() == ["com_displacement", "peak_displacement", "iou_top10", "iou_top20", "pearson",
                                    "spearman", "gini_change", "entropy_change"]
    assert {m: get_drift_metric(m).sign for m in DRIFT_METRICS.list()} == {
        "com_displacement": -1, "peak_displacement": -1, "iou_top10": 1, "iou_top20": 1, "pearson": 1,
        "spearman": 1, "gini_change": 0, "entropy_change": 0}
    spec = GROUND_TRUTH_METRICS.get("precision")
    assert spec.describe() == "explanation precision (top-n pixels inside the lesion) (higher is better, 0 to 1)"
    assert "Oliveira" in spec.paper
    assert get_drift_metric("gini_change").direction == "closer to 0 is better"
    with pytest.raises(UnknownNameError, match="unknown ground-truth metric 'iou'; choose one of precision, "):
        ground_truth_metrics(np.ones((1, 4, 4)), np.ones((1, 4, 4), bool), metrics=["iou"])


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Bad Name"}, "must be 1..50 lower-case"),
    ({"name": "method"}, "not a table column"),
    ({"name": "x" * 51}, "must be 1..50"),
    ({"better": "more"}, "better= of metric 'ok' must be one of higher, lower, zero"),
    ({"value_range": (1.0, 0.0)}, "low < high"),
    ({"name": "precision"}, "ground-truth metric 'precision' is already registered"),
])
def test_metric_registration_is_checked(kwargs: dict, message: str) -> None:
    args = {"name": "ok", "label": "fine", "better": "higher", "value_range": (0.0, 1.0)} | kwargs
    with pytest.raises(ConfigError, match=message):
        register_ground_truth_metric(args.pop("name"), **args)(lambda b: b.n)
    assert "ok" not in GROUND_TRUTH_METRICS


def test_drift_metric_registered_here_is_computed_with_the_others() -> None:
    register_drift_metric("sum_ratio", label="total B / total A", better="zero", value_range=(0.0, 10.0))(
        lambda p: p.sb / p.sa)
    try:
        a = np.ones((2, 4, 4), np.float32)
        b = np.stack([np.ones((4, 4)), 2 * np.ones((4, 4))]).astype(np.float32)
        out = drift_metrics(a, b)
        assert list(out)[-1] == "sum_ratio" and out["sum_ratio"].tolist() == [1.0, 2.0]
        assert drift_metrics(a, b, metrics=["sum_ratio"]).keys() == {"sum_ratio"}
    finally:
        DRIFT_METRICS.unregister("sum_ratio")


def test_every_registered_metric_stays_in_its_declared_range() -> None:
    rng = np.random.default_rng(3)
    maps = rng.standard_normal((64, 12, 12)).astype(np.float32)
    maps[::5] = np.round(maps[::5])  # ties
    maps[1] = 0.0
    masks = rng.random((64, 12, 12)) < rng.uniform(0.05, 0.6, (64, 1, 1))
    masks[:, 0, 0], masks[:, -1, -1] = True, False  # at least one lesion and one background pixel
    for name, values in ground_truth_metrics(maps, masks).items():
        low, high = GROUND_TRUTH_METRICS.get(name).value_range
        assert np.all((values >= low - 1e-12) & (values <= high + 1e-12)), name
    other = np.roll(maps, 3, axis=1) + rng.standard_normal(maps.shape).astype(np.float32)
    for name, values in drift_metrics(maps, other).items():
        low, high = DRIFT_METRICS.get(name).value_range
        assert np.all((values >= low - 1e-12) & (values <= high + 1e-12)), name
