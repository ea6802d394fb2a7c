"""xai_core.catalog: what the pages list (dataset names, sample index, checkpoint lineage and detail)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from db import Dataset, session_scope
from xai_core.catalog import (
    accuracy_grid,
    checkpoint_detail,
    checkpoint_table,
    dataset_names,
    lineage,
    sample_frame,
    sample_index,
)
from xai_core.data import build_dataset, load_dataset, sample_arrays
from xai_core.errors import UnknownNameError


def test_lineage_follows_parents_and_stops_at_a_cycle() -> None:
    rows = [{"id": 1, "phase": "pretrain", "parent_id": None}, {"id": 3, "phase": "tl", "parent_id": 1},
            {"id": 4, "phase": "ft", "parent_id": 3}, {"id": 7, "phase": "ft", "parent_id": 99},
            {"id": 8, "phase": "tl", "parent_id": 9}, {"id": 9, "phase": "ft", "parent_id": 8}]
    assert lineage(rows) == {1: "pretrain #1", 3: "pretrain #1 → tl #3", 4: "pretrain #1 → tl #3 → ft #4",
                             7: "ft #7", 8: "ft #9 → tl #8", 9: "tl #8 → ft #9"}


def test_samples_checkpoints_and_detail(workspace: Path) -> None:
    build_dataset("tiny", n=12, size=32, seed=0, train_frac=0.5, val_frac=0.1)
    build_dataset("other", n=8, size=32, seed=1)
    assert dataset_names() == ["tiny", "other"]  # oldest first
    test = load_dataset("tiny", split="test")
    rows = sample_index("tiny", "test")
    assert [r[0] for r in rows] == sorted(int(pk) for pk in test.sample_pks)
    assert [(r[1], r[2], r[3]) for r in rows] == [(str(s), int(lab), "test") for s, lab in
                                                  sorted(zip(test.sample_ids, test.labels, strict=True),
                                                         key=lambda t: t[0])]
    assert len(sample_index("tiny")) == 12 and sample_index("missing") == []

    # the Data page's frame: every sample by pk, its recorded lesion area = its mask's pixels
    full = load_dataset("tiny")
    frame = sample_frame("tiny")
    assert frame["pk"].tolist() == full.sample_pks.tolist() == sorted(full.sample_pks.tolist())
    assert frame["sample_id"].tolist() == full.sample_ids and frame["label"].tolist() == full.labels.tolist()
    assert frame["split"].tolist() == full.splits.tolist()
    assert frame["lesion_area"].tolist() == full.masks.sum(axis=(1, 2)).tolist()
    assert sample_frame("missing").empty
    image, mask = sample_arrays("tiny", int(full.sample_pks[5]))
    np.testing.assert_array_equal(image, full.images[5])
    np.testing.assert_array_equal(mask, full.masks[5])
    other_pk = int(load_dataset("other").sample_pks[0])
    with pytest.raises(UnknownNameError, match=f"sample {other_pk} is not in dataset 'tiny'"):
        sample_arrays("tiny", other_pk)

    assert checkpoint_table().empty
    torch.manual_seed(0)
    net = models.build("vgg16", 2, 1, 0.125)
    with session_scope() as session:
        ds_id = session.query(Dataset.id).filter(Dataset.name == "tiny").scalar()
    common = dict(arch="vgg16", width=0.125, num_classes=2, in_chans=1, input_size=32, pretrain="none", dataset_id=ds_id)
    tl = models.save_checkpoint(net, name="ck-tl", degree="tl", phase="tl", class_names=["regular", "spiculated"],
                                metrics={"accuracy": 0.6, "confusion_matrix": [[3, 1], [1, 1]]},
                                history=[{"epoch": 1, "train_loss": 0.7}], **common)
    ft = models.save_checkpoint(net, name="ck-ft", degree="all", phase="ft", parent_id=tl.id,
                                metrics={"accuracy": 0.8}, **common)
    table = checkpoint_table().set_index("id")
    assert table.loc[ft.id, "lineage"] == f"tl #{tl.id} → ft #{ft.id}" and table.loc[tl.id, "lineage"] == f"tl #{tl.id}"
    grid = accuracy_grid(table.reset_index(), "vgg16")
    assert list(grid.columns) == ["tl", "all"] and grid.loc["none"].tolist() == pytest.approx([0.6, 0.8])

    detail = checkpoint_detail(tl.id)
    assert detail.class_names == ["regular", "spiculated"]  # from the metadata file next to the weights
    assert detail.history == [{"epoch": 1, "train_loss": 0.7}] and detail.metrics["confusion_matrix"] == [[3, 1], [1, 1]]
    side = Path(tl.path).with_suffix(".json")
    side.write_text(json.dumps({"class_names": []}))
    assert checkpoint_detail(tl.id).class_names == [str(c) for c in load_dataset("tiny").class_names]  # the dataset's
    side.write_text("{not json")
    assert checkpoint_detail(tl.id).class_names == [str(c) for c in load_dataset("tiny").class_names]
    with pytest.raises(UnknownNameError, match=r"^no checkpoint #999 in this workspace"):
        checkpoint_detail(999)
