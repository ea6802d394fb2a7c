"""AppTest of the Drift page on a tiny real workspace (maps in the attribution store, drift job run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from xai_core.metrics import drift
from tests.seed import add_checkpoint, add_dataset_rows, add_maps

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "drift.py")


def _blob(h: int, r: float, c: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :h]
    return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0).astype(np.float32)


def _seed() -> None:
    n, h = 5, 16
    masks = np.zeros((n, h, h), bool)
    masks[:, 5:9, 5:9] = True
    labels = [0, 1, 0, 1, 0]
    pks = add_dataset_rows("tiny", masks, labels)
    base = np.stack([_blob(h, 6, 6) for _ in range(n)])
    # IoU-20 stability: densenet stable under gradcam_plus_plus, unstable under layercam; resnet the reverse
    shifts = {("densenet201", "gradcam_plus_plus"): 0, ("densenet201", "layercam"): 5,
              ("resnet50", "gradcam_plus_plus"): 5, ("resnet50", "layercam"): 0}
    for arch in ("densenet201", "resnet50"):
        tl = add_checkpoint(f"{arch}-tl", arch, "imagenet", "tl", "tl", pks, labels, labels)
        ft = add_checkpoint(f"{arch}-ft", arch, "imagenet", "all", "ft", pks, labels, labels, parent_id=tl)
        for method in ("gradcam_plus_plus", "layercam"):
            s = shifts[(arch, method)]
            add_maps(tl, method, pks, base)
            add_maps(ft, method, pks, np.stack([_blob(h, 6, 6 + s) for _ in range(n)]))
    drift()


def test_empty_workspace_shows_fill_commands(workspace: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No drift metrics" in i.value for i in at.info)
    assert any("xaudit drift" in c.value for c in at.code)


def test_drift_table_reversal_and_maps(workspace: Path) -> None:
    _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    table = at.table[0].value
    stable = table.loc[("densenet201", "gradcam_plus_plus")]
    assert stable["iou_top20"].startswith("1.000 [1.000, 1.000]")
    assert stable["n"] == 5
    moved = table.loc[("resnet50", "gradcam_plus_plus")]
    assert moved["peak_displacement"].startswith(f"{5 / np.hypot(15, 15):.3f}")
    ranks = at.table[1].value
    assert ranks.loc["densenet201", "gradcam_plus_plus"] == 1 and ranks.loc["densenet201", "layercam"] == 2
    agree = at.table[2].value
    assert agree.iloc[0]["kendall_tau"] == -1.0 and bool(agree.iloc[0]["reversal"])
    assert at.warning and "Ranking reversal" in at.warning[0].value
    assert not at.get("plotly_chart")  # on arrival: the table and the ranking tab (static tables) only
    at.session_state["drift_view"] = "Distributions"
    at.run()
    assert not at.exception, at.exception
    (box,) = at.get("plotly_chart")
    spec = json.loads(box.proto.spec)
    assert sorted({t["name"] for t in spec["data"]}) == ["gradcam_plus_plus", "layercam"]
    at.session_state["drift_view"] = "TL and FT maps of one sample"
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 2  # TL map + FT map


def test_switching_pair_and_metric(workspace: Path) -> None:
    _seed()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="rank_metric").set_value("com_displacement").run()
    assert not at.exception
    ranks = at.table[1].value
    assert ranks.loc["resnet50", "layercam"] == 1
    at.session_state["drift_view"] = "TL and FT maps of one sample"
    at.run()
    at.selectbox(key="pair").set_value("resnet50-tl → resnet50-ft").run()
    assert not at.exception
    metrics_row = at.table[-1].value
    assert float(metrics_row["iou_top20"].iloc[0]) < 1.0
