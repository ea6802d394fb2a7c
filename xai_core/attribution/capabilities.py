"""Which attribution method works on which architecture, and why not where it does not.

The matrix is per architecture *family* (``models.get_architecture(arch).family``) and was
established by running every method on every registered architecture
(``tests/integration/test_explain_architectures.py`` re-checks it on each run):

- every family passes the canonicalisation (``torch.fx`` traces torchvision's VGG/ResNet/DenseNet/
  Inception and timm's ResNetV2), so the module-hooking methods (DeepLIFT, Guided Backprop,
  Deconvolution) work on all of them;
- LRP: Captum's ``LRP`` has no rule for additions/concatenations, so ``backend=auto`` uses it on
  VGG only (as in Oliveira et al.) and Zennit's composites with explicit ``Sum`` merges and the
  BatchNorm canonizer on ResNet, DenseNet and Inception; ``backend=captum`` on those raises
  :class:`~xai_core.errors.UnsupportedError`;
- CAMs run on the registered CAM layer (``ArchSpec.cam``).

``None`` for an unknown family: methods that only need gradients are supported, the rest are
reported with the reason.
"""

from __future__ import annotations

from xai_core.attribution.registry import get_method, list_methods
from xai_core.errors import UnsupportedError

# family -> method -> reason it is NOT supported (absent = supported)
_UNSUPPORTED: dict[str, dict[str, str]] = {
    "vgg": {},
    "resnet": {},
    "densenet": {},
    "inception": {},
}
_GENERIC_ONLY = {"saliency", "integrated_gradients", "gradient_shap", "input_x_gradient", "smoothgrad", "occlusion"}


def family_capabilities(family: str | None) -> dict[str, bool | str]:
    """``{method: True or reason}`` for an architecture family (``None``: unknown network)."""
    out: dict[str, bool | str] = {}
    table = _UNSUPPORTED.get(family or "")
    for name in list_methods():
        if table is not None:
            out[name] = table.get(name, True)
        elif name in _GENERIC_ONLY:
            out[name] = True
        else:
            out[name] = (f"{get_method(name).title} is only validated on the registered families "
                         f"(vgg, resnet, densenet, inception); pass arch= to explain()")
    return out


def capabilities(arch: str) -> dict[str, bool | str]:
    """``{method: True | "reason it is not supported"}`` for a registered architecture.

    Unknown ``arch`` raises :class:`~xai_core.errors.UnknownNameError` (listing the valid ones).
    """
    import models

    return family_capabilities(models.get_architecture(arch).family)


def check_supported(method: str, arch: str | None) -> None:
    """Raise :class:`UnsupportedError` when ``method`` is not supported on ``arch``."""
    get_method(method)
    if arch is None:
        return
    verdict = capabilities(arch)[method]
    if verdict is not True:
        raise UnsupportedError(f"{method} is not supported on {arch}: {verdict}")


def capability_matrix() -> dict[str, dict[str, bool | str]]:
    """``{arch: capabilities(arch)}`` for every registered architecture."""
    import models

    return {arch: capabilities(arch) for arch in models.list_architectures()}
