"""Datasets in the workspace: build (generator), load, list; atomic files + one DB transaction.

Layout of ``$XAUDIT_HOME/datasets/<name>/``: ``images/<sample_id>.nii.gz``,
``masks/<sample_id>.nii.gz``, ``manifest.csv``, ``params.yaml`` and ``cache/`` (stacked
``images.npy``/``masks.npy`` in manifest order, a fast copy; the NIfTI files remain the truth and
the cache is rebuilt from them when it is missing or stale). A ``suppressor``/``confounder``
variant (xai_core.data.regions) also has ``regions/<sample_id>.nii.gz`` (the second mask; manifest
column ``region_path``) and ``cache/regions.npy``; its ``params.yaml`` names the variant. A
dataset is assembled in a hidden
temp folder and renamed into place inside the DB transaction that adds its rows, so an error leaves
neither files nor rows. DB paths (``Dataset.root``, ``Sample.image_path``/``mask_path``) are
relative to the workspace.
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from sqlalchemy import func, insert, select

from db import Dataset, ReviewCase, Sample, session_scope
from xai_core.config import home, workspace_dir
from xai_core.data.anatomy import load_anatomy, slice_bank
from xai_core.data.io import nifti_bytes, read_nifti
from xai_core.data.params import TWO_CLASS_NAMES, GeneratorParams, class_names, make_params
from xai_core.data.splits import sample_ids
from xai_core.data.synth import CHUNK, generate_chunk, labels_and_splits
from xai_core.errors import ConfigError, UnknownNameError, WorkspaceError
from xai_core.progress import Progress, silent

CLASS_NAMES = list(TWO_CLASS_NAMES)  # the default (two-class) benchmark; params.class_names for any
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ["sample_id", "split", "label", "image_path", "mask_path", "lesion_area", "n_lesions"]


@dataclass
class LoadedDataset:
    """Arrays of a dataset (or one split). Unpacks as ``images, masks, labels, sample_ids``."""

    images: np.ndarray  # (N, H, W) float32, roughly [0, 1]
    masks: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,) int64
    sample_ids: list[str]
    sample_pks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) Sample.id
    class_names: list[str] = field(default_factory=list)
    splits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))  # (N,) train/val/test
    lesion_area: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    name: str = ""
    regions: np.ndarray | None = None  # (N, H, W) bool second mask of a variant; None without one
    region_kind: str = ""  # "suppressor" | "confounder" | "" (xai_core.data.regions)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.images, self.masks, self.labels, self.sample_ids))

    def __len__(self) -> int:
        return len(self.sample_ids)


def check_name(name: str) -> str:
    """Dataset names become folder names: letters, digits, ``-``, ``_``, ``.``."""
    ok = name and len(name) <= 100 and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")
    if not ok:
        raise ConfigError(f"dataset name {name!r} must be letters, digits, '-', '_' or '.' (not starting with '.')")
    return name


# ----------------------------------------------------------------------------- writing


class Staging:
    """A hidden temp folder next to the final dataset folder; removed unless committed."""

    def __init__(self, name: str, overwrite: bool) -> None:
        self.name = check_name(name)
        self.parent = workspace_dir("datasets")
        self.final = self.parent / name
        self.tmp = self.parent / f".tmp-{name}-{os.getpid()}"
        self.overwrite = overwrite
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        try:
            (self.tmp / "images").mkdir(parents=True)
            (self.tmp / "masks").mkdir()
            (self.tmp / "cache").mkdir()
        except OSError as exc:
            raise WorkspaceError(f"cannot write in {self.parent} ({exc.strerror}); set XAUDIT_HOME to a writable folder") from None

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def ensure_new(name: str, overwrite: bool) -> None:
    """Raise WorkspaceError when ``name`` exists (rows or folder) and ``overwrite`` is false."""
    with session_scope() as s:
        exists = s.scalar(select(Dataset.id).where(Dataset.name == name)) is not None
        in_review = s.scalar(select(ReviewCase.id).join(Sample, ReviewCase.sample_pk == Sample.id)
                             .join(Dataset, Sample.dataset_id == Dataset.id).where(Dataset.name == name).limit(1))
    folder = home() / "datasets" / name
    if (exists or folder.exists()) and not overwrite:
        raise WorkspaceError(f"dataset {name!r} already exists; choose another --name or pass --overwrite")
    if exists and in_review:
        raise WorkspaceError(f"dataset {name!r} has images in a review study and cannot be overwritten; "
                             "build the new one under another --name")


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    extra = [k for k in (rows[0] if rows else {}) if k not in MANIFEST_COLUMNS]
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS + extra, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())


def commit_dataset(stage: Staging, *, kind: str, params: dict[str, Any], class_names: list[str],
                   image_size: int, rows: list[dict[str, Any]]) -> int:
    """Write manifest/params, then in ONE transaction: (replace and) insert rows, rename the
    staging folder into place. Any failure removes the new files and rolls back. Returns Dataset.id."""
    _write_manifest(stage.tmp / "manifest.csv", rows)
    (stage.tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=True))
    (stage.tmp / "cache" / "sample_ids.txt").write_text("\n".join(r["sample_id"] for r in rows) + "\n")
    rel_root = f"datasets/{stage.name}"
    trash = stage.parent / f".trash-{stage.name}-{os.getpid()}"
    moved_old = renamed = False
    try:
        with session_scope() as s:
            old = s.scalar(select(Dataset).where(Dataset.name == stage.name))
            if old is not None:
                if not stage.overwrite:
                    raise WorkspaceError(f"dataset {stage.name!r} already exists; choose another --name or pass --overwrite")
                s.delete(old)
                s.flush()
            ds = Dataset(name=stage.name, kind=kind, root=rel_root, params=params, class_names=class_names,
                         image_size=image_size, n_samples=len(rows))
            s.add(ds)
            s.flush()
            s.execute(insert(Sample), [
                dict(dataset_id=ds.id, sample_id=r["sample_id"], split=r["split"], label=int(r["label"]),
                     image_path=f"{rel_root}/{r['image_path']}",
                     mask_path=f"{rel_root}/{r['mask_path']}" if r["mask_path"] else None,
                     lesion_area=int(r["lesion_area"]), n_lesions=int(r["n_lesions"]))
                for r in rows
            ])
            if stage.final.exists():
                if not stage.overwrite:
                    raise WorkspaceError(f"folder {stage.final} already exists; remove it or pass --overwrite")
                os.replace(stage.final, trash)
                moved_old = True
            os.replace(stage.tmp, stage.final)
            renamed = True
            dataset_id = ds.id
    except BaseException:
        if renamed:
            shutil.rmtree(stage.final, ignore_errors=True)
        if moved_old:
            os.replace(trash, stage.final)
        stage.cleanup()
        raise
    shutil.rmtree(trash, ignore_errors=True)
    return dataset_id


# ----------------------------------------------------------------------------- building


def _chunk_job(args: tuple[GeneratorParams, Any, np.ndarray, int, str]) -> dict[str, Any]:
    """Generate one chunk and write its NIfTI files into the staging folder (worker-safe)."""
    params, bank, labels, chunk_index, folder = args
    chunk = generate_chunk(bank, params, labels, chunk_index)
    root = Path(folder)
    ids = sample_ids(params.n)
    for i in range(len(labels)):
        sid = ids[chunk.start + i]
        (root / "images" / f"{sid}.nii.gz").write_bytes(nifti_bytes(chunk.images[i], bank.pixel_mm))
        (root / "masks" / f"{sid}.nii.gz").write_bytes(nifti_bytes(chunk.masks[i].astype(np.uint8), bank.pixel_mm))
        if chunk.regions is not None:
            (root / "regions" / f"{sid}.nii.gz").write_bytes(nifti_bytes(chunk.regions[i].astype(np.uint8),
                                                                          bank.pixel_mm))
    return dict(start=chunk.start, images=chunk.images, masks=chunk.masks, regions=chunk.regions,
                n_lesions=chunk.n_lesions, clipped=chunk.clipped)


def build_dataset(name: str, params: GeneratorParams | None = None, *, config: str | Path | None = None,
                  overwrite: bool = False, workers: int = 1, progress: Progress = silent, **knobs: Any) -> int:
    """Generate the lesion benchmark ``name`` (see xai_core.data.synth) into the workspace.

    ``params`` or keyword knobs (``n=..., size=..., seed=...``); returns the Dataset id.
    Same parameters and seed give byte-identical images and masks, for any ``workers``."""
    params = params if params is not None else make_params(config, **knobs)
    check_name(name)
    ensure_new(name, overwrite)
    progress(0, params.n, "loading anatomy")
    volumes = load_anatomy(params.anatomy)
    bank = slice_bank(volumes, params.size, params.min_brain_fraction)
    labels, splits = labels_and_splits(params)
    stage = Staging(name, overwrite)
    try:
        images = np.lib.format.open_memmap(stage.tmp / "cache" / "images.npy", "w+", np.float32,
                                           (params.n, params.size, params.size))
        masks = np.lib.format.open_memmap(stage.tmp / "cache" / "masks.npy", "w+", np.bool_,
                                          (params.n, params.size, params.size))
        variant = params.variant != "none"
        if variant:
            (stage.tmp / "regions").mkdir()
            regions = np.lib.format.open_memmap(stage.tmp / "cache" / "regions.npy", "w+", np.bool_,
                                                (params.n, params.size, params.size))
        n_les = np.zeros(params.n, np.int64)
        jobs = [(params, bank, labels[c * CHUNK:(c + 1) * CHUNK], c, str(stage.tmp))
                for c in range((params.n + CHUNK - 1) // CHUNK)]
        done = clipped = 0
        for res in _run_jobs(jobs, workers):
            sl = slice(res["start"], res["start"] + len(res["images"]))
            images[sl], masks[sl], n_les[sl] = res["images"], res["masks"], res["n_lesions"]
            if variant:
                regions[sl] = res["regions"]
            clipped += res["clipped"]
            done += len(res["images"])
            progress(done, params.n, "generating")
        images.flush()
        masks.flush()
        area = masks.reshape(params.n, -1).sum(axis=1)
        del images, masks
        if variant:
            regions.flush()
            del regions
        rows = [dict(sample_id=sid, split=str(splits[i]), label=int(labels[i]),
                     image_path=f"images/{sid}.nii.gz", mask_path=f"masks/{sid}.nii.gz",
                     lesion_area=int(area[i]), n_lesions=int(n_les[i]),
                     **({"region_path": f"regions/{sid}.nii.gz"} if variant else {}))
                for i, sid in enumerate(sample_ids(params.n))]
        stored = params.to_dict() | {"pixel_mm": bank.pixel_mm, "volumes": bank.volume_names,
                                     "clipped_lesions": clipped}
        progress(params.n, params.n, "writing database")
        return commit_dataset(stage, kind="synthetic", params=stored, class_names=class_names(params),
                              image_size=params.size, rows=rows)
    except BaseException:
        stage.cleanup()
        raise


def _run_jobs(jobs: list[Any], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(jobs) < 2:
        yield from map(_chunk_job, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        yield from pool.map(_chunk_job, jobs)


# ----------------------------------------------------------------------------- reading


def dataset_root(name: str) -> Path:
    return home() / "datasets" / name


def dataset_exists(name: str) -> bool:
    """Whether a dataset of this name is registered in the workspace database."""
    with session_scope() as s:
        return s.scalar(select(Dataset.id).where(Dataset.name == name)) is not None


def list_datasets() -> list[dict[str, Any]]:
    """Every dataset, by name: ``id, name, kind, n, size, class_names, class_counts`` (per class
    name), ``split_counts`` (train/val/test), ``root`` (relative to the workspace), ``created_at``."""
    with session_scope() as s:
        datasets = s.scalars(select(Dataset).order_by(Dataset.name)).all()
        by_label = s.execute(select(Sample.dataset_id, Sample.label, func.count())
                             .group_by(Sample.dataset_id, Sample.label)).all()
        by_split = s.execute(select(Sample.dataset_id, Sample.split, func.count())
                             .group_by(Sample.dataset_id, Sample.split)).all()
        out = []
        for d in datasets:
            names = [str(c) for c in d.class_names]
            labels = {int(lab): int(k) for i, lab, k in by_label if i == d.id}
            splits = {str(sp): int(k) for i, sp, k in by_split if i == d.id}
            out.append(dict(
                id=int(d.id), name=d.name, kind=d.kind, n=int(d.n_samples), size=int(d.image_size),
                class_names=names, root=d.root, created_at=d.created_at,
                class_counts={names[c] if c < len(names) else str(c): labels.get(c, 0)
                              for c in range(max(len(names), max(labels, default=-1) + 1))},
                split_counts={sp: splits.get(sp, 0) for sp in SPLITS},
            ))
        return out


def _read_cache(root: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        cached = (root / "cache" / "sample_ids.txt").read_text().split()
        if cached != ids:
            return None
        images = np.load(root / "cache" / "images.npy", mmap_mode="r")
        masks = np.load(root / "cache" / "masks.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if images.shape[0] != len(ids) or masks.shape != images.shape:
        return None
    return images, masks


def _rebuild_cache(root: Path, ws: Path, image_paths: list[str], mask_paths: list[str | None],
                   ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read every NIfTI file (the truth) and rewrite the stacked cache atomically when possible."""
    imgs = np.stack([read_nifti(ws / p, ndim=2)[0] for p in image_paths]).astype(np.float32)
    msks = np.stack([read_nifti(ws / m, ndim=2)[0] > 0 if m else np.zeros(imgs.shape[1:], bool)
                     for m in mask_paths])
    try:
        cache = root / "cache"
        cache.mkdir(exist_ok=True)
        for fname, arr in (("images.npy", imgs), ("masks.npy", msks)):
            tmp = cache / f".{fname}.tmp{os.getpid()}"
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, cache / fname)
        (cache / "sample_ids.txt").write_text("\n".join(ids) + "\n")
    except OSError:
        pass
    return imgs, msks


def _region_cache(root: Path, ids: list[str], shape: tuple[int, ...]) -> np.ndarray:
    """``(N, H, W)`` bool second masks: ``cache/regions.npy`` when it matches ``ids`` and
    ``shape``, else read from ``regions/<id>.nii.gz`` (the truth) and cached again."""
    path = root / "cache" / "regions.npy"
    try:
        cached = (root / "cache" / "sample_ids.txt").read_text().split()
        arr = np.load(path, mmap_mode="r")
        if cached == ids and arr.shape == shape:
            return arr
    except (OSError, ValueError):
        pass
    files = [root / "regions" / f"{sid}.nii.gz" for sid in ids]
    if not all(f.is_file() for f in files):
        raise WorkspaceError(f"second-region masks of dataset {root.name!r} are missing ({root / 'regions'}); "
                             "rebuild it with --overwrite")
    arr = np.stack([read_nifti(f, ndim=2)[0] > 0 for f in files]) if ids else np.zeros(shape, bool)
    try:
        tmp = path.parent / f".regions.npy.tmp{os.getpid()}"
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)
    except OSError:
        pass
    return arr


def load_dataset(name: str, split: str | None = None) -> LoadedDataset:
    """Images ``(N,H,W)`` float32, masks ``(N,H,W)`` bool, labels ``(N,)`` int64, sample ids,
    Sample primary keys and class names of dataset ``name`` (all splits, or one of train/val/test)."""
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    with session_scope() as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == name))
        if ds is None:
            known = s.scalars(select(Dataset.name).order_by(Dataset.name)).all()
            hint = f"known: {', '.join(known)}" if known else "build one with `xaudit data build --name mri-lesions`"
            raise UnknownNameError(f"no dataset named {name!r} in {home()}; {hint}")
        rows = s.execute(
            select(Sample.id, Sample.sample_id, Sample.split, Sample.label, Sample.image_path,
                   Sample.mask_path, Sample.lesion_area).where(Sample.dataset_id == ds.id).order_by(Sample.id)
        ).all()
        class_names, root_rel = list(ds.class_names), ds.root
        kind = str((ds.params or {}).get("variant", "none"))
    ws = home()
    root = ws / root_rel
    if not root.is_dir():
        raise WorkspaceError(f"files of dataset {name!r} are missing ({root}); rebuild it with --overwrite")
    ids = [r.sample_id for r in rows]
    arrays = _read_cache(root, ids)
    if arrays is None:
        arrays = _rebuild_cache(root, ws, [r.image_path for r in rows], [r.mask_path for r in rows], ids)
    sel = np.array([i for i, r in enumerate(rows) if split is None or r.split == split], dtype=np.int64)
    images, masks = arrays
    pick = (lambda a: np.asarray(a[sel])) if len(sel) else (lambda a: np.asarray(a[:0]))
    regions = None if kind == "none" else pick(_region_cache(root, ids, tuple(masks.shape))).astype(bool)
    return LoadedDataset(
        images=pick(images).astype(np.float32, copy=False),
        masks=pick(masks).astype(bool, copy=False),
        labels=np.array([rows[i].label for i in sel], dtype=np.int64),
        sample_ids=[rows[i].sample_id for i in sel],
        sample_pks=np.array([rows[i].id for i in sel], dtype=np.int64),
        class_names=class_names,
        splits=np.array([rows[i].split for i in sel], dtype=str),
        lesion_area=np.array([rows[i].lesion_area for i in sel], dtype=np.int64),
        name=name,
        regions=regions,
        region_kind="" if kind == "none" else kind,
    )


@lru_cache(maxsize=4)
def _cached(home_dir: str, name: str, split: str | None, stamp: tuple) -> LoadedDataset:
    return load_dataset(name, split)


def cached_dataset(name: str, split: str | None = None) -> LoadedDataset:
    """:func:`load_dataset` kept for the process: the one dataset cache of the code base.

    Keyed on the workspace, the name, the split and the dataset's version (row id, size and
    creation time), so a rebuilt dataset or another workspace is read afresh. Callers must not
    modify the arrays.
    """
    with session_scope() as session:
        row = session.scalar(select(Dataset).where(Dataset.name == name))
        stamp = (row.id, row.n_samples, str(row.created_at)) if row is not None else (None,)
    return _cached(str(home()), name, split, stamp)


def sample_arrays(name: str, sample_pk: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``(H, W)`` float32 and lesion mask ``(H, W)`` bool of one sample (its ``Sample.id``) of
    dataset ``name``, read through :func:`cached_dataset` (views into it: do not modify them)."""
    ds = cached_dataset(name)
    where = np.flatnonzero(ds.sample_pks == int(sample_pk))
    if len(where) == 0:
        raise UnknownNameError(f"sample {sample_pk} is not in dataset {name!r}; pick one of its samples")
    return ds.images[where[0]], ds.masks[where[0]]


def sample_region(name: str, sample_pk: int) -> tuple[np.ndarray | None, str]:
    """The second mask ``(H, W)`` bool of one sample of a suppressor/confounder dataset and the
    variant's name, or ``(None, "")`` for a dataset without one (:func:`cached_dataset`; a view)."""
    ds = cached_dataset(name)
    if ds.regions is None:
        return None, ""
    where = np.flatnonzero(ds.sample_pks == int(sample_pk))
    if len(where) == 0:
        raise UnknownNameError(f"sample {sample_pk} is not in dataset {name!r}; pick one of its samples")
    return ds.regions[where[0]], ds.region_kind
