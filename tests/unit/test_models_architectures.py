"""Architecture registry: documented conv blocks, degrees -> trainable parameters, CAM layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from models.architectures import DEGREES, N_BLOCKS, set_train_mode
from xai_core.errors import ConfigError, UnknownNameError, UnsupportedError


def _features(*bounds: int) -> list[list[str]]:
    """``features.a .. features.b-1`` for consecutive bounds: one block each."""
    return [[f"features.{i}" for i in range(a, b)] for a, b in zip(bounds, bounds[1:])]


# The documented blocks (module docstring of models/architectures.py), written out independently.
DOCUMENTED_BLOCKS = {
    "vgg16": _features(0, 7, 14, 24, 34, 44),
    "vgg16_plain": _features(0, 5, 10, 17, 24, 31),
    "resnet18": [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]],
    "resnet50": [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]],
    "resnet50v2": [["stem"], ["stages.0"], ["stages.1"], ["stages.2"], ["stages.3", "norm"]],
    "densenet121": [
        ["features.conv0", "features.norm0"],
        ["features.denseblock1", "features.transition1"],
        ["features.denseblock2", "features.transition2"],
        ["features.denseblock3", "features.transition3"],
        ["features.denseblock4", "features.norm5"],
    ],
    "inception_v3": [
        ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"],
        ["Mixed_5b", "Mixed_5c", "Mixed_5d"],
        ["Mixed_6a", "Mixed_6b", "Mixed_6c"],
        ["Mixed_6d", "Mixed_6e"],
        ["Mixed_7a", "Mixed_7b", "Mixed_7c"],
    ],
}
DOCUMENTED_BLOCKS["densenet201"] = DOCUMENTED_BLOCKS["densenet121"]
DOCUMENTED_BLOCKS["densenet_mini"] = DOCUMENTED_BLOCKS["densenet121"]
DOCUMENTED_BLOCKS["resnetv2_mini"] = DOCUMENTED_BLOCKS["resnet50v2"]
DOCUMENTED_BLOCKS["inception_mini"] = [["stem"], ["Mixed_5"], ["Mixed_6"], ["Mixed_7"], ["Mixed_8"]]
# ViTs: token embedding + the first transformer blocks ... the last blocks + final norm
DOCUMENTED_BLOCKS["vit_tiny"] = [["embed", "blocks.0"], ["blocks.1"], ["blocks.2"], ["blocks.3"], ["blocks.4", "norm"]]
DOCUMENTED_BLOCKS["vit_base_patch16"] = [["embed", "blocks.0", "blocks.1", "blocks.2", "blocks.3"],
                                         ["blocks.4", "blocks.5"], ["blocks.6", "blocks.7"], ["blocks.8", "blocks.9"],
                                         ["blocks.10", "blocks.11", "norm"]]
HEADS = {"vgg16": "classifier", "vgg16_plain": "classifier", "resnet18": "fc", "resnet50": "fc", "resnet50v2": "head",
         "densenet121": "classifier", "densenet201": "classifier", "inception_v3": "fc", "densenet_mini": "classifier",
         "resnetv2_mini": "head", "inception_mini": "fc", "vit_tiny": "head", "vit_base_patch16": "head"}
MINI = ("densenet_mini", "resnetv2_mini", "inception_mini")
K = {"tl": 0, "1conv": 1, "2conv": 2, "3conv": 3, "4conv": 4, "all": 5}


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_registry_lists_the_architectures() -> None:
    assert models.list_architectures() == sorted(DOCUMENTED_BLOCKS)
    families = {a: models.get_architecture(a).family for a in DOCUMENTED_BLOCKS}
    assert families["resnet50v2"] == "resnet" and families["inception_v3"] == "inception"
    assert families["densenet201"] == "densenet" and families["vgg16"] == "vgg"


@pytest.mark.parametrize("arch", sorted(DOCUMENTED_BLOCKS))
def test_trainable_parameters_per_degree_equal_documented_blocks(arch: str) -> None:
    width = 0.125 if arch.startswith("vgg") else 0.25 if arch in MINI else 1.0
    model = models.build(arch, 3, in_chans=1, width=width)
    names = [n for n, _ in model.named_parameters()]
    blocks = DOCUMENTED_BLOCKS[arch]
    # every parameter belongs to exactly one block or the head
    for n in names:
        owners = [i for i, b in enumerate(blocks) if _under(n, b)] + (["head"] if _under(n, [HEADS[arch]]) else [])
        assert len(owners) == 1, (n, owners)
    for degree in DEGREES:
        models.freeze_for_degree(model, arch, degree)
        got = {n for n, p in model.named_parameters() if p.requires_grad}
        k = K[degree]
        prefixes = [HEADS[arch]] + [m for b in blocks[N_BLOCKS - k :] for m in b]
        expected = {n for n in names if _under(n, prefixes)}
        assert got == expected, (arch, degree)
    # the spec's blocks are the documented ones, and the head has the class count
    spec = models.get_architecture(arch)
    assert len(spec.conv_blocks(model)) == N_BLOCKS
    last_linear = [m for m in model.get_submodule(HEADS[arch]).modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    assert last_linear.out_features == 3 if isinstance(last_linear, nn.Linear) else last_linear.out_channels == 3


@pytest.mark.parametrize("arch", ["vgg16", "vgg16_plain"])
def test_vgg16_degrees_hand_counted_parameters(arch: str) -> None:
    """width 0.125: channels 8,8 | 16,16 | 32,32,32 | 64,64,64 | 64,64,64; head 64->64->2;
    a BatchNorm adds 2 parameters per channel (vgg16), none in vgg16_plain."""
    model = models.build(arch, 2, in_chans=1, width=0.125)
    bn = 2 if arch == "vgg16" else 0
    conv = lambda ci, co: ci * co * 9 + co + bn * co  # noqa: E731
    blocks = [conv(1, 8) + conv(8, 8), conv(8, 16) + conv(16, 16), conv(16, 32) + 2 * conv(32, 32),
              conv(32, 64) + 2 * conv(64, 64), 3 * conv(64, 64)]
    head = 64 * 64 + 64 + 64 * 2 + 2
    for degree, k in K.items():
        models.freeze_for_degree(model, arch, degree)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert n == head + sum(blocks[N_BLOCKS - k :]), degree


@pytest.mark.parametrize("arch", ["vgg16", "vgg16_plain", "resnet18"])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_small_networks_forward_and_chain_equals_forward(arch: str, in_chans: int) -> None:
    torch.manual_seed(0)
    width = 0.125 if arch.startswith("vgg") else 1.0
    model = models.build(arch, 4, in_chans=in_chans, width=width).eval()
    x = torch.rand(2, in_chans, 40, 48)  # not square, not 224: the head is size-agnostic
    spec = models.get_architecture(arch)
    with torch.no_grad():
        y = model(x)
        z = x
        for part in spec.chain(model):
            z = part(z)
        cam = {}
        handle = spec.cam_layer(model).register_forward_hook(lambda m, i, o: cam.setdefault("a", o))
        model(x)
        handle.remove()
    assert y.shape == (2, 4)
    torch.testing.assert_close(y, z, rtol=0, atol=0)
    assert cam["a"].ndim == 4 and cam["a"].shape[0] == 2  # a spatial map feeding the pooling


def test_cam_layers_are_the_last_conv_stage() -> None:
    expected = {"vgg16": "features.42", "vgg16_plain": "features.29", "resnet18": "layer4", "resnet50": "layer4", "resnet50v2": "norm",
                "densenet121": "features.relu5", "densenet201": "features.relu5", "inception_v3": "Mixed_7c",
                "densenet_mini": "features.relu5", "resnetv2_mini": "norm", "inception_mini": "Mixed_8",
                "vit_tiny": "blocks.4.norm1", "vit_base_patch16": "blocks.11.norm1"}  # ViTs: tokens entering the last attention
    for arch, name in expected.items():
        spec = models.get_architecture(arch)
        assert spec.cam == name
    vgg = models.build("vgg16", 2, width=0.125)
    assert models.get_architecture("vgg16").cam_layer(vgg) is vgg.features[42]
    assert isinstance(vgg.features[40], nn.Conv2d) and isinstance(vgg.features[41], nn.BatchNorm2d)  # conv5_3
    assert isinstance(vgg.features[43], nn.MaxPool2d) and len(vgg.features) == 44  # torchvision vgg16_bn


def test_no_inplace_activations_and_min_input_sizes() -> None:
    for arch in ("vgg16", "resnet18", "densenet121"):
        model = models.build(arch, 2, width=0.125 if arch == "vgg16" else 1.0)
        assert not any(getattr(m, "inplace", False) for m in model.modules()), arch
    assert models.get_architecture("inception_v3").min_input_size == 75
    assert models.get_architecture("vgg16").min_input_size == 32


def test_set_train_mode_keeps_frozen_blocks_in_eval() -> None:
    model = models.build("resnet18", 2)
    set_train_mode(model, "resnet18", "2conv")
    spec = models.get_architecture("resnet18")
    modes = [all(not m.training for c in b for m in c.modules()) for b in spec.conv_blocks(model)]
    assert modes == [True, True, True, False, False]
    assert model.fc.training


def test_bad_names_and_values() -> None:
    with pytest.raises(UnknownNameError, match="unknown architecture 'vgg19'.*vgg16"):
        models.build("vgg19", 2)
    model = models.build("vgg16", 2, width=0.125)
    with pytest.raises(UnknownNameError, match="degree '5conv'"):
        models.freeze_for_degree(model, "vgg16", "5conv")
    with pytest.raises(ConfigError, match="num_classes"):
        models.build("vgg16", 1)
    with pytest.raises(ConfigError, match="in_chans"):
        models.build("vgg16", 2, in_chans=2)
    with pytest.raises(UnsupportedError, match="width"):
        models.build("resnet18", 2, width=0.5)


@pytest.mark.parametrize("arch", MINI)
def test_compact_drift_study_networks(arch: str) -> None:
    """The drift study's compact families: output stride 8 (an 8x8 CAM at 64 px), chain == forward,
    channels scale with width (about width^2 parameters), no in-place activations."""
    torch.manual_seed(0)
    spec = models.get_architecture(arch)
    assert spec.supports_width and spec.default_input_size == 64 and spec.imagenet is None
    model = models.build(arch, 5, in_chans=1, width=0.25).eval()
    x = torch.rand(2, 1, 64, 64)
    cam: dict[str, torch.Tensor] = {}
    handle = spec.cam_layer(model).register_forward_hook(lambda m, i, o: cam.update(a=o))
    with torch.no_grad():
        y = model(x)
        z = x
        for part in spec.chain(model):
            z = part(z)
    handle.remove()
    assert y.shape == (2, 5) and cam["a"].shape[-2:] == (8, 8)
    torch.testing.assert_close(y, z, rtol=0, atol=0)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    small = sum(p.numel() for p in model.parameters())
    large = sum(p.numel() for p in models.build(arch, 5, in_chans=1, width=0.5).parameters())
    assert 2.5 < large / small < 4.5
