"""``import_dataset``: ImageFolder of PNG / DICOM / NIfTI with masks and split CSV; exact pixel
values after padding and scaling; every bad input gives its message and leaves nothing behind."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from db import Dataset, session_scope
from tests.integration.test_data_build import assert_nothing_written
from xai_core.data import import_dataset, load_dataset
from xai_core.data.importer import count_components
from xai_core.data.io import robust_unit_scale
from xai_core.errors import ConfigError, InputFileError, InvalidValueError, ShapeError

RNG = np.random.default_rng(0)


def write_dicom(path: Path, arr: np.ndarray) -> None:
    # lazy: pydicom takes ~0.25 s to import; only the DICOM tests write files with it
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = DicomDataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def make_folder(root: Path, counts: dict[str, int], shape: tuple[int, int] = (20, 30),
                masks: bool = True) -> dict[str, np.ndarray]:
    """``root/<class>/p<i>.png`` random images and ``root/masks/<class>/p<i>.png`` (a 4x7 box)."""
    written = {}
    for cls, k in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(k):
            arr = RNG.integers(0, 256, shape)
            png(root / cls / f"p{i}.png", arr)
            written[f"{cls}/p{i}.png"] = arr
            if masks:
                m = np.zeros(shape, np.uint8)
                m[2 + i % 3 : 6 + i % 3, 5:12] = 255
                png(root / "masks" / cls / f"p{i}.png", m)
    return written


def test_mixed_formats_values_masks_and_stratified_split(workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    pngs = make_folder(root, {"normal": 10, "tumour": 10})
    dcm = RNG.integers(0, 4000, (30, 30))
    write_dicom(root / "tumour" / "d0.dcm", dcm)
    nii = RNG.normal(100, 20, (30, 30)).astype(np.float32)
    nib.save(nib.Nifti1Image(nii, np.eye(4)), str(root / "normal" / "n0.nii.gz"))
    png(root / "masks" / "tumour" / "d0.png", np.pad(np.full((3, 3), 9), ((10, 17), (4, 23))))
    png(root / "masks" / "normal" / "n0.png", np.zeros((30, 30)))

    ds_id = import_dataset(root, "own")
    data = load_dataset("own")
    ids = data.sample_ids
    assert data.class_names == ["normal", "tumour"]
    assert data.images.shape == (22, 30, 30)  # most common longer side: 30
    assert np.bincount(data.labels).tolist() == [11, 11]
    # PNG 20x30 -> zero-padded to 30x30 (5 rows on top), grey / 255, no resampling at the same side
    i = ids.index("tumour-p4")
    np.testing.assert_allclose(data.images[i, 5:25], pngs["tumour/p4.png"] / 255.0, rtol=1e-6)
    assert data.images[i, :5].max() == 0 and data.images[i, 25:].max() == 0
    expected_mask = np.zeros((30, 30), bool)
    expected_mask[5 + 2 + 1 : 5 + 6 + 1, 5:12] = True  # i % 3 == 1 box, shifted by the padding
    np.testing.assert_array_equal(data.masks[i], expected_mask)
    # DICOM / NIfTI: robust 0.5-99.5 percentile scaling
    np.testing.assert_allclose(data.images[ids.index("tumour-d0")], robust_unit_scale(dcm.astype(np.float32)),
                               atol=1e-6)
    np.testing.assert_allclose(data.images[ids.index("normal-n0")], robust_unit_scale(nii), atol=1e-6)
    assert int(data.masks[ids.index("tumour-d0")].sum()) == 9
    # deterministic stratified 70/15/15 per class: 11 -> round(7.7)=8 / round(1.65)=2 / 1
    for c in (0, 1):
        s = data.splits[data.labels == c]
        assert [int((s == k).sum()) for k in ("train", "val", "test")] == [8, 2, 1]
    import_dataset(root, "own2")
    assert load_dataset("own2").splits.tolist() == data.splits.tolist()
    with session_scope() as session:
        ds = session.get(Dataset, ds_id)
        assert ds.kind == "imported" and ds.params["class_counts"] == {"normal": 11, "tumour": 11}
    manifest = list(csv.DictReader((workspace / "datasets" / "own" / "manifest.csv").open()))
    assert {r["source_file"] for r in manifest} >= {"tumour/d0.dcm", "normal/n0.nii.gz"}
    assert all(int(r["n_lesions"]) == (1 if r["sample_id"] != "normal-n0" else 0) for r in manifest)


def test_split_csv_and_resize(workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_folder(root, {"a": 4, "b": 4}, shape=(32, 32), masks=False)
    split_file = tmp_path / "split.csv"
    with split_file.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "split"])
        for cls in ("a", "b"):
            for i, s in enumerate(["train", "train", "validation", "test"]):
                w.writerow([f"{cls}/p{i}.png", s])
    import_dataset(root, "sized", size=16, split_csv=split_file)
    data = load_dataset("sized")
    assert data.images.shape == (8, 16, 16) and not data.masks.any()
    assert data.splits.tolist() == ["train", "train", "val", "test"] * 2
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text("file,split\na/p0.png,train\n")
    with pytest.raises(ConfigError, match="gives no split for 7 images"):
        import_dataset(root, "partial", split_csv=bad)
    bad.write_text("file,split\nzz.png,train\n")
    with pytest.raises(ConfigError, match="'zz.png' matches no image"):
        import_dataset(root, "partial", split_csv=bad)


def test_count_components_per_image() -> None:
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 1:3, 1:3] = masks[0, 5:7, 5:7] = True  # two blobs
    masks[1, 0:8, 4] = True  # one line
    masks[2, 2, 2] = masks[2, 3, 3] = True  # diagonal neighbours: one component (8-connectivity)
    assert count_components(masks).tolist() == [2, 1, 1]


def _bad_case(case: str, root: Path) -> None:
    root.mkdir()
    if case == "empty":
        return
    if case == "single-class":
        make_folder(root, {"only": 5}, masks=False)
    elif case == "empty-class":
        make_folder(root, {"a": 5}, masks=False)
        (root / "b").mkdir()
    elif case == "unbalanced":
        make_folder(root, {"common": 30, "rare": 2}, masks=False)
    elif case == "unreadable":
        make_folder(root, {"a": 3, "b": 3}, masks=False)
        (root / "b" / "p1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    elif case == "mask-shape":
        make_folder(root, {"a": 3, "b": 3})
        png(root / "masks" / "b" / "p2.png", np.zeros((21, 30)))
    elif case == "missing-mask":
        make_folder(root, {"a": 3, "b": 3})
        (root / "masks" / "a" / "p0.png").unlink()
    elif case == "nan":
        make_folder(root, {"a": 3, "b": 3}, masks=False)
        arr = np.ones((20, 30), np.float32)
        arr[1, 1] = np.inf
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(root / "a" / "x.nii"))
    elif case == "volume":
        make_folder(root, {"a": 3, "b": 3}, masks=False)
        nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), str(root / "a" / "v.nii.gz"))
    elif case == "unsupported":
        make_folder(root, {"a": 3, "b": 3}, masks=False)
        (root / "a" / "notes.txt").write_text("hi")


BAD_IMPORTS = {
    "empty": (InputFileError, "has no class folders"),
    "single-class": (InputFileError, "single class folder \\(only\\)"),
    "empty-class": (InputFileError, "class folder .*b has no images"),
    "unbalanced": (InvalidValueError, r"wildly unbalanced \(common=30, rare=2; .*--allow-unbalanced"),
    "unreadable": (InputFileError, "cannot read image .*p1.png"),
    "mask-shape": (ShapeError, r"mask .*p2.png has shape \(21, 30\) but image .* has \(20, 30\)"),
    "missing-mask": (InputFileError, "1 of 6 images have no mask .*first: a/p0.png"),
    "nan": (InvalidValueError, "x.nii contains 1 NaN or Inf"),
    "volume": (ShapeError, "v.nii.gz is 3D"),
    "unsupported": (InputFileError, "notes.txt: unsupported file type"),
}


@pytest.mark.parametrize("case", list(BAD_IMPORTS))
def test_bad_import_gives_one_line_and_writes_nothing(case: str, workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    _bad_case(case, root)
    kind, pattern = BAD_IMPORTS[case]
    with pytest.raises(kind, match=pattern) as info:
        import_dataset(root, "bad")
    assert "\n" not in str(info.value)
    assert_nothing_written(workspace)


def test_allow_unbalanced_accepts_and_keeps_counts(workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    _bad_case("unbalanced", root)
    import_dataset(root, "skewed", allow_unbalanced=True)
    assert np.bincount(load_dataset("skewed").labels).tolist() == [30, 2]
    with session_scope() as session:
        assert session.scalar(select(Dataset.params).where(Dataset.name == "skewed"))["allow_unbalanced"] is True
