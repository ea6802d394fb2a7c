"""The batched attribution engine: validate, canonicalise once, run a method over batches on the
device (halving the batch on out-of-memory), post-process to ``(N, H, W)`` float32 maps."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import models
from models.inputs import ModelInput, as_images, model_input
from xai_core.attribution import methods as _methods  # noqa: F401  (registers the methods)
from xai_core.attribution.canonical import Prepared, last_conv_name, module_name, prepare
from xai_core.attribution.capabilities import check_supported
from xai_core.attribution.methods import MethodContext
from xai_core.attribution.registry import MethodSpec, get_method
from xai_core.config import device as choose_device
from xai_core.errors import ConfigError, InvalidValueError, ShapeError, UnsupportedError
from xai_core.progress import Progress, silent

TargetLike = None | str | int | Sequence[int] | np.ndarray | torch.Tensor

DEFAULT_BATCH = {"cpu": 16, "cuda": 64, "mps": 32}
# Multi-pass methods on the CPU: rows per forward pass so that a pass holds about this many input
# pixels (32 rows of 128 px). Measured on the 2-core VM, Integrated Gradients (50 steps, vgg16
# w0.125, 128 px): 16 rows 2.84 img/s, 32 rows 3.00, 64 rows 1.98, 128 rows 1.81, 400 rows 1.15
# (smaller activations stay in cache); on GPUs the default stays 4 x the image batch.
CPU_ROW_PIXELS = 32 * 128 * 128


@dataclass
class Explanation:
    """Maps plus what produced them."""

    maps: np.ndarray  # (N, H, W) float32
    targets: np.ndarray  # (N,) int64 class explained per image
    seconds: float  # wall time of the computation (all images)
    device: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)  # resolved parameters
    batch_size: int = 0  # final batch size (after any out-of-memory halving)


def as_batch(images: Any) -> torch.Tensor:
    """``images`` (N,C,H,W) or (N,H,W), numpy or torch, as a float32 CPU tensor (N,C,H,W)
    (:func:`models.inputs.as_images`), at least one image."""
    x = as_images(images)
    if x.shape[0] == 0:
        raise ShapeError("no images to explain (N = 0)")
    return x


def _check_shape(x: torch.Tensor, model_in: ModelInput, arch: str | None, input_size: int | None) -> None:
    n, c, h, w = x.shape
    model_in.check(c)
    if input_size is not None and (h, w) != (int(input_size), int(input_size)):
        raise ShapeError(f"images are {h}x{w} but the model was trained at {input_size}x{input_size}; "
                         f"resize them to {input_size}x{input_size}")
    if arch is not None:
        spec = models.get_architecture(arch)
        if min(h, w) < spec.min_input_size:
            raise ShapeError(f"images are {h}x{w} but {arch} needs at least "
                             f"{spec.min_input_size}x{spec.min_input_size}; use larger images")
        spec.check_input_size(h, w)  # a ViT's patch size must divide the image


def _targets(target: TargetLike, n: int) -> torch.Tensor | None:
    if target is None or (isinstance(target, str) and target == "predicted"):
        return None
    if isinstance(target, str):
        raise InvalidValueError(f"target must be None/'predicted', a class index or one index per image "
                                f"(got {target!r}); for the true class pass the labels")
    t = torch.as_tensor(np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target))
    if t.is_floating_point():
        if not bool(torch.all(t == t.round())):
            raise InvalidValueError("target must hold integer class indices")
    t = t.to(torch.int64)
    if t.ndim == 0:
        t = t.expand(n).clone()
    if t.ndim != 1 or t.shape[0] != n:
        raise ShapeError(f"target must be one class index or {n} indices (one per image); got shape {tuple(t.shape)}")
    return t


def _check_target_range(t: torch.Tensor | None, num_classes: int) -> None:
    if t is None:
        return
    bad = (t < 0) | (t >= num_classes)
    if bool(bad.any()):
        value = int(t[bad][0])
        raise InvalidValueError(f"target class {value} is outside the model's classes 0..{num_classes - 1}")


def postprocess(a: torch.Tensor, sign: str, reduce: str) -> torch.Tensor:
    """(B, C, H, W) signed attributions -> (B, H, W): ``sign`` then channel ``reduce``.

    abs: ``reduce(|a|)`` (Simonyan's max-of-abs with reduce=max); signed/positive/negative:
    ``reduce(a)`` then identity / ``max(., 0)`` / ``max(-., 0)``; l2: ``||a||_2`` over channels.
    """
    if sign not in ("abs", "signed", "positive", "negative"):
        raise ConfigError(f"unknown sign {sign!r}; use abs, signed, positive or negative")
    if sign == "abs":
        a = a.abs()
    if reduce == "sum":
        r = a.sum(dim=1)
    elif reduce == "mean":
        r = a.mean(dim=1)
    elif reduce == "max":
        r = a.amax(dim=1)
    elif reduce == "l2":
        r = torch.linalg.vector_norm(a, dim=1)
    else:
        raise ConfigError(f"unknown channel reduction {reduce!r}; use sum, mean, max or l2")
    if sign == "positive":
        r = r.clamp(min=0)
    elif sign == "negative":
        r = (-r).clamp(min=0)
    return r


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                               or "failed to allocate" in text)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def resolve_cam_name(model: nn.Module, arch: str | None, cam_layer: str | nn.Module | None) -> str | None:
    """The CAM layer's qualified name: explicit, else the architecture's, else the last Conv2d."""
    if isinstance(cam_layer, nn.Module):
        name = module_name(model, cam_layer)
        if name is None:
            raise InvalidValueError("cam_layer is not a submodule of the model")
        return name
    if isinstance(cam_layer, str):
        try:
            model.get_submodule(cam_layer)
        except AttributeError:
            raise InvalidValueError(f"the model has no submodule {cam_layer!r} for cam_layer") from None
        return cam_layer
    if arch is not None:
        return models.get_architecture(arch).cam
    return last_conv_name(model)


def _cam_reshape(arch: str | None, cam_name: str | None,
                 size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The architecture's token-to-grid reshape for its own CAM layer (ViTs), bound to the image size."""
    if arch is None or cam_name is None:
        return None
    spec = models.get_architecture(arch)
    if spec.cam_reshape is None or cam_name != spec.cam:
        return None
    reshape = spec.cam_reshape
    return lambda tokens: reshape(tokens, size)


def _attention_names(model: nn.Module, arch: str | None) -> tuple[str, ...]:
    """The attention modules attention rollout reads: the architecture's, else every timm-style
    attention module of the model (a ``fused_attn`` flag and an ``attn_drop`` on the weights)."""
    if arch is not None:
        names = models.get_architecture(arch).attention
    else:
        names = tuple(n for n, m in model.named_modules()
                      if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module))
    if not names:
        raise UnsupportedError("attention rollout needs attention layers but the model has none "
                               "(not a transformer); use a gradient or CAM method")
    return tuple(names)


def explain_with_info(
    model: nn.Module,
    images: Any,
    method: str,
    target: TargetLike = None,
    *,
    arch: str | None = None,
    cam_layer: str | nn.Module | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    input_size: int | None = None,
    progress: Progress = silent,
    **params: Any,
) -> Explanation:
    """Like :func:`explain` but also returns targets, timing, device and the resolved parameters."""
    spec: MethodSpec = get_method(method)
    check_supported(method, arch)
    resolved = spec.resolve(params)
    x = as_batch(images)
    model_in = model_input(model)
    _check_shape(x, model_in, arch, input_size)
    t = _targets(target, x.shape[0])
    if resolved.get("baseline") == "mean" and resolved.get("baseline_value") is None:
        resolved["baseline_value"] = round(float(x.mean()), 6)
    dev = choose_device(str(device) if device is not None else None)
    cam_name = resolve_cam_name(model, arch, cam_layer) if spec.model_kind == "cam" else None
    if spec.model_kind == "cam" and cam_name is None:
        raise UnsupportedError(f"{method} needs a convolutional layer but the model has none; use a gradient method")
    cam_reshape = _cam_reshape(arch, cam_name, (x.shape[2], x.shape[3]))
    attention = _attention_names(model, arch) if spec.model_kind == "attention" else ()
    try:
        prepared: Prepared = prepare(model, spec.model_kind, model_in.replicate(x[:1]), dev, cam_name, attention)
    except RuntimeError as exc:
        raise ShapeError(f"the model cannot process {tuple(x.shape[1:])} images ({str(exc).splitlines()[0][:160]}); "
                         "check the image size and channel count") from None
    _check_target_range(t, prepared.num_classes)
    bs = int(batch_size or DEFAULT_BATCH.get(dev.type, 16))
    if bs < 1:
        raise InvalidValueError(f"batch_size must be >= 1 (got {bs})")
    n = x.shape[0]
    out = np.empty((n, x.shape[2], x.shape[3]), dtype=np.float32)
    used = np.empty((n,), dtype=np.int64)
    seconds = 0.0
    start = 0
    ibs = resolved.get("internal_batch_size")
    if ibs is None and dev.type == "cpu":
        ibs = max(1, CPU_ROW_PIXELS // (x.shape[2] * x.shape[3]))
    progress(0, n, method)
    with torch.enable_grad(), warnings.catch_warnings():
        # Captum warns on every call that it sets hooks on activations; the canonical copy is ours.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\..*")
        warnings.filterwarnings("ignore", message=r".*(hooks|backward hook|non-full backward).*")
        while start < n:
            stop = min(start + bs, n)
            xb = model_in.replicate(x[start:stop].to(dev))  # grey -> the model's channels, on the device
            tb = None if t is None else t[start:stop].to(dev)
            ctx = MethodContext(prepared=prepared, device=dev, batch_size=bs, cam_reshape=cam_reshape)
            run_params = dict(resolved)
            if "internal_batch_size" in run_params:
                run_params["internal_batch_size"] = ibs
            tic = time.perf_counter()
            try:
                attr, tused = spec.fn(ctx, xb, tb, run_params)
                if spec.output == "input":
                    attr = postprocess(attr, resolved["sign"], resolved["reduce"])
                maps = attr.to(torch.float32).cpu().numpy()
                _sync(dev)
            except Exception as exc:
                if _is_oom(exc) and (bs > 1 or (ibs or 1) > 1):
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    bs = max(1, bs // 2)
                    ibs = None if ibs is None else max(1, int(ibs) // 2)
                    continue
                if _is_oom(exc):
                    raise UnsupportedError(f"{method} runs out of memory on {dev} even for one image; lower "
                                           "--param internal_batch_size or use a smaller input") from None
                raise
            seconds += time.perf_counter() - tic
            out[start:stop] = maps
            used[start:stop] = tused.detach().cpu().numpy()
            start = stop
            progress(start, n, method)
    return Explanation(out, used, seconds, str(dev), method, resolved, bs)


def explain(
    model: nn.Module,
    images: Any,
    method: str,
    target: TargetLike = None,
    **params: Any,
) -> np.ndarray:
    """Attribution maps of ``model`` for ``images`` with ``method``: ``(N, H, W)`` float32.

    - ``images``: ``(N, C, H, W)`` or ``(N, H, W)`` (numpy or torch) in [0, 1]; grey images are
      replicated to the model's channels and the model's input normalisation runs inside the
      model the method sees (:mod:`models.inputs`), so maps are in image space and reduced over
      the channels (``reduce``); NaN/Inf raise :class:`InvalidValueError`, a channel count that is
      neither 1 nor the model's, or a wrong size, :class:`ShapeError`;
    - ``target``: ``None``/``"predicted"`` (the predicted class), one class index, or one per image;
      outside the model's classes raises :class:`InvalidValueError`;
    - ``method``: a name from :func:`list_methods` (unknown: :class:`UnknownNameError`);
    - engine options: ``arch`` (registered architecture: capability check, CAM layer, minimum
      size), ``cam_layer`` (module or name), ``device`` (default ``xai_core.config.device()``),
      ``batch_size`` (images per pass, halved on out-of-memory), ``input_size`` (expected side);
    - every other keyword is a method parameter (see ``get_method(method).params``).

    The model is never modified: a canonical copy is prepared once and cached.
    """
    return explain_with_info(model, images, method, target, **params).maps
