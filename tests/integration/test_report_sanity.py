"""The report's sanity-check section: failing methods named with the rule, verdict and summary CSVs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from tests.sanity_seed import STEPS, add_sanity_rows
from tests.seed import add_checkpoint, add_dataset_rows
from xai_core.report import write_report


def test_report_names_failing_methods(workspace: Path, tmp_path: Path) -> None:
    page = write_report(tmp_path / "empty").read_text()
    assert "<h3>Sanity checks (Adebayo et al. 2018)</h3>" in page and "No sanity checks yet" in page

    pks = add_dataset_rows("tiny", np.zeros((4, 16, 16), bool), [0, 1, 0, 1])
    ck = add_checkpoint("dn-ft", "densenet_mini", "natural", "all", "ft", pks, [0, 1, 0, 1], [0, 1, 0, 1])
    add_sanity_rows(ck, "saliency", pks, [0.8, 0.6, 0.4, 0.3, 0.2, 0.1])
    add_sanity_rows(ck, "guided_backprop", pks, [0.95, 0.9, 0.85, 0.8, 0.75, 0.7])  # barely changes
    add_sanity_rows(ck, "guided_backprop", pks, [0.9, 0.6], mode="independent", steps=["head", "block1"])
    out = write_report(tmp_path / "r")
    page = out.read_text()
    section = page[page.index("<h3>Sanity checks"):]
    assert "<b>Fails: guided_backprop on densenet_mini (cascading), guided_backprop on densenet_mini (independent).</b>" \
        in section
    assert "stays above 0.5" in section and section.count('class="plotly-graph-div"') == 2  # cascading, independent
    verdicts = pd.read_csv(out.parent / "sanity-verdicts.csv")
    assert verdicts[["method", "mode", "verdict", "step"]].values.tolist() == [
        ["guided_backprop", "cascading", "fails", "block1"], ["guided_backprop", "independent", "fails", "head"],
        ["saliency", "cascading", "passes", "block1"]]
    np.testing.assert_allclose(verdicts["spearman"], [0.7, 0.9, 0.1], atol=1e-12)
    summary = pd.read_csv(out.parent / "sanity-summary.csv")
    saliency = summary[(summary["method"] == "saliency")]
    assert saliency["step"].tolist() == STEPS and (saliency["n"] == 4).all()
    np.testing.assert_allclose(saliency["sanity_spearman"], [0.8, 0.6, 0.4, 0.3, 0.2, 0.1], atol=1e-12)
    assert re.search(r"<td>sanity_hog</td>\s*<td>HOG correlation of \|map\|</td>", section)
