"""Benchmark variants with a second image region: a suppressor or a confounder (``--variant``).

Both variants place one region ``R`` per image before the lesions, from a random stream of its
own (``SeedSequence(seed, spawn_key=(chunk, 1))``) that never reads the labels: a footprint (the
suppressor's soft disc, the confounder's square, area ``region_area * size^2``, at least 12 px)
centred uniformly at random on the brain pixels deeper than its reach plus ``GAP`` (the deepest
pixel when none is, then cut to the brain). The lesions are then placed in ``brain \\ R`` with
their usual ``GAP`` pixels of margin, so the lesion mask ``M`` and the region mask are disjoint,
and ``M`` stays exactly the pixels the lesions changed (computed before the variant's term is added).

**Suppressor** (Wilming et al. 2022, *Machine Learning* 111: 1903-1923, "Scrutinizing XAI using
linear ground-truth data with suppressor variables"; the construction behind XAI-TRIS, Clark,
Wilming & Haufe 2024). Their generative model ``x = a y + d ς + η`` has a signal pattern ``a``
carrying the class, and a distractor pattern ``d`` that overlaps ``a`` and extends to pixels
where ``a = 0``, scaled by a random ``ς`` independent of ``y``. Here, per image::

    x = b + Σ_l s_l c_l p_l  +  ς (Σ_l p_l + p_R),      ς ~ U(-A, A) i.i.d., independent of y

with ``b`` the augmented anatomy, ``p_l`` the soft profile of lesion ``l`` (sign ``s_l``,
contrast ``c_l``), ``p_R`` the region's soft disc and ``A = suppressor_amplitude``. The lesion
signal is thus blurred by the nuisance ``ς`` (its apparent contrast is ``s_l c_l + ς``), and the
region ``R`` measures ``ς`` alone: ``x_R = b_R + ς p_R``. ``b``, ``ς`` and ``R`` are all drawn
without the labels, so the pixels of ``R`` have exactly the same distribution in every class
(they carry no class information), yet a model that reads the lesion's intensity can subtract
``x_R`` to cancel ``ς`` (the linear optimum of Haufe et al. 2014 weighs ``R`` with the opposite
sign). Attribution on ``R`` is a false positive by construction. The second mask is ``p_R > 0``.

**Confounder**: a bright square marker (hard edges, added intensity ``contrast_max``) in ``R``,
present in an image with probability ``ρ = confounder_strength`` when its class is *marked*
(labels ``>= classes // 2``: ``irregular`` of the two-class benchmark) and ``1 - ρ`` otherwise, so
``P(marker present == class marked) = ρ`` (0.5: no association; 1: the marker gives the class
away). The second mask is the marker where it is drawn (empty in an image without it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from xai_core.data.lesions import GAP, MIN_AREA_PX, LesionBatch, brain_distance, smoothstep
from xai_core.data.params import GeneratorParams

KINDS = ("suppressor", "confounder")  # the variants with a second region (params.VARIANTS less "none")


def region_rng(seed: int, chunk_index: int) -> np.random.Generator:
    """The variant's random stream of chunk ``chunk_index``: separate from the lesions' (which
    read the labels), so the region and its amplitude never depend on them."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk_index, 1)))


def footprint(params: GeneratorParams) -> np.ndarray:
    """``(c, c)`` float32 region profile centred on the canvas centre: the suppressor's disc of
    area ``A = max(region_area * size^2, 12)`` px with the lesions' soft edge
    (``smoothstep((d - 1/2) / w)``, ``d`` the distance to the nearest outside pixel), or the
    confounder's square of side ``max(2, round(sqrt(A)))`` (value 1)."""
    area = max(params.region_area * params.size**2, MIN_AREA_PX)
    if params.variant == "confounder":
        side = max(2, int(round(np.sqrt(area))))
        square = np.zeros((side + 1 - side % 2,) * 2, np.float32)  # an odd canvas: a centre pixel
        square[:side, :side] = 1.0
        return square
    radius = np.sqrt(area / np.pi)
    half = int(np.ceil(radius)) + 1
    grid = np.arange(-half, half + 1)
    inside = np.hypot(grid[:, None], grid[None, :]) <= radius
    width = params.edge_width * params.size
    if width <= 0:
        return inside.astype(np.float32)
    depth = ndi.distance_transform_edt(inside)
    return np.where(inside, smoothstep((depth - 0.5) / width), 0.0).astype(np.float32)


def place_region(rng: np.random.Generator, brain: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``(B, S, S)`` float32: ``fp`` pasted once per image, centred uniformly at random on the brain
    pixels whose distance to the brain border exceeds its reach + ``GAP`` (the deepest brain pixel
    when there is none), cut to the brain. Draws ``B*S*S`` uniforms whatever the brain."""
    bsz, size, _ = brain.shape
    half = fp.shape[0] // 2
    ys, xs = np.nonzero(fp > 0)
    reach = float(np.hypot(ys - half, xs - half).max())
    dist = brain_distance(brain)
    score = np.where(dist > reach + GAP, rng.random(brain.shape, dtype=np.float32), -1.0)
    none = score.reshape(bsz, -1).max(axis=1) < 0
    score[none] = dist[none]
    flat = score.reshape(bsz, -1).argmax(axis=1)
    cy, cx = flat // size, flat % size
    ty = cy[:, None] + ys[None, :] - half
    tx = cx[:, None] + xs[None, :] - half
    b = np.broadcast_to(np.arange(bsz)[:, None], ty.shape)
    ok = (ty >= 0) & (ty < size) & (tx >= 0) & (tx < size)
    out = np.zeros(brain.shape, np.float32)
    out[b[ok], ty[ok], tx[ok]] = np.broadcast_to(fp[ys, xs][None, :], ty.shape)[ok]
    return np.where(brain, out, 0.0).astype(np.float32)


def marked_classes(labels: np.ndarray, classes: int) -> np.ndarray:
    """``(N,)`` bool: the classes the confounder marker goes with (labels ``>= classes // 2``)."""
    return np.asarray(labels) >= classes // 2


@dataclass(frozen=True)
class Regions:
    """One chunk's second regions: ``profile (B,S,S)`` the placed footprint (drawn or not),
    ``amplitude (B,)`` what multiplies it in the image (``ς`` or ``contrast_max * present``),
    ``lesion_gain (B,)`` what multiplies the lesion profiles (``ς`` for the suppressor, else 0),
    ``present (B,)`` whether the region is drawn, ``mask (B,S,S)`` the stored second mask."""

    profile: np.ndarray
    amplitude: np.ndarray
    lesion_gain: np.ndarray
    present: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return (self.profile > 0) & self.present[:, None, None]

    def room(self, brain: np.ndarray) -> np.ndarray:
        """The brain without the placed region (drawn or not): where the lesions may go."""
        return brain & ~(self.profile > 0)

    def add(self, with_lesions: np.ndarray, lesions: LesionBatch) -> np.ndarray:
        """The images: ``with_lesions + lesion_gain * Σ p_l + amplitude * p_R`` (float32)."""
        gain, amp = self.lesion_gain[:, None, None], self.amplitude[:, None, None]
        return (with_lesions + gain * lesions.profile + amp * self.profile).astype(np.float32)


def draw_regions(rng: np.random.Generator, labels: np.ndarray, brain: np.ndarray,
                 params: GeneratorParams) -> Regions:
    """The second regions of a chunk (``params.variant`` one of :data:`KINDS`). The same draws
    happen in the same order for either variant and any labels: placement, ``U(-1, 1)`` per image
    (the suppressor's ``ς / A``), ``U(0, 1)`` per image (the confounder's presence)."""
    placed = place_region(rng, brain, footprint(params))
    u = rng.uniform(-1.0, 1.0, len(labels))
    v = rng.random(len(labels))
    if params.variant == "suppressor":
        varsigma = (params.suppressor_amplitude * u).astype(np.float32)
        return Regions(placed, varsigma, varsigma, np.ones(len(labels), bool))
    present = marked_classes(labels, params.classes) == (v < params.confounder_strength)
    amp = np.where(present, params.contrast_max, 0.0).astype(np.float32)
    return Regions(placed, amp, np.zeros(len(labels), np.float32), present)
