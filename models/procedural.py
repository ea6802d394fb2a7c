"""Formula-driven images for the ``procedural`` pre-training source (a stand-in for ImageNet).

Formula-driven supervised pre-training (Kataoka et al. 2020, FractalDB; Baradad et al. 2021,
"Learning to see by looking at noise") replaces natural photographs by images drawn from
formulas, labelled by the formula. Here each image is a low-contrast crop of a scikit-image
photograph with one to three figures of one **family** drawn on it at a random place, size,
rotation and contrast sign; the label is the family. The twelve families are generic shape and
texture primitives (filled ellipse, regular polygon, star, ring, dot cluster, bars, cross,
wavy blob, checker patch, stripe patch, crescent, speckled disk), the kind of part an ImageNet
network's later filters respond to.

Caveat recorded with the drift study (bench/RESULTS.md): several families (ellipse, star, ring,
dot cluster, wavy blob) resemble the five lesion types of ``xaudit data build --classes 5``, so
frozen features learnt here transfer to that benchmark more directly than ImageNet features
would; a TL accuracy measured on them is not an estimate of ImageNet transfer.

Everything is drawn in batch with torch on a polar grid around each figure's centre.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FAMILIES: tuple[str, ...] = ("ellipse", "polygon", "star", "ring", "dots", "bars", "cross", "wavy_blob",
                             "checker", "stripes", "crescent", "speckled")
# what the registered ``procedural`` source draws (one figure per image): the families a compact
# network learnt fastest in the drift study's trials (bench/RESULTS.md)
PRETEXT_FAMILIES: tuple[str, ...] = ("ellipse", "polygon", "star", "ring", "dots", "cross", "wavy_blob", "stripes")


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.empty(n, 1, 1).uniform_(lo, hi, generator=gen)


def _family_mask(family: str, dy: torch.Tensor, dx: torch.Tensor, r: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``(n, H, W)`` masks of ``family`` for figures of radius ``r (n,1,1)`` (pixels) centred where
    ``dy, dx (n,H,W)`` are zero; the family's random parameters drawn per figure."""
    n = dy.shape[0]
    rot = _uniform(n, 0, 2 * math.pi, gen)
    y = dx * torch.sin(rot) + dy * torch.cos(rot)
    x = dx * torch.cos(rot) - dy * torch.sin(rot)
    rho, theta = torch.hypot(x, y), torch.atan2(y, x)
    disk = rho <= r
    if family == "ellipse":  # semi-axes r·√q and r/√q: area π r² whatever the aspect q
        q = _uniform(n, 1.0, 2.2, gen).sqrt()
        return (x / (r * q)) ** 2 + (y * q / r) ** 2 <= 1
    if family == "polygon":  # regular k-gon with circumradius r
        k = torch.randint(3, 9, (n, 1, 1), generator=gen).float()
        sector = 2 * math.pi / k
        return rho * torch.cos((theta % sector) - sector / 2) <= r * torch.cos(math.pi / k)
    if family == "star":
        spikes = torch.randint(4, 10, (n, 1, 1), generator=gen).float()
        return rho <= r * (0.45 + 0.55 * torch.cos(spikes * theta / 2).abs() ** 6)
    if family == "ring":
        return disk & (rho >= r * _uniform(n, 0.45, 0.7, gen))
    if family == "dots":  # 3..6 small disks on a circle of radius 0.6 r
        count = torch.randint(3, 7, (n, 1, 1), generator=gen)
        dots = torch.zeros_like(disk)
        for j in range(6):
            angle = 2 * math.pi * j / count.float() + rot
            cy, cx = 0.6 * r * torch.sin(angle), 0.6 * r * torch.cos(angle)
            dots |= (torch.hypot(dy - cy, dx - cx) <= 0.28 * r) & (j < count)
        return dots
    if family == "bars":
        return ((y.abs() <= 0.14 * r) & (x.abs() <= r)) | (((y - 0.55 * r).abs() <= 0.14 * r) & (x.abs() <= 0.8 * r))
    if family == "cross":
        return ((y.abs() <= 0.2 * r) & (x.abs() <= r)) | ((x.abs() <= 0.2 * r) & (y.abs() <= r))
    if family == "wavy_blob":
        harmonics = torch.randint(2, 6, (n, 1, 1), generator=gen).float()
        return rho <= r * (0.8 + 0.2 * torch.cos(harmonics * theta + rot))
    if family in ("checker", "stripes"):
        freq = _uniform(n, 0.5, 1.0, gen) * (2 * math.pi / r.clamp(min=1))
        wave = torch.sin(freq * x) * (torch.sin(freq * y) if family == "checker" else 1.0)
        return disk & (wave > 0)
    if family == "crescent":
        shift = _uniform(n, 0.35, 0.6, gen) * r
        return disk & (torch.hypot(x - shift, y) > r * 0.85)
    if family == "speckled":
        return disk & (torch.rand(dy.shape, generator=gen) < 0.5)
    raise ValueError(f"unknown figure family {family!r}")


def draw_figures(crops: torch.Tensor, gen: torch.Generator, max_figures: int = 3,
                 radius: tuple[float, float] = (0.06, 0.22),
                 families: tuple[str, ...] = FAMILIES) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, C, s, s)`` in [0, 1] and their family labels (indices into ``families``):
    ``crops`` (background views in [0, 1]) at low contrast with 1..``max_figures`` figures of the
    image's family (radius a ``radius`` share of ``s``, contrast ±0.3–0.7, 1-pixel blurred edges)."""
    n, channels, size = crops.shape[0], crops.shape[1], crops.shape[-1]
    base = 0.3 + 0.4 * crops
    labels = torch.randint(len(families), (n,), generator=gen)
    grid = torch.arange(size, dtype=torch.float32)
    figure = torch.zeros(n, size, size)
    figures = torch.randint(1, max_figures + 1, (n,), generator=gen)
    for f in range(max_figures):
        r = _uniform(n, *radius, gen) * size
        cy = torch.empty(n, 1, 1).uniform_(0, 1, generator=gen) * (size - 2 * r) + r
        cx = torch.empty(n, 1, 1).uniform_(0, 1, generator=gen) * (size - 2 * r) + r
        dy = (grid[None, :, None] - cy).expand(n, size, size)
        dx = (grid[None, None, :] - cx).expand(n, size, size)
        drawn = (f < figures)
        for k, family in enumerate(families):  # each image draws only its own family
            idx = torch.nonzero((labels == k) & drawn).flatten()
            if len(idx):
                mask = _family_mask(family, dy[idx], dx[idx], r[idx], gen).float()
                figure[idx] = torch.maximum(figure[idx], mask)
    figure = F.avg_pool2d(figure[:, None], 3, stride=1, padding=1, count_include_pad=False)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.3, 0.7, generator=gen)
    sign = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, -1.0, 1.0)
    x = base + sign * contrast * figure.expand(-1, channels, -1, -1)
    x = x + 0.02 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1), labels
