"""Artificial lesions with exact masks, vectorised over a batch of images.

Class 0 ("regular"): ellipses with random aspect ratio and rotation. Class 1 ("irregular"):
lobulated blobs (a few low harmonics of the radius) or spiculated blobs (Gaussian spikes on a
near-circular core). Each lesion is a star-shaped region ``rho <= s * r(theta)`` around its
centre, with ``r`` sampled on ``T`` angles.

Size does not give the label away: each lesion first draws a target area ``A`` (log-uniform in
``[lesion_area_min, lesion_area_max] * size^2``, same law for both classes), the unit-area shape is
scaled by ``s = sqrt(A)`` (area of a star domain: ``1/2 * integral r(theta)^2 dtheta``), and ``s``
is then corrected twice by ``sqrt(A / pixel_count)`` so the rasterised area hits ``A``.

Soft edges: intensity profile ``p = smoothstep((d - 1/2) / w)`` with ``d`` the Euclidean distance
(pixels) to the nearest outside pixel (``d >= 1`` inside, so ``p > 0`` on every lesion pixel) and
``w`` the edge width; ``smoothstep(t) = 3t^2 - 2t^3`` on [0, 1]. The lesion adds
``sign * contrast * p`` to the image; the ground-truth mask is the set of pixels whose value
changed. Lesions lie wholly inside the brain mask, do not overlap, and keep ``gap`` pixels apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from xai_core.data.params import GeneratorParams

N_ANGLES = 360
MIN_AREA_PX = 12.0  # smallest lesion area (pixels), whatever the image size
GAP = 2.0  # pixels kept free between a lesion and the brain border / another lesion
_FAR = 1.0e4  # axis-0 spacing that makes a 3D distance transform act slice by slice


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def radial_profiles(rng: np.random.Generator, labels: np.ndarray, params: GeneratorParams) -> np.ndarray:
    """Unit-area radius functions ``r(theta)``, shape ``(L, N_ANGLES)``, one per lesion label."""
    n = len(labels)
    theta = np.linspace(0, 2 * np.pi, N_ANGLES, endpoint=False)[None, :]
    # regular: ellipse with semi-axes sqrt(q), 1/sqrt(q) rotated by phi
    q = rng.uniform(1.0, params.max_aspect, (n, 1))
    phi = rng.uniform(0, np.pi, (n, 1))
    a, b = np.sqrt(q), 1 / np.sqrt(q)
    ellipse = a * b / np.sqrt((b * np.cos(theta - phi)) ** 2 + (a * np.sin(theta - phi)) ** 2)
    # lobulated: 1 + sum_k c_k cos(k theta + phase_k), k = 2..5, each active with prob 1/2
    # (harmonic 3 always), amplitudes 0.10..0.22, dips limited to -0.5
    k = np.arange(2, 6)[None, :, None]
    active = (rng.random((n, 4, 1)) < 0.5) | (k == 3)
    amp = rng.uniform(0.10, 0.22, (n, 4, 1)) * active
    phase = rng.uniform(0, 2 * np.pi, (n, 4, 1))
    dev = (amp * np.cos(k * theta[:, None, :] + phase)).sum(axis=1)
    dev *= np.minimum(1.0, 0.5 / np.maximum(-dev.min(axis=1, keepdims=True), 1e-9))
    lobulated = 1 + dev
    # spiculated: near-circular core + 4..8 spikes of height 0.4..1.0 and width 0.10..0.20 rad
    m = rng.integers(4, 9, (n, 1))
    centres = rng.uniform(0, 2 * np.pi, (n, 8, 1))
    height = rng.uniform(0.4, 1.0, (n, 8, 1)) * (np.arange(8)[None, :, None] < m[:, :, None])
    width = rng.uniform(0.10, 0.20, (n, 8, 1))
    spikes = (height * np.exp(-0.5 * (_wrap(theta[:, None, :] - centres) / width) ** 2)).sum(axis=1)
    wobble = rng.uniform(0.03, 0.08, (n, 1)) * np.cos(3 * theta + rng.uniform(0, 2 * np.pi, (n, 1)))
    spiculated = 1 + wobble + spikes
    style = {"lobulated": np.ones(n, bool), "spiculated": np.zeros(n, bool)}.get(
        params.irregular_style, rng.random(n) < 0.5
    )
    irregular = np.where(style[:, None], lobulated, spiculated)
    r = np.where(labels[:, None] == 0, ellipse, irregular)
    return r / np.sqrt(np.pi * (r**2).mean(axis=1, keepdims=True))


def _raster(r: np.ndarray, scale: np.ndarray, offset: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``rho <= scale * r(theta)`` on canvases ``(L, 2h+1, 2h+1)`` whose centre pixel is
    the integer part of the lesion centre; ``offset (L, 2)`` the sub-pixel (dy, dx)."""
    grid = np.arange(-half, half + 1, dtype=np.float64)
    dy = grid[None, :, None] - offset[:, 0, None, None]
    dx = grid[None, None, :] - offset[:, 1, None, None]
    rho = np.hypot(dy, dx)
    pos = (np.arctan2(dy, dx) % (2 * np.pi)) * (N_ANGLES / (2 * np.pi))
    i0 = np.floor(pos).astype(np.int64) % N_ANGLES
    frac = pos - np.floor(pos)
    flat = r.reshape(len(r), 1, -1)
    shape = (len(r), -1)
    r0 = np.take_along_axis(flat[:, 0], i0.reshape(shape), axis=1).reshape(i0.shape)
    r1 = np.take_along_axis(flat[:, 0], ((i0 + 1) % N_ANGLES).reshape(shape), axis=1).reshape(i0.shape)
    boundary = scale[:, None, None] * (r0 * (1 - frac) + r1 * frac)
    return rho <= boundary, np.hypot(grid[:, None], grid[None, :])


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


@dataclass(frozen=True)
class LesionShapes:
    """Rasterised lesions: ``profile (L, c, c)`` in (0, 1] on the lesion, 0 outside;
    ``reach (L,)`` largest distance (pixels) of a lesion pixel from the canvas centre."""

    profile: np.ndarray
    reach: np.ndarray
    target_area: np.ndarray

    @property
    def half(self) -> int:
        return self.profile.shape[-1] // 2


def make_shapes(rng: np.random.Generator, labels: np.ndarray, params: GeneratorParams) -> LesionShapes:
    """Area-matched rasterised lesion shapes with soft-edge profiles, one per entry of ``labels``."""
    size2 = params.size**2
    n = len(labels)
    lo = max(params.lesion_area_min * size2, MIN_AREA_PX)  # tiny test images: at least MIN_AREA_PX
    hi = max(params.lesion_area_max * size2, lo)
    area = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    r = radial_profiles(rng, labels, params)
    offset = rng.uniform(-0.5, 0.5, (n, 2))
    scale = np.sqrt(area)
    half = int(np.ceil(np.sqrt(area.max()) * r.max() * 1.25)) + 2
    for _ in range(2):  # correct the scale for the pixel grid: s <- s * sqrt(A / count)
        inside, _ = _raster(r, scale, offset, half)
        count = np.maximum(inside.sum(axis=(1, 2)), 1)
        scale = scale * np.sqrt(area / count)
    inside, dist_c = _raster(r, scale, offset, half)
    inside[:, half, half] = True  # the centre pixel always belongs to its lesion
    # distance to the nearest outside pixel, per canvas (axis 0 made "far" => slice-wise 2D EDT)
    depth = ndi.distance_transform_edt(inside, sampling=(_FAR, 1.0, 1.0)) if n else inside.astype(float)
    width = params.edge_width * params.size
    profile = smoothstep((depth - 0.5) / width) if width > 0 else inside.astype(np.float64)
    profile = np.where(inside, profile, 0.0)
    reach = np.where(inside, dist_c[None], 0.0).max(axis=(1, 2))
    return LesionShapes(profile.astype(np.float32), reach, area)


@dataclass(frozen=True)
class LesionBatch:
    """``delta (B,S,S)`` to add to the images, ``n_lesions (B,)``, ``clipped`` count of lesions
    that found no room and were cut to the free brain area, ``centres (B,k,2)`` (-1 = none)."""

    delta: np.ndarray
    n_lesions: np.ndarray
    clipped: int
    centres: np.ndarray


def brain_distance(brain: np.ndarray) -> np.ndarray:
    """Distance (pixels) of each brain pixel to the nearest non-brain pixel or the image border."""
    padded = np.pad(brain, ((0, 0), (1, 1), (1, 1)))  # every slice has background on its border
    # one 3D transform whose axis-0 spacing is so large that it acts slice by slice
    return ndi.distance_transform_edt(padded, sampling=(_FAR, 1.0, 1.0))[:, 1:-1, 1:-1]


def place_lesions(rng: np.random.Generator, labels: np.ndarray, brain: np.ndarray,
                  params: GeneratorParams) -> LesionBatch:
    """Draw 1..max_lesions lesions per image of class ``labels`` inside ``brain (B,S,S)``."""
    bsz, size, _ = brain.shape
    k = params.max_lesions
    n_les = rng.integers(1, k + 1, bsz)
    slot_sample = np.concatenate([np.nonzero(n_les > j)[0] for j in range(k)])
    slot_index = np.concatenate([np.full(int((n_les > j).sum()), j) for j in range(k)])
    shapes = make_shapes(rng, labels[slot_sample], params)
    sign = {"bright": 1.0, "dark": -1.0}.get(params.contrast_sign)
    signs = np.full(len(slot_sample), sign) if sign else rng.choice([-1.0, 1.0], len(slot_sample))
    amp = signs * rng.uniform(params.contrast_min, params.contrast_max, len(slot_sample))

    dist = brain_distance(brain)
    yy, xx = np.mgrid[0:size, 0:size]
    centres = np.full((bsz, k, 2), -1, dtype=np.int64)
    reach_of = np.zeros((bsz, k))
    delta = np.zeros((bsz, size, size), np.float32)
    occupied = np.zeros_like(brain)
    placed = np.zeros((bsz, k), bool)
    clipped = 0
    half = shapes.half
    for j in range(k):  # k <= 10 slots; every slot is vectorised over the batch
        sel = np.nonzero(slot_index == j)[0]
        samples = slot_sample[sel]
        reach = shapes.reach[sel]
        ok = dist[samples] > reach[:, None, None] + GAP
        for i in range(j):
            c = centres[samples, i]
            has = (c[:, 0] >= 0)[:, None, None]
            sep = np.hypot(yy[None] - c[:, 0, None, None], xx[None] - c[:, 1, None, None])
            ok &= ~has | (sep > (reach_of[samples, i] + reach)[:, None, None] + GAP)
        score = np.where(ok, rng.random(ok.shape, dtype=np.float32), -1.0)
        fallback = score.reshape(len(sel), -1).max(axis=1) < 0
        clipped += int(fallback.sum())
        score[fallback] = np.where(occupied[samples[fallback]], -2.0, dist[samples[fallback]])
        flat = score.reshape(len(sel), -1).argmax(axis=1)
        cy, cx = flat // size, flat % size
        centres[samples, j, 0], centres[samples, j, 1] = cy, cx
        reach_of[samples, j] = reach
        # paste the lesion profiles (only pixels inside the free brain area)
        prof = shapes.profile[sel]
        li, py, px = np.nonzero(prof > 0)
        ty, tx = cy[li] + py - half, cx[li] + px - half
        b = samples[li]
        valid = (ty >= 0) & (ty < size) & (tx >= 0) & (tx < size)
        li, py, px, ty, tx, b = li[valid], py[valid], px[valid], ty[valid], tx[valid], b[valid]
        free = brain[b, ty, tx] & ~occupied[b, ty, tx]
        li, py, px, ty, tx, b = li[free], py[free], px[free], ty[free], tx[free], b[free]
        delta[b, ty, tx] = (amp[sel][li] * prof[li, py, px]).astype(np.float32)
        occupied[b, ty, tx] = True
        placed[samples, j] = np.bincount(li, minlength=len(sel)) > 0
    return LesionBatch(delta, placed.sum(axis=1), clipped, centres)
