"""Reading-study exports and figures: CSV cells a spreadsheet would run are neutralised; the
mean-ratings chart draws the table's CIs as asymmetric error bars."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from xai_core.review.export import spreadsheet_safe, to_csv
from xai_core.review.figures import mean_ratings_figure


def test_formula_cells_are_prefixed_and_the_rest_kept_verbatim() -> None:
    assert spreadsheet_safe('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert [spreadsheet_safe(v) for v in ("+1", "-2", "@SUM(A1)", "\tx", "\rx")] == \
        ["'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx"]
    assert [spreadsheet_safe(v) for v in ("a = b", "<script>", "", 3, -4.5, None)] == \
        ["a = b", "<script>", "", 3, -4.5, None]
    frame = pd.DataFrame({"note": ["=1+1", "fine, \"quoted\"\nline"], "evidence_match": [-1, 5],
                          "point_x": [np.nan, -0.5]})
    back = pd.read_csv(io.StringIO(to_csv(frame)), keep_default_na=False)
    assert back["note"].tolist() == ["'=1+1", "fine, \"quoted\"\nline"]
    assert back["evidence_match"].tolist() == [-1, 5] and back["point_x"].tolist() == ["", "-0.5"]  # numbers are not touched


def test_mean_ratings_figure_error_bars() -> None:
    means = pd.DataFrame({"degree": ["tl", "all"], "n_ratings": [4, 6], "n_readers": [2, 2], "n_cases": [2, 3],
                          "evidence_match": [2.5, 4.0], "evidence_ci_low": [2.0, 3.0], "evidence_ci_high": [3.5, 4.5],
                          "plausible": [0.25, 0.5], "plausible_ci_low": [0.0, 0.2],
                          "plausible_ci_high": [0.5, 1.0]})
    evidence, plausible = mean_ratings_figure(means, "degree").data
    assert list(evidence.x) == ["tl", "all"] and list(evidence.y) == [2.5, 4.0]
    assert list(evidence.error_y.array) == [1.0, 0.5] and list(evidence.error_y.arrayminus) == [0.5, 1.0]
    assert list(plausible.y) == [0.25, 0.5]
    assert np.allclose(plausible.error_y.array, [0.25, 0.5]) and np.allclose(plausible.error_y.arrayminus, [0.25, 0.3])
