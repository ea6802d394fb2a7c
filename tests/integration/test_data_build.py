"""``build_dataset`` end to end: byte determinism, layout, DB round trip, user anatomy and every
bad input of issue 2 (each: its one-line message, and no files or rows left behind)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import func, select

from db import Dataset, Sample, reset_engines, session_scope
from xai_core.data import build_dataset, load_dataset, synthesize
from xai_core.data.anatomy import auto_brain_mask, load_anatomy
from xai_core.data.io import read_nifti
from xai_core.data.params import make_params
from xai_core.errors import ConfigError, InputFileError, InvalidValueError, ShapeError, WorkspaceError

SIZE = 32


def _nifti_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.nii.gz")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def assert_nothing_written(home: Path) -> None:
    """No dataset folder (not even a temp one) and no Dataset/Sample rows."""
    datasets = home / "datasets"
    if datasets.is_dir():
        assert sorted(p.name for p in datasets.iterdir()) == []
    if (home / "xaudit.db").exists() or os.environ.get("DATABASE_URL"):
        with session_scope() as session:
            assert session.scalar(select(func.count()).select_from(Dataset)) == 0
            assert session.scalar(select(func.count()).select_from(Sample)) == 0


def test_same_seed_same_bytes_other_seed_other_bytes(workspace: Path) -> None:
    build_dataset("a", n=12, size=SIZE, seed=0)
    build_dataset("b", n=12, size=SIZE, seed=0)
    build_dataset("c", n=12, size=SIZE, seed=1)
    root = workspace / "datasets"
    files = sorted(p.relative_to(root / "a").as_posix() for p in (root / "a").rglob("*.nii.gz"))
    assert len(files) == 24  # 12 images + 12 masks
    assert _nifti_digest(root / "a") == _nifti_digest(root / "b")
    assert _nifti_digest(root / "a") != _nifti_digest(root / "c")
    assert (root / "a" / "manifest.csv").read_bytes() == (root / "b" / "manifest.csv").read_bytes()
    # gzip header: mtime 0, so bytes do not depend on when they were written
    raw = (root / "a" / "images" / "s00000.nii.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"
    assert gzip.decompress(raw)[344:348] == b"n+1\x00"  # single-file NIfTI-1 magic


def test_layout_manifest_and_db_round_trip(workspace: Path) -> None:
    ds_id = build_dataset("tiny", n=10, size=SIZE, seed=4)
    folder = workspace / "datasets" / "tiny"
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    assert {"sample_id", "split", "label", "image_path", "mask_path", "lesion_area"} <= set(rows[0])
    assert [int(r["label"]) for r in rows].count(0) == 5
    loaded = load_dataset("tiny")
    assert loaded.images.shape == (10, SIZE, SIZE) and loaded.images.dtype == np.float32
    assert loaded.masks.dtype == bool and loaded.labels.dtype == np.int64
    assert loaded.class_names == ["regular", "irregular"]
    assert loaded.sample_ids == [r["sample_id"] for r in rows]
    for i, r in enumerate(rows):  # exactly what was written: NIfTI files, manifest and DB agree
        np.testing.assert_array_equal(loaded.images[i], read_nifti(folder / r["image_path"], ndim=2)[0])
        np.testing.assert_array_equal(loaded.masks[i], read_nifti(folder / r["mask_path"], ndim=2)[0] > 0)
        assert int(loaded.masks[i].sum()) == int(r["lesion_area"]) > 0
        assert loaded.labels[i] == int(r["label"]) and loaded.splits[i] == r["split"]
    with session_scope() as session:
        ds = session.get(Dataset, ds_id)
        assert (ds.kind, ds.n_samples, ds.image_size, ds.params["seed"]) == ("synthetic", 10, SIZE, 4)
        pks = session.scalars(select(Sample.id).where(Sample.dataset_id == ds_id).order_by(Sample.id)).all()
    assert loaded.sample_pks.tolist() == list(pks)
    images, masks, labels, ids = load_dataset("tiny", "train")  # unpacks; split filter
    assert ids == [r["sample_id"] for r in rows if r["split"] == "train"]
    # the NIfTI files alone (stacked cache removed) give the same arrays
    shutil.rmtree(folder / "cache")
    again = load_dataset("tiny", "train")
    np.testing.assert_array_equal(again.images, images)
    np.testing.assert_array_equal(again.masks, masks)


def _volume(shape: tuple[int, ...] = (24, 24, 20)) -> np.ndarray:
    """A bright ellipsoid 'head' on a dark background with some texture."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape[:3]], indexing="ij")
    r2 = sum(g**2 / a**2 for g, a in zip(grids, (0.8, 0.85, 0.9), strict=True))
    vol = np.where(r2 < 1, 0.6 + 0.3 * np.cos(6 * grids[0]) * np.sin(5 * grids[1]), 0.0).astype(np.float32)
    return vol.reshape(shape[:3] + (1,) * (len(shape) - 3)) * np.ones(shape, np.float32)


def _save(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_user_anatomy_with_brain_mask(workspace: Path, tmp_path: Path) -> None:
    anatomy = tmp_path / "anat"
    anatomy.mkdir()
    vol = _volume()
    _save(anatomy / "subj1.nii.gz", vol)
    _save(anatomy / "subj1_mask.nii.gz", (vol > 0).astype(np.uint8))
    build_dataset("mine", n=8, size=SIZE, seed=0, anatomy=str(anatomy))
    loaded = load_dataset("mine")
    assert loaded.masks.sum(axis=(1, 2)).min() > 0
    with session_scope() as session:
        assert session.scalar(select(Dataset.params).where(Dataset.name == "mine"))["anatomy"] == str(anatomy)


def test_user_anatomy_without_mask_uses_an_otsu_brain_mask(workspace: Path, tmp_path: Path) -> None:
    """No ``*_mask`` file: the mask is Otsu + largest component + filled holes; lesions stay in it."""
    anatomy = tmp_path / "anat"
    anatomy.mkdir()
    vol = _volume()
    _save(anatomy / "subj1.nii.gz", vol)
    (volume,) = load_anatomy(anatomy)
    np.testing.assert_array_equal(auto_brain_mask(vol), vol > 0)  # the ellipsoid head, exactly
    np.testing.assert_array_equal(volume.mask, vol > 0)
    synth = synthesize(make_params(n=8, size=SIZE, seed=0, anatomy=str(anatomy)))
    assert synth.masks.sum(axis=(1, 2)).min() > 0 and not (synth.masks & ~synth.brains).any()


BAD_ANATOMY = {
    "truncated": (InputFileError, "cannot read NIfTI file"),
    "2d": (ShapeError, "is 2D"),
    "4d": (ShapeError, "is 4D"),
    "empty-mask": (InvalidValueError, "is empty"),
    "mask-shape": (ShapeError, "must match voxel for voxel"),
    "nan": (InvalidValueError, "NaN or Inf"),
    "inf-mask": (InvalidValueError, "NaN or Inf"),
}


@pytest.mark.parametrize("case", list(BAD_ANATOMY))
def test_bad_anatomy_gives_one_line_and_writes_nothing(case: str, workspace: Path, tmp_path: Path) -> None:
    anatomy = tmp_path / "anat"
    anatomy.mkdir()
    vol = _volume()
    if case == "truncated":
        raw = _save(anatomy / "s.nii.gz", vol).read_bytes()
        (anatomy / "s.nii.gz").write_bytes(raw[: len(raw) // 2])
    elif case == "2d":
        _save(anatomy / "s.nii.gz", vol[:, :, 10])
    elif case == "4d":
        _save(anatomy / "s.nii.gz", _volume((24, 24, 20, 3)))
    elif case == "empty-mask":
        _save(anatomy / "s.nii.gz", vol)
        _save(anatomy / "s_mask.nii.gz", np.zeros(vol.shape, np.uint8))
    elif case == "mask-shape":
        _save(anatomy / "s.nii.gz", vol)
        _save(anatomy / "s_mask.nii.gz", np.ones((24, 24, 18), np.uint8))
    elif case == "nan":
        vol[3, 4, 5] = np.nan
        _save(anatomy / "s.nii.gz", vol)
    elif case == "inf-mask":
        _save(anatomy / "s.nii.gz", vol)
        mask = (vol > 0).astype(np.float32)
        mask[0, 0, 0] = np.inf
        _save(anatomy / "s_mask.nii.gz", mask)
    kind, text = BAD_ANATOMY[case]
    with pytest.raises(kind, match=text) as info:
        build_dataset("bad", n=8, size=SIZE, seed=0, anatomy=str(anatomy))
    assert "\n" not in str(info.value) and str(anatomy / "s") in str(info.value)
    assert_nothing_written(workspace)


def test_unknown_config_key_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("n: 8\nlesion_count: 2\n")
    with pytest.raises(ConfigError, match="unknown config key 'lesion_count'"):
        build_dataset("bad", config=cfg, size=SIZE)
    assert_nothing_written(workspace)


def test_existing_name_is_refused_then_overwritten(workspace: Path) -> None:
    build_dataset("dup", n=6, size=SIZE, seed=0)
    with pytest.raises(WorkspaceError, match="already exists.*--overwrite"):
        build_dataset("dup", n=6, size=SIZE, seed=1)
    build_dataset("dup", n=8, size=SIZE, seed=1, overwrite=True)
    assert len(load_dataset("dup")) == 8
    assert sorted(p.name for p in (workspace / "datasets").iterdir()) == ["dup"]


def test_workspace_on_a_path_that_cannot_be_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc refuses new folders even to root, the way a read-only mount does."""
    monkeypatch.setenv("XAUDIT_HOME", "/proc/xaudit-ws")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_engines()
    try:
        with pytest.raises(WorkspaceError, match="set XAUDIT_HOME to a writable directory") as info:
            build_dataset("ro", n=6, size=SIZE, seed=0)
        assert "\n" not in str(info.value)
        assert not Path("/proc/xaudit-ws").exists()
    finally:
        reset_engines()


def test_datasets_folder_blocked_by_a_file(workspace: Path) -> None:
    (workspace / "datasets").write_text("not a folder")
    with pytest.raises(WorkspaceError, match="XAUDIT_HOME"):
        build_dataset("blocked", n=6, size=SIZE, seed=0)
    assert (workspace / "datasets").read_text() == "not a folder"
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 0
