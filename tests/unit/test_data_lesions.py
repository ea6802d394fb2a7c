"""Lesion synthesis and the in-memory generator: invariants on a few hundred real samples.

``synthesize`` (no file writes) on the MNI152 template at 64 px: masks are exactly the changed
pixels and lie inside the brain, classes are exactly balanced and the split stratified, and the
lesion areas of the two classes are not distinguishable (two-sample KS test). The two-class
benchmark is pinned to the bytes it had before ``classes`` existed; the five-class variant's
shapes (ring hole, multifocal parts) and its shared area law are checked on rasterised lesions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy import stats

from xai_core.data import synthesize
from xai_core.data.lesions import brain_distance, make_shapes, radial_profiles, smoothstep
from xai_core.data.params import SHAPE_CLASSES, class_names, make_params
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


def _sha(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_two_class_benchmark_is_unchanged() -> None:
    """``classes = 2`` (the default) draws exactly what the generator drew before the knob existed:
    digests computed with that code (commit 80100d2). Pinned: labels, splits, masks and lesion
    counts of a small default build (booleans and integers: no last-bit float noise across CPUs)
    and the float32 soft-edge profiles of every irregular style (smoothstep of exact distances).
    The images were also compared bit for bit (n=200, 64 px) when the knob was added."""
    s = synthesize(make_params(n=12, size=32, seed=0))
    assert _sha(s.labels) == "ea5ac1b2ec2a4437"
    assert _sha(s.splits.astype("U5")) == "cdb4ac52d248babd"
    assert _sha(s.masks) == "d13b7192c390e264"
    assert _sha(s.n_lesions) == "210997d2917a0f46"
    expected = {"mixed": "f074a55f95642430", "lobulated": "001039d2d5c14793", "spiculated": "ea9758be9a038608"}
    for style, digest in expected.items():
        shapes = make_shapes(np.random.default_rng(0), np.repeat([0, 1], 30),
                             make_params(n=60, size=128, irregular_style=style))
        assert _sha(shapes.profile) == digest, style


def _fixed_area(label: int, count: int, size: int = 64, area: float = 0.02) -> np.ndarray:
    """Hard-edged (edge_width 0) lesions of class ``label`` of the five-class benchmark, all of
    target area ``area * size^2``: ``(count, c, c)`` bool canvases."""
    params = make_params(n=100, size=size, classes=5, edge_width=0.0, lesion_area_min=area, lesion_area_max=area)
    return make_shapes(np.random.default_rng(label), np.full(count, label), params).profile > 0


def test_ring_lesions_are_hollow_annuli() -> None:
    """Ring: one 4-connected annulus around an empty centre; the enclosed hole holds h^2/(1-h^2)
    of the lesion area, h in [0.45, 0.6] => 0.25..0.56 A (0.15..0.75 A on the pixel grid)."""
    inside = _fixed_area(3, 60)
    half = inside.shape[-1] // 2
    target = 0.02 * 64 * 64  # 81.92 px
    assert not inside[:, half, half].any()  # the lesion centre is in the hole
    assert [ndi.label(m)[1] for m in inside] == [1] * 60
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndi.generate_binary_structure(2, 1)  # fill holes slice by slice
    hole = (ndi.binary_fill_holes(inside, structure=plane) & ~inside).sum(axis=(1, 2))
    assert hole.min() > 0.15 * target and hole.max() < 0.75 * target
    np.testing.assert_allclose(inside.sum(axis=(1, 2)), target, rtol=0.2)


def test_multifocal_lesions_have_two_to_four_separate_parts() -> None:
    """Multifocal: 2, 3 or 4 parts, none touching another (8-connectivity), close together (all
    within 1.25 sqrt(A) of the lesion centre), total area on target."""
    inside = _fixed_area(4, 60)
    parts = np.array([ndi.label(m, structure=np.ones((3, 3)))[1] for m in inside])
    assert set(parts.tolist()) == {2, 3, 4}
    half = inside.shape[-1] // 2
    yy, xx = np.nonzero(inside.any(axis=0))
    assert np.hypot(yy - half, xx - half).max() <= 1.25 * np.sqrt(81.92) + 1
    np.testing.assert_allclose(inside.sum(axis=(1, 2)), 81.92, rtol=0.2)


def test_five_classes_hit_the_target_area_as_tightly_as_two() -> None:
    """At the two-class test's setting (128 px, A = 163.84 px) every class is within 6 %."""
    for label in range(5):
        inside = _fixed_area(label, 30, size=128, area=0.01)
        np.testing.assert_allclose(inside.sum(axis=(1, 2)), 163.84, rtol=0.06, err_msg=SHAPE_CLASSES[label])


def test_five_classes_share_the_area_distribution() -> None:
    """Target areas log-uniform in [0.008, 0.02] * 64^2, 300 lesions per class: each class's
    rasterised areas have a median within 10 % of the pooled median and a KS test against the
    other classes does not reject (p > 0.05); per lesion, the median of area / target is 1 +- 2 %."""
    params = make_params(n=100, size=64, classes=5)
    labels = np.tile(np.arange(5), 300)
    shapes = make_shapes(np.random.default_rng(0), labels, params)
    area = (shapes.profile > 0).sum(axis=(1, 2))
    pooled = np.median(area)
    for k in range(5):
        mine, rest = area[labels == k], area[labels != k]
        assert abs(np.median(mine) / pooled - 1) < 0.10, SHAPE_CLASSES[k]
        assert stats.ks_2samp(mine, rest).pvalue > 0.05, SHAPE_CLASSES[k]
        assert abs(np.median(mine / shapes.target_area[labels == k]) - 1) < 0.02, SHAPE_CLASSES[k]


def test_five_class_synthesis_is_balanced_exact_and_inside_the_brain() -> None:
    s = synthesize(make_params(n=50, size=32, seed=1, classes=5))
    assert np.bincount(s.labels).tolist() == [10] * 5
    for c in range(5):  # 10 per class: round(7) train, round(1.5) = 2 val, 1 test
        splits = s.splits[s.labels == c]
        assert [int((splits == x).sum()) for x in ("train", "val", "test")] == [7, 2, 1]
    np.testing.assert_array_equal(s.masks, s.images != s.clean)
    assert int((s.masks & ~s.brains).sum()) == 0 and s.masks.sum(axis=(1, 2)).min() > 0
    assert class_names(make_params(n=9, classes=3)) == ["ellipse", "lobulated", "spiculated"]
    assert class_names(make_params(n=8)) == ["regular", "irregular"]


@pytest.mark.parametrize("knobs,message", [
    ({"classes": 1}, "classes must be an integer 2..5 (got 1)"),
    ({"classes": 6}, "classes must be an integer 2..5 (got 6)"),
    ({"n": 12, "classes": 5}, "n must be a multiple of classes=5 so each class gets exactly n/5 samples (got n=12)"),
    ({"n": 9, "classes": 3, "irregular_style": "lobulated"},
     "irregular_style applies to the two-class benchmark only; drop it or use classes=2"),
])
def test_bad_class_settings(knobs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_params(**knobs)
    assert str(info.value) == message


def test_a_last_chunk_where_no_image_has_a_second_lesion() -> None:
    """n = 70, seed 7 at 40 px: the last chunk's six images all drew one lesion, so the second
    lesion slot is empty (it used to fail reshaping an empty score array)."""
    from xai_core.data.anatomy import load_anatomy, slice_bank
    from xai_core.data.synth import generate_chunk, labels_and_splits

    params = make_params(n=70, size=40, seed=7)
    labels, _ = labels_and_splits(params)
    chunk = generate_chunk(slice_bank(load_anatomy(None), 40, 0.6), params, labels[64:], 1)
    assert chunk.n_lesions.tolist() == [1] * 6 and chunk.masks.any(axis=(1, 2)).all()
