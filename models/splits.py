"""A dataset's train/val/test arrays in memory, loaded from the workspace (or given as arrays)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from db import Dataset, session_scope
from xai_core.data import load_dataset
from xai_core.errors import InvalidValueError


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
