"""The drift study's statistics on constructed rows: spread next to each mean, Kendall's tau and its
bootstrap uncertainty, the architecture effect (η²) and the verdict rules built on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from xai_core.findings import NO_DIFFERENCE, OPPOSITE, REPRODUCED, UNTESTABLE, architecture_dependence, reversal_verdict
from xai_core.metrics import summarise
from xai_core.metrics.statistics import (
    architecture_effect,
    kendall_tau_rows,
    near_chance,
    ranking_uncertainty,
)

ARCHS = ("densenet", "resnet", "inception")


def test_summarise_spread_hand_computed() -> None:
    df = pd.DataFrame({"arch": ["a"] * 5 + ["b"], "iou": [1.0, 2.0, 3.0, 4.0, 10.0, 0.5]})
    out = summarise(df, ["arch"], ["iou"], n_boot=200, spread=True).set_index("arch")
    a = out.loc["a"]
    # mean 4; deviations -3 -2 -1 0 6 → Σ² = 50, SD = sqrt(50 / 4); quartiles at positions 1 and 3
    assert (a["mean"], a["median"]) == (4.0, 3.0)
    assert a["sd"] == pytest.approx(np.sqrt(12.5))
    assert (a["q25"], a["q75"], a["iqr"]) == (2.0, 4.0, 2.0)
    b = out.loc["b"]  # one value: no SD, zero IQR
    assert np.isnan(b["sd"]) and (b["q25"], b["q75"], b["iqr"]) == (0.5, 0.5, 0.0)
    assert "sd" not in summarise(df, ["arch"], ["iou"], n_boot=50).columns  # opt-in


def test_near_chance_for_k_classes() -> None:
    assert near_chance([0.59, 0.60, 0.29, 0.30, np.nan], [2, 2, 5, 5, 5]).tolist() == [True, False, True, False, True]


def test_kendall_tau_rows_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, size=(50, 5)).astype(float)
    b = rng.integers(0, 3, size=(50, 5)).astype(float)
    got = kendall_tau_rows(a, b)
    want = np.array([kendalltau(x, y)[0] for x, y in zip(a, b, strict=True)])
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert kendall_tau_rows(np.array([1.0, 2, 3]), np.array([3.0, 2, 1]))[0] == -1.0


def _rows(means: dict[tuple[str, str], float], n: int = 30, sd: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """Per (method, arch) ``n`` images with top-20% IoU ``mean + noise``; image pks shared by all."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"method": m, "arch": a, "sample_pk": i, "iou_top20": v + rng.normal(0, sd)}
                         for (m, a), v in means.items() for i in range(n)])


def test_ranking_uncertainty_clear_reversal_and_clear_agreement() -> None:
    rows = _rows({("layercam", a): v for a, v in zip(ARCHS, (0.8, 0.5, 0.2), strict=True)}
                 | {("gradcam_plus_plus", a): v for a, v in zip(ARCHS, (0.2, 0.5, 0.8), strict=True)}
                 | {("saliency", a): v for a, v in zip(ARCHS, (0.7, 0.45, 0.3), strict=True)})
    out = ranking_uncertainty(rows, n_boot=300).set_index(["method_a", "method_b"])
    rev = out.loc[("gradcam_plus_plus", "layercam")]
    # means 0.3 apart with SE 0.004: every replicate keeps the order → tau -1 exactly, reversal everywhere
    assert (rev["kendall_tau"], rev["tau_ci_low"], rev["tau_ci_high"]) == (-1.0, -1.0, -1.0)
    assert bool(rev["reversal"]) and rev["reversal_share"] == 1.0 and rev["n_boot"] == 300
    same = out.loc[("layercam", "saliency")]
    assert (same["kendall_tau"], same["tau_ci_low"], same["reversal_share"]) == (1.0, 1.0, 0.0)
    assert reversal_verdict(out.reset_index()) == REPRODUCED


def test_ranking_uncertainty_when_the_rankings_are_noise() -> None:
    # two methods, every architecture at the same level: rankings are draws of the noise
    rows = _rows({(m, a): 0.5 for m in ("layercam", "gradcam_plus_plus") for a in ARCHS}, n=20, sd=0.1, seed=3)
    out = ranking_uncertainty(rows, n_boot=400).iloc[0]
    assert out["tau_ci_low"] < 0 < out["tau_ci_high"]
    assert 0.2 < out["reversal_share"] < 0.8


def test_reversal_verdict_needs_half_the_replicates() -> None:
    base = {"method_a": "gradcam_plus_plus", "method_b": "layercam", "kendall_tau": -1 / 3, "reversal": True,
            "tau_ci_low": -1.0, "tau_ci_high": 1.0}
    assert reversal_verdict(pd.DataFrame([base | {"reversal_share": 0.45}])) == NO_DIFFERENCE
    assert reversal_verdict(pd.DataFrame([base | {"reversal_share": 0.5}])) == REPRODUCED
    agree = base | {"reversal": False, "kendall_tau": 1.0, "tau_ci_low": 1 / 3, "reversal_share": 0.01}
    assert reversal_verdict(pd.DataFrame([agree])) == OPPOSITE
    assert reversal_verdict(pd.DataFrame([agree | {"tau_ci_low": -1 / 3}])) == NO_DIFFERENCE
    assert reversal_verdict(pd.DataFrame(columns=list(base))) == UNTESTABLE


def test_architecture_effect_hand_computed() -> None:
    # arch a: 1, 3; arch b: 5, 7 → grand mean 4, SS_total 9+1+1+9 = 20, SS_between 2·4 + 2·4 = 16 → η² 0.8
    df = pd.DataFrame({"arch": ["a", "a", "b", "b"], "sample_pk": [0, 1, 0, 1], "x": [1.0, 3, 5, 7],
                       "flat": [2.0, 2, 2, 2], "y": [1.0, 5, 1, 5]})
    point, boot = architecture_effect(df, ["x", "flat", "y"], n_boot=100)
    assert point == pytest.approx({"x": 0.8, "flat": 0.0, "y": 0.0})
    assert boot.shape == (100, 3) and ((boot >= 0) & (boot <= 1)).all()
    assert (boot[:, 1] == 0).all()  # a constant column: nothing to explain


def _drift_rows(iou: dict[str, float], disp: dict[str, float], n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"arch": a, "sample_pk": i, "iou_top20": iou[a] + rng.normal(0, 0.05),
                          "com_displacement": disp[a] + rng.normal(0, 0.01)} for a in ARCHS for i in range(n)])


def test_architecture_dependence_known_both_ways() -> None:
    # the study's pattern: IoU drift 0.2 / 0.5 / 0.8 by architecture, displacement 0.03 everywhere
    study = architecture_dependence(_drift_rows({"densenet": 0.8, "resnet": 0.5, "inception": 0.2},
                                                dict.fromkeys(ARCHS, 0.03)), n_boot=300)
    assert study["direction"] == "support"
    assert study["eta_iou"][0] > 0.9 and study["eta_displacement"][0] < 0.1
    means = study["means"]["iou_drift"]
    assert means["densenet"][0] == pytest.approx(0.2, abs=0.02) and means["inception"][0] == pytest.approx(0.8, abs=0.02)
    # the reverse: IoU alike, displacement 0.02 / 0.06 / 0.10 (five SDs apart)
    reverse = architecture_dependence(_drift_rows(dict.fromkeys(ARCHS, 0.5),
                                                  {"densenet": 0.02, "resnet": 0.06, "inception": 0.10}), n_boot=300)
    assert reverse["direction"] == "opposite"
    # neither depends on the architecture: the difference of η² is not decided
    neither = architecture_dependence(_drift_rows(dict.fromkeys(ARCHS, 0.5), dict.fromkeys(ARCHS, 0.03), seed=4),
                                      n_boot=300)
    assert neither["direction"] == "unclear"
