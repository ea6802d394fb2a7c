"""Canonicalisation: copies only, one ReLU module per use, no in-place ops, same function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import models
from xai_core.attribution import explain
from xai_core.attribution.canonical import clear_cache, fingerprint, prepare
from xai_core.attribution.references import gaussian_blur, gaussian_kernel1d, reference_input
from xai_core.errors import ConfigError, UnsupportedError

CPU = torch.device("cpu")


def _calls_per_module(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1)))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return counts


class FunctionalNet(nn.Module):
    """F.relu(inplace=True), x.relu(), a shared activation, nn.Flatten and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv1(x)), inplace=True)
        z = self.act(self.conv2(y))
        z = z + y
        z = self.act(z).relu()
        return self.fc(self.flat(F.adaptive_avg_pool2d(z, 1)))


def test_prepare_never_touches_the_callers_model() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)  # in-place, shared ReLUs, train mode
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    x = torch.rand(2, 3, 32, 32)
    for kind in ("grad", "lrp", "cam"):
        prepare(model, kind, x, CPU, "layer4" if kind == "cam" else None)
    assert model.training and model.relu.inplace
    assert [p.requires_grad for p in model.parameters()] == grads
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_canonical_graph_has_one_module_per_relu_and_the_same_function() -> None:
    torch.manual_seed(0)
    model = FunctionalNet().eval()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    for kind in ("grad", "lrp", "cam"):
        prep = prepare(model, kind, x, CPU, "conv2" if kind == "cam" else None)
        assert prep.traced and prep.num_classes == 2 and prep.in_chans == 1
        gm = prep.model
        counts = _calls_per_module(gm, x)
        assert all(c == 1 for c in counts.values()), counts  # no shared modules
        relus = [m for m in gm.modules() if isinstance(m, nn.ReLU)]
        assert len(relus) == 4 and not any(r.inplace for r in relus)
        assert not any(isinstance(m, nn.Flatten) for m in gm.modules())
        assert not any(p.requires_grad for p in gm.parameters())
        assert prep.has_merge
        with torch.no_grad():
            torch.testing.assert_close(gm(x), expected, rtol=1e-5, atol=1e-6)
    # BatchNorm folded into the convolution for LRP, kept otherwise (activations identical)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepare(model, "lrp", x, CPU).model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in prepare(model, "cam", x, CPU, "conv2").model.modules())
    grad = prepare(model, "grad", x, CPU).model
    assert grad.get_submodule("conv1").weight.data_ptr() == model.conv1.weight.data_ptr()  # no weight copy
    assert grad.get_submodule("conv1").weight is not model.conv1.weight
    # residual additions become zennit Sum modules for LRP
    from zennit.layer import Sum  # lazy: zennit takes ~2 s to import; only this check uses it

    assert sum(isinstance(m, Sum) for m in prepare(model, "lrp", x, CPU).model.modules()) == 1


def test_lrp_leaves_the_callers_weights_alone() -> None:
    """Captum's LRP reloads the state dict after each call: on a copy, never on the caller's."""
    torch.manual_seed(0)
    model = models.build("vgg16", 2, 1, 0.125).eval()
    before = fingerprint(model)
    x = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    first = explain(model, x, "lrp", 0, arch="vgg16")
    assert fingerprint(model) == before
    np.testing.assert_array_equal(explain(model, x, "lrp", 0, arch="vgg16"), first)


def test_prepared_models_are_cached_until_the_weights_change() -> None:
    clear_cache()
    model = FunctionalNet().eval()
    x = torch.rand(1, 1, 8, 8)
    first = prepare(model, "grad", x, CPU)
    assert prepare(model, "grad", x, CPU) is first
    with torch.no_grad():
        model.fc.weight.add_(1.0)  # an optimiser step bumps the version counter
    second = prepare(model, "grad", x, CPU)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second.model(x), model(x))


def test_untraceable_model_falls_back_to_a_plain_copy() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.relu(self.conv(x)).mean(dim=(2, 3))
            return y if bool(y.sum() > -1e9) else -y

    model = DataDependent()
    prep = prepare(model, "grad", torch.rand(1, 1, 8, 8), CPU)
    assert not prep.traced and "torch.fx could not trace" in prep.notes[0]
    assert not prep.model.relu.inplace and model.relu.inplace

    x = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    assert explain(model, x, "saliency").shape == (2, 8, 8)  # gradients need no graph
    with pytest.raises(UnsupportedError, match="canonical module graph"):
        explain(model, x, "deeplift")


def test_baselines() -> None:
    k = gaussian_kernel1d(2.0, 13, CPU)
    assert torch.isclose(k.sum(), torch.tensor(1.0)) and k.argmax() == 6
    const = torch.full((2, 1, 10, 12), 0.7)
    torch.testing.assert_close(gaussian_blur(const, 3.0), const)  # replicate padding keeps constants
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1.0
    blurred = gaussian_blur(x, 1.5)
    assert torch.isclose(blurred.sum(), torch.tensor(1.0), atol=1e-5)  # mass preserved (impulse inside)
    assert blurred[0, 0, 10, 10] == blurred.max()
    torch.testing.assert_close(reference_input(x, "zeros", 1.0, None), torch.zeros_like(x))
    assert torch.allclose(reference_input(x, "mean", 1.0, None), torch.full_like(x, 1 / 441))
    assert torch.allclose(reference_input(x, "mean", 1.0, 0.25), torch.full_like(x, 0.25))
    with pytest.raises(ConfigError, match="^unknown reference input 'noise'; use one of zeros, blur, mean$"):
        reference_input(x, "noise", 1.0, None)
