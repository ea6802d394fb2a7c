"""Fine-tuning: degrees ``tl .. all``, the two-phase TL→FT protocol, the grid, metrics.

Training loop (:func:`fit`): AdamW, learning rate with a linear warm-up then cosine decay,
early stopping on validation loss (best-validation weights restored), seeded, AMP on CUDA.

Speed: frozen leading blocks get no backward pass (their parameters do not require gradients and
the input does not either), run in eval mode (BatchNorm statistics untouched) and run **once**:
their outputs are cached and every epoch trains only the trainable tail ``chain[n_frozen:]`` (see
:meth:`models.architectures.ArchSpec.chain`). With dihedral augmentation the outputs of all 8
variants of each image are cached (the group is finite) and each epoch draws one per image, as
long as they fit :data:`VARIANT_CACHE_BYTES`; beyond that the frozen blocks run every step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score
from torch import nn

from models.architectures import (
    DEGREES,
    freeze_for_degree,
    frozen_blocks,
    get_architecture,
    trainable_blocks,
)
from models.inputs import first_conv_channels, prepare_images, preprocess_name, preprocessed, set_preprocess
from xai_core.config import device as pick_device
from xai_core.errors import ConfigError, InvalidValueError, UnknownNameError
from xai_core.progress import Progress, silent

PROTOCOLS = ("single", "tl-ft")


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of one fine-tuning run (defaults tuned for the 128 px CPU demo, see bench/training.py)."""

    epochs: int = 12
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    patience: int = 4
    min_epochs: int = 6
    warmup_frac: float = 0.05
    seed: int = 0
    augment: bool = False
    amp: bool = True
    device: str | None = None
    save_every: int | None = None


@dataclass
class FitResult:
    """History (one dict per epoch), best epoch, seconds spent, device used."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    device: str = "cpu"


# ------------------------------------------------------------------------------------------
# Inputs (models.inputs: grey replicated to the model's channels, its normalisation in front)
# ------------------------------------------------------------------------------------------
@torch.no_grad()
def _run_batched(module: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    outs = [module(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else x.to(device)


@torch.no_grad()
def predict(
    model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 64, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class ``(N,)`` int64 and softmax probabilities ``(N,C)`` float32 (eval mode)."""
    dev = pick_device(device)
    was_training = model.training
    model.eval().to(dev)
    x = prepare_images(images, model)
    logits = _run_batched(preprocessed(model, model), x, dev, batch_size).float()
    model.train(was_training)
    probs = torch.softmax(logits, dim=1).cpu().numpy().astype(np.float32)
    return probs.argmax(1).astype(np.int64), probs


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, ROC-AUC (binary, or one-vs-rest macro for >2 classes; None
    when the split holds one class) and the confusion matrix (rows = true, cols = predicted)."""
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = probs.shape[1]
    pred = probs.argmax(1)
    auc: float | None
    try:
        if len(np.unique(labels)) < 2:
            auc = None
        elif n_classes == 2:
            auc = float(roc_auc_score(labels, probs[:, 1]))
        else:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(n_classes))))
    except ValueError:
        auc = None
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)) if len(labels) else float("nan"),
        "roc_auc": auc,
        "confusion_matrix": confusion_matrix(labels, pred, labels=list(range(n_classes))).tolist(),
        "n": int(len(labels)),
    }


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 64,
             device: str | None = None) -> dict[str, Any]:
    """:func:`classification_metrics` of ``model`` on ``images``."""
    _, probs = predict(model, images, batch_size, device)
    return classification_metrics(labels, probs)


# ------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def lr_at(step: int, total: int, base: float, warmup_frac: float, flat_frac: float = 0.4) -> float:
    """Linear warm-up over ``warmup_frac`` of the steps, flat until ``flat_frac``, then cosine
    decay to 0: ``lr = base * (s+1)/w`` for s < w; ``base`` for s < f;
    ``base * (1 + cos(pi (s-f)/(T-f))) / 2`` after (a flat phase lets a network leave the
    initial plateau of small-lesion tasks before the rate decays)."""
    warm = max(1, int(total * warmup_frac))
    flat = max(warm, int(total * flat_frac))
    if step < warm:
        return base * (step + 1) / warm
    if step < flat:
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - flat) / max(1, total - flat))))


def n_dihedral(x: torch.Tensor) -> int:
    """Size of the augmentation group: 8 (flips x quarter turns) for square images, else 2 (flips)."""
    return 8 if x.shape[-1] == x.shape[-2] else 2


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Group element ``k`` applied to ``(..., H, W)``: horizontal flip if ``k >= 4`` (``k == 1`` for
    non-square groups of 2), then ``k % 4`` quarter turns."""
    flip, turns = (k >= 4, k % 4) if n_dihedral(x) == 8 else (k == 1, 0)
    x = x.flip(-1) if flip else x
    return torch.rot90(x, turns, (-2, -1)) if turns else x


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random dihedral element per image (see :func:`dihedral`), batched by element;
    labels of lesion-shape tasks are invariant."""
    ks = torch.randint(0, n_dihedral(x), (len(x),), generator=gen)
    out = x.clone()
    for k in ks.unique().tolist():
        out[ks == k] = dihedral(x[ks == k], k)
    return out


def _draw(feats: list[torch.Tensor], idx: torch.Tensor, pick: torch.Tensor | None) -> torch.Tensor:
    """Rows ``idx`` of the cached outputs, row ``i`` taken from variant ``pick[i]`` (all from the
    first when ``pick`` is None)."""
    if pick is None:
        return feats[0][idx]
    pick = pick.to(idx.device)
    out = torch.empty((len(idx), *feats[0].shape[1:]), dtype=feats[0].dtype, device=feats[0].device)
    for k in pick.unique().tolist():
        sel = pick == k
        out[sel] = feats[k][idx[sel]]
    return out


VARIANT_CACHE_BYTES = 4 * 2**30  # frozen-block outputs of every dihedral variant are cached up to this size


def _variant_cache_fits(chain: Sequence[nn.Module], n_frozen: int, x: torch.Tensor, dev: torch.device) -> bool:
    """Whether the outputs of every frozen block for all dihedral variants of ``x`` fit
    :data:`VARIANT_CACHE_BYTES` (shapes from one image)."""
    out, per_image = x[:1].to(dev), 0
    with torch.no_grad():
        for block in chain[:n_frozen]:
            out = block.eval()(out)
            per_image += out.numel() * out.element_size()
    return per_image * len(x) * n_dihedral(x) <= VARIANT_CACHE_BYTES


def train_step(module: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, x: torch.Tensor,
               y: torch.Tensor, lr: float, device_type: str, use_amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One AdamW step of cross-entropy at learning rate ``lr`` (autocast + loss scaling when
    ``use_amp``); returns (logits, loss). Shared by fine-tuning and the pretext loop."""
    for group in opt.param_groups:
        group["lr"] = lr
    with torch.autocast(device_type=device_type, enabled=use_amp):
        logits = module(x)
        loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return logits, loss


def fit(
    model: nn.Module,
    arch: str,
    degree: str,
    train_xy: tuple[np.ndarray, np.ndarray],
    val_xy: tuple[np.ndarray, np.ndarray],
    config: TrainConfig = TrainConfig(),
    progress: Progress = silent,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    label: str = "",
    feature_cache: dict[tuple[str, str, int], torch.Tensor] | None = None,
) -> FitResult:
    """Train ``model`` in place at fine-tuning ``degree``; best-validation-loss weights restored.

    ``feature_cache`` (a dict shared between runs, e.g. the cells of a grid) keeps the outputs of
    frozen blocks keyed by a digest of those blocks' tensors, so runs whose frozen blocks are
    bit-identical (all degrees continuing from the same TL checkpoint) run them once in total.
    """
    trainable_blocks(degree)  # validates the degree
    spec = get_architecture(arch)
    dev = pick_device(config.device)
    seed_everything(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    freeze_for_degree(model, arch, degree)
    model.to(dev, memory_format=torch.channels_last)  # 1.75x faster convolutions on CPU (bench/RESULTS.md)
    chain = spec.chain(model)
    chain[0] = preprocessed(chain[0], model)  # the weights' input normalisation runs first, in every pass
    n_frozen = frozen_blocks(degree)
    prefix = nn.Sequential(*chain[:n_frozen]).eval()
    tail = nn.Sequential(*chain[n_frozen:])
    xtr, ytr = prepare_images(train_xy[0], model), torch.as_tensor(np.asarray(train_xy[1]), dtype=torch.long)
    xva, yva = prepare_images(val_xy[0], model), torch.as_tensor(np.asarray(val_xy[1]), dtype=torch.long)
    t0 = time.perf_counter()
    # Frozen blocks run once: on the images, or with augmentation on each of the (8 or 2) dihedral
    # variants of every image, from which each epoch draws one per image (the same distribution as
    # transforming the images on the fly, without the per-epoch forward pass).
    cache = bool(n_frozen) and (not config.augment or _variant_cache_fits(chain, n_frozen, xtr, dev))
    variants = n_dihedral(xtr) if config.augment else 1
    feats: list[torch.Tensor] = []
    if cache:
        progress(0, 1, f"{label} caching frozen blocks 1-{n_frozen}")
        feats = [_frozen_outputs(chain, n_frozen, dihedral(xtr, k).contiguous() if k else xtr, f"train-d{k}", dev,
                                 config.batch_size, feature_cache).to(dev) for k in range(variants)]
    if n_frozen:
        xva = _frozen_outputs(chain, n_frozen, xva, "val", dev, config.batch_size, feature_cache)
    else:
        xva = xva.to(dev)
    xtr = xtr if cache else xtr.to(dev)
    ytr, yva = ytr.to(dev), yva.to(dev)

    params = [p for p in tail.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    use_amp = bool(config.amp and dev.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    n = len(ytr)
    bs = min(config.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = steps_per_epoch * config.epochs
    result = FitResult(device=str(dev))
    best_loss, best_state, bad = float("inf"), None, 0
    step = 0
    for epoch in range(1, config.epochs + 1):
        tail.train()
        prefix.eval()
        perm = torch.randperm(n, generator=gen).to(dev)
        run_loss = run_correct = run_n = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * bs : (b + 1) * bs]
            yb = ytr[idx]
            if cache:
                xb = _draw(feats, idx, torch.randint(0, variants, (len(idx),), generator=gen) if variants > 1 else None)
            else:
                xb = xtr[idx]
                xb = _augment(xb.cpu(), gen).to(dev) if config.augment else xb
                if n_frozen:
                    with torch.no_grad():
                        xb = prefix(xb)
            logits, loss = train_step(tail, opt, scaler, xb, yb, lr_at(step, total, config.lr, config.warmup_frac),
                                      dev.type, use_amp)
            step += 1
            run_loss += float(loss.detach()) * len(yb)
            run_correct += float((logits.argmax(1) == yb).sum())
            run_n += len(yb)
            progress(step, total, f"{label} epoch {epoch}/{config.epochs} loss {run_loss / run_n:.3f}")
        tail.eval()
        with torch.no_grad(), torch.autocast(device_type=dev.type, enabled=use_amp):
            vlogits = torch.cat([tail(xva[i : i + 256]) for i in range(0, len(xva), 256)]).float()
        val_loss = float(F.cross_entropy(vlogits, yva))
        val_acc = float((vlogits.argmax(1) == yva).float().mean())
        result.history.append({
            "epoch": epoch, "train_loss": run_loss / max(run_n, 1), "train_acc": run_correct / max(run_n, 1),
            "val_loss": val_loss, "val_acc": val_acc, "lr": lr_at(step - 1, total, config.lr, config.warmup_frac),
            "seconds": time.perf_counter() - t0,
        })
        if val_loss < best_loss - 1e-4:
            best_loss, bad, result.best_epoch = val_loss, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if on_epoch is not None and config.save_every and epoch % config.save_every == 0:
            on_epoch(epoch, model)
        if bad >= config.patience and epoch >= config.min_epochs:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)
    progress(total, total, f"{label} done (best epoch {result.best_epoch})")
    result.seconds = time.perf_counter() - t0
    model.eval()
    return result


def _blocks_digest(blocks: Sequence[nn.Module]) -> str:
    """sha256 over the names, shapes and bytes of every tensor of ``blocks``."""
    import hashlib

    h = hashlib.sha256()
    for i, block in enumerate(blocks):
        for name, t in [*block.named_parameters(), *block.named_buffers()]:
            h.update(f"{i}.{name}{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def _frozen_outputs(chain: Sequence[nn.Module], n_frozen: int, x: torch.Tensor, split: str, dev: torch.device,
                    batch_size: int, cache: dict[tuple[str, str, int], torch.Tensor] | None) -> torch.Tensor:
    """Output of ``chain[:n_frozen]`` (eval mode) on ``x``, block by block; with ``cache``, every
    intermediate block output is stored under (digest of the blocks so far, split, N)."""
    if cache is None:
        return _run_batched(nn.Sequential(*chain[:n_frozen]).eval(), x, dev, 2 * batch_size)
    import hashlib

    data = hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]
    digests = [_blocks_digest(chain[: j + 1]) + data for j in range(n_frozen)]
    key = (digests[-1], split, len(x))
    if key in cache:
        return cache[key]
    start, out = 0, x
    for j in range(n_frozen - 1, -1, -1):
        if (digests[j], split, len(x)) in cache:
            start, out = j + 1, cache[(digests[j], split, len(x))]
            break
    for j in range(start, n_frozen):
        out = _run_batched(chain[j].eval(), out, dev, 2 * batch_size)
        cache[(digests[j], split, len(x))] = out
    return out


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
@dataclass
class DataSplits:
    """In-memory train/val/test arrays (images ``(N,H,W)`` in [0,1], int labels) of one dataset.

    ``test_pks`` (Sample.id rows) enable storing per-sample predictions; ``dataset_id`` links
    checkpoints to their dataset row. Both may be None for purely in-memory data.
    """

    name: str
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    class_names: list[str]
    test_pks: np.ndarray | None = None
    dataset_id: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_size(self) -> int:
        return int(self.train[0].shape[-1])


def load_splits(dataset: str | DataSplits) -> DataSplits:
    """A :class:`DataSplits` for a dataset name (via ``xai_core.data.load_dataset``) or as given;
    checks there are at least two classes and non-empty train/val/test splits."""
    if isinstance(dataset, DataSplits):
        splits = dataset
    else:
        from sqlalchemy import select

        from db import Dataset, session_scope
        from xai_core.data import load_dataset

        parts = {s: load_dataset(dataset, split=s) for s in ("train", "val", "test")}
        with session_scope() as session:
            ds_id = session.scalar(select(Dataset.id).where(Dataset.name == dataset))
        test = parts["test"]
        splits = DataSplits(
            name=dataset,
            train=(parts["train"].images, parts["train"].labels),
            val=(parts["val"].images, parts["val"].labels),
            test=(test.images, test.labels),
            class_names=list(test.class_names),
            test_pks=np.asarray(test.sample_pks, dtype=np.int64),
            dataset_id=ds_id,
        )
    for split_name, (x, y) in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        if len(y) == 0:
            raise InvalidValueError(f"dataset {splits.name!r} has an empty {split_name} split; rebuild it with more samples")
    present = np.unique(np.asarray(splits.train[1]))
    if len(splits.class_names) < 2 or len(present) < 2:
        raise InvalidValueError(
            f"dataset {splits.name!r} has only one class in its training split ({present.tolist()}); "
            "a classifier needs at least two classes"
        )
    return splits


# ------------------------------------------------------------------------------------------
# Jobs: train, train_grid
# ------------------------------------------------------------------------------------------
def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise UnknownNameError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def check_names(archs: Sequence[str] = (), pretrains: Sequence[str] = (), degrees: Sequence[str] = (),
                protocol: str = "single") -> None:
    """Raise UnknownNameError for an unknown architecture, pre-training source, degree or protocol."""
    from models.pretraining import list_pretraining_sources

    for a in archs:
        get_architecture(a)
    for p in pretrains:
        _check_choice(p, list_pretraining_sources(), "pre-training source")
    for d in degrees:
        _check_choice(d, DEGREES, "fine-tuning degree")
    _check_choice(protocol, PROTOCOLS, "protocol")


def cell_name(dataset: str, arch: str, width: float, pretrain: str, degree: str, seed: int, suffix: str = "") -> str:
    """Checkpoint name of one grid cell, e.g. ``mri-lesions-vgg16-w0.125-natural-2conv-s0``."""
    return f"{dataset}-{arch}-w{width:g}-{pretrain}-{degree}-s{seed}{suffix}"


def init_from(model: nn.Module, arch: str, source: nn.Module) -> nn.Module:
    """Copy every non-head tensor of ``source`` into ``model`` (head keeps its fresh init), and
    ``source``'s input normalisation with them (the weights expect it)."""
    from models.checkpoints import load_state_checked

    head = tuple(f"{h}." for h in get_architecture(arch).head)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(head)}
    load_state_checked(model, state, "pre-trained backbone", ignore=head)
    return set_preprocess(model, preprocess_name(source))


def _start_model(arch: str, splits: DataSplits, width: float, pretrain: str, in_chans: int | None,
                 pretrain_kwargs: dict[str, Any], progress: Progress) -> tuple[nn.Module, int | None]:
    """Fresh model initialised from the ``pretrain`` source; returns (model, pretrain checkpoint id).

    ``in_chans`` None: the source's channels (3 for ImageNet weights, grey images replicated; else 1)."""
    from models.architectures import build
    from models.pretraining import ensure_pretrained

    if pretrain == "none":
        return build(arch, splits.num_classes, in_chans or 1, width), None
    source_model, source_meta = ensure_pretrained(pretrain, arch, width, in_chans, progress=progress, **pretrain_kwargs)
    model = build(arch, splits.num_classes, int(source_meta["in_chans"]), width)
    init_from(model, arch, source_model)
    return model, source_meta.get("checkpoint_id")


def _save(model: nn.Module, splits: DataSplits, *, name: str, arch: str, width: float, pretrain: str,
          degree: str, phase: str, parent_id: int | None, result: FitResult | None, epoch: int | None,
          config: TrainConfig, extra_metrics: dict[str, Any] | None = None) -> Any:
    from models.checkpoints import save_checkpoint

    pred, probs = predict(model, splits.test[0], batch_size=128, device=config.device)
    metrics = classification_metrics(splits.test[1], probs)
    metrics.update(extra_metrics or {})
    metrics["config"] = {k: v for k, v in config.__dict__.items()}
    if result is not None:
        metrics["best_epoch"] = result.best_epoch
    predictions = None
    if splits.test_pks is not None:
        labels = np.asarray(splits.test[1])
        predictions = (splits.test_pks, pred, probs[np.arange(len(pred)), pred], pred == labels)
    return save_checkpoint(
        model, name=name, arch=arch, width=width, num_classes=splits.num_classes,
        in_chans=first_conv_channels(model) or 1,
        input_size=splits.input_size, pretrain=pretrain, degree=degree, phase=phase, class_names=splits.class_names,
        epoch=epoch, parent_id=parent_id, dataset_id=splits.dataset_id, metrics=metrics,
        history=result.history if result else [], train_time_s=result.seconds if result else 0.0,
        device=result.device if result else "cpu", predictions=predictions,
    )


def _fit_and_save(model: nn.Module, splits: DataSplits, *, name: str, arch: str, width: float,
                  pretrain: str, degree: str, phase: str, parent_id: int | None, config: TrainConfig,
                  progress: Progress, feature_cache: dict | None = None,
                  extra_metrics: dict[str, Any] | None = None) -> Any:
    def on_epoch(epoch: int, m: nn.Module) -> None:
        _save(m, splits, name=f"{name}-e{epoch}", arch=arch, width=width, pretrain=pretrain,
              degree=degree, phase="epoch", parent_id=parent_id, result=None, epoch=epoch, config=config)

    result = fit(model, arch, degree, splits.train, splits.val, config, progress, on_epoch, label=name,
                 feature_cache=feature_cache)
    return _save(model, splits, name=name, arch=arch, width=width, pretrain=pretrain,
                 degree=degree, phase=phase, parent_id=parent_id, result=result, epoch=None, config=config,
                 extra_metrics=extra_metrics)


def train(
    dataset: str | DataSplits,
    arch: str = "vgg16",
    pretrain: str = "natural",
    degree: str = "all",
    protocol: str = "single",
    width: float = 1.0,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    save_every: int | None = None,
    name: str | None = None,
    in_chans: int | None = None,
    config: TrainConfig | None = None,
    pretrain_kwargs: dict[str, Any] | None = None,
    progress: Progress = silent,
) -> list[Any]:
    """Fine-tune ``arch`` on ``dataset`` from the ``pretrain`` source at ``degree``.

    ``protocol="single"``: one run, checkpoint phase ``tl`` (degree tl) or ``ft``, parent = the
    pre-training checkpoint. ``protocol="tl-ft"`` (Elangovan & Ting): a TL run (head only), then
    full fine-tuning (``all``) continued from it; parent(FT) = TL, parent(TL) = pre-training.
    Missing ``natural``/``mri`` pre-training checkpoints are created first. ``in_chans``: the
    network's input channels, default the source's (ImageNet weights take 3: grey images are
    replicated and normalised as the weights expect; otherwise 1). Returns the saved
    :class:`models.checkpoints.CheckpointInfo` (TL then FT for ``tl-ft``).
    """
    from models.architectures import get_architecture as _ga
    from models.pretraining import list_pretraining_sources

    _ga(arch)
    _check_choice(degree, DEGREES, "fine-tuning degree")
    _check_choice(protocol, PROTOCOLS, "protocol")
    _check_choice(pretrain, list_pretraining_sources(), "pre-training source")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1 (got {epochs})")
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr must be positive (got {lr})")
    cfg = config or TrainConfig()
    overrides = {k: v for k, v in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size),
                                    ("save_every", save_every)) if v is not None}
    cfg = replace(cfg, seed=seed, **overrides)
    splits = load_splits(dataset)
    spec = get_architecture(arch)
    if splits.input_size < spec.min_input_size:
        raise ConfigError(f"{arch} needs inputs of at least {spec.min_input_size} px; dataset has {splits.input_size} px")
    model, parent = _start_model(arch, splits, width, pretrain, in_chans, pretrain_kwargs or {}, progress)
    base = name or cell_name(splits.name, arch, width, pretrain, degree if protocol == "single" else "tlft", seed)
    common = dict(arch=arch, width=width, pretrain=pretrain, config=cfg, progress=progress)
    if protocol == "single":
        phase = "tl" if degree == "tl" else "ft"
        return [_fit_and_save(model, splits, name=base, degree=degree, phase=phase, parent_id=parent, **common)]
    tl = _fit_and_save(model, splits, name=f"{base}-tl", degree="tl", phase="tl", parent_id=parent, **common)
    ft = _fit_and_save(model, splits, name=f"{base}-ft", degree="all", phase="ft", parent_id=tl.id,
                       **{**common, "config": replace(cfg, lr=cfg.lr * FT_LR_FACTOR)})
    return [tl, ft]


FT_LR_FACTOR = 0.5  # full fine-tuning continuing from a trained head uses half the learning rate


def _existing(names: Sequence[str]) -> dict[str, Any]:
    from pathlib import Path

    from sqlalchemy import select

    from db import Checkpoint, session_scope

    with session_scope() as session:
        rows = session.scalars(select(Checkpoint).where(Checkpoint.name.in_(list(names)))).all()
        return {r.name: r.id for r in rows if Path(r.path).is_file()}


GRID_EPOCHS: dict[str, int] = {"tl": 12, "1conv": 12, "2conv": 12, "3conv": 12, "4conv": 12, "all": 12}
GRID_INIT = ("previous", "tl", "pretrained")


def train_grid(
    dataset: str | DataSplits,
    archs: Sequence[str] = ("vgg16",),
    pretrains: Sequence[str] = ("natural", "mri"),
    degrees: Sequence[str] = DEGREES,
    width: float = 0.125,
    seed: int = 0,
    epochs: int | dict[str, int] | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    init: str = "previous",
    pretrain_kwargs: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    progress: Progress = silent,
) -> list[dict[str, Any]]:
    """The MRI study's design: every (arch, pre-training, degree) cell, resumable (a cell whose
    checkpoint exists is skipped; missing pre-training checkpoints are made first).

    ``init`` - where a ``kconv``/``all`` cell starts:
      * ``"previous"`` (default, gradual unfreezing as in ULMFiT, Howard & Ruder 2018): from the
        previous degree's trained cell (tl → 1conv → … → all). Blocks a degree freezes are still
        the pre-trained ones, so each cell's frozen part is exactly as documented; what differs
        from independent runs is the trainable part's starting point (already adapted).
      * ``"tl"``: from the TL cell (trained head, pre-trained backbone).
      * ``"pretrained"``: from the pre-trained backbone with a fresh head (fully independent).
    In every mode the TL cell is the parent of the other degrees (phase ``ft``), so each is a
    TL→FT pair for drift analysis; ``metrics["init_from"]`` names the checkpoint it started from.
    ``epochs``: one number, or per degree (default :data:`GRID_EPOCHS`). Frozen-block outputs are
    computed once per (arch, source) and shared by its cells.

    Returns one dict per cell: arch, pretrain, degree, name, checkpoint_id, skipped, accuracy,
    train_time_s.
    """
    from models.checkpoints import load

    check_names(archs, pretrains, degrees)
    _check_choice(init, GRID_INIT, "grid initialisation")
    cfg = config or TrainConfig()
    overrides = {k: v for k, v in (("lr", lr), ("batch_size", batch_size)) if v is not None}
    cfg = replace(cfg, seed=seed, **overrides)
    if isinstance(epochs, int):
        per_degree = {d: epochs for d in DEGREES}
    elif config is not None and epochs is None:
        per_degree = {d: config.epochs for d in DEGREES}
    else:
        per_degree = {**GRID_EPOCHS, **(epochs or {})}
    splits = load_splits(dataset)
    order = [d for d in DEGREES if d in degrees]
    if any(d != "tl" for d in order) and "tl" not in order and init != "pretrained":
        order = ["tl", *order]
    cells = [(a, p, d) for a in archs for p in pretrains for d in order]
    names = {c: cell_name(splits.name, c[0], width, c[1], c[2], seed) for c in cells}
    done = _existing(list(names.values()))
    out: list[dict[str, Any]] = []
    total = len(cells)
    caches: dict[tuple[str, str], dict] = {}  # frozen-block outputs shared by the cells of (arch, source)
    for i, (a, p, d) in enumerate(cells):
        name = names[(a, p, d)]
        progress(i * 1000, total * 1000, f"grid cell {i + 1}/{total}: {a} {p} {d}")
        if name in done:
            out.append({"arch": a, "pretrain": p, "degree": d, "name": name, "checkpoint_id": done[name], "skipped": True})
            continue
        sub = _subprogress(progress, i, total)
        tl_id = done.get(names.get((a, p, "tl"), ""))
        start_id = None
        if d != "tl" and init == "tl":
            start_id = tl_id
        elif d != "tl" and init == "previous":
            earlier = [names[(a, p, e)] for e in order[: order.index(d)]]
            start_id = next((done[n] for n in reversed(earlier) if n in done), None)
        if start_id is not None:
            model, _ = load(start_id)
        else:
            model, _ = _start_model(a, splits, width, p, None, pretrain_kwargs or {}, sub)
        parent = _pretrain_parent(a, width, p) if (d == "tl" or tl_id is None) else tl_id
        phase = "tl" if d == "tl" else "ft"
        lr_cell = cfg.lr * (FT_LR_FACTOR if start_id is not None else 1.0)
        cell_cfg = replace(cfg, lr=lr_cell, epochs=per_degree[d])
        info = _fit_and_save(model, splits, name=name, arch=a, width=width, pretrain=p, degree=d,
                             phase=phase, parent_id=parent, config=cell_cfg, progress=sub,
                             feature_cache=caches.setdefault((a, p), {}), extra_metrics={"init_from": start_id})
        done[name] = info.id
        if d == order[-1]:
            caches.pop((a, p), None)  # free the memory once the source's cells are done
        out.append({"arch": a, "pretrain": p, "degree": d, "name": name, "checkpoint_id": info.id, "skipped": False})
    progress(total * 1000, total * 1000, "grid done")
    from db import Checkpoint, session_scope

    with session_scope() as session:
        for row in out:
            ck = session.get(Checkpoint, row["checkpoint_id"])
            row["accuracy"] = (ck.metrics or {}).get("accuracy") if ck else None
            row["train_time_s"] = ck.train_time_s if ck else None
    return out


def _pretrain_parent(arch: str, width: float, source: str) -> int | None:
    """Id of the newest pre-training checkpoint of (source, arch, width), None for ``none``."""
    from sqlalchemy import select

    from db import Checkpoint, session_scope

    if source == "none":
        return None
    with session_scope() as session:
        return session.scalar(
            select(Checkpoint.id).where(Checkpoint.phase == "pretrain", Checkpoint.pretrain == source,
                                        Checkpoint.arch == arch, Checkpoint.width == float(width))
            .order_by(Checkpoint.id.desc()).limit(1)
        )


def _subprogress(progress: Progress, index: int, total: int) -> Progress:
    """Map a cell's own (done, total) onto the grid's bar: cell i covers [i, i+1)."""

    def report(done: int, sub_total: int, message: str) -> None:
        frac = done / sub_total if sub_total else 0.0
        progress(int(round((index + frac) * 1000)), total * 1000, message)

    return report
