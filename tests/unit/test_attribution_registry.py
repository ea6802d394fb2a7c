"""Method registry, parameter handling, capability matrix and user-error messages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import models
from xai_core.attribution import (
    capabilities,
    capability_matrix,
    explain,
    explain_with_info,
    get_method,
    list_methods,
    params_hash,
)
from xai_core.attribution import registry as registry_module
from xai_core.errors import ConfigError, InvalidValueError, ShapeError, UnknownNameError, UnsupportedError

STUDY_METHODS = [
    "saliency", "integrated_gradients", "gradient_shap", "deeplift", "lrp", "deconvolution", "guided_backprop",
    "gradcam", "gradcam_plus_plus", "layercam", "input_x_gradient", "smoothgrad", "occlusion", "attention_rollout",
]


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3)).eval()


def test_every_method_of_both_studies_is_registered_with_documented_params() -> None:
    assert list_methods() == STUDY_METHODS
    for name in list_methods():
        spec = get_method(name)
        assert spec.doc and spec.paper and spec.title
        for p in spec.params:
            assert p.doc, (name, p.name)
            assert p.coerce(name, p.default) == p.default or p.optional


def test_unknown_method_lists_the_valid_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        get_method("gradcam++")
    assert "gradcam_plus_plus" in str(err.value) and "saliency" in str(err.value)
    with pytest.raises(UnknownNameError):
        explain(tiny_cnn(), np.zeros((1, 8, 8), np.float32), "nope")


def test_params_are_typed_coerced_and_checked() -> None:
    spec = get_method("integrated_gradients")
    resolved = spec.resolve({"n_steps": "32", "baseline": "blur", "baseline_value": "none"})
    assert resolved["n_steps"] == 32 and resolved["baseline"] == "blur" and resolved["baseline_value"] is None
    assert resolved["sign"] == "abs"  # defaults filled in
    with pytest.raises(ConfigError, match="n_steps"):
        spec.resolve({"n_steps": "many"})
    with pytest.raises(ConfigError, match="must be one of zeros, blur, mean"):
        spec.resolve({"baseline": "noise"})
    with pytest.raises(InvalidValueError, match=">= 1"):
        spec.resolve({"n_steps": 0})
    with pytest.raises(ConfigError, match="has no parameter 'steps'"):
        spec.resolve({"steps": 3})
    assert get_method("saliency").resolve({"sign": "signed"})["sign"] == "signed"
    assert get_method("lrp").resolve({"epsilon": "1e-6"})["epsilon"] == pytest.approx(1e-6)


def test_params_hash_is_canonical() -> None:
    base = params_hash("integrated_gradients", {})
    assert base == params_hash("integrated_gradients", get_method("integrated_gradients").defaults())
    assert base == params_hash("integrated_gradients", {"n_steps": "50"})
    assert base == params_hash("integrated_gradients", {"internal_batch_size": 7})  # execution knob only
    assert base == params_hash("integrated_gradients", {"target": "predicted"})
    assert base != params_hash("integrated_gradients", {"n_steps": 51})
    assert base != params_hash("integrated_gradients", {"target": "true"})
    assert base != params_hash("saliency", {})
    assert len(base) == 64 and int(base, 16) >= 0
    with pytest.raises(ConfigError):
        params_hash("saliency", {"target": "both"})


def test_capability_matrix_covers_every_registered_architecture() -> None:
    matrix = capability_matrix()
    assert set(matrix) == set(models.list_architectures())
    for arch, caps in matrix.items():
        assert list(caps) == STUDY_METHODS
        assert all(v is True or (isinstance(v, str) and v) for v in caps.values()), arch
    assert capabilities("vgg16")["lrp"] is True
    with pytest.raises(UnknownNameError, match="vgg16"):
        capabilities("alexnet")


# ------------------------------------------------------------------------------------------
# bad input: one clear message each
# ------------------------------------------------------------------------------------------
def test_nan_image_is_rejected_naming_the_image() -> None:
    x = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    x[1, 2, 2] = np.nan
    with pytest.raises(InvalidValueError, match=r"image\(s\) 1 contain NaN"):
        explain(tiny_cnn(), x, "saliency")


def test_wrong_channel_count_and_dimensions() -> None:
    with pytest.raises(ShapeError, match="3 channel\\(s\\) but the model expects 1"):
        explain(tiny_cnn(), np.zeros((2, 3, 8, 8), np.float32), "saliency")
    with pytest.raises(ShapeError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        explain(tiny_cnn(), np.zeros((8, 8), np.float32), "saliency")
    with pytest.raises(ShapeError, match="N = 0"):
        explain(tiny_cnn(), np.zeros((0, 8, 8), np.float32), "saliency")


def test_wrong_size() -> None:
    with pytest.raises(ShapeError, match="trained at 16x16"):
        explain(tiny_cnn(), np.zeros((1, 8, 8), np.float32), "saliency", input_size=16)
    model = models.build("inception_v3", 2, 1)
    with pytest.raises(ShapeError, match="inception_v3 needs at least 75x75"):
        explain(model, np.zeros((1, 64, 64), np.float32), "saliency", arch="inception_v3")
    flat = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with pytest.raises(ShapeError, match="cannot process"):
        explain(flat, np.zeros((1, 9, 9), np.float32), "saliency")


def test_target_outside_the_classes() -> None:
    x = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(InvalidValueError, match="target class 3 is outside the model's classes 0..2"):
        explain(tiny_cnn(), x, "saliency", target=3)
    with pytest.raises(InvalidValueError, match="-1"):
        explain(tiny_cnn(), x, "saliency", target=np.array([0, -1]))
    with pytest.raises(ShapeError, match="one per image"):
        explain(tiny_cnn(), x, "saliency", target=[0, 1, 2])
    with pytest.raises(InvalidValueError, match="labels"):
        explain(tiny_cnn(), x, "saliency", target="true")


def test_unsupported_combinations_raise_unsupported_error() -> None:
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()
    with pytest.raises(UnsupportedError, match="convolutional layer"):
        explain(linear, np.zeros((1, 8, 8), np.float32), "gradcam")
    resnet = models.build("resnet18", 2, 1)
    with pytest.raises(UnsupportedError, match="backend=zennit"):
        explain(resnet, np.zeros((1, 32, 32), np.float32), "lrp", arch="resnet18", backend="captum")
    with pytest.raises(UnsupportedError, match="window"):
        explain(tiny_cnn(), np.zeros((1, 8, 8), np.float32), "occlusion", window=16)


def test_unknown_parameter_for_a_method() -> None:
    with pytest.raises(ConfigError, match="saliency has no parameter 'n_steps'"):
        explain(tiny_cnn(), np.zeros((1, 8, 8), np.float32), "saliency", n_steps=3)


def test_out_of_memory_halves_the_batch() -> None:
    """A method that runs out of memory above 2 images still completes, at batch size 2."""
    spec = get_method("saliency")
    calls: list[int] = []

    def flaky(ctx, x, target, p):  # type: ignore[no-untyped-def]
        calls.append(x.shape[0])
        if x.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return spec.fn(ctx, x, target, p)

    x = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    with registry_module.METHODS.swapped(dataclasses.replace(spec, fn=flaky)):
        info = explain_with_info(tiny_cnn(), x, "saliency", batch_size=8)
    assert info.batch_size == 2 and calls[:3] == [5, 4, 2]
    assert get_method("saliency") is spec
    np.testing.assert_allclose(info.maps, explain(tiny_cnn(), x, "saliency"), rtol=1e-5, atol=1e-9)
