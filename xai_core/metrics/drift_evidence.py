"""The evidence behind a drift value: one sample's TL and FT maps, their difference and centres of mass.

What the Drift page draws for a chosen TL→FT pair, method and sample: the image with its lesion mask,
the two *normalised maps* ``p = |map| / Σ|map|`` (an all-zero map is uniform, as in
:mod:`~xai_core.metrics.drift_measures`), their difference ``p_FT − p_TL`` (positive where fine-tuning
added evidence) and the displacement arrow between the two centres of mass, computed by the very
function the ``com_displacement`` metric uses. :func:`drift_order` sorts a pair's samples by a
drift metric, largest drift first, in the direction the metric registry declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from xai_core.errors import ShapeError
from xai_core.metrics._arrays import as_maps
from xai_core.metrics.drift_measures import centre_of_mass
from xai_core.metrics.registry import get_drift_metric
from xai_core.metrics.stored import masks_and_images, read_stored_maps


def normalised_maps(maps: Any) -> np.ndarray:
    """``(N, H, W)`` float64 ``|map| / Σ|map|`` per map (sums to 1); an all-zero map becomes uniform."""
    arr = np.abs(as_maps(maps, "maps")).astype(np.float64)
    total = arr.sum(axis=(1, 2), keepdims=True)
    uniform = np.full_like(arr, 1.0 / max(1, arr.shape[1] * arr.shape[2]))
    return np.where(total > 0, arr / np.where(total > 0, total, 1.0), uniform)


def centres_of_mass(maps: Any) -> np.ndarray:
    """``(N, 2)`` (row, col) centre of mass of ``|map|`` per map, in pixel coordinates; the image
    centre for an all-zero map. The ``com_displacement`` drift metric's own definition."""
    arr = as_maps(maps, "maps")
    n, h, w = arr.shape
    v = np.abs(arr.reshape(n, h * w))
    return centre_of_mass(v, v.sum(axis=1, dtype=np.float64), h, w)


def map_difference(maps_a: Any, maps_b: Any) -> np.ndarray:
    """``(N, H, W)`` ``p_b − p_a`` of the normalised maps (sums to 0): > 0 where B put more evidence."""
    a, b = as_maps(maps_a, "maps_a"), as_maps(maps_b, "maps_b")
    if a.shape != b.shape:
        raise ShapeError(f"maps_a shape {a.shape} differs from maps_b shape {b.shape}; compare maps of the same samples and size")
    return normalised_maps(b) - normalised_maps(a)


def symmetric_limit(diff: np.ndarray) -> float:
    """The largest ``|diff|`` (1e-12 when all zero): a diverging colour scale centred at 0 spans ±this."""
    peak = float(np.max(np.abs(diff))) if np.size(diff) else 0.0
    return peak if peak > 0 else 1e-12


def drift_order(rows: pd.DataFrame, metric: str, tie: str = "sample_id") -> pd.DataFrame:
    """``rows`` sorted by ``metric``, largest drift first: ascending when higher means more similar
    (IoU, correlations), descending when lower does (displacements), by ``|value|`` descending when
    zero is no drift (Gini/entropy change); ties by ``tie`` ascending, missing values last."""
    better = get_drift_metric(metric).better
    key = rows[metric].astype(float)
    drift = {"higher": -key, "lower": key, "zero": key.abs()}[better]
    ordered = rows.assign(_drift=drift).sort_values([tie], kind="stable")
    ordered = ordered.sort_values("_drift", ascending=False, kind="stable", na_position="last")
    return ordered.drop(columns="_drift")


@dataclass
class Evidence:
    """One sample's drift evidence: arrays ``(H, W)`` and (row, col) centres of mass."""

    image: np.ndarray  # float32 grey image
    mask: np.ndarray  # bool lesion mask
    map_a: np.ndarray  # normalised TL map
    map_b: np.ndarray  # normalised FT map
    diff: np.ndarray  # map_b - map_a
    centre_a: tuple[float, float]
    centre_b: tuple[float, float]

    @property
    def shift(self) -> float:
        """Centre-of-mass shift in pixels."""
        return float(np.hypot(self.centre_b[0] - self.centre_a[0], self.centre_b[1] - self.centre_a[1]))


def evidence(image: np.ndarray, mask: np.ndarray, map_a: np.ndarray, map_b: np.ndarray) -> Evidence:
    """:class:`Evidence` of two ``(H, W)`` maps of one sample over its image and lesion mask."""
    a, b = as_maps(np.asarray(map_a)[None], "map_a"), as_maps(np.asarray(map_b)[None], "map_b")
    if a.shape[1:] != np.shape(image) or np.shape(image) != np.shape(mask):
        raise ShapeError(f"maps {a.shape[1:]}, image {np.shape(image)} and mask {np.shape(mask)} differ in size; "
                         "the maps must be stored at the image's resolution (re-run `xaudit explain`)")
    centres = centres_of_mass(np.concatenate([a, b]))
    pa, pb = normalised_maps(a)[0], normalised_maps(b)[0]
    return Evidence(np.asarray(image, np.float32), np.asarray(mask, bool), pa, pb, pb - pa,
                    (float(centres[0, 0]), float(centres[0, 1])), (float(centres[1, 0]), float(centres[1, 1])))


def load_evidence(checkpoint_a_id: int, side_a: Sequence[str], checkpoint_b_id: int, side_b: Sequence[str],
                  sample_pk: int) -> Evidence:
    """:class:`Evidence` of one stored map pair: ``side_*`` = (method, params hash or its prefix) of
    each checkpoint's map, as a drift row names them; the image and mask from the sample's dataset."""
    map_a = read_stored_maps(int(checkpoint_a_id), side_a[0], side_a[1], [int(sample_pk)])[0]
    map_b = read_stored_maps(int(checkpoint_b_id), side_b[0], side_b[1], [int(sample_pk)])[0]
    masks, images = masks_and_images([int(sample_pk)], need_images=True)
    return evidence(images[0], masks[0], map_a, map_b)
