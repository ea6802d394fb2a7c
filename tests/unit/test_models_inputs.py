"""models.inputs: a model's expected input (channels, normalisation) and the one preparation of images
for it, as training, prediction and every attribution method see it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision

import models
from models.inputs import (
    ModelInput,
    as_images,
    get_preprocess,
    model_input,
    prepare_images,
    preprocess_name,
    preprocessed,
    set_preprocess,
)
from xai_core.attribution import explain
from xai_core.attribution.canonical import prepare
from xai_core.errors import ConfigError, InvalidValueError, ShapeError, UnknownNameError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _grey(n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size)).astype(np.float32)


def _pair(arch: str, width: float = 1.0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same 3-channel weights twice: without and with the ImageNet normalisation."""
    torch.manual_seed(0)
    plain = models.build(arch, 2, 3, width).eval()
    return plain, set_preprocess(copy.deepcopy(plain), "imagenet")


def test_model_input_channels_and_preprocessing() -> None:
    rgb = models.build("resnet18", 2, 3)
    assert model_input(rgb) == ModelInput(3, get_preprocess("none"))
    assert model_input(models.build("vgg16", 2, 1, 0.125)).channels == 1
    assert model_input(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))).channels is None
    assert preprocess_name(set_preprocess(rgb, "imagenet")) == "imagenet"
    assert get_preprocess("inception").mean == (0.5, 0.5, 0.5)
    with pytest.raises(UnknownNameError, match="unknown input preprocessing 'radimagenet'; choose one of none, imagenet"):
        set_preprocess(rgb, "radimagenet")
    with pytest.raises(ConfigError, match="'imagenet' normalises 3 channels but the model's first convolution takes 1"):
        set_preprocess(models.build("vgg16", 2, 1, 0.125), "imagenet")


def test_grey_images_are_replicated_and_other_channel_counts_refused() -> None:
    rgb = models.build("resnet18", 2, 3)
    g = _grey(2, 8)
    x = prepare_images(g, rgb)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
    for c in range(3):
        np.testing.assert_array_equal(x[:, c].numpy(), g)
    three = np.stack([g, g * 0.5, g * 0.25], axis=1)
    np.testing.assert_array_equal(prepare_images(three, rgb).numpy(), three)  # already the model's channels
    with pytest.raises(ShapeError, match=r"images have 2 channel\(s\) but the model expects 3; .*grey .*replicated"):
        prepare_images(np.zeros((1, 2, 8, 8), np.float32), rgb)
    with pytest.raises(ShapeError, match=r"2 channel\(s\) but the model expects 3"):
        explain(rgb, np.zeros((1, 2, 32, 32), np.float32), "saliency")
    with pytest.raises(InvalidValueError, match=r"image\(s\) 0 contain NaN"):
        as_images(np.full((1, 4, 4), np.nan, np.float32))


def test_normalisation_module_applies_mean_and_std() -> None:
    plain, net = _pair("resnet18")
    wrapped = preprocessed(net, net)
    assert preprocessed(plain, plain) is plain  # no normalisation: the model itself
    seen: list[torch.Tensor] = []
    hook = net.conv1.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    with torch.no_grad():
        wrapped(torch.full((1, 3, 4, 4), 0.2))
    hook.remove()
    # by hand: (0.2 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (0.2 - 0.406) / 0.225
    want = torch.tensor([-1.244541, -1.142857, -0.915556]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    torch.testing.assert_close(seen[0], want, rtol=0, atol=1e-5)


def test_prepared_copies_follow_a_change_of_preprocessing() -> None:
    """The engine's cache of canonical copies is keyed on the preprocessing too."""
    plain, net = _pair("vgg16", 0.125)
    g = _grey(1)
    kw = dict(target=[0], sign="signed", device="cpu")
    before = explain(plain, g, "saliency", **kw)
    set_preprocess(plain, "imagenet")
    after = explain(plain, g, "saliency", **kw)
    np.testing.assert_allclose(after, explain(net, g, "saliency", **kw), rtol=1e-6)
    assert not np.allclose(before, after, rtol=1e-2)


def test_saliency_of_replicated_grey_image_is_the_channel_reduction_of_gradients() -> None:
    plain, _ = _pair("resnet18")
    g = _grey(2)
    x3 = torch.from_numpy(g)[:, None].repeat(1, 3, 1, 1).requires_grad_(True)
    plain(x3)[torch.arange(2), torch.tensor([1, 0])].sum().backward()
    grad = x3.grad
    signed = explain(plain, g, "saliency", target=[1, 0], sign="signed", reduce="sum", device="cpu")
    default = explain(plain, g, "saliency", target=[1, 0], device="cpu")  # abs, then sum over channels
    peak = explain(plain, g, "saliency", target=[1, 0], reduce="max", device="cpu")
    assert signed.shape == default.shape == (2, 32, 32)
    np.testing.assert_allclose(signed, grad.sum(1).numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(default, grad.abs().sum(1).numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(peak, grad.abs().amax(1).numpy(), rtol=1e-5, atol=1e-8)
    # chain rule: the signed sum is the gradient w.r.t. the grey image itself
    g1 = torch.from_numpy(g)[:, None].requires_grad_(True)
    plain(g1.expand(-1, 3, -1, -1))[torch.arange(2), torch.tensor([1, 0])].sum().backward()
    np.testing.assert_allclose(signed, g1.grad[:, 0].numpy(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("arch,width,backend", [("vgg16", 0.125, "captum"), ("resnet18", 1.0, "zennit")])
def test_relevance_passes_through_the_normalisation_unchanged(arch: str, width: float, backend: str) -> None:
    """LRP of the normalised model on grey [0,1] images == LRP of the same network on the
    hand-normalised replicated images (the normalisation is an elementwise bijection)."""
    plain, net = _pair(arch, width)
    g = _grey(2)
    z = ((torch.from_numpy(g)[:, None].repeat(1, 3, 1, 1) - MEAN) / STD).numpy()
    kw = dict(target=[0, 1], sign="signed", reduce="sum", device="cpu", arch=arch, backend=backend)
    wrapped = explain(net, g, "lrp", **kw)
    by_hand = explain(plain, z, "lrp", **kw)
    assert wrapped.shape == (2, 32, 32) and float(np.abs(by_hand).max()) > 0
    np.testing.assert_allclose(wrapped, by_hand, rtol=1e-4, atol=1e-6 * float(np.abs(by_hand).max()))


@pytest.mark.parametrize("method", ["gradcam", "deeplift", "guided_backprop"])
def test_cam_and_propagation_methods_see_the_normalised_input(method: str) -> None:
    """CAMs read the layer's activations and gradients; DeepLIFT's and Guided Backprop's
    multipliers cross the affine normalisation exactly: each equals the plain network on the
    hand-normalised input (DeepLIFT's baseline: the black image, normalised)."""
    from captum.attr import DeepLift, GuidedBackprop  # lazy: captum takes ~1.3 s to import; references here only

    plain, net = _pair("vgg16", 0.125)
    g = _grey(2)
    z = (torch.from_numpy(g)[:, None].repeat(1, 3, 1, 1) - MEAN) / STD
    target = torch.tensor([1, 0])
    kw = dict(target=target.tolist(), device="cpu", arch="vgg16")
    wrapped = explain(net, g, method, **kw, **({} if method == "gradcam" else {"sign": "signed", "reduce": "sum"}))
    assert wrapped.shape == (2, 32, 32)
    if method == "gradcam":
        np.testing.assert_allclose(wrapped, explain(plain, z.numpy(), method, **kw), rtol=1e-4, atol=1e-5)
        return
    canon = prepare(plain, "grad", z[:1], torch.device("cpu")).model
    zr = z.clone().requires_grad_(True)
    if method == "deeplift":
        # (x - x') m_x = ((x - x') / std) (m_z) = (z - z') m_z: the same per pixel and channel
        black = (torch.zeros_like(z) - MEAN) / STD
        by_hand = DeepLift(canon).attribute(zr, baselines=black, target=target).detach()
    else:  # guided gradient w.r.t. x = guided gradient w.r.t. z divided by std_c
        by_hand = GuidedBackprop(canon).attribute(zr, target=target).detach() / STD
    np.testing.assert_allclose(wrapped, by_hand.sum(1).numpy(), rtol=1e-4, atol=1e-6 * float(by_hand.abs().max()))


def test_each_imagenet_file_declares_its_own_normalisation() -> None:
    """timm's pretrained config and torchvision's Inception transform_input are the references."""
    import timm  # lazy: timm takes ~2 s to import; the reference of this test only

    cfg = timm.models.get_pretrained_cfg("resnetv2_50.a1h_in1k")
    specs = {a: models.get_architecture(a).imagenet for a in models.list_architectures()}
    assert {a: s.preprocess for a, s in specs.items() if s is not None} == {
        "densenet121": "imagenet", "densenet201": "imagenet", "inception_v3": "inception", "resnet18": "imagenet",
        "resnet50": "imagenet", "resnet50v2": "inception", "vgg16": "imagenet", "vgg16_plain": "imagenet",
        "vit_base_patch16": "inception"}
    assert get_preprocess("inception").mean == tuple(cfg.mean) and get_preprocess("inception").std == tuple(cfg.std)
    vit = timm.models.get_pretrained_cfg("vit_base_patch16_224.augreg2_in21k_ft_in1k")
    assert (tuple(vit.mean), tuple(vit.std)) == (tuple(cfg.mean), tuple(cfg.std))
    assert specs["vit_base_patch16"].file.startswith(vit.hf_hub_id.removeprefix("timm/"))
    # torchvision's Inception-v3 with transform_input: ImageNet-normalised x -> x * std / 0.5 + (mean - 0.5) / 0.5,
    # i.e. (v - 0.5) / 0.5 of the [0, 1] image
    v = torch.rand(1, 3, 4, 4)
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=True,
                                                init_weights=False)
    torch.testing.assert_close(inception._transform_input((v - MEAN) / STD), (v - 0.5) / 0.5)
