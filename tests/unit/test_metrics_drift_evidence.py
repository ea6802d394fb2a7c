"""Drift evidence and the qualitative grid's core: hand-computed centres, normalisations, orders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xai_core.errors import ShapeError
from xai_core.metrics.drift_evidence import (
    centres_of_mass,
    drift_order,
    evidence,
    map_difference,
    normalised_maps,
    symmetric_limit,
)
from xai_core.metrics.drift_measures import drift_metrics
from xai_core.metrics.figures import drift_epoch_lines, drift_evidence, qualitative_grid
from xai_core.metrics.qualitative import grid_cells, grid_of, grid_samples, peak_scaled


def test_centre_of_mass_of_a_constructed_map() -> None:
    m = np.zeros((2, 3, 4), np.float32)
    m[0, 0, 0], m[0, 2, 3] = 1.0, -3.0  # |.|: mass 1 at (0, 0), 3 at (2, 3)
    # m[1] all zero: the image centre ((3-1)/2, (4-1)/2)
    assert np.allclose(centres_of_mass(m), [[6 / 4, 9 / 4], [1.0, 1.5]])


def test_centres_give_the_com_displacement_metric() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 9, 7)).astype(np.float32), rng.random((4, 9, 7)).astype(np.float32) ** 4
    shift = np.linalg.norm(centres_of_mass(b) - centres_of_mass(a), axis=1) / np.hypot(8, 6)
    assert np.allclose(shift, drift_metrics(a, b, metrics=["com_displacement"])["com_displacement"])


def test_normalised_maps_and_difference() -> None:
    a = np.array([[[1, -3], [0, 0]]], np.float32)
    b = np.array([[[0, 0], [2, 2]]], np.float32)
    assert np.allclose(normalised_maps(a), [[[0.25, 0.75], [0, 0]]])
    assert np.allclose(normalised_maps(np.zeros((1, 2, 2))), 0.25)  # all-zero: uniform
    diff = map_difference(a, b)
    assert np.allclose(diff, [[[-0.25, -0.75], [0.5, 0.5]]]) and abs(diff.sum()) < 1e-12
    assert np.allclose(map_difference(a, np.zeros_like(a)), [[[0.0, -0.5], [0.25, 0.25]]])
    assert symmetric_limit(diff) == 0.75 and symmetric_limit(np.zeros(3)) == 1e-12
    with pytest.raises(ShapeError):
        map_difference(a, np.zeros((1, 2, 3)))


def test_evidence_of_one_sample() -> None:
    image, mask = np.ones((3, 4), np.float32), np.zeros((3, 4), bool)
    a, b = np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32)
    a[0, 0] = 2.0
    b[2, 0], b[2, 2] = 1.0, 1.0
    ev = evidence(image, mask, a, b)
    assert ev.centre_a == (0.0, 0.0) and ev.centre_b == (2.0, 1.0)
    assert ev.shift == pytest.approx(np.sqrt(5))
    assert ev.map_a[0, 0] == 1.0 and ev.map_b[2, 2] == 0.5 and ev.diff[0, 0] == -1.0
    with pytest.raises(ShapeError, match="differ in size"):
        evidence(np.ones((4, 4)), np.zeros((4, 4), bool), a, b)


def test_drift_order_largest_drift_first() -> None:
    rows = pd.DataFrame({"sample_id": ["d", "c", "b", "a"], "iou_top20": [0.5, 0.2, 0.9, 0.2],
                         "com_displacement": [0.1, 0.3, np.nan, 0.0], "gini_change": [-0.4, 0.1, 0.3, 0.0]})
    # IoU: higher = more similar, so ascending; the tie 0.2 by sample id (a before c)
    assert list(drift_order(rows, "iou_top20")["sample_id"]) == ["a", "c", "d", "b"]
    # displacement: lower = more similar, so descending; missing last
    assert list(drift_order(rows, "com_displacement")["sample_id"]) == ["c", "d", "a", "b"]
    # a change: |value| descending
    assert list(drift_order(rows, "gini_change")["sample_id"]) == ["d", "b", "c", "a"]


def test_evidence_figure_arrows_and_scales() -> None:
    image, mask = np.ones((5, 5), np.float32), np.zeros((5, 5), bool)
    mask[1:3, 1:3] = True
    a, b = np.zeros((5, 5), np.float32), np.zeros((5, 5), np.float32)
    a[1, 1], b[3, 4] = 1.0, 4.0
    fig = drift_evidence(evidence(image, mask, a, b))
    arrows = [x for x in fig.layout.annotations if x.showarrow]
    assert len(arrows) == 3
    assert all((x.ax, x.ay, x.x, x.y) == (1.0, 1.0, 4.0, 3.0) for x in arrows)  # tail TL (row 1, col 1), head FT
    assert [t.type for t in fig.data[:4]] == ["heatmap", "heatmap", "contour", "scatter"]
    assert fig.layout.coloraxis2.cmid == 0 and fig.layout.coloraxis2.cmax == 1.0 == -fig.layout.coloraxis2.cmin
    assert fig.layout.coloraxis.cmax == 1.0


def _index() -> pd.DataFrame:
    rows = []
    for ck, (pretrain, degree) in enumerate([("mri", "all"), ("mri", "tl"), ("natural", "2conv"), ("natural", "tl")], 1):
        for method in ("saliency", "gradcam"):
            rows += [(ck, f"ck{ck}", "vgg16", pretrain, degree, method, "h", pk, f"s{pk}", "ds") for pk in (7, 8)]
    rows += [(9, "ck9", "vgg16", "mri", "tl", "saliency", "h", 7, "s7", "ds")]  # a later mri/tl checkpoint
    rows += [(10, "ck10", "vgg16", "mri", "tl", "lrp", "h", 8, "s8", "ds")]  # one more cell for sample 8
    return pd.DataFrame(rows, columns=["checkpoint_id", "checkpoint", "arch", "pretrain", "degree", "method",
                                       "params_hash", "sample_pk", "sample_id", "dataset"])


def test_grid_samples_and_cells() -> None:
    index = _index()
    samples = grid_samples(index)
    assert list(samples["sample_pk"]) == [8, 7] and list(samples["cells"]) == [9, 8]
    cells = grid_cells(index, 7, "vgg16")
    assert len(cells) == 8
    assert list(dict.fromkeys(zip(cells["pretrain"], cells["degree"]))) == [
        ("mri", "tl"), ("mri", "all"), ("natural", "tl"), ("natural", "2conv")]  # the study's degree order
    assert cells[(cells["degree"] == "tl") & (cells["pretrain"] == "mri") & (cells["method"] == "saliency")][
        "checkpoint_id"].tolist() == [9]  # the latest checkpoint of a cell
    assert grid_cells(index, 7, "resnet50").empty


def test_grid_of_scales_each_cell() -> None:
    assert np.allclose(peak_scaled(np.array([[[-2, 1], [0, 0]], [[0, 0], [0, 0]]], np.float32)),
                       [[[1, 0.5], [0, 0]], [[0, 0], [0, 0]]])
    cells = grid_cells(_index(), 8, "vgg16")
    maps = np.arange(len(cells) * 4, dtype=np.float32).reshape(len(cells), 2, 2) + 1
    grid = grid_of(np.zeros((2, 2)), np.eye(2, dtype=bool), cells, maps)
    assert grid.rows == [("mri", "tl"), ("mri", "all"), ("natural", "tl"), ("natural", "2conv")]
    assert grid.methods == ["gradcam", "lrp", "saliency"] and len(grid.maps) == 9
    first = cells.iloc[0]
    assert np.allclose(grid.maps[(first.pretrain, first.degree, first.method)], np.array([[1, 2], [3, 4]]) / 4)
    fig = qualitative_grid(grid)
    assert sum(t.name == "map" for t in fig.data) == 9 and sum(t.name == "lesion" for t in fig.data) == 9
    with pytest.raises(ShapeError):
        grid_of(np.zeros((3, 3)), np.zeros((3, 3), bool), cells, maps)


def test_drift_epoch_lines_runs_and_accuracy_axis() -> None:
    curve = pd.DataFrame(
        [("resnet50", p, "all", m, e, mean, mean - 0.1, mean + 0.1, 5, acc)
         for p, shift in (("mri", 0.0), ("natural", 0.2))
         for m in ("layercam", "gradcam_plus_plus")
         for e, mean, acc in ((1, 0.9 - shift, 0.6), (2, 0.7 - shift, 0.8))],
        columns=["arch", "pretrain", "degree", "method", "epoch", "mean", "ci_low", "ci_high", "n", "val_accuracy"])
    fig = drift_epoch_lines(curve, "iou_top20")
    names = [t.name for t in fig.data if t.mode == "lines+markers"]
    assert names == ["gradcam_plus_plus (mri / all)", "layercam (mri / all)", "val accuracy (mri / all)",
                     "gradcam_plus_plus (natural / all)", "layercam (natural / all)", "val accuracy (natural / all)"]
    natural = next(t for t in fig.data if t.name == "layercam (natural / all)")
    assert list(natural.x) == [1, 2] and np.allclose(natural.y, [0.7, 0.5]) and natural.line.dash == "dash"
    acc = next(t for t in fig.data if t.name == "val accuracy (mri / all)")
    assert acc.yaxis == "y2" and list(acc.y) == [0.6, 0.8]
    band = next(t for t in fig.data if t.name == "layercam (mri / all) CI")
    assert np.allclose(band.y, [1.0, 0.8, 0.6, 0.8])  # ci_high forwards, ci_low backwards
