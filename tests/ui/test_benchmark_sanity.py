"""AppTest of the Benchmark page's sanity-check section (stored rows seeded directly)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.sanity_seed import STEPS, add_sanity_rows
from tests.seed import add_checkpoint, add_dataset_rows, add_gt_rows

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "benchmark.py")


def _seed() -> dict[str, list[float]]:
    """A vgg16 checkpoint whose saliency maps decorrelate step by step and whose edge map never
    changes; four samples whose Spearman values around the planted medians are given."""
    n, h = 4, 16
    masks = np.zeros((n, h, h), bool)
    masks[:, 4:8, 4:10] = True
    pks = add_dataset_rows("tiny", masks, [0, 1, 0, 1])
    ck = add_checkpoint("vgg-mri-all", "vgg16", "mri", "all", "ft", pks, [0, 1, 0, 1], [0, 1, 0, 1])
    add_gt_rows(ck, "saliency", pks, np.random.default_rng(0).random((n, h, h)).astype(np.float32), masks, [True] * n)
    medians = {"saliency": [0.9, 0.7, 0.5, 0.3, 0.2, 0.1], "baseline_sobel": [1.0] * 6}
    for method, values in medians.items():
        add_sanity_rows(ck, method, pks, values)
    return medians


def test_sanity_section_draws_curves_and_flags_the_edge_map(workspace: Path) -> None:
    st.cache_data.clear()
    medians = _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    at.session_state["benchmark_view"] = "Sanity checks"
    at.run()
    assert not at.exception, at.exception
    table = at.table[-1].value.set_index("method")
    assert table.loc["baseline_sobel", "flag"] == "⚠ fails" and table.loc["saliency", "flag"] == "passes"
    assert table.loc["saliency", "step"] == "block1"
    assert float(table.loc["saliency", "spearman"]) == pytest.approx(0.1, abs=1e-9)  # median of 0.08..0.12
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = {t["name"]: t for t in fig["data"]}
    assert lines["saliency"]["x"] == STEPS
    assert lines["saliency"]["y"] == pytest.approx(medians["saliency"], abs=1e-9)
    assert lines["baseline_sobel"]["y"] == pytest.approx([0.995] * 6, abs=1e-9)  # median of 0.98, 0.99, 1, 1
    assert any("fails a sanity check" in c.value for c in at.caption)
