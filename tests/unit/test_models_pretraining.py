"""Pre-training sources: ImageNet loading from the torch hub cache, pretext samplers, the job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import models
from models.pretraining import (
    _fix_imagenet_keys,
    hub_checkpoint_dir,
    imagenet_model,
    list_pretraining_sources,
    natural_pretext,
    pretrain,
    random_affine_batch,
)
from xai_core.errors import InputFileError, UnknownNameError, UnsupportedError


def test_registry() -> None:
    assert list_pretraining_sources() == ["imagenet", "mri", "natural", "none"]
    with pytest.raises(UnknownNameError, match="unknown pre-training source 'radimagenet'"):
        pretrain("radimagenet", arch="vgg16", width=0.125)


def test_imagenet_loads_torchvision_file_from_hub_cache_and_sums_rgb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = hub_checkpoint_dir()
    assert cache == tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(InputFileError, match=r"put resnet18-f37072fd\.pth .*download\.pytorch\.org.* into .*hub/checkpoints"):
        imagenet_model("resnet18", in_chans=1)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)  # a stand-in for the real file: same keys/shapes
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "resnet18-f37072fd.pth")
    model, classes = imagenet_model("resnet18", in_chans=1)
    assert len(classes) == 1000
    rgb = reference.conv1.weight.detach()
    torch.testing.assert_close(model.conv1.weight.detach(), rgb.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    torch.testing.assert_close(model.fc.weight, reference.fc.weight)  # same 1000-class head kept
    # a grey image through the summed kernel == the RGB network on (g, g, g)
    reference.eval()
    model.eval()
    g = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(g), reference(g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    with pytest.raises(UnsupportedError, match="width 1.0"):
        imagenet_model("vgg16", width=0.5)


def test_densenet_legacy_key_names_are_renamed() -> None:
    state = {"features.denseblock1.denselayer1.norm.1.weight": torch.ones(1),
             "features.denseblock1.denselayer1.conv.2.weight": torch.ones(1), "classifier.weight": torch.ones(1)}
    fixed = _fix_imagenet_keys("densenet121", state)
    assert set(fixed) == {"features.denseblock1.denselayer1.norm1.weight",
                          "features.denseblock1.denselayer1.conv2.weight", "classifier.weight"}


def test_random_affine_identity_and_determinism() -> None:
    pool = torch.rand(3, 1, 16, 16)
    labels = torch.tensor([7, 8, 9])
    gen = torch.Generator().manual_seed(0)
    x, y = random_affine_batch(pool, labels, 5, 16, gen, scale=(1.0, 1.0), rotate_deg=0.0, flip=False,
                               intensity=0.0, noise=0.0)
    # scale 1, no rotation, no room to translate: the views are the source images themselves
    idx = (y - 7).long()
    torch.testing.assert_close(x, pool[idx], rtol=0, atol=1e-5)
    s1, l1 = natural_pretext(size=32)[0](8, torch.Generator().manual_seed(3))
    s2, l2 = natural_pretext(size=32)[0](8, torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and torch.equal(l1, l2)
    assert s1.shape == (8, 1, 32, 32) and float(s1.min()) >= 0 and float(s1.max()) <= 1


def test_pretrain_job_saves_a_pretrain_checkpoint(workspace: Path) -> None:
    info = pretrain("natural", arch="vgg16", width=0.125, size=32, steps=2, batch_size=4)
    model, meta = models.load(info.id)
    assert meta["phase"] == "pretrain" and meta["pretrain"] == "natural" and meta["degree"] is None
    assert meta["num_classes"] == len(meta["class_names"]) >= 4
    assert "camera" in meta["class_names"]
    assert model.classifier[-1].out_features == meta["num_classes"]
    rows = models.list_checkpoints()
    assert [r["phase"] for r in rows] == ["pretrain"] and rows[0]["parent_id"] is None


def test_mri_pretext_bands_follow_axial_position() -> None:
    from models.pretraining import mri_pretext

    sampler, names = mri_pretext(size=32, bands=4)
    assert names == ["axial_band_0", "axial_band_1", "axial_band_2", "axial_band_3"]
    x, y = sampler(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 32, 32) and set(np.unique(y.numpy())) <= {0, 1, 2, 3}
    assert len(np.unique(y.numpy())) >= 3
