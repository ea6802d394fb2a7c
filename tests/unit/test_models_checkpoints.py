"""Checkpoint I/O: identical logits after reload, refusal of code-running pickles, shape checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import models
from models.checkpoints import import_checkpoint, list_checkpoints, read_tensors, save_checkpoint
from tests.postgres import on_both_backends
from xai_core.errors import CheckpointError, UnknownNameError


def _tiny(num_classes: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build("vgg16", num_classes, in_chans=1, width=0.125).eval()


def _save(model: torch.nn.Module, name: str = "ck", num_classes: int = 2):  # type: ignore[no-untyped-def]
    return save_checkpoint(model, name=name, arch="vgg16", width=0.125, num_classes=num_classes, in_chans=1,
                           input_size=32, pretrain="none", degree="all", phase="ft", class_names=["a", "b"][:num_classes]
                           if num_classes == 2 else None)


@on_both_backends
def test_saved_and_reloaded_checkpoint_gives_identical_logits(workspace: Path) -> None:
    model = _tiny()
    info = _save(model)
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    for ref_kind in (info.id, str(info.id), info.name, str(info.path)):
        loaded, meta = models.load(ref_kind)
        assert not loaded.training
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), ref, rtol=0, atol=0)
        assert meta["arch"] == "vgg16" and meta["width"] == 0.125 and meta["num_classes"] == 2
        assert meta["in_chans"] == 1 and meta["input_size"] == 32 and meta["class_names"] == ["a", "b"]
    assert meta["checkpoint_id"] == info.id
    assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()
    assert list_checkpoints()[0]["sha256"] == info.sha256
    assert info.path.parent == workspace / "checkpoints"


@on_both_backends
def test_plain_torch_state_dict_loads_with_weights_only(workspace: Path, tmp_path: Path) -> None:
    model = _tiny(seed=1)
    file = tmp_path / "external.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, file)  # DataParallel prefix
    info = import_checkpoint(file, "vgg16", 2, name="ext", width=0.125)
    loaded, meta = models.load("ext")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert meta["phase"] == "external" and meta["checkpoint_id"] == info.id


class _Exploit:
    """Unpickling this object would call os.system and create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@on_both_backends
def test_malicious_pickle_is_refused_and_leaves_no_trace(workspace: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    file = tmp_path / "evil.pt"
    torch.save({"features.0.weight": torch.zeros(1), "payload": _Exploit(marker)}, file)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to load evil.pt"):
        models.load(str(file))
    with pytest.raises(CheckpointError, match="refused"):
        import_checkpoint(file, "vgg16", 2, width=0.125)
    assert not marker.exists()
    assert list_checkpoints() == []


def test_shape_mismatch_names_first_mismatching_tensor(workspace: Path, tmp_path: Path) -> None:
    file = tmp_path / "three.safetensors"
    save_file({k: v.contiguous() for k, v in _tiny(num_classes=3).state_dict().items()}, str(file))
    with pytest.raises(CheckpointError, match=r"'classifier\.4\.weight' has shape \(3, 64\), expected \(2, 64\)"):
        import_checkpoint(file, "vgg16", 2, width=0.125)
    # another architecture entirely: the first expected tensor is missing
    other = tmp_path / "resnet.pt"
    torch.save(models.build("resnet18", 2).state_dict(), other)
    with pytest.raises(CheckpointError, match=r"'features\.0\.weight' is missing"):
        import_checkpoint(other, "vgg16", 2, width=0.125)
    # width mismatch shows the channel count
    with pytest.raises(CheckpointError, match=r"'features\.0\.weight' has shape \(8, 1, 3, 3\), expected \(16, 1, 3, 3\)"):
        import_checkpoint(file, "vgg16", 3, width=0.25)
    assert list_checkpoints() == []


def test_truncated_files_are_reported(workspace: Path, tmp_path: Path) -> None:
    model = _tiny()
    st = tmp_path / "cut.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        read_tensors(st)
    pt = tmp_path / "cut.pt"
    torch.save(model.state_dict(), pt)
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        import_checkpoint(pt, "vgg16", 2, width=0.125)


def test_unknown_reference(workspace: Path) -> None:
    with pytest.raises(UnknownNameError, match="no checkpoint with id or name 'nope'"):
        models.load("nope")
    with pytest.raises(UnknownNameError):
        models.load(42)
