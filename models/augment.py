"""Dihedral augmentation: flips and quarter turns (the labels of lesion-shape tasks are invariant)."""

from __future__ import annotations

import torch


def n_dihedral(x: torch.Tensor) -> int:
    """Size of the augmentation group: 8 (flips x quarter turns) for square images, else 2 (flips)."""
    return 8 if x.shape[-1] == x.shape[-2] else 2


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Group element ``k`` applied to ``(..., H, W)``: horizontal flip if ``k >= 4`` (``k == 1`` for
    non-square groups of 2), then ``k % 4`` quarter turns."""
    flip, turns = (k >= 4, k % 4) if n_dihedral(x) == 8 else (k == 1, 0)
    x = x.flip(-1) if flip else x
    return torch.rot90(x, turns, (-2, -1)) if turns else x


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random dihedral element per image (see :func:`dihedral`), batched by element;
    labels of lesion-shape tasks are invariant."""
    ks = torch.randint(0, n_dihedral(x), (len(x),), generator=gen)
    out = x.clone()
    for k in ks.unique().tolist():
        out[ks == k] = dihedral(x[ks == k], k)
    return out
