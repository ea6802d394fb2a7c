"""Ground-truth metrics: hand-computed values, scikit-learn / Quantus / scipy agreement, properties."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance_nd
from sklearn.metrics import average_precision_score, roc_auc_score

from xai_core.errors import InvalidValueError, ShapeError
from xai_core.metrics import (
    average_precision,
    constant_maps,
    earth_movers_distance,
    emd_score,
    explanation_precision,
    ground_truth_metrics,
    list_ground_truth_metrics,
    mass_accuracy,
    pointing_game,
    roc_auc,
)
from xai_core.metrics.ground_truth import _top_n_hits, _top_n_hits_topk


def _mask(shape: tuple[int, int], pixels: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros((1, *shape), dtype=bool)
    for r, c in pixels:
        m[0, r, c] = True
    return m


# 3x3 map with distinct values; mask = {(0,1), (1,1), (2,2)} -> values 8, 5, 1, n = 3
RAMP = np.array([[[9, 8, 7], [6, 5, 4], [3, 2, 1]]], dtype=np.float32)
RAMP_MASK = _mask((3, 3), [(0, 1), (1, 1), (2, 2)])


def test_hand_computed_distinct_values() -> None:
    r = ground_truth_metrics(RAMP, RAMP_MASK)
    assert set(r) == set(list_ground_truth_metrics())
    # top-3 = {9, 8, 7} -> one hit (8)
    assert r["precision"][0] == pytest.approx(1 / 3)
    assert r["mass_accuracy"][0] == pytest.approx((8 + 5 + 1) / 45)
    assert r["pointing_game"][0] == 0.0  # the maximum 9 is outside
    # positive>negative pairs: 8 beats 5 negatives, 5 beats 3, 1 beats 0 -> 8 / (3 * 6)
    assert r["roc_auc"][0] == pytest.approx(8 / 18)
    # descending: 9n 8p 7n 6n 5p 4n 3n 2n 1p -> (1/2 + 2/5 + 3/9) / 3
    assert r["average_precision"][0] == pytest.approx((1 / 2 + 2 / 5 + 3 / 9) / 3)


def test_sign_is_ignored() -> None:
    assert ground_truth_metrics(-RAMP, RAMP_MASK)["precision"][0] == pytest.approx(1 / 3)


def test_hand_computed_with_ties() -> None:
    a = np.array([[[1, 1, 0], [0, 1, 0], [0, 0, 0]]], dtype=np.float32)
    m = _mask((3, 3), [(1, 1), (2, 2)])
    # top-2 among the three 1s by flat index: pixels 0 and 1 -> no hit
    assert explanation_precision(a, m)[0] == 0.0
    assert pointing_game(a, m)[0] == pytest.approx(1 / 3)  # 1 of 3 maxima inside
    assert mass_accuracy(a, m)[0] == pytest.approx(1 / 3)
    # positive 1: beats 5 zeros, ties 2 ones -> 6; positive 0: ties 5 zeros -> 2.5
    assert roc_auc(a, m)[0] == pytest.approx(8.5 / 14)
    # thresholds 1: P=1/3 at R=1/2; 0: P=2/9 at R=1
    assert average_precision(a, m)[0] == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 9)


def test_tie_break_is_by_flat_index() -> None:
    a = np.ones((1, 2, 4), dtype=np.float32)
    a[0, 0, 0] = 2.0
    # n = 2: pixel 0 (value 2) and then the first tie (pixel 1); pixel 7 never wins the tie
    assert explanation_precision(a, _mask((2, 4), [(0, 1), (1, 3)]))[0] == pytest.approx(0.5)
    assert explanation_precision(a, _mask((2, 4), [(1, 2), (1, 3)]))[0] == 0.0


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_constant_map_gets_chance_values_and_flag(value: float) -> None:
    a = np.full((2, 4, 4), value, dtype=np.float32)
    a[1] = np.arange(16).reshape(4, 4)
    m = np.zeros((2, 4, 4), bool)
    m[:, 1:3, 1:3] = True
    r = ground_truth_metrics(a, m)
    for key in ("precision", "mass_accuracy", "pointing_game", "average_precision"):
        assert r[key][0] == pytest.approx(4 / 16), key
    assert r["roc_auc"][0] == 0.5
    assert constant_maps(a).tolist() == [True, False]


def test_perfect_map_scores_one() -> None:
    m = np.zeros((1, 8, 8), bool)
    m[0, 2:4, 5:7] = True
    a = m.astype(np.float32) * 3.0
    r = ground_truth_metrics(a, m)
    for key in list_ground_truth_metrics():
        assert r[key][0] == pytest.approx(1.0), key


def test_empty_mask_gives_nan() -> None:
    r = ground_truth_metrics(RAMP, np.zeros_like(RAMP_MASK))
    assert all(np.isnan(r[k][0]) for k in list_ground_truth_metrics())


def test_sklearn_agreement_random_batch() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 20, 20)).astype(np.float32)
    a[5] = np.round(a[5] * 2)  # heavy ties
    m = rng.random((12, 20, 20)) < 0.15
    auc = [roc_auc_score(mm.ravel(), np.abs(aa).ravel()) for aa, mm in zip(a, m)]
    ap = [average_precision_score(mm.ravel(), np.abs(aa).ravel()) for aa, mm in zip(a, m)]
    np.testing.assert_allclose(roc_auc(a, m), auc, atol=1e-12)
    np.testing.assert_allclose(average_precision(a, m), ap, atol=1e-12)


def _quantus(metric_cls: type, a: np.ndarray, m: np.ndarray) -> np.ndarray:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(a.shape[1] * a.shape[2], 2)).eval()
    x = np.random.default_rng(0).random((len(a), 1, *a.shape[1:])).astype(np.float32)
    metric = metric_cls(abs=True, normalise=False, disable_warnings=True, display_progressbar=False)
    out = metric(
        model=model, x_batch=x, y_batch=np.zeros(len(a), int), a_batch=a[:, None],
        s_batch=m[:, None].astype(np.float32), device="cpu",
    )
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize(
    ("metric_cls", "ours"),
    [
        (quantus.RelevanceRankAccuracy, explanation_precision),
        (quantus.RelevanceMassAccuracy, mass_accuracy),
        (quantus.PointingGame, pointing_game),
        (quantus.AUC, roc_auc),
    ],
)
def test_quantus_agreement(metric_cls: type, ours) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    a = rng.normal(size=(16, 24, 24)).astype(np.float32)
    yy, xx = np.mgrid[:24, :24]
    centres = rng.integers(5, 19, size=(16, 2))
    radii = rng.integers(2, 6, size=16)
    m = ((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) <= radii[:, None, None] ** 2
    a[:8] += 2.0 * m[:8]  # half the maps localise well, half do not
    np.testing.assert_allclose(ours(a, m), _quantus(metric_cls, a, m), atol=1e-6)


def test_emd_translation_is_exact() -> None:
    a = np.zeros((2, 16, 16), np.float32)
    m = np.zeros((2, 16, 16), bool)
    a[0, 5, 3], m[0, 5, 10] = 1.0, True  # shift 7 along x
    a[1, 2, 2], m[1, 6, 6] = 1.0, True  # shift (4, 4)
    np.testing.assert_allclose(earth_movers_distance(a, m), [7.0, 4 * np.sqrt(2)], rtol=1e-5)
    np.testing.assert_allclose(emd_score(a, m), 1 - np.array([7.0, 4 * np.sqrt(2)]) / np.hypot(15, 15), rtol=1e-5)
    blob = np.zeros((1, 16, 16), bool)
    blob[0, 3:6, 4:8] = True
    shifted = np.roll(blob, 5, axis=1)
    assert earth_movers_distance(blob.astype(np.float32), shifted)[0] == pytest.approx(5.0, rel=1e-5)


def test_emd_is_a_lower_bound_of_the_exact_transport_cost() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((6, 9, 9)).astype(np.float32) ** 4
    m = rng.random((6, 9, 9)) < 0.2
    m[:, 4, 4] = True
    yy, xx = np.mgrid[:9, :9]
    pts = np.stack([yy.ravel(), xx.ravel()], axis=1)
    exact = np.array([wasserstein_distance_nd(pts, pts, aa.ravel(), mm.ravel().astype(float)) for aa, mm in zip(a, m)])
    ours = earth_movers_distance(a, m)
    assert np.all(ours <= exact * 1.02)
    assert np.all(ours >= 0.5 * exact)


def test_torch_input_and_errors() -> None:
    t = torch.from_numpy(RAMP)
    assert explanation_precision(t, torch.from_numpy(RAMP_MASK))[0] == pytest.approx(1 / 3)
    with pytest.raises(ShapeError, match="shape"):
        explanation_precision(RAMP, np.zeros((1, 4, 4), bool))
    with pytest.raises(ShapeError, match=r"\(N, H, W\)"):
        explanation_precision(RAMP[0], RAMP_MASK[0])
    bad = RAMP.copy()
    bad[0, 1, 1] = np.nan
    with pytest.raises(InvalidValueError, match="NaN"):
        ground_truth_metrics(bad, RAMP_MASK)


def test_batch_result_equals_single_results() -> None:
    rng = np.random.default_rng(11)
    a = rng.random((30, 12, 12)).astype(np.float32)
    m = rng.random((30, 12, 12)) < 0.3
    batch = ground_truth_metrics(a, m)
    for i in (0, 13, 29):
        single = ground_truth_metrics(a[i : i + 1], m[i : i + 1])
        for key in list_ground_truth_metrics():
            assert batch[key][i] == pytest.approx(single[key][0])


maps = st.integers(min_value=0, max_value=2**31 - 1).map(
    lambda seed: np.random.default_rng(seed).normal(size=(3, 10, 10)).astype(np.float32)
)
mask_seeds = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=40, deadline=None)
@given(a=maps, seed=mask_seeds, scale=st.floats(0.01, 100.0), power=st.sampled_from([1.0, 0.5, 3.0]))
def test_precision_invariant_to_monotone_rescaling(a: np.ndarray, seed: int, scale: float, power: float) -> None:
    m = np.random.default_rng(seed).random(a.shape) < 0.25
    m[:, 0, 0] = True
    v = np.abs(a)
    transformed = (scale * v**power).astype(np.float32)
    # a strictly increasing transform keeps the order (and ties) of |a|
    np.testing.assert_allclose(explanation_precision(transformed, m), explanation_precision(v, m))
    np.testing.assert_allclose(roc_auc(transformed, m), roc_auc(v, m))


@settings(max_examples=40, deadline=None)
@given(a=maps, seed=mask_seeds)
def test_metric_ranges(a: np.ndarray, seed: int) -> None:
    m = np.random.default_rng(seed).random(a.shape) < 0.3
    m[:, 2, 2] = True
    r = ground_truth_metrics(a, m)
    for key in list_ground_truth_metrics():
        assert np.all((r[key] >= 0) & (r[key] <= 1 + 1e-9)), key


@settings(max_examples=30, deadline=None)
@given(seed=mask_seeds, levels=st.sampled_from([0, 3, 50]), size=st.sampled_from([5, 16, 40]))
def test_pivot_selection_matches_topk_reference(seed: int, levels: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    v = np.abs(rng.normal(size=(20, size * size))).astype(np.float32)
    if levels:
        v = np.round(v * levels).astype(np.float32) / levels  # many ties, incl. at the cut
    v[3] = 1.0  # constant row
    m = rng.random(v.shape) < rng.uniform(0.01, 0.6)
    n = m.sum(axis=1)
    np.testing.assert_array_equal(_top_n_hits(v, m, n), _top_n_hits_topk(v, m, n))
