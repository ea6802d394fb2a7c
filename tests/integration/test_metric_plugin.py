"""A metric registered inside this test, touching no other file, reaches ``xaudit evaluate`` (its rows
are stored, and only its rows: the built-in values are not recomputed), ``xaudit metrics``, the
``gt-metrics`` export (a column) and the Benchmark page's metric selector (AppTest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db import GroundTruthMetric, session_scope
from tests.seed import add_checkpoint, add_maps
from xai_core.cli import run
from xai_core.data import build_dataset, load_dataset
from xai_core.metrics import MapBatch, list_ground_truth_metrics, register_ground_truth_metric
from xai_core.metrics.registry import GROUND_TRUTH_METRICS

PAGE = str(Path(__file__).resolve().parents[2] / "ui" / "views" / "benchmark.py")
NAME, LABEL = "lesion_to_peak", "mean lesion attribution over the peak"


@pytest.fixture
def lesion_to_peak() -> Iterator[None]:
    """Registers the throw-away metric for the test and removes it afterwards."""

    @register_ground_truth_metric(NAME, label=LABEL, better="higher", value_range=(0.0, 1.0),
                                  help="Mean |a| inside the lesion divided by the map's maximum.")
    def _ratio(b: MapBatch) -> np.ndarray:
        inside = np.sum(b.v, axis=1, where=b.m, dtype=np.float64) / np.maximum(b.n, 1)
        return inside / np.where(b.row_max > 0, b.row_max, 1.0)

    try:
        yield
    finally:
        GROUND_TRUTH_METRICS.unregister(NAME)
    assert NAME not in list_ground_truth_metrics()


def _count(metric: str | None = None) -> int:
    with session_scope() as session:
        query = select(func.count(GroundTruthMetric.id))
        if metric:
            query = query.where(GroundTruthMetric.metric == metric)
        return int(session.scalar(query))


def test_a_metric_registered_here_is_evaluated_exported_and_offered_on_the_page(
        workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], lesion_to_peak: None) -> None:
    build_dataset("tiny", n=12, size=32, seed=0)
    data = load_dataset("tiny")
    pks, labels = data.sample_pks.tolist(), data.labels.tolist()
    ck = add_checkpoint("vgg-mri-all", "vgg16", "mri", "all", "all", pks, labels, labels)  # every sample correct
    keep = [i for i in range(len(pks)) if 0 < data.masks[i].sum() < data.masks[i].size]
    # background 0.5, lesion (k + 1) / 4 for the k-th sample mod 4, one pixel outside the lesion at 1:
    # mean lesion attribution / peak = (k + 1) / 4 (exact in the store's float16)
    maps = np.full(data.masks.shape, 0.5, np.float32)
    expected = {}
    for i in keep:
        level = (i % 4 + 1) / 4
        maps[i][data.masks[i]] = level
        outside = np.flatnonzero(~data.masks[i].ravel())[0]
        maps[i].ravel()[outside] = 1.0
        expected[pks[i]] = level
    add_maps(ck, "saliency", pks, maps)

    assert run(["evaluate", "--metrics", "precision", "--no-baselines"]) == 0  # the built-in metric first
    assert _count() == _count("precision") == len(keep)
    assert run(["evaluate", "--no-baselines"]) == 0  # every registered metric: the others are added
    assert _count(NAME) == len(keep) and _count("precision") == len(keep)
    assert _count() == len(keep) * len(list_ground_truth_metrics())
    assert run(["evaluate"]) == 0  # the chance maps get every metric too, the stored values stay
    out = capsys.readouterr().out
    assert f"evaluated {2 * len(keep)} maps ({len(keep)} already stored)" in out
    assert _count(NAME) == 3 * len(keep)

    assert run(["metrics"]) == 0
    listed = [line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines()]
    assert [NAME, f"{LABEL} (higher is better, 0 to 1)"] in listed

    csv = tmp_path / "gt.csv"
    assert run(["export", "gt-metrics", str(csv)]) == 0
    frame = pd.read_csv(csv)
    assert list(frame.columns[-len(list_ground_truth_metrics()):]) == list_ground_truth_metrics()
    assert list_ground_truth_metrics()[-1] == NAME
    sal = frame[frame["method"] == "saliency"].set_index("sample_pk")[NAME]
    assert sal.to_dict() == expected  # hand values, exactly
    chance = frame[frame["method"] != "saliency"][NAME]
    assert len(chance) == 2 * len(keep) and chance.between(0, 1).all()

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    metric = at.selectbox[1]
    assert NAME in metric.options or LABEL in metric.options
    metric.set_value(NAME).run()
    assert not at.exception, at.exception
    assert f"Mean {NAME}" in " ".join(s.value for s in at.subheader)
    cell = at.table[0].value.loc["saliency", "mri / all"]  # the CI table is a static table
    assert cell.startswith(f"{np.mean(list(expected.values())):.3f} [")
