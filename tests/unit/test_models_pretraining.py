"""Pre-training sources: ImageNet loading from the torch hub cache, pretext samplers, the job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import models
from models.finetune import TrainConfig, fit
from models.grid import init_from, train
from models.inputs import preprocess_name
from models.prediction import predict
from models.pretraining import (
    _fix_imagenet_keys,
    hub_checkpoint_dir,
    imagenet_model,
    list_pretraining_sources,
    mri_pretext,
    natural_pretext,
    pretrain,
    random_affine_batch,
)
from models.splits import DataSplits
from xai_core.attribution import explain
from xai_core.errors import ConfigError, InputFileError, UnknownNameError, UnsupportedError


def test_registry() -> None:
    assert list_pretraining_sources() == ["imagenet", "mri", "natural", "none", "procedural"]
    with pytest.raises(UnknownNameError, match="unknown pre-training source 'radimagenet'"):
        pretrain("radimagenet", arch="vgg16", width=0.125)


# ImageNet normalisation by hand: (v - mean_c) / std_c, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
NORMALISED_02 = (-1.244541, -1.142857, -0.915556)  # v = 0.2
NORMALISED_08 = (1.375546, 1.535714, 1.751111)  # v = 0.8


def _imagenet_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> torchvision.models.ResNet:
    """A stand-in for torchvision's resnet18 ImageNet file (same keys and shapes, random values) in a
    temporary torch hub cache; returns the reference network it holds (eval mode)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    hub_checkpoint_dir().mkdir(parents=True)
    torch.save(reference.state_dict(), hub_checkpoint_dir() / "resnet18-f37072fd.pth")
    return reference.eval()


def _normalised(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_imagenet_file_from_hub_cache_keeps_rgb_and_its_normalisation(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert hub_checkpoint_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(InputFileError, match=r"put resnet18-f37072fd\.pth .*download\.pytorch\.org.* into .*hub/checkpoints"):
        imagenet_model("resnet18")
    reference = _imagenet_file(tmp_path, monkeypatch)
    model, classes = imagenet_model("resnet18")
    assert len(classes) == 1000 and preprocess_name(model) == "imagenet"
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight)  # RGB kernel kept as it is
    torch.testing.assert_close(model.fc.weight, reference.fc.weight)  # same 1000-class head kept
    with pytest.raises(ConfigError, match="imagenet weights take 3 input channels .*replicated"):
        imagenet_model("resnet18", in_chans=1)
    with pytest.raises(UnsupportedError, match="width 1.0"):
        imagenet_model("vgg16", width=0.5)

    # a constant grey image reaches the first convolution as (v - mean_c) / std_c, per channel
    seen: list[torch.Tensor] = []
    hook = model.conv1.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].detach().clone()))
    _, probs = predict(model, np.full((2, 32, 32), 0.8, np.float32), device="cpu")
    hook.remove()
    assert seen[0].shape == (2, 3, 32, 32)
    for c in range(3):
        torch.testing.assert_close(seen[0][:, c], torch.full((2, 32, 32), NORMALISED_08[c]), rtol=0, atol=1e-5)
    # prediction on 1-channel images == the RGB network on the hand-normalised (g, g, g)
    g = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    _, probs = predict(model, g, device="cpu")
    with torch.no_grad():
        want = torch.softmax(reference(_normalised(g.repeat(1, 3, 1, 1))), dim=1)
    np.testing.assert_allclose(probs, want.numpy(), rtol=1e-4, atol=1e-6)

    # attribution in image space: saliency of the grey image == per-channel gradients of the
    # normalised network w.r.t. the replicated [0, 1] image, reduced over channels (sum)
    maps = explain(model, g[:, 0].numpy(), "saliency", target=[0, 5, 9], sign="signed", reduce="sum", device="cpu")
    x3 = g.repeat(1, 3, 1, 1).requires_grad_(True)
    reference(_normalised(x3))[torch.arange(3), torch.tensor([0, 5, 9])].sum().backward()
    assert maps.shape == (3, 32, 32)
    np.testing.assert_allclose(maps, x3.grad.sum(dim=1).numpy(), rtol=1e-4, atol=1e-7)
    # baseline zeros is a black image (normalised by the wrapper), not the ImageNet mean colour
    # (a zero *after* normalisation): Integrated Gradients' completeness gives f(x) - f(black).
    # 64 quadrature steps on a ReLU network land within 0.01 of the exact difference here, which
    # is 0.55 away from f(x) - f(mean colour).
    ig = explain(model, g[:1, 0].numpy(), "integrated_gradients", target=[3], sign="signed", n_steps=64,
                 device="cpu")
    with torch.no_grad():
        f_x = reference(_normalised(g[:1].repeat(1, 3, 1, 1)))[0, 3]
        f_black = reference(_normalised(torch.zeros(1, 3, 32, 32)))[0, 3]
        f_mean_colour = reference(torch.zeros(1, 3, 32, 32))[0, 3]
    assert float(ig.sum()) == pytest.approx(float(f_x - f_black), abs=0.01)
    assert abs(float(f_black - f_mean_colour)) > 0.5


def test_imagenet_pretraining_normalises_in_training_and_is_stored(workspace: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _imagenet_file(tmp_path, monkeypatch)
    # constant images 0.2 (class 0) / 0.8 (class 1): the first convolution sees their normalised values
    x = np.concatenate([np.full((4, 32, 32), 0.2, np.float32), np.full((4, 32, 32), 0.8, np.float32)])
    y = np.array([0] * 4 + [1] * 4)
    source, _ = imagenet_model("resnet18")
    model = init_from(models.build("resnet18", 2, 3), "resnet18", source)
    assert preprocess_name(model) == "imagenet"
    before = model.layer1[0].conv1.weight.detach().clone()
    seen: list[torch.Tensor] = []
    hook = model.conv1.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].detach().clone()))
    fit(model, "resnet18", "all", (x, y), (x, y), TrainConfig(epochs=1, batch_size=4, min_epochs=1, device="cpu"))
    hook.remove()
    assert not torch.equal(before, model.layer1[0].conv1.weight)  # a step was taken
    values = torch.cat([t.amin(dim=(2, 3)) for t in seen] + [t.amax(dim=(2, 3)) for t in seen])
    for c in range(3):
        assert sorted({round(float(v), 5) for v in values[:, c]}) == [round(NORMALISED_02[c], 5),
                                                                        round(NORMALISED_08[c], 5)]

    # the job: pre-training checkpoint (3 channels, imagenet), fine-tuned from it, stored and reloaded
    splits = DataSplits("flat", (x, y), (x, y), (x, y), ["dark", "bright"])
    info = train(splits, arch="resnet18", pretrain="imagenet", degree="all", epochs=1, batch_size=4,
                 config=TrainConfig(min_epochs=1, device="cpu"))[0]
    assert info.metadata["in_chans"] == 3 and info.metadata["preprocess"] == "imagenet"
    loaded, meta = models.load(info.id)
    assert meta["preprocess"] == "imagenet" and preprocess_name(loaded) == "imagenet"
    pre = models.resolve_checkpoint(f"pretrain-imagenet-resnet18-w1-c3-s0")
    assert pre is not None and pre.in_chans == 3
    maps = explain(loaded, x[:2], "gradcam", device="cpu", arch="resnet18")
    assert maps.shape == (2, 32, 32)


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
    sampler, names = mri_pretext(size=32, bands=4)
    assert names == ["axial_band_0", "axial_band_1", "axial_band_2", "axial_band_3"]
    x, y = sampler(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 32, 32) and set(np.unique(y.numpy())) <= {0, 1, 2, 3}
    assert len(np.unique(y.numpy())) >= 3
