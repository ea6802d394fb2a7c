"""Attribution values against closed forms and reference libraries."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import models
from xai_core.attribution import (capabilities, equivalence_column, explain, explain_with_info, get_method, list_methods,
                                  postprocess)
from xai_core.attribution.references import reference_input
from xai_core.errors import ConfigError

H = W = 8


def linear_model(c: int = 1, k: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * H * W, k)).eval()


def tiny_cnn(seed: int = 0, c: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()


def _images(n: int = 4, c: int = 1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, H, W), dtype=np.float32)


def _w(model: nn.Module, target: np.ndarray, c: int = 1) -> np.ndarray:
    weight = model[1].weight.detach().numpy()  # (K, C*H*W)
    return weight[target].reshape(len(target), c, H, W)


def test_saliency_of_linear_model_is_abs_weight() -> None:
    model = linear_model()
    x = _images()
    info = explain_with_info(model, x, "saliency")
    pred = (x.reshape(4, -1) @ model[1].weight.detach().numpy().T + model[1].bias.detach().numpy()).argmax(1)
    np.testing.assert_array_equal(info.targets, pred)
    np.testing.assert_allclose(info.maps, np.abs(_w(model, pred))[:, 0], rtol=1e-6)
    assert info.maps.dtype == np.float32 and info.maps.shape == (4, H, W)


def test_saliency_multichannel_reductions() -> None:
    model = linear_model(c=3)
    x = _images(c=3)
    t = np.array([0, 1, 2, 0])
    w = _w(model, t, c=3)
    np.testing.assert_allclose(explain(model, x, "saliency", t, reduce="max"), np.abs(w).max(1), rtol=1e-6)
    np.testing.assert_allclose(explain(model, x, "saliency", t, reduce="sum"), np.abs(w).sum(1), rtol=1e-6)
    np.testing.assert_allclose(explain(model, x, "saliency", t, sign="signed", reduce="mean"), w.mean(1),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explain(model, x, "saliency", t, reduce="l2"), np.sqrt((w**2).sum(1)), rtol=1e-5)


@pytest.mark.parametrize("baseline", ["zeros", "mean", "blur"])
def test_integrated_gradients_of_linear_model(baseline: str) -> None:
    model = linear_model()
    x = _images()
    t = np.array([2, 0, 1, 2])
    a = explain(model, x, "integrated_gradients", t, baseline=baseline, sign="signed", n_steps=8,
                baseline_value=0.25 if baseline == "mean" else None)
    b = reference_input(torch.from_numpy(x), baseline, 5.0, 0.25).numpy()
    np.testing.assert_allclose(a, ((x - b) * _w(model, t))[:, 0], rtol=1e-4, atol=1e-6)
    # completeness: sum_i a_i = f_t(x) - f_t(x')
    with torch.no_grad():
        fx = model(torch.from_numpy(x))[np.arange(4), t].numpy()
        fb = model(torch.from_numpy(b))[np.arange(4), t].numpy()
    np.testing.assert_allclose(a.reshape(4, -1).sum(1), fx - fb, rtol=1e-3)


def _completeness_gap(model: nn.Module, n_steps: int, integration: str) -> tuple[np.ndarray, np.ndarray]:
    x = _images(3)
    t = np.array([0, 1, 2])
    a = explain(model, x, "integrated_gradients", t, sign="signed", n_steps=n_steps, integration=integration,
                internal_batch_size=4096)
    with torch.no_grad():
        fx = model(torch.from_numpy(x))[np.arange(3), t].numpy()
        fb = model(torch.zeros(3, 1, H, W))[np.arange(3), t].numpy()
    return a.reshape(3, -1).sum(1), fx - fb


def test_integrated_gradients_completeness_on_a_smooth_cnn() -> None:
    """sum_i IG_i = f(x) - f(x') to 1e-3 relative (Gauss-Legendre, 64 steps, smooth network)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1), nn.Softplus(),
                          nn.Flatten(), nn.Linear(4 * H * W, 3)).eval()
    total, delta = _completeness_gap(model, 64, "gausslegendre")
    np.testing.assert_allclose(total, delta, rtol=1e-3)


def test_integrated_gradients_completeness_on_a_relu_cnn_converges() -> None:
    """ReLU networks are piecewise linear: the quadrature error shrinks with the step count."""
    model = tiny_cnn()
    coarse, delta = _completeness_gap(model, 20, "riemann_trapezoid")
    fine, _ = _completeness_gap(model, 1000, "gausslegendre")
    assert np.abs(fine - delta).max() < np.abs(coarse - delta).max()
    np.testing.assert_allclose(fine, delta, rtol=1e-2)


def test_input_x_gradient_and_deeplift_of_linear_model() -> None:
    model = linear_model()
    x = _images()
    t = np.array([1, 1, 0, 2])
    expected = (x * _w(model, t))[:, 0]
    np.testing.assert_allclose(explain(model, x, "input_x_gradient", t, sign="signed"), expected, rtol=1e-5, atol=1e-7)
    # DeepLIFT with a zero baseline on a linear model is (x - 0) * w as well
    np.testing.assert_allclose(explain(model, x, "deeplift", t, sign="signed"), expected, rtol=1e-4, atol=1e-6)


def test_deeplift_summation_to_delta_on_relu_cnn() -> None:
    """Rescale rule through ReLUs and average pooling: sum_i a_i = f_t(x) - f_t(x') exactly.
    (Captum's max-pool multiplier is not exactly summation-to-delta, so avg-pool here.)"""
    model = tiny_cnn()
    model[2] = nn.AvgPool2d(2)
    x = _images(3)
    t = np.array([0, 2, 1])
    a = explain(model, x, "deeplift", t, sign="signed", baseline="mean", baseline_value=0.3)
    with torch.no_grad():
        fx = model(torch.from_numpy(x))[np.arange(3), t].numpy()
        fb = model(torch.full((3, 1, H, W), 0.3))[np.arange(3), t].numpy()
    np.testing.assert_allclose(a.reshape(3, -1).sum(1), fx - fb, rtol=1e-3, atol=1e-7)


def test_deeplift_equals_captum_on_an_inplace_relu_cnn() -> None:
    """The canonical copy (in-place ReLUs made out-of-place) gives Captum's own DeepLIFT maps."""
    from captum.attr import DeepLift  # lazy: captum takes ~1.3 s to import; the reference of this test only

    model = tiny_cnn()
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    x = torch.from_numpy(_images(3))
    t = torch.tensor([0, 2, 1])
    expected = DeepLift(reference).attribute(x.clone(), baselines=torch.zeros_like(x), target=t)
    ours = explain(model, x, "deeplift", t.numpy(), sign="signed")
    np.testing.assert_allclose(ours, expected[:, 0].detach().numpy(), rtol=1e-4, atol=1e-7)
    assert model[1].inplace is True  # the caller's model is untouched


def test_gradient_shap_and_smoothgrad_of_linear_model() -> None:
    """Gradients of a linear model are constant: noise does not change them."""
    model = linear_model()
    x = _images()
    t = np.array([0, 1, 2, 0])
    w = _w(model, t)[:, 0]
    np.testing.assert_allclose(explain(model, x, "smoothgrad", t, sign="signed", n_samples=5), w, rtol=1e-5)
    # GradientSHAP: E[(x - x') * w] over the random path point = (x - x') * w with x' = 0, no noise
    np.testing.assert_allclose(explain(model, x, "gradient_shap", t, sign="signed", stdevs=0.0, n_samples=4),
                               x[:, 0] * w, rtol=1e-5, atol=1e-7)


def test_occlusion_of_linear_model() -> None:
    """Non-overlapping 2x2 windows on a linear model: every pixel gets its window's w.x sum / 1."""
    model = linear_model()
    x = _images(2)
    t = np.array([0, 1])
    a = explain(model, x, "occlusion", t, window=2, stride=2, sign="signed")
    contrib = (x * _w(model, t))[:, 0]
    block = contrib.reshape(2, H // 2, 2, W // 2, 2).sum(axis=(2, 4))
    np.testing.assert_allclose(a, np.repeat(np.repeat(block, 2, 1), 2, 2), rtol=1e-4, atol=1e-6)


def test_lrp_captum_epsilon_on_linear_model_is_input_times_weight() -> None:
    """LRP-epsilon on one bias-free linear layer: R_i = x_i w_i (f = sum x_i w_i)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(H * W, 3, bias=False)).eval()
    x = _images()
    t = np.array([0, 1, 2, 1])
    a = explain(model, x, "lrp", t, sign="signed", backend="captum")
    np.testing.assert_allclose(a, (x * _w(model, t))[:, 0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,arch,size", [
    ("gradcam", "vgg16", 64), ("gradcam_plus_plus", "vgg16", 64), ("layercam", "vgg16", 64),
    ("gradcam_plus_plus", "resnet18", 64), ("layercam", "resnet18", 64),
])
def test_cams_equal_pytorch_grad_cam(name: str, arch: str, size: int) -> None:
    # lazy: pytorch-grad-cam takes ~4.5 s to import; the reference of this test only
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"gradcam": GradCAM, "gradcam_plus_plus": GradCAMPlusPlus, "layercam": LayerCAM}[name]
    torch.manual_seed(3)
    model = models.build(arch, 3, 1, 0.125 if arch == "vgg16" else 1.0).eval()
    x = torch.rand(3, 1, size, size)
    t = [2, 0, 1]
    ours = explain(model, x, name, np.array(t), arch=arch)
    reference = cls(model=model, target_layers=[models.get_architecture(arch).cam_layer(model)])
    expected = reference(input_tensor=x, targets=[ClassifierOutputTarget(k) for k in t])
    reference.activations_and_grads.release()
    assert expected.std() > 0  # a real, non-constant map
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    # predicted class (target None) equals the library's own argmax choice
    ours_pred = explain(model, x, name, arch=arch)
    reference = cls(model=model, target_layers=[models.get_architecture(arch).cam_layer(model)])
    np.testing.assert_allclose(ours_pred, reference(input_tensor=x, targets=None), atol=2e-5)
    reference.activations_and_grads.release()


def test_cam_nearest_upsampling_is_blockwise_constant() -> None:
    torch.manual_seed(0)
    model = models.build("vgg16", 2, 1, 0.125).eval()
    x = torch.rand(2, 1, 64, 64)
    a = explain(model, x, "layercam", 0, arch="vgg16", upsample="nearest")  # layer 4x4 -> 16 px blocks
    blocks = a.reshape(2, 4, 16, 4, 16)
    assert np.all(blocks.max(axis=(2, 4)) == blocks.min(axis=(2, 4)))
    assert a.max() == pytest.approx(1.0) and a.min() == pytest.approx(0.0)


def test_guided_backprop_and_deconvolution_rules_on_tiny_cnn() -> None:
    """Hand-checked on a one-ReLU net f = v . relu(W x): GBP keeps grad where W x > 0 and v > 0,
    deconvolution where v > 0 (whatever the forward sign)."""
    torch.manual_seed(0)
    lin = nn.Linear(H * W, 5, bias=False)
    head = nn.Linear(5, 2, bias=False)
    model = nn.Sequential(nn.Flatten(), lin, nn.ReLU(), head).eval()
    x = _images(2)
    t = np.array([0, 1])
    wx = x.reshape(2, -1) @ lin.weight.detach().numpy().T  # (2, 5)
    v = head.weight.detach().numpy()[t]  # (2, 5)
    gbp = ((wx > 0) * np.maximum(v, 0)) @ lin.weight.detach().numpy()
    deconv = np.maximum(v, 0) @ lin.weight.detach().numpy()
    np.testing.assert_allclose(explain(model, x, "guided_backprop", t, sign="signed").reshape(2, -1), gbp,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explain(model, x, "deconvolution", t, sign="signed").reshape(2, -1), deconv,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list_methods())
def test_repeatable(name: str) -> None:
    """Deterministic methods give identical maps twice; random ones too under the same seed
    (on vgg16, or the ViT for the transformer-only attention rollout)."""
    arch = "vgg16" if capabilities("vgg16")[name] is True else "vit_tiny"
    torch.manual_seed(0)
    model = models.build(arch, 2, 1, 0.125 if arch == "vgg16" else 1.0).eval()
    x = torch.rand(2, 1, 32, 32)
    kw = {"n_steps": 4} if name == "integrated_gradients" else {}
    if name in ("gradient_shap", "smoothgrad"):
        kw = {"n_samples": 3}
    a = explain(model, x, name, arch=arch, **kw)
    b = explain(model, x, name, arch=arch, **kw)
    np.testing.assert_array_equal(a, b)
    if not get_method(name).deterministic:
        c = explain(model, x, name, arch=arch, seed=1, **kw)
        assert not np.array_equal(a, c)


def test_batching_does_not_change_maps() -> None:
    model = tiny_cnn()
    x = _images(7)
    for name in ("saliency", "integrated_gradients", "lrp"):
        kw = {"n_steps": 5} if name == "integrated_gradients" else {}
        full = explain(model, x, name, batch_size=7, **kw)
        if name == "integrated_gradients":
            kw["internal_batch_size"] = 3
        split = explain(model, x, name, batch_size=2, **kw)
        np.testing.assert_allclose(full, split, rtol=1e-5, atol=1e-7)


def test_postprocess_by_hand() -> None:
    a = torch.tensor([[[[1.0]], [[-3.0]]]])  # (1, 2, 1, 1)
    assert postprocess(a, "abs", "sum").item() == 4.0
    assert postprocess(a, "abs", "max").item() == 3.0
    assert postprocess(a, "signed", "sum").item() == -2.0
    assert postprocess(a, "positive", "sum").item() == 0.0
    assert postprocess(a, "negative", "sum").item() == 2.0
    assert postprocess(a, "signed", "mean").item() == -1.0
    assert postprocess(a, "signed", "l2").item() == pytest.approx(10**0.5)
    with pytest.raises(ConfigError, match="^unknown channel reduction 'median'; use sum, mean, max or l2$"):
        postprocess(a, "abs", "median")
    with pytest.raises(ConfigError, match="^unknown sign 'absolute'; use abs, signed, positive or negative$"):
        postprocess(a, "absolute", "sum")


@pytest.mark.parametrize(("side", "rows"), [(128, 32), (64, 128), (256, 8)])
def test_cpu_multi_pass_methods_hold_about_32_rows_of_128_px_per_pass(monkeypatch: pytest.MonkeyPatch, side: int,
                                                                      rows: int) -> None:
    from captum.attr import IntegratedGradients  # lazy: captum takes ~1.3 s to import; spied on here only

    seen: list[int] = []
    original = IntegratedGradients.attribute

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["internal_batch_size"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IntegratedGradients, "attribute", spy)
    x = np.random.default_rng(0).random((2, side, side), dtype=np.float32)
    explain(tiny_cnn(), x, "integrated_gradients", target=np.array([0, 1]), n_steps=4, device="cpu")
    assert seen == [rows]  # CPU_ROW_PIXELS // (side * side), one call for the 2 images
    explain(tiny_cnn(), x, "integrated_gradients", target=np.array([0, 1]), n_steps=4, device="cpu",
            internal_batch_size=5)
    assert seen[-1] == 5  # an explicit value wins


def test_epsilon_lrp_equals_input_x_gradient_on_a_relu_cnn_as_the_registry_says() -> None:
    """Ancona et al. 2018: on ReLU networks ε-LRP (ε → 0) is Input×Gradient; the registry declares it,
    so the Benchmark page and the report can say why the two rows are identical."""
    assert get_method("lrp").equivalent_to == "input_x_gradient" and "Ancona" in get_method("lrp").equivalence
    notes, why = equivalence_column(["lrp", "saliency", "input_x_gradient"])
    assert notes == ["same maps as input_x_gradient", "", "same maps as lrp"] and len(why) == 1
    model, x, t = tiny_cnn(seed=3), _images(n=6, seed=2), np.array([0, 1, 2, 0, 1, 2])
    lrp = explain(model, x, "lrp", t, sign="signed", backend="captum")
    ixg = explain(model, x, "input_x_gradient", t, sign="signed")
    np.testing.assert_allclose(lrp, ixg, rtol=1e-4, atol=1e-6)
