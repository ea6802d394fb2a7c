"""Capabilities computed from the architecture's description and the methods' requirements."""

from __future__ import annotations

from xai_core.attribution import capability_matrix

STUDY_METHODS = [
    "saliency", "integrated_gradients", "gradient_shap", "deeplift", "lrp", "deconvolution", "guided_backprop",
    "gradcam", "gradcam_plus_plus", "layercam", "input_x_gradient", "smoothgrad", "occlusion",
]
ARCHS = ["densenet121", "densenet201", "inception_v3", "resnet18", "resnet50", "resnet50v2", "vgg16", "vgg16_plain"]


def test_capability_matrix_of_the_registered_architectures_is_the_validated_table() -> None:
    # the table that was hand-kept in capabilities.py (every method runs on the eight registered
    # networks; re-checked by tests/integration/test_explain_architectures.py)
    expected = {arch: {method: True for method in STUDY_METHODS} for arch in ARCHS}
    assert capability_matrix() == expected
