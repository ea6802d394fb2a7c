"""Architecture registry: builders plus what each network's "conv blocks", head and CAM layer are.

One registry, the way ``torchvision.models`` does it: ``@register(ArchSpec(...))`` adds a builder
with its metadata; :func:`build`, :func:`list_architectures` and :func:`get_architecture` read it.

Every network is split into exactly five **conv blocks** (first to last) plus a **head**:

============  ===============================================================================
arch          blocks (module names, first to last)                      head / CAM layer
============  ===============================================================================
vgg16         features[0:7], [7:14], [14:24], [24:34], [34:44]          classifier / features.42
              (torchvision vgg16_bn, cfg "D": 2,2,3,3,3 conv+BN+ReLU, each block ends with max-pool)
vgg16_plain   features[0:5], [5:10], [10:17], [17:24], [24:31]          classifier / features.29
              (torchvision vgg16 without BN: the paper's exact layer stack)
resnet18/50   stem (conv1,bn1,relu,maxpool), layer1, layer2, layer3,    fc / layer4
              layer4
resnet50v2    stem, stages.0, stages.1, stages.2, stages.3 + norm       head / norm
densenet*     stem (conv0..pool0), denseblock1+transition1,             classifier / features.relu5
              denseblock2+transition2, denseblock3+transition3,
              denseblock4+norm5+relu5
inception_v3  stem (Conv2d_1a..maxpool2), Mixed_5b-5d, Mixed_6a-6c,     fc / Mixed_7c
              Mixed_6d-6e, Mixed_7a-7c
densenet_mini as densenet (blocks of 2, 4, 6, 4 layers)                   classifier / features.relu5
resnetv2_mini as resnet50v2 (2 blocks per stage)                          head / norm
inception_mini stem, Mixed_5, Mixed_6, Mixed_7, Mixed_8 (2 modules each) fc / Mixed_8
vit_tiny      embed+blocks.0, blocks.1, blocks.2, blocks.3, blocks.4+norm  head / blocks.4.norm1
vit_base_     embed+blocks.0-3, blocks.4-5, 6-7, 8-9, blocks.10-11+norm   head / blocks.11.norm1
patch16       (timm VisionTransformer; ``embed`` = patch embedding, class token, positions)
============  ===============================================================================

The three ``*_mini`` networks are the drift study's families (Elangovan & Ting: DenseNet201,
ResNet50V2, InceptionV3) made small enough to fine-tune fully on a 2-core CPU: same building
blocks, fewer layers, channels scaled by ``width``, output stride 8.

Fine-tuning degree ``tl`` trains the head only, ``kconv`` (k = 1..4) the head and the last k
blocks, ``all`` every parameter (Oliveira et al. 2024, "1conv ... all"; Elangovan & Ting: TL then
full fine-tuning).

The CAM layer is the last convolutional stage's activation (the tensor global pooling reads),
i.e. Keras' ``block5_conv3``/``relu``/``post_relu``/``mixed10`` in the two studies. A ViT's is the
last block's ``norm1`` (the tokens entering the last attention, reshaped to the patch grid by
``cam_reshape``): the last block's output patch tokens carry no gradient (the head reads the
class token only).

What the attribution methods need to know about a network is part of its spec: how its branches
merge (``merges``: ``add`` for residual/skip connections, ``concat`` for dense/Inception
concatenations, ``multiply`` for gates), whether ``torch.fx`` can trace it (``traceable``), its CAM
layer (``cam``; ``None``: no convolutional stage to compute a CAM on) and its smallest input
(``min_input_size``); for transformers also their attention modules (``attention``), how CAM-layer
tokens become a grid (``cam_reshape``), whether they have ReLUs (``relu``) and the patch size
(``input_multiple``). :mod:`xai_core.attribution.capabilities` compares that with each method's
declared needs, so a new family registered here gets every method that can run on it.

Why ``vgg16`` carries batch normalisation: on the 128 px lesion benchmark the BN-free stack
(``vgg16_plain``) at width 0.125 stayed at chance (loss 0.693) for 8+ epochs from random
initialisation on the 2-core VM (bench/RESULTS.md, "No fine-tuning degree left chance level"); with BN it trains within the demo's
budget. ``vgg16_plain`` remains registered (ImageNet file ``vgg16-397923af.pth``) for fidelity.

All activations are made out-of-place (``inplace=False``) so forward/backward hooks and
attribution rules see unmodified tensors. No weights are ever downloaded here (``weights=None``);
ImageNet weights come from :mod:`models.pretraining`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.inception import BasicConv2d

from xai_core.errors import ConfigError, UnknownNameError, UnsupportedError
from xai_core.registry import DescribedEntry, Registry

DEGREES: tuple[str, ...] = ("tl", "1conv", "2conv", "3conv", "4conv", "all")
N_BLOCKS = 5
# how two branches of a network can merge: residual/skip additions, dense/Inception concatenations,
# multiplicative gates (squeeze-and-excitation, attention)
MERGES: tuple[str, ...] = ("add", "concat", "multiply")


@dataclass(frozen=True)
class ImageNetWeights:
    """Where the real ImageNet weights of an architecture come from (see models.pretraining)."""

    file: str  # file name expected in torch.hub.get_dir()/checkpoints/
    url: str  # where the user downloads it from
    library: str  # "torchvision" | "timm"
    preprocess: str = "imagenet"  # the input normalisation the weights expect (models.inputs.PREPROCESSING)


@dataclass(frozen=True)
class ArchSpec(DescribedEntry):
    """Metadata of one registered architecture.

    ``blocks`` holds, per conv block, the dotted module names that make it up (in forward order);
    ``head`` the names of the classifier modules; ``cam`` the CAM-target module name (``None``: the
    network has no convolutional stage for a CAM); ``first_conv`` the input convolution (adapted
    to ``in_chans``); ``merges`` how branches join in ``forward`` (subset of :data:`MERGES`) and
    ``traceable`` whether ``torch.fx`` traces it (no data-dependent control flow); transformers add
    ``attention`` (their attention modules), ``cam_reshape`` (CAM-layer tokens to a grid),
    ``relu=False`` (GELU) and ``input_multiple`` (the patch size): what the attribution methods'
    needs are checked against.
    """

    name: str
    family: str  # vgg | resnet | densenet | inception | any new family
    builder: Callable[[int, int, float], nn.Module] = field(repr=False)
    blocks: tuple[tuple[str, ...], ...]
    head: tuple[str, ...]
    cam: str | None
    first_conv: str
    min_input_size: int
    default_input_size: int
    supports_width: bool
    imagenet: ImageNetWeights | None
    description: str
    # callable(model) -> module mapping the last block's output to logits
    head_chain: Callable[[nn.Module], nn.Module] = field(repr=False, default=None)  # type: ignore[assignment]
    paper: str = ""
    merges: frozenset[str] = frozenset()  # "add" | "concat" | "multiply" merges of two branches
    traceable: bool = True  # torch.fx traces forward (module-hooking attribution methods need it)
    # transformers: attention modules (timm ``Attention``) in forward order (attention rollout reads them)
    attention: tuple[str, ...] = ()
    # callable(CAM layer output, input (H, W)) -> (B, C, h, w), for a CAM layer that outputs tokens
    cam_reshape: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] | None = field(repr=False, default=None)
    relu: bool = True  # ReLU non-linearities (Guided Backprop / Deconvolution modify their backward pass)
    input_multiple: int = 1  # image sides must be multiples of this (a ViT's patch size)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.merges) - set(MERGES))
        if unknown:
            raise ConfigError(f"architecture {self.name}: unknown merge kind(s) {', '.join(unknown)}; "
                              f"use {', '.join(MERGES)}")
        if len(self.blocks) != N_BLOCKS:
            raise ConfigError(f"architecture {self.name} declares {len(self.blocks)} conv blocks; "
                              f"fine-tuning degrees need exactly {N_BLOCKS}")

    def check_input_size(self, height: int, width: int | None = None) -> None:
        """ConfigError (one line) when a ``height`` x ``width`` image does not suit this network:
        smaller than ``min_input_size`` or (ViT) a side that is not a multiple of the patch size."""
        width = height if width is None else width
        if min(height, width) < self.min_input_size:
            raise ConfigError(f"{self.name} needs images of at least {self.min_input_size} px (got {height}x{width})")
        m = self.input_multiple
        if height % m or width % m:
            raise ConfigError(f"{self.name}: the patch size {m} does not divide the image size {height}x{width}; "
                              f"use images whose sides are multiples of {m} (e.g. {max(m, height // m * m)} px)")

    # --- views on a built model -------------------------------------------------------------
    def conv_blocks(self, model: nn.Module) -> list[nn.Module]:
        """The five conv blocks of ``model`` in forward order (each an ``nn.Sequential`` view
        sharing the model's modules)."""
        return [nn.Sequential(*[model.get_submodule(n) for n in names]) for names in self.blocks]

    def cam_layer(self, model: nn.Module) -> nn.Module:
        """The penultimate convolutional layer (CAM target): last conv stage's activation."""
        if self.cam is None:
            raise UnsupportedError(f"architecture {self.name} has no CAM layer; use a gradient method")
        return model.get_submodule(self.cam)

    def head_modules(self, model: nn.Module) -> list[nn.Module]:
        return [model.get_submodule(n) for n in self.head]

    def chain(self, model: nn.Module) -> list[nn.Module]:
        """``[block1, ..., block5, head]`` whose composition equals ``model.forward`` (eval mode).

        Used to cache the outputs of frozen blocks once and train only the rest.
        """
        return [*self.conv_blocks(model), self.head_chain(model)]


ARCHITECTURES: Registry[ArchSpec] = Registry("architecture", sort=True)


def register(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to the registry (a name registered twice raises ConfigError)."""
    return ARCHITECTURES.add(spec)


def unregister(arch: str) -> ArchSpec:
    """Remove ``arch`` from the registry and return its spec (a family registered for a while,
    e.g. by a test); unknown names raise :class:`UnknownNameError`."""
    return ARCHITECTURES.unregister(arch)


def list_architectures() -> list[str]:
    """Registered architecture names, sorted."""
    return ARCHITECTURES.list()


def get_architecture(arch: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``arch``; unknown names raise :class:`UnknownNameError`."""
    return ARCHITECTURES.get(arch)


def _no_inplace(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False  # type: ignore[attr-defined]
    return model


def build(arch: str, num_classes: int, in_chans: int = 1, width: float = 1.0) -> nn.Module:
    """A freshly initialised ``arch`` network for ``num_classes`` classes and ``in_chans`` input
    channels (1 for the MRI benchmarks, 3 for RGB). ``width`` scales VGG's channel counts."""
    spec = get_architecture(arch)
    if int(num_classes) < 2:
        raise ConfigError(f"num_classes must be at least 2 (got {num_classes}); a classifier needs two classes")
    if int(in_chans) not in (1, 3):
        raise ConfigError(f"in_chans must be 1 or 3 (got {in_chans})")
    if not (0.0 < float(width) <= 4.0):
        raise ConfigError(f"width must be in (0, 4] (got {width})")
    if not spec.supports_width and float(width) != 1.0:
        scaled = ", ".join(a for a in list_architectures() if get_architecture(a).supports_width)
        raise UnsupportedError(f"architecture {arch} has no width multiplier; use --width 1.0 (these scale: {scaled})")
    model = spec.builder(int(num_classes), int(in_chans), float(width))
    return _no_inplace(model)


def _set_requires_grad(modules: Sequence[nn.Module], flag: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(flag)


def trainable_blocks(degree: str) -> int:
    """Number of trainable conv blocks (counted from the last) for ``degree``."""
    if degree not in DEGREES:
        raise UnknownNameError(f"unknown fine-tuning degree {degree!r}; choose one of {', '.join(DEGREES)}")
    if degree == "tl":
        return 0
    if degree == "all":
        return N_BLOCKS
    return int(degree[0])


def frozen_blocks(degree: str) -> int:
    """Number of leading conv blocks that ``degree`` freezes."""
    return N_BLOCKS - trainable_blocks(degree)


def freeze_for_degree(model: nn.Module, arch: str, degree: str) -> nn.Module:
    """Set ``requires_grad``: head always trainable, plus the last k blocks (``kconv``), none
    (``tl``) or everything (``all``). Returns ``model``."""
    spec = get_architecture(arch)
    k = trainable_blocks(degree)
    if degree == "all":
        _set_requires_grad([model], True)
        return model
    _set_requires_grad([model], False)
    _set_requires_grad(spec.head_modules(model), True)
    blocks = spec.conv_blocks(model)
    if k:
        _set_requires_grad(blocks[N_BLOCKS - k :], True)
    return model


def set_train_mode(model: nn.Module, arch: str, degree: str) -> nn.Module:
    """``model.train()`` but frozen blocks stay in eval mode (BatchNorm statistics untouched)."""
    spec = get_architecture(arch)
    model.train()
    n_frozen = frozen_blocks(degree)
    for block in spec.conv_blocks(model)[:n_frozen]:
        block.eval()
    return model


# ------------------------------------------------------------------------------------------
# VGG-16
# ------------------------------------------------------------------------------------------
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")  # fmt: skip


class VGG16(nn.Module):
    """torchvision's VGG-16 feature layout (``vgg16_bn`` with ``batch_norm=True``, ``vgg16``
    without; ``features`` indices identical to torchvision's, so ImageNet weights load at width
    1.0) with a size-agnostic head: global average pooling, then
    ``Flatten -> Linear(c5, h) -> ReLU -> Dropout -> Linear(h, classes)``, h = max(32, 512*width)."""

    def __init__(self, num_classes: int, in_chans: int = 1, width: float = 1.0, batch_norm: bool = True,
                 dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = max(4, int(round(int(v) * width)))
                layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=False))
                channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = max(32, int(round(512 * width)))
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=False),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=5**0.5)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def _vgg_blocks(batch_norm: bool) -> tuple[tuple[str, ...], ...]:
    """Module names of the five blocks: (conv[, bn], relu) per conv, then the block's max-pool."""
    per_conv = 3 if batch_norm else 2
    blocks: list[tuple[str, ...]] = []
    current: list[str] = []
    index = 0
    for v in VGG16_CFG:
        if v == "M":
            current.append(f"features.{index}")
            index += 1
            blocks.append(tuple(current))
            current = []
        else:
            current += [f"features.{index + j}" for j in range(per_conv)]
            index += per_conv
    return tuple(blocks)


for _name, _bn, _file, _cam, _desc in (
    ("vgg16", True, "vgg16_bn-6c64b313.pth", "features.42",
     "VGG-16 (Simonyan & Zisserman 2015) with batch normalisation (torchvision vgg16_bn layout); width multiplier"),
    ("vgg16_plain", False, "vgg16-397923af.pth", "features.29",
     "VGG-16 without batch normalisation (torchvision vgg16 / Keras VGG16 layer stack of Oliveira et al. 2024)"),
):
    register(
        ArchSpec(
            name=_name,
            family="vgg",
            builder=(lambda bn: (lambda c, i, w: VGG16(c, i, w, batch_norm=bn)))(_bn),
            blocks=_vgg_blocks(_bn),
            head=("classifier",),
            cam=_cam,
            first_conv="features.0",
            min_input_size=32,
            default_input_size=224,
            supports_width=True,
            imagenet=ImageNetWeights(_file, f"https://download.pytorch.org/models/{_file}", "torchvision"),
            description=_desc,
            head_chain=lambda m: nn.Sequential(m.avgpool, m.classifier),
        )
    )


# ------------------------------------------------------------------------------------------
# ResNet (torchvision)
# ------------------------------------------------------------------------------------------
def _adapt_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    if conv.in_channels == in_chans:
        return conv
    return nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                     bias=conv.bias is not None)


def _resnet(name: str) -> Callable[[int, int, float], nn.Module]:
    def builder(num_classes: int, in_chans: int, _width: float) -> nn.Module:
        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        model.conv1 = _adapt_conv(model.conv1, in_chans)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        return model

    return builder


def _register_torchvision(names_files: tuple[tuple[str, str], ...], builder: Callable[[str], Callable[..., nn.Module]],
                          paper: str, **spec: object) -> None:
    """Register torchvision networks of one family: size-agnostic at 224 px by default, at least
    32 px, ImageNet weights from download.pytorch.org; ``spec`` holds the family's layout."""
    for name, file in names_files:
        register(ArchSpec(
            name=name, builder=builder(name), min_input_size=32, default_input_size=224, supports_width=False,
            imagenet=ImageNetWeights(file, f"https://download.pytorch.org/models/{file}", "torchvision"),
            description=f"torchvision {name} ({paper})", **spec,  # type: ignore[arg-type]
        ))


_register_torchvision(
    (("resnet18", "resnet18-f37072fd.pth"), ("resnet50", "resnet50-0676ba61.pth")), _resnet, "He et al. 2016",
    family="resnet", blocks=(("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
    head=("fc",), cam="layer4", first_conv="conv1", merges=frozenset({"add"}),
    head_chain=lambda m: nn.Sequential(m.avgpool, nn.Flatten(1), m.fc),
)


# ------------------------------------------------------------------------------------------
# ResNet50-V2 (timm resnetv2_50, pre-activation)
# ------------------------------------------------------------------------------------------
def _resnetv2(num_classes: int, in_chans: int, _width: float) -> nn.Module:
    import timm  # lazy: timm takes ~2 s to import; only resnet50v2 uses it

    return timm.create_model("resnetv2_50", pretrained=False, num_classes=num_classes, in_chans=in_chans)


register(
    ArchSpec(
        name="resnet50v2",
        family="resnet",
        builder=_resnetv2,
        blocks=(("stem",), ("stages.0",), ("stages.1",), ("stages.2",), ("stages.3", "norm")),
        head=("head",),
        cam="norm",
        first_conv="stem.conv",
        min_input_size=32,
        default_input_size=224,
        supports_width=False,
        imagenet=ImageNetWeights(
            "resnetv2_50.a1h_in1k.safetensors",
            "https://huggingface.co/timm/resnetv2_50.a1h_in1k/resolve/main/model.safetensors",
            "timm",
            "inception",  # timm's pretrained_cfg: mean = std = (0.5, 0.5, 0.5)
        ),
        description="timm resnetv2_50 (He et al. 2016, pre-activation), as ResNet50V2 in Elangovan & Ting",
        head_chain=lambda m: m.head,
        merges=frozenset({"add"}),
    )
)


# ------------------------------------------------------------------------------------------
# DenseNet (torchvision), with the final ReLU as a module (CAM target, hook-friendly)
# ------------------------------------------------------------------------------------------
class DenseNetX(torchvision.models.DenseNet):
    """torchvision DenseNet whose final ReLU is the module ``features.relu5`` (no functional
    in-place ReLU in ``forward``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(out, 1))


def _densenet(name: str) -> Callable[[int, int, float], nn.Module]:
    def builder(num_classes: int, in_chans: int, _width: float) -> nn.Module:
        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        model.__class__ = DenseNetX
        model.features.add_module("relu5", nn.ReLU(inplace=False))
        model.features.conv0 = _adapt_conv(model.features.conv0, in_chans)
        nn.init.kaiming_normal_(model.features.conv0.weight)
        return model

    return builder


_DENSE_BLOCKS = (
    ("features.conv0", "features.norm0", "features.relu0", "features.pool0"),
    ("features.denseblock1", "features.transition1"),
    ("features.denseblock2", "features.transition2"),
    ("features.denseblock3", "features.transition3"),
    ("features.denseblock4", "features.norm5", "features.relu5"),
)
_register_torchvision(
    (("densenet121", "densenet121-a639ec97.pth"), ("densenet201", "densenet201-c1103571.pth")), _densenet,
    "Huang et al. 2017", family="densenet", blocks=_DENSE_BLOCKS, head=("classifier",), cam="features.relu5",
    first_conv="features.conv0", merges=frozenset({"concat"}),
    head_chain=lambda m: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), m.classifier),
)


# ------------------------------------------------------------------------------------------
# Inception-v3 (torchvision; no auxiliary head, no ImageNet input transform)
# ------------------------------------------------------------------------------------------
def _inception(num_classes: int, in_chans: int, _width: float) -> nn.Module:
    model = torchvision.models.inception_v3(
        weights=None, num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True
    )
    if in_chans != 3:
        model.Conv2d_1a_3x3 = BasicConv2d(in_chans, 32, kernel_size=3, stride=2)
    return model


register(
    ArchSpec(
        name="inception_v3",
        family="inception",
        builder=_inception,
        blocks=(
            ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
             "maxpool2"),
            ("Mixed_5b", "Mixed_5c", "Mixed_5d"),
            ("Mixed_6a", "Mixed_6b", "Mixed_6c"),
            ("Mixed_6d", "Mixed_6e"),
            ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
        ),
        head=("fc",),
        cam="Mixed_7c",
        first_conv="Conv2d_1a_3x3.conv",
        min_input_size=75,
        default_input_size=299,
        supports_width=False,
        imagenet=ImageNetWeights("inception_v3_google-0cc3c7bd.pth",
                                 "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
                                 "torchvision", "inception"),  # torchvision's transform_input: (x - 0.5) / 0.5
        description="torchvision inception_v3 (Szegedy et al. 2016), no auxiliary classifier",
        head_chain=lambda m: nn.Sequential(m.avgpool, m.dropout, nn.Flatten(1), m.fc),
        merges=frozenset({"concat"}),
    )
)


# ------------------------------------------------------------------------------------------
# Compact members of the drift study's three families (Elangovan & Ting: DenseNet201,
# ResNet50V2, InceptionV3), small enough to fine-tune fully on a 2-core CPU at 64 px. Same
# building blocks as the full networks, fewer layers, channels scaled by ``width``, and an
# output stride of 8 (an 8×8 CAM at 64 px, as the full networks' 7×7 at 224 px) instead of 32.
# ------------------------------------------------------------------------------------------
def _scaled(channels: int, width: float, multiple: int = 4) -> int:
    """``channels * width`` rounded to a multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


def _densenet_mini(num_classes: int, in_chans: int, width: float) -> nn.Module:
    """torchvision DenseNet (growth 32·w, 64·w stem features, dense blocks of 2, 4, 6, 4 layers);
    the stem convolution is 3×3 stride 1 and the last transition does not pool (output stride 8)."""
    model = torchvision.models.DenseNet(growth_rate=_scaled(32, width), block_config=(2, 4, 6, 4),
                                        num_init_features=_scaled(64, width), bn_size=4, num_classes=num_classes)
    model.__class__ = DenseNetX
    model.features.add_module("relu5", nn.ReLU(inplace=False))
    model.features.conv0 = nn.Conv2d(in_chans, model.features.conv0.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.features.conv0.weight)
    model.features.transition3.pool = nn.Identity()
    return model


register(ArchSpec(
    name="densenet_mini", family="densenet", builder=_densenet_mini, blocks=_DENSE_BLOCKS, head=("classifier",),
    cam="features.relu5", first_conv="features.conv0", min_input_size=32, default_input_size=64, supports_width=True,
    imagenet=None, merges=frozenset({"concat"}),
    description="compact DenseNet (dense blocks 2-4-6-4, growth 32·width, output stride 8) for CPU-sized drift studies",
    head_chain=lambda m: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), m.classifier),
    paper="Huang et al. 2017",
))


def _resnetv2_mini(num_classes: int, in_chans: int, width: float) -> nn.Module:
    """timm ResNetV2 (pre-activation bottlenecks, two per stage, channels (256, 512, 1024, 2048)·w,
    plain convolutions and batch norm as timm's resnetv2_50), output stride 8 (the last two stages dilate instead of striding)."""
    import timm.layers  # lazy, as for resnet50v2: timm takes ~2 s to import
    from timm.models.resnetv2 import ResNetV2

    return ResNetV2(layers=[2, 2, 2, 2], channels=tuple(_scaled(c, width, 8) for c in (256, 512, 1024, 2048)),
                    num_classes=num_classes, in_chans=in_chans, stem_chs=_scaled(64, width), output_stride=8,
                    conv_layer=timm.layers.create_conv2d, norm_layer=timm.layers.BatchNormAct2d)


register(ArchSpec(
    name="resnetv2_mini", family="resnet", builder=_resnetv2_mini,
    blocks=(("stem",), ("stages.0",), ("stages.1",), ("stages.2",), ("stages.3", "norm")), head=("head",), cam="norm",
    first_conv="stem.conv", min_input_size=32, default_input_size=64, supports_width=True, imagenet=None,
    merges=frozenset({"add"}), head_chain=lambda m: m.head, paper="He et al. 2016 (identity mappings)",
    description="compact ResNetV2 (pre-activation bottlenecks 2-2-2-2, channels 256..2048·width, output stride 8)",
))


class InceptionModule(nn.Module):
    """Four parallel branches concatenated (Szegedy et al. 2016, Inception-v3's "Mixed_5" module):
    1×1; 1×1→3×3; 1×1→3×3→3×3 (the factorised 5×5); 3×3 average pool→1×1."""

    def __init__(self, in_ch: int, c1: int, c3: int, c5: int, cp: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_ch, c1, kernel_size=1)
        self.branch3x3 = nn.Sequential(BasicConv2d(in_ch, c3, kernel_size=1), BasicConv2d(c3, c3, kernel_size=3, padding=1))
        self.branch5x5 = nn.Sequential(BasicConv2d(in_ch, c5, kernel_size=1), BasicConv2d(c5, c5, kernel_size=3, padding=1),
                                       BasicConv2d(c5, c5, kernel_size=3, padding=1))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), BasicConv2d(in_ch, cp, kernel_size=1))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], 1)


class InceptionMini(nn.Module):
    """Stem (3×3 convolutions, max-pool) then Mixed_5 (two modules at stride 2), Mixed_6 (reduce,
    two modules at stride 4), Mixed_7 (reduce, two modules at stride 8) and Mixed_8 (two
    modules, the CAM stage); global average pooling and a linear head. Branch widths scale with
    ``width`` from Inception-v3's 64/48/96/32 module."""

    def __init__(self, num_classes: int, in_chans: int = 1, width: float = 1.0) -> None:
        super().__init__()
        b = _scaled(64, width)
        self.stem = nn.Sequential(BasicConv2d(in_chans, b // 2, kernel_size=3, padding=1),
                                  BasicConv2d(b // 2, b, kernel_size=3, padding=1), nn.MaxPool2d(2))

        def stage(in_ch: int, scale: int, reduce: bool) -> tuple[nn.Sequential, int]:
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if reduce else []
            for _ in range(2):
                module = InceptionModule(in_ch, b * scale // 2, b * scale // 2, b * scale // 4, b * scale // 4)
                layers.append(module)
                in_ch = module.out_channels
            return nn.Sequential(*layers), in_ch

        self.Mixed_5, ch = stage(b, 1, False)
        self.Mixed_6, ch = stage(ch, 2, True)
        self.Mixed_7, ch = stage(ch, 4, True)
        self.Mixed_8, ch = stage(ch, 4, False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Mixed_8(self.Mixed_7(self.Mixed_6(self.Mixed_5(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


register(ArchSpec(
    name="inception_mini", family="inception", builder=lambda c, i, w: InceptionMini(c, i, w),
    blocks=(("stem",), ("Mixed_5",), ("Mixed_6",), ("Mixed_7",), ("Mixed_8",)), head=("fc",), cam="Mixed_8",
    first_conv="stem.0.conv", min_input_size=32, default_input_size=64, supports_width=True, imagenet=None,
    merges=frozenset({"concat"}), head_chain=lambda m: nn.Sequential(m.avgpool, nn.Flatten(1), m.fc),
    paper="Szegedy et al. 2016", description="compact Inception (Inception-v3 modules, 2 per stage, output stride 8)",
))


# ------------------------------------------------------------------------------------------
# Vision transformers (timm VisionTransformer: Dosovitskiy et al. 2021)
# ------------------------------------------------------------------------------------------
# A ViT is an ArchSpec like the CNNs: five "blocks" (token embedding + the first transformer
# blocks ... the last transformer blocks + final norm) and timm's linear head on the class token.
# Three fields describe what the attribution methods need: ``attention`` (the timm ``Attention``
# modules, read by attention rollout), ``cam_reshape`` (the CAM layer's tokens as a (B, C, h, w)
# grid, pytorch-grad-cam's ``reshape_transform``) and ``relu=False`` (GELU networks: no rectifier
# for Guided Backprop/Deconvolution to modify). ``input_multiple`` = the patch size: image sides
# must be multiples of it (:meth:`ArchSpec.check_input_size`).
def check_patch_grid(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``x`` unchanged when its height and width are multiples of ``patch``; else ConfigError.

    Wrapped for ``torch.fx`` (a leaf call in the traced graph), so the check runs on real shapes."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % patch or w % patch:
        raise ConfigError(f"the ViT patch size {patch} does not divide the image size {h}x{w}; "
                          f"use images whose sides are multiples of {patch} (e.g. {max(patch, h // patch * patch)} px)")
    return x


def grid_pos_embed(pos_embed: torch.Tensor, tokens: torch.Tensor, base_grid: tuple[int, int]) -> torch.Tensor:
    """The learnt position embedding (1, 1 + gh*gw, D) for the patch grid of ``tokens`` (B, h, w, D):
    unchanged on the grid it was learnt on, else resampled bicubically (timm's
    ``resample_abs_pos_embed``, the class token's entry kept). Wrapped for ``torch.fx``."""
    grid = (int(tokens.shape[1]), int(tokens.shape[2]))
    if grid == tuple(base_grid):
        return pos_embed
    from timm.layers import resample_abs_pos_embed  # lazy: timm takes ~2 s to import

    return resample_abs_pos_embed(pos_embed, new_size=list(grid), old_size=list(base_grid), num_prefix_tokens=1)


torch.fx.wrap("check_patch_grid")
torch.fx.wrap("grid_pos_embed")


class TokenEmbed(nn.Module):
    """Patch embedding, class token and position embedding of a timm ViT as one module (the
    first block's leading part): image (B, C, H, W) -> tokens (B, 1 + H/p * W/p, D), the class
    token first. Any image size whose sides are multiples of the patch size (the position
    embedding is resampled to the grid, as timm's ``dynamic_img_size``)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.patch_embed = vit.patch_embed  # timm PatchEmbed: Conv2d(p x p, stride p), NHWC output
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre
        self.patch = int(vit.patch_embed.patch_size[0])
        self.base_grid = tuple(int(g) for g in vit.patch_embed.grid_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(check_patch_grid(x, self.patch))  # (B, h, w, D)
        pos = grid_pos_embed(self.pos_embed, t, self.base_grid)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t.flatten(1, 2)], dim=1)
        return self.norm_pre(self.pos_drop(t + pos))


class ClassToken(nn.Module):
    """Tokens (B, N, D) -> the class token (B, D): timm's ``global_pool="token"``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class ViT(nn.Module):
    """timm's ``VisionTransformer`` (class token, learnt position embedding, pre-norm blocks,
    linear head) laid out as a chain: ``embed`` (:class:`TokenEmbed`) -> ``blocks`` -> ``norm``
    -> class token -> ``fc_norm`` -> ``head_drop`` -> ``head``; the same modules and weights as
    timm's model (ImageNet files load after :func:`vit_imagenet_keys`), the same output."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        if vit.cls_token is None or vit.global_pool != "token" or vit.reg_token is not None or vit.no_embed_class:
            raise ConfigError("only class-token ViTs (timm global_pool='token', no register tokens) are supported")
        self.embed = TokenEmbed(vit)
        self.blocks = vit.blocks
        self.norm = vit.norm
        self.pool = ClassToken()
        self.fc_norm = vit.fc_norm
        self.head_drop = vit.head_drop
        self.head = vit.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self.embed(x)))
        return self.head(self.head_drop(self.fc_norm(self.pool(x))))


_VIT_EMBED_KEYS = ("patch_embed.", "cls_token", "pos_embed")


def vit_imagenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ViT state dict (``patch_embed.*``, ``cls_token``, ``pos_embed`` at the top) with
    the names of :class:`ViT` (under ``embed.``); other names unchanged."""
    return {(f"embed.{k}" if k.startswith(_VIT_EMBED_KEYS) else k): v for k, v in state.items()}


def vit_tokens_to_grid(patch: int) -> Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]:
    """``(tokens (B, 1 + h*w, C), input (H, W)) -> (B, C, h, w)``: the class token dropped, the
    patch tokens in raster order reshaped to the H/p x W/p grid (a ViT's ``cam_reshape``)."""

    def reshape(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = int(size[0]) // patch, int(size[1]) // patch
        if tokens.ndim != 3 or tokens.shape[1] != 1 + h * w:
            raise UnsupportedError(f"expected (B, 1 + {h * w}, C) tokens for a {size[0]}x{size[1]} image with "
                                   f"patch {patch}; got {tuple(tokens.shape)}")
        return tokens[:, 1:].reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _vit(patch: int, embed: int, depth: int, heads: int, img_size: int) -> Callable[[int, int, float], nn.Module]:
    """Builder of a timm ViT (patch ``patch``, ``depth`` blocks, ``embed``·width dimensions); with
    ``heads`` = 0 the head count follows the width (embed/16 clipped to 2..4)."""

    def builder(num_classes: int, in_chans: int, width: float) -> nn.Module:
        from timm.models.vision_transformer import VisionTransformer  # lazy: timm takes ~2 s to import

        dim = _scaled(embed, width, 16) if heads == 0 else embed
        n_heads = heads or min(4, max(2, dim // 16))
        vit = VisionTransformer(img_size=img_size, patch_size=patch, in_chans=in_chans, num_classes=num_classes,
                                embed_dim=dim, depth=depth, num_heads=n_heads, global_pool="token",
                                dynamic_img_size=True)
        return ViT(vit)

    return builder


def _vit_blocks(depth: int) -> tuple[tuple[str, ...], ...]:
    """Five fine-tuning blocks over ``depth`` transformer blocks: the last four groups hold
    depth // 5 blocks each (the final norm with the last), the first group the embedding and the rest."""
    per = depth // N_BLOCKS
    first = depth - per * (N_BLOCKS - 1)
    names = [f"blocks.{i}" for i in range(depth)]
    groups = [("embed", *names[:first])]
    groups += [tuple(names[first + i * per: first + (i + 1) * per]) for i in range(N_BLOCKS - 1)]
    groups[-1] = (*groups[-1], "norm")
    return tuple(groups)


def _register_vit(name: str, patch: int, embed: int, depth: int, heads: int, img_size: int, *,
                  imagenet: ImageNetWeights | None, description: str) -> None:
    register(ArchSpec(
        name=name, family="vit", builder=_vit(patch, embed, depth, heads, img_size), blocks=_vit_blocks(depth),
        head=("head",), cam=f"blocks.{depth - 1}.norm1", first_conv="embed.patch_embed.proj",
        min_input_size=max(32, 2 * patch), default_input_size=img_size, supports_width=heads == 0,
        imagenet=imagenet, description=description, paper="Dosovitskiy et al. 2021, arXiv:2010.11929",
        head_chain=lambda m: nn.Sequential(m.pool, m.fc_norm, m.head_drop, m.head),
        merges=frozenset({"add", "concat", "multiply"}), traceable=True,
        attention=tuple(f"blocks.{i}.attn" for i in range(depth)), cam_reshape=vit_tokens_to_grid(patch),
        relu=False, input_multiple=patch,
    ))


_register_vit("vit_tiny", patch=8, embed=64, depth=5, heads=0, img_size=64, imagenet=None,
              description="compact ViT (patch 8, 5 blocks, 64·width dimensions, 2-4 heads) for CPU-sized studies")
_register_vit("vit_base_patch16", patch=16, embed=768, depth=12, heads=12, img_size=224,
              imagenet=ImageNetWeights(
                  "vit_base_patch16_224.augreg2_in21k_ft_in1k.safetensors",
                  "https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k/resolve/main/model.safetensors",
                  "timm", "inception"),  # timm's pretrained_cfg: mean = std = (0.5, 0.5, 0.5)
              description="timm vit_base_patch16_224 (ViT-B/16: 12 blocks, 768 dimensions, 12 heads)")
