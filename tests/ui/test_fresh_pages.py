"""The pages show the workspace as it is now: rows added by the real jobs while the dashboard's
process keeps running, and a second workspace (``XAUDIT_HOME`` changed) in the same process.

``st.cache_data`` is process-global, so every AppTest here shares the caches a server would keep:
a cache keyed on anything but the workspace and a change stamp of its tables shows stale rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import models
from db import Dataset, Sample, reset_engines, session_scope
from models.prediction import predict
from xai_core.attribution import explain_checkpoint, load_maps
from xai_core.attribution.jobs import select_samples
from xai_core.data import build_dataset
from xai_core.metrics import drift, evaluate, explanation_precision

VIEWS = Path(__file__).resolve().parents[2] / "ui" / "views"
SIZE = 32


def _tl_ft_pair(dataset: str, n: int, seed: int) -> tuple[int, int, list[int]]:
    """A generated dataset and a TL checkpoint with its FT successor (real weights and test-split
    predictions); returns (tl id, ft id, test sample pks)."""
    build_dataset(dataset, n=n, size=SIZE, seed=seed, train_frac=0.5, val_frac=0.1)
    with session_scope() as session:
        ds_id = int(session.scalar(select(Dataset.id).where(Dataset.name == dataset)))
    test = select_samples(dataset, "test")
    ids: list[int] = []
    for phase, degree in (("tl", "tl"), ("ft", "all")):
        torch.manual_seed(seed + len(ids))
        net = models.build("vgg16", 2, 1, 0.125).eval()
        pred, probs = predict(net, test.images)
        info = models.save_checkpoint(
            net, name=f"{dataset}-{phase}", arch="vgg16", width=0.125, num_classes=2, in_chans=1, input_size=SIZE,
            pretrain="natural", degree=degree, phase=phase, parent_id=ids[0] if ids else None, dataset_id=ds_id,
            predictions=(test.sample_pks, pred, probs[np.arange(len(pred)), pred], pred == test.labels))
        ids.append(int(info.id))
    return ids[0], ids[1], test.sample_pks.tolist()


def _add_method(method: str, tl: int, ft: int) -> None:
    """A method's maps of both checkpoints via the explain job, then ``evaluate`` and ``drift``."""
    for ck in (tl, ft):
        explain_checkpoint(ck, method, split="test")
    evaluate([tl, ft], methods=[method], selection="all", baselines=False)
    drift(methods=[method], selection="all")


def _lesion_pks(dataset: str, pks: list[int]) -> list[int]:
    """The samples ``evaluate`` scores: a lesion mask that is neither empty nor the whole image."""
    masks = select_samples(dataset, sample_pks=pks).masks.reshape(len(pks), -1)
    return [pk for pk, m in zip(pks, masks, strict=True) if 0 < m.sum() < m.size]


def _mean_precision(ck: int, method: str, dataset: str, pks: list[int]) -> float:
    """Mean explanation precision of the stored maps (the Benchmark cell's mean)."""
    masks = select_samples(dataset, sample_pks=pks).masks.astype(bool)
    return float(explanation_precision(load_maps(ck, method, pks), masks).mean())


def _sample_labels(pks: list[int]) -> list[str]:
    """The Explain page's sample options for ``pks``."""
    with session_scope() as session:
        rows = session.execute(select(Sample.sample_id, Sample.label, Sample.split)
                               .where(Sample.id.in_(pks)).order_by(Sample.id)).all()
    return [f"{sid}  (label {lab}, {sp})" for sid, lab, sp in rows]


def _assert_explain_lists(pks: list[int]) -> None:
    """The Explain page offers exactly the test samples ``pks`` of this workspace."""
    at = AppTest.from_file(str(VIEWS / "explain.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.selectbox[2].options == _sample_labels(pks)


def _data_page() -> AppTest:
    at = AppTest.from_file(str(VIEWS / "data.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def _benchmark() -> AppTest:
    at = AppTest.from_file(str(VIEWS / "benchmark.py"), default_timeout=120).run()
    at.selectbox[0].set_value("all").run()
    assert not at.exception, at.exception
    return at


def _drift_page() -> AppTest:
    at = AppTest.from_file(str(VIEWS / "drift.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def _assert_pages_show(methods: list[str], dataset: str, tl: int, ft: int, pks: list[int]) -> None:
    """Benchmark and Drift pages list exactly ``methods``, with this workspace's counts and means."""
    scored = _lesion_pks(dataset, pks)
    bench = _benchmark()
    wide = bench.table[0].value
    assert sorted(wide.index) == sorted(methods)
    for method in methods:
        for ck, column in ((tl, "natural / tl"), (ft, "natural / all")):
            assert wide.loc[method, column].startswith(f"{_mean_precision(ck, method, dataset, scored):.3f} ["), (
                method, column, wide.loc[method, column])
    bench.session_state["benchmark_view"] = "Long table"  # a lazy tab: drawn once open
    long = bench.run().dataframe[0].value
    assert set(long["n"]) == {len(scored)}
    table = _drift_page().table[0].value
    assert sorted(table.index) == [("vgg16", m) for m in sorted(methods)]
    assert set(table["n"]) == {len(pks)}


def test_pages_follow_new_rows_and_a_second_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("XAUDIT_HOME", str(tmp_path / "first"))
    reset_engines()
    tl, ft, pks = _tl_ft_pair("tiny", 12, 0)
    _add_method("saliency", tl, ft)
    _assert_pages_show(["saliency"], "tiny", tl, ft, pks)
    _assert_explain_lists(pks)

    # the jobs add a method while the "server" keeps its caches: both pages show it
    _add_method("input_x_gradient", tl, ft)
    _assert_pages_show(["input_x_gradient", "saliency"], "tiny", tl, ft, pks)

    # a second workspace, same dataset name and checkpoint ids, other samples and methods
    monkeypatch.setenv("XAUDIT_HOME", str(tmp_path / "second"))
    reset_engines()
    data = _data_page()
    assert any("No datasets in this workspace yet" in i.value for i in data.info)
    tl2, ft2, pks2 = _tl_ft_pair("tiny", 16, 1)
    data = _data_page()  # at once, not after a time-to-live: the new dataset is listed
    assert data.selectbox(key="dataset").options == ["tiny"]
    assert "16 images of 32 px" in " ".join(c.value for c in data.caption)
    assert (tl2, ft2) == (tl, ft) and pks2 != pks
    _add_method("guided_backprop", tl2, ft2)
    _assert_pages_show(["guided_backprop"], "tiny", tl2, ft2, pks2)

    # the Explain page lists the second workspace's samples of "tiny", not the first one's
    _assert_explain_lists(pks2)
    reset_engines()
