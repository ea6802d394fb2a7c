"""Similarity of two attribution maps of the same image, as the sanity checks of Adebayo et al.
(2018, *Sanity Checks for Saliency Maps*, NeurIPS) measure it: the map of the original model
against the map of a model whose weights (or training labels) were randomised.

Three measures, each one registered function over a whole batch ``(N, H, W)`` of map pairs (no
per-sample loop), each with its reference implementation named so tests compare against it:

* ``sanity_spearman``: Spearman rank correlation of ``|map|`` (``scipy.stats.spearmanr``: average
  ranks for ties, then Pearson correlation of the ranks);
* ``sanity_ssim``: structural similarity (``skimage.metrics.structural_similarity`` with its
  defaults: 7×7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, mean over the pixels at
  least 3 from the border) of ``|map|`` scaled to [0, 1] by each map's own maximum, ``data_range=1``;
* ``sanity_hog``: Pearson correlation of the HOG descriptors (``skimage.feature.hog`` with its
  defaults: 9 orientations, 8×8-pixel cells, 3×3-cell blocks, L2-Hys) of the same scaled ``|map|``;
  maps smaller than 24 pixels get smaller cells (``side // 3``) so that one block fits.

A constant map has no ranking and no gradients, where scipy's correlations are undefined (NaN):
against a non-constant map its rank and HOG correlations are taken as 0 (nothing of the other
map's structure is left), two constant maps as 1 (neither map has structure, so none changed);
every stored value is a number.

The names carry the ``sanity_`` prefix because the values are stored in the drift table
(:class:`db.DriftMetric`, rows with ``selection = "sanity"``): the prefix keeps them apart from any
registered drift metric, whose readers select rows by metric name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage
from scipy.stats import rankdata

from xai_core.errors import ShapeError
from xai_core.metrics._arrays import to_numpy
from xai_core.metrics.registry import MetricSpec, spec_builder
from xai_core.registry import Registry

SANITY_SIMILARITIES: Registry[MetricSpec] = Registry("sanity similarity")
PAPER = "Adebayo et al. 2018, Sanity Checks for Saliency Maps (NeurIPS)"

SSIM_WIN = 7  # skimage's default window (uniform filter)
SSIM_K1, SSIM_K2 = 0.01, 0.03
HOG_ORIENTATIONS, HOG_CELL, HOG_BLOCK = 9, 8, 3  # skimage.feature.hog defaults
HOG_EPS = 1e-5


def register_sanity_similarity(name: str, *, label: str, value_range: tuple[float, float], help: str = "",
                               paper: str = PAPER) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator: register ``fn(a, b) -> (N,)`` (two ``(N, H, W)`` map batches) as a sanity
    similarity; higher means the maps stayed more alike (``better="higher"``: a map that does not
    change when the model does is what the check flags, so "better" here reads "more similar")."""
    return SANITY_SIMILARITIES.register(spec_builder(name, label, help, "higher", value_range, paper))


def list_sanity_similarities() -> list[str]:
    """Registered sanity similarity names, in registration order."""
    return SANITY_SIMILARITIES.list()


def _maps64(x: object) -> np.ndarray:
    """``(N, H, W)`` float64 maps from numpy/torch (no precision lost); ShapeError on another rank."""
    arr = np.asarray(to_numpy(x), dtype=np.float64)
    if arr.ndim != 3:
        raise ShapeError(f"maps must be an (N, H, W) array, got shape {tuple(arr.shape)}; "
                         "pass a batch of 2-D maps (add a leading axis for a single map)")
    return arr


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both batches as float64 ``(N, H, W)`` of the same shape."""
    x, y = _maps64(a), _maps64(b)
    if x.shape != y.shape:
        raise ShapeError(f"map batches differ in shape: {x.shape} vs {y.shape}; compare maps of the same images")
    return x, y


def unit_abs(maps: np.ndarray) -> np.ndarray:
    """``|map|`` divided by each map's maximum (an all-zero map stays 0): ``(N, H, W)`` float64 in [0, 1]."""
    x = np.abs(np.asarray(maps, dtype=np.float64))
    peak = x.reshape(len(x), -1).max(axis=1)
    return x / np.where(peak > 0, peak, 1.0)[:, None, None]


def _row_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` (N, D) with the same row of ``y``; a constant row
    against a non-constant one gives 0, two constant rows 1."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    sx = np.sqrt((xc * xc).sum(axis=1))
    sy = np.sqrt((yc * yc).sum(axis=1))
    flat_x = sx <= 1e-12 * np.maximum(np.abs(x).max(axis=1), 1e-300)
    flat_y = sy <= 1e-12 * np.maximum(np.abs(y).max(axis=1), 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / (sx * sy)
    r = np.clip(r, -1.0, 1.0)
    return np.where(flat_x & flat_y, 1.0, np.where(flat_x | flat_y, 0.0, r))


@register_sanity_similarity("sanity_spearman", label="Spearman rank correlation of |map|", value_range=(-1.0, 1.0),
                            help="Rank correlation of the two maps' absolute values over the pixels "
                                 "(scipy.stats.spearmanr); 1: the same pixel ranking")
def spearman_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``spearmanr(|a_i|.ravel(), |b_i|.ravel())`` per pair (average ranks for ties), ``(N,)``."""
    x, y = _pair(a, b)
    n = len(x)
    rx = rankdata(np.abs(x).reshape(n, -1), axis=1)
    ry = rankdata(np.abs(y).reshape(n, -1), axis=1)
    return _row_correlation(rx, ry)


def _box_mean(x: np.ndarray, win: int) -> np.ndarray:
    """Mean of every ``win × win`` window fully inside each image (valid mode): the batch's uniform
    filter (one call, image axes only) cropped by ``win // 2`` on every side."""
    pad = win // 2
    return ndimage.uniform_filter(x, size=(1, win, win))[:, pad:x.shape[1] - pad, pad:x.shape[2] - pad]


@register_sanity_similarity("sanity_ssim", label="SSIM of |map| (scaled to its maximum)", value_range=(-1.0, 1.0),
                            help="Structural similarity (skimage.metrics.structural_similarity, 7×7 window) of the "
                                 "two maps' absolute values, each scaled to [0, 1]; 1: the same map")
def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean SSIM per pair of :func:`unit_abs` maps, equal to ``structural_similarity(x, y,
    data_range=1.0)`` of skimage: its uniform filter's outputs are only averaged where the 7×7
    window lies inside the image, so the valid-mode window means here are exactly those."""
    x, y = _pair(a, b)
    if min(x.shape[1:]) < SSIM_WIN:
        raise ShapeError(f"SSIM needs maps of at least {SSIM_WIN}x{SSIM_WIN} pixels (got {x.shape[1]}x{x.shape[2]})")
    x, y = unit_abs(x), unit_abs(y)
    cov_norm = SSIM_WIN * SSIM_WIN / (SSIM_WIN * SSIM_WIN - 1.0)  # sample covariance, as skimage
    ux, uy = _box_mean(x, SSIM_WIN), _box_mean(y, SSIM_WIN)
    vx = cov_norm * (_box_mean(x * x, SSIM_WIN) - ux * ux)
    vy = cov_norm * (_box_mean(y * y, SSIM_WIN) - uy * uy)
    vxy = cov_norm * (_box_mean(x * y, SSIM_WIN) - ux * uy)
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(len(s), -1).mean(axis=1)


def hog_cell(height: int, width: int, block: int = HOG_BLOCK) -> int:
    """The HOG cell side for maps of ``height × width``: skimage's 8 pixels, or ``side // block``
    when fewer than ``block`` such cells fit (at least 1)."""
    return max(1, min(HOG_CELL, min(height, width) // block))


def hog_features(maps: np.ndarray, orientations: int = HOG_ORIENTATIONS, cell: int = HOG_CELL,
                 block: int = HOG_BLOCK) -> np.ndarray:
    """HOG descriptors of a batch of grey images ``(N, H, W)``: ``(N, D)`` float64, the same vector as
    ``skimage.feature.hog(image, orientations, (cell, cell), (block, block), "L2-Hys")`` per image.

    Central-difference gradients (0 on the border rows/columns), unsigned orientation in [0°, 180°)
    binned by magnitude into ``orientations`` bins per ``cell × cell`` tile, then each block of
    ``block × block`` cells L2-normalised, clipped at 0.2 and renormalised.
    """
    x = _maps64(maps)
    n, h, w = x.shape
    rows, cols = h // cell, w // cell
    if rows < block or cols < block:
        raise ShapeError(f"HOG needs maps of at least {block * cell}x{block * cell} pixels (got {h}x{w})")
    g_row = np.zeros_like(x)
    g_col = np.zeros_like(x)
    g_row[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    magnitude = np.hypot(g_col, g_row)
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    # bin edges as skimage's compiled loop computes them (single precision)
    step = np.float32(180.0 / orientations)
    edges = np.array([np.float32(step * np.float32(i)) for i in range(1, orientations)], dtype=np.float64)
    bins = (angle[..., None] >= edges).sum(axis=-1)
    mag = magnitude[:, : rows * cell, : cols * cell]
    idx = bins[:, : rows * cell, : cols * cell]
    # one histogram bin per (image, cell row, cell column, orientation), summed in one bincount
    cell_r = (np.arange(rows * cell) // cell)[None, :, None]
    cell_c = (np.arange(cols * cell) // cell)[None, None, :]
    image = np.arange(n)[:, None, None]
    flat = ((image * rows + cell_r) * cols + cell_c) * orientations + idx
    hist = np.bincount(flat.ravel(), weights=mag.ravel(), minlength=n * rows * cols * orientations)
    hist = hist.reshape(n, rows, cols, orientations) / (cell * cell)
    blocks = sliding_window_view(hist, (block, block), axis=(1, 2))  # (N, br, bc, O, b, b)
    blocks = np.moveaxis(blocks, 3, -1)  # (N, br, bc, b, b, O): skimage's layout
    flat = blocks.reshape(*blocks.shape[:3], -1)
    out = flat / np.sqrt((flat * flat).sum(axis=-1, keepdims=True) + HOG_EPS**2)
    out = np.minimum(out, 0.2)
    out = out / np.sqrt((out * out).sum(axis=-1, keepdims=True) + HOG_EPS**2)
    return out.reshape(n, -1)


@register_sanity_similarity("sanity_hog", label="HOG correlation of |map|", value_range=(-1.0, 1.0),
                            help="Pearson correlation of the HOG descriptors (skimage.feature.hog defaults) of the "
                                 "two maps' absolute values, each scaled to [0, 1]; 1: the same edge structure")
def hog_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of :func:`hog_features` of the :func:`unit_abs` maps (cells of
    :func:`hog_cell`), ``(N,)``."""
    x, y = _pair(a, b)
    cell = hog_cell(*x.shape[1:])
    return _row_correlation(hog_features(unit_abs(x), cell=cell), hog_features(unit_abs(y), cell=cell))


def similarities(a: np.ndarray, b: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """``{name: (N,) values}`` of the registered sanity similarities (or ``names``) between map batches."""
    return {k: np.asarray(SANITY_SIMILARITIES.get(k).fn(a, b), dtype=np.float64)
            for k in (names or list_sanity_similarities())}
