"""Reference inputs of path and difference methods (Captum calls them "baselines", hence the
methods' ``baseline`` parameter), computed batched on the device. Not to be confused with the
chance-level maps the metrics compare methods with.

- ``zeros``: an all-zero (black) image;
- ``blur``: the input blurred by a Gaussian of ``blur_sigma`` pixels (Sturmfels et al. 2020,
  "Visualizing the impact of feature attribution baselines"): removes the fine structure, keeps
  the overall intensity;
- ``mean``: a constant image at ``baseline_value`` (the dataset's mean intensity; the engine fills
  it in from the images of the request when not given, the store from the dataset's train split).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xai_core.errors import ConfigError

REFERENCE_KINDS = ("zeros", "blur", "mean")


def gaussian_kernel1d(sigma: float, size: int, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian ``exp(-x^2 / 2 sigma^2)`` of odd length ``size``."""
    half = size // 2
    x = torch.arange(-half, half + 1, device=device, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``(B, C, H, W)`` batch, replicate padding, kernel 2*ceil(3 sigma)+1."""
    if sigma <= 0:
        return x.clone()
    b, c, h, w = x.shape
    size = 2 * math.ceil(3.0 * sigma) + 1
    k = gaussian_kernel1d(sigma, size, x.device)
    flat = x.reshape(b * c, 1, h, w)
    pad = size // 2
    flat = F.pad(flat, (pad, pad, 0, 0), mode="replicate")
    flat = F.conv2d(flat, k.view(1, 1, 1, size))
    flat = F.pad(flat, (0, 0, pad, pad), mode="replicate")
    flat = F.conv2d(flat, k.view(1, 1, size, 1))
    return flat.reshape(b, c, h, w)


def reference_input(x: torch.Tensor, kind: str, blur_sigma: float, value: float | None) -> torch.Tensor:
    """The reference batch of kind ``kind`` for ``x`` (same shape)."""
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    if kind == "mean":
        fill = float(x.mean()) if value is None else float(value)
        return torch.full_like(x, fill)
    raise ConfigError(f"unknown reference input {kind!r}; use one of {', '.join(REFERENCE_KINDS)}")
