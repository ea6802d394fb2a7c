"""The ``drift`` job end to end on a real SQLite workspace and the attribution store's chunk files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from db import DriftMetric, session_scope
from xai_core.errors import ConfigError, UnknownNameError, WorkspaceError
from xai_core.metrics import drift, drift_metrics
from xai_core.metrics.stored import read_stored_maps
from xai_core.metrics.queries import drift_frame, drift_table, export_table, reversal_table
from tests.seed import add_checkpoint, add_dataset_rows, add_maps

KEYS = ["com_displacement", "peak_displacement", "iou_top10", "iou_top20", "pearson", "spearman",
        "gini_change", "entropy_change"]


def _blob(h: int, r: float, c: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :h]
    return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0).astype(np.float32)


def _seed(workspace: Path) -> dict[str, object]:
    n, h = 6, 16
    masks = np.zeros((n, h, h), bool)
    masks[:, 5:9, 5:9] = True
    labels = [0, 1, 0, 1, 0, 1]
    pks = add_dataset_rows("tiny", masks, labels)
    tl = add_checkpoint("resnet-tl", "resnet50", "imagenet", "tl", "tl", pks, [0, 1, 0, 1, 0, 0], labels)
    ft = add_checkpoint("resnet-ft", "resnet50", "imagenet", "all", "ft", pks, [0, 1, 0, 1, 1, 1], labels, parent_id=tl)
    maps_a = np.stack([_blob(h, 6, 6) for _ in range(n)])
    maps_b = np.stack([_blob(h, 6, 6 + s) for s in range(n)])  # sample i drifts by i pixels
    for method in ("gradcam", "layercam"):
        add_maps(tl, method, pks, maps_a)
        add_maps(ft, method, pks, maps_b if method == "gradcam" else maps_a)
    return {"pks": pks, "tl": tl, "ft": ft, "h": h}


def test_drift_job_values_resume_and_selection(workspace: Path) -> None:
    s = _seed(workspace)
    progress: list[tuple[int, int]] = []
    results = drift(progress=lambda d, t, _m: progress.append((d, t)))
    # true positives for both checkpoints: samples 0..3 (TL wrong on 5, FT wrong on 4)
    assert {(r.method, r.computed, r.skipped) for r in results} == {("gradcam", 4, 0), ("layercam", 4, 0)}
    assert progress[-1] == (8, 8)
    tp = [s["pks"][i] for i in range(4)]
    phash = results[0].params_hash_a
    assert (results[0].method_b, results[0].params_hash_b) == ("gradcam", phash)
    expected = drift_metrics(read_stored_maps(s["tl"], "gradcam", phash, tp), read_stored_maps(s["ft"], "gradcam", phash, tp))
    D = DriftMetric
    with session_scope() as session:
        rows = session.execute(select(D.checkpoint_a_id, D.method_b, D.params_hash_a, D.params_hash_b, D.sample_pk,
                                      D.selection, D.metric, D.value).where(D.method_a == "gradcam")).all()
    long = pd.DataFrame(rows, columns=["a", "method_b", "hash_a", "hash_b", "sample_pk", "selection", "metric", "value"])
    assert len(long) == 4 * len(KEYS) and set(long["metric"]) == set(KEYS)  # one row per (pair, metric)
    assert set(long["selection"]) == {"true_positive"} and set(long["a"]) == {s["tl"]}
    assert set(long["method_b"]) == {"gradcam"} and set(long["hash_a"]) == set(long["hash_b"]) == {phash}  # full hashes
    got = long.pivot(index="sample_pk", columns="metric", values="value").sort_index()
    assert got.index.tolist() == tp
    for key in KEYS:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-12)
    # blob shifted by i pixels: displacement i / diagonal (float16 storage keeps the shape)
    np.testing.assert_allclose(got["peak_displacement"], np.arange(4) / np.hypot(15, 15), atol=1e-9)
    np.testing.assert_allclose(got["com_displacement"], np.arange(4) / np.hypot(15, 15), atol=2e-3)
    lay = drift_frame(methods=["layercam"])  # identical maps: no drift
    assert np.allclose(lay["iou_top20"], 1.0) and np.allclose(lay["com_displacement"], 0.0)

    again = drift()
    assert all(r.computed == 0 and r.skipped == 4 for r in again)
    more = drift(selection="all", methods=["gradcam"])
    assert [(r.computed, r.skipped) for r in more] == [(2, 4)]
    with session_scope() as session:
        sel = session.scalars(select(D.selection).where(D.method_a == "gradcam", D.metric == "pearson")).all()
    assert sorted(sel).count("all") == 2


def test_drift_summaries_and_export(workspace: Path, tmp_path: Path) -> None:
    _seed(workspace)
    drift()
    table = drift_table(n_boot=200)
    row = table[(table.method == "gradcam") & (table.metric == "peak_displacement")].iloc[0]
    assert row["n"] == 4 and row["mean"] == pytest.approx(np.mean(np.arange(4)) / np.hypot(15, 15))
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    ranking, agreement = reversal_table()
    assert set(ranking["method"]) == {"gradcam", "layercam"}
    assert agreement.empty  # one architecture only: nothing to rank against
    path, n = export_table("drift-metrics", tmp_path / "drift.parquet")
    back = pd.read_parquet(path)
    assert n == 8 and len(back) == 8 and set(KEYS) <= set(back.columns)
    path, n = export_table("drift-summary", tmp_path / "summary.csv", n_boot=200)
    assert len(pd.read_csv(path)) == n == 2 * len(KEYS)
    with pytest.raises(ConfigError, match=r"\.csv or \.parquet"):
        export_table("drift-metrics", tmp_path / "x.xlsx")
    with pytest.raises(ConfigError, match="unknown table"):
        export_table("nope", tmp_path / "x.csv")


def test_drift_job_errors(workspace: Path) -> None:
    with pytest.raises(WorkspaceError, match="no TL→FT checkpoint pairs"):
        drift()
    s = _seed(workspace)
    with pytest.raises(UnknownNameError, match="saliency"):
        drift(methods=["saliency"])
    with pytest.raises(UnknownNameError, match="no registered checkpoint"):
        drift(pairs=[("resnet-tl", "nope")])
    with pytest.raises(ConfigError, match="selection"):
        drift(selection="correct")
    with pytest.raises(ConfigError, match="itself"):
        drift(pairs=[(s["tl"], s["tl"])])
    # explicit pair by names works the same as the default pair
    assert sum(r.computed for r in drift(pairs=[("resnet-tl", "resnet-ft")])) == 8


def test_cross_method_drift_on_one_checkpoint(workspace: Path) -> None:
    s = _seed(workspace)
    res = drift(pairs=[(s["tl"], s["tl"]), (s["ft"], s["ft"])], methods=["gradcam:layercam"], selection="all")
    assert [(r.method, r.computed) for r in res] == [("gradcam:layercam", 6), ("gradcam:layercam", 6)]
    frame = drift_frame(methods=["gradcam:layercam"], kind="cross-method")
    same = frame[frame.checkpoint_b_id == s["tl"]]  # TL: both methods stored the same maps
    assert np.allclose(same["iou_top20"], 1.0) and np.allclose(same["pearson"], 1.0)
    moved = frame[frame.checkpoint_b_id == s["ft"]].sort_values("sample_pk")  # FT gradcam blob shifted by i
    np.testing.assert_allclose(moved["peak_displacement"], np.arange(6) / np.hypot(15, 15), atol=1e-9)
    # each side's method and full hash are stored: they lead back to both sides' maps
    row = frame.iloc[0]
    assert (row["method_a"], row["method_b"]) == ("gradcam", "layercam")
    assert len(row["params_hash_a"]) == len(row["params_hash_b"]) == 64
    assert (res[1].params_hash_a, res[1].params_hash_b) == (row["params_hash_a"], row["params_hash_b"])
    for ck, method, phash in ((row["checkpoint_a_id"], "gradcam", row["params_hash_a"]),
                              (row["checkpoint_b_id"], "layercam", row["params_hash_b"])):
        assert read_stored_maps(int(ck), method, phash, [s["pks"][0]]).shape == (1, 16, 16)
    with pytest.raises(ConfigError, match="itself"):
        drift(pairs=[(s["tl"], s["tl"])], methods=["gradcam"])
