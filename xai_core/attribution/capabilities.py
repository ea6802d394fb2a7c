"""Which attribution method works on which architecture, and why not where it does not.

Computed, not kept in a table: each method declares what it needs from a network
(:class:`~xai_core.attribution.registry.Needs`: a traced module graph, a CAM layer, rules for the
network's branch merges, attention layers, ReLU modules) and each architecture describes itself
(``models.ArchSpec``: ``traceable``, ``merges``, ``cam``, ``attention``, ``relu``). A method is
supported where every need is met; otherwise the verdict is the reason, and
:func:`check_supported` raises it as :class:`~xai_core.errors.UnsupportedError`. A new family registered in ``models/architectures.py``
therefore gets every method that can run on it.

On the registered CNNs every method but attention rollout runs, on the ViTs the gradient, path,
perturbation, CAM and attention methods (``tests/integration/test_explain_architectures.py`` runs
each one on each); LRP's ``backend=auto`` picks Zennit's composites with explicit ``Sum``
merges where the traced graph has skip or concatenation merges, and ``backend=captum`` on those
raises :class:`~xai_core.errors.UnsupportedError` at run time (a parameter, not the network).
"""

from __future__ import annotations

import models
from xai_core.attribution.registry import MethodSpec, get_method, list_methods
from xai_core.errors import UnsupportedError

_GRADIENT_ONLY = "use saliency, integrated_gradients or another gradient method"


def unmet_need(method: MethodSpec, arch: models.ArchSpec) -> str | None:
    """Why ``method`` cannot run on ``arch`` (one line), or ``None`` when every need is met."""
    needs = method.needs
    if needs.graph and not arch.traceable:
        return (f"{method.title} hooks modules of a traced graph but {arch.name} cannot be traced by torch.fx; "
                f"{_GRADIENT_ONLY}")
    if needs.cam_layer and arch.cam is None:
        return f"{method.title} needs a CAM layer but {arch.name} declares none; {_GRADIENT_ONLY}"
    if needs.attention and not arch.attention:
        return (f"{method.title} reads attention weights but {arch.name} has no attention layers (not a transformer); "
                f"use a CAM method or {_GRADIENT_ONLY.removeprefix('use ')}")
    if needs.relu and not arch.relu:
        return (f"{method.title} modifies the backward pass of ReLU modules but {arch.name} has none (GELU), so its "
                f"map would be the plain gradient; {_GRADIENT_ONLY}")
    missing = sorted(arch.merges - needs.merges)
    if missing:
        return (f"{method.title} has no propagation rule for the {' and '.join(missing)} merges of {arch.name}; "
                f"{_GRADIENT_ONLY}")
    return None


def capabilities(arch: str) -> dict[str, bool | str]:
    """``{method: True | "reason it is not supported"}`` for a registered architecture.

    Unknown ``arch`` raises :class:`~xai_core.errors.UnknownNameError` (listing the valid ones).
    """
    spec = models.get_architecture(arch)
    return {name: unmet_need(get_method(name), spec) or True for name in list_methods()}


def check_supported(method: str, arch: str | None) -> None:
    """Raise :class:`UnsupportedError` when ``method`` is not supported on ``arch``."""
    spec = get_method(method)
    if arch is None:
        return
    reason = unmet_need(spec, models.get_architecture(arch))
    if reason is not None:
        raise UnsupportedError(f"{method} is not supported on {arch}: {reason}")


def capability_matrix() -> dict[str, dict[str, bool | str]]:
    """``{arch: capabilities(arch)}`` for every registered architecture."""
    return {arch: capabilities(arch) for arch in models.list_architectures()}
