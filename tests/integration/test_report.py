"""``write_report`` on a small workspace with known directions: finding cards with escaped text and
verdict badges, the methods text, the study's degree order and the equivalent-methods note."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from xai_core.findings import OPPOSITE
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
    assert len(cards) == 6  # pre-training, degree trend, methods, baseline, drift, reversal
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
