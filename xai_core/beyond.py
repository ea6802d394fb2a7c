"""Findings beyond the two studies, in the verdict style of :mod:`xai_core.findings`: is a map
faithful to the model, does it depend on the model at all, and does it put mass on a region that
carries no class information (a suppressor) or a class-correlated marker (a confounder)?

Each is a :class:`~xai_core.findings.Finding` with a claim from the literature (with its
direction), the numbers this workspace gives, a verdict and the rule behind it. The preconditions
are the studies' findings' own: checkpoints near chance are left out (and named), and a claim whose
data are missing is *not testable here* with the command that stores them. The verdict over the
methods is :func:`~xai_core.findings.combine`'s. The decisions on hand-made frames are the functions
:func:`faithfulness_finding`, :func:`sanity_finding` and :func:`region_findings`;
:func:`beyond_findings` reads the workspace.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from xai_core.findings import (
    CI_RULE,
    COMBINE_RULE,
    CONFIDENCE,
    N_BOOT,
    NEAR_CHANCE_RULE,
    NO_DIFFERENCE,
    OPPOSITE,
    REPRODUCED,
    UNTESTABLE,
    Finding,
    Health,
    ci_direction,
    combine,
    excluded_text,
    working_rows,
)
from xai_core.metrics import faithfulness as faithfulness_metrics  # noqa: F401  (registers the metrics)
from xai_core.metrics.chance_maps import CHANCE_METHODS
from xai_core.metrics.registry import get_faithfulness_metric
from xai_core.metrics.statistics import bootstrap_ci, ci_text, cluster_bootstrap, contrast_ci

FAITHFULNESS = "Petsiuk et al. 2018 (faithfulness)"
SANITY = "Adebayo et al. 2018 (sanity checks)"
REGION_STUDIES = {"suppressor": "Wilming et al. 2022; Clark et al. 2024 (suppressors)",
                  "confounder": "Geirhos et al. 2020 (shortcuts: confounders)"}
FAITH_METRICS = ("deletion_auc", "insertion_auc")
REFERENCE = "baseline_random"  # the random map: chance faithfulness
CONTROL = "baseline_sobel"  # never looks at the model: the sanity check's control


def _method_direction(directions: Sequence[str]) -> str:
    """One method over its metrics: ``support`` when every metric beats the reference, ``opposite``
    when one is worse and none beats it, ``unclear`` otherwise."""
    if directions and all(d == "support" for d in directions):
        return "support"
    if "opposite" in directions and "support" not in directions:
        return "opposite"
    return "unclear"


FAITH_RULE = (
    f"Per method and metric, the {CONFIDENCE:.0%} CI of its mean minus the random map's mean on the same images "
    "(deletion AUC: lower is better, the score falls faster when the top-ranked pixels go first; insertion AUC: higher "
    "is better) decides: beyond 0 in the better direction the map beats random, in the other direction it is worse, "
    "containing 0 not distinguishable. A method is called faithful only when it beats the random map on every "
    f"metric stored, less faithful than random when it is worse on one and beats it on none. {COMBINE_RULE} "
    f"{NEAR_CHANCE_RULE} {CI_RULE}"
)


def faithfulness_finding(frame: pd.DataFrame, health: Health, n_boot: int = N_BOOT,
                         metrics: Sequence[str] = FAITH_METRICS) -> Finding:
    """The faithfulness claim on ``frame`` (:func:`~xai_core.metrics.queries.gt_frame` rows with
    ``checkpoint_id, method, sample_pk`` and one column per metric of ``metrics``)."""
    claim = ("Attribution maps are faithful to the model: removing the pixels a method ranks highest lowers the "
             "class score faster than removing them in random order (lower deletion AUC than a random map), and "
             "restoring them first raises it faster (higher insertion AUC).")
    present = [k for k in metrics if k in frame.columns and frame[k].notna().any()]
    if not present:
        return Finding(FAITHFULNESS, claim, "no deletion or insertion AUC stored", UNTESTABLE,
                       "Run `xaudit faithfulness --metrics deletion_auc,insertion_auc` (it runs each checkpoint on "
                       "its stored maps, next to random and Sobel edge maps).")
    work, excluded = working_rows(frame, health)
    methods = sorted(set(work["method"]) - set(CHANCE_METHODS))
    if REFERENCE not in set(work["method"]) or not methods:
        have = ", ".join(sorted(set(work["method"]))) or "none"
        return Finding(FAITHFULNESS, claim, f"maps scored on working models: {have}." + excluded_text(excluded),
                       UNTESTABLE, f"Needs an attribution method and the random map ({REFERENCE}) scored on the same "
                       "images of a checkpoint that is not near chance; run `xaudit faithfulness` with its default "
                       f"--baselines. {NEAR_CHANCE_RULE}")
    per_method: dict[str, list[str]] = {m: [] for m in methods}
    parts = []
    for key in present:
        sign = -1.0 if get_faithfulness_metric(key).better == "lower" else 1.0
        groups, boot = cluster_bootstrap(work, key, ["method"], n_boot=n_boot)
        names = list(groups["method"])
        if REFERENCE not in names:
            continue
        r = names.index(REFERENCE)
        texts = []
        for i, method in enumerate(names):
            if i == r:
                continue
            diff = contrast_ci(groups["mean"].iat[i] - groups["mean"].iat[r], boot[:, i] - boot[:, r], CONFIDENCE)
            oriented = ci_direction(*sorted((sign * diff[1], sign * diff[2])))
            label = {"support": "beats random", "opposite": "worse than random",
                     "unclear": "not distinguishable"}[oriented]
            control = " (model-free control)" if method in CHANCE_METHODS else ""
            texts.append(f"{method}{control} {ci_text(*contrast_ci(groups['mean'].iat[i], boot[:, i], CONFIDENCE))}, "
                         f"difference {ci_text(*diff, signed=True)} — {label}")
            if method in per_method:
                per_method[method].append(oriented)
        ref = ci_text(*contrast_ci(groups["mean"].iat[r], boot[:, r], CONFIDENCE))
        parts.append(f"{key} ({get_faithfulness_metric(key).direction}): random map {ref}; " + "; ".join(texts))
    directions = {m: _method_direction(d) for m, d in per_method.items() if d}
    if not directions:
        return Finding(FAITHFULNESS, claim, "; ".join(parts) or "no method scored with the random map",
                       UNTESTABLE, "No method is scored on the same images as the random map.")
    by = {s: [m for m, d in directions.items() if d == s] for s in ("support", "opposite", "unclear")}
    evidence = ("; ".join(parts) + f". Faithful: {', '.join(by['support']) or 'none'}; less faithful than random: "
                f"{', '.join(by['opposite']) or 'none'}; not shown: {', '.join(by['unclear']) or 'none'}."
                + excluded_text(excluded))
    return Finding(FAITHFULNESS, claim, evidence, combine(list(directions.values())), FAITH_RULE)


def sanity_finding(frame: pd.DataFrame, health: Health, n_boot: int = N_BOOT) -> Finding:
    """The model-dependence claim on ``frame`` (:func:`~xai_core.metrics.sanity_results.sanity_frame`
    rows); the deciding step per (architecture, method, test) is
    :func:`~xai_core.metrics.sanity_results.sanity_verdicts`'."""
    from xai_core.metrics.sanity_results import FAIL_RULE, FAIL_SPEARMAN, sanity_summary, sanity_verdicts

    claim = ("Attribution maps depend on the model: after its weights are re-initialised (or it is trained on "
             "shuffled labels) a method's maps change — the similarity to the trained model's maps falls; a method "
             "whose maps stay similar fails the check.")
    rule = (f"{FAIL_RULE} Here per architecture, method and test the {CONFIDENCE:.0%} percentile bootstrap CI "
            f"({N_BOOT} resamples) of that median over the images decides: entirely below {FAIL_SPEARMAN:g} the method "
            f"passes (the study's direction), entirely above it fails (opposite), containing it undecided. The Sobel "
            f"edge map ({CONTROL}) never looks at the model: it must fail, and is left out of the verdict. "
            f"{COMBINE_RULE} {NEAR_CHANCE_RULE}")
    if frame.empty:
        return Finding(SANITY, claim, "no sanity checks stored", UNTESTABLE,
                       "Run `xaudit sanity CHECKPOINT --methods saliency,gradcam,baseline_sobel --mode cascading`.")
    work, excluded = working_rows(frame, health)
    if work.empty:
        return Finding(SANITY, claim, "no sanity check of a working model." + excluded_text(excluded), UNTESTABLE,
                       "A model near chance has learned no evidence, so randomising it tells nothing about "
                       f"its maps; check a working checkpoint. {NEAR_CHANCE_RULE}")
    verdicts = sanity_verdicts(sanity_summary(work))
    parts, controls, directions = [], [], []
    fails, passes, undecided = [], [], []
    for v in verdicts.itertuples():
        rows = work[(work["arch"] == v.arch) & (work["method"] == v.method) & (work["mode"] == v.mode)
                    & (work["step"] == v.step)]
        lo, hi = bootstrap_ci(rows["sanity_spearman"], n_boot=n_boot, confidence=CONFIDENCE, statistic="median")
        direction = "support" if hi < FAIL_SPEARMAN else "opposite" if lo > FAIL_SPEARMAN else "unclear"
        where = f"{v.method} on {v.arch} ({v.mode}, {v.step})"
        text = f"{where}: median Spearman {ci_text(v.spearman, lo, hi)} over {len(rows)} images"
        if v.method in CHANCE_METHODS:
            controls.append(text + (" — fails, as the control must" if direction == "opposite" else
                                    " — the control does not fail clearly"))
            continue
        directions.append(direction)
        (passes if direction == "support" else fails if direction == "opposite" else undecided).append(where)
        parts.append(text + {"support": " — passes", "opposite": " — fails", "unclear": " — undecided"}[direction])
    if not directions:
        return Finding(SANITY, claim, "; ".join(controls) or "no method checked", UNTESTABLE,
                       "Only model-free maps were checked; add attribution methods to `xaudit sanity --methods`.")
    evidence = ("; ".join(parts) + f". Failing (maps barely change): {', '.join(fails) or 'none'}; passing: "
                f"{', '.join(passes) or 'none'}; undecided: {', '.join(undecided) or 'none'}."
                + (f" Control: {'; '.join(controls)}." if controls else "") + excluded_text(excluded))
    return Finding(SANITY, claim, evidence, combine(directions), rule)


REGION_CLAIMS = {
    "suppressor": ("Attribution methods put mass on a suppressor variable — an image component that carries no class "
                   "information but that the model uses to cancel a nuisance: at least one method's share of "
                   "attribution on the suppressor region lies above a uniform map's share."),
    "confounder": ("Attribution methods follow a confounder — a class-correlated marker outside the lesion: at least "
                   "one method's share of attribution on the marker lies above a uniform map's share."),
}
REGION_RULE = (
    f"Per method, the {CONFIDENCE:.0%} bootstrap CI of the mean share of |attribution| on the second region "
    "(region_share) against the share a uniform map puts there (the region's share of the image, on the same "
    "samples): entirely above is mass on the region. Reproduced when at least one method puts mass on it; opposite "
    "direction when every method's CI lies below the uniform share; otherwise no clear difference. The chance maps "
    f"are left out of the verdict. {NEAR_CHANCE_RULE}"
)


def region_findings(frame: pd.DataFrame, health: Health, n_boot: int = N_BOOT) -> list[Finding]:
    """One finding per variant in ``frame`` (:func:`~xai_core.metrics.regions.region_frame` rows);
    one *not testable here* when no suppressor or confounder values are stored."""
    from xai_core.metrics.regions import region_summary

    variants = [v for v in REGION_CLAIMS if not frame.empty and v in set(frame["variant"])]
    if not variants:
        return [Finding(REGION_STUDIES["suppressor"], REGION_CLAIMS["suppressor"], "no suppressor or confounder dataset is evaluated "
                        "in this workspace", UNTESTABLE,
                        "Build one with `xaudit data build NAME --variant suppressor` (or confounder), train a model "
                        "on it, then `xaudit explain` and `xaudit evaluate`: region_share is stored for its samples.")]
    out = []
    for variant in variants:
        claim = REGION_CLAIMS[variant]
        work, excluded = working_rows(frame[frame["variant"] == variant], health)
        work = work[~work["method"].isin(CHANCE_METHODS)]
        if work.empty:
            out.append(Finding(REGION_STUDIES[variant], claim, f"no {variant} values of working models." + excluded_text(excluded),
                               UNTESTABLE, NEAR_CHANCE_RULE))
            continue
        summary = region_summary(work, n_boot=n_boot)
        texts = [f"{r.method} on {r.dataset} {ci_text(r.mean, r.ci_low, r.ci_high)} vs uniform {r.chance:.3f} — "
                 f"{r.verdict}" for r in summary.itertuples()]
        above = summary["verdict"] == "above chance"
        verdict = REPRODUCED if above.any() else OPPOSITE if (summary["verdict"] == "below chance").all() \
            else NO_DIFFERENCE
        said = f". On the region: {', '.join(sorted(set(summary.loc[above, 'method']))) or 'none'}."
        out.append(Finding(REGION_STUDIES[variant], claim, "; ".join(texts) + said + excluded_text(excluded), verdict, REGION_RULE))
    return out


def beyond_findings(n_boot: int = N_BOOT) -> list[Finding]:
    """Faithfulness, sanity and suppressor/confounder findings on this workspace."""
    from xai_core.metrics.queries import gt_frame
    from xai_core.metrics.regions import region_frame
    from xai_core.metrics.sanity_results import sanity_frame

    health = Health.load()
    faith = gt_frame("correct", metrics=list(FAITH_METRICS))
    faith = faith[faith[list(FAITH_METRICS)].notna().any(axis=1)]
    return [faithfulness_finding(faith, health, n_boot), sanity_finding(sanity_frame(), health, n_boot),
            *region_findings(region_frame("correct"), health, n_boot)]
