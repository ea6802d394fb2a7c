"""The frozen-block feature cache of fine-tuning: frozen leading blocks run once and their outputs
are reused by every epoch (and, keyed by a digest of those blocks' tensors, by every run whose
frozen blocks are bit-identical: the cells of a grid continuing from the same TL checkpoint).
With augmentation the outputs of every dihedral variant are cached while they fit
:data:`VARIANT_CACHE_BYTES`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from models.augment import n_dihedral
from models.prediction import run_batched

VARIANT_CACHE_BYTES = 4 * 2**30  # frozen-block outputs of every dihedral variant are cached up to this size


def variant_cache_fits(chain: Sequence[nn.Module], n_frozen: int, x: torch.Tensor, dev: torch.device) -> bool:
    """Whether the outputs of every frozen block for all dihedral variants of ``x`` fit
    :data:`VARIANT_CACHE_BYTES` (shapes from one image)."""
    out, per_image = x[:1].to(dev), 0
    with torch.no_grad():
        for block in chain[:n_frozen]:
            out = block.eval()(out)
            per_image += out.numel() * out.element_size()
    return per_image * len(x) * n_dihedral(x) <= VARIANT_CACHE_BYTES


def draw_variants(feats: list[torch.Tensor], idx: torch.Tensor, pick: torch.Tensor | None) -> torch.Tensor:
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


def _blocks_digest(blocks: Sequence[nn.Module]) -> str:
    """sha256 over the names, shapes and bytes of every tensor of ``blocks``."""
    h = hashlib.sha256()
    for i, block in enumerate(blocks):
        for name, t in [*block.named_parameters(), *block.named_buffers()]:
            h.update(f"{i}.{name}{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def frozen_outputs(chain: Sequence[nn.Module], n_frozen: int, x: torch.Tensor, split: str, dev: torch.device,
                    batch_size: int, cache: dict[tuple[str, str, int], torch.Tensor] | None) -> torch.Tensor:
    """Output of ``chain[:n_frozen]`` (eval mode) on ``x``, block by block; with ``cache``, every
    intermediate block output is stored under (digest of the blocks so far, split, N)."""
    if cache is None:
        return run_batched(nn.Sequential(*chain[:n_frozen]).eval(), x, dev, 2 * batch_size)
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
        out = run_batched(chain[j].eval(), out, dev, 2 * batch_size)
        cache[(digests[j], split, len(x))] = out
    return out
