"""The registered attribution methods: thin adapters over Captum, pytorch-grad-cam and Zennit.

Each adapter receives a batch ``x`` (B, C, H, W) on the device, ``target`` (B,) or ``None``
(predicted class) and its resolved parameters, and returns ``(attributions, targets)``.
Sign and channel reduction (``sign``, ``reduce``) are applied afterwards by the engine, so the
adapters return the raw, signed library output.

References: Simonyan et al. 2014 (Saliency); Sundararajan et al. 2017 (Integrated Gradients);
Lundberg & Lee 2017 (GradientSHAP); Shrikumar et al. 2017 (DeepLIFT); Bach et al. 2015 (LRP);
Zeiler & Fergus 2014 (Deconvolution, Occlusion); Springenberg et al. 2015 (Guided Backprop);
Selvaraju et al. 2017 (Grad-CAM); Chattopadhay et al. 2018 (Grad-CAM++); Jiang et al. 2021
(LayerCAM); Shrikumar et al. 2016 (Input x Gradient); Smilkov et al. 2017 (SmoothGrad);
Abnar & Zuidema 2020 (attention rollout).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.inputs import Normalize
from xai_core.attribution.canonical import Prepared
from xai_core.attribution.references import REFERENCE_KINDS, reference_input
from xai_core.attribution.registry import Needs, Param, register_method
from xai_core.errors import UnsupportedError

Tensor = torch.Tensor

# ------------------------------------------------------------------------------------------
# shared parameter sets
# ------------------------------------------------------------------------------------------
POST = (
    Param("sign", str, "abs", "post-processing of the signed map: abs |a|, signed a, positive max(a,0), "
          "negative max(-a,0)", choices=("abs", "signed", "positive", "negative")),
    Param("reduce", str, "sum", "channel reduction for multi-channel inputs (after abs when sign=abs): "
          "sum, mean, max, l2 (Euclidean norm)", choices=("sum", "mean", "max", "l2")),
)
BASELINE = (
    Param("baseline", str, "zeros", "reference input: zeros, blur (Gaussian-blurred input) or mean "
          "(constant image at the dataset mean intensity)", choices=REFERENCE_KINDS),
    Param("blur_sigma", float, 5.0, "Gaussian sigma in pixels for baseline=blur", minimum=0.0),
    Param("baseline_value", float, None, "intensity of baseline=mean; empty = mean of the images "
          "(the store fills in the dataset's train-split mean)", optional=True),
)
IBS = Param("internal_batch_size", int, None, "rows (images x steps/samples/perturbations) per forward pass; "
            "empty = 4 x the engine batch size", minimum=1, optional=True, affects_result=False)
SEED = Param("seed", int, 0, "random seed (noise and path points are drawn reproducibly)")
# what the module-hooking methods need (capabilities): a traced module graph; DeepLIFT and LRP
# also rules for every merge, which exist for additions and concatenations, not for gates
HOOKS = Needs(graph=True, relu=True)  # Guided Backprop / Deconvolution modify ReLU modules' backward pass
RULES = Needs(graph=True, merges=frozenset({"add", "concat"}))
CAM_LAYER = Needs(cam_layer=True)
ATTENTION = Needs(attention=True)
CAM = (
    Param("upsample", str, "bilinear", "CAM upsampling to the input size: bilinear (pytorch-grad-cam's "
          "cv2 resize) or nearest (blocky, shows the layer's resolution)", choices=("bilinear", "nearest")),
)


@dataclass
class MethodContext:
    """What an adapter gets besides the batch: the prepared model and engine settings."""

    prepared: Prepared
    device: torch.device
    batch_size: int
    # the CAM layer's output as a (B, C, h, w) grid when it is a token sequence (a ViT's patch tokens)
    cam_reshape: Callable[[Tensor], Tensor] | None = None

    @property
    def model(self) -> nn.Module:
        return self.prepared.model

    def internal_batch(self, params: dict[str, Any]) -> int:
        """Rows per forward pass of multi-pass methods: the parameter (on the CPU the engine fills it
        in from ``CPU_ROW_PIXELS``), else 4 x the image batch (halved on out-of-memory)."""
        return int(params.get("internal_batch_size") or 4 * self.batch_size)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class per image (one no-grad forward pass)."""
        with torch.no_grad():
            return self.model(x).argmax(dim=1)

    def target_or_predicted(self, x: Tensor, target: Tensor | None) -> Tensor:
        return self.predict(x) if target is None else target

    def baseline(self, x: Tensor, params: dict[str, Any]) -> Tensor:
        return reference_input(x, params["baseline"], params["blur_sigma"], params["baseline_value"])


class PredictedLogit(nn.Module):
    """``x -> max_k f_k(x)`` as a (B, 1) output: its gradient is the gradient of the predicted
    class's logit, so one-pass gradient methods need no separate forward pass to find the target.
    ``last_target`` keeps the argmax of the last call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.last_target: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        top = out.max(dim=1, keepdim=True)
        self.last_target = top.indices[:, 0].detach()
        return top.values


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Reproducible torch and numpy randomness inside the block, global state restored after."""
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        np.random.seed(seed % (2**32))
        try:
            yield
        finally:
            np.random.set_state(np_state)


def _one_pass(ctx: MethodContext, cls: type, x: Tensor, target: Tensor | None, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """Captum one-pass gradient method; predicted target found in the same forward pass."""
    x = x.clone().requires_grad_(True)
    if target is None:
        wrapper = PredictedLogit(ctx.model)
        attr = cls(wrapper).attribute(x, target=0, **kwargs)
        assert wrapper.last_target is not None
        return attr.detach(), wrapper.last_target
    return cls(ctx.model).attribute(x, target=target, **kwargs).detach(), target


# ------------------------------------------------------------------------------------------
# the MRI study's seven (Oliveira et al. 2024), through Captum
# ------------------------------------------------------------------------------------------
@register_method("saliency", title="Saliency", params=POST, group="gradient", library="captum",
                 paper="Simonyan et al. 2014, arXiv:1312.6034")
def saliency(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Gradient of the target logit w.r.t. the input, ``a = d f_t / d x`` (Captum ``Saliency``;
    ``sign=abs`` gives Simonyan's |gradient|)."""
    from captum.attr import Saliency  # lazy: captum takes ~1.3 s to import

    return _one_pass(ctx, Saliency, x, target, abs=False)


@register_method("integrated_gradients", title="Integrated Gradients",
                 params=(*BASELINE,
                         Param("n_steps", int, 50, "integration steps m", minimum=1),
                         Param("integration", str, "gausslegendre", "quadrature rule (Captum method)",
                               choices=("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                                        "riemann_middle")),
                         IBS, *POST),
                 group="path", library="captum", paper="Sundararajan et al. 2017, arXiv:1703.01365")
def integrated_gradients(ctx: MethodContext, x: Tensor, target: Tensor | None,
                         p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``a_i = (x_i - x'_i) * integral_0^1 d f_t(x' + alpha (x - x')) / d x_i d alpha`` (Captum
    ``IntegratedGradients``); completeness: ``sum_i a_i = f_t(x) - f_t(x')``. Batched over images
    and steps: each forward pass holds ``internal_batch_size`` rows."""
    from captum.attr import IntegratedGradients  # lazy: captum takes ~1.3 s to import

    t = ctx.target_or_predicted(x, target)
    attr = IntegratedGradients(ctx.model).attribute(
        x, baselines=ctx.baseline(x, p), target=t, n_steps=p["n_steps"], method=p["integration"],
        internal_batch_size=max(ctx.internal_batch(p), x.shape[0]),
    )
    return attr.detach(), t


@register_method("gradient_shap", title="GradientSHAP",
                 params=(*BASELINE,
                         Param("n_samples", int, 20, "random samples per image", minimum=1),
                         Param("stdevs", float, 0.1, "std of the Gaussian noise added to the input", minimum=0.0),
                         SEED, IBS, *POST),
                 group="path", library="captum", deterministic=False,
                 paper="Lundberg & Lee 2017, arXiv:1705.07874")
def gradient_shap(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Expected ``(x - x') * d f_t(x' + alpha (x + eps - x')) / d x`` over ``alpha ~ U(0,1)`` and
    ``eps ~ N(0, stdevs^2)``. Captum's ``GradientShap`` draws baselines from a distribution; here
    each image has its own reference (zeros/blur/mean), so the same Captum pieces are used with the
    image's own baseline: ``NoiseTunnel(InputBaselineXGradient)`` (exactly GradientShap's
    implementation, ``draw_baseline_from_distrib=False``)."""
    # lazy: captum takes ~1.3 s to import
    from captum.attr import NoiseTunnel
    from captum.attr._core.gradient_shap import InputBaselineXGradient

    t = ctx.target_or_predicted(x, target)
    per_call = max(1, ctx.internal_batch(p) // x.shape[0])
    with seeded(p["seed"]):
        attr = NoiseTunnel(InputBaselineXGradient(ctx.model)).attribute(
            x, nt_type="smoothgrad", nt_samples=p["n_samples"], nt_samples_batch_size=per_call,
            stdevs=p["stdevs"], draw_baseline_from_distrib=False, baselines=ctx.baseline(x, p), target=t,
        )
    return attr.detach(), t


@register_method("deeplift", title="DeepLIFT", params=(*BASELINE, *POST), group="propagation",
                 library="captum", needs=RULES, paper="Shrikumar et al. 2017, arXiv:1704.02685")
def deeplift(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """DeepLIFT rescale rule (Captum ``DeepLift``): multipliers ``Delta y / Delta x`` through every
    ReLU/max-pool module, so that ``sum_i a_i = f_t(x) - f_t(x')``. Needs the canonical graph
    (one ReLU module per use)."""
    from captum.attr import DeepLift  # lazy: captum takes ~1.3 s to import

    _need_traced(ctx, "deeplift")
    t = ctx.target_or_predicted(x, target)
    attr = DeepLift(ctx.model).attribute(x.clone().requires_grad_(True), baselines=ctx.baseline(x, p), target=t)
    return attr.detach(), t


_ZENNIT_COMPOSITES = ("epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat")


@register_method("lrp", title="LRP",
                 params=(Param("backend", str, "auto", "auto: Captum's LRP for plain feed-forward graphs "
                               "(VGG, as in Oliveira et al.), Zennit for graphs with skip/concat merges "
                               "(ResNet, DenseNet, Inception); captum; zennit",
                               choices=("auto", "captum", "zennit")),
                         Param("composite", str, "epsilon_plus_flat", "Zennit composite (zennit backend)",
                               choices=_ZENNIT_COMPOSITES),
                         Param("epsilon", float, 1e-9, "epsilon stabiliser of the epsilon rule", minimum=0.0),
                         *POST),
                 group="propagation", library="captum/zennit", model_kind="lrp", needs=RULES,
                 paper="Bach et al. 2015, doi:10.1371/journal.pone.0130140",
                 equivalent_to="input_x_gradient",
                 equivalence="on ReLU networks the ε-rule (Captum backend, the default for plain feed-forward "
                             "networks such as VGG) gives exactly Input×Gradient as ε → 0 (Ancona et al. 2018, "
                             "arXiv:1711.06104; default ε = 1e-9), so their stored maps agree up to float error")
def lrp(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Layer-wise relevance propagation, starting from ``R = f_t(x)`` at the target logit.
    Captum backend: the epsilon rule on every layer (Captum's default ``LRP``). Zennit backend: a
    composite (default EpsilonPlusFlat: flat rule on the first layer, z+ on convolutions, epsilon on
    dense layers, Norm on sums/pooling) on the canonical graph, where BatchNorm is folded into the
    preceding convolution and residual additions are explicit ``Sum`` modules (the canonizers'
    work, done graph-aware). A model's input normalisation (``models.inputs.Normalize``) passes
    relevance through unchanged (Captum's ``IdentityRule``, Zennit's ``Pass``): an elementwise
    bijection moves each pixel's relevance from the normalised to the [0, 1] image unchanged."""
    _need_traced(ctx, "lrp")
    backend = p["backend"]
    if backend == "auto":
        backend = "zennit" if ctx.prepared.has_merge else "captum"
    if backend == "captum" and ctx.prepared.has_merge:
        raise UnsupportedError(
            "Captum's LRP cannot propagate relevance through skip or concatenation merges "
            "(ResNet, DenseNet, Inception); use --param backend=zennit (or auto)"
        )
    t = ctx.target_or_predicted(x, target)
    xr = x.clone().requires_grad_(True)
    if backend == "captum":
        # lazy: captum takes ~1.3 s to import
        from captum.attr import LRP
        from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES
        from captum.attr._utils.lrp_rules import EpsilonRule, IdentityRule

        for module in ctx.model.modules():  # the epsilon rule (with our epsilon) on every rule layer
            if type(module) in SUPPORTED_LAYERS_WITH_RULES:
                module.rule = EpsilonRule(epsilon=p["epsilon"])  # type: ignore[assignment]
            elif isinstance(module, Normalize):  # input normalisation: relevance passes through unchanged
                module.rule = IdentityRule()  # type: ignore[assignment]
        try:
            attr = LRP(ctx.model).attribute(xr, target=t)
        except TypeError as exc:  # a layer type Captum has no rule for
            raise UnsupportedError(f"Captum's LRP cannot handle this model ({exc}); use --param backend=zennit") from None
        finally:
            for module in ctx.model.modules():
                for attr_name in ("rule", "activations"):
                    if attr_name in module.__dict__:
                        delattr(module, attr_name)
        return attr.detach(), t
    # lazy: zennit takes ~2 s to import; only LRP uses it
    from zennit.attribution import Gradient
    from zennit.composites import COMPOSITES

    # Canonizers: BatchNorm folding and explicit Sum merges are already in the canonical graph
    # (see canonical.py: graph-aware, unlike SequentialMergeBatchNorm which breaks on DenseNet).
    kwargs: dict[str, Any] = {}
    if p["composite"].startswith("epsilon"):
        kwargs["epsilon"] = max(p["epsilon"], 1e-12)
    from zennit.rules import Pass  # lazy: zennit takes ~2 s to import; only LRP uses it

    # the input normalisation (an elementwise bijection) passes relevance through unchanged
    composite = COMPOSITES[p["composite"]](layer_map=[(Normalize, Pass())], **kwargs)

    def output_relevance(out: Tensor) -> Tensor:
        return out * F.one_hot(t, out.shape[1]).to(out.dtype)

    with Gradient(model=ctx.model, composite=composite) as attributor:
        _out, attr = attributor(xr, output_relevance)
    return attr.detach(), t


@register_method("deconvolution", title="Deconvolution", params=POST, group="propagation", library="captum",
                 needs=HOOKS,
                 paper="Zeiler & Fergus 2014, arXiv:1311.2901")
def deconvolution(ctx: MethodContext, x: Tensor, target: Tensor | None,
                  p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """DeconvNet: back-propagation where each ReLU passes ``max(grad, 0)`` regardless of its input
    (Captum ``Deconvolution``, hooks every ReLU module)."""
    from captum.attr import Deconvolution  # lazy: captum takes ~1.3 s to import

    _need_traced(ctx, "deconvolution")
    return _one_pass(ctx, Deconvolution, x, target)


@register_method("guided_backprop", title="Guided Backprop", params=POST, group="propagation", library="captum",
                 needs=HOOKS,
                 paper="Springenberg et al. 2015, arXiv:1412.6806")
def guided_backprop(ctx: MethodContext, x: Tensor, target: Tensor | None,
                    p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Guided backpropagation: the gradient through each ReLU is kept only where both the forward
    input and the backward gradient are positive (Captum ``GuidedBackprop``)."""
    from captum.attr import GuidedBackprop  # lazy: captum takes ~1.3 s to import

    _need_traced(ctx, "guided_backprop")
    return _one_pass(ctx, GuidedBackprop, x, target)


# ------------------------------------------------------------------------------------------
# the chest X-ray study's CAMs (Elangovan & Ting), through pytorch-grad-cam
# ------------------------------------------------------------------------------------------
def _cam(ctx: MethodContext, cam_cls: type, x: Tensor, target: Tensor | None,
         p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    # lazy: pytorch-grad-cam takes ~4.5 s to import
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = ctx.prepared.cam_layer
    if layer is None:
        raise UnsupportedError("this model has no convolutional layer to compute a CAM on; use a gradient method")
    cls = cam_cls if p["upsample"] == "bilinear" else _layer_resolution(cam_cls)
    # Parameters are frozen in the canonical copy: the input carries requires_grad so the CAM
    # layer's output is part of the autograd graph (its gradient is what CAMs read).
    xr = x.clone().requires_grad_(True)
    targets = None if target is None else [ClassifierOutputTarget(int(k)) for k in target.tolist()]
    cam = cls(model=ctx.model, target_layers=[layer], reshape_transform=ctx.cam_reshape)
    try:
        maps = cam(input_tensor=xr, targets=targets)
        used = cam.outputs.detach().argmax(dim=1) if target is None else target
    finally:
        cam.activations_and_grads.release()
    out = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).to(x.device)
    if out.shape[-2:] != x.shape[-2:]:  # nearest: maps come at the layer's resolution
        out = F.interpolate(out[:, None], size=x.shape[-2:], mode="nearest")[:, 0]
    return out, used.to(x.device)


def _layer_resolution(cam_cls: type) -> type:
    """A subclass of a pytorch-grad-cam class that keeps maps at the CAM layer's resolution
    (``scale_cam_image`` with no target size: min-max normalised only)."""

    class AtLayerResolution(cam_cls):  # type: ignore[misc, valid-type]
        def get_target_width_height(self, input_tensor: Tensor) -> None:  # type: ignore[override]
            return None

    return AtLayerResolution


@register_method("gradcam", title="Grad-CAM", params=CAM, group="cam", library="pytorch-grad-cam",
                 model_kind="cam", output="cam", needs=CAM_LAYER, paper="Selvaraju et al. 2017, arXiv:1610.02391")
def gradcam(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``ReLU(sum_k w_k A^k)`` with ``w_k = mean_ij d f_t / d A^k_ij`` on the architecture's CAM layer
    (pytorch-grad-cam ``GradCAM``), upsampled to the input and min-max normalised to [0, 1]."""
    from pytorch_grad_cam import GradCAM  # lazy: pytorch-grad-cam takes ~4.5 s to import

    return _cam(ctx, GradCAM, x, target, p)


@register_method("gradcam_plus_plus", title="Grad-CAM++", params=CAM, group="cam", library="pytorch-grad-cam",
                 model_kind="cam", output="cam", needs=CAM_LAYER, paper="Chattopadhay et al. 2018, arXiv:1710.11063")
def gradcam_plus_plus(ctx: MethodContext, x: Tensor, target: Tensor | None,
                      p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Grad-CAM with channel weights ``w_k = sum_ij alpha^k_ij ReLU(d f_t / d A^k_ij)``,
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` (eq. 19; pytorch-grad-cam ``GradCAMPlusPlus``)."""
    from pytorch_grad_cam import GradCAMPlusPlus  # lazy: pytorch-grad-cam takes ~4.5 s to import

    return _cam(ctx, GradCAMPlusPlus, x, target, p)


@register_method("layercam", title="LayerCAM", params=CAM, group="cam", library="pytorch-grad-cam",
                 model_kind="cam", output="cam", needs=CAM_LAYER, paper="Jiang et al. 2021, doi:10.1109/TIP.2021.3089943")
def layercam(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``ReLU(sum_k ReLU(d f_t / d A^k) * A^k)``: element-wise positive-gradient weighting on the CAM
    layer (pytorch-grad-cam ``LayerCAM``)."""
    from pytorch_grad_cam import LayerCAM  # lazy: pytorch-grad-cam takes ~4.5 s to import

    return _cam(ctx, LayerCAM, x, target, p)


# ------------------------------------------------------------------------------------------
# extras
# ------------------------------------------------------------------------------------------
@register_method("input_x_gradient", title="Input x Gradient", params=POST, group="gradient", library="captum",
                 paper="Shrikumar et al. 2016, arXiv:1605.01713")
def input_x_gradient(ctx: MethodContext, x: Tensor, target: Tensor | None,
                     p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``a = x * d f_t / d x`` (Captum ``InputXGradient``)."""
    from captum.attr import InputXGradient  # lazy: captum takes ~1.3 s to import

    return _one_pass(ctx, InputXGradient, x, target)


@register_method("smoothgrad", title="SmoothGrad",
                 params=(Param("n_samples", int, 20, "noisy copies per image", minimum=1),
                         Param("stdevs", float, 0.15, "noise std (absolute; 0.15 = 15% of a [0,1] image)",
                               minimum=0.0),
                         SEED, IBS, *POST),
                 group="gradient", library="captum", deterministic=False,
                 paper="Smilkov et al. 2017, arXiv:1706.03825")
def smoothgrad(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``a = mean_n d f_t(x + eps_n) / d x``, ``eps_n ~ N(0, stdevs^2)`` (Captum ``NoiseTunnel`` over
    ``Saliency``, signed gradients averaged, then the ``sign`` post-processing)."""
    from captum.attr import NoiseTunnel, Saliency  # lazy: captum takes ~1.3 s to import

    t = ctx.target_or_predicted(x, target)
    per_call = max(1, ctx.internal_batch(p) // x.shape[0])
    with seeded(p["seed"]):
        attr = NoiseTunnel(Saliency(ctx.model)).attribute(
            x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=p["n_samples"],
            nt_samples_batch_size=per_call, stdevs=p["stdevs"], target=t, abs=False,
        )
    return attr.detach(), t


@register_method("occlusion", title="Occlusion",
                 params=(Param("window", int, 16, "side of the square occluding patch (pixels)", minimum=1),
                         Param("stride", int, 8, "step between patches (pixels)", minimum=1),
                         *BASELINE, IBS, *POST),
                 group="perturbation", library="captum", paper="Zeiler & Fergus 2014, arXiv:1311.2901")
def occlusion(ctx: MethodContext, x: Tensor, target: Tensor | None, p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Output drop ``f_t(x) - f_t(x with patch replaced by the baseline)``, averaged over the patches
    covering each pixel (Captum ``Occlusion``; perturbations batched ``internal_batch_size`` rows
    per forward pass)."""
    from captum.attr import Occlusion  # lazy: captum takes ~1.3 s to import

    c, h, w = x.shape[1:]
    if p["window"] > min(h, w):
        raise UnsupportedError(f"occlusion window {p['window']} is larger than the image ({h}x{w}); "
                               "use a smaller --param window=")
    t = ctx.target_or_predicted(x, target)
    with torch.no_grad():
        attr = Occlusion(ctx.model).attribute(
            x, sliding_window_shapes=(c, p["window"], p["window"]), strides=(c, p["stride"], p["stride"]),
            baselines=ctx.baseline(x, p), target=t,
            perturbations_per_eval=max(1, ctx.internal_batch(p) // x.shape[0]),
        )
    return attr.detach(), t


def _need_traced(ctx: MethodContext, method: str) -> None:
    if not ctx.prepared.traced:
        note = "; ".join(ctx.prepared.notes)
        raise UnsupportedError(f"{method} needs a canonical module graph but {note}; use saliency, "
                               "integrated_gradients or a CAM method for this model")


# ------------------------------------------------------------------------------------------
# transformers
# ------------------------------------------------------------------------------------------
@register_method("attention_rollout", title="Attention Rollout",
                 params=(Param("head_fusion", str, "mean", "how the heads' attention is combined per layer: mean "
                               "(Abnar & Zuidema), max or min (jacobgil's vit-explain)",
                               choices=("mean", "max", "min")),
                         Param("discard_ratio", float, 0.0, "share of the lowest fused attention weights set to 0 "
                               "per layer before the rollout (vit-explain; 0 = the paper)", minimum=0.0, maximum=0.99),
                         *CAM),
                 group="attention", library="xaudit", model_kind="attention", output="cam", needs=ATTENTION,
                 paper="Abnar & Zuidema 2020, arXiv:2005.00928")
def attention_rollout(ctx: MethodContext, x: Tensor, target: Tensor | None,
                      p: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Attention flowing from each patch into the class token through all layers:
    ``R = Ã_L ... Ã_1`` with ``Ã_l = 0.5 I + 0.5 mean_heads(A_l)`` (the residual connection), the
    class token's row over the patch grid, min-max normalised and upsampled like a CAM. Reads the
    softmax weights of every attention module (fusion switched off in the prepared copy).
    Class-agnostic: the map is the same for every target; the target is recorded as usual."""
    from xai_core.attribution.rollout import class_token_map, rollout, to_image

    layers = ctx.prepared.attention_layers
    if not layers:
        raise UnsupportedError("this model has no attention layers; use a gradient or CAM method")
    weights: list[Tensor] = []
    handles = [layer.attn_drop.register_forward_hook(lambda _m, _i, out: weights.append(out.detach()))
               for layer in layers]
    try:
        with torch.no_grad():
            logits = ctx.model(x)
    finally:
        for handle in handles:
            handle.remove()
    used = logits.argmax(dim=1) if target is None else target
    size = (int(x.shape[-2]), int(x.shape[-1]))
    grid = class_token_map(rollout(weights, p["head_fusion"], p["discard_ratio"]), size)
    return to_image(grid, size, p["upsample"]), used
