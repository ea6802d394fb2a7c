"""Import the user's labelled images: ImageFolder layout (one sub-folder per class).

``DIR/<class>/<image>`` with PNG/JPEG, DICOM (.dcm) or 2D NIfTI files; optional lesion masks in
``DIR/masks/<class>/<image>`` (or ``DIR/masks/<image>``) with the same file name, extension aside
(non-zero = lesion; when ``masks/`` exists every image needs one); an optional split CSV with
columns ``file`` (or ``path``/``filename``; relative to DIR, e.g. ``normal/a.png``) and ``split``
(train/val/test, ``validation`` accepted); without it a deterministic stratified 70/15/15 split.

Each image is zero-padded to a centred square and resized to ``size`` (default: the most common
longer side, so images of that side are not resampled); intensities: PNG/JPEG grey levels / 255
(16-bit / 65535), DICOM/NIfTI ``(x - p0.5) / (p99.5 - p0.5)`` clipped to [0, 1]. Everything is read
and checked before anything is written; the result is stored like the synthetic benchmark.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from db.tables import Sample, column_limit
from xai_core.data.dataset import Staging, check_name, commit_dataset, ensure_new
from xai_core.data.io import (
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    RASTER_SUFFIXES,
    nifti_bytes,
    pad_square,
    read_image_2d,
    resize_stack,
    robust_unit_scale,
    strip_suffix,
)
from xai_core.data.splits import stratified_split
from xai_core.errors import ConfigError, InputFileError, InvalidValueError, ShapeError
from xai_core.progress import Progress, silent

SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES
MIN_SHARE = 0.10  # smallest class must hold at least 10 % of the largest unless allow_unbalanced
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def count_components(masks: np.ndarray) -> np.ndarray:
    """Connected lesion components per mask ``(N,H,W)`` (8-connectivity), as ``(N,)`` int64."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-neighbourhood within each image, never across images
    labels, _ = ndi.label(masks, structure=structure)
    out = np.zeros(len(masks), np.int64)
    for i in range(len(masks)):  # unique labels per image (cheap: a few hundred px per mask)
        ids = np.unique(labels[i])
        out[i] = int((ids > 0).sum())
    return out


def scan_folder(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names (sorted sub-folders except ``masks``), image files and their labels."""
    if not root.is_dir():
        raise InputFileError(f"import folder {root} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "masks" and not p.name.startswith("."))
    if not classes:
        raise InputFileError(f"{root} has no class folders; put the images in one sub-folder per class")
    if len(classes) == 1:
        raise InputFileError(f"{root} has a single class folder ({classes[0]}); a classifier needs at least two")
    files: list[Path] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        if not found:
            raise InputFileError(f"class folder {root / name} has no images; add some or remove the folder")
        for p in found:
            if not p.name.lower().endswith(SUFFIXES):
                raise InputFileError(f"{p}: unsupported file type; use PNG, JPEG, DICOM (.dcm) or NIfTI (.nii/.nii.gz)")
        files += found
        labels += [c] * len(found)
    return classes, files, np.asarray(labels, dtype=np.int64)


def check_balance(counts: dict[str, int], allow_unbalanced: bool) -> None:
    """Refuse when the smallest class has < 10 % of the largest (unless ``allow_unbalanced``)."""
    small = min(counts, key=lambda k: (counts[k], k))
    large = max(counts, key=lambda k: (counts[k], k))
    if not allow_unbalanced and counts[small] < MIN_SHARE * counts[large]:
        listing = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        raise InvalidValueError(
            f"classes are wildly unbalanced ({listing}; {small} has < {MIN_SHARE:.0%} of the largest); "
            "add images or pass --allow-unbalanced"
        )


def read_split_csv(path: Path, rels: list[str]) -> np.ndarray:
    """Split of each relative path from a CSV with ``file``/``path``/``filename`` and ``split``."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    except OSError as exc:
        raise InputFileError(f"cannot read split CSV {path} ({exc.strerror})") from None
    key = next((k for k in ("file", "path", "filename") if k in fields), None)
    if key is None or "split" not in fields:
        raise ConfigError(f"split CSV {path} needs columns 'file' (relative path) and 'split'")
    by_rel = {r: i for i, r in enumerate(rels)}
    by_name = {Path(r).name: i for i, r in enumerate(rels)}
    out = np.empty(len(rels), dtype=object)
    for row in rows:
        ref, value = (row.get(key) or "").strip(), (row.get("split") or "").strip().lower()
        i = by_rel.get(ref, by_name.get(ref))
        if i is None:
            raise ConfigError(f"split CSV {path}: {ref!r} matches no image; use paths like class/file.png")
        if value not in SPLIT_ALIASES:
            raise ConfigError(f"split CSV {path}: unknown split {value!r} for {ref!r}; use train, val or test")
        out[i] = SPLIT_ALIASES[value]
    missing = [rels[i] for i in range(len(rels)) if out[i] is None]
    if missing:
        raise ConfigError(f"split CSV {path} gives no split for {len(missing)} images (first: {missing[0]}); list them all")
    return out.astype(str)


def _mask_for(root: Path, rel: Path) -> Path | None:
    stem = strip_suffix(rel.name)
    for folder in (root / "masks" / rel.parent, root / "masks"):
        if folder.is_dir():
            for cand in sorted(folder.iterdir()):
                if cand.is_file() and strip_suffix(cand.name) == stem and cand.name.lower().endswith(SUFFIXES):
                    return cand
    return None


def import_dataset(folder: str | Path, name: str, *, split_csv: str | Path | None = None, size: int | None = None,
                   seed: int = 0, allow_unbalanced: bool = False, overwrite: bool = False,
                   progress: Progress = silent) -> int:
    """Import an ImageFolder of labelled images as dataset ``name`` (kind ``imported``); returns its id."""
    root = Path(folder).expanduser().resolve()
    check_name(name)
    classes, files, labels = scan_folder(root)
    counts = {c: int((labels == i).sum()) for i, c in enumerate(classes)}
    check_balance(counts, allow_unbalanced)
    rels = [f.relative_to(root).as_posix() for f in files]
    splits = read_split_csv(Path(split_csv), rels) if split_csv else stratified_split(labels, seed)
    ensure_new(name, overwrite)
    # read and check everything first
    has_masks = (root / "masks").is_dir()
    raw, raw_masks = [], []
    for i, f in enumerate(files):
        data, unit = read_image_2d(f)
        raw.append(data if unit else robust_unit_scale(data))
        mask = None
        if has_masks:
            mpath = _mask_for(root, Path(rels[i]))
            if mpath is not None:
                mdata, _ = read_image_2d(mpath)
                if mdata.shape != data.shape:
                    raise ShapeError(f"mask {mpath} has shape {tuple(mdata.shape)} but image {f} has "
                                     f"{tuple(data.shape)}; they must match pixel for pixel")
                mask = mdata > 0
        raw_masks.append(mask)
        progress(i + 1, 2 * len(files), "reading")
    if has_masks:
        missing = [rels[i] for i, m in enumerate(raw_masks) if m is None]
        if missing:
            raise InputFileError(f"{len(missing)} of {len(files)} images have no mask in {root / 'masks'} "
                                 f"(first: {missing[0]}); add them or remove the masks folder")
    if size is None:
        size = Counter(max(a.shape) for a in raw).most_common(1)[0][0]
    if not 8 <= size <= 2048:
        raise ConfigError(f"size must be 8..2048 (got {size})")
    images = np.stack([resize_stack(pad_square(a)[None], size)[0] for a in raw]).astype(np.float32)
    masks = np.zeros(images.shape, bool)
    for i, m in enumerate(raw_masks):
        if m is not None:
            masks[i] = resize_stack(pad_square(m.astype(np.float32))[None], size, mask=True)[0]
    n_lesions = count_components(masks)
    ids, seen = [], set()
    limit = column_limit(Sample.sample_id)
    for i, rel in enumerate(rels):
        parts = Path(rel).parts
        sid = "-".join([*parts[:-1], strip_suffix(parts[-1])])
        sid = "".join(c if c.isalnum() or c in "-_." else "_" for c in sid)
        while sid in seen:
            sid += "_"
        if len(sid) > limit:
            raise ConfigError(f"sample id from {rel} is {len(sid)} characters long (at most {limit} are stored); "
                              "shorten its folder or file name")
        seen.add(sid)
        ids.append(sid)
    stage = Staging(name, overwrite)
    try:
        rows = []
        for i, sid in enumerate(ids):
            (stage.tmp / "images" / f"{sid}.nii.gz").write_bytes(nifti_bytes(images[i]))
            if has_masks:
                (stage.tmp / "masks" / f"{sid}.nii.gz").write_bytes(nifti_bytes(masks[i].astype(np.uint8)))
            rows.append(dict(sample_id=sid, split=str(splits[i]), label=int(labels[i]),
                             image_path=f"images/{sid}.nii.gz",
                             mask_path=f"masks/{sid}.nii.gz" if has_masks else "",
                             lesion_area=int(masks[i].sum()), n_lesions=int(n_lesions[i]), source_file=rels[i]))
            progress(len(files) + i + 1, 2 * len(files), "writing")
        np.save(stage.tmp / "cache" / "images.npy", images)
        np.save(stage.tmp / "cache" / "masks.npy", masks)
        params = dict(source=str(root), size=int(size), seed=seed, split_csv=str(split_csv) if split_csv else None,
                      allow_unbalanced=allow_unbalanced, class_counts=counts)
        return commit_dataset(stage, kind="imported", params=params, class_names=classes, image_size=int(size),
                              rows=rows)
    except BaseException:
        stage.cleanup()
        raise
