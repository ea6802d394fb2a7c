"""Lesion synthesis and the in-memory generator: invariants on a few hundred real samples.

``synthesize`` (no file writes) on the MNI152 template at 64 px: masks are exactly the changed
pixels and lie inside the brain, classes are exactly balanced and the split stratified, and the
lesion areas of the two classes are not distinguishable (two-sample KS test)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from xai_core.data import synthesize
from xai_core.data.lesions import brain_distance, make_shapes, radial_profiles, smoothstep
from xai_core.data.params import make_params
from xai_core.errors import ConfigError

N, SIZE = 300, 64


@pytest.fixture(scope="module")
def synth():  # type: ignore[no-untyped-def]
    return synthesize(make_params(n=N, size=SIZE, seed=3))


def test_mask_is_exactly_the_changed_pixels(synth) -> None:  # type: ignore[no-untyped-def]
    assert synth.images.shape == synth.clean.shape == synth.masks.shape == (N, SIZE, SIZE)
    assert synth.images.dtype == np.float32 and synth.masks.dtype == bool
    np.testing.assert_array_equal(synth.masks, synth.images != synth.clean)
    assert synth.masks.sum(axis=(1, 2)).min() > 0  # every image holds at least one lesion


def test_every_lesion_pixel_is_inside_the_brain(synth) -> None:  # type: ignore[no-untyped-def]
    assert int((synth.masks & ~synth.brains).sum()) == 0
    assert synth.brains.sum(axis=(1, 2)).min() > 0.1 * SIZE * SIZE


def test_exact_class_balance_and_stratified_split(synth) -> None:  # type: ignore[no-untyped-def]
    assert np.bincount(synth.labels).tolist() == [N // 2, N // 2]
    for c in (0, 1):
        splits = synth.splits[synth.labels == c]
        # 150 per class: round(0.70*150)=105 train, round(0.15*150)=22 val (banker's rounding of 22.5), 23 test
        assert [int((splits == s).sum()) for s in ("train", "val", "test")] == [105, 22, 23]
    assert set(np.unique(synth.n_lesions).tolist()) <= {1, 2, 3}


def test_lesion_area_does_not_give_the_label_away(synth) -> None:  # type: ignore[no-untyped-def]
    area = synth.lesion_area
    p = stats.ks_2samp(area[synth.labels == 0], area[synth.labels == 1]).pvalue
    assert p > 0.05, f"lesion areas differ between classes (KS p={p:.4f})"


def test_regular_lesions_are_ellipses_irregular_are_not() -> None:
    """Convexity: an ellipse fills its convex hull; lobulated/spiculated blobs do not."""
    from skimage.morphology import convex_hull_image  # lazy: skimage takes ~0.3 s to import; only this test

    params = make_params(n=60, size=128, seed=0, edge_width=0.0, lesion_area_min=0.01, lesion_area_max=0.01)
    labels = np.repeat([0, 1], 30)
    shapes = make_shapes(np.random.default_rng(0), labels, params)
    inside = shapes.profile > 0
    solidity = np.array([m.sum() / convex_hull_image(m).sum() for m in inside])
    assert solidity[:30].min() > 0.93
    assert np.median(solidity[30:]) < 0.9
    # rasterised areas hit the common target area (0.01 * 128^2 = 163.84 px) within 6 %
    np.testing.assert_allclose(inside.sum(axis=(1, 2)), 163.84, rtol=0.06)


def test_radial_profiles_have_unit_area() -> None:
    """Area of a star domain = 1/2 * integral r(theta)^2 dtheta = pi * mean(r^2) = 1."""
    params = make_params(n=10, size=64)
    r = radial_profiles(np.random.default_rng(1), np.array([0, 1] * 20), params)
    np.testing.assert_allclose(np.pi * (r**2).mean(axis=1), 1.0, rtol=1e-12)


def test_smoothstep_and_brain_distance_values() -> None:
    np.testing.assert_allclose(smoothstep(np.array([-1.0, 0.0, 0.25, 0.5, 1.0, 2.0])),
                               [0.0, 0.0, 0.15625, 0.5, 1.0, 1.0])
    brain = np.ones((2, 5, 5), bool)
    brain[1, 2, 2] = False
    d = brain_distance(brain)
    assert d[0, 2, 2] == 3.0 and d[0, 0, 0] == 1.0  # the image border counts as outside
    assert d[1, 2, 2] == 0.0 and d[1, 1, 2] == 1.0 and d[1, 1, 1] == pytest.approx(np.sqrt(2))


def test_config_precedence_and_unknown_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "p.yaml"
    cfg.write_text("n: 10\nrotate_deg: 3\nsize: 48\n")
    p = make_params(cfg, n=12, seed=None)
    assert (p.n, p.rotate_deg, p.size, p.seed) == (12, 3.0, 48, 0)  # flag > config > default
    cfg.write_text("n: 10\nrotate_degrees: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'rotate_degrees'"):
        make_params(cfg)
    with pytest.raises(ConfigError, match="n must be even"):
        make_params(n=11)
