"""Canonicalisation: turn a trained network into a graph every attribution rule can walk.

Propagation methods (DeepLift, LRP, Guided Backprop, Deconvolution) hook *modules*: they need each
non-linearity to be its own ``nn.ReLU`` module, used once, not in-place, and (LRP) every merge of
two branches to be an explicit module. Trained networks rarely look like that (torchvision's
ResNet reuses ``self.relu`` three times per block, Inception calls ``F.relu``, ...).

:func:`prepare` therefore works on a **deep copy** (the caller's model is never touched):

1. ``eval()``; parameters frozen (``requires_grad=False``: attribution needs input gradients only);
2. ``torch.fx`` trace (the CAM layer, if given, is kept as one leaf so its output is hookable);
3. functional ReLUs (``F.relu``, ``torch.relu``, ``x.relu()``, in-place variants) become fresh
   ``nn.ReLU`` modules, functional max/avg pooling becomes pooling modules;
4. a module called more than once is cloned per call site (no shared activation modules);
5. ``nn.Flatten`` modules become ``torch.flatten`` calls (Captum's LRP has no rule for them);
6. every ``inplace`` flag is switched off;
7. kind ``"lrp"``: Conv→BatchNorm pairs *connected in the graph* are folded
   (``torch.fx.experimental.optimization.fuse``; Zennit's ``MergeBatchNorm`` canonizer, but found
   from the data flow instead of the module registration order: Zennit's
   ``SequentialMergeBatchNorm`` pairs DenseNet's ``norm1`` of one dense layer with the previous
   layer's ``conv2`` and fails on the channel mismatch), and each tensor ``a + b`` becomes
   ``zennit.layer.Sum(stack([a, b]))`` so
   Zennit's ``Norm`` rule splits relevance between the residual branches (what
   ``zennit.torchvision.ResNetCanonizer`` does for torchvision's blocks, done here for any
   traced graph, including timm's ResNetV2).
   Kinds ``"grad"`` and ``"cam"`` keep the module structure and share the weights' storage with
   the original (a copy costs no memory and no time; see :func:`_copy`).
8. kind ``"attention"`` (attention rollout): no tracing, the copy keeps the transformer's modules,
   and each attention module computes its attention matrix explicitly (timm's ``fused_attn``
   switched off in the copy: ``F.scaled_dot_product_attention`` never materialises the weights)
   so a forward hook on its ``attn_drop`` reads the softmax weights (B, heads, N, N);
9. a model whose weights expect normalised inputs (``models.inputs``: ImageNet mean/std) gets its
   ``Normalize`` module in front (``Preprocessed``), so every method takes images in [0, 1] image
   space (grey replicated to the model's channels by the engine) and maps stay in image space.

Prepared models are cached per (model object, parameter versions, kind, device): preparing a
model a second time is free, and an optimiser step on the original (which bumps the parameters'
``_version`` counters) invalidates the cache.
"""

from __future__ import annotations

import copy
import operator
import weakref
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.fx.passes.shape_prop import ShapeProp

from models.inputs import first_conv_channels, model_input, preprocessed
from xai_core.errors import ConfigError

KINDS = ("grad", "lrp", "cam", "attention")

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, getattr(F, "relu_", F.relu), torch.nn.functional.relu}
_RELU_METHODS = {"relu", "relu_"}


@dataclass
class Prepared:
    """A canonical copy of a model and what was learnt about it while preparing it."""

    model: nn.Module
    kind: str
    traced: bool
    num_classes: int
    in_chans: int | None
    cam_layer: nn.Module | None = None
    has_merge: bool = False  # a tensor addition or concatenation (skip / dense connections)
    notes: list[str] = field(default_factory=list)
    attention_layers: list[nn.Module] = field(default_factory=list)  # kind "attention": unfused timm Attention modules


class _Tracer(fx.Tracer):
    """An fx tracer that keeps the named modules in ``leaves`` opaque."""

    def __init__(self, leaves: frozenset[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.leaves or super().is_leaf_module(m, module_qualified_name)


def _no_inplace(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False  # type: ignore[attr-defined]


def _fresh_name(gm: fx.GraphModule, base: str) -> str:
    base = base.replace(".", "_")
    existing = dict(gm.named_modules())
    i = 0
    while f"_xa_{base}_{i}" in existing:
        i += 1
    return f"_xa_{base}_{i}"


def _replace_with_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, base: str, arg: fx.Node) -> None:
    name = _fresh_name(gm, base)
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (arg,))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _arg(node: fx.Node, index: int, key: str, default: object) -> object:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(key, default)


def _functional_to_modules(gm: fx.GraphModule) -> None:
    """F.relu / x.relu() / F.max_pool2d / F.avg_pool2d / F.adaptive_avg_pool2d -> modules."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
            _replace_with_module(gm, node, nn.ReLU(), "relu", node.args[0])
        elif node.op == "call_method" and node.target in _RELU_METHODS:
            _replace_with_module(gm, node, nn.ReLU(), "relu", node.args[0])
        elif node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
            size = _arg(node, 1, "output_size", None)
            if isinstance(size, fx.Node):
                continue
            _replace_with_module(gm, node, nn.AdaptiveAvgPool2d(size), "avgpool", node.args[0])  # type: ignore[arg-type]
        elif node.op == "call_function" and node.target is F.avg_pool2d:
            params = [_arg(node, i, k, d) for i, k, d in
                      ((1, "kernel_size", None), (2, "stride", None), (3, "padding", 0),
                       (4, "ceil_mode", False), (5, "count_include_pad", True))]
            if any(isinstance(p, fx.Node) for p in params) or params[0] is None:
                continue
            _replace_with_module(gm, node, nn.AvgPool2d(*params), "avgpool", node.args[0])  # type: ignore[arg-type]
        elif node.op == "call_function" and node.target is F.max_pool2d:
            params = [_arg(node, i, k, d) for i, k, d in
                      ((1, "kernel_size", None), (2, "stride", None), (3, "padding", 0), (4, "dilation", 1),
                       (5, "ceil_mode", False))]
            if any(isinstance(p, fx.Node) for p in params) or params[0] is None or \
                    _arg(node, 6, "return_indices", False):
                continue
            _replace_with_module(gm, node, nn.MaxPool2d(params[0], params[1], params[2], params[3],  # type: ignore[arg-type]
                                                        ceil_mode=params[4]), "maxpool", node.args[0])  # type: ignore[arg-type]


def _unshare(gm: fx.GraphModule, leaves: frozenset[str]) -> int:
    """Clone every module that is called from more than one node; returns how many clones."""
    seen: set[str] = set()
    clones = 0
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        if node.target in seen and node.target not in leaves:
            module = gm.get_submodule(node.target)
            name = _fresh_name(gm, node.target)
            gm.add_submodule(name, copy.deepcopy(module))
            node.target = name
            clones += 1
        seen.add(node.target)
    return clones


def _flatten_modules(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and type(gm.get_submodule(node.target)) is nn.Flatten:
            module = gm.get_submodule(node.target)
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(torch.flatten, (node.args[0], module.start_dim, module.end_dim))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)


def _inplace_kwargs(gm: fx.GraphModule) -> None:
    for node in gm.graph.nodes:
        if node.op in ("call_function", "call_method") and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        if node.op == "call_function" and node.target is operator.iadd:
            node.target = operator.add


def _tensor_meta(node: object) -> tuple[int, ...] | None:
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _merges(gm: fx.GraphModule) -> list[fx.Node]:
    """Tensor + tensor additions of equal shape (residual merges)."""
    out = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2:
            a, b = (_tensor_meta(x) for x in node.args)
            if a is not None and a == b:
                out.append(node)
    return out


def _has_cat(gm: fx.GraphModule) -> bool:
    return any(n.op == "call_function" and n.target in (torch.cat, torch.concat) for n in gm.graph.nodes)


def _is_tensor_pair(node: fx.Node) -> bool:
    return len(node.args) == 2 and all(_tensor_meta(a) is not None for a in node.args)


_PRODUCTS = (operator.matmul, torch.matmul, torch.bmm, "matmul", "bmm")


def traced_merges(model: nn.Module, example: torch.Tensor) -> frozenset[str] | None:
    """How branches merge in ``model``'s traced graph (``add``, ``concat``, ``multiply`` of two
    tensors; attention's matrix products of two tensors count as ``multiply``), or ``None`` when
    ``torch.fx`` cannot trace it: what ``models.ArchSpec.merges`` and ``traceable`` declare,
    found from the data flow (used to check those declarations)."""
    work = _copy(model, share=True).eval()
    try:
        gm = fx.GraphModule(work, _Tracer(frozenset()).trace(work))
    except Exception:  # data-dependent control flow etc.
        return None
    ShapeProp(gm).propagate(example[:1].detach().float().cpu())
    found: set[str] = set()
    for node in gm.graph.nodes:
        if node.op not in ("call_function", "call_method"):
            continue
        if node.target in (operator.add, torch.add, "add") and _is_tensor_pair(node):
            found.add("add")
        elif node.target in (operator.mul, torch.mul, "mul") and _is_tensor_pair(node):
            found.add("multiply")
        elif node.target in _PRODUCTS and _is_tensor_pair(node):  # attention's query-key and weight-value products
            found.add("multiply")
        elif node.target is F.scaled_dot_product_attention:  # the same products, fused
            found.add("multiply")
        elif node.target in (torch.cat, torch.concat):
            found.add("concat")
    return frozenset(found)


def _adds_to_sum(gm: fx.GraphModule, adds: list[fx.Node]) -> None:
    from zennit.layer import Sum  # lazy: zennit takes ~2 s to import; only LRP uses it

    for node in adds:
        name = _fresh_name(gm, "sum")
        gm.add_submodule(name, Sum(dim=-1))
        with gm.graph.inserting_before(node):
            stacked = gm.graph.call_function(torch.stack, (list(node.args),), {"dim": -1})
            new = gm.graph.call_module(name, (stacked,))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)


def module_name(model: nn.Module, target: nn.Module) -> str | None:
    """The qualified name of ``target`` inside ``model`` (None when it is not a submodule)."""
    for name, module in model.named_modules():
        if module is target:
            return name
    return None


def last_conv_name(model: nn.Module) -> str | None:
    """Name of the last ``nn.Conv2d`` in registration order (CAM fallback for unknown archs)."""
    name = None
    for n, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            name = n
    return name


def _copy(model: nn.Module, share: bool) -> nn.Module:
    """A deep copy of ``model``; with ``share`` its parameters and buffers alias the original's
    storage (frozen ``nn.Parameter`` views, no copy of the weights: the attribution methods of the
    "grad" and "cam" kinds never write weights). LRP copies them: Captum's LRP restores the state
    dict in place after each call, which must not touch the caller's tensors."""
    memo: dict[int, object] = {}
    if share:
        for t in model.parameters():
            memo[id(t)] = nn.Parameter(t.detach(), requires_grad=False)
        for t in model.buffers():
            memo[id(t)] = t
    return copy.deepcopy(model, memo)


def _unfused_attention(model: nn.Module, example: torch.Tensor, names: tuple[str, ...]) -> Prepared:
    """Kind ``attention``: a weight-sharing copy whose attention modules ``names`` (timm
    ``Attention``: ``fused_attn`` flag, ``attn_drop`` applied to the softmax weights) compute the
    attention matrix explicitly."""
    work = _copy(model, share=True).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    layers = []
    for name in names:
        try:
            module = work.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"the model has no attention module {name!r}; check --arch") from None
        if not (hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module)):
            raise ConfigError(f"module {name!r} is not a timm Attention (fused_attn, attn_drop); check --arch")
        module.fused_attn = False
        layers.append(module)
    with torch.no_grad():
        out = work(example)
    return Prepared(work, "attention", False, int(out.shape[1]), first_conv_channels(work),
                    attention_layers=layers, notes=["attention computed explicitly (not fused) for its weights"])


def _canonicalise(model: nn.Module, kind: str, example: torch.Tensor, cam_name: str | None,
                  attention: tuple[str, ...] = ()) -> Prepared:
    if kind == "attention":
        return _unfused_attention(model, example, attention)
    work = _copy(model, share=kind != "lrp").eval()
    _no_inplace(work)
    for p in work.parameters():
        p.requires_grad_(False)
    in_chans = first_conv_channels(work)
    leaves = frozenset([cam_name] if (kind == "cam" and cam_name) else [])
    notes: list[str] = []
    try:
        tracer = _Tracer(leaves)
        graph = tracer.trace(work)
        gm = fx.GraphModule(tracer.root, graph, work.__class__.__name__)
    except Exception as exc:  # data-dependent control flow etc.: fall back to the plain copy
        with torch.no_grad():
            out = work(example)
        cam = work.get_submodule(cam_name) if cam_name else None
        return Prepared(work, kind, False, int(out.shape[1]), in_chans, cam, False,
                        [f"torch.fx could not trace the model ({type(exc).__name__}: {str(exc)[:120]})"])
    _functional_to_modules(gm)
    _flatten_modules(gm)
    _inplace_kwargs(gm)
    clones = _unshare(gm, leaves)
    if clones:
        notes.append(f"{clones} shared module call(s) cloned")
    gm.graph.lint()
    gm.recompile()
    if kind == "lrp":
        try:
            gm = fuse(gm, inplace=True, no_trace=True)
        except Exception as exc:  # pragma: no cover - fusion is an optimisation only
            notes.append(f"BatchNorm folding skipped ({exc})")
    ShapeProp(gm).propagate(example)
    adds = _merges(gm)
    has_merge = bool(adds) or _has_cat(gm)
    if kind == "lrp" and adds:
        _adds_to_sum(gm, adds)
        gm.graph.lint()
        gm.recompile()
    gm.delete_all_unused_submodules()
    _no_inplace(gm)
    for p in gm.parameters():
        p.requires_grad_(False)
    out_meta = _tensor_meta(next(n for n in gm.graph.nodes if n.op == "output").args[0])
    if out_meta is None:
        with torch.no_grad():
            out_meta = tuple(gm(example).shape)
    cam = gm.get_submodule(cam_name) if (kind == "cam" and cam_name) else None
    return Prepared(gm.eval(), kind, True, int(out_meta[1]), in_chans, cam, has_merge, notes)


# model -> {(kind, device, cam_name, preprocessing): (fingerprint, Prepared)}
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, str, str | None, str], tuple[tuple, Prepared]]]" = (
    weakref.WeakKeyDictionary()
)


def fingerprint(model: nn.Module) -> tuple:
    """Identity + version counters of every parameter and buffer (changes on any in-place update)."""
    return tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers()))


def prepare(model: nn.Module, kind: str, example: torch.Tensor, device: torch.device,
            cam_name: str | None = None, attention: tuple[str, ...] = ()) -> Prepared:
    """The canonical copy of ``model`` for ``kind`` on ``device`` (cached; ``model`` untouched).

    ``example`` is one input batch (any N) on the CPU, used to trace shapes; ``attention`` the
    attention modules' names (kind ``attention``).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown preparation kind {kind!r}; use one of {', '.join(KINDS)}")
    key = (kind, str(device), cam_name if kind == "cam" else ",".join(attention) if kind == "attention" else None,
           model_input(model).preprocess.name)
    per_model = _CACHE.setdefault(model, {})
    fp = fingerprint(model)
    hit = per_model.get(key)
    if hit is not None and hit[0] == fp:
        return hit[1]
    was_training = model.training
    try:
        prepared = _canonicalise(model, kind, example[:1].detach().float().cpu(), cam_name, tuple(attention))
    finally:
        model.train(was_training)
    # the input normalisation in front of the canonical graph (models.inputs: maps stay in image space)
    prepared.model = preprocessed(prepared.model, model).eval().to(device)
    per_model[key] = (fp, prepared)
    return prepared


def clear_cache() -> None:
    """Forget every prepared model."""
    _CACHE.clear()
