"""Vision transformers: the timm ViT family, attention rollout and Grad-CAM on the token grid.

Values are checked by hand (rollout of known attention matrices) and against timm itself (the
restructured ViT computes exactly timm's forward) and plain autograd (Grad-CAM).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from models.architectures import ViT, vit_imagenet_keys
from xai_core.attribution import capabilities, explain, explain_with_info
from xai_core.attribution.rollout import class_token_map, discard_lowest, rollout, to_image
from xai_core.errors import ConfigError, ShapeError, UnsupportedError


def _timm_vit(depth: int = 2, img: int = 64, patch: int = 8, dim: int = 32, heads: int = 2, chans: int = 1,
              classes: int = 3) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=img, patch_size=patch, in_chans=chans, num_classes=classes, embed_dim=dim,
                             depth=depth, num_heads=heads, global_pool="token", dynamic_img_size=True).eval()


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return models.build("vit_tiny", 3, 1, 1.0).eval()


# ------------------------------------------------------------------------------------------
# the architecture
# ------------------------------------------------------------------------------------------
def test_vit_is_timms_forward_at_any_multiple_of_the_patch() -> None:
    """Same modules, same output as timm's VisionTransformer (dynamic_img_size: the position
    embedding resampled to the grid) at the learnt 64 px and at 32 and 48 px."""
    vit = _timm_vit()
    ours = ViT(vit).eval()
    for side in (64, 32, 48):
        x = torch.rand(2, 1, side, side)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), vit(x), rtol=0, atol=0)
    # state-dict names: timm's, the token embedding under ``embed.``
    assert set(vit_imagenet_keys(vit.state_dict())) == set(ours.state_dict())


def test_vit_tiny_layout_width_and_chain() -> None:
    spec = models.get_architecture("vit_tiny")
    assert spec.family == "vit" and spec.input_multiple == 8 and spec.default_input_size == 64
    assert spec.cam == "blocks.4.norm1" and spec.attention == tuple(f"blocks.{i}.attn" for i in range(5))
    assert not spec.relu and spec.supports_width and spec.imagenet is None
    for width, dim, heads in ((1.0, 64, 4), (0.5, 32, 2), (0.25, 16, 2), (0.75, 48, 3)):
        model = models.build("vit_tiny", 2, 1, width)
        attn = model.blocks[0].attn
        assert (model.head.in_features, attn.num_heads) == (dim, heads), width
    # embedding 1*64*8*8 + 64 (conv) + 64 (class token) + 65*64 (positions); per block 12*64^2 + 13*64
    # (qkv, proj, fc1, fc2 with biases, two LayerNorms); final LayerNorm 2*64; head 64*3 + 3
    model = models.build("vit_tiny", 3, 1, 1.0)
    expected = (64 * 64 + 64 + 64 + 65 * 64) + 5 * (12 * 64 * 64 + 13 * 64) + 2 * 64 + (64 * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == expected
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        z = x
        for part in spec.chain(model.eval()):
            z = part(z)
        torch.testing.assert_close(model(x), z, rtol=0, atol=0)


def test_vit_base_is_vit_b16() -> None:
    spec = models.get_architecture("vit_base_patch16")
    assert spec.imagenet is not None and spec.imagenet.library == "timm" and spec.imagenet.preprocess == "inception"
    assert spec.imagenet.file == "vit_base_patch16_224.augreg2_in21k_ft_in1k.safetensors"
    assert spec.blocks[0] == ("embed", "blocks.0", "blocks.1", "blocks.2", "blocks.3")
    assert spec.blocks[1:] == (("blocks.4", "blocks.5"), ("blocks.6", "blocks.7"), ("blocks.8", "blocks.9"),
                               ("blocks.10", "blocks.11", "norm"))
    assert not spec.supports_width and spec.input_multiple == 16 and spec.cam == "blocks.11.norm1"
    with pytest.raises(UnsupportedError, match="width"):
        models.build("vit_base_patch16", 2, 3, 0.5)


@pytest.mark.slow
def test_vit_base_loads_a_timm_imagenet_file(tmp_path, monkeypatch) -> None:
    """A timm vit_base_patch16_224 state dict in the hub cache (random weights: nothing is
    downloaded) loads through the ImageNet source and gives timm's logits."""
    import timm
    from safetensors.torch import save_file

    from models.pretraining import imagenet_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    reference = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    save_file(reference.state_dict(), str(folder / models.get_architecture("vit_base_patch16").imagenet.file))
    model, classes = imagenet_model("vit_base_patch16")
    assert len(classes) == 1000
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x), rtol=1e-5, atol=1e-5)


def test_patch_size_must_divide_the_image(tiny) -> None:
    spec = models.get_architecture("vit_tiny")
    spec.check_input_size(64)
    spec.check_input_size(40, 56)
    msg = "vit_tiny: the patch size 8 does not divide the image size 60x60; use images whose sides are multiples of 8"
    with pytest.raises(ConfigError, match=msg):
        spec.check_input_size(60)
    with pytest.raises(ConfigError, match="at least 32 px"):
        spec.check_input_size(24)
    with pytest.raises(ConfigError, match="the ViT patch size 8 does not divide the image size 60x60"):
        tiny(torch.rand(1, 1, 60, 60))  # the model itself checks too (any caller)
    with pytest.raises(ConfigError, match="^vit_tiny: the patch size 8 does not divide"):
        explain(tiny, torch.rand(1, 1, 60, 60), "saliency", arch="vit_tiny")
    with pytest.raises(ShapeError, match="needs at least 32x32"):
        explain(tiny, torch.rand(1, 1, 16, 16), "saliency", arch="vit_tiny")
    models.get_architecture("vgg16").check_input_size(60)  # CNNs take any size


# ------------------------------------------------------------------------------------------
# capabilities
# ------------------------------------------------------------------------------------------
def test_vit_capabilities_say_why(tiny) -> None:
    caps = capabilities("vit_tiny")
    supported = {m for m, v in caps.items() if v is True}
    assert supported == {"saliency", "integrated_gradients", "gradient_shap", "input_x_gradient", "smoothgrad",
                         "occlusion", "gradcam", "gradcam_plus_plus", "layercam", "attention_rollout"}
    assert caps["lrp"] == ("LRP has no propagation rule for the multiply merges of vit_tiny; "
                           "use saliency, integrated_gradients or another gradient method")
    assert "DeepLIFT has no propagation rule for the multiply merges" in str(caps["deeplift"])
    for method in ("guided_backprop", "deconvolution"):
        assert "modifies the backward pass of ReLU modules but vit_tiny has none (GELU)" in str(caps[method])
    for method in ("lrp", "deeplift", "guided_backprop", "deconvolution"):
        with pytest.raises(UnsupportedError, match=f"^{method} is not supported on vit_tiny: "):
            explain(tiny, torch.rand(1, 1, 32, 32), method, arch="vit_tiny")
    assert "has no attention layers (not a transformer)" in str(capabilities("vgg16")["attention_rollout"])
    with pytest.raises(UnsupportedError, match="^attention_rollout is not supported on resnet18: "):
        explain(models.build("resnet18", 2), torch.rand(1, 1, 32, 32), "attention_rollout", arch="resnet18")


# ------------------------------------------------------------------------------------------
# attention rollout by hand
# ------------------------------------------------------------------------------------------
def test_rollout_of_identity_and_uniform_attention_is_uniform() -> None:
    n = 5  # class token + a 2x2 patch grid
    identity = torch.eye(n).expand(1, 2, n, n)
    r = rollout([identity, identity])
    torch.testing.assert_close(r, torch.eye(n)[None])  # tokens keep to themselves
    assert class_token_map(r, (16, 16)).tolist() == [[[0.0, 0.0], [0.0, 0.0]]]
    uniform = torch.full((1, 3, n, n), 1 / n)
    grid = class_token_map(rollout([uniform]), (16, 16))
    torch.testing.assert_close(grid, torch.full((1, 2, 2), 0.5 / n))  # 0.5 * I + 0.5 / n: equal flow
    assert to_image(grid, (16, 16), "bilinear").abs().max() == 0.0  # a uniform map has no evidence


def test_rollout_of_known_attention_is_the_product_with_the_residual() -> None:
    # one layer, two heads over [cls, p1, p2, p3, p4]; head mean of row 0 = (0.2, 0.4, 0.1, 0.2, 0.1)
    a1 = torch.tensor([[0.4, 0.2, 0.2, 0.1, 0.1]] + [[0.2] * 5] * 4)
    a2 = torch.tensor([[0.0, 0.6, 0.0, 0.3, 0.1]] + [[0.2] * 5] * 4)
    att = torch.stack([a1, a2])[None]
    r = rollout([att])
    # row 0 of 0.5 I + 0.5 A: (0.5 + 0.1, 0.2, 0.05, 0.1, 0.05)
    torch.testing.assert_close(r[0, 0], torch.tensor([0.6, 0.2, 0.05, 0.1, 0.05]))
    torch.testing.assert_close(class_token_map(r, (16, 16)), torch.tensor([[[0.2, 0.05], [0.1, 0.05]]]))
    # a second layer with uniform attention u: R = (0.5 I + 0.5 u) (0.5 I + 0.5 A); row 0 of that =
    # 0.5 * row0(Ã1) + 0.5 * mean over rows of Ã1 = 0.5 * (0.6, .2, .05, .1, .05) + 0.5 * column means
    tilde = 0.5 * torch.eye(5) + 0.5 * att[0].mean(0)
    two = rollout([att, torch.full((1, 1, 5, 5), 0.2)])
    torch.testing.assert_close(two[0, 0], 0.5 * tilde[0] + 0.5 * tilde.mean(0))
    # max/min over heads, then rows re-normalised: row 0 of max = (0.4, .6, .2, .3, .1) / 1.6
    mx = rollout([att], head_fusion="max")[0, 0]
    torch.testing.assert_close(mx, (0.5 * torch.eye(5)[0] + 0.5 * torch.tensor([0.4, 0.6, 0.2, 0.3, 0.1]))
                               / (0.5 + 0.5 * 1.6))


def test_discard_keeps_the_class_token_entry() -> None:
    a = torch.tensor([[[0.05, 0.5], [0.3, 0.15]]])
    # the two lowest are 0.05 and 0.15; (0, 0) is kept
    torch.testing.assert_close(discard_lowest(a, 0.5), torch.tensor([[[0.05, 0.5], [0.3, 0.0]]]))
    torch.testing.assert_close(discard_lowest(a, 0.2), a)  # int(4 * 0.2) = 0 entries


def test_rollout_method_reads_the_softmax_weights_of_every_block() -> None:
    """One-block ViT: the method's map is to_image(row 0 of 0.5 I + 0.5 mean_heads softmax(q k^T / sqrt(d)))
    with q, k computed by hand from the block's weights; zero query/key weights give uniform
    attention and a uniform (all-zero) map; the caller's model keeps fused attention."""
    vit = ViT(_timm_vit(depth=1, img=32, dim=16, heads=2)).eval()
    x = torch.rand(2, 1, 32, 32)
    attn = vit.blocks[0].attn
    with torch.no_grad():
        tokens = vit.blocks[0].norm1(vit.embed(x))
        q, k, _ = (tokens @ attn.qkv.weight.T + attn.qkv.bias).reshape(2, 17, 3, 2, 8).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)
    r = 0.5 * torch.eye(17) + 0.5 * weights.mean(dim=1)
    expected = to_image(r[:, 0, 1:].reshape(2, 4, 4), (32, 32), "nearest")
    info = explain_with_info(vit, x, "attention_rollout", upsample="nearest")
    np.testing.assert_allclose(info.maps, expected.numpy(), atol=1e-4)  # min-max scaling magnifies float error
    np.testing.assert_array_equal(info.targets, vit(x).argmax(1).numpy())
    assert attn.fused_attn  # the caller's model is untouched
    again = explain(vit, x, "attention_rollout", target=[1, 1], upsample="nearest")
    np.testing.assert_array_equal(again, info.maps)  # class-agnostic
    with torch.no_grad():
        attn.qkv.weight[:32] = 0.0
        attn.qkv.bias[:32] = 0.0  # q = k = 0: every token attends uniformly
    assert np.abs(explain(vit, x, "attention_rollout")).max() == 0.0


def test_rollout_on_the_registered_vit(tiny) -> None:
    x = torch.rand(3, 1, 64, 64)
    maps = explain(tiny, x, "attention_rollout", arch="vit_tiny")
    assert maps.shape == (3, 64, 64) and np.allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-6) and maps.min() == 0.0
    fused = explain(tiny, x, "attention_rollout", arch="vit_tiny", head_fusion="max", discard_ratio=0.5)
    assert not np.allclose(fused, maps)


# ------------------------------------------------------------------------------------------
# Grad-CAM on the token grid
# ------------------------------------------------------------------------------------------
def _hooked_grad(model: nn.Module, layer: nn.Module, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    acts: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: acts.setdefault("a", out))
    try:
        out = model(x)
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(out[:, t].sum(), acts["a"])
    return acts["a"].detach(), g


def test_gradcam_on_the_reshaped_tokens_equals_the_direct_computation(tiny) -> None:
    x = torch.rand(2, 1, 64, 64)
    a, g = _hooked_grad(tiny, tiny.blocks[4].norm1, x, 2)  # (2, 65, 64) tokens entering the last attention
    grid = lambda t: t[:, 1:].reshape(2, 8, 8, 64).permute(0, 3, 1, 2)  # noqa: E731  class token dropped
    a, g = grid(a), grid(g)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))
    lo, hi = cam.amin(dim=(1, 2), keepdim=True), cam.amax(dim=(1, 2), keepdim=True)
    expected = F.interpolate(((cam - lo) / (hi - lo + 1e-7))[:, None], size=(64, 64), mode="nearest")[:, 0]
    got = explain(tiny, x, "gradcam", 2, arch="vit_tiny", upsample="nearest")
    # pytorch-grad-cam sums the channels in numpy: the signed sum cancels (|cam| ~ 1e-3 of its terms'
    # scale on a random network), so float32 rounding shows at 1e-4 of the normalised map
    np.testing.assert_allclose(got, expected.numpy(), atol=3e-4)
    assert got.max() == pytest.approx(1.0, abs=1e-6)


def test_the_last_blocks_output_tokens_carry_no_gradient(tiny) -> None:
    """Why the CAM layer is the last block's norm1, not its output: the head reads the class token
    only, so after the last attention the patch tokens no longer reach the logits."""
    x = torch.rand(1, 1, 64, 64)
    _, g_out = _hooked_grad(tiny, tiny.blocks[4], x, 0)
    _, g_in = _hooked_grad(tiny, tiny.blocks[4].norm1, x, 0)
    assert g_out[:, 1:].abs().max() == 0.0 and g_out[:, 0].abs().max() > 0
    assert g_in[:, 1:].abs().max() > 0
