"""File I/O: byte-reproducible NIfTI writing, NIfTI/DICOM/PNG/JPEG reading with clear errors.

NIfTI files are written as ``gzip(nibabel.Nifti1Image.to_bytes())`` with ``mtime=0`` and no
embedded file name, so the same array always gives the same bytes (a plain ``nib.save`` of a
``.nii.gz`` stores the write time in the gzip header).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from xai_core.errors import InputFileError, InvalidValueError, ShapeError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def strip_suffix(name: str) -> str:
    """``a.nii.gz`` -> ``a``; ``b.png`` -> ``b``."""
    lower = name.lower()
    for suffix in (".nii.gz", *RASTER_SUFFIXES, *DICOM_SUFFIXES, ".nii"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def nifti_bytes(array: np.ndarray, spacing: float = 1.0, compresslevel: int = 1) -> bytes:
    """Deterministic ``.nii.gz`` bytes of a 2D array (float32 image or uint8 mask)."""
    affine = np.diag([spacing, spacing, 1.0, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), compresslevel=compresslevel, mtime=0)


def _finite(data: np.ndarray, path: Path) -> np.ndarray:
    bad = ~np.isfinite(data)
    if bad.any():
        raise InvalidValueError(
            f"{path} contains {int(bad.sum())} NaN or Inf voxels; replace them (e.g. by 0) and retry"
        )
    return data


def read_nifti(path: Path, ndim: int | None = None) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load a NIfTI file fully (so truncation is detected), as float32 with trailing singleton
    axes beyond ``ndim`` dropped. Raises InputFileError / ShapeError / InvalidValueError."""
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise InputFileError(f"NIfTI file {path} does not exist") from None
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputFileError(
            f"cannot read NIfTI file {path} (truncated or not NIfTI: {reason}); re-export or remove it"
        ) from None
    if ndim is not None:
        while data.ndim > ndim and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != ndim:
            raise ShapeError(
                f"{path} is {data.ndim}D with shape {tuple(data.shape)}; a {ndim}D "
                f"{'volume' if ndim == 3 else 'image'} is expected"
            )
    return _finite(data, path), img


def read_dicom(path: Path) -> np.ndarray:
    """A single-frame DICOM image as float32 (rescale slope/intercept applied, MONOCHROME1 inverted)."""
    # lazy: pydicom takes ~0.25 s to import; only DICOM files use it
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
        data = ds.pixel_array.astype(np.float32)
    except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputFileError(f"cannot read DICOM file {path} ({reason}); re-export it") from None
    data = data * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and getattr(ds, "SamplesPerPixel", 1) > 1:
        data = data[..., :3].mean(axis=-1)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ShapeError(f"{path} holds a {data.ndim}D DICOM image {tuple(data.shape)}; one 2D slice is expected")
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        data = data.max() - data
    return _finite(data, path)


def read_raster(path: Path) -> np.ndarray:
    """A PNG/JPEG image as float32 grey levels in [0, 1] (colour averaged, 16-bit supported)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                data = np.asarray(im, dtype=np.float32)
                top = 65535.0 if im.mode.startswith("I;16") else max(float(data.max()), 1.0)
                return data / top
            data = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputFileError(f"cannot read image {path} ({reason}); re-export it as PNG or JPEG") from None
    return data


def read_image_2d(path: Path) -> tuple[np.ndarray, bool]:
    """Any supported 2D image as float32; second value: whether it is already in [0, 1] (PNG/JPEG)."""
    name = path.name.lower()
    if name.endswith(RASTER_SUFFIXES):
        return read_raster(path), True
    if name.endswith(DICOM_SUFFIXES):
        return read_dicom(path), False
    if name.endswith(NIFTI_SUFFIXES):
        data, _ = read_nifti(path, ndim=2)
        return data, False
    raise InputFileError(f"{path}: unsupported file type; use PNG, JPEG, DICOM (.dcm) or NIfTI (.nii/.nii.gz)")


def robust_unit_scale(data: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Map intensities to roughly [0, 1]: (x - p_low) / (p_high - p_low), clipped to [0, 1]."""
    lo, hi = np.percentile(data, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def pad_square(data: np.ndarray) -> np.ndarray:
    """Zero-pad the last two axes to a centred square (keeps the aspect ratio when resizing)."""
    h, w = data.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pad = [(0, 0)] * (data.ndim - 2) + [(top, side - h - top), (left, side - w - left)]
    return np.pad(data, pad)


def resize_stack(stack: np.ndarray, size: int, mask: bool = False) -> np.ndarray:
    """Resize ``(N, H, W)`` to ``(N, size, size)``: antialiased bilinear for images; for masks the
    bilinear coverage is thresholded at 0.5 (returns bool)."""
    t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    out = t[:, 0].numpy()
    return out >= 0.5 if mask else out.astype(np.float32)
