"""The study's degree order (tl, 1conv … 4conv, all) in sorted frames, pivots and summaries."""

from __future__ import annotations

import pandas as pd

from xai_core.metrics import ci_table, summarise
from xai_core.metrics.order import degree_rank, order_columns, ordered_degrees, sort_by_degree

STUDY = ["tl", "1conv", "2conv", "3conv", "4conv", "all"]


def test_ordered_degrees_and_rank() -> None:
    assert ordered_degrees(["all", "tl", "4conv", "1conv", "-", "tl"]) == ["tl", "1conv", "4conv", "all", "-"]
    assert [degree_rank(d) for d in STUDY] == list(range(6)) and degree_rank("-") == 6


def test_sort_pivot_and_summary_follow_the_study_order() -> None:
    frame = pd.DataFrame({"method": ["m"] * 12, "pretrain": ["mri"] * 6 + ["natural"] * 6,
                          "degree": sorted(STUDY) * 2, "precision": range(12)})
    assert list(sort_by_degree(frame, ["pretrain", "degree"])["degree"][:6]) == STUDY
    summary = summarise(frame, ["method", "pretrain", "degree"], ["precision"], n_boot=10)
    assert list(summary["degree"]) == STUDY * 2 and list(summary["pretrain"]) == ["mri"] * 6 + ["natural"] * 6
    wide = ci_table(summary)
    assert list(wide.columns) == [f"{p} / {d}" for p in ("mri", "natural") for d in STUDY]
    assert list(order_columns(frame.pivot(index="pretrain", columns="degree", values="precision")).columns) == STUDY
