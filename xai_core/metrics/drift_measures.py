"""Reference-free drift metrics between two maps of the same sample (e.g. TL vs FT checkpoint).

Following Elangovan & Ting (arXiv 2604.08513). Maps ``a`` (reference, e.g. transfer learning)
and ``b`` (e.g. fully fine-tuned) are compared pixel-wise on ``v = |map|``; the *normalised map*
is ``p = v / Σv`` (an all-zero map is treated as uniform). Per pair:

* ``com_displacement`` = ‖COM(p_a) − COM(p_b)‖ / D and ``peak_displacement`` = ‖argmax a −
  argmax b‖ / D, with ``D = sqrt((H−1)² + (W−1)²)`` the image diagonal between pixel centres
  (so both lie in [0, 1]); the peak is the first maximum in row-major order;
* ``iou_top{p}`` = |T_a ∩ T_b| / |T_a ∪ T_b| of the top-p% pixel sets (``k = ceil(p·HW/100)``
  pixels, ties by flat index ascending);
* ``pearson`` and ``spearman`` (Pearson of average ranks) of the two maps' pixels; a constant
  map correlates 0 with anything non-constant and 1 with another constant map;
* ``gini_change`` = G(b) − G(a), Gini coefficient ``G = Σ_i (2i − P − 1) x_(i) / (P Σx)`` of the
  ascending sorted pixels (0 = uniform, → 1 = one pixel);
* ``entropy_change`` = H(b) − H(a), normalised Shannon entropy ``H = −Σ p log p / log P``
  (1 = uniform). Negative gini_change / positive entropy_change: the evidence spread out.

Identical maps give zero displacement and change, IoU 1 and correlations 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from xai_core.errors import ConfigError, ShapeError
from xai_core.metrics._arrays import (
    as_maps,
    average_ranks,
    check_finite,
    diagonal,
    rowwise_pearson,
    top_k_mask_sorted,
)

CHUNK_ROWS = 512


def drift_keys(top_percent: Sequence[int] = (10, 20)) -> list[str]:
    """Result keys of :func:`drift_metrics` for the given top-p% levels."""
    return ["com_displacement", "peak_displacement", *[f"iou_top{int(p)}" for p in top_percent],
            "pearson", "spearman", "gini_change", "entropy_change"]


def _centre_of_mass(v: np.ndarray, total: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(N, 2)`` (row, col) centre of mass of ``v``; an all-zero map has the image centre."""
    yy, xx = np.divmod(np.arange(h * w, dtype=np.float32), w)
    coords = np.stack([yy, xx], axis=1)
    moments = (v @ coords).astype(np.float64)
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    safe = np.where(total > 0, total, 1.0)[:, None]
    return np.where(total[:, None] > 0, moments / safe, centre)


def _gini_sorted(s: np.ndarray) -> np.ndarray:
    n_pix = s.shape[1]
    weights = (2.0 * np.arange(1, n_pix + 1) - n_pix - 1.0).astype(np.float32)
    total = s.sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (s @ weights).astype(np.float64) / (n_pix * np.where(total > 0, total, 1.0))
    return np.where(total > 0, g, 0.0)


def _entropy(v: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``H(p)/log P`` with ``p = v/S``: ``H = log S − Σ v log v / S`` (all-zero map: uniform, 1)."""
    n_pix = v.shape[1]
    if n_pix < 2:
        return np.ones(len(v))
    logv = np.zeros_like(v)
    np.log(v, out=logv, where=v > 0)
    vlogv = np.einsum("ij,ij->i", v, logv).astype(np.float64)  # Σ v log v (0 log 0 = 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.log(np.where(total > 0, total, 1.0)) - vlogv / np.where(total > 0, total, 1.0)
    return np.where(total > 0, np.clip(h / math.log(n_pix), 0.0, 1.0), 1.0)


def gini(maps: Any) -> np.ndarray:
    """Gini coefficient of ``|map|`` per map (0 uniform or all-zero; → 1 one pixel)."""
    arr = as_maps(maps, "maps")
    v = np.abs(arr.reshape(arr.shape[0], -1))
    return _gini_sorted(np.sort(v, axis=1))


def normalised_entropy(maps: Any) -> np.ndarray:
    """Shannon entropy of ``|map| / Σ|map|`` divided by ``log(HW)`` (1 = uniform)."""
    arr = as_maps(maps, "maps")
    v = np.abs(arr.reshape(arr.shape[0], -1))
    return _entropy(v, v.sum(axis=1, dtype=np.float64))


def _drift_chunk(va: np.ndarray, vb: np.ndarray, hw: tuple[int, int], top_percent: Sequence[int]) -> dict[str, np.ndarray]:
    h, w = hw
    n_pix = h * w
    diag = diagonal(h, w)
    sa, sb = va.sum(axis=1, dtype=np.float64), vb.sum(axis=1, dtype=np.float64)
    com = np.linalg.norm(_centre_of_mass(va, sa, h, w) - _centre_of_mass(vb, sb, h, w), axis=1) / diag
    ia, ib = va.argmax(axis=1), vb.argmax(axis=1)
    peak = np.hypot(ia // w - ib // w, ia % w - ib % w) / diag
    out: dict[str, np.ndarray] = {"com_displacement": com, "peak_displacement": peak}
    ra, sorted_a = average_ranks(va)
    rb, sorted_b = average_ranks(vb)
    for pct in top_percent:
        k = math.ceil(pct * n_pix / 100.0)
        inter = (top_k_mask_sorted(va, sorted_a, k) & top_k_mask_sorted(vb, sorted_b, k)).sum(axis=1)
        out[f"iou_top{int(pct)}"] = inter / (2.0 * k - inter)
    const_a = sorted_a[:, 0] == sorted_a[:, -1]
    const_b = sorted_b[:, 0] == sorted_b[:, -1]
    out["pearson"] = rowwise_pearson(va, vb, const_a, const_b)
    out["spearman"] = rowwise_pearson(ra, rb, const_a, const_b)
    out["gini_change"] = _gini_sorted(sorted_b) - _gini_sorted(sorted_a)
    out["entropy_change"] = _entropy(vb, sb) - _entropy(va, sa)
    return out


def drift_metrics(maps_a: Any, maps_b: Any, top_percent: Sequence[int] = (10, 20)) -> dict[str, np.ndarray]:
    """Drift from ``maps_a`` to ``maps_b`` (both ``(N, H, W)``, numpy or torch), one value per pair.

    Keys: ``com_displacement``, ``peak_displacement``, ``iou_top{p}`` for each ``p`` in
    ``top_percent``, ``pearson``, ``spearman``, ``gini_change``, ``entropy_change`` (B minus A).
    """
    a = as_maps(maps_a, "maps_a")
    b = as_maps(maps_b, "maps_b")
    if a.shape != b.shape:
        raise ShapeError(f"maps_a shape {a.shape} differs from maps_b shape {b.shape}; compare maps of the same samples and size")
    pcts = [int(p) for p in top_percent]
    if any(not 0 < p <= 100 for p in pcts):
        raise ConfigError(f"top_percent values must lie in (0, 100], got {list(top_percent)}")
    n_maps, h, w = a.shape
    fa, fb = a.reshape(n_maps, h * w), b.reshape(n_maps, h * w)
    parts = []
    for s in range(0, n_maps, CHUNK_ROWS):  # row chunks bound the temporaries; vectorised inside
        va, vb = np.abs(fa[s : s + CHUNK_ROWS]), np.abs(fb[s : s + CHUNK_ROWS])
        check_finite(va.max(axis=1), "maps_a")
        check_finite(vb.max(axis=1), "maps_b")
        parts.append(_drift_chunk(va, vb, (h, w), pcts))
    keys = drift_keys(pcts)
    if not parts:
        return {k: np.zeros(0) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in keys}
