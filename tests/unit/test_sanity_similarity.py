"""The sanity similarities against direct calls of their reference libraries (scipy, skimage)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity

from xai_core.errors import ShapeError
from xai_core.metrics.chance_maps import sobel_maps
from xai_core.metrics.sanity_similarity import (
    hog_cell,
    hog_correlation,
    hog_features,
    list_sanity_similarities,
    similarities,
    spearman_abs,
    ssim,
    unit_abs,
)


def _pairs(n: int = 4, h: int = 32, w: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((n, h, w)).astype(np.float32)
    b = (0.7 * a + rng.standard_normal((n, h, w))).astype(np.float32)
    a[0, :10] = 0.0  # ties
    b[1] = np.round(b[1])  # many ties
    return a, b


def test_spearman_of_abs_equals_scipy() -> None:
    a, b = _pairs()
    expected = [spearmanr(np.abs(x).ravel(), np.abs(y).ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(spearman_abs(a, b), expected, rtol=1e-12)
    np.testing.assert_allclose(spearman_abs(a, -a), 1.0)  # |map|: the sign does not count


def test_ssim_equals_skimage_on_maps_scaled_to_their_maximum() -> None:
    a, b = _pairs()
    x, y = unit_abs(a), unit_abs(b)
    assert x.max() == 1.0 and np.allclose(x.reshape(4, -1).max(1), 1.0)
    expected = [structural_similarity(p, q, data_range=1.0) for p, q in zip(x, y)]
    np.testing.assert_allclose(ssim(a, b), expected, rtol=1e-10)
    np.testing.assert_allclose(ssim(a, 3.0 * a), 1.0)  # scaling a map changes nothing


def test_hog_equals_skimage_features_and_their_correlation() -> None:
    a, b = _pairs()
    x, y = unit_abs(a), unit_abs(b)
    ref = np.stack([hog(m) for m in x])
    ours = hog_features(x)
    assert ours.shape == ref.shape == (4, 2 * 3 * 3 * 3 * 9)  # 4x5 cells -> 2x3 blocks of 3x3 cells x 9 bins
    np.testing.assert_allclose(ours, ref, atol=1e-6)  # skimage sums cells in single precision
    expected = [np.corrcoef(hog(p), hog(q))[0, 1] for p, q in zip(x, y)]
    np.testing.assert_allclose(hog_correlation(a, b), expected, atol=1e-6)


def test_small_maps_use_smaller_hog_cells() -> None:
    a, b = _pairs(2, 12, 15)
    assert hog_cell(12, 15) == 4 and hog_cell(64, 64) == 8
    x, y = unit_abs(a), unit_abs(b)
    expected = [np.corrcoef(hog(p, pixels_per_cell=(4, 4)), hog(q, pixels_per_cell=(4, 4)))[0, 1] for p, q in zip(x, y)]
    np.testing.assert_allclose(hog_correlation(a, b), expected, atol=1e-6)


def test_constant_maps_and_shapes() -> None:
    a, _ = _pairs(2)
    zero = np.zeros_like(a)
    # a constant map against a structured one keeps nothing of it; two constant maps did not change
    np.testing.assert_array_equal(spearman_abs(zero, a), [0.0, 0.0])
    np.testing.assert_array_equal(hog_correlation(zero, zero), [1.0, 1.0])
    np.testing.assert_allclose(ssim(zero, zero), 1.0)
    with pytest.raises(ShapeError, match="differ in shape"):
        spearman_abs(a, a[:, :8])
    with pytest.raises(ShapeError, match="at least 7x7"):
        ssim(a[:, :5, :5], a[:, :5, :5])


def test_a_sobel_edge_map_compared_with_itself_is_identical_on_every_measure() -> None:
    images = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    edges = sobel_maps(images)
    values = similarities(edges, sobel_maps(images.copy()))
    assert list(values) == list_sanity_similarities() == ["sanity_spearman", "sanity_ssim", "sanity_hog"]
    for v in values.values():
        np.testing.assert_allclose(v, 1.0, atol=1e-12)
