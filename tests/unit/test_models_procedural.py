"""Formula-driven pre-training images (models.procedural): family shapes against their formulas."""

from __future__ import annotations

import math

import torch

from models.pretraining import get_pretraining_source
from models.procedural import FAMILIES, PRETEXT_FAMILIES, _family_mask, draw_figures


def _masks(n: int = 64, size: int = 101, radius: float = 30.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    grid = torch.arange(size, dtype=torch.float32) - size // 2
    dy = grid[None, :, None].expand(n, size, size)
    dx = grid[None, None, :].expand(n, size, size)
    gen = torch.Generator().manual_seed(seed)
    r = torch.full((n, 1, 1), radius)
    return torch.stack([_family_mask(f, dy, dx, r, gen) for f in FAMILIES]), grid


def test_family_shapes_match_their_formulas() -> None:
    masks, _ = _masks()
    area = masks.float().sum(dim=(-1, -2))  # (F, n)
    r = 30.0
    c = 101 // 2
    ellipse = area[FAMILIES.index("ellipse")]
    assert torch.allclose(ellipse, torch.full_like(ellipse, math.pi * r * r), rtol=0.03)  # a·b = r² whatever the aspect
    ring = masks[FAMILIES.index("ring")]
    assert not ring[:, c, c].any() and ring[:, c, c + 28].all()  # hollow centre, filled rim
    disk = math.pi * r * r
    for family in ("star", "ring", "dots", "speckled", "crescent", "stripes"):
        assert (area[FAMILIES.index(family)] < 0.85 * disk).all(), family  # a part of the disk only
    polygon = area[FAMILIES.index("polygon")]
    assert ((polygon > 0.4 * disk) & (polygon <= 1.01 * disk)).all()  # triangle (0.41 πr²) .. octagon (0.90 πr²)
    assert not (masks.flatten(2).any(-1) == 0).any()  # every family draws something for every figure


def test_draw_figures_labels_range_and_determinism() -> None:
    crops = torch.full((256, 1, 64, 64), 0.5)
    x, y = draw_figures(crops, torch.Generator().manual_seed(1))
    x2, y2 = draw_figures(crops, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (256, 1, 64, 64) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(y.tolist()) == set(range(len(FAMILIES)))  # 256 draws hit all 12 families
    changed = ((x - (0.3 + 0.4 * 0.5)).abs() > 0.1).float().mean(dim=(1, 2, 3))
    assert (changed > 0.005).all() and (changed < 0.6).all()  # figures cover part of every image


def test_procedural_source_is_registered_as_a_pretext() -> None:
    source = get_pretraining_source("procedural")
    assert source.kind == "pretext"
    sampler, names = source.make(in_chans=3, size=48)
    x, y = sampler(8, torch.Generator().manual_seed(0))
    assert names == list(PRETEXT_FAMILIES) and x.shape == (8, 3, 48, 48) and y.shape == (8,) and int(y.max()) < 8
