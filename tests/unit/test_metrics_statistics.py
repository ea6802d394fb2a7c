"""Aggregation, rankings, accuracy-controlled regression and chance baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.stats import kendalltau, spearmanr

from xai_core.errors import ConfigError, InvalidValueError
from xai_core.metrics import (
    accuracy_controlled_effect,
    bootstrap_ci,
    explanation_precision,
    random_maps,
    ranking_agreement,
    sobel_maps,
    stability_ranking,
    summarise,
)
from xai_core.metrics.statistics import (
    ci_table,
    ci_text,
    cluster_bootstrap,
    clustered_summary,
    contrast_ci,
    spearman_rows,
)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60))
def test_bootstrap_ci_contains_the_mean(values: list[float]) -> None:
    lo, hi = bootstrap_ci(values, n_boot=500)
    mean = float(np.mean(values))
    assert lo - 1e-9 * (1 + abs(mean)) <= mean <= hi + 1e-9 * (1 + abs(mean))


def test_bootstrap_ci_width_shrinks_like_sqrt_n() -> None:
    rng = np.random.default_rng(0)
    small = np.diff(bootstrap_ci(rng.normal(size=100)))[0]
    large = np.diff(bootstrap_ci(rng.normal(size=10_000)))[0]
    # 95% CI of a mean of N(0,1): width ≈ 2 * 1.96 / sqrt(n)
    assert small == pytest.approx(2 * 1.96 / 10, rel=0.2)
    assert large == pytest.approx(2 * 1.96 / 100, rel=0.2)
    assert bootstrap_ci([3.0]) == (3.0, 3.0)


def test_summarise_groups_and_cis() -> None:
    df = pd.DataFrame(
        {
            "method": ["a"] * 4 + ["b"] * 3,
            "pretrain": ["x", "x", "y", "y", "x", "x", "x"],
            "precision": [0.1, 0.3, 0.5, 0.7, 0.2, 0.4, 0.9],
        }
    )
    out = summarise(df, ["method", "pretrain"], ["precision"], n_boot=300)
    row = out[(out.method == "b") & (out.pretrain == "x")].iloc[0]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(0.5)
    assert row["median"] == pytest.approx(0.4)
    assert (out["ci_low"] <= out["mean"]).all() and (out["mean"] <= out["ci_high"]).all()
    with pytest.raises(ConfigError, match="unknown column"):
        summarise(df, ["arch"], ["precision"])


def _drift_frame() -> pd.DataFrame:
    # IoU means: under gradcam++ densenet > resnet > inception; under layercam the reverse
    means = {
        ("gradcam++", "densenet"): 0.8, ("gradcam++", "resnet"): 0.6, ("gradcam++", "inception"): 0.4,
        ("layercam", "densenet"): 0.3, ("layercam", "resnet"): 0.5, ("layercam", "inception"): 0.7,
        ("saliency", "densenet"): 0.9, ("saliency", "resnet"): 0.5, ("saliency", "inception"): 0.45,
    }
    rows = [{"method": m, "arch": a, "iou_top20": v + d, "com_displacement": 1 - v}
            for (m, a), v in means.items() for d in (-0.01, 0.01)]
    return pd.DataFrame(rows)


def test_stability_ranking_kendall_and_reversal() -> None:
    ranking = stability_ranking(_drift_frame(), metric="iou_top20")
    r = ranking.set_index(["method", "arch"])["rank"]
    assert r[("gradcam++", "densenet")] == 1 and r[("layercam", "densenet")] == 3
    # displacement: lower is more stable -> the same ranking
    r2 = stability_ranking(_drift_frame(), metric="com_displacement").set_index(["method", "arch"])["rank"]
    assert (r2.sort_index() == r.sort_index()).all()
    agree = ranking_agreement(ranking).set_index(["method_a", "method_b"])
    rev = agree.loc[("gradcam++", "layercam")]
    assert rev["kendall_tau"] == pytest.approx(-1.0)
    assert rev["n_discordant"] == 3 and bool(rev["reversal"])
    same = agree.loc[("gradcam++", "saliency")]
    assert same["kendall_tau"] == pytest.approx(1.0) and not bool(same["reversal"])
    assert same["n_discordant"] == 0
    ref = kendalltau([1, 2, 3], [3, 2, 1])[0]
    assert rev["kendall_tau"] == pytest.approx(ref)


def test_accuracy_controlled_effect_recovers_known_model() -> None:
    rng = np.random.default_rng(2)
    acc = rng.uniform(0.6, 0.95, size=24)
    src = np.array(["imagenet", "mri"] * 12)
    perf = 0.1 + 0.5 * acc + 0.08 * (src == "mri") + rng.normal(0, 0.01, size=24)
    df = pd.DataFrame({"precision": perf, "accuracy": acc, "pretrain": src})
    fit = accuracy_controlled_effect(df)
    eff = fit["effects"].iloc[0]
    assert eff["source"] == "mri" and eff["reference"] == "imagenet"
    assert eff["ci_low"] < 0.08 < eff["ci_high"]
    assert fit["slope"] == pytest.approx(0.5, abs=0.05)
    # same numbers as an explicit least-squares solve of the design matrix
    x = np.column_stack([np.ones(24), acc, (src == "mri").astype(float)])
    coef = np.linalg.lstsq(x, perf, rcond=None)[0]
    assert eff["effect"] == pytest.approx(coef[2])
    resid = perf - x @ coef
    se = np.sqrt(resid @ resid / 21 * np.linalg.inv(x.T @ x)[2, 2])
    assert eff["se"] == pytest.approx(se)
    assert fit["intercepts"]["mri"] == pytest.approx(coef[0] + coef[2])
    with pytest.raises(InvalidValueError, match="at least 2"):
        accuracy_controlled_effect(df.iloc[:1])


def test_random_maps_are_reproducible_and_at_chance() -> None:
    keys = np.arange(400)
    maps = random_maps(keys, 32, 32, seed=0)
    assert maps.shape == (400, 32, 32) and maps.dtype == np.float32
    np.testing.assert_array_equal(random_maps(keys[[7, 3]], 32, 32), maps[[7, 3]])  # batch-independent
    assert not np.array_equal(random_maps(keys[:2], 32, 32, seed=1), maps[:2])
    assert 0.49 < maps.mean() < 0.51 and maps.min() >= 0 and maps.max() < 1
    m = np.zeros((400, 32, 32), bool)
    m[:, 8:16, 8:24] = True  # n / HW = 128 / 1024
    assert explanation_precision(maps, m).mean() == pytest.approx(128 / 1024, abs=0.01)


def test_sobel_maps_match_scipy_per_image() -> None:
    rng = np.random.default_rng(4)
    imgs = rng.random((3, 10, 12)).astype(np.float32)
    out = sobel_maps(imgs)
    for i in range(3):
        gx = ndimage.sobel(imgs[i], axis=1, mode="nearest")
        gy = ndimage.sobel(imgs[i], axis=0, mode="nearest")
        np.testing.assert_allclose(out[i], np.hypot(gx, gy), rtol=1e-5, atol=1e-6)
    step = np.zeros((1, 6, 6), np.float32)
    step[0, :, 3:] = 1.0
    edge = sobel_maps(step)[0]
    assert edge[:, 2:4].min() == pytest.approx(4.0) and edge[:, 0].max() == 0.0


def test_ci_text_and_table() -> None:
    assert ci_text(0.41234, 0.38, 0.4409) == "0.412 [0.380, 0.441]"
    assert ci_text(0.012, -0.004, 0.03, signed=True) == "+0.012 [-0.004, +0.030]"
    summary = pd.DataFrame({
        "method": ["a", "a", "b"], "pretrain": ["mri", "natural", "mri"], "degree": ["tl", "tl", "all"],
        "mean": [0.5, 0.25, 0.125], "ci_low": [0.4, 0.2, 0.1], "ci_high": [0.6, 0.3, 0.15],
    })
    wide = ci_table(summary)
    assert list(wide.index) == ["a", "b"]
    assert wide.loc["a", "mri / tl"] == "0.500 [0.400, 0.600]"
    assert wide.loc["a", "natural / tl"] == "0.250 [0.200, 0.300]"
    assert wide.loc["b", "mri / all"] == "0.125 [0.100, 0.150]"
    assert pd.isna(wide.loc["b", "mri / tl"])


def test_cluster_bootstrap_equals_the_per_cluster_mean_bootstrap_for_identical_rows() -> None:
    """Clusters of identical rows (equal sizes): resampling clusters and averaging all their rows is
    resampling the per-cluster means, with the same draws — the CIs agree exactly."""
    rng = np.random.default_rng(3)
    values = rng.random(25)
    frame = pd.DataFrame({"sample_pk": np.repeat(np.arange(25), 6),  # 6 rows per image: 3 checkpoints × 2 methods
                          "method": np.tile(["a", "b"], 75), "precision": np.repeat(values, 6)})
    out = clustered_summary(frame, "precision", ["method"], n_boot=700, seed=4)
    expected = bootstrap_ci(values, n_boot=700, seed=4)
    assert list(out["method"]) == ["a", "b"] and list(out["n"]) == [75, 75] and list(out["n_clusters"]) == [25, 25]
    for row in out.itertuples():
        assert row.mean == pytest.approx(values.mean())
        assert (row.ci_low, row.ci_high) == pytest.approx(expected, abs=1e-12)
    # the naive row bootstrap treats the 6 copies as independent: its CI is ~sqrt(3) too narrow
    # (3 rows of each image per method)
    naive = np.diff(bootstrap_ci(frame.loc[frame["method"] == "a", "precision"], n_boot=700))[0]
    assert naive < 0.75 * (expected[1] - expected[0])


def test_cluster_bootstrap_by_hand_on_two_clusters() -> None:
    """Two images, rows (image 0: 1, 3) and (image 1: 10): the resamples are {0,0}, {0,1}, {1,0}, {1,1}
    with means (1+3+1+3)/4 = 2, (1+3+10)/3 = 14/3 (twice) and 10 — all rows of each drawn image, so
    the image with two rows weighs twice; every replicate is one of those."""
    frame = pd.DataFrame({"sample_pk": [0, 0, 1], "g": ["x", "x", "x"], "v": [1.0, 3.0, 10.0]})
    groups, boot = cluster_bootstrap(frame, "v", ["g"], n_boot=4000, seed=0)
    assert groups["mean"].iat[0] == pytest.approx(14 / 3)
    assert set(np.round(boot[:, 0], 9)) == {2.0, round(14 / 3, 9), 10.0}
    share = np.mean(np.isclose(boot[:, 0], 14 / 3))
    assert share == pytest.approx(0.5, abs=0.03)


def test_cluster_bootstrap_contrasts_share_draws_and_missing_groups_are_nan() -> None:
    frame = pd.DataFrame({"sample_pk": [0, 0, 1, 1, 2], "g": ["a", "b", "a", "b", "c"], "v": [1.0, 2.0, 3.0, 4.0, 9.0]})
    groups, boot = cluster_bootstrap(frame, "v", ["g"], n_boot=300, seed=1)
    # b − a is exactly 1 on every image, so the paired contrast has no spread at all
    diff = boot[:, 1] - boot[:, 0]
    assert np.allclose(diff[np.isfinite(diff)], 1.0)
    assert np.isnan(boot[:, 2]).any()  # resamples without image 2 have no "c" rows
    est, lo, hi = contrast_ci(groups["mean"].iat[2], boot[:, 2])
    assert (est, lo, hi) == (9.0, 9.0, 9.0)


def test_spearman_rows_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((50, 6))
    values[3] = values[3, 0]  # constant row: undefined
    order = np.arange(6)
    got = spearman_rows(values, order)
    for i in (0, 1, 7, 49):
        assert got[i] == pytest.approx(spearmanr(values[i], order)[0])
    assert np.isnan(got[3])
    assert spearman_rows(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 2]))[0] == pytest.approx(1.0)
