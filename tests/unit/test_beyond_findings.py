"""The verdicts beyond the studies (xai_core.beyond) on hand-made frames: faithfulness against the
random map, the model-randomisation check with its control, and attribution on a suppressor or
confounder region; near-chance checkpoints are left out and named."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xai_core.beyond import faithfulness_finding, region_findings, sanity_finding
from xai_core.findings import MIXED, NO_DIFFERENCE, OPPOSITE, REPRODUCED, UNTESTABLE, Health
from xai_core.metrics.sanity_results import FRAME_COLUMNS, STEP_ORDER

N = 30
PKS = np.arange(100, 100 + N)
WIGGLE = np.where(np.arange(N) % 2 == 0, 0.05, -0.05)  # mean 0: shifts a method without moving its mean


def _health() -> Health:
    """Checkpoint 1 works (accuracy 0.90), checkpoint 2 is near chance (0.52 of 2 classes)."""
    table = pd.DataFrame({"checkpoint": ["vgg-ft", "vgg-tl"], "accuracy": [0.9, 0.52], "num_classes": [2, 2],
                          "near_chance": [False, True]}, index=pd.Index([1, 2], name="checkpoint_id"))
    return Health(table)


def _faith(values: dict[str, tuple[float, float]], checkpoint: int = 1, wiggle: dict[str, bool] | None = None) -> pd.DataFrame:
    """gt_frame-like rows: per method, deletion and insertion AUC ``(mean deletion, mean insertion)``
    on the same images (random map values vary by image; a wiggled method moves ±0.05 around them)."""
    base = 0.1 * np.sin(PKS)  # image-to-image variation shared by every map of an image, mean 0
    base = base - base.mean()
    rows = []
    for method, (dele, ins) in values.items():
        w = WIGGLE if (wiggle or {}).get(method) else 0.0
        rows.append(pd.DataFrame({"checkpoint_id": checkpoint, "method": method, "sample_pk": PKS,
                                  "deletion_auc": dele + base + w, "insertion_auc": ins - base + w}))
    return pd.concat(rows, ignore_index=True)


def test_faithful_only_when_the_ci_beats_the_random_map() -> None:
    frame = _faith({"baseline_random": (0.5, 0.5), "saliency": (0.2, 0.8)})
    f = faithfulness_finding(frame, _health(), n_boot=500)
    assert f.verdict == REPRODUCED
    # saliency's difference is exactly -0.3 / +0.3 on every image: the CI is the point
    assert "deletion_auc (lower is better): random map 0.500 [" in f.evidence
    assert "saliency 0.200 [" in f.evidence and "difference -0.300 [-0.300, -0.300] — beats random" in f.evidence
    assert "difference +0.300 [+0.300, +0.300] — beats random" in f.evidence
    assert "Faithful: saliency; less faithful than random: none; not shown: none." in f.evidence

    # a map that matches random on average (±0.05 per image) is not shown faithful; one worse on deletion fails
    frame = _faith({"baseline_random": (0.5, 0.5), "saliency": (0.2, 0.8), "gradcam": (0.5, 0.5),
                    "lrp": (0.7, 0.5), "baseline_sobel": (0.3, 0.6)}, wiggle={"gradcam": True})
    f = faithfulness_finding(frame, _health(), n_boot=500)
    assert f.verdict == MIXED  # saliency beats random, lrp is worse
    assert "gradcam 0.500 [" in f.evidence and "— not distinguishable" in f.evidence
    assert "lrp 0.700 [" in f.evidence and "difference +0.200 [+0.200, +0.200] — worse than random" in f.evidence
    assert "baseline_sobel (model-free control) 0.300" in f.evidence  # listed, not in the verdict
    assert "Faithful: saliency; less faithful than random: lrp; not shown: gradcam." in f.evidence
    assert "every metric stored" in f.rule and "near chance" in f.rule

    only_unclear = _faith({"baseline_random": (0.5, 0.5), "gradcam": (0.5, 0.5)}, wiggle={"gradcam": True})
    assert faithfulness_finding(only_unclear, _health(), n_boot=500).verdict == NO_DIFFERENCE
    worse = _faith({"baseline_random": (0.5, 0.5), "lrp": (0.7, 0.3)})
    assert faithfulness_finding(worse, _health(), n_boot=500).verdict == OPPOSITE


def test_faithfulness_preconditions() -> None:
    good = _faith({"baseline_random": (0.5, 0.5), "saliency": (0.2, 0.8)})
    chance = _faith({"baseline_random": (0.5, 0.5), "saliency": (0.9, 0.1)}, checkpoint=2)  # near chance: left out
    f = faithfulness_finding(pd.concat([good, chance]), _health(), n_boot=500)
    assert f.verdict == REPRODUCED and f.evidence.endswith("Left out as near chance: vgg-tl (test accuracy 0.52).")
    assert "saliency 0.200 [" in f.evidence and "difference -0.300 [-0.300, -0.300]" in f.evidence  # not 0.9

    only_chance = faithfulness_finding(chance, _health(), n_boot=500)
    assert only_chance.verdict == UNTESTABLE and "vgg-tl (test accuracy 0.52)" in only_chance.evidence
    no_random = faithfulness_finding(good[good["method"] != "baseline_random"], _health(), n_boot=500)
    assert no_random.verdict == UNTESTABLE and "baseline_random" in no_random.rule
    nothing = faithfulness_finding(pd.DataFrame(columns=["checkpoint_id", "method", "sample_pk"]), _health())
    assert nothing.verdict == UNTESTABLE and "xaudit faithfulness" in nothing.rule


def _sanity(method: str, last: np.ndarray, checkpoint: int = 1) -> pd.DataFrame:
    """Cascading rows of one method: Spearman 0.9 at the head, ``last`` (per image) at block1."""
    steps = STEP_ORDER[:6]  # head … block1
    rows = []
    for step in steps:
        rho = last if step == "block1" else np.full(N, 0.9)
        rows.append(pd.DataFrame({"checkpoint_id": checkpoint, "checkpoint": "vgg-ft", "reference_id": checkpoint,
                                  "arch": "vgg16", "pretrain": "mri", "degree": "all", "method": method,
                                  "params_hash": "h", "mode": "cascading", "step": step, "seed": 0, "sample_pk": PKS,
                                  "sample_id": [f"s{p}" for p in PKS], "sanity_spearman": rho, "sanity_ssim": rho,
                                  "sanity_hog": rho}))
    return pd.concat(rows, ignore_index=True)[FRAME_COLUMNS + ["sanity_spearman", "sanity_ssim", "sanity_hog"]]


def test_sanity_fails_a_method_whose_maps_stay_similar() -> None:
    passing = _sanity("saliency", np.linspace(0.0, 0.2, N))
    failing = _sanity("guided_backprop", np.linspace(0.8, 1.0, N))
    control = _sanity("baseline_sobel", np.ones(N))
    f = sanity_finding(pd.concat([passing, failing, control]), _health(), n_boot=500)
    assert f.verdict == MIXED
    assert "saliency on vgg16 (cascading, block1): median Spearman 0.100 [" in f.evidence
    assert "guided_backprop on vgg16 (cascading, block1): median Spearman 0.900 [" in f.evidence
    assert ("Failing (maps barely change): guided_backprop on vgg16 (cascading, block1); passing: saliency on vgg16 "
            "(cascading, block1); undecided: none.") in f.evidence
    assert ("Control: baseline_sobel on vgg16 (cascading, block1): median Spearman 1.000 [1.000, 1.000] over 30 "
            "images — fails, as the control must.") in f.evidence
    assert sanity_finding(pd.concat([passing, control]), _health(), n_boot=500).verdict == REPRODUCED
    assert sanity_finding(failing, _health(), n_boot=500).verdict == OPPOSITE
    straddles = _sanity("gradcam", np.linspace(0.1, 0.9, N))  # median 0.5: the CI contains the threshold
    undecided = sanity_finding(straddles, _health(), n_boot=500)
    assert undecided.verdict == NO_DIFFERENCE and "undecided: gradcam on vgg16 (cascading, block1)." in undecided.evidence


def test_sanity_preconditions() -> None:
    assert sanity_finding(pd.DataFrame(columns=FRAME_COLUMNS), _health()).verdict == UNTESTABLE
    near = sanity_finding(_sanity("saliency", np.zeros(N), checkpoint=2), _health(), n_boot=500)
    assert near.verdict == UNTESTABLE and "vgg-tl (test accuracy 0.52)" in near.evidence
    only_control = sanity_finding(_sanity("baseline_sobel", np.ones(N)), _health(), n_boot=500)
    assert only_control.verdict == UNTESTABLE and "model-free" in only_control.rule


def _regions(shares: dict[str, float], variant: str = "suppressor", chance: float = 0.1) -> pd.DataFrame:
    rows = [pd.DataFrame({"checkpoint_id": 1, "method": m, "sample_pk": PKS, "region_share": s + WIGGLE / 5,
                          "dataset": f"mri-{variant}", "variant": variant, "region_px": 100, "chance": chance})
            for m, s in shares.items()]
    return pd.concat(rows, ignore_index=True)


def test_region_findings() -> None:
    (none,) = region_findings(pd.DataFrame(), _health())
    assert none.verdict == UNTESTABLE
    assert none.evidence == "no suppressor or confounder dataset is evaluated in this workspace"
    assert "--variant suppressor" in none.rule

    (f,) = region_findings(_regions({"saliency": 0.3, "gradcam": 0.1, "baseline_random": 0.1}), _health(), n_boot=500)
    assert f.verdict == REPRODUCED and "suppressor" in f.claim
    assert "saliency on mri-suppressor 0.300 [" in f.evidence and "vs uniform 0.100 — above chance" in f.evidence
    assert "gradcam on mri-suppressor 0.100 [" in f.evidence and f.evidence.endswith("On the region: saliency.")
    assert "baseline_random" not in f.evidence  # chance maps are not in the verdict

    both = pd.concat([_regions({"saliency": 0.05}), _regions({"saliency": 0.04, "gradcam": 0.02}, "confounder")])
    sup, conf = region_findings(both, _health(), n_boot=500)
    assert (sup.verdict, conf.verdict) == (OPPOSITE, OPPOSITE) and "confounder" in conf.claim
    (unclear,) = region_findings(_regions({"saliency": 0.1}), _health(), n_boot=500)
    assert unclear.verdict == NO_DIFFERENCE
