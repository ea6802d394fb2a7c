"""Tiny, fast test fixtures: an easy two-class benchmark registered in the DB."""

from __future__ import annotations

import numpy as np

from db import Dataset, Sample, session_scope
from models.splits import DataSplits


def easy_benchmark(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey noisy background with one disc of radius 4, darker (class 0) or brighter (class 1);
    classes alternate so every split is balanced. Returns ``(images (n,size,size) float32, labels)``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = 0.5 + 0.05 * rng.standard_normal((n, size, size))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(6, size - 6, n), rng.integers(6, size - 6, n)
    disc = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 < 16
    x += disc * np.where(y == 1, 0.35, -0.35)[:, None, None]
    return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)


def register_easy_dataset(name: str = "easy", size: int = 32, n_train: int = 96, n_val: int = 32,
                          n_test: int = 40) -> DataSplits:
    """:func:`easy_benchmark` splits whose test samples are real ``Dataset``/``Sample`` rows, so
    training stores per-sample predictions (images stay in memory)."""
    train_xy, val_xy, test_xy = (easy_benchmark(n_train, size, 0), easy_benchmark(n_val, size, 1),
                                 easy_benchmark(n_test, size, 2))
    with session_scope() as session:
        ds = Dataset(name=name, kind="synthetic", root="memory", params={}, class_names=["dark", "bright"],
                     image_size=size, n_samples=n_test)
        session.add(ds)
        session.flush()
        rows = [Sample(dataset_id=ds.id, sample_id=f"t{i:03d}", split="test", label=int(lab), image_path="memory")
                for i, lab in enumerate(test_xy[1])]
        session.add_all(rows)
        session.flush()
        pks, ds_id = np.array([r.id for r in rows], dtype=np.int64), ds.id
    return DataSplits(name, train_xy, val_xy, test_xy, ["dark", "bright"], test_pks=pks, dataset_id=ds_id)
