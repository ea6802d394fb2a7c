"""Anatomy sources: nilearn's MNI152 T1 template (shipped with nilearn) or the user's T1 volumes.

An anatomy becomes a *slice bank*: the axial slices of each volume whose brain area is at least
``min_brain_fraction`` of the volume's largest axial brain section, cropped to a square around the
brain, normalised to [0, 1] and resized to the output size, together with their brain masks.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from xai_core.data.io import is_nifti, read_nifti, resize_stack, strip_suffix
from xai_core.errors import InputFileError, InvalidValueError, ShapeError

MIN_VOXELS = 8  # smallest side of an accepted volume


@dataclass(frozen=True)
class Volume:
    """A 3D T1 volume in RAS+ orientation, its brain mask, voxel sizes (mm) and its origin."""

    name: str
    data: np.ndarray  # (X, Y, Z) float32
    mask: np.ndarray  # (X, Y, Z) bool
    zooms: tuple[float, float, float]


@dataclass(frozen=True)
class SliceBank:
    """Axial slices ready for augmentation: ``images (M,S,S)`` float32 in [0,1], ``brain (M,S,S)``
    bool, ``volume (M,)`` index of the source volume, ``z (M,)`` slice index, ``pixel_mm``."""

    images: np.ndarray
    brain: np.ndarray
    volume: np.ndarray
    z: np.ndarray
    volume_names: list[str]
    pixel_mm: float


def _canonical(img: nib.Nifti1Image, data: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorient a 3D array to RAS+ (axial = last axis) using the image's affine."""
    ornt = nib.orientations.io_orientation(img.affine)
    data = nib.orientations.apply_orientation(data, ornt)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    perm = [int(a) for a in ornt[:, 0]]
    new_zooms = [0.0, 0.0, 0.0]
    for src, dst in enumerate(perm):
        new_zooms[dst] = zooms[src]
    return np.ascontiguousarray(data, dtype=np.float32), (new_zooms[0], new_zooms[1], new_zooms[2])


def _check_volume(path: Path, data: np.ndarray) -> None:
    if min(data.shape) < MIN_VOXELS:
        raise ShapeError(f"{path} has shape {tuple(data.shape)}; each side needs >= {MIN_VOXELS} voxels")
    if float(data.max()) <= float(data.min()):
        raise InvalidValueError(f"{path} is constant ({float(data.min())}); it holds no anatomy")


def auto_brain_mask(data: np.ndarray) -> np.ndarray:
    """Brain/head mask of a T1 volume without a supplied mask: Otsu threshold (scikit-image),
    largest connected component, holes filled (scipy.ndimage)."""
    fg = data > threshold_otsu(data)
    labels, count = ndi.label(fg)
    if count > 1:
        sizes = ndi.sum_labels(fg, labels, index=np.arange(1, count + 1))
        fg = labels == (int(np.argmax(sizes)) + 1)
    return ndi.binary_fill_holes(fg)


def load_volume(path: Path, mask_path: Path | None = None) -> Volume:
    """Read and validate one T1 volume (and its brain mask, else an automatic one)."""
    data, img = read_nifti(path, ndim=3)
    _check_volume(path, data)
    data, zooms = _canonical(img, data)
    if mask_path is not None:
        mdata, mimg = read_nifti(mask_path, ndim=3)
        mdata, _ = _canonical(mimg, mdata)
        if mdata.shape != data.shape:
            raise ShapeError(
                f"brain mask {mask_path} has shape {tuple(mdata.shape)} but {path} has "
                f"{tuple(data.shape)}; they must match voxel for voxel"
            )
        mask = mdata > 0.5
        if not mask.any():
            raise InvalidValueError(f"brain mask {mask_path} is empty (no voxel > 0.5); supply a non-empty mask")
    else:
        mask = auto_brain_mask(data)
        if not mask.any():
            raise InvalidValueError(f"could not find a brain in {path}; supply a {strip_suffix(path.name)}_mask.nii.gz")
    return Volume(strip_suffix(path.name), data, mask, zooms)


@lru_cache(maxsize=1)
def read_canonical(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 3D NIfTI volume in RAS+ orientation (axial = last axis) and its voxel sizes in mm, for
    viewing (read and validated by :func:`~xai_core.data.io.read_nifti`, no brain mask)."""
    data, img = read_nifti(Path(path), ndim=3)
    return _canonical(img, data)


def read_uploaded(name: str, payload: bytes) -> tuple[np.ndarray, tuple[float, float, float]]:
    """:func:`read_canonical` of an uploaded file's bytes (nibabel reads paths: a temporary file
    named like the upload, ``.nii`` or ``.nii.gz``, removed afterwards)."""
    suffix = ".nii.gz" if name.lower().endswith(".gz") else ".nii"
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        return read_canonical(path)
    finally:
        os.unlink(path)


def load_mni152() -> Volume:
    """nilearn's MNI152 T1 template and brain mask at 1 mm, the resolution shipped inside nilearn
    (``resolution=1`` reads the packaged file; other resolutions resample, nothing is fetched).

    Cached per process (a few seconds to read); the arrays are made read-only so sharing is safe."""
    # lazy: nilearn takes ~1.7 s; only the MNI152 source uses it
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    t1 = load_mni152_template(resolution=1)
    brain = load_mni152_brain_mask(resolution=1)
    data, zooms = _canonical(t1, np.asarray(t1.dataobj, dtype=np.float32))
    mask, _ = _canonical(brain, np.asarray(brain.dataobj, dtype=np.float32))
    mask = mask > 0.5
    data.setflags(write=False)
    mask.setflags(write=False)
    return Volume("MNI152", data, mask, zooms)


def mni152_path() -> Path:
    """Path of the template file packaged with nilearn (for the page's slice browser)."""
    spec = importlib.util.find_spec("nilearn")  # located without importing nilearn (slow import)
    root = Path(next(iter(spec.submodule_search_locations)))  # type: ignore[union-attr]
    return root / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def find_volumes(folder: Path) -> list[tuple[Path, Path | None]]:
    """Pairs (T1 file, mask file or None) in ``folder``; ``X_mask.nii[.gz]`` is the mask of ``X``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"anatomy folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p))
    masks = {strip_suffix(p.name)[: -len("_mask")]: p for p in files if strip_suffix(p.name).endswith("_mask")}
    volumes = [p for p in files if not strip_suffix(p.name).endswith("_mask")]
    if not volumes:
        raise InputFileError(f"no T1 volumes (.nii or .nii.gz) in {folder}; add at least one")
    orphan = sorted(set(masks) - {strip_suffix(p.name) for p in volumes})
    if orphan:
        raise InputFileError(f"mask {masks[orphan[0]].name} in {folder} has no matching volume {orphan[0]}.nii.gz")
    return [(p, masks.get(strip_suffix(p.name))) for p in volumes]


def load_anatomy(folder: str | Path | None) -> list[Volume]:
    """The volumes of ``folder`` (validated), or the MNI152 template when ``folder`` is None."""
    if folder is None:
        return [load_mni152()]
    return [load_volume(p, m) for p, m in find_volumes(Path(folder))]


def _axial_square(vol: Volume, zs: np.ndarray, margin: float = 0.06) -> tuple[np.ndarray, np.ndarray, float]:
    """Axial slices ``zs`` cropped to a square (in mm) around the brain's in-plane bounding box,
    returned in display orientation (rows = posterior->anterior flipped, cols = left->right)."""
    sx, sy = vol.zooms[0], vol.zooms[1]
    inplane = vol.mask[:, :, zs].any(axis=2)
    xs, ys = np.nonzero(inplane)
    cx, cy = (xs.min() + xs.max()) / 2 * sx, (ys.min() + ys.max()) / 2 * sy
    side_mm = max((xs.max() - xs.min() + 1) * sx, (ys.max() - ys.min() + 1) * sy) * (1 + 2 * margin)
    half_x, half_y = int(np.ceil(side_mm / 2 / sx)), int(np.ceil(side_mm / 2 / sy))
    x0, y0 = int(round(cx / sx)) - half_x, int(round(cy / sy)) - half_y
    pad = [(max(0, -x0), max(0, x0 + 2 * half_x - vol.data.shape[0])),
           (max(0, -y0), max(0, y0 + 2 * half_y - vol.data.shape[1]))]
    img = np.pad(vol.data[:, :, zs], pad + [(0, 0)])
    msk = np.pad(vol.mask[:, :, zs], pad + [(0, 0)])
    x0p, y0p = x0 + pad[0][0], y0 + pad[1][0]
    img = img[x0p : x0p + 2 * half_x, y0p : y0p + 2 * half_y]
    msk = msk[x0p : x0p + 2 * half_x, y0p : y0p + 2 * half_y]
    # (X, Y, M) -> (M, Y, X) with anterior at the top
    img = np.transpose(img, (2, 1, 0))[:, ::-1, :]
    msk = np.transpose(msk, (2, 1, 0))[:, ::-1, :]
    return img, msk, side_mm


def slice_bank(volumes: list[Volume], size: int, min_brain_fraction: float) -> SliceBank:
    """All usable axial slices of ``volumes`` at ``size`` x ``size`` (see module docstring).

    Intensities: ``(x - p0.5) / (p99.5_brain - p0.5)`` per volume, clipped to [0, 1]."""
    images, brains, vol_idx, z_idx = [], [], [], []
    pixel_mm = 1.0
    for v, vol in enumerate(volumes):
        area = vol.mask.sum(axis=(0, 1))
        zs = np.nonzero(area >= min_brain_fraction * area.max())[0]
        lo = float(np.percentile(vol.data, 0.5))
        hi = float(np.percentile(vol.data[vol.mask], 99.5))
        scaled = Volume(vol.name, np.clip((vol.data - lo) / max(hi - lo, 1e-6), 0, 1), vol.mask, vol.zooms)
        img, msk, side_mm = _axial_square(scaled, zs)
        images.append(resize_stack(img, size))
        brains.append(resize_stack(msk.astype(np.float32), size, mask=True))
        vol_idx.append(np.full(len(zs), v))
        z_idx.append(zs)
        pixel_mm = side_mm / size
    brain = np.concatenate(brains)
    keep = brain.sum(axis=(1, 2)) > 0
    if not keep.any():
        raise InvalidValueError("no axial slice has brain tissue at this size; check the brain masks or --size")
    return SliceBank(
        images=np.concatenate(images)[keep],
        brain=brain[keep],
        volume=np.concatenate(vol_idx)[keep],
        z=np.concatenate(z_idx)[keep],
        volume_names=[v.name for v in volumes],
        pixel_mm=float(pixel_mm),
    )
