"""What a network expects as input, and the one place that prepares images for it.

Images in xaudit are ``(N, H, W)`` or ``(N, C, H, W)`` float arrays in [0, 1] (grey MRI slices,
X-rays, DICOM frames). A network expects

* ``channels``: the input channels of its first convolution (1 for the benchmark's networks, 3
  for torchvision/timm ImageNet layouts). Grey images are **replicated** to the model's channels
  (``(g, g, g)``, the standard practice for ImageNet-initialised models on X-ray and MRI); any
  other channel count is a :class:`ShapeError`.
* ``preprocess``: the normalisation its weights were trained with, ``(x - mean_c) / std_c`` per
  channel (``imagenet``: torchvision's ImageNet mean/std; ``inception``: 0.5/0.5, what Google's
  Inception-v3 and timm's ``resnetv2_50.a1h_in1k`` weights expect; ``none``: images as they are).

The preprocessing travels with the model object (:func:`set_preprocess`; ``models.load`` and the
ImageNet source set it from the checkpoint's metadata), so every caller that feeds a model,
training, prediction, attribution and the dashboard, gets the same input: :func:`prepare_images`
(check and replicate channels) then :func:`preprocessed` (the normalisation as a module in front
of the network).

Where the normalisation sits relative to attribution: *inside* the model the attribution methods
see (:class:`Preprocessed`), so they take images in [0, 1] (grey replicated to the model's
channels): maps are in image space, baselines keep their meaning (``zeros`` is a black image, not
the ImageNet mean colour), and the engine reduces the channels of a map exactly as for any
multi-channel input (sum of ``|a_c|`` by default; for a replicated grey image the signed sum is
the gradient w.r.t. the grey image itself, by the chain rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xai_core.errors import ConfigError, InvalidValueError, ShapeError, UnknownNameError

ATTRIBUTE = "xaudit_preprocess"  # the model attribute holding the preprocessing name


@dataclass(frozen=True)
class Preprocess:
    """A named input normalisation ``(x - mean_c) / std_c`` (no-op when ``mean`` is None)."""

    name: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    description: str

    @property
    def channels(self) -> int | None:
        """Channels the normalisation is defined for (None: any)."""
        return None if self.mean is None else len(self.mean)


PREPROCESSING: dict[str, Preprocess] = {
    p.name: p for p in (
        Preprocess("none", None, None, "images in [0, 1] as they are"),
        Preprocess("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                   "torchvision ImageNet weights: per-channel mean/std of ImageNet"),
        Preprocess("inception", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                   "Inception-style [-1, 1] scaling: Google's Inception-v3, timm resnetv2_50.a1h_in1k"),
    )
}


def list_preprocessing() -> list[str]:
    """Names of the known input normalisations."""
    return list(PREPROCESSING)


def get_preprocess(name: str) -> Preprocess:
    """The :class:`Preprocess` called ``name`` (unknown: :class:`UnknownNameError`)."""
    try:
        return PREPROCESSING[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown input preprocessing {name!r}; choose one of {', '.join(PREPROCESSING)}"
        ) from None


def first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the first ``nn.Conv2d`` in registration order (None for conv-less models)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


@dataclass(frozen=True)
class ModelInput:
    """What a model takes: ``channels`` (None: unknown, not checked) and its ``preprocess``."""

    channels: int | None
    preprocess: Preprocess

    def check(self, channels: int) -> None:
        """Raise :class:`ShapeError` unless ``channels`` is the model's or 1 (grey, replicated)."""
        want = self.channels
        if want is None or channels in (1, want):
            return
        raise ShapeError(f"images have {channels} channel(s) but the model expects {want}; pass (N, {want}, H, W) "
                         f"images or grey (N, H, W) images (replicated to {want} channels)")

    def replicate(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, channels, H, W)`` on ``x``'s device: grey replicated (checked first)."""
        self.check(int(x.shape[1]))
        if self.channels is None or x.shape[1] == self.channels:
            return x
        return x.expand(-1, self.channels, -1, -1).contiguous()


def model_input(model: nn.Module) -> ModelInput:
    """The input ``model`` expects: its first convolution's channels and its preprocessing."""
    return ModelInput(first_conv_channels(model), get_preprocess(getattr(model, ATTRIBUTE, "none")))


def set_preprocess(model: nn.Module, name: str) -> nn.Module:
    """Record that ``model`` takes its inputs normalised by ``name``; returns ``model``.

    Raises :class:`ConfigError` when the normalisation is defined for other channels than the
    model's first convolution takes (ImageNet's mean/std need a 3-channel network)."""
    pre = get_preprocess(name)
    channels = first_conv_channels(model)
    if pre.channels is not None and channels is not None and channels != pre.channels:
        raise ConfigError(f"preprocessing {name!r} normalises {pre.channels} channels but the model's first "
                          f"convolution takes {channels}; use --preprocess none or a {pre.channels}-channel network")
    setattr(model, ATTRIBUTE, pre.name)
    return model


def preprocess_name(model: nn.Module) -> str:
    """The name of ``model``'s preprocessing (``none`` when never set)."""
    return model_input(model).preprocess.name


def as_images(images: Any) -> torch.Tensor:
    """``images`` (N,C,H,W) or (N,H,W), numpy or torch, as a finite float32 CPU tensor (N,C,H,W)."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    x = x.detach()
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool)):
        raise InvalidValueError(f"images must be numeric (got dtype {x.dtype})")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ShapeError(f"images must be (N, H, W) or (N, C, H, W); got shape {tuple(x.shape)}")
    x = x.to(device="cpu", dtype=torch.float32)
    finite = torch.isfinite(x).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite)[:, 0].tolist()
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        raise InvalidValueError(f"image(s) {shown} contain NaN or Inf values; fix or drop them first")
    return x


def prepare_images(images: Any, model: nn.Module) -> torch.Tensor:
    """Validated float32 CPU ``(N, C_model, H, W)`` images for ``model`` (grey replicated), still in
    [0, 1] image space; the normalisation is applied by :func:`preprocessed`."""
    return model_input(model).replicate(as_images(images))


class Normalize(nn.Module):
    """``(x - mean_c) / std_c`` for ``(N, C, H, W)`` inputs (buffers follow the module's device)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Preprocessed(nn.Module):
    """``net(normalize(x))``: a network behind its input normalisation (an elementwise bijection,
    so relevance-propagation methods pass relevance through it unchanged)."""

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def preprocessed(module: nn.Module, model: nn.Module) -> nn.Module:
    """``module`` (the model itself or its first stage) behind ``model``'s normalisation, on the
    device of ``module``'s parameters; ``module`` unchanged when the model has none."""
    pre = model_input(model).preprocess
    if pre.mean is None or pre.std is None:
        return module
    norm = Normalize(pre.mean, pre.std)
    first = next(module.parameters(), None)
    return Preprocessed(norm.to(first.device) if first is not None else norm, module)
