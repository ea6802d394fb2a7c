"""``write_report`` on a small workspace with known directions: finding cards with escaped text and
verdict badges, the methods text, the study's degree order and the equivalent-methods note."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from xai_core.findings import OPPOSITE, UNTESTABLE
from tests.seed import add_precision_grid
from xai_core.report import write_report

DEGREES = ("all", "tl", "1conv")  # created out of order on purpose


def _seed() -> None:
    """Out-of-domain above within-domain (the opposite of the study); lrp and input_x_gradient equal."""
    add_precision_grid(lambda s, d: 0.20 if s == "mri" else 0.25,
                       {"lrp": 0.0, "input_x_gradient": 0.0, "saliency": 0.05}, DEGREES, ("mri", "natural"),
                       n_images=20, accuracy=lambda s, d: 1.0, image_sd=0.01, noise_sd=0.0)


def test_report_cards_methods_order_and_notes(workspace: Path, tmp_path: Path) -> None:
    _seed()
    out = write_report(tmp_path / "r")
    page = out.read_text()
    cards = re.findall(r'<div class="card">.*?</div>', page, flags=re.S)
    # the studies: pre-training, degree trend, methods, baseline, phases, drift, architecture, reversal; then beyond
    # the studies: faithfulness, sanity checks, suppressor — none stored here, so not testable
    assert len(cards) == 11
    assert all(f'<span class="badge none">{UNTESTABLE}</span>' in c for c in cards[8:])
    beyond = pd.read_csv(out.parent / "beyond-findings.csv")
    assert list(beyond["evidence"]) == ["no deletion or insertion AUC stored", "no sanity checks stored",
                                        "no suppressor or confounder dataset is evaluated in this workspace"]
    assert f'<span class="badge bad">{OPPOSITE}</span>' in cards[0]
    assert "natural higher (opposite)" in cards[0] and "0.60 for 2 classes" in cards[0]
    assert "tl &lt; 1conv &lt; 2conv" in cards[1]  # escaped text
    assert "lrp and input_x_gradient are the same method on ReLU networks" in cards[2]
    assert "<h2>Methods</h2>" in page and "clustered bootstrap" in page and "keeps all their rows" in page
    head = re.search(r"<h2>Explanation performance.*?<thead>(.*?)</thead>", page, flags=re.S).group(1)
    columns = re.findall(r"<th>(.*?)</th>", head)
    assert columns[1:] == ["note", "mri / tl", "mri / 1conv", "mri / all", "natural / tl", "natural / 1conv",
                           "natural / all"]
    assert "<td>same maps as input_x_gradient</td>" in page and "Ancona et al. 2018" in page
    bench = pd.read_csv(out.parent / "benchmark.csv")
    assert list(bench[(bench["metric"] == "precision") & (bench["method"] == "lrp")]["degree"]) == ["tl", "1conv", "all"] * 2
    findings = pd.read_csv(out.parent / "findings.csv")
    assert list(findings.columns) == ["study", "claim", "evidence", "verdict", "rule"]
    assert findings["verdict"].iloc[0] == OPPOSITE


def test_reader_studies_section(workspace: Path, tmp_path: Path) -> None:
    import krippendorff
    import numpy as np

    from tests.review_seed import seed_review_workspace
    from xai_core.review import reading, studies
    from xai_core.review.accounts import LOCAL

    ws = seed_review_workspace()
    page = write_report(tmp_path / "none").read_text()
    assert "<h2>Reader studies</h2>" in page and "No reader studies yet" in page

    spec = dict(checkpoints=ws.checkpoints, reviewers=("rex", "rae"), samples=tuple(int(p) for p in ws.test_pks[2:5]))
    studies.create_study(studies.StudySpec(name="empty <b>", methods=("saliency",), **spec), actor=LOCAL)
    studies.create_study(studies.StudySpec(name="rated", methods=("saliency", "gradcam"), catch_trials=2, **spec),
                         actor=LOCAL)
    key = studies.unblinding_key("rated", actor=LOCAL).sort_values("case_key")
    # rex: saliency 4, gradcam 2, catch 5 (left out of the means); rae one point lower on every real case
    scores = {"saliency": 4, "gradcam": 2, "baseline_random": 5, "baseline_sobel": 5}
    for reviewer, shift in (("rex", 0), ("rae", 1)):
        for case in key.itertuples():
            value = scores[case.method] - (shift if not case.is_catch else 0)
            reading.submit_rating("rated", reviewer, case.case_key, value, case.method == "saliency")
    out = write_report(tmp_path / "r")
    page = out.read_text()
    section = page[page.index("<h2>Reader studies</h2>"):]
    assert "<h3>empty &lt;b&gt;</h3>" in section  # escaped
    empty = section[section.index("<h3>empty"):section.index("<h3>rated")]
    assert "Status: open; 6 cases, 2 readers; 0 of 12 readings rated." in empty and "No ratings yet." in empty
    rated = section[section.index("<h3>rated"):]
    assert "Status: open; 14 cases, 2 readers; 28 of 28 readings rated." in rated
    means = pd.read_csv(out.parent / "review-means.csv").set_index("method")
    assert means.loc["saliency", "evidence_match"] == 3.5 and means.loc["gradcam", "evidence_match"] == 1.5
    assert means.loc["saliency", "plausible"] == 1.0 and means.loc["gradcam", "plausible"] == 0.0
    assert list(means["n_ratings"]) == [12, 12] and "baseline_random" not in means.index
    # every image has the same two ratings per method: the CIs over images are the point
    assert "<td>3.50 [3.50, 3.50]</td>" in rated and "<td>1.50 [1.50, 1.50]</td>" in rated
    real = key[~key.is_catch]
    data = np.array([[scores[m] - shift for m in real.method] for shift in (0, 1)])
    alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    agreement = pd.read_csv(out.parent / "review-agreement.csv").set_index("measure")
    assert agreement.loc["krippendorff_alpha_ordinal", "value"] == pytest.approx(alpha)
    assert f"Krippendorff&#x27;s alpha (ordinal) of the evidence ratings is {alpha:.3f}" in rated


def test_agreement_verdict_wording() -> None:
    from xai_core.report import agreement_verdict

    def frame(value: float, low: float, high: float, note: str = "") -> pd.DataFrame:
        return pd.DataFrame([{"measure": "krippendorff_alpha_ordinal", "value": value, "ci_low": low, "ci_high": high,
                              "note": note}])

    assert "to rely on the mean ratings" in agreement_verdict(frame(0.9, 0.82, 0.95))
    assert "tentative conclusions only" in agreement_verdict(frame(0.78, 0.70, 0.85))
    assert "disagree too much" in agreement_verdict(frame(0.3, 0.1, 0.5))
    straddles = agreement_verdict(frame(0.75, 0.5, 0.9))
    assert "not shown that the readers agree" in straddles and "rely" not in straddles
    assert agreement_verdict(frame(float("nan"), float("nan"), float("nan"),
                                   "not testable: no case was read by 2 or more readers")) == (
        "Agreement on the evidence ratings cannot be judged here: no case was read by 2 or more readers.")
