"""The metric registries: ground-truth metrics (a map against its lesion mask), drift metrics
(two maps of the same sample) and faithfulness metrics (a map against the model's own output), on
the shared :class:`xai_core.registry.Registry`.

A metric is one decorated function over a whole batch; its metadata (label, help, paper, which
direction is better, value range) is what the CLI, the pages, the report and the export show::

    @register_ground_truth_metric("centre_share", label="mass in the image centre", better="higher",
                                  value_range=(0.0, 1.0), help="...")
    def centre_share(batch: MapBatch) -> np.ndarray:  # (N,) float64, one value per map
        ...

Ground-truth metrics receive a :class:`xai_core.metrics.ground_truth.MapBatch`, drift metrics a
:class:`xai_core.metrics.drift_measures.PairBatch`. A ground-truth metric registered with
``needs_region=True`` reads the batch's second mask (a suppressor or confounder region,
xai_core.data.regions): it is computed only for samples that have one
(:func:`list_region_metrics`), and :func:`list_ground_truth_metrics` leaves it out. Values are stored long-form (one row per
sample and metric), so a new metric needs no schema change: ``xaudit evaluate`` / ``xaudit drift``
fill it in for the maps already evaluated.

Faithfulness metrics (:mod:`xai_core.metrics.faithfulness`) also take typed parameters
(:class:`~xai_core.attribution.registry.Param`, e.g. the removal value and step count) and receive
a ``FaithBatch`` holding the model: ``fn(batch, params) -> FaithfulnessOutput``. Their values are
stored long-form in the ground-truth table under :meth:`FaithfulnessSpec.key` (the name for the
default parameters, ``name[k=v,…]`` otherwise), so two parameter settings never collide.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xai_core.attribution.registry import Param
from xai_core.errors import ConfigError
from xai_core.registry import Registry

BETTER = {"higher": "higher is better", "lower": "lower is better", "zero": "closer to 0 is better"}
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,49}")  # a column name in exports, at most String(50)
# columns of the per-sample frames and summaries: a metric cannot take one of these names
RESERVED = frozenset({
    "id", "checkpoint_id", "checkpoint", "arch", "pretrain", "degree", "phase", "method", "params_hash",
    "sample_pk", "sample_id", "label", "lesion_area", "selection", "correct", "constant_map", "metric", "value",
    "checkpoint_a_id", "checkpoint_a", "checkpoint_b_id", "checkpoint_b", "method_a", "params_hash_a", "method_b",
    "params_hash_b", "n", "mean", "median", "ci_low", "ci_high", "accuracy", "n_predictions",
})


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: ``fn(batch) -> (N,)`` values and what a reader needs to interpret them."""

    name: str
    fn: Callable[[Any], np.ndarray] = field(repr=False)
    label: str
    help: str
    better: str  # "higher" | "lower" | "zero" (change metrics: no change is best)
    value_range: tuple[float, float]
    paper: str = ""
    needs_region: bool = False  # reads MapBatch.r, the second mask (suppressor / confounder region)

    @property
    def sign(self) -> int:
        """+1 when higher is better, -1 when lower is better, 0 when closer to zero is better."""
        return {"higher": 1, "lower": -1, "zero": 0}[self.better]

    @property
    def direction(self) -> str:
        """``"higher is better"``, ``"lower is better"`` or ``"closer to 0 is better"``."""
        return BETTER[self.better]

    def describe(self) -> str:
        """``"label (higher is better, 0 to 1)"``: menus' help and report captions."""
        low, high = self.value_range
        return f"{self.label} ({self.direction}, {low:g} to {high:g})"


GROUND_TRUTH_METRICS: Registry[MetricSpec] = Registry("ground-truth metric")
DRIFT_METRICS: Registry[MetricSpec] = Registry("drift metric")


def spec_builder(name: str, label: str, help: str, better: str, value_range: tuple[float, float],
                  paper: str, needs_region: bool = False) -> Callable[[Callable[[Any], np.ndarray]], MetricSpec]:
    if not NAME_PATTERN.fullmatch(name) or name in RESERVED:
        raise ConfigError(f"metric name {name!r} must be 1..50 lower-case letters, digits or _ starting with a "
                          f"letter, and not a table column ({', '.join(sorted(RESERVED))})")
    if better not in BETTER:
        raise ConfigError(f"better= of metric {name!r} must be one of {', '.join(BETTER)} (got {better!r})")
    low, high = (float(v) for v in value_range)
    if not low < high:
        raise ConfigError(f"value_range of metric {name!r} must be (low, high) with low < high (got {value_range!r})")
    return lambda fn: MetricSpec(name=name, fn=fn, label=label, help=help or (fn.__doc__ or "").strip(),
                                 better=better, value_range=(low, high), paper=paper, needs_region=needs_region)


def register_ground_truth_metric(name: str, *, label: str, better: str, value_range: tuple[float, float],
                                 help: str = "", paper: str = "",
                                 needs_region: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(batch: MapBatch) -> (N,)`` as ground-truth metric ``name``
    (``help`` defaults to the docstring; ``needs_region``: it reads the second mask ``batch.r``)."""
    return GROUND_TRUTH_METRICS.register(spec_builder(name, label, help, better, value_range, paper, needs_region))


def register_drift_metric(name: str, *, label: str, better: str, value_range: tuple[float, float],
                          help: str = "", paper: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(batch: PairBatch) -> (N,)`` as drift metric ``name`` (A → B)."""
    return DRIFT_METRICS.register(spec_builder(name, label, help, better, value_range, paper))


def list_ground_truth_metrics() -> list[str]:
    """Registered ground-truth metric names against the lesion mask (every sample gets them), in
    registration order; the second-region metrics are :func:`list_region_metrics`."""
    return [k for k in GROUND_TRUTH_METRICS.list() if not GROUND_TRUTH_METRICS.get(k).needs_region]


def list_region_metrics() -> list[str]:
    """Registered ground-truth metrics of the second region (``needs_region``), in registration
    order: computed only for samples of a suppressor/confounder dataset that have such a region."""
    return [k for k in GROUND_TRUTH_METRICS.list() if GROUND_TRUTH_METRICS.get(k).needs_region]


def get_ground_truth_metric(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of ``name``; unknown names raise :class:`UnknownNameError`."""
    return GROUND_TRUTH_METRICS.get(name)


def list_drift_metrics() -> list[str]:
    """Registered drift metric names, in registration order."""
    return DRIFT_METRICS.list()


def get_drift_metric(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of ``name``; unknown names raise :class:`UnknownNameError`."""
    return DRIFT_METRICS.get(name)


@dataclass(frozen=True)
class FaithfulnessOutput:
    """What a faithfulness metric returns for a chunk: ``(N,)`` values and, where the metric is the
    summary of a curve, the ``(N, L)`` curves sampled at ``curve_x`` ``(L,)``."""

    values: np.ndarray
    curves: np.ndarray | None = None
    curve_x: np.ndarray | None = None


@dataclass(frozen=True)
class FaithfulnessSpec(MetricSpec):
    """A registered faithfulness metric: ``fn(batch, params) -> FaithfulnessOutput`` with typed
    ``params`` (defaults, ranges, choices) and the meaning of its curve's x-axis."""

    params: tuple[Param, ...] = ()
    curve_x: str = ""

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, Any]:
        """The default value of every parameter."""
        return {p.name: p.default for p in self.params}

    def resolve(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults filled in, values coerced and checked; an unknown name raises :class:`ConfigError`."""
        out = self.defaults()
        for key, value in (params or {}).items():
            match = [p for p in self.params if p.name == key]
            if not match:
                raise ConfigError(f"{self.name} has no parameter {key!r}; its parameters are "
                                  f"{', '.join(self.param_names) or '(none)'} (see `xaudit metrics --params`)")
            out[key] = match[0].coerce(self.name, value)
        return out

    def key(self, params: Mapping[str, Any] | None = None) -> str:
        """The stored metric name: ``name`` for the defaults, else ``name[k=v,…]`` of the parameters
        that differ (``name#<hash>`` when that exceeds the 50-character column)."""
        resolved = self.resolve(params)
        changed = [(p.name, resolved[p.name]) for p in self.params if resolved[p.name] != p.default]
        if not changed:
            return self.name
        text = f"{self.name}[{','.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in changed)}]"
        if len(text) <= 50:
            return text
        return f"{self.name}#{hashlib.sha256(text.encode()).hexdigest()[:49 - len(self.name)]}"


FAITHFULNESS_METRICS: Registry[FaithfulnessSpec] = Registry("faithfulness metric")


def register_faithfulness_metric(name: str, *, label: str, better: str, value_range: tuple[float, float],
                                 params: tuple[Param, ...] = (), curve_x: str = "", help: str = "",
                                 paper: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(batch: FaithBatch, params: dict) -> FaithfulnessOutput`` as faithfulness
    metric ``name`` with typed ``params`` (``help`` defaults to the docstring)."""
    build = spec_builder(name, label, help, better, value_range, paper)

    def make(fn: Callable[..., Any]) -> FaithfulnessSpec:
        base = build(fn)
        return FaithfulnessSpec(name=base.name, fn=fn, label=base.label, help=base.help, better=base.better,
                                value_range=base.value_range, paper=base.paper, params=tuple(params), curve_x=curve_x)

    return FAITHFULNESS_METRICS.register(make)


def list_faithfulness_metrics() -> list[str]:
    """Registered faithfulness metric names, in registration order."""
    return FAITHFULNESS_METRICS.list()


def get_faithfulness_metric(name: str) -> FaithfulnessSpec:
    """The :class:`FaithfulnessSpec` of ``name`` (a stored key ``name[...]`` resolves to its metric);
    unknown names raise :class:`UnknownNameError`."""
    return FAITHFULNESS_METRICS.get(re.split(r"[\[#]", name, maxsplit=1)[0])
