"""The two studies' headline findings, measured on the current workspace.

Each :class:`Finding` states a claim from one study, the numbers this workspace gives (with 95%
CIs) and a verdict: ``reproduced``, ``not reproduced`` or ``not testable here`` (with the reason).
The Overview page and the report both show these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from xai_core.errors import XAuditError
from xai_core.metrics import BASELINE_METHODS, bootstrap_ci, ci_text
from xai_core.metrics.queries import accuracy_effect, checkpoint_accuracy, drift_frame, gt_frame, reversal_table

MRI = "Oliveira et al. 2024 (MRI)"
CXR = "Elangovan & Ting 2026 (chest X-ray)"
REPRODUCED, NOT_REPRODUCED, UNTESTABLE = "reproduced", "not reproduced", "not testable here"


@dataclass(frozen=True)
class Finding:
    study: str
    claim: str
    evidence: str
    verdict: str


def _ci_text(values: pd.Series | np.ndarray) -> tuple[float, float, float, str]:
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    mean = float(x.mean()) if x.size else float("nan")
    lo, hi = bootstrap_ci(x, n_boot=1000)
    return mean, lo, hi, f"{ci_text(mean, lo, hi)} (n={x.size})"


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return not (a[1] < b[0] or b[1] < a[0])


def _pretraining_finding(gt: pd.DataFrame) -> Finding:
    claim = ("Explanation precision depends on the pre-training source (out-of-domain vs "
             "within-domain), also at matched classification accuracy.")
    sources = sorted(gt["pretrain"].unique())
    if len(sources) < 2:
        return Finding(MRI, claim, f"only one pre-training source evaluated ({', '.join(sources)})", UNTESTABLE)
    parts, cis = [], {}
    for source in sources:
        mean, lo, hi, text = _ci_text(gt.loc[gt["pretrain"] == source, "precision"])
        parts.append(f"{source}: {text}")
        cis[source] = (lo, hi)
    effects, significant = [], 0
    for method in sorted(gt["method"].unique()):
        try:
            eff = accuracy_effect(method)["effects"]
        except XAuditError:
            continue
        for row in eff.itertuples():
            if np.isfinite(row.ci_low):
                effects.append(f"{method}: {row.source}−{row.reference} "
                               f"{ci_text(row.effect, row.ci_low, row.ci_high, signed=True)}")
                significant += int(row.ci_low > 0 or row.ci_high < 0)
    differ = not _overlap(cis[sources[0]], cis[sources[1]])
    evidence = "mean precision " + "; ".join(parts)
    if effects:
        evidence += (f". At matched accuracy the CI of the source effect excludes 0 for "
                     f"{significant} of {len(effects)} methods ({'; '.join(effects[:4])}"
                     f"{'; …' if len(effects) > 4 else ''})")
    majority = bool(effects) and significant > len(effects) / 2
    return Finding(MRI, claim, evidence, REPRODUCED if differ or majority else NOT_REPRODUCED)


def _degree_finding(gt: pd.DataFrame) -> Finding:
    claim = "Explanation precision changes with the fine-tuning degree (frozen backbone vs all layers)."
    degrees = set(gt["degree"])
    if not {"tl", "all"} <= degrees:
        return Finding(MRI, claim, "needs both the tl and the all degree evaluated", UNTESTABLE)
    _, *tl_ci, tl = _ci_text(gt.loc[gt["degree"] == "tl", "precision"])
    _, *all_ci, full = _ci_text(gt.loc[gt["degree"] == "all", "precision"])
    differ = not _overlap(tuple(tl_ci), tuple(all_ci))
    return Finding(MRI, claim, f"mean precision tl: {tl}; all: {full}",
                   REPRODUCED if differ else NOT_REPRODUCED)


def _baseline_finding(gt: pd.DataFrame, baselines: pd.DataFrame) -> Finding:
    claim = "Some popular attribution methods do not beat a model-free edge-detection baseline."
    sobel = baselines.loc[baselines["method"] == "baseline_sobel", "precision"]
    if sobel.empty:
        return Finding(MRI, claim, "no Sobel baseline stored (run `xaudit evaluate`)", UNTESTABLE)
    _, s_lo, s_hi, sobel_text = _ci_text(sobel)
    below = []
    for method, values in gt.groupby("method")["precision"]:
        _, lo, hi, _ = _ci_text(values)
        if hi < s_hi and not lo > s_hi:
            below.append(method)
    evidence = (f"Sobel edge map precision {sobel_text}; methods not above it: "
                f"{', '.join(below) if below else 'none'}")
    return Finding(MRI, claim, evidence, REPRODUCED if below else NOT_REPRODUCED)


def _drift_finding(drift: pd.DataFrame) -> Finding:
    claim = ("Fine-tuning changes the evidence: TL and FT maps of the same correctly classified "
             "images overlap only partly, even where accuracy hardly changes.")
    if drift.empty:
        return Finding(CXR, claim, "no drift rows (run `xaudit drift`)", UNTESTABLE)
    _, lo, hi, iou = _ci_text(drift["iou_top20"])
    _, _, _, corr = _ci_text(drift["pearson"])
    acc = checkpoint_accuracy().set_index("checkpoint_id")["accuracy"]
    pairs = drift[["checkpoint_a_id", "checkpoint_b_id"]].drop_duplicates()
    deltas = [acc.get(b, np.nan) - acc.get(a, np.nan) for a, b in pairs.itertuples(index=False)]
    evidence = (f"top-20% overlap IoU {iou}; Pearson correlation {corr}; test-accuracy change "
                f"FT−TL over {len(deltas)} pairs: mean {np.nanmean(deltas):+.3f}")
    return Finding(CXR, claim, evidence, REPRODUCED if hi < 0.8 else NOT_REPRODUCED)


def _reversal_finding(drift: pd.DataFrame) -> Finding:
    claim = ("Drift is architecture-dependent, and the architecture ranking by stability reverses "
             "between attribution methods (e.g. LayerCAM vs Grad-CAM++).")
    archs = sorted(drift["arch"].unique()) if not drift.empty else []
    if len(archs) < 2:
        return Finding(CXR, claim, f"needs TL→FT pairs of at least two architectures (have: "
                       f"{', '.join(archs) or 'none'}); train more with `xaudit train --protocol tl-ft`",
                       UNTESTABLE)
    _, agreement = reversal_table("iou_top20")
    reversals = agreement[agreement["reversal"]] if "reversal" in agreement else agreement.iloc[0:0]
    pairs = [f"{r.method_a} vs {r.method_b} (tau {r.kendall_tau:+.2f})" for r in reversals.itertuples()]
    evidence = f"{len(pairs)} of {len(agreement)} method pairs reverse the ranking" + (
        f": {', '.join(pairs[:4])}" if pairs else "")
    return Finding(CXR, claim, evidence, REPRODUCED if pairs else NOT_REPRODUCED)


def headline_findings() -> list[Finding]:
    """Every headline finding of both studies on this workspace (empty parts say what is missing)."""
    gt_all = gt_frame("correct")
    baselines = gt_all[gt_all["method"].isin(BASELINE_METHODS)]
    gt = gt_all[~gt_all["method"].isin(BASELINE_METHODS)]
    findings: list[Finding] = []
    if gt.empty:
        findings.append(Finding(MRI, "Ground-truth explanation performance", "no ground-truth metrics "
                                "yet (run `xaudit explain` then `xaudit evaluate`)", UNTESTABLE))
    else:
        findings += [_pretraining_finding(gt), _degree_finding(gt), _baseline_finding(gt, baselines)]
    drift = drift_frame()
    findings += [_drift_finding(drift), _reversal_finding(drift)]
    return findings
