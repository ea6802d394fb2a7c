"""File I/O, splits and chunk-level determinism of the data package (hand-checked values)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from xai_core.data.anatomy import load_mni152, slice_bank
from xai_core.data.io import nifti_bytes, pad_square, read_nifti, resize_stack, robust_unit_scale
from xai_core.data.params import make_params
from xai_core.data.splits import sample_ids, stratified_split
from xai_core.data.synth import CHUNK, generate_chunk, labels_and_splits, synthesize
from xai_core.errors import InputFileError, ShapeError


def test_nifti_bytes_are_reproducible_and_round_trip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    a, b = nifti_bytes(arr, 1.5), nifti_bytes(arr.copy(), 1.5)
    assert a == b and a[4:8] == b"\x00\x00\x00\x00"  # gzip mtime field is 0
    assert nifti_bytes(arr + 1e-6, 1.5) != a
    (tmp_path / "x.nii.gz").write_bytes(a)
    back, img = read_nifti(tmp_path / "x.nii.gz", ndim=2)
    np.testing.assert_array_equal(back, arr)
    assert img.header.get_zooms()[:2] == (1.5, 1.5)
    assert gzip.decompress(a)[344:348] == b"n+1\x00"


def test_read_nifti_drops_trailing_singletons_and_rejects_bad_files(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((4, 5, 1), np.float32), np.eye(4)), str(tmp_path / "s.nii"))
    assert read_nifti(tmp_path / "s.nii", ndim=2)[0].shape == (4, 5)
    assert read_nifti(tmp_path / "s.nii", ndim=3)[0].shape == (4, 5, 1)
    nib.save(nib.Nifti1Image(np.ones((4, 5), np.float32), np.eye(4)), str(tmp_path / "flat.nii"))
    with pytest.raises(ShapeError, match=r"is 2D with shape \(4, 5\); a 3D volume is expected"):
        read_nifti(tmp_path / "flat.nii", ndim=3)
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 20)
    with pytest.raises(InputFileError, match="cannot read NIfTI file .*junk.nii.gz"):
        read_nifti(tmp_path / "junk.nii.gz", ndim=3)


def test_intensity_scaling_padding_and_resizing_values() -> None:
    data = np.arange(201, dtype=np.float32)  # percentiles 0.5 / 99.5 = 1.0 / 199.0
    out = robust_unit_scale(data)
    assert out[0] == 0.0 and out[1] == 0.0 and out[199] == 1.0 and out[200] == 1.0
    assert out[100] == pytest.approx(99 / 198)
    padded = pad_square(np.ones((2, 5)))
    assert padded.shape == (5, 5) and padded[:, :].sum() == 10 and padded[1:3].sum() == 10
    mask = resize_stack(np.kron(np.eye(2), np.ones((4, 4)))[None], 4, mask=True)[0]
    np.testing.assert_array_equal(mask, np.kron(np.eye(2), np.ones((2, 2))).astype(bool))


def test_stratified_split_counts_and_determinism() -> None:
    labels = np.array([0] * 20 + [1] * 40)
    s = stratified_split(labels, seed=5)
    assert [int(((labels == 0) & (s == k)).sum()) for k in ("train", "val", "test")] == [14, 3, 3]
    assert [int(((labels == 1) & (s == k)).sum()) for k in ("train", "val", "test")] == [28, 6, 6]
    assert s.tolist() == stratified_split(labels, seed=5).tolist()
    assert s.tolist() != stratified_split(labels, seed=6).tolist()
    assert sample_ids(3) == ["s00000", "s00001", "s00002"] and sample_ids(123456)[-1] == "s123455"


def test_a_chunk_does_not_depend_on_the_chunks_before_it() -> None:
    """Chunk c draws from SeedSequence(seed, spawn_key=(c,)): generating it alone (as a worker
    process does) gives the same bytes as inside the whole run; another seed changes it."""
    params = make_params(n=CHUNK + 8, size=32, seed=11)
    bank = slice_bank([load_mni152()], 32, params.min_brain_fraction)
    whole = synthesize(params, bank)
    labels, splits = labels_and_splits(params)
    assert np.bincount(labels).tolist() == [params.n // 2] * 2
    alone = generate_chunk(bank, params, labels[CHUNK:], 1)
    np.testing.assert_array_equal(alone.images, whole.images[CHUNK:])
    np.testing.assert_array_equal(alone.masks, whole.masks[CHUNK:])
    other = generate_chunk(bank, make_params(n=CHUNK + 8, size=32, seed=12), labels[CHUNK:], 1)
    assert not np.array_equal(other.images, alone.images)
