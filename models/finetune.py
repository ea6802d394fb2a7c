"""The fine-tuning loop (:func:`fit`): AdamW, learning rate with a linear warm-up then cosine decay,
early stopping on validation loss (best-validation weights restored), seeded, AMP on CUDA.

Speed: frozen leading blocks get no backward pass (their parameters do not require gradients and
the input does not either), run in eval mode (BatchNorm statistics untouched) and run **once**:
their outputs are cached (:mod:`models.feature_cache`) and every epoch trains only the trainable
tail ``chain[n_frozen:]`` (see :meth:`models.architectures.ArchSpec.chain`). With dihedral
augmentation the outputs of all 8 variants of each image are cached (the group is finite) and each
epoch draws one per image, as long as they fit the cache; beyond that the frozen blocks run every
step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.architectures import freeze_for_degree, frozen_blocks, get_architecture, trainable_blocks
from models.augment import augment, dihedral, n_dihedral
from models.feature_cache import draw_variants, frozen_outputs, variant_cache_fits
from models.inputs import prepare_images, preprocessed
from models.optim import lr_at, seed_everything, train_step
from xai_core.config import device as pick_device
from xai_core.progress import Progress, silent


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
    cache = bool(n_frozen) and (not config.augment or variant_cache_fits(chain, n_frozen, xtr, dev))
    variants = n_dihedral(xtr) if config.augment else 1
    feats: list[torch.Tensor] = []
    if cache:
        progress(0, 1, f"{label} caching frozen blocks 1-{n_frozen}")
        feats = [frozen_outputs(chain, n_frozen, dihedral(xtr, k).contiguous() if k else xtr, f"train-d{k}", dev,
                                 config.batch_size, feature_cache).to(dev) for k in range(variants)]
    if n_frozen:
        xva = frozen_outputs(chain, n_frozen, xva, "val", dev, config.batch_size, feature_cache)
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
                xb = draw_variants(feats, idx, torch.randint(0, variants, (len(idx),), generator=gen) if variants > 1 else None)
            else:
                xb = xtr[idx]
                xb = augment(xb.cpu(), gen).to(dev) if config.augment else xb
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
