"""Reading-study statistics: hand-computed values, the reference libraries (krippendorff, statsmodels,
scipy) and invariants; the MRMC model on simulated readers and cases with known effects."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import ndimage, stats
from statsmodels.stats.inter_rater import fleiss_kappa

from xai_core.errors import ConfigError, InvalidValueError, ShapeError
from xai_core.metrics.statistics import clustered_summary
from xai_core.review.statistics import (
    _degenerate,
    agreement,
    case_means,
    catch_failures,
    click_distances,
    mean_ratings,
    metric_correlation,
    mrmc_comparison,
    weighted_spearman,
)


def ratings_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A ratings frame of the input contract; each row gives at least reviewer, sample_pk and
    evidence_match, the rest defaults to one checkpoint's non-catch rating."""
    base = {"method": "saliency", "checkpoint_id": 1, "is_catch": False, "arch": "vgg16", "pretrain": "mri",
            "degree": "all", "plausible": True, "point_x": np.nan, "point_y": np.nan}
    df = pd.DataFrame([base | r for r in rows])
    if "case_key" not in df:
        df["case_key"] = df["method"] + "/" + df["checkpoint_id"].astype(str) + "/" + df["sample_pk"].astype(str)
    return df.astype({"checkpoint_id": "Int64", "evidence_match": "int64", "plausible": bool, "is_catch": bool})


def by_reader(matrix: list[list[float]], **extra: Any) -> pd.DataFrame:
    """Ratings from a reader × case matrix (NaN: not read), reviewers r0, r1, … and cases c0, c1, …"""
    return ratings_frame([{"reviewer": f"r{i}", "case_key": f"c{j}", "sample_pk": j, "evidence_match": int(v), **extra}
                          for i, row in enumerate(matrix) for j, v in enumerate(row) if np.isfinite(v)])


# ----------------------------------------------------------------------------------------- means


def test_mean_ratings_hand_computed_and_catch_trials() -> None:
    df = ratings_frame([
        {"reviewer": "ann", "sample_pk": 1, "evidence_match": 4, "plausible": True},
        {"reviewer": "bob", "sample_pk": 1, "evidence_match": 2, "plausible": False},
        {"reviewer": "ann", "sample_pk": 2, "evidence_match": 5, "plausible": True},
        {"reviewer": "bob", "sample_pk": 2, "evidence_match": 1, "method": "baseline_random", "is_catch": True,
         "checkpoint_id": None},
    ])
    out = mean_ratings(df, ["method"], n_boot=500)
    assert list(out["method"]) == ["saliency"]  # the catch trial is left out
    row = out.iloc[0]
    assert (row.n_ratings, row.n_readers, row.n_cases) == (3, 2, 2)
    assert row.evidence_match == pytest.approx(11 / 3) and row.plausible == pytest.approx(2 / 3)
    # resampling images: the means of a resample lie between image 1's (3, 1/2) and image 2's (5, 1)
    assert 3 <= row.evidence_ci_low <= 11 / 3 <= row.evidence_ci_high <= 5
    assert 0.5 <= row.plausible_ci_low <= 2 / 3 <= row.plausible_ci_high <= 1
    with_catch = mean_ratings(df, ["is_catch"], n_boot=100).set_index("is_catch")
    assert with_catch.loc[True, "evidence_match"] == 1 and with_catch.loc[True, "n_ratings"] == 1
    with pytest.raises(ConfigError, match="lack column"):
        mean_ratings(df, ["reader_group"])


def test_mean_ratings_ci_is_the_image_clustered_bootstrap() -> None:
    rng = np.random.default_rng(4)
    df = ratings_frame([{"reviewer": f"r{r}", "sample_pk": int(s), "evidence_match": int(rng.integers(1, 6)),
                         "plausible": bool(rng.random() < 0.4)}
                        for r in range(3) for s in range(25) if rng.random() < 0.8])
    out = mean_ratings(df, [], n_boot=700, seed=3).iloc[0]
    ref = clustered_summary(df.assign(g=1), "evidence_match", ["g"], n_boot=700, seed=3).iloc[0]
    assert (out.evidence_match, out.evidence_ci_low, out.evidence_ci_high) == pytest.approx(
        (ref["mean"], ref.ci_low, ref.ci_high))
    assert out.n_cases == ref.n_clusters == df.sample_pk.nunique()


def test_mean_ratings_invariant_to_duplicating_every_rating_and_degree_order() -> None:
    rng = np.random.default_rng(0)
    df = ratings_frame([{"reviewer": f"r{r}", "sample_pk": s, "degree": d, "evidence_match": int(rng.integers(1, 6)),
                         "plausible": bool(rng.random() < 0.5)}
                        for r in range(3) for s in range(12) for d in ("all", "tl", "2conv")])
    once = mean_ratings(df, ["degree"], n_boot=400)
    twice = mean_ratings(pd.concat([df, df]), ["degree"], n_boot=400)
    assert list(once["degree"]) == ["tl", "2conv", "all"]  # the study's order, not alphabetical
    cols = ["evidence_match", "evidence_ci_low", "evidence_ci_high",
            "plausible", "plausible_ci_low", "plausible_ci_high"]
    np.testing.assert_allclose(twice[cols].to_numpy(float), once[cols].to_numpy(float), rtol=1e-12)
    assert list(twice["n_ratings"]) == [2 * n for n in once["n_ratings"]]
    assert list(twice["n_readers"]) == list(once["n_readers"]) == [3, 3, 3]


# ------------------------------------------------------------------------------------------ MRMC


def simulate_mrmc(seed: int, effect: float = 0.8, readers: int = 10, cases: int = 20) -> pd.DataFrame:
    """Every reader rates every case under two methods: y = 3 + effect·[b] + reader + case +
    reader×method + case×method + noise (sd 0.5, 0.7, 0.4, 0.3, 0.5)."""
    rng = np.random.default_rng(seed)
    r, c, m = (a.ravel() for a in np.meshgrid(np.arange(readers), np.arange(cases), np.arange(2), indexing="ij"))
    y = (3 + effect * m + rng.normal(0, 0.5, readers)[r] + rng.normal(0, 0.7, cases)[c]
         + rng.normal(0, 0.4, (readers, 2))[r, m] + rng.normal(0, 0.3, (cases, 2))[c, m] + rng.normal(0, 0.5, r.size))
    return pd.DataFrame({"reviewer": [f"reader{i}" for i in r], "sample_pk": c, "method": np.array(["a", "b"])[m],
                         "is_catch": False, "score": y})


Simulated = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def simulated() -> Simulated:
    """The simulated study and its MRMC comparison (one fit shared by the tests below)."""
    df = simulate_mrmc(0)
    return df, mrmc_comparison(df, outcome="score")


def test_mrmc_recovers_the_method_effect_with_a_wider_se_than_pooled_ols(simulated: Simulated) -> None:
    df, out = simulated
    assert len(out) == 1
    row = out.iloc[0]
    assert row.status == "ok" and (row.level, row.reference) == ("b", "a")
    assert (row.n_ratings, row.n_readers, row.n_cases) == (400, 10, 20)
    assert row.ci_low < 0.8 < row.ci_high
    assert row.df == 9 and row.ci_high - row.ci_low == pytest.approx(2 * 2.262157 * row.se)  # t, readers - 1 df
    assert row.p_value == pytest.approx(2 * stats.t.sf(abs(row.estimate / row.se), 9))
    pooled = sm.OLS(df["score"].to_numpy(), sm.add_constant((df["method"] == "b").to_numpy(float))).fit()
    assert row.estimate == pytest.approx(pooled.params[1])  # balanced design: the same mean difference
    assert row.se > pooled.bse[1]  # readers and cases as random effects: the honest, wider SE
    # the SE of the contrast with the true variances: sqrt(2·s_RT²/R + 2·s_CT²/C + 2·s_e²/(R·C)) = 0.21
    assert row.se == pytest.approx(np.sqrt(2 * 0.16 / 10 + 2 * 0.09 / 20 + 2 * 0.25 / 200), rel=0.5)
    variance = out.attrs["variance"]
    assert set(variance) == {"reader", "case", "reader_x_method", "case_x_method", "residual"}
    assert variance["residual"] == pytest.approx(0.25, rel=0.3)


def test_mrmc_reference_level_flips_the_sign_and_catch_trials_are_left_out(simulated: Simulated) -> None:
    df, out = simulated
    a = out.iloc[0]
    catch = df[df.method == "a"].assign(method="baseline_random", is_catch=True, score=1.0)
    flipped = mrmc_comparison(pd.concat([df, catch]), outcome="score", reference="b")
    b = flipped.iloc[0]
    assert len(flipped) == 1 and (b.level, b.reference, b.n_ratings) == ("a", "b", 400)
    assert b.estimate == pytest.approx(-a.estimate, abs=1e-6) and b.se == pytest.approx(a.se, rel=1e-3)
    with pytest.raises(ConfigError, match="not a level"):
        mrmc_comparison(df, outcome="score", reference="gradcam")


def test_mrmc_not_testable_instead_of_a_pooled_test() -> None:
    df = simulate_mrmc(0)
    cases = [
        (df[df.reviewer == "reader0"], "1 reader(s)"),
        (df[df.method == "a"], "1 level(s) of method"),
        (df[df.sample_pk < 4], "4 case(s)"),
    ]
    # every reader gives every case the same score: no reader or residual variance, the fit is singular
    small = simulate_mrmc(0, readers=3, cases=8)
    same = small[small.reviewer == "reader0"][["sample_pk", "method", "score"]]
    cases.append((small[["reviewer", "sample_pk", "method", "is_catch"]].merge(same, on=["sample_pk", "method"]),
                  "singular fit"))
    for frame, reason in cases:
        out = mrmc_comparison(frame, outcome="score")
        assert len(out) == 1 and out.status.iloc[0].startswith("not testable: ") and reason in out.status.iloc[0]
        assert out[["estimate", "se", "ci_low", "ci_high", "p_value"]].isna().all(axis=None)


def test_mrmc_singular_rule() -> None:
    names = ["reader", "case", "reader_x_method", "case_x_method"]

    def fit(vcomp: list[float], bse: list[float] = [0.1, 0.2]) -> SimpleNamespace:  # noqa: B006
        return SimpleNamespace(vcomp=np.array(vcomp), bse_fe=np.array(bse))

    # one zero component leaves a valid random-reader random-case model; it is named in the note
    assert _degenerate(fit([0.0, 0.4, 0.1, 0.1]), [], names, 1.0) == (None, ["reader"])
    why, zero = _degenerate(fit([1e-6, 0.4, 1e-7, 0.1]), [], names, 1.0)  # readers ignored: a pooled test
    assert str(why).startswith("singular fit (every reader variance") and zero == ["reader", "reader_x_method"]
    assert "case" in str(_degenerate(fit([0.3, 0.0, 0.1, 0.0]), [], names, 1.0)[0])
    hessian = ["The Hessian matrix at the estimated parameter values is not positive definite."]
    assert "Hessian" in str(_degenerate(fit([0.3, 0.4, 0.1, 0.1]), hessian, names, 1.0)[0])
    assert "standard errors" in str(_degenerate(fit([0.3, 0.4, 0.1, 0.1], [0.1, np.nan]), [], names, 1.0)[0])


# ------------------------------------------------------------------------------------- agreement

# Krippendorff's documented ordinal example (krippendorff.alpha docstring; 4 coders × 12 units): 0.815
KRIPPENDORFF_ORDINAL = [[1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
                        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
                        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
                        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan]]
# Fleiss' kappa, the Wikipedia example: 10 subjects × 5 categories, 14 raters each; kappa = 0.210
FLEISS_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def fleiss_ratings() -> pd.DataFrame:
    rows = []
    for case, counts in enumerate(FLEISS_TABLE):
        values = np.repeat(np.arange(1, 6), counts)
        rows += [{"reviewer": f"r{i:02d}", "case_key": f"c{case}", "sample_pk": case, "evidence_match": int(v)}
                 for i, v in enumerate(values)]
    return ratings_frame(rows)


def test_agreement_krippendorff_documented_example() -> None:
    df = by_reader(KRIPPENDORFF_ORDINAL)
    out = agreement(df, n_boot=300).set_index("measure")
    alpha = out.loc["krippendorff_alpha_ordinal"]
    assert round(alpha.value, 3) == 0.815
    assert alpha.value == pytest.approx(krippendorff.alpha(KRIPPENDORFF_ORDINAL, level_of_measurement="ordinal"))
    assert alpha.ci_low <= alpha.value <= alpha.ci_high
    assert (alpha.n_cases, alpha.n_readers) == (11, 4)  # unit 11 has one rating: not pairable
    # every plausible is True: no variation, so alpha is undefined and says so
    assert np.isnan(out.loc["krippendorff_alpha_nominal", "value"])
    assert out.loc["krippendorff_alpha_nominal", "note"].startswith("not testable: ")


def test_agreement_plausible_nominal_hand_computed() -> None:
    # 2 readers × 4 cases, plausible (T,T), (F,F), (T,F), (T,T): coincidences o_TT = 4, o_FF = 2,
    # o_TF = o_FT = 1; n_T = 5, n_F = 3, n = 8: alpha = 1 - (n-1)·2 / (2·n_T·n_F) = 1 - 14/30
    plaus = [[True, False, True, True], [True, False, False, True]]
    df = ratings_frame([{"reviewer": f"r{i}", "case_key": f"c{j}", "sample_pk": j, "evidence_match": 3,
                         "plausible": p} for i, row in enumerate(plaus) for j, p in enumerate(row)])
    out = agreement(df, n_boot=200).set_index("measure")
    assert out.loc["krippendorff_alpha_nominal", "value"] == pytest.approx(16 / 30)


def test_agreement_fleiss_wikipedia_example() -> None:
    out = agreement(fleiss_ratings(), n_boot=300).set_index("measure")
    kappa = out.loc["fleiss_kappa"]
    assert round(kappa.value, 3) == 0.210
    assert kappa.value == pytest.approx(fleiss_kappa(np.array(FLEISS_TABLE)))
    assert (kappa.n_cases, kappa.n_readers) == (10, 14)
    assert kappa.note.startswith("k = 14 ratings per case") and "10 of 10 cases" in kappa.note
    assert kappa.ci_low < kappa.value < kappa.ci_high


def test_agreement_perfect_is_one_and_readers_relabelled_change_nothing() -> None:
    perfect = by_reader([[1, 2, 3, 4, 5, 2], [1, 2, 3, 4, 5, 2], [1, 2, 3, 4, np.nan, 2]])
    out = agreement(perfect, n_boot=200).set_index("measure")
    assert out.loc["krippendorff_alpha_ordinal", "value"] == pytest.approx(1.0)
    assert out.loc["krippendorff_alpha_ordinal", ["ci_low", "ci_high"]].tolist() == pytest.approx([1.0, 1.0])
    assert out.loc["fleiss_kappa", "value"] == pytest.approx(1.0)
    rng = np.random.default_rng(5)
    matrix = rng.integers(1, 6, size=(5, 30)).astype(float)
    matrix[rng.random(matrix.shape) < 0.4] = np.nan
    df = by_reader(matrix.tolist(), plausible=False)
    df["plausible"] = rng.random(len(df)) < 0.5
    renamed = df.assign(reviewer=df.reviewer.map({f"r{i}": f"z{4 - i}" for i in range(5)}))
    a, b = agreement(df, n_boot=200), agreement(renamed, n_boot=200)
    alphas = ["krippendorff_alpha_ordinal", "krippendorff_alpha_nominal"]
    np.testing.assert_allclose(a.set_index("measure").loc[alphas, ["value", "ci_low", "ci_high"]].to_numpy(float),
                               b.set_index("measure").loc[alphas, ["value", "ci_low", "ci_high"]].to_numpy(float))


def test_agreement_fleiss_uses_the_first_k_ratings_by_reviewer_name() -> None:
    # ratings per case: 3, 3, 3, 2 → k = 3 and the 2-rating case is left out; case c0's 4th reader
    # ("zed") is not among the first 3 by name and is left out too
    rows = [("amy", "c0", 1), ("bo", "c0", 1), ("cy", "c0", 2), ("zed", "c0", 5),
            ("amy", "c1", 4), ("bo", "c1", 4), ("cy", "c1", 4),
            ("amy", "c2", 2), ("bo", "c2", 3), ("cy", "c2", 3),
            ("amy", "c3", 5), ("bo", "c3", 5)]
    df = ratings_frame([{"reviewer": r, "case_key": c, "sample_pk": int(c[1]), "evidence_match": v}
                        for r, c, v in rows])
    kappa = agreement(df, n_boot=200).set_index("measure").loc["fleiss_kappa"]
    table = np.array([[2, 1, 0, 0, 0], [0, 0, 0, 3, 0], [0, 1, 2, 0, 0]])
    assert kappa.value == pytest.approx(fleiss_kappa(table))
    assert (kappa.n_cases, kappa.n_readers) == (3, 3)
    assert kappa.note.startswith("k = 3 ratings per case") and "3 of 4 cases" in kappa.note
    # a tie between counts 2 and 3 takes k = 2: every case read twice or more is used
    tie = pd.concat([df, ratings_frame([{"reviewer": r, "case_key": c, "sample_pk": 9, "evidence_match": 2}
                                        for r, c in [("amy", "c8"), ("bo", "c8"), ("amy", "c9"), ("bo", "c9")]])])
    assert agreement(tie, n_boot=50).set_index("measure").loc["fleiss_kappa", "n_cases"] == 6


def test_agreement_not_testable_and_bad_input() -> None:
    single = by_reader([[1, 2, np.nan, np.nan], [np.nan, np.nan, 3, 4]])
    out = agreement(single, n_boot=50)
    assert out["value"].isna().all() and out["note"].str.startswith("not testable: ").all()
    assert list(out["measure"]) == ["krippendorff_alpha_ordinal", "krippendorff_alpha_nominal", "fleiss_kappa"]
    twice = pd.concat([single, single.iloc[:1]])
    with pytest.raises(InvalidValueError, match="more than once"):
        agreement(twice)
    with pytest.raises(InvalidValueError, match=r"allowed values are \[1, 2, 3, 4, 5\]"):
        agreement(by_reader([[1, 7], [1, 2]]))


# ---------------------------------------------------------------------------------- catch trials


def test_catch_failures_rates_wilson_and_flags() -> None:
    catch = {"is_catch": True, "method": "baseline_random"}
    rows = ([{"reviewer": "ann", "sample_pk": i, "evidence_match": v, **catch} for i, v in enumerate([5, 4, 1])]
            + [{"reviewer": "bob", "sample_pk": 0, "evidence_match": 5, **catch}]
            + [{"reviewer": "cat", "sample_pk": 0, "evidence_match": 5}]
            + [{"reviewer": "dan", "sample_pk": i, "evidence_match": v, **catch} for i, v in enumerate([3, 2])])
    out = catch_failures(ratings_frame(rows)).set_index("reviewer")
    assert out.loc["ann", ["n_catch", "n_failed"]].tolist() == [3, 2]
    z, n, p = stats.norm.ppf(0.975), 3, 2 / 3  # Wilson score interval, by hand
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert out.loc["ann", ["rate", "ci_low", "ci_high"]].tolist() == pytest.approx([p, centre - half, centre + half])
    assert out["flagged"].to_dict() == {"ann": True, "bob": False, "cat": False, "dan": False}  # bob: 1 catch trial
    assert out.loc["cat", "n_catch"] == 0 and np.isnan(out.loc["cat", "rate"])
    assert out.loc["dan", "rate"] == 0
    lenient = catch_failures(ratings_frame(rows), threshold=3).set_index("reviewer")
    assert lenient.loc["dan", "rate"] == 0.5 and not lenient.loc["dan", "flagged"]  # needs rate > 0.5


# ------------------------------------------------------------------------- ratings versus metrics


def test_weighted_spearman_equals_scipy_on_the_repeated_sample() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 4, 12).astype(float), rng.normal(size=12)  # ties in x
    weights = rng.integers(0, 3, size=(6, 12))
    got = weighted_spearman(x, y, weights)
    for w, rho in zip(weights, got, strict=True):
        assert rho == pytest.approx(stats.spearmanr(np.repeat(x, w), np.repeat(y, w)).statistic)


def test_case_means_and_metric_correlation() -> None:
    rng = np.random.default_rng(1)
    rows = [{"reviewer": f"r{r}", "sample_pk": s, "method": m, "checkpoint_id": 7,
             "evidence_match": int(rng.integers(1, 6))}
            for r in range(2) for s in range(10) for m in ("gradcam", "saliency")]
    rows.append({"reviewer": "r0", "sample_pk": 0, "method": "baseline_sobel", "is_catch": True, "evidence_match": 5})
    df = ratings_frame(rows)
    cm = case_means(df)
    assert len(cm) == 20 and set(cm.method) == {"gradcam", "saliency"}
    first = df[(df.sample_pk == 3) & (df.method == "gradcam")]
    assert cm.set_index(["method", "sample_pk"]).loc[("gradcam", 3), "evidence_match"] == first.evidence_match.mean()
    keys = cm[["checkpoint_id", "method", "sample_pk"]]
    metrics = pd.concat([
        keys.assign(metric="precision", value=2 * cm.evidence_match + 1),  # monotone: rho = 1
        keys.assign(metric="iou", value=rng.normal(size=len(cm))),
        keys.head(4).assign(metric="rare", value=1.0),
        keys.assign(metric="other_checkpoint", value=1.0, checkpoint_id=8),  # no rated map: no row
    ]).astype({"checkpoint_id": "int64"})
    out = metric_correlation(cm, metrics, n_boot=300).set_index("metric")
    assert set(out.index) == {"precision", "iou", "rare"}
    assert out.loc["precision", ["rho", "ci_low", "ci_high"]].tolist() == pytest.approx([1, 1, 1])
    iou = metrics[metrics.metric == "iou"].value
    assert out.loc["iou", "rho"] == pytest.approx(stats.spearmanr(cm.evidence_match, iou).statistic)
    assert out.loc["iou", "ci_low"] <= out.loc["iou", "rho"] <= out.loc["iou", "ci_high"]
    assert (out.loc["iou", "n_cases"], out.loc["iou", "n_images"]) == (20, 10)
    assert np.isnan(out.loc["rare", "rho"]) and out.loc["rare", "note"].startswith("not testable: 4 rated")


# ---------------------------------------------------------------------------------------- clicks


def test_click_distances_hand_computed() -> None:
    masks = np.zeros((4, 8, 10), bool)
    masks[:, 2:4, 2:4] = True  # lesion rows 2-3, columns 2-3
    masks[3] = False  # no lesion
    maps = np.zeros((4, 8, 10))
    maps[:, 7, 9] = 1.0  # peak at row 7, column 9
    points = np.array([[2.5, 3.9],  # pixel (3, 2): inside
                       [7.0, 7.0],  # pixel (7, 7): nearest lesion pixel (3, 3): 4 down, 4 across
                       [np.nan, np.nan],  # no click
                       [9.0, 7.0]])  # on the peak, empty mask
    out = click_distances(points, masks, maps)
    assert out["inside_lesion"].tolist() == [True, False, pd.NA, False]
    np.testing.assert_allclose(out["to_lesion_px"], [0, np.hypot(4, 4), np.nan, np.nan])
    np.testing.assert_allclose(out["to_peak_px"], [np.hypot(4, 7), 2, np.nan, 0])


def test_click_distances_match_a_per_image_edt_and_reject_bad_clicks() -> None:
    rng = np.random.default_rng(3)
    masks = ndimage.binary_dilation(rng.random((6, 16, 12)) < 0.01, iterations=1, structure=np.ones((1, 3, 3)))
    maps = rng.random((6, 16, 12))
    points = np.column_stack([rng.uniform(0, 12, 6), rng.uniform(0, 16, 6)])
    out = click_distances(points, masks, maps)
    for i in range(6):
        r, c = int(points[i, 1]), int(points[i, 0])
        expected = ndimage.distance_transform_edt(~masks[i])[r, c] if masks[i].any() else np.nan
        np.testing.assert_allclose(out["to_lesion_px"][i], expected)
        pr, pc = np.unravel_index(maps[i].argmax(), maps[i].shape)
        assert out["to_peak_px"][i] == pytest.approx(np.hypot(r - pr, c - pc))
    with pytest.raises(InvalidValueError, match=r"click 1 at \(x=12, y=3\) lies outside the 12×16 image"):
        click_distances(np.array([[1.0, 1.0], [12.0, 3.0]]), masks[:2], maps[:2])
    with pytest.raises(InvalidValueError, match="outside"):
        click_distances(np.array([[-0.5, 1.0]]), masks[:1], maps[:1])
    with pytest.raises(InvalidValueError, match="only one coordinate"):
        click_distances(np.array([[np.nan, 1.0]]), masks[:1], maps[:1])
    with pytest.raises(ShapeError):
        click_distances(points[:2], masks, maps)
