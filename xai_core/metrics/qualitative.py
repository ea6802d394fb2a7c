"""The MRI study's qualitative figure: one sample across pre-training × fine-tuning degree × method.

:func:`stored_map_index` lists the stored maps of grid checkpoints (phases ``tl`` and ``ft``; epoch
snapshots, pre-training checkpoints and imports are no cells) on one split; :func:`grid_samples`
says which samples have maps and how many cells each fills; :func:`load_grid` reads one sample's
cells for one architecture: rows ``(pre-training, degree)`` (sources alphabetically, degrees in
the study's order), columns methods, each cell ``|map| / max|map|`` (0 to 1, so every cell uses
the whole colour scale, as the study's figure does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from db import AttributionMap, Checkpoint, Dataset, Sample, get_engine
from xai_core.errors import ShapeError
from xai_core.metrics._arrays import as_maps
from xai_core.metrics.chance_maps import CHANCE_METHODS
from xai_core.metrics.order import sort_by_degree
from xai_core.metrics.stored import masks_and_images, read_stored_maps

GRID_PHASES = ("tl", "ft")  # checkpoints that are cells of the pre-training x degree grid
CELL = ["pretrain", "degree", "method"]


def peak_scaled(maps: Any) -> np.ndarray:
    """``(N, H, W)`` float32 ``|map| / max|map|`` per map (an all-zero map stays 0)."""
    arr = np.abs(as_maps(maps, "maps"))
    peak = arr.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, arr / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)


def stored_map_index(split: str | None = "test") -> pd.DataFrame:
    """One row per stored map of a grid checkpoint on ``split`` (None: every split), chance
    baselines left out: checkpoint_id, checkpoint, arch, pretrain, degree ("-" when none), method,
    params_hash, sample_pk, sample_id, dataset. Of several parameter sets of one (checkpoint,
    method, sample) the first stored one is kept."""
    first = (
        select(func.min(AttributionMap.id).label("id"))
        .join(Checkpoint, Checkpoint.id == AttributionMap.checkpoint_id)
        .join(Sample, Sample.id == AttributionMap.sample_pk)
        .where(Checkpoint.phase.in_(GRID_PHASES), AttributionMap.method.not_in(list(CHANCE_METHODS)),
               *([Sample.split == split] if split else []))
        .group_by(AttributionMap.checkpoint_id, AttributionMap.method, AttributionMap.sample_pk)
        .subquery()
    )
    stmt = (
        select(AttributionMap.checkpoint_id, Checkpoint.name.label("checkpoint"), Checkpoint.arch, Checkpoint.pretrain,
               Checkpoint.degree, AttributionMap.method, AttributionMap.params_hash, AttributionMap.sample_pk,
               Sample.sample_id, Dataset.name.label("dataset"))
        .join(first, first.c.id == AttributionMap.id)
        .join(Checkpoint, Checkpoint.id == AttributionMap.checkpoint_id)
        .join(Sample, Sample.id == AttributionMap.sample_pk)
        .join(Dataset, Dataset.id == Sample.dataset_id)
        .order_by(AttributionMap.checkpoint_id, AttributionMap.method, AttributionMap.sample_pk)
    )
    with get_engine().connect() as conn:
        df = pd.read_sql(stmt, conn)
    df["degree"] = df["degree"].fillna("-")
    return df


def grid_samples(index: pd.DataFrame) -> pd.DataFrame:
    """The samples with stored maps, per architecture: arch, sample_pk, sample_id, dataset and
    ``cells`` (distinct pre-training × degree × method cells stored), fullest first, then by sample id."""
    cols = ["arch", "sample_pk", "sample_id", "dataset"]
    if index.empty:
        return pd.DataFrame(columns=[*cols, "cells"])
    counts = index.drop_duplicates([*cols, *CELL]).groupby(cols).size().rename("cells").reset_index()
    return counts.sort_values(["cells", "arch", "sample_id"], ascending=[False, True, True],
                              kind="stable").reset_index(drop=True)


def grid_cells(index: pd.DataFrame, sample_pk: int, arch: str) -> pd.DataFrame:
    """One row per (pre-training, degree, method) cell of ``sample_pk`` under ``arch``: the latest
    checkpoint (largest id) of that cell; sorted by pre-training, degree (study order), method."""
    rows = index[(index["sample_pk"] == int(sample_pk)) & (index["arch"] == arch)]
    rows = rows.sort_values("checkpoint_id", kind="stable").drop_duplicates(CELL, keep="last")
    return sort_by_degree(rows, ["pretrain", "degree", "method"])


@dataclass
class Grid:
    """One sample's qualitative grid: its image and lesion mask, the row and column labels and the
    cells' ``(H, W)`` maps keyed by (pre-training, degree, method)."""

    image: np.ndarray
    mask: np.ndarray
    rows: list[tuple[str, str]]
    methods: list[str]
    maps: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)


def grid_of(image: np.ndarray, mask: np.ndarray, cells: pd.DataFrame, maps: np.ndarray) -> Grid:
    """:class:`Grid` from :func:`grid_cells` rows and their ``(N, H, W)`` maps (same order)."""
    if len(cells) and np.shape(maps)[1:] != np.shape(image):
        raise ShapeError(f"maps {np.shape(maps)[1:]} and image {np.shape(image)} differ in size; the maps must be "
                         "stored at the image's resolution (re-run `xaudit explain`)")
    rows = list(dict.fromkeys(zip(cells["pretrain"], cells["degree"])))
    methods = sorted(set(cells["method"]))
    scaled = peak_scaled(maps) if len(cells) else np.zeros((0, *np.shape(image)), np.float32)
    keyed = {(p, d, m): scaled[i] for i, (p, d, m) in enumerate(zip(cells["pretrain"], cells["degree"], cells["method"]))}
    return Grid(np.asarray(image, np.float32), np.asarray(mask, bool), rows, methods, keyed)


def load_grid(index: pd.DataFrame, sample_pk: int, arch: str) -> Grid:
    """The stored maps of ``sample_pk``'s cells under ``arch`` (:func:`grid_cells`) over its image and mask."""
    cells = grid_cells(index, sample_pk, arch)
    maps = [read_stored_maps(int(r.checkpoint_id), r.method, r.params_hash, [int(sample_pk)])[0]
            for r in cells.itertuples()]
    masks, images = masks_and_images([int(sample_pk)], need_images=True)
    return grid_of(images[0], masks[0], cells, np.stack(maps) if maps else np.zeros((0, *images.shape[1:]), np.float32))
