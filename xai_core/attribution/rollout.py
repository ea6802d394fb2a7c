"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers",
arXiv:2005.00928): how much each input token flows into the class token through every layer.

Per layer ``l`` the heads' attention ``A_l`` (B, heads, N, N; rows sum to 1) is fused over heads
(mean in the paper; max/min as in jacobgil's vit-explain), the residual connection is accounted
for as ``Ã_l = 0.5 I + 0.5 A_l`` (rows re-normalised, a no-op unless weights were discarded), and
the layers are multiplied, ``R = Ã_L ... Ã_2 Ã_1``. Row 0 of ``R`` (the class token) over the
patch tokens, reshaped to the patch grid, is the map. Class-agnostic: the target does not change it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attention: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """(B, heads, N, N) -> (B, N, N): the heads' mean, maximum or minimum."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"unknown head fusion {head_fusion!r}; use {', '.join(HEAD_FUSIONS)}")


def discard_lowest(a: torch.Tensor, ratio: float) -> torch.Tensor:
    """``a`` (B, N, N) with the ``ratio`` share of its smallest entries per image set to 0; the
    class token's own entry ``a[:, 0, 0]`` is kept (jacobgil's vit-explain)."""
    k = int(a[0].numel() * ratio)
    if k == 0:
        return a
    flat = a.reshape(a.shape[0], -1).clone()
    low = flat.topk(k, dim=1, largest=False).indices
    keep = flat[:, 0].clone()
    flat.scatter_(1, low, 0.0)
    flat[:, 0] = keep
    return flat.reshape(a.shape)


def rollout(attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    """``R = Ã_L ... Ã_1`` (B, N, N) from the layers' attention weights (first layer first), with
    ``Ã_l = norm_rows(0.5 I + 0.5 fuse(A_l))``."""
    if not attentions:
        raise ValueError("attention rollout needs the attention weights of at least one layer")
    n = attentions[0].shape[-1]
    eye = torch.eye(n, dtype=attentions[0].dtype, device=attentions[0].device)
    result = eye.expand(attentions[0].shape[0], n, n)
    for attention in attentions:
        a = discard_lowest(fuse_heads(attention, head_fusion), discard_ratio)
        a = 0.5 * eye + 0.5 * a
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    return result


def class_token_map(r: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Row 0 of the rollout ``r`` (B, N, N) over the N - 1 patch tokens as (B, h, w): the patch
    grid of an ``size`` = (H, W) image (h / w = H / W, raster order)."""
    patches = r.shape[-1] - 1
    h = round((patches * size[0] / size[1]) ** 0.5)
    w = patches // max(h, 1)
    if h * w != patches:
        raise ValueError(f"{patches} patch tokens do not form a grid of a {size[0]}x{size[1]} image")
    return r[:, 0, 1:].reshape(r.shape[0], h, w)


def _unit(maps: torch.Tensor) -> torch.Tensor:
    """Per image ``(m - min) / (max - min + 1e-7)`` (pytorch-grad-cam's ``scale_cam_image``)."""
    m = maps - maps.amin(dim=(1, 2), keepdim=True)
    return m / (m.amax(dim=(1, 2), keepdim=True) + 1e-7)


def to_image(maps: torch.Tensor, size: tuple[int, int], upsample: str) -> torch.Tensor:
    """(B, h, w) -> (B, H, W) in [0, 1] as pytorch-grad-cam scales its CAMs: min-max normalised
    at the grid, upsampled (bilinear or nearest), normalised again."""
    mode = {"bilinear": dict(mode="bilinear", align_corners=False), "nearest": dict(mode="nearest")}[upsample]
    return _unit(F.interpolate(_unit(maps)[:, None], size=size, **mode)[:, 0]).clamp(0.0, 1.0)
