"""The training step and learning-rate schedule shared by fine-tuning (:mod:`models.finetune`) and the
pretext pre-training loop (:mod:`models.pretraining`)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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
