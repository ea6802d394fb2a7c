"""Every method on every registered architecture the capability matrix marks supported.

Tiny inputs (each architecture's minimum size, one image) and tiny method settings keep this fast;
values are checked against plain autograd where a closed form exists.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from torch import nn

import models
from xai_core.attribution import capabilities, explain, explain_with_info, get_method, list_methods
from xai_core.attribution.canonical import traced_merges
from xai_core.errors import UnsupportedError

FAST = {
    "integrated_gradients": {"n_steps": 2},
    "gradient_shap": {"n_samples": 1},
    "smoothgrad": {"n_samples": 1},
    "occlusion": {"window": 32, "stride": 32},
}


@lru_cache(maxsize=1)  # one architecture at a time in memory (tests are grouped by arch)
def _model(arch: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = models.build(arch, 3, 1, 0.125 if arch == "vgg16" else 1.0).eval()  # vit_tiny: 64 dimensions
    size = models.get_architecture(arch).min_input_size
    return model, torch.rand(1, 1, size, size)


# densenet201 and resnet50 are densenet121's and resnet18's torchvision classes with deeper blocks
# (same code paths, 2-4x the layers), vit_base_patch16 vit_tiny's with 12 wider blocks: their sweeps are marked slow so a quick run (-m "not slow")
# can leave them out; the full suite runs them.
SLOW_ARCHS = {"densenet201", "resnet50", "vit_base_patch16"}  # ViT-B/16: 86 M parameters
CASES = [
    pytest.param(arch, method, marks=[pytest.mark.slow] if arch in SLOW_ARCHS else [])
    for arch in models.list_architectures()
    for method in list_methods()
]


@pytest.mark.parametrize("arch,method", CASES)
def test_method_on_architecture(arch: str, method: str) -> None:
    model, x = _model(arch)
    verdict = capabilities(arch)[method]
    if verdict is not True:
        with pytest.raises(UnsupportedError):
            explain(model, x, method, arch=arch, **FAST.get(method, {}))
        return
    info = explain_with_info(model, x, method, target=1, arch=arch, **FAST.get(method, {}))
    maps = info.maps
    assert maps.shape == (1, *x.shape[-2:]) and maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert info.targets.tolist() == [1]
    if get_method(method).output == "cam":
        assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    else:
        assert maps.min() >= 0.0 and maps.max() > 0.0  # sign=abs by default, some evidence somewhere
    if method == "saliency":  # against plain autograd on the caller's model
        xr = x.clone().requires_grad_(True)
        model(xr)[0, 1].backward()
        np.testing.assert_allclose(maps[0], xr.grad[0, 0].abs().numpy(), rtol=2e-3, atol=1e-6 * float(maps.max()))


@pytest.mark.parametrize("arch", [pytest.param(a, marks=[pytest.mark.slow] if a in SLOW_ARCHS else [])
                                  for a in models.list_architectures()])
def test_declared_merges_are_the_traced_graphs(arch: str) -> None:
    """What capabilities reads (ArchSpec.merges, traceable) is what torch.fx finds in the network."""
    model, x = _model(arch)
    spec = models.get_architecture(arch)
    assert spec.traceable and traced_merges(model, x) == spec.merges


def test_lrp_backend_auto_picks_captum_for_vgg_and_zennit_for_merges() -> None:
    """VGG: auto == Captum's LRP; ResNet: auto == zennit, and relevance is conserved roughly:
    sum R ~ f_t(x) for the epsilon-flat composite with biases only approximately, so the sign of
    the total and its order of magnitude are what we check."""
    model, x = _model("vgg16")
    auto = explain(model, x, "lrp", 0, arch="vgg16", sign="signed")
    captum = explain(model, x, "lrp", 0, arch="vgg16", sign="signed", backend="captum")
    np.testing.assert_array_equal(auto, captum)
    zennit = explain(model, x, "lrp", 0, arch="vgg16", sign="signed", backend="zennit")
    assert not np.allclose(zennit, captum)
