"""Checkpoint I/O: safetensors + JSON metadata in ``$XAUDIT_HOME/checkpoints``, one DB row each.

* Files are written atomically (temp file, then ``os.replace``); their sha256 is stored in the DB.
* Loading never unpickles arbitrary objects: safetensors, or ``torch.load(weights_only=True)``
  for external ``.pt``/``.pth`` state dicts (a pickle that would run code is refused).
* Every tensor is validated against the architecture before loading; the error names the first
  mismatching tensor (missing, unexpected or of another shape).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sqlalchemy import select
from torch import nn

from db import Checkpoint, Dataset, Prediction, ReviewCase, session_scope
from db.tables import column_limit
from models.architectures import build, get_architecture
from models.inputs import get_preprocess, preprocess_name, set_preprocess
from xai_core.config import workspace_dir
from xai_core.errors import CheckpointError, ConfigError, InputFileError, UnknownNameError, XAuditError

META_KEY = "xaudit"


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`save_checkpoint` stored: DB id, name, file path, sha256 and metadata."""

    id: int | None
    name: str
    path: Path
    sha256: str
    metadata: dict[str, Any]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


MAX_FILE_NAME = 255  # bytes in one path component on Linux, macOS and Windows file systems


def safe_name(name: str) -> str:
    """A file-system-safe version of a checkpoint name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "checkpoint"


def _atomic_write_json(path: Path, payload: Mapping[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def write_safetensors(model: nn.Module | Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, Any]) -> str:
    """Write the state dict + metadata atomically (tensor file and ``.json`` sidecar); return sha256."""
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={META_KEY: json.dumps(dict(metadata), sort_keys=True)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _atomic_write_json(path.with_suffix(".json"), dict(metadata))
    return sha256_file(path)


# ------------------------------------------------------------------------------------------
# Reading tensors safely
# ------------------------------------------------------------------------------------------
def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and embedded metadata of a safetensors or torch state-dict file, read safely.

    ``.safetensors`` are parsed without code execution; anything else goes through
    ``torch.load(weights_only=True)``, which refuses pickles that reference arbitrary callables.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"checkpoint file {path} does not exist; check the path")
    with open(path, "rb") as handle:
        head = handle.read(8)
    is_torch = head[:2] == b"PK" or head[:1] == b"\x80"
    if not is_torch:
        try:
            with safe_open(str(path), framework="pt") as f:
                raw_meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path.name} is not a readable safetensors/torch checkpoint ({exc}); the file is truncated or "
                "of another format, re-export it with safetensors.torch.save_file or torch.save(state_dict)"
            ) from None
        meta: dict[str, Any] = {}
        if META_KEY in raw_meta:
            try:
                meta = json.loads(raw_meta[META_KEY])
            except json.JSONDecodeError:
                meta = {}
        return _strip_prefixes(state), meta
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path.name}: it contains pickled objects other than tensors "
            f"({str(exc).splitlines()[-1][:160]}); export a plain state dict or safetensors"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{path.name} is truncated or not a torch checkpoint ({str(exc).splitlines()[0][:160]}); "
            "re-export it with torch.save(model.state_dict(), FILE)"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path.name} does not hold a state dict of tensors; save model.state_dict()")
    return _strip_prefixes(dict(obj)), {}


def first_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], ignore: tuple[str, ...] = ()) -> str | None:
    """Describe the first tensor where ``state`` disagrees with ``model`` (model order), or None."""
    expected = model.state_dict()
    for key, ref in expected.items():
        if key.startswith(ignore) if ignore else False:
            continue
        if key not in state:
            return f"tensor {key!r} is missing (expected shape {tuple(ref.shape)})"
        if tuple(state[key].shape) != tuple(ref.shape):
            return f"tensor {key!r} has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}"
    for key in state:
        if key not in expected and not (ignore and key.startswith(ignore)):
            return f"tensor {key!r} is not part of the architecture"
    return None


def load_state_checked(model: nn.Module, state: Mapping[str, torch.Tensor], what: str,
                       ignore: tuple[str, ...] = ()) -> nn.Module:
    """Copy ``state`` into ``model`` after validating every tensor's name and shape."""
    problem = first_mismatch(model, state, ignore)
    if problem:
        raise CheckpointError(f"{what} does not match the architecture: {problem}; check --arch / --num-classes")
    expected = model.state_dict()
    filtered = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    model.load_state_dict(filtered, strict=not ignore)
    return model


# ------------------------------------------------------------------------------------------
# Database
# ------------------------------------------------------------------------------------------
def _check_replaceable(name: str, replace: bool) -> None:
    """Refuse to save over checkpoint ``name`` when ``replace`` is false or a review study rates it."""
    with session_scope() as session:
        existing = session.scalar(select(Checkpoint.id).where(Checkpoint.name == name))
        if existing is None:
            return
        if not replace:
            raise ConfigError(f"a checkpoint named {name!r} exists already; pick another --name")
        if session.scalar(select(ReviewCase.id).where(ReviewCase.checkpoint_id == existing).limit(1)):
            raise CheckpointError(f"checkpoint {name!r} is rated in a review study and cannot be replaced; "
                                  "save the new one under another --name")


def save_checkpoint(
    model: nn.Module,
    *,
    name: str,
    arch: str,
    width: float,
    num_classes: int,
    in_chans: int,
    input_size: int,
    pretrain: str,
    degree: str | None,
    phase: str,
    class_names: list[str] | None = None,
    epoch: int | None = None,
    parent_id: int | None = None,
    dataset_id: int | None = None,
    metrics: dict[str, Any] | None = None,
    history: list[Any] | None = None,
    train_time_s: float = 0.0,
    device: str = "cpu",
    predictions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    replace: bool = True,
) -> CheckpointInfo:
    """Write ``model`` to ``checkpoints/<name>.safetensors`` and register it (plus its test-split
    predictions ``(sample_pks, pred, prob, correct)``) in one DB transaction. The model's input
    normalisation (:func:`models.inputs.preprocess_name`) is kept in the file's metadata."""
    check_checkpoint_name(name)
    meta = {
        "arch": arch, "width": float(width), "num_classes": int(num_classes), "in_chans": int(in_chans),
        "input_size": int(input_size), "pretrain": pretrain, "degree": degree, "phase": phase,
        "class_names": list(class_names or [str(i) for i in range(num_classes)]), "epoch": epoch,
        "name": name, "preprocess": preprocess_name(model),
    }
    _check_replaceable(name, replace)  # before the file is written: a refusal leaves the old file in place
    path = workspace_dir("checkpoints") / f"{safe_name(name)}.safetensors"
    digest = write_safetensors(model, path, meta)
    with session_scope() as session:
        existing = session.scalar(select(Checkpoint).where(Checkpoint.name == name))
        if existing is not None:
            session.delete(existing)
            session.flush()
        row = Checkpoint(
            name=name, arch=arch, width=float(width), num_classes=int(num_classes), in_chans=int(in_chans),
            input_size=int(input_size), pretrain=pretrain, degree=degree, phase=phase, epoch=epoch,
            parent_id=parent_id, dataset_id=dataset_id, path=str(path), sha256=digest,
            metrics=_jsonable(metrics or {}), history=_jsonable(history or []),
            train_time_s=float(train_time_s), device=str(device),
        )
        session.add(row)
        session.flush()
        if predictions is not None:
            pks, pred, prob, correct = predictions
            session.add_all(
                Prediction(checkpoint_id=row.id, sample_pk=int(pk), pred=int(p), prob=float(q), correct=bool(c))
                for pk, p, q, c in zip(pks.tolist(), pred.tolist(), prob.tolist(), correct.tolist(), strict=True)
            )
        checkpoint_id = row.id
    return CheckpointInfo(checkpoint_id, name, path, digest, {**meta, "sha256": digest, "checkpoint_id": checkpoint_id})


def check_checkpoint_name(name: str) -> str:
    """A name that fits the database column and, as ``<name>.safetensors``, a file name."""
    limit = min(column_limit(Checkpoint.name), MAX_FILE_NAME - len(".safetensors"))
    if not name or len(name) > limit:
        raise ConfigError(f"checkpoint name must be 1..{limit} characters (got {len(name)}); choose a shorter --name")
    return name


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def resolve_checkpoint(ref: int | str | Path, *, missing_ok: bool = False) -> Any:
    """The ``db.Checkpoint`` row (detached, attributes loaded) for an id, a name or a registered file path.

    The one checkpoint lookup of the code base. An unknown reference raises
    :class:`UnknownNameError` naming how to list checkpoints, or gives None with ``missing_ok``
    (:func:`load` then reads an unregistered file).
    """
    text = str(ref).strip()
    with session_scope() as session:
        row = session.get(Checkpoint, int(text)) if text.isdigit() else None
        if row is None:
            row = session.scalar(select(Checkpoint).where(Checkpoint.name == text))
        if row is None and isinstance(ref, (str, Path)) and Path(ref).is_file():
            row = session.scalar(select(Checkpoint).where(Checkpoint.path == str(Path(ref).resolve())))
        if row is not None:
            session.expunge(row)
    if row is None and not missing_ok:
        raise UnknownNameError(f"no registered checkpoint {ref!r}; list them with `xaudit models list`")
    return row


def load(ref: int | str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a network from a checkpoint id, name or file path; returns ``(model, metadata)``.

    The model is in eval mode on the CPU, its input normalisation set (``metadata["preprocess"]``,
    ``none`` for checkpoints saved without one). ``metadata`` holds arch, width, num_classes,
    in_chans, input_size, pretrain, degree, phase, class_names, preprocess, sha256 and
    checkpoint_id (None off-DB).
    """
    row = resolve_checkpoint(ref, missing_ok=True)
    if row is not None:
        path = Path(row.path)
        if not path.is_file():
            raise InputFileError(f"checkpoint {row.name} points at missing file {path}; re-train or re-import it")
    else:
        path = Path(str(ref))
        if not path.is_file():
            raise UnknownNameError(
                f"no checkpoint with id or name {ref!r} and no such file; see `xaudit models list`"
            )
    state, meta = read_tensors(path)
    sidecar = path.with_suffix(".json")
    if not meta and sidecar.is_file():
        meta = json.loads(sidecar.read_text())
    if row is not None:
        meta = {**meta, **{k: getattr(row, k) for k in ("arch", "width", "num_classes", "in_chans", "input_size",
                                                           "pretrain", "degree", "phase", "epoch")}}
    if not meta.get("arch"):
        raise CheckpointError(
            f"{path.name} carries no architecture metadata; register it with "
            "`xaudit models import FILE --arch A --num-classes C`"
        )
    model = build(meta["arch"], int(meta["num_classes"]), int(meta.get("in_chans", 1)), float(meta.get("width", 1.0)))
    load_state_checked(model, state, path.name)
    try:
        set_preprocess(model, str(meta.get("preprocess", "none")))
    except XAuditError as exc:
        raise CheckpointError(f"{path.name} declares an input preprocessing that cannot be used: {exc}") from None
    model.eval()
    meta = dict(meta)
    meta.setdefault("input_size", get_architecture(meta["arch"]).default_input_size)
    meta.setdefault("class_names", [str(i) for i in range(int(meta["num_classes"]))])
    meta["sha256"] = row.sha256 if row is not None else sha256_file(path)
    meta["checkpoint_id"] = row.id if row is not None else None
    meta["path"] = str(path)
    return model, meta


def import_checkpoint(
    file: str | Path,
    arch: str,
    num_classes: int,
    name: str | None = None,
    width: float = 1.0,
    in_chans: int | None = None,
    input_size: int | None = None,
    class_names: list[str] | None = None,
    preprocess: str = "none",
    dataset: str | None = None,
) -> CheckpointInfo:
    """Validate an external state dict against ``arch`` and register a safetensors copy of it.

    ``preprocess``: the input normalisation its weights expect (``imagenet`` for torchvision
    ImageNet fine-tunes; see :data:`models.inputs.PREPROCESSING`), stored with the checkpoint.
    ``dataset``: the dataset it belongs to (explained on by default; its image size is the
    default ``input_size``)."""
    spec = get_architecture(arch)
    get_preprocess(preprocess)
    dataset_id, dataset_size, dataset_classes = _dataset_row(dataset, num_classes) if dataset else (None, None, None)
    state, _ = read_tensors(Path(file))
    if in_chans is None:
        key = f"{spec.first_conv}.weight"
        in_chans = int(state[key].shape[1]) if key in state and state[key].ndim == 4 else 1
    model = build(arch, num_classes, in_chans, width)
    load_state_checked(model, state, Path(file).name)
    set_preprocess(model, preprocess)
    return save_checkpoint(
        model, name=name or f"imported-{Path(file).stem}", arch=arch, width=width, num_classes=num_classes,
        in_chans=in_chans, input_size=input_size or dataset_size or spec.default_input_size, pretrain="external",
        degree=None, phase="external", class_names=class_names or dataset_classes, dataset_id=dataset_id, replace=False,
    )


def _dataset_row(name: str, num_classes: int) -> tuple[int, int, list[str]]:
    """(id, image size, class names) of the dataset called ``name``, which must have ``num_classes``."""
    with session_scope() as session:
        row = session.scalar(select(Dataset).where(Dataset.name == name))
        if row is None:
            raise UnknownNameError(f"no dataset named {name!r}; see `xaudit data list`")
        classes = [str(c) for c in (row.class_names or [])]
        if classes and len(classes) != int(num_classes):
            raise ConfigError(f"dataset {name!r} has {len(classes)} classes but --num-classes is {num_classes}; "
                              "import the checkpoint with the dataset's class count")
        return row.id, int(row.image_size), classes


def list_checkpoints() -> list[dict[str, Any]]:
    """All checkpoints as plain dicts (id, name, arch, width, pretrain, degree, phase, parent_id,
    dataset, accuracy, balanced_accuracy, roc_auc, train_time_s, device, created_at)."""
    with session_scope() as session:
        rows = session.execute(
            select(Checkpoint, Dataset.name).outerjoin(Dataset, Checkpoint.dataset_id == Dataset.id).order_by(Checkpoint.id)
        ).all()
        out = []
        for ck, ds in rows:
            m = ck.metrics or {}
            out.append({
                "id": ck.id, "name": ck.name, "arch": ck.arch, "width": ck.width, "pretrain": ck.pretrain,
                "degree": ck.degree, "phase": ck.phase, "epoch": ck.epoch, "parent_id": ck.parent_id,
                "dataset": ds, "num_classes": ck.num_classes, "input_size": ck.input_size,
                "accuracy": m.get("accuracy"), "balanced_accuracy": m.get("balanced_accuracy"),
                "roc_auc": m.get("roc_auc"), "train_time_s": ck.train_time_s, "device": ck.device,
                "sha256": ck.sha256, "path": ck.path, "created_at": ck.created_at,
            })
        return out
