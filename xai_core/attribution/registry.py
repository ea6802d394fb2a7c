"""The attribution-method registry: one decorator registers a method with typed, documented
parameters; :func:`list_methods` / :func:`get_method` read it (like ``torchvision.models``), on
the shared :class:`xai_core.registry.Registry`.

A method is a function ``fn(ctx, x, target, params) -> (attributions, targets)`` where ``x`` is
an ``(B, C, H, W)`` batch on the device, ``target`` a ``(B,)`` long tensor or ``None`` (= the
predicted class, which the method then returns), and ``attributions`` either ``(B, C, H, W)``
(input-space methods, post-processed by the engine: sign, channel reduction) or ``(B, H, W)``
(CAMs, already at input resolution).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xai_core.errors import ConfigError, InvalidValueError
from xai_core.registry import Registry


@dataclass(frozen=True)
class Param:
    """One typed method parameter.

    ``affects_result=False`` marks execution knobs (batch sizes) that are left out of the
    parameter hash: two runs that differ only in them share stored maps.
    """

    name: str
    type: type
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False  # ``None`` allowed
    affects_result: bool = True

    def coerce(self, method: str, value: Any) -> Any:
        """``value`` converted to this parameter's type and checked (strings from the CLI too)."""
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and self.optional):
            if self.optional:
                return None
            raise ConfigError(f"parameter {self.name!r} of {method} cannot be empty; default is {self.default!r}")
        try:
            if self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    value = low in ("true", "1", "yes")
                else:
                    value = bool(value)
            elif self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                value = int(value)
            elif self.type is float:
                value = float(value)
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"parameter {self.name!r} of {method} must be a {self.type.__name__} (got {value!r})"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"parameter {self.name!r} of {method} must be one of {', '.join(map(str, self.choices))} "
                f"(got {value!r})"
            )
        if self.minimum is not None and value < self.minimum:
            raise InvalidValueError(f"parameter {self.name!r} of {method} must be >= {self.minimum} (got {value})")
        if self.maximum is not None and value > self.maximum:
            raise InvalidValueError(f"parameter {self.name!r} of {method} must be <= {self.maximum} (got {value})")
        if isinstance(value, float) and value != value:
            raise InvalidValueError(f"parameter {self.name!r} of {method} is NaN")
        return value


ANY_MERGE = frozenset({"add", "concat", "multiply"})  # models.architectures.MERGES


@dataclass(frozen=True)
class Needs:
    """What a method needs from a network; :mod:`xai_core.attribution.capabilities` compares it with
    the architecture's description (``models.ArchSpec``: ``traceable``, ``merges``, ``cam``,
    ``attention``, ``relu``).

    ``graph``: a ``torch.fx``-traceable network, because the method hooks modules (one ReLU module
    per use, see :mod:`xai_core.attribution.canonical`); ``cam_layer``: a named convolutional CAM
    layer; ``merges``: the branch merges its propagation rules are defined for (gradient methods:
    all of them; DeepLIFT's rescale rule and LRP's rules: additions and concatenations, not
    multiplicative gates); ``attention``: attention modules whose weights it reads (attention
    rollout: transformers only); ``relu``: ReLU non-linearities whose backward pass it modifies
    (Guided Backprop, Deconvolution: on a network without them it would be the plain gradient).
    """

    graph: bool = False
    cam_layer: bool = False
    merges: frozenset[str] = ANY_MERGE
    attention: bool = False
    relu: bool = False


@dataclass(frozen=True)
class MethodSpec:
    """A registered attribution method and its metadata."""

    name: str
    title: str
    fn: Callable[..., Any] = field(repr=False)
    params: tuple[Param, ...]
    group: str  # gradient | path | propagation | perturbation | cam | attention
    library: str  # captum | pytorch-grad-cam | captum/zennit
    model_kind: str  # canonicalisation kind: grad | lrp | cam | attention
    deterministic: bool
    output: str  # "input" (B,C,H,W, post-processed) | "cam" (B,H,W in [0,1])
    paper: str
    doc: str
    equivalent_to: str = ""  # a method that gives the same maps on some models ...
    equivalence: str = ""  # ... on which models, and why (shown next to both methods' rows)
    needs: Needs = Needs()  # what it needs from the network (capabilities)

    @property
    def label(self) -> str:
        """The registry label: the method's title (menus, table rows)."""
        return self.title

    @property
    def help(self) -> str:
        """The first paragraph of the method's docstring."""
        return self.doc.split("\n\n", 1)[0].strip()

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ConfigError(
            f"{self.name} has no parameter {name!r}; its parameters are {', '.join(self.param_names) or '(none)'}"
        )

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults filled in, values coerced and checked; unknown names raise ConfigError."""
        out = self.defaults()
        for key, value in (params or {}).items():
            out[key] = self.param(key).coerce(self.name, value)
        return out

    def hashed_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The resolved parameters that change the result (what the hash covers)."""
        resolved = self.resolve(params)
        return {p.name: resolved[p.name] for p in self.params if p.affects_result}


METHODS: Registry[MethodSpec] = Registry("attribution method")


def register_method(
    name: str,
    *,
    title: str,
    params: tuple[Param, ...] = (),
    group: str,
    library: str,
    model_kind: str = "grad",
    deterministic: bool = True,
    output: str = "input",
    paper: str = "",
    equivalent_to: str = "",
    equivalence: str = "",
    needs: Needs = Needs(),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` as attribution method ``name`` (docstring = its documentation)."""
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate parameter names in {name}: {names}")
    return METHODS.register(lambda fn: MethodSpec(
        name=name, title=title, fn=fn, params=tuple(params), group=group, library=library,
        model_kind=model_kind, deterministic=deterministic, output=output, paper=paper,
        doc=(fn.__doc__ or "").strip(), equivalent_to=equivalent_to, equivalence=equivalence,
        needs=needs,
    ))


def list_methods() -> list[str]:
    """Registered method names, in registration order (the two studies' methods first)."""
    return METHODS.list()


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name``; unknown names raise :class:`UnknownNameError`."""
    return METHODS.get(name)


def equivalent_pairs() -> list[tuple[str, str, str]]:
    """``(method, equivalent method, when and why)`` for every declared equivalence."""
    return [(spec.name, spec.equivalent_to, spec.equivalence) for spec in METHODS.entries() if spec.equivalent_to]


def equivalence_column(methods: list[str]) -> tuple[list[str], list[str]]:
    """For table rows of ``methods``: a short note per row ("same maps as lrp" where the equivalent
    method is also a row, else "") and the full explanations of the pairs present."""
    present = [(a, b, why) for a, b, why in equivalent_pairs() if a in methods and b in methods]
    partner = {a: b for a, b, _ in present} | {b: a for a, b, _ in present}
    column = [f"same maps as {partner[m]}" if m in partner else "" for m in methods]
    return column, [f"{a} and {b} give the same maps: {why}." for a, b, why in present]


TARGET_CHOICES = ("predicted", "true")


def split_target(params: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """``params`` without its optional ``target`` entry, and that entry (default ``predicted``)."""
    rest = dict(params or {})
    target = str(rest.pop("target", "predicted") or "predicted")
    if target not in TARGET_CHOICES:
        raise ConfigError(f"parameter 'target' must be predicted or true (got {target!r})")
    return rest, target


def params_hash(method: str, params: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex) of the method name and its resolved, result-affecting parameters.

    Canonical: defaults are filled in first, so ``{}`` and the explicit defaults hash the same,
    and execution knobs (``affects_result=False``) are left out. ``params`` may hold
    ``target`` (``predicted``, the default, or ``true``: explain the labelled class), which is
    part of what a stored map means and therefore of the hash when it is not the default.
    """
    spec = get_method(method)
    rest, target = split_target(params)
    hashed = spec.hashed_params(rest)
    if target != "predicted":
        hashed["target"] = target
    payload = json.dumps({"method": spec.name, "params": hashed}, sort_keys=True,
                         separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
