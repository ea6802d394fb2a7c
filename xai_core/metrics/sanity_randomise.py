"""Model-parameter randomisation for the sanity checks (Adebayo et al. 2018): which "layers" a
network has, and copies of a trained model with some of them re-initialised.

The layers are the architecture's own split (:class:`models.architectures.ArchSpec`): the
classifier ``head`` and the five conv blocks, named from the output down to the input::

    head, block5, block4, block3, block2, block1

Re-initialisation is deterministic: a fresh network of the same architecture, width, classes and
input channels is built under ``torch.manual_seed(seed)`` (the architecture's own initialisation,
the distribution the trained weights started from), and a randomised layer takes that fresh
network's parameters and buffers (BatchNorm running statistics included). Every layer of one run
draws from the same fresh network, so "block3 randomised" holds the same weights in the cascading
and the independent test.

* **cascading**: step ``k`` randomises the first ``k`` layers of the list above (cumulative, from
  the head down); the step is named by the deepest layer it randomised, so ``block1`` is the fully
  randomised network;
* **independent**: each step randomises one layer only, the rest keep the trained weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from models.architectures import N_BLOCKS, build, get_architecture
from xai_core.errors import UnknownNameError

MODEL_MODES = ("cascading", "independent")
MODES = (*MODEL_MODES, "data")
SELECTION = "sanity"  # DriftMetric.selection of every stored sanity value
DATA_STEP = "labels"  # the one step of the data-randomisation test


def randomisation_key(mode: str, step: str, seed: int) -> str:
    """``params_hash_b`` of a stored sanity value: ``sanity:<mode>:<step>:s<seed>``."""
    return f"sanity:{mode}:{step}:s{int(seed)}"


def parse_randomisation_key(key: str) -> tuple[str, str, int] | None:
    """``(mode, step, seed)`` of a :func:`randomisation_key`, None for anything else."""
    parts = str(key).split(":")
    if len(parts) != 4 or parts[0] != "sanity" or not parts[3].startswith("s") or not parts[3][1:].isdigit():
        return None
    return parts[1], parts[2], int(parts[3][1:])


def layer_names(arch: str) -> list[str]:
    """The randomisable layers of ``arch`` from the output down: ``head, block5, ..., block1``."""
    get_architecture(arch)
    return ["head", *[f"block{k}" for k in range(N_BLOCKS, 0, -1)]]


def check_layers(arch: str, layers: Sequence[str] | None) -> list[str]:
    """``layers`` in cascade order (output first), default all; an unknown name raises
    :class:`UnknownNameError` naming the valid ones."""
    valid = layer_names(arch)
    if not layers:
        return valid
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise UnknownNameError(f"unknown layer {unknown[0]!r} of {arch}; choose from {', '.join(valid)} "
                               "(the head, then the five conv blocks from the last to the first)")
    return [name for name in valid if name in set(layers)]


def check_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`MODES`, else :class:`UnknownNameError`."""
    if mode not in MODES:
        raise UnknownNameError(f"unknown sanity mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def layer_modules(arch: str, layer: str) -> tuple[str, ...]:
    """The dotted module names that make up ``layer`` of ``arch``."""
    spec = get_architecture(arch)
    check_layers(arch, [layer])
    if layer == "head":
        return tuple(spec.head)
    return tuple(spec.blocks[int(layer.removeprefix("block")) - 1])


@dataclass(frozen=True)
class Step:
    """One randomised model of a run: its name (the deepest layer randomised) and the layers it
    re-initialises."""

    name: str
    layers: tuple[str, ...]


def steps(arch: str, mode: str, layers: Sequence[str] | None = None) -> list[Step]:
    """The randomisation steps of ``mode`` over ``layers`` (default all, see :func:`check_layers`).

    Cascading: step ``L`` randomises every layer from the head down to ``L`` (whether listed or
    not: the cascade is cumulative); independent: step ``L`` randomises ``L`` alone."""
    if check_mode(mode) not in MODEL_MODES:
        raise UnknownNameError(f"mode {mode!r} randomises no layers; choose one of {', '.join(MODEL_MODES)}")
    order = layer_names(arch)
    chosen = check_layers(arch, layers)
    if mode == "independent":
        return [Step(name, (name,)) for name in chosen]
    return [Step(name, tuple(order[: order.index(name) + 1])) for name in chosen]


def fresh_model(arch: str, num_classes: int, in_chans: int, width: float, seed: int) -> nn.Module:
    """A newly initialised ``arch`` network, the same for the same ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build(arch, int(num_classes), int(in_chans), float(width))


def randomised(model: nn.Module, arch: str, layers: Sequence[str], fresh: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) whose ``layers`` hold ``fresh``'s parameters and buffers;
    ``model`` itself is not changed; the copy keeps its input normalisation (an attribute)."""
    out = copy.deepcopy(model)
    for layer in layers:
        for name in layer_modules(arch, layer):
            out.get_submodule(name).load_state_dict(fresh.get_submodule(name).state_dict())
    return out.eval()
