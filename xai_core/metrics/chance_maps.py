"""Chance-level maps for the ground-truth metrics: a random map and a Sobel edge map per sample.

Not to be confused with the *reference inputs* of attribution methods
(:mod:`xai_core.attribution.baselines`). ``evaluate`` scores both maps on the same samples as a
checkpoint's real methods and stores them under the method names ``baseline_random`` and
``baseline_sobel`` (what the tables show), so they say what chance (random) and a model-free
image cue (edges) score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from xai_core.metrics._arrays import as_maps, to_numpy

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014), element-wise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _M1
        z = (z ^ (z >> np.uint64(30))) * _M2
        z = (z ^ (z >> np.uint64(27))) * _M3
        return z ^ (z >> np.uint64(31))


def random_maps(sample_keys: Any, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``(N, H, W)`` float32 i.i.d. uniform [0, 1) maps, a pure function of (seed, sample key, pixel).

    Counter-based (hash of ``seed``, the sample's key, e.g. its ``Sample.id``, and the pixel index)
    so a sample's random map is the same whatever batch it is computed in — jobs stay resumable
    and reproducible without a per-sample generator loop.
    """
    keys = np.asarray(to_numpy(sample_keys), dtype=np.uint64).reshape(-1, 1)
    pix = np.arange(height * width, dtype=np.uint64)[None, :]
    base = _splitmix64(keys ^ _splitmix64(np.full((1, 1), seed, dtype=np.uint64)))
    bits = _splitmix64(base + pix * _M1)
    return ((bits >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)).reshape(-1, height, width)


_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float32)[None]
_SOBEL_X = _SOBEL_Y.transpose(0, 2, 1).copy()


def sobel_maps(images: Any) -> np.ndarray:
    """Sobel gradient magnitude ``sqrt(G_x² + G_y²)`` of each image (``(N, H, W)`` float32).

    3×3 Sobel kernels applied per image (kernel shape ``(1, 3, 3)`` so batch items never mix),
    borders replicated (``mode='nearest'``).
    """
    x = as_maps(images, "images")
    gy = ndimage.correlate(x, _SOBEL_Y, mode="nearest")
    gx = ndimage.correlate(x, _SOBEL_X, mode="nearest")
    return np.hypot(gx, gy).astype(np.float32)


@dataclass(frozen=True)
class ChanceMap:
    """A chance-level map as ``evaluate`` stores it: method name, parameter hash, and its maker
    ``make(sample_pks, masks, images)`` (``images`` only when ``needs_images``)."""

    method: str
    params_hash: str
    needs_images: bool
    make: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


CHANCE_MAPS = {
    "baseline_random": ChanceMap("baseline_random", "random-seed0", False,
                                 lambda pks, masks, _: random_maps(pks, masks.shape[1], masks.shape[2], seed=0)),
    "baseline_sobel": ChanceMap("baseline_sobel", "sobel3x3", True, lambda _, __, images: sobel_maps(images)),
}
CHANCE_METHODS = tuple(CHANCE_MAPS)  # the stored method names of chance-level maps
