"""Artificial lesions with exact masks, vectorised over a batch of images.

Two classes (``classes = 2``, the MRI study's benchmark): class 0 ("regular"): ellipses with random
aspect ratio and rotation; class 1 ("irregular"): lobulated blobs (a few low harmonics of the
radius) or spiculated blobs (Gaussian spikes on a near-circular core). Each lesion is a
star-shaped region ``rho <= s * r(theta)`` around its centre, with ``r`` sampled on ``T`` angles.

``classes = K >= 3`` (the drift study's multi-class variant): label k is the k-th of ellipse,
lobulated, spiculated, ring (an ellipse with a concentric hole of 0.45..0.6 of its outer radius)
and multifocal (2..4 small ellipses close together, at least two pixels apart); see
:class:`ShapeSpec` and :func:`shape_spec`.

Size does not give the label away: each lesion first draws a target area ``A`` (log-uniform in
``[lesion_area_min, lesion_area_max] * size^2``, same law for every class), the unit-area shape is
scaled by ``s = sqrt(A)`` (area of a star domain: ``1/2 * integral r(theta)^2 dtheta``; an annulus
``(1 - h^2)`` of its outer domain; a union of disjoint parts the sum), and ``s`` is then corrected
twice by ``sqrt(A / pixel_count)`` so the rasterised area hits ``A``.

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


def _star_profiles(rng: np.random.Generator, n: int,
                   params: GeneratorParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ellipse, lobulated and spiculated radius functions ``(n, N_ANGLES)`` (not area-normalised),
    drawn for every lesion (the draws do not depend on the labels)."""
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
    return ellipse, lobulated, spiculated


def _unit_area(r: np.ndarray) -> np.ndarray:
    """Scale radius functions (last axis: angles) to enclose unit area: ``pi * mean(r^2) = 1``."""
    return r / np.sqrt(np.pi * (r**2).mean(axis=-1, keepdims=True))


def radial_profiles(rng: np.random.Generator, labels: np.ndarray, params: GeneratorParams) -> np.ndarray:
    """Two-class unit-area radius functions ``r(theta)``, shape ``(L, N_ANGLES)``, one per lesion
    label (0 ellipse; 1 lobulated or spiculated as ``irregular_style`` says)."""
    n = len(labels)
    ellipse, lobulated, spiculated = _star_profiles(rng, n, params)
    style = {"lobulated": np.ones(n, bool), "spiculated": np.zeros(n, bool)}.get(
        params.irregular_style, rng.random(n) < 0.5
    )
    irregular = np.where(style[:, None], lobulated, spiculated)
    r = np.where(labels[:, None] == 0, ellipse, irregular)
    return _unit_area(r)


MAX_PARTS = 4  # multifocal lesions have 2..4 parts
RING_HOLE = (0.45, 0.60)  # hole radius as a fraction of the ring's outer radius
FOCI_GAP_PX = 1.75  # smallest free space (pixels) between two parts of a multifocal lesion (> sqrt(2): no 8-contact)


@dataclass(frozen=True)
class ShapeSpec:
    """Unit-area lesion shapes: the union of up to :data:`MAX_PARTS` star-shaped parts, minus a hole.

    Part ``j`` of lesion ``l`` is ``|x - centre[l, j]| <= r[l, j](theta)`` (``theta`` around its
    centre, ``(dy, dx)`` in units of ``sqrt(A)``); ``hole[l] > 0`` removes ``rho <= hole * r[l, 0]``
    (a concentric, homothetic hole in part 0). The parts of one lesion do not overlap, so the unit
    area is the sum of the parts' areas minus the hole's."""

    r: np.ndarray  # (L, P, N_ANGLES)
    centre: np.ndarray  # (L, P, 2)
    active: np.ndarray  # (L, P) bool
    hole: np.ndarray  # (L,) 0 = none

    @property
    def extent(self) -> np.ndarray:
        """``(L,)`` largest distance of the shape's boundary from the lesion centre (unit scale)."""
        far = np.hypot(self.centre[..., 0], self.centre[..., 1]) + self.r.max(axis=-1)
        return np.where(self.active, far, 0.0).max(axis=1)


def _single(r: np.ndarray) -> ShapeSpec:
    """One centred part per lesion, no hole (ellipse, lobulated, spiculated)."""
    n = len(r)
    return ShapeSpec(r[:, None, :], np.zeros((n, 1, 2)), np.ones((n, 1), bool), np.zeros(n))


def _foci(rng: np.random.Generator, n: int, area: np.ndarray, max_aspect: float) -> ShapeSpec:
    """Multifocal shapes: 2..4 small ellipses (aspect <= 1.3, areas within 0.7..1.3 of each other,
    total 1) on a circle around the lesion centre, each pair at least FOCI_GAP_PX apart (and 0.12
    of sqrt(A)), the circle only 0..10 % wider than that needs (close together)."""
    theta = np.linspace(0, 2 * np.pi, N_ANGLES, endpoint=False)
    m = rng.integers(2, MAX_PARTS + 1, n)
    active = np.arange(MAX_PARTS)[None, :] < m[:, None]
    weight = rng.uniform(0.7, 1.3, (n, MAX_PARTS)) * active
    part_area = weight / weight.sum(axis=1, keepdims=True)
    q = rng.uniform(1.0, min(1.3, max_aspect), (n, MAX_PARTS, 1))
    phi = rng.uniform(0, np.pi, (n, MAX_PARTS, 1))
    a, b = np.sqrt(q), 1 / np.sqrt(q)
    ell = a * b / np.sqrt((b * np.cos(theta - phi)) ** 2 + (a * np.sin(theta - phi)) ** 2)
    r = _unit_area(ell) * np.sqrt(part_area)[..., None]
    # angles: evenly spaced with a random rotation and a jitter of up to 1/6 of the spacing
    spacing = 2 * np.pi / m[:, None]
    alpha = (rng.uniform(0, 2 * np.pi, (n, 1)) + spacing * np.arange(MAX_PARTS)[None, :]
             + rng.uniform(-1 / 6, 1 / 6, (n, MAX_PARTS)) * spacing)
    # radius of the circle: every active pair (i, j) apart by at least r_i + r_j + gap
    reach = r.max(axis=-1)
    gap = np.maximum(FOCI_GAP_PX / np.sqrt(area), 0.12)[:, None, None]
    chord = 2 * np.abs(np.sin((alpha[:, :, None] - alpha[:, None, :]) / 2))
    pair = active[:, :, None] & active[:, None, :] & ~np.eye(MAX_PARTS, dtype=bool)[None]
    need = np.where(pair, (reach[:, :, None] + reach[:, None, :] + gap) / np.maximum(chord, 1e-9), 0.0)
    radius = need.max(axis=(1, 2)) * rng.uniform(1.0, 1.1, n)
    centre = radius[:, None, None] * np.stack([np.sin(alpha), np.cos(alpha)], axis=-1)
    return ShapeSpec(r, np.where(active[..., None], centre, 0.0), active, np.zeros(n))


def shape_spec(rng: np.random.Generator, labels: np.ndarray, area: np.ndarray,
               params: GeneratorParams) -> ShapeSpec:
    """Unit-area shapes for ``labels``: the two-class benchmark (:func:`radial_profiles`) when
    ``classes == 2``, else label k is ``SHAPE_CLASSES[k]``: ellipse, lobulated, spiculated, ring
    (the ellipse law with a hole of 0.45..0.6 of its outer radius), multifocal (:func:`_foci`).
    ``area (L,)`` the target areas (pixels; the multifocal gap is given in pixels)."""
    if params.classes == 2:
        return _single(radial_profiles(rng, labels, params))
    n = len(labels)
    ellipse, lobulated, spiculated = (_unit_area(r) for r in _star_profiles(rng, n, params))
    hole = rng.uniform(*RING_HOLE, n)
    foci = _foci(rng, n, area, params.max_aspect)
    ring = ellipse / np.sqrt(1 - hole[:, None] ** 2)  # annulus (1 - h^2) * outer area = 1
    lab = labels[:, None]
    star = np.select([lab == 0, lab == 1, lab == 2], [ellipse, lobulated, spiculated], ring)
    multi = labels == 4
    r = np.where(multi[:, None, None], foci.r, np.pad(star[:, None, :], ((0, 0), (0, MAX_PARTS - 1), (0, 0))))
    centre = np.where(multi[:, None, None], foci.centre, 0.0)
    active = np.where(multi[:, None], foci.active, np.arange(MAX_PARTS)[None, :] == 0)
    return ShapeSpec(r, centre, active, np.where(labels == 3, hole, 0.0))


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


def _raster_spec(spec: ShapeSpec, scale: np.ndarray, offset: np.ndarray,
                 half: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_raster` of every part (part ``j`` centred at ``offset + scale * centre_j``; parts
    after the first only for the lesions that have them), united, minus the holes."""
    inside, dist_c = _raster(spec.r[:, 0], scale, offset + scale[:, None] * spec.centre[:, 0], half)
    for j in range(1, spec.r.shape[1]):
        idx = np.nonzero(spec.active[:, j])[0]
        if len(idx):
            part, _ = _raster(spec.r[idx, j], scale[idx], offset[idx] + scale[idx, None] * spec.centre[idx, j], half)
            inside[idx] |= part
    idx = np.nonzero(spec.hole > 0)[0]
    if len(idx):
        hole, _ = _raster(spec.r[idx, 0], scale[idx] * spec.hole[idx], offset[idx], half)
        inside[idx] &= ~hole
    return inside, dist_c


def make_shapes(rng: np.random.Generator, labels: np.ndarray, params: GeneratorParams) -> LesionShapes:
    """Area-matched rasterised lesion shapes with soft-edge profiles, one per entry of ``labels``."""
    size2 = params.size**2
    n = len(labels)
    lo = max(params.lesion_area_min * size2, MIN_AREA_PX)  # tiny test images: at least MIN_AREA_PX
    hi = max(params.lesion_area_max * size2, lo)
    area = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    spec = shape_spec(rng, labels, area, params)
    offset = rng.uniform(-0.5, 0.5, (n, 2))
    scale = np.sqrt(area)
    half = int(np.ceil(np.sqrt(area.max()) * spec.extent.max() * 1.25)) + 2
    for _ in range(2):  # correct the scale for the pixel grid: s <- s * sqrt(A / count)
        inside, _ = _raster_spec(spec, scale, offset, half)
        count = np.maximum(inside.sum(axis=(1, 2)), 1)
        scale = scale * np.sqrt(area / count)
    inside, dist_c = _raster_spec(spec, scale, offset, half)
    # the pixel nearest each part's centre belongs to its lesion (not in a ring's hole): no part
    # vanishes on the pixel grid; for a centred part it is the canvas centre (half, half)
    les, part = np.nonzero(spec.active & (spec.hole == 0)[:, None])
    at = half + np.round(offset[les] + scale[les, None] * spec.centre[les, part]).astype(np.int64)
    inside[les, at[:, 0], at[:, 1]] = True
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
    that found no room and were cut to the free brain area, ``centres (B,k,2)`` (-1 = none),
    ``profile (B,S,S)`` the soft-edge profiles in (0, 1] without contrast (``delta = amp * profile``
    lesion by lesion; the suppressor variant adds its distractor with it)."""

    delta: np.ndarray
    n_lesions: np.ndarray
    clipped: int
    centres: np.ndarray
    profile: np.ndarray


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
    unit = np.zeros((bsz, size, size), np.float32)
    occupied = np.zeros_like(brain)
    placed = np.zeros((bsz, k), bool)
    clipped = 0
    half = shapes.half
    for j in range(k):  # k <= 10 slots; every slot is vectorised over the batch
        sel = np.nonzero(slot_index == j)[0]
        if len(sel) == 0:  # no image of this chunk has a (j+1)-th lesion (a small last chunk)
            continue
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
        unit[b, ty, tx] = prof[li, py, px]
        occupied[b, ty, tx] = True
        placed[samples, j] = np.bincount(li, minlength=len(sel)) > 0
    return LesionBatch(delta, placed.sum(axis=1), clipped, centres, unit)
