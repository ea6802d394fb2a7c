"""How a dataset's samples are named and split into train/val/test (shared by the generator, the
importer and the dataset store)."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, seed: int, train: float = 0.7, val: float = 0.15) -> np.ndarray:
    """Deterministic stratified split: per class, a seeded shuffle, then the first
    ``round(train*n_c)`` train, next ``round(val*n_c)`` val, rest test. Returns split names."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    out = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        idx = idx[rng.permutation(len(idx))]
        n_tr, n_va = int(round(train * len(idx))), int(round(val * len(idx)))
        out[idx[:n_tr]] = "train"
        out[idx[n_tr : n_tr + n_va]] = "val"
        out[idx[n_tr + n_va :]] = "test"
    return out.astype(str)


def sample_ids(n: int) -> list[str]:
    """``s00000``, ``s00001``, ... (at least five digits)."""
    width = max(5, len(str(n - 1)))
    return [f"s{i:0{width}d}" for i in range(n)]
