"""One chunk of the lesion benchmark: slice choice, MONAI augmentation, lesions, exact masks.

Randomness: chunk ``c`` draws everything from ``numpy.random.default_rng(SeedSequence(seed,
spawn_key=(c,)))``; each sample's MONAI transforms share one ``RandomState`` seeded from that
generator. Chunks have a fixed size (``CHUNK``), so the output does not depend on how many worker
processes build it, and the same parameters and seed give byte-identical arrays.

Per sample: an axial slice of a random volume (uniform over volumes, then over its usable slices),
``Rand2DElastic`` (rotation, scaling, shear, translation and elastic deformation in one
resampling, applied to the image and its brain mask together), ``RandBiasField``,
``RandScaleIntensity`` and ``RandGaussianNoise`` (MONAI), then the lesions (xai_core.data.lesions)
are added; the mask is ``image_with_lesions != image_without``. A ``suppressor`` or ``confounder``
variant (xai_core.data.regions) first places its second region, puts the lesions in the rest of
the brain, and adds its term after the mask is taken; ``none`` draws exactly what it drew before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from xai_core.data.anatomy import SliceBank, load_anatomy, slice_bank
from xai_core.data.lesions import place_lesions
from xai_core.data.params import GeneratorParams
from xai_core.data.regions import draw_regions, region_rng
from xai_core.data.splits import stratified_split

CHUNK = 64


@dataclass(frozen=True)
class Chunk:
    """Generated samples ``start .. start+len``: images/base ``(B,S,S)`` float32 (with / without
    lesions), masks and brain ``(B,S,S)`` bool, ``n_lesions (B,)``, source ``volume``/``z``."""

    start: int
    images: np.ndarray
    base: np.ndarray
    masks: np.ndarray
    brain: np.ndarray
    n_lesions: np.ndarray
    volume: np.ndarray
    z: np.ndarray
    clipped: int
    regions: np.ndarray | None = None  # (B,S,S) bool second mask of a variant; None for "none"


@contextmanager
def _quiet_torch() -> Iterator[None]:
    """One torch thread (reproducible, no oversubscription) and MONAI without metadata tracking."""
    # lazy: MONAI takes ~5 s to import; only the generator uses it
    from monai.data import get_track_meta, set_track_meta

    threads, track = torch.get_num_threads(), get_track_meta()
    torch.set_num_threads(1)
    set_track_meta(False)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        set_track_meta(track)


def _transforms(params: GeneratorParams) -> tuple[object, list[object]]:
    """The MONAI spatial transform (image+brain channels) and the intensity transforms (image)."""
    # lazy: MONAI takes ~5 s to import; only the generator uses it
    from monai.transforms import Rand2DElastic, RandBiasField, RandGaussianNoise, RandScaleIntensity

    s = params.size
    spatial = Rand2DElastic(
        spacing=max(2.0, params.elastic_spacing * s),
        magnitude_range=(0.0, params.elastic_magnitude * s),
        prob=1.0,
        rotate_range=np.deg2rad(params.rotate_deg),
        shear_range=params.shear,
        translate_range=params.translate * s,
        scale_range=params.scale,
        spatial_size=(s, s),
        mode="bilinear",
        padding_mode="zeros",
    )
    intensity = [
        RandBiasField(degree=3, coeff_range=(-params.bias_coeff, params.bias_coeff), prob=1.0),
        RandScaleIntensity(factors=params.intensity_scale, prob=1.0),
        RandGaussianNoise(prob=1.0, mean=0.0, std=params.noise_std),
    ]
    return spatial, intensity


def _augment(images: np.ndarray, brain: np.ndarray, seeds: np.ndarray,
             params: GeneratorParams) -> tuple[np.ndarray, np.ndarray]:
    """Apply the MONAI transforms sample by sample (each sample has its own random state)."""
    spatial, intensity = _transforms(params)
    out_img = np.empty_like(images)
    out_brain = np.empty_like(brain)
    stacked = torch.from_numpy(np.stack([images, brain.astype(np.float32)], axis=1))
    for i, seed in enumerate(seeds):
        state = np.random.RandomState(int(seed))
        spatial.set_random_state(state=state)  # type: ignore[attr-defined]
        warped = spatial(stacked[i])  # type: ignore[operator]
        img = warped[:1]
        for t in intensity:
            t.set_random_state(state=state)  # type: ignore[attr-defined]
            img = t(img)  # type: ignore[operator]
        out_img[i] = np.asarray(img[0], dtype=np.float32)
        out_brain[i] = np.asarray(warped[1]) >= 0.5
    return out_img, out_brain


def generate_chunk(bank: SliceBank, params: GeneratorParams, labels: np.ndarray, chunk_index: int) -> Chunk:
    """Samples ``chunk_index*CHUNK ..`` (as many as ``labels``) of the benchmark."""
    rng = np.random.default_rng(np.random.SeedSequence(params.seed, spawn_key=(chunk_index,)))
    b = len(labels)
    n_vol = int(bank.volume.max()) + 1
    vol = rng.integers(0, n_vol, b)
    counts = np.bincount(bank.volume, minlength=n_vol)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.argsort(bank.volume, kind="stable")
    rows = order[first[vol] + np.floor(rng.random(b) * counts[vol]).astype(np.int64)]
    seeds = rng.integers(0, 2**31 - 1, b)
    with _quiet_torch():
        base, brain = _augment(bank.images[rows], bank.brain[rows], seeds, params)
    if params.variant == "none":
        lesions = place_lesions(rng, labels, brain, params)
        images = base + lesions.delta
        masks, second = images != base, None
    else:
        regions = draw_regions(region_rng(params.seed, chunk_index), labels, brain, params)
        lesions = place_lesions(rng, labels, regions.room(brain), params)
        with_lesions = base + lesions.delta
        masks, second = with_lesions != base, regions.mask
        images = regions.add(with_lesions, lesions)
    return Chunk(
        start=chunk_index * CHUNK,
        images=images,
        base=base,
        masks=masks,
        brain=brain,
        n_lesions=lesions.n_lesions,
        volume=bank.volume[rows],
        z=bank.z[rows],
        clipped=lesions.clipped,
        regions=second,
    )


def labels_and_splits(params: GeneratorParams) -> tuple[np.ndarray, np.ndarray]:
    """Exactly n/classes samples per class in seeded random order, and their stratified split."""
    rng = np.random.default_rng(np.random.SeedSequence(params.seed, spawn_key=(10**6,)))
    k = params.classes
    labels = np.repeat(np.arange(k, dtype=np.int64), params.n // k)[rng.permutation(params.n)]
    return labels, stratified_split(labels, params.seed, params.train_frac, params.val_frac)


@dataclass(frozen=True)
class Synthesis:
    """A whole benchmark in memory (no files): the arrays ``build_dataset`` writes, plus ``clean``
    (the same images without lesions) and ``brains`` (the deformed brain masks)."""

    images: np.ndarray
    clean: np.ndarray
    masks: np.ndarray
    brains: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    n_lesions: np.ndarray
    regions: np.ndarray | None = None  # the variant's second mask (xai_core.data.regions); None for "none"

    @property
    def lesion_area(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2)).astype(np.int64)


def synthesize(params: GeneratorParams, bank: SliceBank | None = None) -> Synthesis:
    """Generate every sample of ``params`` in memory, chunk by chunk exactly as ``build_dataset``."""
    if bank is None:
        bank = slice_bank(load_anatomy(params.anatomy), params.size, params.min_brain_fraction)
    labels, splits = labels_and_splits(params)
    chunks = [generate_chunk(bank, params, labels[c:c + CHUNK], c // CHUNK) for c in range(0, params.n, CHUNK)]
    cat = lambda key: np.concatenate([getattr(ch, key) for ch in chunks])  # noqa: E731
    regions = None if params.variant == "none" else cat("regions")
    return Synthesis(cat("images"), cat("base"), cat("masks"), cat("brain"), labels, splits, cat("n_lesions"), regions)
