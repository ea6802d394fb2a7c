"""Drift metrics: hand cases (identity, shifted blob, IoU, Gini/entropy), scipy agreement, properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import pearsonr, spearmanr

from xai_core.errors import ConfigError, InvalidValueError, ShapeError
from xai_core.metrics import drift_keys, drift_metrics, gini, normalised_entropy

KEYS = drift_keys((10, 20))


def _blob(h: int, w: int, r: int, c: int, sigma: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_keys() -> None:
    assert KEYS == ["com_displacement", "peak_displacement", "iou_top10", "iou_top20",
                    "pearson", "spearman", "gini_change", "entropy_change"]


def test_identical_maps_have_zero_drift() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((5, 16, 16)).astype(np.float32)
    a[2] = np.round(a[2] * 3)  # ties
    d = drift_metrics(a, a.copy())
    assert set(d) == set(KEYS)
    for key in ("com_displacement", "peak_displacement", "gini_change", "entropy_change"):
        np.testing.assert_allclose(d[key], 0.0, atol=1e-12)
    for key in ("iou_top10", "iou_top20", "pearson", "spearman"):
        np.testing.assert_allclose(d[key], 1.0, atol=1e-6)


@pytest.mark.parametrize("shift", [1, 4, 9])
def test_blob_shift_gives_displacement_over_diagonal(shift: int) -> None:
    h = w = 48
    a = _blob(h, w, 20, 15)
    b = _blob(h, w, 20, 15 + shift)
    c = _blob(h, w, 20 + shift, 15 + shift)  # diagonal shift
    d = drift_metrics(np.stack([a, a]), np.stack([b, c]))
    diag = np.hypot(h - 1, w - 1)
    np.testing.assert_allclose(d["com_displacement"], [shift / diag, shift * np.sqrt(2) / diag], rtol=1e-4)
    np.testing.assert_allclose(d["peak_displacement"], [shift / diag, shift * np.sqrt(2) / diag], rtol=1e-9)
    np.testing.assert_allclose(d["gini_change"], 0.0, atol=1e-4)  # same shape, same concentration


def test_iou_hand_case() -> None:
    a = np.arange(20, dtype=np.float32).reshape(1, 4, 5)  # top-2 = pixels {19, 18}, top-4 = {16..19}
    b = a.copy()
    b[0, 3, 3] = -1.0  # pixel 18 drops out (|-1| = 1); pixel 0 becomes the 2nd largest
    b[0, 0, 0] = 18.5
    d = drift_metrics(a, b, top_percent=(10, 20))
    # top-2: {19,18} vs {19,0} -> 1/3 ; top-4: {16,17,18,19} vs {0,16,17,19} -> 3/5
    assert d["iou_top10"][0] == pytest.approx(1 / 3)
    assert d["iou_top20"][0] == pytest.approx(3 / 5)
    custom = drift_metrics(a, b, top_percent=(5,))
    assert "iou_top5" in custom and custom["iou_top5"][0] == pytest.approx(1.0)  # k = 1: pixel 19 both


def test_gini_and_entropy_hand_values() -> None:
    uniform = np.ones((1, 2, 2), np.float32)
    single = np.zeros((1, 2, 2), np.float32)
    single[0, 1, 0] = 5.0
    half = np.array([[[1, 1], [0, 0]]], np.float32)
    assert gini(uniform)[0] == pytest.approx(0.0)
    assert gini(single)[0] == pytest.approx(0.75)  # (2*4 - 4 - 1) / 4
    assert gini(half)[0] == pytest.approx(0.5)  # ((2*3-5) + (2*4-5)) / (4*2)
    assert normalised_entropy(uniform)[0] == pytest.approx(1.0)
    assert normalised_entropy(single)[0] == pytest.approx(0.0)
    assert normalised_entropy(half)[0] == pytest.approx(0.5)
    d = drift_metrics(uniform, single)
    assert d["gini_change"][0] == pytest.approx(0.75)
    assert d["entropy_change"][0] == pytest.approx(-1.0)
    assert d["com_displacement"][0] == pytest.approx(np.hypot(0.5, 0.5) / np.hypot(1, 1))


def test_correlations_match_scipy() -> None:
    rng = np.random.default_rng(5)
    a = rng.random((6, 12, 12)).astype(np.float32)
    b = (a + 0.5 * rng.random((6, 12, 12))).astype(np.float32)
    b[3] = np.round(b[3] * 2)  # ties in ranks
    a[4] = np.round(a[4] * 4)
    d = drift_metrics(a, b)
    ref_p = [pearsonr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    ref_s = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(d["pearson"], ref_p, atol=1e-5)
    np.testing.assert_allclose(d["spearman"], ref_s, atol=1e-5)


def test_constant_and_zero_maps() -> None:
    rng = np.random.default_rng(1)
    a = np.zeros((2, 8, 8), np.float32)
    b = rng.random((2, 8, 8)).astype(np.float32)
    b[1] = 0.0
    d = drift_metrics(a, b)
    assert d["pearson"].tolist() == [0.0, 1.0]
    assert d["spearman"].tolist() == [0.0, 1.0]
    assert d["entropy_change"][1] == 0.0  # both uniform


def test_torch_inputs_and_errors() -> None:
    a = torch.rand(2, 8, 8)
    d = drift_metrics(a, a)
    assert d["iou_top20"].tolist() == [1.0, 1.0]
    with pytest.raises(ShapeError, match="differs"):
        drift_metrics(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))
    with pytest.raises(ConfigError, match="top_percent"):
        drift_metrics(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), top_percent=(0,))


pairs = st.integers(min_value=0, max_value=2**31 - 1).map(
    lambda s: np.random.default_rng(s).normal(size=(2, 3, 9, 9)).astype(np.float32)
)


@settings(max_examples=40, deadline=None)
@given(ab=pairs, quantise=st.booleans())
def test_symmetry_and_ranges(ab: np.ndarray, quantise: bool) -> None:
    a, b = (np.round(ab) if quantise else ab).astype(np.float32)
    fwd, bwd = drift_metrics(a, b), drift_metrics(b, a)
    for key in ("iou_top10", "iou_top20", "pearson", "spearman", "com_displacement", "peak_displacement"):
        np.testing.assert_allclose(fwd[key], bwd[key], atol=1e-9)
    for key in ("gini_change", "entropy_change"):
        np.testing.assert_allclose(fwd[key], -bwd[key], atol=1e-9)
    for key in ("pearson", "spearman"):
        assert np.all((fwd[key] >= -1) & (fwd[key] <= 1))
    for key in ("iou_top10", "iou_top20", "com_displacement", "peak_displacement"):
        assert np.all((fwd[key] >= 0) & (fwd[key] <= 1))


def test_non_finite_maps_are_rejected() -> None:
    a = np.ones((3, 8, 8), np.float32)
    b = a.copy()
    b[2, 1, 1] = np.inf
    with pytest.raises(InvalidValueError, match="maps_b contain NaN or Inf .*index 2"):
        drift_metrics(a, b)
