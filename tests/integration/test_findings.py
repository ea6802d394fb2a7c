"""Verdicts of the headline findings on small workspaces with known directions (real SQLite rows),
and once through the real evaluate/drift jobs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from xai_core.findings import (
    CXR,
    MIXED,
    NO_DIFFERENCE,
    OPPOSITE,
    REPRODUCED,
    UNTESTABLE,
    Finding,
    headline_findings,
)
from xai_core.metrics import drift, evaluate
from tests.seed import (
    add_checkpoint,
    add_dataset_rows,
    add_drift_rows,
    add_maps,
    add_precision_grid,
    add_scored_checkpoint,
)

DEGREES = ("tl", "1conv", "2conv", "3conv", "4conv", "all")


def _images(n: int = 40, h: int = 8) -> list[int]:
    masks = np.zeros((n, h, h), bool)
    masks[:, 2:5, 2:5] = True
    return add_dataset_rows("bench", masks, [i % 2 for i in range(n)])


def _by_claim(findings: list[Finding]) -> dict[str, Finding]:
    keys = {"within-domain": "pretraining", "rises with": "degree", "methods differ": "methods",
            "edge-detection": "baseline", "changes the evidence": "drift", "ranking": "reversal",
            "Both phases work": "phases", "displacement stays small": "architecture", "Ground-truth": "gt"}
    return {next(v for k, v in keys.items() if k in f.claim): f for f in findings}


def test_study_direction_is_reproduced(workspace: Path) -> None:
    add_precision_grid(lambda s, d: 0.2 + 0.04 * DEGREES.index(d) + (0.1 if s == "mri" and d in ("tl", "1conv", "2conv") else 0),
                       {"saliency": 0.1, "gradcam": 0.0, "deconvolution": -0.1}, DEGREES, sobel=0.25)
    f = _by_claim(headline_findings(n_boot=500))
    assert f["pretraining"].verdict == REPRODUCED
    assert "tl: mri" in f["pretraining"].evidence and "mri higher" in f["pretraining"].evidence
    assert f["degree"].verdict == REPRODUCED
    assert "Spearman ρ +1.000 [+1.000, +1.000] — rising" in f["degree"].evidence
    assert f["methods"].verdict == REPRODUCED and "Friedman" in f["methods"].evidence
    assert f["methods"].evidence.index("saliency") < f["methods"].evidence.index("deconvolution")
    # mean precision over all cells: 0.2 + 0.04*2.5 + 0.1*3/12 = 0.325 + offset; Sobel 0.25
    assert f["baseline"].verdict == REPRODUCED  # deconvolution (≈0.225) does not beat Sobel (0.25)
    assert "deconvolution -0.025 [" in f["baseline"].evidence and "(below)" in f["baseline"].evidence
    for finding in f.values():  # every threshold named where the user reads it
        assert finding.rule
    assert "0.60 for 2 classes" in f["pretraining"].rule and "clustered bootstrap" in f["pretraining"].rule
    assert f["drift"].verdict == UNTESTABLE and f["drift"].study == CXR


def test_opposite_direction_is_said(workspace: Path) -> None:
    # the case: natural above mri at low degrees; precision falling with the degree
    add_precision_grid(lambda s, d: 0.45 - 0.04 * DEGREES.index(d) + (0.03 if s == "natural" and d in ("tl", "1conv", "2conv") else 0),
                       {"saliency": 0.0, "gradcam": 0.0, "deconvolution": 0.0}, DEGREES, sobel=0.05)
    f = _by_claim(headline_findings(n_boot=500))
    assert f["pretraining"].verdict == OPPOSITE
    assert "natural higher (opposite)" in f["pretraining"].evidence
    assert f["degree"].verdict == OPPOSITE and "falling (opposite)" in f["degree"].evidence
    assert f["baseline"].verdict == OPPOSITE  # every method clearly beats Sobel
    assert "Methods not beating it (difference to Sobel): none" in f["baseline"].evidence


def test_no_clear_difference_and_mixed(workspace: Path) -> None:
    # identical sources; flat degrees; per-degree wiggle within noise
    add_precision_grid(lambda s, d: 0.3, {"saliency": 0.0, "gradcam": 0.0, "deconvolution": 0.0}, DEGREES)
    f = _by_claim(headline_findings(n_boot=500))
    assert f["pretraining"].verdict == NO_DIFFERENCE
    assert f["pretraining"].evidence.count("no clear difference") == 3
    assert f["degree"].verdict == NO_DIFFERENCE
    assert f["methods"].verdict == NO_DIFFERENCE  # same level, independent noise: Friedman p ≥ 0.05


def test_mixed_directions_over_degrees(workspace: Path) -> None:
    add_precision_grid(lambda s, d: 0.3 + {"tl": 0.1, "1conv": -0.1, "2conv": 0.0}[d] * (s == "mri"),
                       {"saliency": 0.0}, ("tl", "1conv", "2conv"))
    f = _by_claim(headline_findings(n_boot=500))
    assert f["pretraining"].verdict == MIXED
    assert "tl: mri" in f["pretraining"].evidence and "natural higher (opposite)" in f["pretraining"].evidence


def test_near_chance_models_make_findings_untestable(workspace: Path) -> None:
    acc = {("mri", "tl"): 0.55, ("natural", "tl"): 0.9, ("mri", "all"): 0.9, ("natural", "all"): 0.9}
    add_precision_grid(lambda s, d: 0.5 if s == "mri" else 0.2, {"saliency": 0.0}, ("tl", "all"),
                       accuracy=lambda s, d: acc[s, d])
    f = _by_claim(headline_findings(n_boot=200))
    pre = f["pretraining"]
    assert pre.verdict == UNTESTABLE
    assert "vgg-mri-tl (test accuracy 0.55)" in pre.rule
    assert "below 0.60 for 2 classes, i.e. within 0.10 of chance 0.50" in pre.rule
    assert f["degree"].verdict == UNTESTABLE and "at least 3" in f["degree"].rule  # tl and all only


def test_drift_verdicts_check_both_models(workspace: Path) -> None:
    pks = _images()
    rng = np.random.default_rng(1)
    tl, _ = add_scored_checkpoint("resnet-tl", pks, 0.5, degree="tl", phase="tl")
    ft, _ = add_scored_checkpoint("resnet-ft", pks, 0.9, parent_id=tl)
    add_drift_rows(tl, ft, "gradcam", pks[:20], 0.3 + rng.normal(0, 0.02, 20))
    f = _by_claim(headline_findings(n_boot=200))
    assert f["drift"].verdict == UNTESTABLE  # a fixed IoU threshold must not pass with TL at chance
    assert "resnet-tl (test accuracy 0.50) → resnet-ft (test accuracy 0.90)" in f["drift"].rule

    tl2, _ = add_scored_checkpoint("dense-tl", pks, 0.85, degree="tl", phase="tl")
    ft2, _ = add_scored_checkpoint("dense-ft", pks, 0.875, parent_id=tl2)
    add_drift_rows(tl2, ft2, "gradcam", pks[:20], 0.4 + rng.normal(0, 0.02, 20))
    f = _by_claim(headline_findings(n_boot=200))
    d = f["drift"]
    assert d.verdict == REPRODUCED
    assert "dense-tl (test accuracy 0.85) → dense-ft (test accuracy 0.88), Δaccuracy +0.03" in d.evidence
    assert "Left out (a model near chance): resnet-tl (test accuracy 0.50)" in d.evidence
    assert "at most 0.05: IoU" in d.evidence and "below 0.8" in d.rule

    tl3, _ = add_scored_checkpoint("incep-tl", pks, 0.85, degree="tl", phase="tl")
    ft3, _ = add_scored_checkpoint("incep-ft", pks, 0.86, parent_id=tl3)
    add_drift_rows(tl3, ft3, "gradcam", pks[:20], np.full(20, 0.97))
    # pooled IoU: 20 images × (0.4 and 0.97) → mean ≈ 0.685, CI below 0.8: still reproduced
    assert _by_claim(headline_findings(n_boot=200))["drift"].verdict == REPRODUCED


def test_drift_opposite_when_maps_stay(workspace: Path) -> None:
    pks = _images()
    tl, _ = add_scored_checkpoint("resnet-tl", pks, 0.9, degree="tl", phase="tl")
    ft, _ = add_scored_checkpoint("resnet-ft", pks, 0.9, parent_id=tl)
    add_drift_rows(tl, ft, "gradcam", pks[:20], np.linspace(0.9, 0.98, 20))
    assert _by_claim(headline_findings(n_boot=200))["drift"].verdict == OPPOSITE


def _lesion_maps(masks: np.ndarray, strength: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(masks.shape) + strength * masks).astype(np.float32)


def test_verdicts_through_the_real_jobs(workspace: Path) -> None:
    """Maps stored through the attribution store, metrics from ``evaluate`` and ``drift``: mri maps hit
    the lesion, natural maps at tl are random → pre-training reproduced; TL→FT maps move → drift reproduced."""
    n, h = 24, 16
    masks = np.zeros((n, h, h), bool)
    for i in range(n):
        masks[i, 3 + i % 6: 8 + i % 6, 4:9] = True
    labels = [i % 2 for i in range(n)]
    pks = add_dataset_rows("real", masks, labels)
    images = np.random.default_rng(5).random((n, h, h)).astype(np.float32)
    data = SimpleNamespace(images=images, masks=masks, sample_pks=np.asarray(pks), labels=np.asarray(labels))
    for source, strength in (("mri", 3.0), ("natural", 0.0)):
        tl = add_checkpoint(f"vgg-{source}-tl", "vgg16", source, "tl", "tl", pks, labels, labels)
        ft = add_checkpoint(f"vgg-{source}-all", "vgg16", source, "all", "ft", pks, labels, labels, parent_id=tl)
        add_maps(tl, "saliency", pks, _lesion_maps(masks, strength, 1))
        add_maps(ft, "saliency", pks, _lesion_maps(masks, strength, 2))
    evaluate(dataset=data)
    drift()
    f = _by_claim(headline_findings(n_boot=300))
    assert f["pretraining"].verdict == REPRODUCED
    assert "tl: mri 1.000 [1.000, 1.000]" in f["pretraining"].evidence
    assert f["drift"].verdict == REPRODUCED  # natural maps are independent noise at tl and all: IoU ≈ 0.11
    assert "vgg-natural-tl (test accuracy 1.00) → vgg-natural-all (test accuracy 1.00)" in f["drift"].evidence
    assert f["baseline"].verdict in (REPRODUCED, OPPOSITE)  # decided, with Sobel rows from the job
    assert "Sobel edge map precision" in f["baseline"].evidence


def test_empty_workspace_says_what_to_run(workspace: Path) -> None:
    findings = headline_findings(n_boot=50)
    assert [f.verdict for f in findings] == [UNTESTABLE] * 5
    assert "xaudit evaluate" in findings[0].rule and "xaudit drift" in findings[2].rule
    assert "--protocol tl-ft" in findings[1].rule  # no TL→FT pairs to check the phases of
