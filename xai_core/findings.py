"""The two studies' headline findings, measured on the current workspace.

Each :class:`Finding` states a claim as its study makes it — with its direction, per fine-tuning
degree where the study makes it per degree — the numbers this workspace gives, a verdict and the
rule behind the verdict (every threshold named, with its reason). Verdicts:

* ``reproduced`` — the workspace shows the study's direction;
* ``not reproduced (opposite direction)`` — it shows the opposite direction;
* ``not reproduced (no clear difference)`` — the 95% CI does not decide;
* ``not reproduced (mixed directions)`` — some degrees or sources one way, some the other;
* ``not testable here`` — a precondition fails (too few sources or degrees, a model near chance
  accuracy: which checkpoint and its accuracy are named).

CIs come from the clustered bootstrap over test images
(:func:`xai_core.metrics.statistics.cluster_bootstrap`): the same images are explained by every
checkpoint and method, so images are the independent units, not rows. The Overview page and the
report both show these findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from xai_core.attribution import equivalent_pairs
from xai_core.metrics import CHANCE_METHODS
from xai_core.metrics.order import degree_rank, ordered_degrees
from xai_core.metrics.queries import checkpoint_info, drift_frame, gt_frame, phase_accuracy_table, same_method
from xai_core.metrics.statistics import (
    NEAR_CHANCE_MARGIN,
    architecture_effect,
    ci_text,
    cluster_bootstrap,
    contrast_ci,
    near_chance,
    ranking_uncertainty,
    spearman_rows,
    stratified_boot,
)

MRI = "Oliveira et al. 2024 (MRI)"
CXR = "Elangovan & Ting 2026 (chest X-ray)"
REPRODUCED = "reproduced"
OPPOSITE = "not reproduced (opposite direction)"
NO_DIFFERENCE = "not reproduced (no clear difference)"
MIXED = "not reproduced (mixed directions)"
UNTESTABLE = "not testable here"
VERDICTS = (REPRODUCED, OPPOSITE, NO_DIFFERENCE, MIXED, UNTESTABLE)
# how each verdict reads at a glance (badge colours on the Overview, CSS classes in the report)
VERDICT_TONES = {REPRODUCED: "good", OPPOSITE: "bad", MIXED: "warn", NO_DIFFERENCE: "warn", UNTESTABLE: "none"}

# Thresholds of the verdicts; each is named with its reason in the text the user reads.
CONFIDENCE = 0.95
N_BOOT = 2000
LOW_DEGREES = ("tl", "1conv", "2conv")
WITHIN_DOMAIN = ("mri",)
OUT_OF_DOMAIN = ("natural", "imagenet")
MIN_TREND_DEGREES = 3
ALPHA = 0.05
PARTIAL_IOU = 0.8
STEADY_ACCURACY = 0.05
CLEAR_REVERSAL_SHARE = 0.5  # a reversal must hold in at least half the bootstrap replicates

NEAR_CHANCE_RULE = (
    f"A checkpoint counts as near chance when its test accuracy is below chance 1/K + {NEAR_CHANCE_MARGIN:.2f} "
    f"for K classes (below {0.5 + NEAR_CHANCE_MARGIN:.2f} for 2 classes, i.e. within {NEAR_CHANCE_MARGIN:.2f} of "
    f"chance 0.50; below {0.2 + NEAR_CHANCE_MARGIN:.2f} for 5 classes): "
    "a model that barely beats guessing has learned no evidence to explain, so its maps can neither confirm "
    "nor refute a claim about explanations; its rows are left out."
)
CI_RULE = (
    f"CIs: {CONFIDENCE:.0%} percentile intervals of a clustered bootstrap ({N_BOOT} resamples) over test "
    "images — each resample draws images with replacement and keeps all their rows (every checkpoint and "
    "method), since the same images are reused by all of them."
)


@dataclass(frozen=True)
class Finding:
    """One claim of a study, what this workspace shows, the verdict and how it was decided."""

    study: str
    claim: str
    evidence: str
    verdict: str
    rule: str = ""  # how the verdict was decided (thresholds and reasons) or why it cannot be tested


@dataclass(frozen=True)
class Health:
    """Which checkpoints work (test accuracy not near chance), with their accuracies."""

    table: pd.DataFrame  # checkpoint_id (index), checkpoint, accuracy, num_classes, near_chance

    @classmethod
    def load(cls) -> Health:
        info = checkpoint_info().set_index("checkpoint_id")
        info["near_chance"] = near_chance(info["accuracy"], info["num_classes"])  # NaN (no predictions) too
        return cls(info)

    def working(self, ids: Sequence[int]) -> list[int]:
        return [int(i) for i in ids if i in self.table.index and not self.table.at[i, "near_chance"]]

    def describe(self, checkpoint_id: int) -> str:
        """``"vgg-natural-tl (test accuracy 0.51)"``."""
        row = self.table.loc[checkpoint_id]
        acc = "no test predictions" if not np.isfinite(row["accuracy"]) else f"test accuracy {row['accuracy']:.2f}"
        return f"{row['checkpoint']} ({acc})"

    def excluded(self, ids: Sequence[int]) -> list[str]:
        return [self.describe(int(i)) for i in sorted(set(ids)) if int(i) not in self.working([i])]


def _pct(point: float, lo: float, hi: float, signed: bool = False) -> str:
    return ci_text(point, lo, hi, signed=signed)


def ci_direction(lo: float, hi: float) -> str:
    """``support`` (CI above 0), ``opposite`` (below 0) or ``unclear`` (contains 0 or undefined)."""
    if np.isfinite(lo) and lo > 0:
        return "support"
    if np.isfinite(hi) and hi < 0:
        return "opposite"
    return "unclear"


def combine(directions: Sequence[str]) -> str:
    """The verdict over several tested cells (degrees, sources): reproduced when most cells support
    the claim and none is opposite; opposite when most are opposite and none supports; mixed when
    both occur; otherwise no clear difference."""
    n, s, o = len(directions), directions.count("support"), directions.count("opposite")
    if s and o:
        return MIXED
    if s > n / 2:
        return REPRODUCED
    if o > n / 2:
        return OPPOSITE
    return NO_DIFFERENCE


COMBINE_RULE = ("Reproduced when most tested cells show the study's direction and none the opposite; "
                "opposite direction when most show the opposite and none the study's; mixed when both occur; "
                "otherwise no clear difference.")


def working_rows(frame: pd.DataFrame, health: Health, column: str = "checkpoint_id") -> tuple[pd.DataFrame, list[str]]:
    ids = frame[column].unique()
    keep = health.working(ids)
    return frame[frame[column].isin(keep)], health.excluded(ids)


def excluded_text(excluded: list[str]) -> str:
    return f" Left out as near chance: {', '.join(excluded)}." if excluded else ""


def _domain(pretrain: pd.Series) -> pd.Series:
    return pretrain.map(lambda p: "within" if p in WITHIN_DOMAIN else "out" if p in OUT_OF_DOMAIN else None)


def _pretraining_finding(gt: pd.DataFrame, health: Health, n_boot: int) -> Finding:
    within, out_names = "/".join(WITHIN_DOMAIN), "/".join(OUT_OF_DOMAIN)
    claim = (f"At low fine-tuning degrees ({', '.join(LOW_DEGREES)}), within-domain ({within}) pre-training gives "
             f"higher explanation precision than out-of-domain ({out_names}) pre-training.")
    rule = (f"Per low degree, the {CONFIDENCE:.0%} CI of the difference in mean precision over all methods "
            f"({within} − out-of-domain, same images) decides: above 0 is the study's direction, below 0 the "
            f"opposite, containing 0 no clear difference. Low degrees = at most 2 of the 5 conv blocks trained, "
            f"where the pre-trained features stay and the study finds the source matters. {COMBINE_RULE} "
            f"{NEAR_CHANCE_RULE} {CI_RULE}")
    rows = gt.assign(domain=_domain(gt["pretrain"])).dropna(subset=["domain"])
    rows = rows[rows["degree"].isin(LOW_DEGREES)]
    present = {d: sorted(set(rows.loc[rows["domain"] == d, "pretrain"])) for d in ("within", "out")}
    if not present["within"] or not present["out"]:
        have = ", ".join(sorted(set(gt["pretrain"]))) or "none"
        return Finding(MRI, claim, f"pre-training sources evaluated at low degrees: {have}", UNTESTABLE,
                       f"Needs checkpoints pre-trained within domain ({within}) and out of domain ({out_names}) at "
                       f"a low degree ({', '.join(LOW_DEGREES)}); train them with `xaudit train-grid`.")
    work, excluded = working_rows(rows, health)
    groups, boot = cluster_bootstrap(work, "precision", ["domain", "degree"], n_boot=n_boot)
    col = {(r.domain, r.degree): i for i, r in enumerate(groups.itertuples())}
    out_label = "/".join(present["out"])
    parts, directions, untested = [], [], []
    for degree in ordered_degrees(rows["degree"]):
        if ("within", degree) not in col or ("out", degree) not in col:
            untested.append(degree)
            continue
        i, j = col["within", degree], col["out", degree]
        point = groups["mean"].iat[i] - groups["mean"].iat[j]
        diff = contrast_ci(point, boot[:, i] - boot[:, j], CONFIDENCE)
        direction = ci_direction(diff[1], diff[2])
        directions.append(direction)
        a, b = (contrast_ci(groups["mean"].iat[k], boot[:, k], CONFIDENCE) for k in (i, j))
        label = {"support": f"{within} higher", "opposite": f"{out_label} higher (opposite)",
                 "unclear": "no clear difference"}[direction]
        parts.append(f"{degree}: {within} {_pct(*a)} vs {out_label} {_pct(*b)}, "
                     f"difference {_pct(*diff, signed=True)} — {label}")
    if not directions:
        return Finding(MRI, claim, "; ".join(parts) or "no low degree with working models of both domains",
                       UNTESTABLE, f"No low degree has working checkpoints of both domains.{excluded_text(excluded)} "
                       f"{NEAR_CHANCE_RULE}")
    evidence = "; ".join(parts) + (f". Not testable at {', '.join(untested)} (no working models of both domains "
                                   "there)" if untested else "") + "." + excluded_text(excluded)
    return Finding(MRI, claim, evidence, combine(directions), rule)


def _degree_finding(gt: pd.DataFrame, health: Health, n_boot: int) -> Finding:
    claim = ("Explanation precision rises with the fine-tuning degree, as a trend over all degrees "
             "(tl < 1conv < 2conv < 3conv < 4conv < all).")
    rule = (f"Per pre-training source, Spearman's rank correlation ρ between the degree order and the mean "
            f"precision per degree (over all methods); its {CONFIDENCE:.0%} CI above 0 is the study's rising trend, "
            f"below 0 a falling trend (opposite), containing 0 no clear trend. A trend needs at least "
            f"{MIN_TREND_DEGREES} degrees with working models (two points are not a trend). {COMBINE_RULE} "
            f"{NEAR_CHANCE_RULE} {CI_RULE}")
    work, excluded = working_rows(gt, health)
    groups, boot = cluster_bootstrap(work, "precision", ["pretrain", "degree"], n_boot=n_boot)
    parts, directions, short = [], [], []
    for source in sorted(set(gt["pretrain"])):
        idx = [i for i, r in enumerate(groups.itertuples()) if r.pretrain == source and r.degree != "-"]
        degrees = [groups["degree"].iat[i] for i in idx]
        if len(idx) < MIN_TREND_DEGREES:
            short.append(f"{source} ({', '.join(degrees) or 'none'})")
            continue
        order = np.array([degree_rank(d) for d in degrees])
        means = groups["mean"].to_numpy()[idx]
        rho = contrast_ci(spearman_rows(means, order)[0], spearman_rows(boot[:, idx], order), CONFIDENCE)
        direction = ci_direction(rho[1], rho[2])
        directions.append(direction)
        label = {"support": "rising", "opposite": "falling (opposite)", "unclear": "no clear trend"}[direction]
        steps = ", ".join(f"{d} {m:.3f}" for d, m in zip(degrees, means, strict=True))
        parts.append(f"{source}: {steps}; Spearman ρ {_pct(*rho, signed=True)} — {label}")
    if not directions:
        return Finding(MRI, claim, f"degrees with working models per source: {'; '.join(short) or 'none'}",
                       UNTESTABLE, f"A trend needs at least {MIN_TREND_DEGREES} fine-tuning degrees with working "
                       f"models for a source; train more degrees with `xaudit train-grid --degrees "
                       f"tl,1conv,2conv,3conv,4conv,all`.{excluded_text(excluded)}")
    evidence = "; ".join(parts) + (f". Too few degrees for a trend: {'; '.join(short)}" if short else "") + "." \
        + excluded_text(excluded)
    return Finding(MRI, claim, evidence, combine(directions), rule)


def _equivalence_text(methods: Sequence[str]) -> str:
    return "".join(f" {a} and {b} are the same method on ReLU networks (ε-LRP = Input×Gradient, Ancona et al. "
                   "2018): equal values are expected."
                   for a, b, _ in equivalent_pairs() if a in methods and b in methods)


def _methods_finding(gt: pd.DataFrame, health: Health, n_boot: int) -> Finding:
    claim = "Attribution methods differ in explanation precision."
    rule = (f"Friedman test across methods with images as blocks (each image's precision per method averaged over "
            f"the working checkpoints that classify it correctly; images missing a method are left out): "
            f"p < {ALPHA} is a difference (the conventional 5% level); Kendall's W (0 = identical rankings of the "
            f"methods on every image, 1 = the same strict ranking on every image) sizes it. With two methods, the "
            f"Wilcoxon signed-rank test. {NEAR_CHANCE_RULE} {CI_RULE}")
    work, excluded = working_rows(gt, health)
    per = work.pivot_table(index="sample_pk", columns="method", values="precision", aggfunc="mean").dropna()
    k, n = per.shape[1], per.shape[0]
    if k < 2 or n < 3:
        return Finding(MRI, claim, f"{k} method(s) on {n} image(s) with working models", UNTESTABLE,
                       "Needs at least 2 methods evaluated on the same 3+ correctly classified images."
                       + excluded_text(excluded))
    if k >= 3:
        chi2, p = stats.friedmanchisquare(*per.to_numpy().T)
        w = chi2 / (n * (k - 1))
        test = f"Friedman χ² = {chi2:.1f} over {n} images × {k} methods, p = {p:.2g}, Kendall's W = {w:.2f}"
    else:
        d = per.iloc[:, 0] - per.iloc[:, 1]
        p = stats.wilcoxon(d).pvalue if np.any(d != 0) else 1.0
        test = f"Wilcoxon signed-rank over {n} images, p = {p:.2g}"
    groups, boot = cluster_bootstrap(work[work["sample_pk"].isin(per.index)], "precision", ["method"], n_boot=n_boot)
    cis = [contrast_ci(groups["mean"].iat[i], boot[:, i], CONFIDENCE) for i in range(len(groups))]
    ranked = sorted(zip(groups["method"], cis, strict=True), key=lambda t: -t[1][0])
    listed = "; ".join(f"{m} {_pct(*c)}" for m, c in ranked)
    if len(ranked) > 6:
        listed = ("; ".join(f"{m} {_pct(*c)}" for m, c in ranked[:3]) + "; …; "
                  + "; ".join(f"{m} {_pct(*c)}" for m, c in ranked[-3:]))
    evidence = (f"{test}. Mean precision, highest first: {listed}."
                + _equivalence_text(list(per.columns)) + excluded_text(excluded))
    return Finding(MRI, claim, evidence, REPRODUCED if p < ALPHA else NO_DIFFERENCE, rule)


def _baseline_finding(gt: pd.DataFrame, baselines: pd.DataFrame, health: Health, n_boot: int) -> Finding:
    claim = "Some popular attribution methods do not beat a model-free edge-detection (Sobel) baseline."
    rule = (f"Per method, the {CONFIDENCE:.0%} CI of its mean precision minus the Sobel edge map's on the same "
            f"images: above 0 beats Sobel, otherwise it does not (below 0 or no clear difference). Reproduced when "
            f"at least one method does not beat Sobel; opposite direction when every method beats it. "
            f"{NEAR_CHANCE_RULE} {CI_RULE}")
    sobel = baselines[baselines["method"] == "baseline_sobel"]
    if sobel.empty:
        return Finding(MRI, claim, "no Sobel baseline stored", UNTESTABLE,
                       "The Sobel baseline rows are missing; run `xaudit evaluate`.")
    work, excluded = working_rows(pd.concat([gt, sobel]), health)
    if work.empty:
        return Finding(MRI, claim, "no rows of working models", UNTESTABLE,
                       excluded_text(excluded).strip() + " " + NEAR_CHANCE_RULE)
    groups, boot = cluster_bootstrap(work, "precision", ["method"], n_boot=n_boot)
    names = list(groups["method"])
    s = names.index("baseline_sobel")
    sobel_ci = contrast_ci(groups["mean"].iat[s], boot[:, s], CONFIDENCE)
    above, not_above = [], []
    for i, method in enumerate(names):
        if i == s:
            continue
        diff = contrast_ci(groups["mean"].iat[i] - groups["mean"].iat[s], boot[:, i] - boot[:, s], CONFIDENCE)
        direction = ci_direction(diff[1], diff[2])
        text = f"{method} {_pct(*diff, signed=True)}"
        (above if direction == "support" else not_above).append(
            text + ("" if direction == "support" else " (below)" if direction == "opposite" else " (no clear difference)"))
    evidence = (f"Sobel edge map precision {_pct(*sobel_ci)}. Methods not beating it (difference to Sobel): "
                f"{'; '.join(not_above) or 'none'}. Beating it: {len(above)} of {len(above) + len(not_above)}"
                f"{' (' + '; '.join(above[:4]) + ('; …' if len(above) > 4 else '') + ')' if above else ''}."
                + excluded_text(excluded))
    if not above and not not_above:
        return Finding(MRI, claim, evidence, UNTESTABLE, "No attribution method evaluated on working models.")
    return Finding(MRI, claim, evidence, REPRODUCED if not_above else OPPOSITE, rule)


def _drift_finding(drift: pd.DataFrame, health: Health, n_boot: int) -> Finding:
    claim = ("Fine-tuning changes the evidence: the TL and FT maps of the same correctly classified images overlap "
             "only partly, even where accuracy hardly changes.")
    rule = (f"'Overlap only partly' = the {CONFIDENCE:.0%} CI of the mean top-20% IoU between TL and FT maps lies "
            f"below {PARTIAL_IOU} (the maps share under {PARTIAL_IOU:.0%} of their top-20% pixels; unrelated maps "
            f"give about 0.11, identical ones 1.0); a CI above {PARTIAL_IOU} means the evidence stays (opposite "
            f"direction); a CI containing {PARTIAL_IOU}, no clear difference. Both checkpoints of a pair must work: "
            f"drift from or to a model near chance measures noise. Accuracy 'hardly changes' = |FT − TL| ≤ "
            f"{STEADY_ACCURACY} (about the 95% CI half-width of a test accuracy measured on a few hundred images). {NEAR_CHANCE_RULE} {CI_RULE}")
    if drift.empty:
        return Finding(CXR, claim, "no drift rows", UNTESTABLE, "No TL→FT drift rows yet; run `xaudit drift`.")
    pairs = drift[["checkpoint_a_id", "checkpoint_b_id"]].drop_duplicates()
    acc = health.table["accuracy"]
    pair_text, bad = {}, []
    for a, b in pairs.itertuples(index=False):
        text = f"{health.describe(a)} → {health.describe(b)}"
        if len(health.working([a, b])) < 2:
            bad.append(text)
        pair_text[(a, b)] = (text, acc.get(b, np.nan) - acc.get(a, np.nan))
    good = [k for k in pair_text if pair_text[k][0] not in bad]
    if not good:
        return Finding(CXR, claim, f"TL→FT pairs: {'; '.join(bad)}", UNTESTABLE,
                       f"Every TL→FT pair has a model near chance, so the drift between them is not evidence "
                       f"changing: {'; '.join(bad)}. {NEAR_CHANCE_RULE}")
    rows = drift.set_index(["checkpoint_a_id", "checkpoint_b_id"]).loc[good].reset_index()
    rows = rows.assign(pair=[f"{a}→{b}" for a, b in zip(rows["checkpoint_a_id"], rows["checkpoint_b_id"], strict=True)],
                       pooled="all")
    steady = [f"{a}→{b}" for a, b in good if abs(pair_text[(a, b)][1]) <= STEADY_ACCURACY]
    pooled_groups, pooled_boot = cluster_bootstrap(rows, "iou_top20", ["pooled"], n_boot=n_boot)
    iou = contrast_ci(pooled_groups["mean"].iat[0], pooled_boot[:, 0], CONFIDENCE)
    corr_groups, corr_boot = cluster_bootstrap(rows, "pearson", ["pooled"], n_boot=n_boot)
    corr = contrast_ci(corr_groups["mean"].iat[0], corr_boot[:, 0], CONFIDENCE)
    per_groups, per_boot = cluster_bootstrap(rows, "iou_top20", ["pair"], n_boot=n_boot)
    per = []
    for i, key in enumerate(per_groups["pair"]):
        a, b = map(int, key.split("→"))
        text, delta = pair_text[(a, b)]
        per.append(f"{text}, Δaccuracy {delta:+.2f}: IoU {_pct(*contrast_ci(per_groups['mean'].iat[i], per_boot[:, i]))}")
    evidence = (f"top-20% IoU {_pct(*iou)}, Pearson correlation {_pct(*corr)} over {len(good)} pair(s) of working "
                f"models: {'; '.join(per)}.")
    if steady:
        sub = rows[rows["pair"].isin(steady)]
        g, bt = cluster_bootstrap(sub, "iou_top20", ["pooled"], n_boot=n_boot)
        evidence += (f" Pairs whose accuracy changed by at most {STEADY_ACCURACY}: IoU "
                     f"{_pct(*contrast_ci(g['mean'].iat[0], bt[:, 0]))}.")
    else:
        evidence += f" No pair kept its accuracy within {STEADY_ACCURACY}, so 'even where accuracy hardly changes' is untested."
    if bad:
        evidence += f" Left out (a model near chance): {'; '.join(bad)}."
    verdict = REPRODUCED if iou[2] < PARTIAL_IOU else OPPOSITE if iou[1] > PARTIAL_IOU else NO_DIFFERENCE
    return Finding(CXR, claim, evidence, verdict, rule)


STUDY_AUC = 0.95  # "learned the task as the study's models did" (Elangovan & Ting: both phases above 0.99 AUC)


def _phases_finding(phases: pd.DataFrame) -> Finding:
    claim = ("Both phases work: the transfer-learning model (frozen backbone, head trained) and the fully "
             "fine-tuned model of each architecture classify well above chance (the study: both above 99% AUC), "
             "so the drift between them compares two models that learned the task.")
    rule = ("Each TL→FT pair's test accuracy and ROC-AUC (macro one-vs-rest with more than two classes) are stated. "
            f"Reproduced when both models of every pair reach an AUC of at least {STUDY_AUC} (the study: above "
            "0.99); not reproduced when no model is near chance but one stays below that AUC (it learned the task "
            "only partly: the drift is between weaker models than the study's); not testable here when either model "
            "of a pair is near chance — drift from or to a model that learned nothing says nothing about "
            "fine-tuning. " + NEAR_CHANCE_RULE)
    if phases.empty:
        return Finding(CXR, claim, "no TL→FT pairs", UNTESTABLE,
                       "No TL→FT checkpoint pairs yet; train them with `xaudit train --protocol tl-ft`.")

    def text(r: object) -> str:
        auc = lambda v: "" if not np.isfinite(v) else f", AUC {v:.3f}"  # noqa: E731
        flag = lambda ok: "" if ok else " — near chance"  # noqa: E731
        return (f"{r.arch} ({r.pretrain}, {r.tl_checkpoint} → {r.ft_checkpoint}): TL accuracy {r.tl_accuracy:.2f}"
                f"{auc(r.tl_auc)}{flag(r.tl_working)}; FT accuracy {r.ft_accuracy:.2f}{auc(r.ft_auc)}"
                f"{flag(r.ft_working)} (chance {r.chance:.2f})")

    evidence = "; ".join(text(r) for r in phases.itertuples()) + "."
    failing = phases[~phases["both_working"]]
    if not failing.empty:
        names = ", ".join(f"{r.arch} ({r.pretrain})" for r in failing.itertuples())
        return Finding(CXR, claim, evidence, UNTESTABLE,
                       f"A model of {names} is near chance, so its TL→FT drift is not evidence changing. " + rule)
    aucs = phases[["tl_auc", "ft_auc"]].astype(float)
    weak = phases[~((aucs >= STUDY_AUC) | aucs.isna()).all(axis=1)]
    if not weak.empty:
        names = ", ".join(f"{r.arch} ({r.pretrain})" for r in weak.itertuples())
        return Finding(CXR, claim, evidence + f" Below AUC {STUDY_AUC}: {names}.", NO_DIFFERENCE, rule)
    return Finding(CXR, claim, evidence, REPRODUCED, rule)


def _working_pairs(drift: pd.DataFrame, health: Health) -> tuple[pd.DataFrame, list[str]]:
    """Drift rows whose two checkpoints both work, and the near-chance checkpoints left out."""
    if drift.empty:
        return drift, []
    ids = pd.concat([drift["checkpoint_a_id"], drift["checkpoint_b_id"]]).unique()
    ok = set(health.working(ids))
    keep = drift["checkpoint_a_id"].isin(ok) & drift["checkpoint_b_id"].isin(ok)
    return drift[keep], health.excluded(ids)


ARCH_RULE = (
    "Per method, on the TL→FT map pairs of working models: η² of the architecture (the share of the variance over "
    "images that the per-architecture means explain; 0 = every architecture drifts alike, 1 = all variation is "
    "between architectures) of the IoU drift (1 − top-20% IoU) and of the centre-of-mass displacement (a share of "
    "the image diagonal), on the same map pairs. Both are scale-free and share the same rows and architectures, so "
    "their difference needs no threshold and their common upward bias without an effect cancels. The "
    f"{CONFIDENCE:.0%} CI of η²(IoU drift) − η²(displacement) from a bootstrap that resamples images within each "
    f"architecture ({N_BOOT} resamples) above 0: the IoU drift depends on the architecture more than the "
    "displacement does (the study's direction); below 0: the displacement depends on it more (opposite); "
    "containing 0: no clear difference. Needs at least 2 architectures. ")


def architecture_dependence(rows: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, object]:
    """The test behind the architecture finding on one method's rows (``arch``, ``sample_pk``,
    ``iou_top20``, ``com_displacement``): η² of the architecture for the IoU drift and the
    displacement (:func:`architecture_effect`) with CIs, their difference's CI and direction, and the
    per-architecture means of both with CIs (images resampled within architecture)."""
    df = rows.assign(iou_drift=1.0 - rows["iou_top20"])
    point, boot = architecture_effect(df, ["iou_drift", "com_displacement"], n_boot=n_boot, seed=seed)
    eta_iou = contrast_ci(point["iou_drift"], boot[:, 0], CONFIDENCE)
    eta_disp = contrast_ci(point["com_displacement"], boot[:, 1], CONFIDENCE)
    diff = contrast_ci(point["iou_drift"] - point["com_displacement"], boot[:, 0] - boot[:, 1], CONFIDENCE)
    means = {}
    for value in ("iou_drift", "com_displacement"):
        groups, gboot = stratified_boot(df.assign(_all=1), value, ["_all"], n_boot=n_boot, seed=seed)
        means[value] = {a: contrast_ci(m, gboot[:, i], CONFIDENCE)
                        for i, (a, m) in enumerate(zip(groups["arch"], groups["mean"], strict=True))}
    return {"eta_iou": eta_iou, "eta_displacement": eta_disp, "difference": diff,
            "direction": ci_direction(diff[1], diff[2]), "means": means}


def _two_architectures(drift: pd.DataFrame, health: Health, claim: str) -> tuple[pd.DataFrame, list[str], Finding | None]:
    """The same-method TL→FT rows of working models, the near-chance checkpoints left out, and the
    'not testable' finding when fewer than two architectures remain (else None)."""
    work, excluded = _working_pairs(same_method(drift), health)
    archs = sorted(work["arch"].unique()) if not work.empty else []
    if len(archs) >= 2:
        return work, excluded, None
    return work, excluded, Finding(
        CXR, claim, f"architectures with working TL→FT pairs: {', '.join(archs) or 'none'}" + excluded_text(excluded),
        UNTESTABLE, "Needs TL→FT pairs of working models of at least two architectures; train more with "
        "`xaudit train --protocol tl-ft`. " + NEAR_CHANCE_RULE)


def _architecture_finding(drift: pd.DataFrame, health: Health, n_boot: int) -> Finding:
    claim = ("The displacement stays small and alike across architectures while the IoU drift depends on the "
             "architecture: the architecture explains more of the IoU drift than of the displacement.")
    rule = ARCH_RULE + COMBINE_RULE + " " + NEAR_CHANCE_RULE
    work, excluded, untestable = _two_architectures(drift, health, claim)
    if untestable is not None:
        return untestable
    parts, directions = [], []
    for method in sorted(work["method"].unique()):
        rows = work[work["method"] == method]
        if rows["arch"].nunique() < 2:
            continue
        t = architecture_dependence(rows, n_boot)
        directions.append(t["direction"])
        label = {"support": "IoU drift more architecture-dependent", "opposite": "displacement more "
                 "architecture-dependent (opposite)", "unclear": "no clear difference"}[t["direction"]]
        iou = ", ".join(f"{a} {_pct(*c)}" for a, c in t["means"]["iou_drift"].items())
        disp = ", ".join(f"{a} {_pct(*c)}" for a, c in t["means"]["com_displacement"].items())
        parts.append(f"{method}: η² IoU drift {_pct(*t['eta_iou'])} vs displacement {_pct(*t['eta_displacement'])}, "
                     f"difference {_pct(*t['difference'], signed=True)} — {label} (mean IoU drift: {iou}; "
                     f"displacement, share of the diagonal: {disp})")
    if not directions:
        return Finding(CXR, claim, "no method with TL→FT pairs of two architectures" + excluded_text(excluded),
                       UNTESTABLE, "Needs one method explained on TL→FT pairs of at least two architectures.")
    return Finding(CXR, claim, "; ".join(parts) + "." + excluded_text(excluded), combine(directions), rule)


def reversal_verdict(agreement: pd.DataFrame) -> str:
    """The ranking-reversal verdict from :func:`ranking_uncertainty`'s rows: reproduced when a method
    pair reverses the ranking on the data and in at least :data:`CLEAR_REVERSAL_SHARE` of the
    replicates; opposite when every pair's tau CI lies above 0 (the rankings agree); otherwise no
    clear difference (including a reversal on the data that most replicates do not show)."""
    if agreement.empty:
        return UNTESTABLE
    clear = agreement["reversal"].astype(bool) & (agreement["reversal_share"] >= CLEAR_REVERSAL_SHARE)
    if clear.any():
        return REPRODUCED
    if (agreement["tau_ci_low"] > 0).all():
        return OPPOSITE
    return NO_DIFFERENCE


def _reversal_finding(drift: pd.DataFrame, health: Health, n_boot: int = N_BOOT) -> Finding:
    claim = ("Drift is architecture-dependent, and the architecture ranking by stability reverses "
             "between attribution methods (e.g. LayerCAM vs Grad-CAM++).")
    rule = ("Architectures are ranked by mean top-20% IoU per method, on the TL→FT pairs of working models; a method "
            "pair reverses the ranking when Kendall's τ between its two rankings is below 0 or the most stable "
            "architecture under one method is the least stable under the other. Uncertainty: a bootstrap that "
            f"resamples images within each architecture ({N_BOOT} resamples) re-ranks and gives τ's {CONFIDENCE:.0%} CI "
            "and the share of replicates that reverse. Reproduced when a method pair reverses on the data and in at "
            f"least {CLEAR_REVERSAL_SHARE:.0%} of the replicates; a reversal in fewer is no clear difference; "
            "opposite direction when every pair's τ CI lies above 0 (the rankings agree). " + NEAR_CHANCE_RULE)
    work, excluded, untestable = _two_architectures(drift, health, claim)
    if untestable is not None:
        return untestable
    agreement = ranking_uncertainty(work, "iou_top20", n_boot=n_boot)
    if agreement.empty:
        return Finding(CXR, claim, f"methods: {', '.join(sorted(work['method'].unique()))}", UNTESTABLE,
                       "Needs two attribution methods explained on TL→FT pairs of the same architectures.")
    means = work.groupby(["method", "arch"])["iou_top20"].mean()
    order = "; ".join(f"{m}: " + " > ".join(f"{a} {v:.3f}" for a, v in means[m].sort_values(ascending=False).items())
                      for m in sorted(work["method"].unique()))
    pairs = [f"{r.method_a} vs {r.method_b}: τ {r.kendall_tau:+.2f} [{r.tau_ci_low:+.2f}, {r.tau_ci_high:+.2f}], "
             f"{'reversal' if r.reversal else 'no reversal'} on the data, reversal in {r.reversal_share:.0%} of "
             f"{r.n_boot} replicates" for r in agreement.itertuples()]
    evidence = (f"Mean top-20% IoU per architecture (most stable first) — {order}. {'; '.join(pairs)}."
                + excluded_text(excluded))
    return Finding(CXR, claim, evidence, reversal_verdict(agreement), rule)


def headline_findings(n_boot: int = N_BOOT) -> list[Finding]:
    """Every headline finding of both studies on this workspace (empty parts say what is missing)."""
    health = Health.load()
    gt_all = gt_frame("correct")
    baselines = gt_all[gt_all["method"].isin(CHANCE_METHODS)]
    gt = gt_all[~gt_all["method"].isin(CHANCE_METHODS)]
    findings: list[Finding] = []
    if gt.empty:
        findings.append(Finding(MRI, "Ground-truth explanation performance", "no ground-truth metrics yet",
                                UNTESTABLE, "Run `xaudit explain` then `xaudit evaluate`."))
    else:
        findings += [_pretraining_finding(gt, health, n_boot), _degree_finding(gt, health, n_boot),
                     _methods_finding(gt, health, n_boot), _baseline_finding(gt, baselines, health, n_boot)]
    drift = drift_frame()  # the final TL→FT pairs only (no epoch, no same-checkpoint cross-method rows)
    dataset = study_dataset(drift)
    several = drift["dataset"].nunique() > 1 if not drift.empty else False
    phases = phase_accuracy_table()
    if dataset is not None:
        drift = drift[drift["dataset"] == dataset]
        phases = phases[phases["ft_checkpoint"].isin(drift["checkpoint_b"])]
    cxr = [_phases_finding(phases), _drift_finding(drift, health, n_boot),
           _architecture_finding(drift, health, n_boot), _reversal_finding(drift, health, n_boot)]
    if several:
        cxr = [replace(f, evidence=f"On dataset {dataset} (the one whose TL→FT pairs cover the most architectures): "
                       + f.evidence) for f in cxr]
    return findings + cxr


def study_dataset(drift: pd.DataFrame) -> str | None:
    """The dataset the drift study's findings read: the one whose TL→FT pairs cover the most
    architectures (then the most rows); architectures are compared on one task only."""
    if drift.empty:
        return None
    per = drift.groupby("dataset").agg(archs=("arch", "nunique"), rows=("arch", "size"))
    return str(per.sort_values(["archs", "rows"], ascending=False).index[0])
