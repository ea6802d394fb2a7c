"""Faithfulness metrics: does the model's output follow the map when the pixels it ranks are removed?

Unlike the ground-truth metrics these need the **model**: every metric perturbs the image
according to the map and runs forward passes. All of them are batched over images and
perturbation steps on the device — one big tensor of perturbed images per piece of the chunk
(pieces only bound memory), no per-sample Python loops — and return one value per map.

* **Deletion / insertion** (Petsiuk et al. 2018, RISE, BMVC; Quantus ``PixelFlipping``, Bach et al.
  2015): pixels are ranked by the map, most relevant first (ties: flat index ascending), and removed
  ``P / steps`` at a time (deletion: replaced by the removal value; insertion: the removal image is
  restored pixel by pixel). The curve is the target-class score at the ``steps + 1`` points
  ``0, 1/steps, …, 1`` of the removed fraction and the value its area (trapezoid rule over [0, 1]).
  Removal values: ``zero``, ``mean`` (the dataset's mean intensity) or ``blur`` (a Gaussian-blurred
  copy of the image, scipy's ``gaussian_filter`` with mode ``reflect``). ``steps`` must divide the
  number of pixels (Quantus' ``features_in_step`` rule).
* **ROAD** (Rong et al. 2022, ICML; as pytorch-grad-cam's ``ROADMostRelevantFirst`` /
  ``ROADLeastRelevantFirst``): at percentile ``p`` MoRF removes the pixels whose map value is at or
  above the map's ``p``-th percentile, LeRF those whose ``1 - value`` is (numpy's linear
  percentile), and imputes them by *noisy linear imputation*: each removed pixel is the weighted
  mean of its 8 neighbours (1/6 edge, 1/12 diagonal) — a sparse linear system grad-cam solves
  with ``spsolve`` per image, solved here for the whole batch at once by multigrid-preconditioned
  conjugate gradients on the device — plus Gaussian noise (``noise`` × N(0, 1), in image units).
  The value is the mean over the percentiles of ``score(imputed) − score(image)``
  (grad-cam's ``AveragerAcrossThresholds``).
* **Faithfulness correlation** (Bhatt et al. 2020, IJCAI; Quantus ``FaithfulnessCorrelation``):
  ``runs`` random subsets of ``subset`` pixels are replaced by the removal value; the value is the
  Pearson correlation, over the runs, between the map's sum on the subset and the drop of the
  target score. Subsets (and ROAD's noise) are a pure function of (seed, sample key, run, pixel)
  (counter-based hashing), so a sample's value does not depend on the chunk it is computed in.

Scores are the target class's softmax probability (``output=probability``) or logit
(``output=logit``); the map is ranked as stored (signed maps: positive evidence first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.inputs import as_images, model_input, preprocessed
from xai_core.attribution.registry import Param
from xai_core.config import device as choose_device
from xai_core.errors import InvalidValueError, ShapeError
from xai_core.metrics.registry import FaithfulnessOutput, register_faithfulness_metric

REMOVALS = ("zero", "mean", "blur")
OUTPUTS = ("probability", "logit")
DEFAULT_PERCENTILES = "10,20,30,40,50,60,70,80,90"
# perturbed pixels held at once (one piece of a chunk): bounds memory, not the batching
PIECE_PIXELS = {"cpu": 8 * 2**20, "cuda": 128 * 2**20, "mps": 32 * 2**20}
# pixels per forward pass (images x H x W)
FORWARD_PIXELS = {"cpu": 32 * 128 * 128, "cuda": 512 * 128 * 128, "mps": 128 * 128 * 128}


# ------------------------------------------------------------------------------------------
# the model side: one forward callable on the device
# ------------------------------------------------------------------------------------------
@dataclass
class Forward:
    """``(M, C, H, W)`` images in [0, 1] on ``device`` -> ``(M, K)`` float32 logits, in passes of
    ``rows`` images (grey replicated to the model's channels, its normalisation in front)."""

    net: nn.Module
    device: torch.device
    replicate: Callable[[torch.Tensor], torch.Tensor]
    rows: int = 0
    passes: int = field(default=0)  # forward passes run (benchmarks, tests)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.rows or max(1, FORWARD_PIXELS.get(self.device.type, FORWARD_PIXELS["cpu"])
                                // (x.shape[-1] * x.shape[-2]))
        outs = []
        for start in range(0, x.shape[0], rows):  # passes over the batch, not samples
            outs.append(self.net(self.replicate(x[start:start + rows])).float())
            self.passes += 1
        return torch.cat(outs)


def model_forward(model: nn.Module, device: str | torch.device | None = None, rows: int = 0) -> Forward:
    """A :class:`Forward` of ``model`` in eval mode on ``device`` (default: the configured device)."""
    dev = choose_device(str(device) if device is not None else None)
    model.eval().to(dev)
    return Forward(preprocessed(model, model), dev, model_input(model).replicate, rows)


def target_scores(logits: torch.Tensor, targets: torch.Tensor, output: str) -> torch.Tensor:
    """``(M,)`` float64 score of each row's target class: softmax probability or logit."""
    if output not in OUTPUTS:
        raise InvalidValueError(f"output must be one of {', '.join(OUTPUTS)} (got {output!r})")
    vals = torch.softmax(logits.double(), dim=1) if output == "probability" else logits.double()
    return vals.gather(1, targets.view(-1, 1).to(vals.device)).view(-1)


# ------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------
def _pieces(n: int, rows_per_sample: int, pixels: int, device: torch.device) -> list[slice]:
    """Sample slices whose perturbed images (``rows_per_sample`` each) fit one piece of memory."""
    budget = PIECE_PIXELS.get(device.type, PIECE_PIXELS["cpu"])
    per = max(1, budget // max(1, rows_per_sample * pixels))
    return [slice(s, min(s + per, n)) for s in range(0, n, per)]


def _inputs(images: Any, maps: Any, targets: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``(N, C, H, W)``, maps ``(N, H, W)`` float32 and targets ``(N,)`` int64 on ``device``."""
    x = as_images(images).to(device)
    a = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).to(device, torch.float32)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[0] != x.shape[0] or tuple(a.shape[1:]) != tuple(x.shape[2:]):
        raise ShapeError(f"maps must be (N, H, W) matching the images {tuple(x.shape)}; got {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise InvalidValueError("maps contain NaN or Inf values; recompute them")
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    t = t.to(device, torch.int64).view(-1)
    if t.shape[0] != x.shape[0]:
        raise ShapeError(f"targets must hold one class per image ({x.shape[0]}); got {t.shape[0]}")
    return x, a, t


def ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` int64: each pixel's position when the map is sorted descending (ties: flat index
    ascending), i.e. 0 for the most relevant pixel."""
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.sort(-flat, dim=1, stable=True).indices
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return out


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)``: scipy ``gaussian_filter(sigma, mode='reflect',
    truncate=4)`` per image and channel (weights ``exp(-x²/2σ²)`` normalised, edges mirrored)."""
    if sigma <= 0:
        raise InvalidValueError(f"blur_sigma must be > 0 (got {sigma})")
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    k = torch.as_tensor(kernel / kernel.sum(), dtype=torch.float32, device=images.device)
    n, c, h, w = images.shape
    x = images.reshape(n * c, 1, h, w)
    rows = torch.as_tensor(np.pad(np.arange(h), radius, mode="symmetric"), device=images.device)
    cols = torch.as_tensor(np.pad(np.arange(w), radius, mode="symmetric"), device=images.device)
    x = F.conv2d(x.index_select(2, rows), k.view(1, 1, -1, 1))
    x = F.conv2d(x.index_select(3, cols), k.view(1, 1, 1, -1))
    return x.reshape(n, c, h, w)


def removal_images(images: torch.Tensor, removal: str, mean_value: float | None = None,
                   blur_sigma: float = 5.0) -> torch.Tensor:
    """What removed pixels are replaced with, ``(N, C, H, W)``: ``zero``, ``mean`` (``mean_value``,
    default the batch mean) or ``blur`` (:func:`gaussian_blur`)."""
    if removal == "zero":
        return torch.zeros_like(images)
    if removal == "mean":
        value = float(images.mean()) if mean_value is None else float(mean_value)
        return torch.full_like(images, value)
    if removal == "blur":
        return gaussian_blur(images, blur_sigma)
    raise InvalidValueError(f"removal must be one of {', '.join(REMOVALS)} (got {removal!r})")


_M32 = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two xor-shift-multiply rounds) on int64 tensors holding [0, 2^32)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def hashed(seed: int, *streams: torch.Tensor) -> torch.Tensor:
    """Counter-based pseudo-random 32-bit integers: a hash of ``seed`` and the broadcast ``streams``
    (e.g. sample key, run, pixel), independent of how the work is chunked."""
    h = torch.as_tensor(int(seed) & _M32, dtype=torch.int64, device=streams[0].device)
    for s in streams:
        h = _mix((h ^ (s.to(torch.int64) & _M32)) & _M32)
    return h


def hashed_normal(seed: int, *streams: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 values from :func:`hashed` (Box–Muller of two hashed uniforms)."""
    one = torch.ones((), dtype=torch.int64, device=streams[0].device)
    u1 = (hashed(seed, *streams, one).double() + 0.5) / 2.0**32
    u2 = (hashed(seed, *streams, one * 2).double() + 0.5) / 2.0**32
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * np.pi * u2)).float()


def _keys(sample_keys: Any, n: int, device: torch.device) -> torch.Tensor:
    keys = torch.arange(n) if sample_keys is None else torch.as_tensor(np.asarray(sample_keys), dtype=torch.int64)
    if keys.shape != (n,):
        raise ShapeError(f"sample_keys must hold one key per image ({n}); got shape {tuple(keys.shape)}")
    return keys.to(device)


# ------------------------------------------------------------------------------------------
# deletion and insertion
# ------------------------------------------------------------------------------------------
def check_steps(steps: int, hw: tuple[int, int]) -> None:
    """``steps`` must be >= 1 and divide the ``H × W`` pixels (every step removes as many)."""
    pixels = hw[0] * hw[1]
    if steps < 1 or pixels % steps:
        divisors = [d for d in (4, 8, 16, 32, 64, 128, 256) if pixels % d == 0 and d <= pixels]
        raise InvalidValueError(
            f"steps={steps} does not divide the {pixels} pixels of a {hw[0]}x{hw[1]} image; "
            f"choose a divisor, e.g. {', '.join(map(str, divisors[:4])) or 1}")


def perturbation_curves(forward: Forward, images: Any, maps: Any, targets: Any, *, steps: int = 16,
                        removal: str = "zero", mean_value: float | None = None, blur_sigma: float = 5.0,
                        output: str = "probability", insertion: bool = False) -> np.ndarray:
    """``(N, steps + 1)`` deletion (or insertion) curves: the target score after removing (or
    restoring) the ``j · P / steps`` most relevant pixels, ``j = 0 … steps``."""
    x, a, t = _inputs(images, maps, targets, forward.device)
    n, c, h, w = x.shape
    check_steps(steps, (h, w))
    fill = removal_images(x, removal, mean_value, blur_sigma)
    rank = ranks(a)
    cut = torch.arange(steps + 1, device=x.device) * (h * w // steps)  # pixels removed at each point
    out = torch.empty((n, steps + 1), dtype=torch.float64)
    for part in _pieces(n, steps + 1, c * h * w, x.device):
        m = (rank[part, None, :] < cut[None, :, None]).view(-1, steps + 1, 1, h, w)  # (n, S+1, 1, H, W)
        src, dst = (fill[part], x[part]) if insertion else (x[part], fill[part])
        pert = torch.where(m, dst[:, None], src[:, None]).reshape(-1, c, h, w)
        tt = t[part].repeat_interleave(steps + 1)
        out[part] = target_scores(forward(pert), tt, output).view(-1, steps + 1).cpu()
    return out.numpy()


def curve_auc(curves: np.ndarray) -> np.ndarray:
    """Area under ``(N, L)`` curves sampled at ``L`` equally spaced points of [0, 1] (trapezoid rule)."""
    c = np.asarray(curves, dtype=np.float64)
    return (c[:, 1:] + c[:, :-1]).sum(axis=1) / (2.0 * (c.shape[1] - 1))


# ------------------------------------------------------------------------------------------
# ROAD
# ------------------------------------------------------------------------------------------
def parse_percentiles(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"10,20,…"`` (or numbers) -> percentiles, each strictly between 0 and 100."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    try:
        values = tuple(float(v) for v in items if v != "")
    except ValueError:
        raise InvalidValueError(f"percentiles must be numbers separated by commas, e.g. {DEFAULT_PERCENTILES} "
                                f"(got {text!r})") from None
    bad = [v for v in values if not 0.0 < v < 100.0]
    if not values or bad:
        raise InvalidValueError(f"ROAD percentile {bad[0] if bad else text!r} is out of range; each percentile must "
                                f"be strictly between 0 and 100, e.g. {DEFAULT_PERCENTILES}")
    return values


def _percentile(sorted_rows: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's default (``linear``) percentile of each sorted row, with numpy's ``_lerp``."""
    p = sorted_rows.shape[1]
    pos = q / 100.0 * (p - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, p - 1)
    frac = pos - lo
    a, b = sorted_rows[:, lo], sorted_rows[:, hi]
    diff = b - a
    return b - diff * (1.0 - frac) if frac >= 0.5 else a + diff * frac


def _stencil(x: torch.Tensor) -> torch.Tensor:
    """``Σ_j w_j x(i + o_j)`` over the 8 neighbours (edge 1/6, diagonal 1/12), zero outside: ``(B, H, W)``.

    Separable: the weights are ``[1 2 1]ᵀ[1 2 1] / 12`` without the centre (``1/3``), applied as
    two in-place shifted sums (17x faster on the CPU than eight shifted slices)."""
    y = torch.add(x, x)
    y[:, 1:, :].add_(x[:, :-1, :])
    y[:, :-1, :].add_(x[:, 1:, :])
    z = torch.add(y, y)
    z[:, :, 1:].add_(y[:, :, :-1])
    z[:, :, :-1].add_(y[:, :, 1:])
    return z.mul_(1.0 / 12.0).sub_(x, alpha=1.0 / 3.0)


class _Level:
    """One grid of the multigrid hierarchy: unknown mask ``u`` (B, h, w) and neighbour weight sums ``d``."""

    def __init__(self, u: torch.Tensor) -> None:
        self.u = u
        self.d = _stencil(torch.ones((1, *u.shape[1:]), device=u.device, dtype=u.dtype))
        self.step = u * ((2.0 / 3.0) / self.d)  # damped Jacobi (ω = 2/3) step, zero on known pixels

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``A x = U (D x − W (U x))``: the imputation operator on the unknown pixels."""
        return self.u * (self.d * x - _stencil(self.u * x))

    def smooth(self, e: torch.Tensor, r: torch.Tensor, sweeps: int) -> torch.Tensor:
        """``sweeps`` damped Jacobi sweeps on ``A e = r`` (``e`` is zero on known pixels, so the
        sweep is ``e + ω U D⁻¹ (r − D e + W e)``)."""
        for _ in range(sweeps):
            e = e + self.step * (r - self.d * e + _stencil(e))
        return e


_PROLONG = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4.0  # cell-centred bilinear interpolation weights


def _hierarchy(u: torch.Tensor, min_side: int = 8) -> list[_Level]:
    """Grids from ``u`` down by factors of 2 while both sides are even and at least ``2 * min_side``;
    a coarse cell is unknown when its four children are (the known region only grows)."""
    levels = [_Level(u)]
    while all(side % 2 == 0 and side >= 2 * min_side for side in levels[-1].u.shape[1:]):
        levels.append(_Level((F.avg_pool2d(levels[-1].u[:, None], 2)[:, 0] == 1.0).to(u.dtype)))
    return levels


def _v_cycle(levels: list[_Level], k: int, r: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A symmetric multigrid V-cycle for ``A_k e = r`` (2 Jacobi sweeps before and after, restriction
    the transpose of bilinear prolongation, coarse operators rediscretised): the CG preconditioner."""
    lvl = levels[k]
    if k == len(levels) - 1:
        return lvl.smooth(torch.zeros_like(r), r, 24)
    e = lvl.smooth(torch.zeros_like(r), r, 2)
    coarse = levels[k + 1]
    rc = coarse.u * F.conv2d((r - lvl.apply(e))[:, None], kernel, stride=2, padding=1)[:, 0]
    ec = _v_cycle(levels, k + 1, rc, kernel)
    e = e + lvl.u * F.conv_transpose2d(ec[:, None], kernel, stride=2, padding=1)[:, 0]
    return lvl.smooth(e, r, 2)


def linear_imputation(images: torch.Tensor, removed: torch.Tensor, tol: float = 1e-6,
                      max_iter: int = 500) -> torch.Tensor:
    """ROAD's linear imputation (Rong et al. 2022) of ``(B, C, H, W)`` images where ``removed``
    ``(B, H, W)`` is True, for the whole batch at once.

    Every removed pixel equals the weighted mean of its in-image neighbours: ``(D − W_UU) x =
    W_UK · image`` with ``D`` the sum of in-image neighbour weights — the system pytorch-grad-cam's
    ``NoisyLinearImputer`` solves with ``spsolve``. It is symmetric positive definite whenever some
    pixel is kept (the 8-neighbour grid is connected); it is solved by conjugate gradients
    preconditioned with a multigrid V-cycle (a few tens of iterations whatever the hole size,
    where plain Jacobi preconditioning needs hundreds on large holes) until ``‖r‖ ≤ tol · ‖b‖``
    for every system. An image with every pixel removed has no boundary values and is imputed
    with zeros.
    """
    b_, c, h, w = images.shape
    u = removed.to(torch.float32).repeat_interleave(c, dim=0)  # (B*C, H, W)
    img = images.reshape(b_ * c, h, w).to(torch.float32)
    levels = _hierarchy(u)
    fine = levels[0]
    kernel = torch.outer(_PROLONG, _PROLONG).to(images.device).view(1, 1, 4, 4)
    rhs = u * _stencil(img * (1.0 - u))
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = _v_cycle(levels, 0, r, kernel)
    p = z.clone()
    rz = (r * z).sum(dim=(1, 2))
    goal = (tol * torch.linalg.vector_norm(rhs, dim=(1, 2))) ** 2
    for _ in range(max_iter):
        if bool(((r * r).sum(dim=(1, 2)) <= goal).all()):
            break
        ap = fine.apply(p)
        pap = (p * ap).sum(dim=(1, 2))
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, 1.0), 0.0)
        x = x + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * ap
        z = _v_cycle(levels, 0, r, kernel)
        rz_new = (r * z).sum(dim=(1, 2))
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta[:, None, None] * p
        rz = rz_new
    return (img * (1.0 - u) + x * u).reshape(b_, c, h, w)


def road_scores(forward: Forward, images: Any, maps: Any, targets: Any, *, order: str = "morf",
                percentiles: str | Sequence[float] = DEFAULT_PERCENTILES, noise: float = 0.01, seed: int = 0,
                sample_keys: Any = None, output: str = "probability", tol: float = 1e-6) -> np.ndarray:
    """``(N, L)`` ROAD score changes ``score(imputed) − score(image)`` at each of the ``L``
    percentiles (``order``: ``morf`` most relevant first, ``lerf`` least relevant first)."""
    if order not in ("morf", "lerf"):
        raise InvalidValueError(f"ROAD order must be morf or lerf (got {order!r})")
    qs = parse_percentiles(percentiles)
    x, a, t = _inputs(images, maps, targets, forward.device)
    n, c, h, w = x.shape
    keys = _keys(sample_keys, n, x.device)
    v = a.reshape(n, -1)
    v = v if order == "morf" else 1.0 - v  # grad-cam's LeRF ranks 1 - cam
    srt = torch.sort(v, dim=1).values
    removed = torch.stack([v >= _percentile(srt, q)[:, None] for q in qs], dim=1)  # (N, L, P)
    base = target_scores(forward(x), t, output).cpu()
    out = torch.empty((n, len(qs)), dtype=torch.float64)
    pix = torch.arange(h * w, device=x.device)
    for part in _pieces(n, len(qs), c * h * w * 4, x.device):  # CG holds ~4 copies
        k = part.stop - part.start
        rem = removed[part].reshape(-1, h, w)
        imp = linear_imputation(x[part].repeat_interleave(len(qs), dim=0), rem)
        if noise > 0:
            z = hashed_normal(seed, keys[part].view(-1, 1, 1, 1), torch.arange(len(qs), device=x.device).view(1, -1, 1, 1),
                              torch.arange(c, device=x.device).view(1, 1, -1, 1), pix.view(1, 1, 1, -1))
            imp = imp + noise * z.reshape(-1, c, h, w) * rem[:, None]
        tt = t[part].repeat_interleave(len(qs))
        out[part] = target_scores(forward(imp), tt, output).view(k, len(qs)).cpu() - base[part, None]
    return out.numpy()


# ------------------------------------------------------------------------------------------
# faithfulness correlation
# ------------------------------------------------------------------------------------------
def _all_pixel_subsets(n_pixels: int, subset: int, base: torch.Tensor) -> torch.Tensor:
    """Subsets from a hashed key per pixel: the ``subset`` smallest keys (``O(P)`` per run)."""
    pix = torch.arange(n_pixels, device=base.device)
    key = (_mix(base ^ pix.view(1, 1, -1)) << 21) | pix.view(1, 1, -1)  # unique keys: ties impossible
    return torch.topk(key, subset, dim=2, largest=False, sorted=False).indices


def random_subsets(n_pixels: int, subset: int, runs: int, sample_keys: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``(N, runs, subset)`` pixel indices drawn without replacement, a pure function of (seed,
    sample key, run).

    For ``subset <= P / 4``: ``2 · subset`` hashed draws per run, duplicates dropped (the first
    occurrence kept), the first ``subset`` distinct ones taken — ``O(subset)`` per run; a row that
    (improbably) has fewer distinct draws, and larger subsets, take the ``subset`` pixels with the
    smallest hashed keys (``O(P)``)."""
    if not 1 <= subset <= n_pixels:
        raise InvalidValueError(f"subset={subset} must be between 1 and the {n_pixels} pixels of the image")
    dev = sample_keys.device
    base = hashed(seed, sample_keys.view(-1, 1, 1), torch.arange(runs, device=dev).view(1, -1, 1))
    if 4 * subset > n_pixels:
        return _all_pixel_subsets(n_pixels, subset, base)
    draws = 2 * subset
    pos = torch.arange(draws, device=dev)
    cand = _mix(_mix(base ^ (pos.view(1, 1, -1) + 0x9E37)) ^ 0x79B9) % n_pixels  # (N, R, 2k)
    srt, order = torch.sort(cand, dim=2, stable=True)  # equal values: earliest draw first
    first = torch.ones_like(srt, dtype=torch.bool)
    first[..., 1:] = srt[..., 1:] != srt[..., :-1]
    keep = torch.empty_like(first).scatter_(2, order, first)  # back in draw order
    rank = torch.where(keep, pos.view(1, 1, -1), draws + pos.view(1, 1, -1))
    take = torch.topk(rank, subset, dim=2, largest=False, sorted=True).indices
    out = cand.gather(2, take)
    short = keep.sum(dim=2) < subset
    if bool(short.any()):
        out[short] = _all_pixel_subsets(n_pixels, subset, base.expand(-1, runs, -1)[short][:, None])[:, 0]
    return out


def faithfulness_correlation(forward: Forward, images: Any, maps: Any, targets: Any, *, runs: int = 100,
                             subset: int = 224, removal: str = "zero", mean_value: float | None = None,
                             blur_sigma: float = 5.0, seed: int = 0, sample_keys: Any = None,
                             subsets: Any = None, output: str = "logit") -> np.ndarray:
    """``(N,)`` Pearson correlation over ``runs`` random pixel subsets between the map's sum on the
    subset and the drop of the target score when the subset is replaced by the removal value.

    ``subsets`` ``(N, runs, subset)`` overrides the hashed draw (:func:`random_subsets`); a sample
    whose sums or drops do not vary gives NaN (as scipy's ``pearsonr``)."""
    x, a, t = _inputs(images, maps, targets, forward.device)
    n, c, h, w = x.shape
    keys = _keys(sample_keys, n, x.device)
    if subsets is not None:
        idx_all = torch.as_tensor(np.asarray(subsets), dtype=torch.int64).to(x.device)
        if idx_all.ndim != 3 or idx_all.shape[0] != n:
            raise ShapeError(f"subsets must be (N, runs, subset) with N = {n}; got {tuple(idx_all.shape)}")
        runs, subset = int(idx_all.shape[1]), int(idx_all.shape[2])
    fill = removal_images(x, removal, mean_value, blur_sigma).reshape(n, c, -1)
    base = target_scores(forward(x), t, output)
    flat_a = a.reshape(n, -1).double()
    out = torch.empty(n, dtype=torch.float64)
    for part in _pieces(n, runs, c * h * w, x.device):
        k = part.stop - part.start
        idx = idx_all[part] if subsets is not None else random_subsets(h * w, subset, runs, keys[part], seed)
        sums = flat_a[part].gather(1, idx.reshape(k, -1)).view(k, runs, subset).sum(dim=2)
        pert = x[part].reshape(k, 1, c, -1).expand(k, runs, c, h * w).clone()
        gidx = idx[:, :, None, :].expand(k, runs, c, subset)
        pert.scatter_(3, gidx, fill[part, None].expand(k, runs, c, h * w).gather(3, gidx))
        tt = t[part].repeat_interleave(runs)
        drop = base[part, None] - target_scores(forward(pert.view(-1, c, h, w)), tt, output).view(k, runs)
        out[part] = pearson_rows(sums, drop).cpu()
    return out.numpy()


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row pair of ``(N, R)`` tensors (NaN where a row is constant)."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    den = torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1))
    r = (a * b).sum(dim=1) / den
    return torch.where(den > 0, r.clamp(-1.0, 1.0), torch.full_like(r, float("nan")))


# ------------------------------------------------------------------------------------------
# the registered metrics
# ------------------------------------------------------------------------------------------
@dataclass
class FaithBatch:
    """One chunk as every faithfulness metric reads it: the model and the maps with their images."""

    forward: Forward
    images: np.ndarray  # (N, H, W) or (N, C, H, W) float32 in [0, 1]
    maps: np.ndarray  # (N, H, W) float32
    targets: np.ndarray  # (N,) int64: the class each map explains
    sample_keys: np.ndarray  # (N,) int64: what seeds a sample's random draws (Sample.id)
    mean_value: float | None = None  # removal=mean: the dataset's mean intensity


_OUTPUT = Param("output", str, "probability", "score: the target class's softmax probability or its logit",
                choices=OUTPUTS)
_SIGMA = Param("blur_sigma", float, 5.0, "removal=blur: Gaussian sigma in pixels", minimum=0.1)
_SEED = Param("seed", int, 0, "seed of the random draws (with the sample key)", minimum=0)


def _curve_params(removal: str) -> tuple[Param, ...]:
    return (Param("steps", int, 16, "removal steps; must divide the image's pixels", minimum=1),
            Param("removal", str, removal, "what removed pixels become: zero, mean (dataset mean) or blur",
                  choices=REMOVALS),
            _SIGMA, _OUTPUT)


def _curve(b: FaithBatch, p: dict[str, Any], insertion: bool) -> FaithfulnessOutput:
    curves = perturbation_curves(b.forward, b.images, b.maps, b.targets, steps=p["steps"], removal=p["removal"],
                                 mean_value=b.mean_value, blur_sigma=p["blur_sigma"], output=p["output"],
                                 insertion=insertion)
    return FaithfulnessOutput(curve_auc(curves), curves, np.linspace(0.0, 1.0, p["steps"] + 1))


@register_faithfulness_metric(
    "deletion_auc", label="deletion AUC (score as the most relevant pixels are removed)", better="lower",
    value_range=(0.0, 1.0), params=_curve_params("zero"), curve_x="share of pixels removed",
    paper="Petsiuk et al. 2018 (RISE, BMVC); Quantus PixelFlipping (Bach et al. 2015)",
    help="Area under the target score as the map's most relevant pixels are removed first; a faithful map "
         "makes the score fall fast (low area).")
def _deletion(b: FaithBatch, p: dict[str, Any]) -> FaithfulnessOutput:
    return _curve(b, p, insertion=False)


@register_faithfulness_metric(
    "insertion_auc", label="insertion AUC (score as the most relevant pixels are restored)", better="higher",
    value_range=(0.0, 1.0), params=_curve_params("blur"), curve_x="share of pixels restored",
    paper="Petsiuk et al. 2018 (RISE, BMVC)",
    help="Area under the target score as the map's most relevant pixels are restored first onto the removal "
         "image; a faithful map makes the score rise fast (high area).")
def _insertion(b: FaithBatch, p: dict[str, Any]) -> FaithfulnessOutput:
    return _curve(b, p, insertion=True)


def _road_params() -> tuple[Param, ...]:
    return (Param("percentiles", str, DEFAULT_PERCENTILES, "map percentiles (each strictly between 0 and 100)"),
            Param("noise", float, 0.01, "imputation noise (standard deviation, image units)", minimum=0.0),
            _SEED, _OUTPUT)


def _road(b: FaithBatch, p: dict[str, Any], order: str) -> FaithfulnessOutput:
    qs = parse_percentiles(p["percentiles"])
    diffs = road_scores(b.forward, b.images, b.maps, b.targets, order=order, percentiles=qs, noise=p["noise"],
                        seed=p["seed"], sample_keys=b.sample_keys, output=p["output"])
    return FaithfulnessOutput(diffs.mean(axis=1), diffs, np.asarray(qs))


@register_faithfulness_metric(
    "road_morf", label="ROAD, most relevant first (score change after imputing the top pixels)", better="lower",
    value_range=(-1.0, 1.0), params=_road_params(), curve_x="map percentile",
    paper="Rong et al. 2022 (ICML); pytorch-grad-cam ROADMostRelevantFirstAverage",
    help="Mean over the percentiles of the target score change when the pixels above each map percentile "
         "are removed and linearly imputed; a faithful map makes the score drop (low value).")
def _road_morf(b: FaithBatch, p: dict[str, Any]) -> FaithfulnessOutput:
    return _road(b, p, "morf")


@register_faithfulness_metric(
    "road_lerf", label="ROAD, least relevant first (score change after imputing the bottom pixels)",
    better="higher", value_range=(-1.0, 1.0), params=_road_params(), curve_x="map percentile",
    paper="Rong et al. 2022 (ICML); pytorch-grad-cam ROADLeastRelevantFirstAverage",
    help="Mean over the percentiles of the target score change when the least relevant pixels are removed and "
         "linearly imputed; a faithful map keeps the score (value near 0, high).")
def _road_lerf(b: FaithBatch, p: dict[str, Any]) -> FaithfulnessOutput:
    return _road(b, p, "lerf")


@register_faithfulness_metric(
    "faithfulness_correlation", label="faithfulness correlation (map sum vs score drop on random subsets)",
    better="higher", value_range=(-1.0, 1.0),
    params=(Param("runs", int, 100, "random subsets per image", minimum=2),
            Param("subset", int, 224, "pixels per subset (at most the image's pixels)", minimum=1),
            Param("removal", str, "zero", "what removed pixels become: zero, mean (dataset mean) or blur",
                  choices=REMOVALS),
            _SIGMA, _SEED,
            Param("output", str, "logit", "score: the target class's softmax probability or its logit",
                  choices=OUTPUTS)),
    paper="Bhatt et al. 2020 (IJCAI); Quantus FaithfulnessCorrelation",
    help="Pearson correlation, over random pixel subsets, between the map's sum on the subset and the drop of "
         "the target score when the subset is removed.")
def _faith_corr(b: FaithBatch, p: dict[str, Any]) -> FaithfulnessOutput:
    values = faithfulness_correlation(b.forward, b.images, b.maps, b.targets, runs=p["runs"], subset=p["subset"],
                                      removal=p["removal"], mean_value=b.mean_value, blur_sigma=p["blur_sigma"],
                                      seed=p["seed"], sample_keys=b.sample_keys, output=p["output"])
    return FaithfulnessOutput(values)


def check_params(name: str, params: dict[str, Any], hw: tuple[int, int]) -> None:
    """Checks that need the image size: ``steps`` divides the pixels, ``subset`` fits, percentiles parse."""
    if "steps" in params:
        check_steps(int(params["steps"]), hw)
    if "subset" in params and int(params["subset"]) > hw[0] * hw[1]:
        raise InvalidValueError(f"subset={params['subset']} of {name} exceeds the {hw[0] * hw[1]} pixels of a "
                                f"{hw[0]}x{hw[1]} image; choose at most {hw[0] * hw[1]}")
    if "percentiles" in params:
        parse_percentiles(params["percentiles"])
