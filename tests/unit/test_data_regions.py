"""Suppressor and confounder variants (xai_core.data.regions) and the region_share metric: the
default benchmark unchanged, the suppressor region carrying no class information (exact
construction check and a KS test), the confounder at its set strength, disjoint masks, and the
metric's values on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from xai_core.data import synthesize
from xai_core.data.anatomy import load_anatomy, slice_bank
from xai_core.data.params import KNOBS, VARIANT_KNOBS, make_params
from xai_core.data.regions import draw_regions, footprint, marked_classes
from xai_core.data.synth import generate_chunk, labels_and_splits
from xai_core.errors import ConfigError
from xai_core.metrics import ground_truth_metrics, region_share

SIZE = 32


@pytest.fixture(scope="module")
def bank():  # type: ignore[no-untyped-def]
    return slice_bank(load_anatomy(None), SIZE, 0.6)


def test_variant_none_is_the_benchmark_of_before(bank) -> None:  # type: ignore[no-untyped-def]
    """``variant=none`` (the default) is bit-identical to a build without the knob, has no second
    mask, and stores exactly the parameter keys it stored before (params.yaml unchanged)."""
    default = synthesize(make_params(n=12, size=SIZE, seed=0), bank)
    none = synthesize(make_params(n=12, size=SIZE, seed=0, variant="none"), bank)
    for key in ("images", "clean", "masks", "labels", "splits", "n_lesions"):
        np.testing.assert_array_equal(getattr(default, key), getattr(none, key))
    assert default.regions is None and none.regions is None
    assert set(make_params().to_dict()) == set(KNOBS) - set(VARIANT_KNOBS)
    conf = make_params(variant="confounder").to_dict()
    assert conf["variant"] == "confounder" and conf["confounder_strength"] == 0.9 and "suppressor_amplitude" not in conf


def test_suppressor_region_is_the_same_whatever_the_labels(bank) -> None:  # type: ignore[no-untyped-def]
    """Exact construction check: the same chunk generated with every label flipped has the same
    second region and the same pixel values in it (x_R = b_R + ς p_R never reads the labels),
    while the lesions differ; outside lesions and region nothing changed; ς p_R has one sign per
    image and |ς| <= A."""
    params = make_params(n=64, size=SIZE, seed=5, variant="suppressor", suppressor_amplitude=0.3)
    labels, _ = labels_and_splits(params)
    a = generate_chunk(bank, params, labels, 0)
    b = generate_chunk(bank, params, 1 - labels, 0)
    np.testing.assert_array_equal(a.regions, b.regions)
    np.testing.assert_array_equal(a.base, b.base)
    np.testing.assert_array_equal(np.where(a.regions, a.images, 0), np.where(b.regions, b.images, 0))
    assert not np.array_equal(a.masks, b.masks)  # the lesions did follow the labels
    assert a.regions.any(axis=(1, 2)).all() and not (a.regions & a.masks).any()
    change = a.images - a.base
    assert np.abs(change[~a.masks & ~a.regions]).max() == 0.0
    on_region = np.where(a.regions, change, np.nan)
    lo, hi = np.nanmin(on_region, axis=(1, 2)), np.nanmax(on_region, axis=(1, 2))
    assert ((lo >= 0) | (hi <= 0)).all() and np.nanmax(np.abs(on_region)) <= 0.3 + 1e-6


def test_suppressor_pixels_have_the_same_distribution_in_both_classes(bank) -> None:  # type: ignore[no-untyped-def]
    """Two-sample KS test of the mean intensity in the suppressor region, class 0 against class 1
    (n = 256, 128 per class): no detectable difference (p > 0.05; the exact check above is the
    proof, this is the statistical view of it)."""
    s = synthesize(make_params(n=256, size=SIZE, seed=1, variant="suppressor"), bank)
    mean_in_region = (s.images * s.regions).sum(axis=(1, 2)) / s.regions.sum(axis=(1, 2))
    p = stats.ks_2samp(mean_in_region[s.labels == 0], mean_in_region[s.labels == 1]).pvalue
    assert p > 0.05


def test_confounder_goes_with_the_class_at_the_set_strength() -> None:
    """P(marker present == class marked) = ρ within 4 binomial standard errors (n = 4000 images,
    a full-brain canvas), exactly 1 / 0 at ρ = 1 / 0; marked = labels >= K // 2."""
    n = 4000
    brain = np.ones((n, 24, 24), bool)
    for classes, rho in ((2, 0.9), (2, 0.7), (5, 0.9), (2, 1.0), (2, 0.0)):
        params = make_params(n=10 * classes, size=24, variant="confounder", confounder_strength=rho, classes=classes)
        labels = np.arange(n) % classes
        regions = draw_regions(np.random.default_rng(classes), labels, brain, params)
        agree = (regions.present == marked_classes(labels, classes)).mean()
        assert abs(agree - rho) <= 4 * np.sqrt(rho * (1 - rho) / n), (classes, rho, agree)
        assert (regions.mask.any(axis=(1, 2)) == regions.present).all()
    assert marked_classes(np.arange(5), 5).tolist() == [False, False, True, True, True]


def test_confounder_marker_and_masks_in_a_build(bank) -> None:  # type: ignore[no-untyped-def]
    """A built confounder benchmark: the marker is a square of +contrast_max exactly on the second
    mask, disjoint from the lesion mask; lesion masks are still exactly the lesion's pixels."""
    params = make_params(n=64, size=SIZE, seed=2, variant="confounder", confounder_strength=0.9)
    s = synthesize(params, bank)
    side = footprint(params).sum() ** 0.5
    drawn = s.regions.any(axis=(1, 2))
    assert 0 < drawn.sum() < len(drawn)
    assert (s.regions.sum(axis=(1, 2))[drawn] == side**2).all()  # the whole square, inside the brain
    assert not (s.regions & s.masks).any()
    change = s.images - s.clean
    np.testing.assert_allclose(change[s.regions], params.contrast_max, atol=1e-6)
    assert np.abs(change[~s.masks & ~s.regions]).max() == 0.0
    assert (change[s.masks] != 0).all() and s.masks.any(axis=(1, 2)).all()


@pytest.mark.parametrize("knobs,message", [
    ({"variant": "wavy"}, "variant must be one of none, suppressor, confounder (got 'wavy')"),
    ({"variant": "confounder", "confounder_strength": 1.5}, "confounder_strength must be in [0, 1] (got 1.5)"),
    ({"variant": "confounder", "confounder_strength": -0.1}, "confounder_strength must be in [0, 1] (got -0.1)"),
    ({"confounder_strength": 0.8}, "confounder_strength applies to --variant confounder only"),
    ({"variant": "suppressor", "suppressor_amplitude": 2.0}, "suppressor_amplitude must be in [0, 1]"),
    ({"region_area": 0.01}, "region_area applies to --variant suppressor|confounder only"),
])
def test_bad_variant_settings(knobs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_params(n=12, **knobs)
    assert str(info.value).startswith(message)


def test_region_share_by_hand() -> None:
    """share = Σ_R |a| / Σ |a|: hand-computed on 4x4 maps; a constant or all-zero map scores
    |R| / HW; an empty region gives NaN; without regions the metric is NaN and left out of the
    default set."""
    a = np.zeros((4, 4, 4), np.float32)
    a[0, 0, 0], a[0, 3, 3], a[0, 1, 1] = 2.0, 1.0, -1.0  # |a|: 4 in all, 2 on the region
    a[1] = 0.0
    a[2] = -0.5  # constant
    a[3, 0, 0], a[3, 2, 2] = 3.0, 1.0  # 3 of 4 on the region
    lesion = np.zeros((4, 4, 4), bool)
    lesion[:, 1, 1] = True
    region = np.zeros((4, 4, 4), bool)
    region[0, 0, :2] = True
    region[1, 0, 0] = True
    region[2, 2:, 2:] = True
    region[3, :2, :2] = True
    np.testing.assert_allclose(region_share(a, lesion, region), [2 / 4, 1 / 16, 4 / 16, 3 / 4])
    region[1] = False
    assert np.isnan(region_share(a, lesion, region)[1])
    assert "region_share" not in ground_truth_metrics(a, lesion)
    assert "region_share" in ground_truth_metrics(a, lesion, regions=region)
    assert np.isnan(ground_truth_metrics(a, lesion, metrics=["region_share"])["region_share"]).all()
