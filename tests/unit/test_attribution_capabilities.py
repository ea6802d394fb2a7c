"""Capabilities computed from the architecture's description and the methods' requirements.

A new family is registered once, here in the test (the one place a user would add it), and gets
every method that can run on it, run for real with values checked by hand; where a method's needs
are not met the verdict is the reason and ``explain`` raises it as UnsupportedError.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from models import architectures
from xai_core.attribution import capabilities, capability_matrix, explain, explain_with_info, list_methods
from xai_core.attribution.canonical import traced_merges
from xai_core.errors import ConfigError, UnsupportedError

STUDY_METHODS = [
    "saliency", "integrated_gradients", "gradient_shap", "deeplift", "lrp", "deconvolution", "guided_backprop",
    "gradcam", "gradcam_plus_plus", "layercam", "input_x_gradient", "smoothgrad", "occlusion",
]
ARCHS = ["densenet121", "densenet201", "inception_v3", "resnet18", "resnet50", "resnet50v2", "vgg16", "vgg16_plain",
         "densenet_mini", "resnetv2_mini", "inception_mini"]
VITS = ["vit_base_patch16", "vit_tiny"]
ROLLOUT = "attention_rollout"  # transformers only
GRAPH_METHODS = {"deeplift", "lrp", "deconvolution", "guided_backprop"}
CAM_METHODS = {"gradcam", "gradcam_plus_plus", "layercam"}
SIDE = 16


def test_capability_matrix_of_the_registered_architectures_is_the_validated_table() -> None:
    # the table that was hand-kept in capabilities.py (every study method runs on the registered
    # CNNs; re-checked by tests/integration/test_explain_architectures.py); attention rollout on
    # the ViTs only, which lack ReLUs (Guided Backprop, Deconvolution) and rules for attention's
    # products (DeepLIFT, LRP)
    def no_attention(arch: str) -> str:
        return (f"Attention Rollout reads attention weights but {arch} has no attention layers (not a transformer); "
                "use a CAM method or saliency, integrated_gradients or another gradient method")

    expected: dict[str, dict[str, bool | str]] = {
        arch: {**{method: True for method in STUDY_METHODS}, ROLLOUT: no_attention(arch)} for arch in ARCHS}
    for arch in VITS:
        rules = ("{} has no propagation rule for the multiply merges of " + arch +
                 "; use saliency, integrated_gradients or another gradient method")
        relu = ("{} modifies the backward pass of ReLU modules but " + arch + " has none (GELU), so its map would "
                "be the plain gradient; use saliency, integrated_gradients or another gradient method")
        expected[arch] = {**{method: True for method in STUDY_METHODS}, ROLLOUT: True,
                          "deeplift": rules.format("DeepLIFT"), "lrp": rules.format("LRP"),
                          "deconvolution": relu.format("Deconvolution"), "guided_backprop": relu.format("Guided Backprop")}
    assert capability_matrix() == expected


# ------------------------------------------------------------------------------------------
# three tiny families: residual (everything runs), gated without a CAM layer, untraceable
# ------------------------------------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))  # skip connection, functional ReLUs


class Gate(nn.Module):
    """Squeeze-and-excitation: channels multiplied by a sigmoid gate of their mean."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))


class TinyNet(nn.Module):
    """stem -> middle (residual or gate) -> down -> last -> act -> pool -> fc; convolutions and the
    classifier are bias-free, so LRP conserves relevance exactly."""

    def __init__(self, num_classes: int, in_chans: int, middle: str, branchy: bool = False) -> None:
        super().__init__()
        self.branchy = branchy
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1, bias=False), nn.ReLU())
        self.middle = Residual(4) if middle == "residual" else Gate(4)
        self.down = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.ReLU())
        self.last = Residual(6) if middle == "residual" else nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branchy and bool(x.mean() > 2.0):  # data-dependent control flow: torch.fx cannot trace it
            x = x / 2
        a = self.act(self.last(self.down(self.middle(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(a), 1))


def _spec(name: str, middle: str, *, cam: str | None, merges: frozenset[str], traceable: bool) -> models.ArchSpec:
    return models.ArchSpec(
        name=name, family=f"tiny_{middle}",
        builder=lambda c, i, _w: TinyNet(c, i, middle, branchy=not traceable),
        blocks=(("stem",), ("middle",), ("down",), ("last",), ("act",)), head=("fc",), cam=cam,
        first_conv="stem.0", min_input_size=8, default_input_size=SIDE, supports_width=False, imagenet=None,
        description=f"a tiny {middle} CNN registered by a test",
        head_chain=lambda m: nn.Sequential(m.pool, nn.Flatten(1), m.fc), merges=merges, traceable=traceable,
    )


FAMILIES = {
    "tiny_resnet": _spec("tiny_resnet", "residual", cam="act", merges=frozenset({"add"}), traceable=True),
    "tiny_senet": _spec("tiny_senet", "gate", cam=None, merges=frozenset({"multiply"}), traceable=True),
    "tiny_branchy": _spec("tiny_branchy", "residual", cam="act", merges=frozenset({"add"}), traceable=False),
}


@pytest.fixture(scope="module")
def registered() -> Iterator[dict[str, tuple[nn.Module, torch.Tensor]]]:
    """The three families registered (one ``models.register`` call each), a built model and two
    images for each; unregistered afterwards so the registry holds the eight networks again."""
    for spec in FAMILIES.values():
        models.register(spec)
    out = {}
    for name in FAMILIES:
        torch.manual_seed(0)
        out[name] = (models.build(name, 3, 1).eval(), torch.rand(2, 1, SIDE, SIDE))
    yield out
    for name in FAMILIES:
        architectures.unregister(name)


def test_declared_merges_and_traceability_match_the_traced_graph(registered) -> None:
    for name, (model, x) in registered.items():
        spec = models.get_architecture(name)
        assert traced_merges(model, x) == (spec.merges if spec.traceable else None), name


def test_a_new_residual_family_gets_every_method(registered) -> None:
    assert "tiny_resnet" in models.list_architectures()
    assert capabilities("tiny_resnet") == {**{method: True for method in STUDY_METHODS},
                                           ROLLOUT: capabilities("vgg16")[ROLLOUT].replace("vgg16", "tiny_resnet")}
    assert set(capability_matrix()) == {*ARCHS, *VITS, *FAMILIES}


def _logits_and_grad(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    out.gather(1, t[:, None]).sum().backward()
    return out.detach(), xr.grad[:, 0].numpy()


def test_every_method_runs_on_the_new_family_with_hand_checked_values(registered) -> None:
    model, x = registered["tiny_resnet"]
    t = torch.tensor([0, 2])
    logits, grad = _logits_and_grad(model, x, t)
    f_x = logits.gather(1, t[:, None])[:, 0].numpy()
    f_0 = model(torch.zeros_like(x)).detach().gather(1, t[:, None])[:, 0].numpy()
    signed = {"sign": "signed"}
    maps = {m: explain_with_info(model, x, m, t, arch="tiny_resnet", **signed if m not in CAM_METHODS else {}).maps
            for m in STUDY_METHODS if m not in ("occlusion", "smoothgrad", "integrated_gradients")}
    # gradient methods against plain autograd on the caller's model
    np.testing.assert_allclose(maps["saliency"], grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(maps["input_x_gradient"], x[:, 0].numpy() * grad, rtol=1e-4, atol=1e-7)
    smooth = explain(model, x, "smoothgrad", t, arch="tiny_resnet", stdevs=0.0, n_samples=2, **signed)
    np.testing.assert_allclose(smooth, grad, rtol=1e-4, atol=1e-7)  # no noise: the plain gradient
    # completeness: sum of the map = f_t(x) - f_t(0) (DeepLIFT's rescale rule exactly, IG up to quadrature)
    np.testing.assert_allclose(maps["deeplift"].sum(axis=(1, 2)), f_x - f_0, rtol=1e-4, atol=1e-6)
    ig = explain(model, x, "integrated_gradients", t, arch="tiny_resnet", n_steps=64, **signed)
    np.testing.assert_allclose(ig.sum(axis=(1, 2)), f_x - f_0, rtol=0.02, atol=1e-4)
    # LRP (Zennit, skip connection as an explicit Sum): a bias-free network conserves relevance
    np.testing.assert_allclose(maps["lrp"].sum(axis=(1, 2)), f_x, rtol=0.02)
    for method in ("deconvolution", "guided_backprop", "gradient_shap"):
        assert np.isfinite(maps[method]).all() and np.abs(maps[method]).max() > 0, method
    for method in CAM_METHODS:  # min-max normalised maps on the declared CAM layer
        assert maps[method].shape == (2, SIDE, SIDE)
        assert maps[method].min() >= 0.0 and np.allclose(maps[method].max(axis=(1, 2)), 1.0), method
    # occlusion with one 8x8 patch per quadrant: each pixel holds the logit drop of its quadrant
    occ = explain(model, x, "occlusion", t, arch="tiny_resnet", window=8, stride=8, **signed)
    for r in (0, 8):
        for c in (0, 8):
            hidden = x.clone()
            hidden[..., r:r + 8, c:c + 8] = 0
            drop = f_x - model(hidden).detach().gather(1, t[:, None])[:, 0].numpy()
            np.testing.assert_allclose(occ[:, r:r + 8, c:c + 8], np.broadcast_to(drop[:, None, None], (2, 8, 8)),
                                       rtol=1e-4, atol=1e-6)


def test_grad_cam_on_the_declared_layer_equals_the_hand_computed_cam(registered) -> None:
    model, x = registered["tiny_resnet"]
    t = torch.tensor([1, 1])
    acts: dict[str, torch.Tensor] = {}
    handle = model.act.register_forward_hook(lambda _m, _i, out: acts.setdefault("a", out))
    try:
        out = model(x)
    finally:
        handle.remove()
    a = acts["a"]
    (g,) = torch.autograd.grad(out[:, 1].sum(), a)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)).detach()
    lo, hi = cam.amin(dim=(1, 2), keepdim=True), cam.amax(dim=(1, 2), keepdim=True)
    expected = F.interpolate(((cam - lo) / (hi - lo + 1e-7))[:, None], size=(SIDE, SIDE), mode="nearest")[:, 0]
    got = explain(model, x, "gradcam", t, arch="tiny_resnet", upsample="nearest")
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_gated_family_without_cam_layer_gets_the_reasons(registered) -> None:
    model, x = registered["tiny_senet"]
    caps = capabilities("tiny_senet")
    assert caps["lrp"] == ("LRP has no propagation rule for the multiply merges of tiny_senet; "
                           "use saliency, integrated_gradients or another gradient method")
    assert "DeepLIFT has no propagation rule for the multiply merges" in str(caps["deeplift"])
    for method in CAM_METHODS:
        assert "needs a CAM layer but tiny_senet declares none" in str(caps[method])
    assert {m for m, v in caps.items() if v is True} == set(STUDY_METHODS) - CAM_METHODS - {"lrp", "deeplift"}
    assert "has no attention layers" in str(caps[ROLLOUT])
    for method in ("lrp", "deeplift", "gradcam"):
        with pytest.raises(UnsupportedError, match=f"^{method} is not supported on tiny_senet: "):
            explain(model, x, method, arch="tiny_senet")
    # the hook-based methods do run through the gate
    assert np.abs(explain(model, x, "guided_backprop", arch="tiny_senet")).max() > 0


def test_untraceable_family_keeps_gradient_and_cam_methods(registered) -> None:
    model, x = registered["tiny_branchy"]
    caps = capabilities("tiny_branchy")
    for method in GRAPH_METHODS:
        assert "cannot be traced by torch.fx" in str(caps[method]), method
    assert {m for m, v in caps.items() if v is True} == set(STUDY_METHODS) - GRAPH_METHODS
    assert "has no attention layers" in str(caps[ROLLOUT])
    with pytest.raises(UnsupportedError, match="^guided_backprop is not supported on tiny_branchy: Guided Backprop"):
        explain(model, x, "guided_backprop", arch="tiny_branchy")
    cam = explain(model, x, "layercam", arch="tiny_branchy")
    assert np.allclose(cam.max(axis=(1, 2)), 1.0)
    _, grad = _logits_and_grad(model, x, model(x).argmax(dim=1))
    np.testing.assert_allclose(explain(model, x, "saliency", arch="tiny_branchy"), np.abs(grad), rtol=1e-4, atol=1e-7)


def test_architecture_descriptions_are_checked_when_declared() -> None:
    with pytest.raises(ConfigError, match="unknown merge kind\\(s\\) sum; use add, concat, multiply"):
        _spec("bad", "residual", cam="act", merges=frozenset({"sum"}), traceable=True)
    with pytest.raises(ConfigError, match="declares 2 conv blocks; fine-tuning degrees need exactly 5"):
        models.ArchSpec(**{**vars(FAMILIES["tiny_resnet"]), "name": "bad", "blocks": (("stem",), ("act",))})
