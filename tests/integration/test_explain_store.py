"""The attribution store and job on a real tiny workspace: dataset built by the data generator,
a registered vgg16 checkpoint, maps written as float16 chunks and indexed in SQLite."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

import models
from db import AttributionMap, Checkpoint, session_scope
from models.checkpoints import read_tensors, write_safetensors
from xai_core.attribution import (
    explain,
    explain_checkpoint,
    explain_samples,
    explain_samples_info,
    load_maps,
    params_hash,
    read_maps,
)
from xai_core.attribution.canonical import prepare
from xai_core.attribution.jobs import _checkpoint_meta
from xai_core.attribution.store import _encode, _scale
from xai_core.cli import main
from tests.seed import tiny_checkpoint
from xai_core.cli.attribution import parse_params
from xai_core.data import load_dataset
from xai_core.errors import ConfigError, UnknownNameError, UnsupportedError, WorkspaceError

SIZE = 32


def _setup() -> tuple[int, torch.nn.Module, object]:
    return tiny_checkpoint(SIZE)


def _rows(ckpt: int, method: str) -> list:
    with session_scope() as session:
        return list(session.scalars(select(AttributionMap).where(
            AttributionMap.checkpoint_id == ckpt, AttributionMap.method == method).order_by(AttributionMap.id)))


class ForwardCounter:
    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        model.register_forward_hook(self._hook)

    def _hook(self, *_args: object) -> None:
        self.calls += 1


def test_job_stores_resumes_and_serves_from_the_store(workspace: Path) -> None:
    ckpt, model, test = _setup()
    events: list[tuple[int, int, str]] = []
    first = explain_checkpoint(ckpt, "saliency", split="test", limit=3, progress=lambda *e: events.append(e))
    assert (first.computed, first.skipped) == (3, 0)
    assert first.params_hash == params_hash("saliency", {}) and events[-1][:2] == (3, 3)
    rows = _rows(ckpt, "saliency")
    assert [r.sample_pk for r in rows] == [int(p) for p in test.sample_pks[:3]]
    sha = models.load(ckpt)[1]["sha256"]
    folder = workspace / "attributions" / sha[:16] / f"saliency-{first.params_hash[:16]}"
    assert rows[0].store_path == str((folder / "chunk-0000.npy").relative_to(workspace))
    assert [r.store_index for r in rows] == [0, 1, 2] and rows[0].device == "cpu" and rows[0].seconds > 0
    assert sorted(p.name for p in folder.iterdir()) == ["chunk-0000.npy"]  # no temporary files left
    assert np.load(folder / "chunk-0000.npy").dtype == np.float16

    # stored maps equal the engine's maps (float16: 3 significant digits)
    pks = [int(p) for p in test.sample_pks[:3]]
    stored = load_maps(ckpt, "saliency", pks)
    direct = explain(model, test.images[:3], "saliency")
    np.testing.assert_allclose(stored, direct, rtol=2e-3, atol=1e-3 * float(np.abs(direct).max()))
    assert [r.target for r in rows] == explain_samples_info(ckpt, pks, "saliency").targets.tolist()

    # resume: the first 3 are skipped, 2 more computed into a second chunk
    again = explain_checkpoint(ckpt, "saliency", split="test", limit=5)
    assert (again.computed, again.skipped) == (2, 3)
    assert sorted(p.name for p in folder.iterdir()) == ["chunk-0000.npy", "chunk-0001.npy"]

    # a cached request never runs the model; an uncached one does. The engine runs the model's
    # canonical copy (cached per model object), so that is where the forward calls are counted.
    prepared = prepare(model, "grad", torch.from_numpy(test.images[:1, None]), torch.device("cpu"))
    counter = ForwardCounter(prepared.model)
    hit = explain_samples_info(ckpt, pks, "saliency", model=model)
    assert hit.from_cache and counter.calls == 0
    np.testing.assert_array_equal(hit.maps, stored)
    miss = explain_samples_info(ckpt, [int(test.sample_pks[6])], "saliency", model=model)
    assert not miss.from_cache and counter.calls > 0 and len(_rows(ckpt, "saliency")) == 6
    np.testing.assert_array_equal(explain_samples(ckpt, pks, "saliency"), stored)


def test_params_and_target_select_separate_maps(workspace: Path) -> None:
    ckpt, model, test = _setup()
    pks = [int(p) for p in test.sample_pks[:2]]
    res = explain_checkpoint(ckpt, "integrated_gradients", sample_pks=pks, split=None,
                             params={"n_steps": "4", "internal_batch_size": 3})
    assert res.params == {**{k: v for k, v in res.params.items()}, "n_steps": 4}
    assert "internal_batch_size" not in res.params
    maps = load_maps(ckpt, "integrated_gradients", pks, params={"n_steps": 4})
    np.testing.assert_allclose(maps, explain(model, test.images[:2], "integrated_gradients", n_steps=4),
                               rtol=2e-3, atol=1e-3 * float(np.abs(maps).max()))
    with pytest.raises(WorkspaceError, match="xaudit explain --checkpoint"):
        load_maps(ckpt, "integrated_gradients", pks)  # the defaults (50 steps) were never computed

    true_run = explain_checkpoint(ckpt, "saliency", sample_pks=pks, split=None, target="true")
    pred_run = explain_checkpoint(ckpt, "saliency", sample_pks=pks, split=None)
    assert true_run.params_hash == params_hash("saliency", {"target": "true"}) != pred_run.params_hash
    stored = read_maps(ckpt, "saliency", pks, params={"target": "true"})
    np.testing.assert_array_equal(stored.targets, test.labels[:2])

    # baseline=mean uses the dataset's train-split mean intensity, recorded in the hash
    mean_run = explain_checkpoint(ckpt, "deeplift", sample_pks=pks, split=None, params={"baseline": "mean"})
    train_mean = round(float(load_dataset("tiny", "train").images.mean(dtype=np.float64)), 6)
    assert mean_run.params["baseline_value"] == pytest.approx(train_mean)
    assert load_maps(ckpt, "deeplift", pks, params={"baseline": "mean"}).shape == (2, SIZE, SIZE)


def test_loaded_checkpoints_are_kept_by_file_hash(workspace: Path) -> None:
    """The explain job keeps loaded checkpoints keyed on the file's sha256 (its row's): the id and
    the name share one load, and a file replaced under the same id and name is loaded afresh."""
    ckpt, model, _test = _setup()
    first, meta = _checkpoint_meta(ckpt, None)
    assert _checkpoint_meta("ck", None)[0] is first  # the same row and file: no second load
    for key, value in model.state_dict().items():
        torch.testing.assert_close(first.state_dict()[key], value)

    torch.manual_seed(1)
    other = models.build("vgg16", 2, 1, 0.125).eval()
    with session_scope() as session:  # new weights in the same file, its row's hash updated
        row = session.get(Checkpoint, ckpt)
        path, old_sha = Path(row.path), row.sha256
        row.sha256 = new_sha = write_safetensors(other, path, read_tensors(path)[1])
    assert new_sha != old_sha == meta["sha256"]
    fresh, fresh_meta = _checkpoint_meta("ck", None)
    assert fresh is not first and fresh_meta["sha256"] == new_sha and fresh_meta["checkpoint_id"] == ckpt
    for key, value in other.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
    assert _checkpoint_meta(ckpt, None)[0] is fresh


def test_float16_chunks_keep_tiny_and_huge_values() -> None:
    rng = np.random.default_rng(0)
    for scale in (1e-9, 1e-3, 1.0, 1e6):
        maps = (rng.standard_normal((3, 8, 8)) * scale).astype(np.float32)
        chunk = _encode(maps)
        back = chunk[:-1].astype(np.float32) * _scale(chunk)
        np.testing.assert_allclose(back, maps, rtol=1e-3, atol=1e-3 * np.abs(maps).max())
    zeros = _encode(np.zeros((2, 4, 4), np.float32))
    assert np.all(zeros[:-1].astype(np.float32) * _scale(zeros) == 0)


def test_cli_explain_runs_resumes_and_reports_errors(workspace: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _model, _test = _setup()

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["xaudit", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        return int(exit_info.value.code or 0)

    def ok(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["xaudit", *args])
        main()

    ok("explain", "--checkpoint", "ck", "--methods", "saliency,integrated_gradients", "--limit", "2",
       "--param", "n_steps=4")
    out = capsys.readouterr().out
    assert "saliency: 2 computed, 0 already stored" in out and "integrated_gradients: 2 computed" in out
    ok("explain", "--checkpoint", str(ckpt), "--methods", "saliency", "--limit", "3")
    assert "saliency: 1 computed, 2 already stored" in capsys.readouterr().out
    assert run("explain", "--checkpoint", "ck", "--methods", "saliency", "--param", "n_steps=4") == 2
    assert "'n_steps' is not a parameter of saliency" in capsys.readouterr().err
    assert run("explain", "--checkpoint", "ck", "--methods", "gradcam++") == 2
    assert "unknown attribution method 'gradcam++'" in capsys.readouterr().err
    assert run("explain", "--checkpoint", "nope") == 2
    assert "no registered checkpoint 'nope'" in capsys.readouterr().err
    assert run("explain", "--checkpoint", "ck", "--target", "both") == 2
    assert "target must be one of predicted, true" in capsys.readouterr().err
    ok("methods", "--arch", "vgg16")
    assert "layercam" in capsys.readouterr().out
    # the error classes behind those messages
    with pytest.raises(ConfigError):
        parse_params(["n_steps"], ["integrated_gradients"])
    assert parse_params(["n_steps=7", "sign=signed"], ["saliency", "integrated_gradients"]) == {
        "saliency": {"sign": "signed"}, "integrated_gradients": {"n_steps": 7, "sign": "signed"}}
    assert UnknownNameError and UnsupportedError  # imported error types are the documented ones
