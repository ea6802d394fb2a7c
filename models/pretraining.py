"""Pre-training sources, in a registry: ``imagenet``, ``natural``, ``procedural``, ``mri``, ``none``.

* ``imagenet`` - the real torchvision / timm ImageNet weights, read offline from the torch hub
  cache ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``). A missing
  file raises an error naming the file, its download URL and the folder to put it in. The
  network keeps its 3-channel first convolution and the weights' own input normalisation
  (``models.inputs``: ImageNet mean/std for torchvision, [-1, 1] scaling for Google's Inception
  and timm's ResNetV2 file): grey images are replicated to ``(g, g, g)`` and normalised in
  training, prediction and attribution.
* ``natural`` - a small offline stand-in for ImageNet: supervised pre-training on the natural
  photographs shipped inside scikit-image; the task is "which photograph did this random,
  augmented crop come from" (random scale, rotation, flip, translation, contrast/brightness).
* ``procedural`` - a formula-driven stand-in for ImageNet (:mod:`models.procedural`): "which of 8
  shape/texture families is the figure drawn on this photograph crop" (the drift study's source).
* ``mri`` - a small stand-in for the study's within-domain MRI pre-training: lesion-free axial
  slices of the anatomy (nilearn's MNI152 template, or the user's T1 volumes); default task
  "which axial level band does this slice come from" (``bands`` equal-width bands of the brain's
  axial extent); with a labels CSV (``file,label``, e.g. sex as in the MRI study) that task.
* ``none`` - random initialisation (no checkpoint).

Each pre-training run is saved as a ``phase="pretrain"`` checkpoint (its pretext head included);
fine-tuning copies every non-head tensor from it (:func:`models.grid.init_from`).
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from skimage.color import gray2rgb, rgb2gray
from skimage.transform import resize
from sqlalchemy import select
from torch import nn

from db import Checkpoint, session_scope
from models.architectures import build, get_architecture
from models.checkpoints import load, load_state_checked, read_tensors, save_checkpoint
from models.inputs import set_preprocess
from models.optim import lr_at, seed_everything, train_step
from models.procedural import PRETEXT_FAMILIES, draw_figures
from xai_core.config import device as pick_device
from xai_core.data.anatomy import load_anatomy, slice_bank
from xai_core.errors import ConfigError, InputFileError, UnknownNameError, UnsupportedError
from xai_core.progress import Progress, silent
from xai_core.registry import DescribedEntry, Registry

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class PretrainSource(DescribedEntry):
    """A registered pre-training source: ``make(arch, width, in_chans, size, seed, **kw)`` returns
    either a ready model (``imagenet``) or a pretext (sampler, class names) to train on."""

    name: str
    description: str
    kind: str  # "weights" | "pretext" | "none"
    make: Callable[..., Any] | None
    channels: int | None = None  # input channels the source's networks must have (None: any, default 1)
    paper: str = ""

    def resolve_channels(self, in_chans: int | None) -> int:
        """``in_chans`` (None: the source's default) checked against what the source supports."""
        if self.channels is None:
            return int(in_chans or 1)
        if in_chans not in (None, self.channels):
            raise ConfigError(f"{self.name} weights take {self.channels} input channels (grey images are replicated "
                              f"to them automatically); drop --in-chans {in_chans} or pass --in-chans {self.channels}")
        return self.channels


SOURCES: Registry[PretrainSource] = Registry("pre-training source", sort=True)


def register_source(name: str, description: str, kind: str,
                    channels: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a pre-training source builder under ``name``."""
    return SOURCES.register(lambda fn: PretrainSource(name, description, kind, fn, channels))


def list_pretraining_sources() -> list[str]:
    """Registered source names (``imagenet``, ``mri``, ``natural``, ``none``, ``procedural``)."""
    return SOURCES.list()


def get_pretraining_source(name: str) -> PretrainSource:
    """The :class:`PretrainSource` of ``name``; unknown names raise :class:`UnknownNameError`."""
    return SOURCES.get(name)


SOURCES.add(PretrainSource("none", "random initialisation", "none", None))


# ------------------------------------------------------------------------------------------
# ImageNet (torchvision / timm weights from the local torch hub cache)
# ------------------------------------------------------------------------------------------
def hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _fix_imagenet_keys(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's DenseNet files use old names ``norm.1`` -> ``norm1`` (torchvision's own fix);
    timm's ViT files name the token embedding at the top (``models.architectures.vit_imagenet_keys``)."""
    if get_architecture(arch).family == "vit":
        from models.architectures import vit_imagenet_keys

        return vit_imagenet_keys(state)
    if get_architecture(arch).family != "densenet":
        return state
    out = {}
    for key, value in state.items():
        m = _DENSENET_OLD_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


@register_source("imagenet", "torchvision / timm ImageNet-1k weights from the local torch hub cache", "weights",
                 channels=3)
def imagenet_model(arch: str, width: float = 1.0, in_chans: int | None = None, **_: Any) -> tuple[nn.Module, list[str]]:
    """The ImageNet-pre-trained ``arch`` (1000-class head; VGG's size-agnostic head re-initialised),
    3 input channels, with the weights' input normalisation set (:func:`models.inputs.set_preprocess`)."""
    spec = get_architecture(arch)
    get_pretraining_source("imagenet").resolve_channels(in_chans)
    if spec.imagenet is None:
        raise UnsupportedError(f"no ImageNet weights are known for {arch}")
    if float(width) != 1.0:
        raise UnsupportedError(f"ImageNet weights exist only for width 1.0 (got {width}); use --width 1.0")
    path = hub_checkpoint_dir() / spec.imagenet.file
    if not path.is_file():
        raise InputFileError(
            f"ImageNet weights for {arch} not found: put {spec.imagenet.file} (download {spec.imagenet.url}) "
            f"into {hub_checkpoint_dir()} (set TORCH_HOME to use another cache); this tool never downloads"
        )
    state, _ = read_tensors(path)
    state = _fix_imagenet_keys(arch, state)
    model = set_preprocess(build(arch, 1000, 3, width), spec.imagenet.preprocess)
    head = tuple(f"{h}." for h in spec.head)
    # keep the file's head only if it fits ours exactly (torchvision ResNet/DenseNet/Inception, timm)
    head_fits = all(
        k in state and tuple(state[k].shape) == tuple(v.shape)
        for k, v in model.state_dict().items() if k.startswith(head)
    )
    ignore = () if head_fits else head
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}  # inception's aux head
    if ignore:
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    load_state_checked(model, state, path.name, ignore=ignore)
    return model, [f"imagenet_{i}" for i in range(1000)]


# ------------------------------------------------------------------------------------------
# Pretext sampling (batched random affine crops with torch's grid_sample)
# ------------------------------------------------------------------------------------------
def random_affine_batch(
    pool: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    size: int,
    gen: torch.Generator,
    scale: tuple[float, float],
    rotate_deg: float,
    flip: bool,
    intensity: float,
    noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random views of random images of ``pool (P,C,H,W)``: crop of relative side
    ``s ~ U(scale)``, rotation ``~U(+-rotate_deg)``, optional horizontal flip, random
    translation keeping the crop inside, contrast/brightness jitter and Gaussian noise.
    Returns ``(n,C,size,size)`` in [0,1] and the labels of the chosen images."""
    idx = torch.randint(len(pool), (n,), generator=gen)
    s = torch.empty(n).uniform_(*scale, generator=gen)
    a = torch.empty(n).uniform_(-rotate_deg, rotate_deg, generator=gen) * math.pi / 180
    fx = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    room = (1 - s).clamp(min=0)
    tx = (torch.rand(n, generator=gen) * 2 - 1) * room
    ty = (torch.rand(n, generator=gen) * 2 - 1) * room
    theta = torch.stack([
        torch.stack([s * torch.cos(a) * fx, -s * torch.sin(a), tx], 1),
        torch.stack([s * torch.sin(a) * fx, s * torch.cos(a), ty], 1),
    ], 1)
    src = pool[idx]
    grid = F.affine_grid(theta, [n, pool.shape[1], size, size], align_corners=False)
    x = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if intensity:
        c = torch.empty(n, 1, 1, 1).uniform_(1 - intensity, 1 + intensity, generator=gen)
        b = torch.empty(n, 1, 1, 1).uniform_(-intensity / 2, intensity / 2, generator=gen)
        x = (x - 0.5) * c + 0.5 + b
    if noise:
        x = x + noise * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1), labels[idx]


NATURAL_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text")


def natural_photographs(side: int = 256, in_chans: int = 1) -> tuple[torch.Tensor, list[str]]:
    """scikit-image's shipped photographs, resized to ``side``², in [0,1]: ``(P,C,side,side)``."""
    images, names = [], []
    for name in NATURAL_PHOTOS:
        try:
            img = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: BLE001 - a photograph missing from this scikit-image build
            continue
        img = img[..., :3] if img.ndim == 3 else img
        img = img.astype(np.float32) / (255.0 if img.dtype != np.float32 and img.max() > 1 else 1.0)
        if in_chans == 1:
            img = rgb2gray(img) if img.ndim == 3 else img
            img = img[None]
        else:
            img = (img if img.ndim == 3 else gray2rgb(img)).transpose(2, 0, 1)
        img = resize(img, (img.shape[0], side, side), anti_aliasing=True, preserve_range=True)
        images.append(img.astype(np.float32))
        names.append(name)
    if len(images) < 4:
        raise InputFileError("scikit-image ships fewer than 4 of its sample photographs here; reinstall scikit-image")
    return torch.from_numpy(np.stack(images)), names


@register_source("natural", "stand-in for ImageNet: which scikit-image photograph a random crop comes from", "pretext")
def natural_pretext(in_chans: int = 1, size: int = 64, **_: Any) -> tuple[Sampler, list[str]]:
    pool, names = natural_photographs(256, in_chans)
    labels = torch.arange(len(names))

    def sample(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return random_affine_batch(pool, labels, n, size, gen, scale=(0.2, 0.6), rotate_deg=30.0, flip=True,
                                   intensity=0.3, noise=0.02)

    return sample, names


@register_source("procedural", "stand-in for ImageNet: which of 8 shape/texture families the figure drawn on a "
                 "photograph crop belongs to (formula-driven pre-training)", "pretext")
def procedural_pretext(in_chans: int = 1, size: int = 64, **_: Any) -> tuple[Sampler, list[str]]:
    """:mod:`models.procedural`: one figure of :data:`~models.procedural.PRETEXT_FAMILIES` on a random
    low-contrast photograph crop, radius 15–30 % of the crop (at 32 px: 5–10 px, the pixel size of
    the five-class benchmark's lesions at 64 px). An easier task than three small figures of 12
    families, which a compact network did not learn in 1500 steps (bench/RESULTS.md)."""
    pool, _names = natural_photographs(256, in_chans)
    labels = torch.zeros(len(pool), dtype=torch.long)

    def sample(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        crops, _ = random_affine_batch(pool, labels, n, size, gen, scale=(0.3, 0.8), rotate_deg=30.0, flip=True,
                                       intensity=0.2, noise=0.0)
        return draw_figures(crops, gen, max_figures=1, radius=(0.15, 0.3), families=PRETEXT_FAMILIES)

    return sample, list(PRETEXT_FAMILIES)


def read_label_csv(path: str | Path) -> dict[str, str]:
    """``file,label`` rows (header required) -> {file name: label}."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"labels CSV {p} does not exist")
    with open(p, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise ConfigError(f"labels CSV {p.name} needs the columns file,label (e.g. subject01.nii.gz,F)")
    return {r["file"].strip(): r["label"].strip() for r in rows}


@register_source("mri", "stand-in for MRI pre-training: axial level band (or CSV label) of lesion-free slices", "pretext")
def mri_pretext(in_chans: int = 1, size: int = 64, anatomy: str | Path | None = None, labels_csv: str | Path | None = None,
                bands: int = 4, min_brain_fraction: float = 0.3, **_: Any) -> tuple[Sampler, list[str]]:
    """Lesion-free axial slices prepared exactly like the benchmark's (``xai_core.data.anatomy``:
    square crop around the brain, robust [0,1] scaling), at twice ``size`` so crops stay sharp.

    Default task: band ``floor(bands * (z - z_min) / (z_max - z_min))`` of the slice within its
    volume's usable axial range. With ``labels_csv`` (``file,label``): the volume's label."""
    volumes = load_anatomy(anatomy)
    bank = slice_bank(volumes, 2 * size, min_brain_fraction)
    if labels_csv is not None:
        mapping = read_label_csv(labels_csv)
        stripped = {re.sub(r"\.nii(\.gz)?$", "", k): v for k, v in mapping.items()}
        missing = [n for n in bank.volume_names if n not in stripped]
        if missing:
            raise ConfigError(f"labels CSV has no label for volume {missing[0]}; add a row for every volume")
        class_names = sorted({stripped[n] for n in bank.volume_names})
        if len(class_names) < 2:
            raise ConfigError("labels CSV gives every volume the same label; the pretext task needs two classes")
        per_volume = np.array([class_names.index(stripped[n]) for n in bank.volume_names])
        labels_np = per_volume[bank.volume]
    else:
        if bands < 2:
            raise ConfigError(f"bands must be at least 2 (got {bands})")
        class_names = [f"axial_band_{i}" for i in range(bands)]
        labels_np = np.zeros(len(bank.z), np.int64)
        for v in np.unique(bank.volume):
            sel = bank.volume == v
            z = bank.z[sel].astype(np.float64)
            rel = (z - z.min()) / max(1.0, z.max() - z.min())
            labels_np[sel] = np.minimum((rel * bands).astype(np.int64), bands - 1)
    pool = torch.from_numpy(bank.images.astype(np.float32))[:, None].expand(-1, in_chans, -1, -1).contiguous()
    labels = torch.from_numpy(labels_np.astype(np.int64))

    def sample(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return random_affine_batch(pool, labels, n, size, gen, scale=(0.85, 1.1), rotate_deg=12.0, flip=True,
                                   intensity=0.15, noise=0.02)

    return sample, class_names


# ------------------------------------------------------------------------------------------
# The pretext training loop and the job
# ------------------------------------------------------------------------------------------
def train_pretext(model: nn.Module, sampler: Sampler, steps: int, batch_size: int, lr: float, seed: int,
                  device: str | None = None, progress: Progress = silent, label: str = "") -> list[dict[str, float]]:
    """All parameters trainable; AdamW with warm-up + cosine (see :func:`models.optim.lr_at`).
    Returns a history of {step, loss, acc} every 10% of the steps."""

    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = pick_device(device)
    model.to(dev, memory_format=torch.channels_last).train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict[str, float]] = []
    run_loss = run_acc = 0.0
    count = 0
    every = max(1, steps // 10)
    for step in range(steps):
        x, y = sampler(batch_size, gen)
        x, y = x.to(dev), y.to(dev)
        logits, loss = train_step(model, opt, scaler, x, y, lr_at(step, steps, lr, 0.1), dev.type, use_amp)
        run_loss += float(loss.detach())
        run_acc += float((logits.argmax(1) == y).float().mean())
        count += 1
        if (step + 1) % every == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": run_loss / count, "acc": run_acc / count})
            progress(step + 1, steps, f"{label} step {step + 1}/{steps} loss {run_loss / count:.3f}")
            run_loss = run_acc = 0.0
            count = 0
    model.to(memory_format=torch.contiguous_format).eval()
    return history


PRETRAIN_DEFAULTS: dict[str, Any] = {"size": 64, "steps": 250, "batch_size": 64, "lr": 2e-3}


def pretrain(
    source: str,
    arch: str = "vgg16",
    width: float = 1.0,
    size: int = PRETRAIN_DEFAULTS["size"],
    steps: int = PRETRAIN_DEFAULTS["steps"],
    batch_size: int = PRETRAIN_DEFAULTS["batch_size"],
    lr: float = PRETRAIN_DEFAULTS["lr"],
    seed: int = 0,
    in_chans: int | None = None,
    name: str | None = None,
    anatomy: str | Path | None = None,
    labels_csv: str | Path | None = None,
    device: str | None = None,
    progress: Progress = silent,
) -> Any:
    """Pre-train (or, for ``imagenet``, load) ``arch`` on ``source`` and save it as a
    ``phase="pretrain"`` checkpoint; returns its :class:`models.checkpoints.CheckpointInfo`.
    ``in_chans`` None: the source's channels (3 for ImageNet weights, 1 for the pretext sources)."""
    src = get_pretraining_source(source)
    spec = get_architecture(arch)
    if src.kind == "none":
        raise ConfigError("source 'none' is random initialisation; there is nothing to pre-train")
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError("steps and batch_size must be >= 1 and lr > 0")
    if size < spec.min_input_size:
        raise ConfigError(f"{arch} needs --size of at least {spec.min_input_size} px (got {size})")
    spec.check_input_size(size)  # a ViT's patch size must divide it
    in_chans = src.resolve_channels(in_chans)
    name = name or f"pretrain-{source}-{arch}-w{width:g}-c{in_chans}-s{seed}"
    t0 = time.perf_counter()
    dev = pick_device(device)
    if src.kind == "weights":
        model, class_names = src.make(arch=arch, width=width, in_chans=in_chans)
        history: list[dict[str, float]] = []
        metrics: dict[str, Any] = {"source": source, "file": get_architecture(arch).imagenet.file}  # type: ignore[union-attr]
        progress(1, 1, f"loaded ImageNet weights for {arch}")
    else:
        progress(0, steps, f"preparing {source} pretext data")
        sampler, class_names = src.make(in_chans=in_chans, size=size, anatomy=anatomy, labels_csv=labels_csv)
        model = build(arch, len(class_names), in_chans, width)
        history = train_pretext(model, sampler, steps, batch_size, lr, seed, device, progress, label=f"pretrain {source}")
        gen = torch.Generator().manual_seed(seed + 10_007)
        xs, ys = sampler(256, gen)
        model.eval()
        with torch.no_grad():
            acc = float((model(xs.to(dev)).argmax(1).cpu() == ys).float().mean())
        metrics = {"source": source, "pretext_accuracy": acc, "pretext_classes": len(class_names), "steps": steps,
                   "batch_size": batch_size, "lr": lr, "size": size, "anatomy": str(anatomy) if anatomy else None,
                   "labels_csv": str(labels_csv) if labels_csv else None}
    seconds = time.perf_counter() - t0
    return save_checkpoint(
        model.cpu(), name=name, arch=arch, width=width, num_classes=len(class_names), in_chans=in_chans,
        input_size=size, pretrain=source, degree=None, phase="pretrain", class_names=class_names, metrics=metrics,
        history=history, train_time_s=seconds, device=str(dev),
    )


def ensure_pretrained(source: str, arch: str, width: float, in_chans: int | None = None, progress: Progress = silent,
                      **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The newest ``phase="pretrain"`` checkpoint of (source, arch, width, in_chans), pre-training
    one with ``kwargs`` (size, steps, ...) first when none exists. Returns ``load()``'s result."""
    in_chans = get_pretraining_source(source).resolve_channels(in_chans)
    with session_scope() as session:
        rows = session.scalars(
            select(Checkpoint).where(
                Checkpoint.phase == "pretrain", Checkpoint.pretrain == source, Checkpoint.arch == arch,
                Checkpoint.width == float(width), Checkpoint.in_chans == int(in_chans),
            ).order_by(Checkpoint.id.desc())
        ).all()
        ids = [r.id for r in rows if Path(r.path).is_file()]
    if ids:
        return load(ids[0])
    info = pretrain(source, arch=arch, width=width, in_chans=in_chans, progress=progress, **kwargs)
    return load(info.id)
