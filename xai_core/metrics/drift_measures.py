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

Each metric is one function registered with :func:`~xai_core.metrics.registry.register_drift_metric`;
it receives a :class:`PairBatch` (a chunk of flattened ``|a|`` and ``|b|`` with their sums) and
returns ``(N,)`` float64; the sorted rows and average ranks several of them read are computed once
per chunk (:meth:`PairBatch.ranked`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from xai_core.metrics.registry import get_drift_metric, list_drift_metrics, register_drift_metric

CHUNK_ROWS = 512
IOU_NAME = re.compile(r"iou_top(\d+)")


@dataclass
class PairBatch:
    """One chunk of map pairs as every drift metric reads it (flattened to ``P = H * W`` pixels)."""

    va: np.ndarray  # (N, P) float32 |map A|
    vb: np.ndarray  # (N, P) float32 |map B|
    hw: tuple[int, int]
    sa: np.ndarray = field(init=False)  # (N,) float64 sums
    sb: np.ndarray = field(init=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.sa = self.va.sum(axis=1, dtype=np.float64)
        self.sb = self.vb.sum(axis=1, dtype=np.float64)

    def ranked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(ranks_a, sorted_a, ranks_b, sorted_b)``: average ranks and ascending sorted rows, once per batch."""
        if "ranked" not in self._memo:
            self._memo["ranked"] = (*average_ranks(self.va), *average_ranks(self.vb))
        return self._memo["ranked"]

    def constant(self) -> tuple[np.ndarray, np.ndarray]:
        """``(N,)`` bool per side: the map is the same at every pixel."""
        _, sorted_a, _, sorted_b = self.ranked()
        return sorted_a[:, 0] == sorted_a[:, -1], sorted_b[:, 0] == sorted_b[:, -1]


def drift_keys(top_percent: Sequence[int] | None = None) -> list[str]:
    """Result keys of :func:`drift_metrics`: the registered drift metrics, their ``iou_top{p}``
    levels replaced by ``top_percent`` when given."""
    names = list_drift_metrics()
    if top_percent is None:
        return names
    levels = [f"iou_top{int(p)}" for p in top_percent]
    out: list[str] = []
    for name in names:
        if IOU_NAME.fullmatch(name):
            out += levels
            levels = []
        else:
            out.append(name)
    return out + levels


def centre_of_mass(v: np.ndarray, total: np.ndarray, h: int, w: int) -> np.ndarray:
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


@register_drift_metric(
    "com_displacement", label="centre-of-mass shift / image diagonal", better="lower", value_range=(0.0, 1.0),
    paper="Elangovan & Ting 2026 (arXiv 2604.08513)",
    help="Distance between the centres of mass of the two normalised maps, over the image diagonal.")
def _com_displacement(p: PairBatch) -> np.ndarray:
    h, w = p.hw
    return np.linalg.norm(centre_of_mass(p.va, p.sa, h, w) - centre_of_mass(p.vb, p.sb, h, w), axis=1) / diagonal(h, w)


@register_drift_metric(
    "peak_displacement", label="peak shift / image diagonal", better="lower", value_range=(0.0, 1.0),
    paper="Elangovan & Ting 2026 (arXiv 2604.08513)",
    help="Distance between the two maps' maxima (first in row-major order), over the image diagonal.")
def _peak_displacement(p: PairBatch) -> np.ndarray:
    h, w = p.hw
    ia, ib = p.va.argmax(axis=1), p.vb.argmax(axis=1)
    return np.hypot(ia // w - ib // w, ia % w - ib % w) / diagonal(h, w)


def iou_top(percent: int) -> Callable[[PairBatch], np.ndarray]:
    """The ``iou_top{percent}`` metric: IoU of the two maps' top-``percent``% pixel sets."""

    def iou(p: PairBatch) -> np.ndarray:
        k = math.ceil(percent * p.va.shape[1] / 100.0)
        _, sorted_a, _, sorted_b = p.ranked()
        inter = (top_k_mask_sorted(p.va, sorted_a, k) & top_k_mask_sorted(p.vb, sorted_b, k)).sum(axis=1)
        return inter / (2.0 * k - inter)

    return iou


for _pct in (10, 20):
    register_drift_metric(
        f"iou_top{_pct}", label=f"IoU of the top-{_pct}% pixels", better="higher", value_range=(0.0, 1.0),
        paper="Elangovan & Ting 2026 (arXiv 2604.08513)",
        help=f"Overlap (intersection over union) of the two maps' top-{_pct}% pixel sets.")(iou_top(_pct))


@register_drift_metric(
    "pearson", label="Pearson correlation of the maps", better="higher", value_range=(-1.0, 1.0),
    paper="Elangovan & Ting 2026 (arXiv 2604.08513)",
    help="Pearson correlation of the two maps' |values| over the pixels.")
def _pearson(p: PairBatch) -> np.ndarray:
    return rowwise_pearson(p.va, p.vb, *p.constant())


@register_drift_metric(
    "spearman", label="Spearman correlation of the maps", better="higher", value_range=(-1.0, 1.0),
    paper="Elangovan & Ting 2026 (arXiv 2604.08513)",
    help="Spearman rank correlation of the two maps' |values| over the pixels.")
def _spearman(p: PairBatch) -> np.ndarray:
    ra, _, rb, _ = p.ranked()
    return rowwise_pearson(ra, rb, *p.constant())


@register_drift_metric(
    "gini_change", label="Gini coefficient, FT minus TL (>0: more concentrated)", better="zero",
    value_range=(-1.0, 1.0), paper="Elangovan & Ting 2026 (arXiv 2604.08513)",
    help="Gini coefficient of map B minus that of map A: positive when the evidence concentrated.")
def _gini_change(p: PairBatch) -> np.ndarray:
    _, sorted_a, _, sorted_b = p.ranked()
    return _gini_sorted(sorted_b) - _gini_sorted(sorted_a)


@register_drift_metric(
    "entropy_change", label="normalised entropy, FT minus TL (>0: more spread)", better="zero",
    value_range=(-1.0, 1.0), paper="Elangovan & Ting 2026 (arXiv 2604.08513)",
    help="Normalised entropy of map B minus that of map A: positive when the evidence spread out.")
def _entropy_change(p: PairBatch) -> np.ndarray:
    return _entropy(p.vb, p.sb) - _entropy(p.va, p.sa)


def _metric_fn(name: str) -> Callable[[PairBatch], np.ndarray]:
    """The registered metric ``name``, or an ``iou_top{p}`` level that is not registered."""
    level = IOU_NAME.fullmatch(name)
    if level and name not in list_drift_metrics():
        return iou_top(int(level.group(1)))
    return get_drift_metric(name).fn


def drift_metrics(maps_a: Any, maps_b: Any, top_percent: Sequence[int] | None = None,
                  metrics: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Drift from ``maps_a`` to ``maps_b`` (both ``(N, H, W)``, numpy or torch), one value per pair.

    Keys: the registered drift metrics (``com_displacement``, ``peak_displacement``, ``iou_top10``,
    ``iou_top20``, ``pearson``, ``spearman``, ``gini_change``, ``entropy_change``: B minus A, and
    any registered later), or the ``metrics`` named; ``top_percent`` replaces the IoU levels.
    """
    a = as_maps(maps_a, "maps_a")
    b = as_maps(maps_b, "maps_b")
    if a.shape != b.shape:
        raise ShapeError(f"maps_a shape {a.shape} differs from maps_b shape {b.shape}; compare maps of the same samples and size")
    if top_percent is not None and any(not 0 < int(p) <= 100 for p in top_percent):
        raise ConfigError(f"top_percent values must lie in (0, 100], got {list(top_percent)}")
    keys = list(metrics) if metrics is not None else drift_keys(top_percent)
    fns = {k: _metric_fn(k) for k in keys}
    n_maps, h, w = a.shape
    fa, fb = a.reshape(n_maps, h * w), b.reshape(n_maps, h * w)
    parts = []
    for s in range(0, n_maps, CHUNK_ROWS):  # row chunks bound the temporaries; vectorised inside
        va, vb = np.abs(fa[s : s + CHUNK_ROWS]), np.abs(fb[s : s + CHUNK_ROWS])
        check_finite(va.max(axis=1), "maps_a")
        check_finite(vb.max(axis=1), "maps_b")
        batch = PairBatch(va, vb, (h, w))
        parts.append({k: fn(batch) for k, fn in fns.items()})
    if not parts:
        return {k: np.zeros(0) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in keys}
