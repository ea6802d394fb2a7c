"""Array plumbing shared by the metric modules: input checks, row-wise ranks, deterministic top-k.

Everything works on flattened batches ``(N, P)`` with ``P = H * W`` pixels; no per-sample loops.
Tie-break convention used everywhere: pixels are ordered by value (descending for "top") and,
among equal values, by flat index ascending (row-major), so results never depend on the sort
algorithm.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from xai_core.errors import InvalidValueError, ShapeError


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view/copy of a numpy array or a torch tensor (detached, on the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_maps(x: Any, name: str = "attributions") -> np.ndarray:
    """``(N, H, W)`` float32 maps from numpy/torch; raises ShapeError on a wrong rank."""
    arr = to_numpy(x)
    if arr.ndim != 3:
        raise ShapeError(
            f"{name} must be an (N, H, W) array, got shape {tuple(arr.shape)}; "
            "pass a batch of 2-D maps (add a leading axis for a single map)"
        )
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr


def as_masks(x: Any, shape: tuple[int, ...], name: str = "masks") -> np.ndarray:
    """``(N, H, W)`` boolean masks matching ``shape``."""
    arr = to_numpy(x)
    if tuple(arr.shape) != tuple(shape):
        raise ShapeError(
            f"{name} shape {tuple(arr.shape)} does not match the maps' shape {tuple(shape)}; "
            "give one mask per map with the same height and width"
        )
    return arr.astype(bool, copy=False)


def check_finite(row_max: np.ndarray, name: str = "attributions") -> None:
    """Raise InvalidValueError when a row maximum (which propagates NaN/Inf) is not finite."""
    bad = ~np.isfinite(row_max)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InvalidValueError(
            f"{name} contain NaN or Inf (first bad map at index {first}); "
            "recompute the maps or replace non-finite values before evaluating"
        )


def diagonal(h: int, w: int) -> float:
    """Largest distance between two pixel centres: ``sqrt((H-1)^2 + (W-1)^2)`` (at least 1)."""
    return float(max(np.hypot(h - 1, w - 1), 1.0))


def top_k_mask_sorted(values: np.ndarray, sorted_vals: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(N, P)``: each row's ``k`` largest entries given its ascending sorted copy.

    Threshold ``t = sorted[P - k]``; pixels ``> t`` are in; of the pixels ``== t`` the first
    ``k - #(> t)`` in row-major order are in (recounted only for rows whose tie group straddles
    the cut, i.e. ``sorted[P-k-1] == t``), so the set never depends on the sort algorithm.
    """
    n_rows, n_pix = values.shape
    k = int(min(max(k, 0), n_pix))
    if k == 0:
        return np.zeros((n_rows, n_pix), dtype=bool)
    thr = sorted_vals[:, n_pix - k]
    out = values >= thr[:, None]
    if k < n_pix:
        straddle = np.flatnonzero(sorted_vals[:, n_pix - k - 1] == thr)
        if straddle.size:
            v = values[straddle]
            t = thr[straddle][:, None]
            gt = v > t
            need = k - gt.sum(axis=1)
            eq = v == t
            out[straddle] = gt | (eq & (np.cumsum(eq, axis=1) <= need[:, None]))
    return out


_POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))


def _sort_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows by packing ``(value bits << s) | flat index`` into int64 keys and sorting values.

    For non-negative float32 the IEEE bit pattern read as int32 is monotone in the value, so one
    plain integer sort (SIMD quicksort, no argsort) gives the sorted values *and* the order, with
    ties ordered by flat index (deterministic, like a stable argsort).
    """
    n_pix = values.shape[1]
    shift = max(1, int(np.ceil(np.log2(max(n_pix, 2)))))
    bits = values.view(np.int32)
    if values.size and values.min() < 0:  # signed floats: flip so the int order is the float order
        bits = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
    key = bits.astype(np.int64)
    key <<= shift
    key |= np.arange(n_pix, dtype=np.int64)
    key.sort(axis=1)
    order = key & ((1 << shift) - 1)
    key >>= shift
    sorted_bits = key.astype(np.int32)
    if values.size and values.min() < 0:
        sorted_bits = sorted_bits ^ ((sorted_bits >> 31) & np.int32(0x7FFFFFFF))
    return sorted_bits.view(np.float32), order


def sorted_with_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ascending sort of float32 rows: ``(sorted_values, order)`` with
    ``values[i, order[i]] == sorted_values[i]`` and ties ordered by flat index.

    Rows are split across a small thread pool (numpy releases the GIL while sorting).
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    n_rows = values.shape[0]
    workers = _POOL._max_workers
    if n_rows < 2 * workers or workers == 1:
        return _sort_keys(values)
    bounds = np.linspace(0, n_rows, workers + 1).astype(int)
    parts = list(_POOL.map(lambda b: _sort_keys(values[b[0] : b[1]]), zip(bounds[:-1], bounds[1:])))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def sort_rows(values: np.ndarray) -> np.ndarray:
    """``np.sort(values, axis=1)`` with the rows split across the thread pool (GIL released)."""
    n_rows = values.shape[0]
    workers = _POOL._max_workers
    if n_rows < 2 * workers or workers == 1:
        return np.sort(values, axis=1)
    bounds = np.linspace(0, n_rows, workers + 1).astype(int)
    out = np.empty_like(values)

    def _one(b: tuple[int, int]) -> None:
        out[b[0] : b[1]] = np.sort(values[b[0] : b[1]], axis=1)

    list(_POOL.map(_one, zip(bounds[:-1], bounds[1:])))
    return out


def average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise average ranks (1-based, ties share their mean rank) and the ascending sorted rows.

    One packed-key sort per row (:func:`sorted_with_order`). Tie groups are runs of equal
    neighbours in the sorted rows, found from one flat ``nonzero`` of ``sorted[1:] == sorted[:-1]``;
    only tied entries are rewritten, so ties cost work proportional to their number.
    """
    n_rows, n_pix = values.shape
    sorted_vals, order = sorted_with_order(values)
    ranks_sorted = np.broadcast_to(np.arange(1, n_pix + 1, dtype=np.float32), (n_rows, n_pix)).copy()
    same = sorted_vals[:, 1:] == sorted_vals[:, :-1]
    flat = np.flatnonzero(same)  # (r, c): sorted entry c+1 ties with entry c
    if flat.size:
        r, c = np.divmod(flat, n_pix - 1)
        # runs of consecutive c in the same row are one tie group spanning c0 .. c0 + L
        new_run = np.ones(flat.size, dtype=bool)
        new_run[1:] = (np.diff(flat) != 1) | (r[1:] != r[:-1])
        run = np.cumsum(new_run) - 1
        first = c[new_run]
        length = np.bincount(run)  # L pairs -> L + 1 members
        avg = (first + length / 2.0 + 1.0).astype(np.float32)
        ranks_sorted[r, c] = avg[run]
        ranks_sorted[r, c + 1] = avg[run]
    ranks = np.empty_like(ranks_sorted)
    np.put_along_axis(ranks, order, ranks_sorted, axis=1)
    return ranks, sorted_vals


def rowwise_pearson(
    x: np.ndarray, y: np.ndarray, const_x: np.ndarray | None = None, const_y: np.ndarray | None = None
) -> np.ndarray:
    """Pearson correlation of matching rows; a constant row gives 0 (1 when both are constant).

    Means in float64, centred rows and SIMD dot products in float32 (relative error ~1e-6).
    """
    xc = x - x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    yc = y - y.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    num = np.einsum("ij,ij->i", xc, yc).astype(np.float64)
    den = np.sqrt(np.einsum("ij,ij->i", xc, xc).astype(np.float64) * np.einsum("ij,ij->i", yc, yc))
    const_x = x.min(axis=1) == x.max(axis=1) if const_x is None else const_x
    const_y = y.min(axis=1) == y.max(axis=1) if const_y is None else const_y
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    r = np.where(const_x & const_y, 1.0, np.where(const_x | const_y, 0.0, r))
    return np.clip(r, -1.0, 1.0)
