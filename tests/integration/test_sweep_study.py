"""Study files: every preset loads and dry-runs; a bad file gets one line naming the key and the
allowed values (CLI exit 2, nothing stored); a local sweep's second run skips everything stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import delete, func, select

from db import AttributionMap, Checkpoint, DriftMetric, GroundTruthMetric, session_scope

from tests.postgres import only_sqlite
from tests.sweep_study import tiny_study
from xai_core.cli import run
from xai_core.metrics.faithfulness_job import faithfulness
from xai_core.metrics.sanity_job import sanity
from xai_core.metrics.sanity_randomise import SELECTION
from xai_core.sweep import STAGES, StudyError, load_study, parse_study, plan_study, run_sweep
from xai_core.sweep.study import studies_dir
from xai_core.sweep.tracking import latest_run_id

PRESETS = sorted(studies_dir().glob("*.yaml"))
FAITH = ["deletion_auc", "insertion_auc"]
# the tiny study's checks beyond the studies: faithfulness of both methods' maps and the chance maps
# on the first 3 of the all checkpoint's samples; the cascading sanity check (2 steps) on 2 images
TINY_BEYOND = {"faithfulness": {"methods": ["saliency", "gradcam"], "metrics": FAITH, "samples": 3},
               "sanity": {"methods": ["saliency"], "layers": ["head", "block1"], "samples": 2}}


def test_the_three_presets_are_shipped() -> None:
    assert {"demo", "elangovan2026", "oliveira2024"} <= {p.stem for p in PRESETS}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_and_dry_runs(preset: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_study(preset)
    plans = plan_study(study)
    assert [p.stage for p in plans] == list(STAGES)
    assert run(["sweep", str(preset), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "no measured rate" in out and latest_run_id() is None  # an empty workspace: nothing measured, nothing run
    if study.name == "oliveira2024":  # 2 sources x 6 degrees; 7 methods x 12 checkpoints x ceil(test/64) shards
        part = study.parts["oliveira2024"]
        assert len(plans[2].tasks) == 12 and part.models.width == 1.0
        n_test = 10000 - 2 * round(0.7 * 5000) - 2 * round(0.15 * 5000)
        assert len(plans[3].tasks) == 12 * 7 * -(-n_test // 64)


def test_the_demo_study_plans_both_parts(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """studies/demo.yaml's dry run, by hand from its values (read as plain YAML). Today: MRI grid
    2 sources x 6 degrees = 12 cells; 300 test images, 40 explained in shards of 20 with VGG-16's 13
    methods; drift study 3 archs x (TL, FT, FT epochs 3, 6, .., 15) = 21 checkpoints, 2 methods, 60 images
    in shards of 30; the MRI part's beyond checks: faithfulness of each source's all checkpoint, one
    sanity check -> tasks per stage 2, 5, 15, 312 + 84, 12 x 14, (10 + 12) + (3 x 6 + 6), 2 + 1, 1."""
    raw = yaml.safe_load((studies_dir() / "demo.yaml").read_text())
    mri, dr = raw["parts"]["mri"], raw["parts"]["drift"]
    n_mri, n_dr = mri["dataset"]["build"]["n"], dr["dataset"]["build"]["n"]
    test_mri = n_mri - 2 * round(0.7 * n_mri / 2) - 2 * round(0.15 * n_mri / 2)  # stratified per class
    k = dr["dataset"]["build"]["classes"]
    test_dr = n_dr - k * round(0.7 * n_dr / k) - k * round(0.15 * n_dr / k)
    sources, degrees, archs = len(mri["models"]["pretrain"]["sources"]), len(mri["models"]["degrees"]), len(dr["models"]["archs"])
    cells, ft_epochs = sources * degrees, dr["models"]["training"]["ft_epochs"]
    kept = ft_epochs // dr["models"]["training"]["save_every"]  # the FT run's epoch checkpoints
    shards_mri = -(-min(mri["methods"]["samples"], test_mri) // mri["methods"]["shard"])
    shards_dr = -(-min(dr["methods"]["samples"], test_dr) // dr["methods"]["shard"])
    vgg_methods = 13  # every method VGG-16 supports (names: all)
    expected = {
        "data": 2, "pretrain": sources + archs, "train": cells + archs,
        "explain": cells * vgg_methods * shards_mri + archs * (2 + kept) * 2 * shards_dr,
        "evaluate": cells * (vgg_methods + 1),  # + the baselines per checkpoint; none for the drift part
        "drift": (sources * (degrees - 1) + cells) + archs * (1 + kept + 2),  # pairs + cross-method per TL/FT
        "beyond": sources * len(mri["beyond"]["faithfulness"]["degrees"]) + 1,  # one grid architecture
        "report": 1,
    }
    assert "beyond" not in dr  # the drift study has no checks beyond it
    if (n_mri, n_dr, ft_epochs, kept, archs) == (2000, 1000, 15, 5, 3):  # today's file
        assert list(expected.values()) == [2, 5, 15, 396, 168, 46, 3, 1]
    study = load_study(studies_dir() / "demo.yaml")
    assert {p.stage: len(p.tasks) for p in plan_study(study)} == expected
    assert run(["sweep", str(studies_dir() / "demo.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(f"{stage}" in out for stage in STAGES)
    assert [line.split()[:3] for line in out.splitlines() if line.startswith("beyond")] == [
        ["beyond", str(expected["beyond"]), "0"]]
    # FT epochs apart from TL's: the predicted epoch checkpoints are the FT run's
    raw["parts"]["drift"]["models"]["training"].update(epochs=3, ft_epochs=2, save_every=1)
    plans = {p.stage: p for p in plan_study(parse_study(raw))}
    drift_maps = [t for t in plans["explain"].tasks if t.args["part"] == "drift"]
    assert len(drift_maps) == archs * (2 + 2) * 2 * shards_dr
    assert sorted({t.args["checkpoint"].rsplit("-", 1)[-1] for t in drift_maps}) == ["e1", "e2", "ft", "tl"]


@pytest.mark.parametrize(("change", "message"), [
    ({"models": {"training": {"ft_epochs": 3}}},
     "tiny: parts.tiny.models: training.ft_epochs applies to protocol tl-ft only; drop it or set protocol: tl-ft"),
    ({"metrics": {"names": []}},
     "tiny: parts.tiny.metrics: baselines are scored with ground-truth metrics; with names: [] set baselines: false"),
    ({"models": {"protocol": "tlft"}}, "tiny: parts.tiny.models.protocol: 'tlft' is not allowed; allowed: 'grid' or 'tl-ft'"),
    ({"models": {"archs": ["vgg17"]}}, "tiny: parts.tiny.models.archs: unknown architecture 'vgg17'; allowed: densenet121"),
    ({"methods": {"colour": 1}}, "tiny: parts.tiny.methods.colour: unknown key; allowed keys here: names, params, split"),
    ({"selections": {"metrics": "some"}}, "tiny: parts.tiny.selections.metrics: 'some' is not allowed; allowed: 'correct', 'all' or 'incorrect'"),
    ({"beyond": {"faithfulness": {"methods": ["saliency"], "colour": 1}}},
     "tiny: parts.tiny.beyond.faithfulness.colour: unknown key; allowed keys here: degrees, methods, metrics, samples"),
    ({"beyond": {"sanity": {"methods": ["salience"]}}},
     "tiny: parts.tiny.beyond.sanity.methods: unknown attribution method 'salience'; allowed: saliency, "),
    ({"beyond": {"faithfulness": {"methods": ["saliency"], "metrics": ["deletion"]}}},
     "tiny: parts.tiny.beyond.faithfulness.metrics: unknown faithfulness metric 'deletion'; allowed: deletion_auc, "),
    ({"beyond": {"sanity": {"methods": ["saliency"], "control": "sobel"}}},
     "tiny: parts.tiny.beyond.sanity.control: unknown chance map 'sobel'; allowed: baseline_random, baseline_sobel"),
    ({"beyond": {"faithfulness": {"methods": ["integrated_gradients"]}}},
     "tiny: parts.tiny: beyond.faithfulness.methods: 'integrated_gradients' is not among the methods the part "
     "explains (methods.names); allowed: saliency, gradcam"),
    ({"beyond": {"faithfulness": {"methods": ["saliency"], "degrees": ["2conv"]}}},
     "tiny: parts.tiny: beyond.faithfulness.degrees: '2conv' is not among the degrees the part trains; allowed: tl, all"),
    ({"beyond": {"sanity": {"methods": ["saliency"], "pretrain": "mri"}}},
     "tiny: parts.tiny: beyond.sanity.pretrain: 'mri' is not among the pre-training sources of the part; allowed: natural"),
    ({"beyond": {"sanity": {"methods": ["saliency"], "layers": ["block9"]}}},
     "tiny: parts.tiny: beyond.sanity.layers: unknown layer 'block9' of vgg16; choose from head, block5, "),
])
def test_a_bad_study_names_the_key_and_the_allowed_values(change: dict, message: str) -> None:
    data = tiny_study()
    for key, value in change.items():
        data[key] = {**data.get(key, {}), **value}
    with pytest.raises(StudyError) as info:
        parse_study(data, "tiny")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@only_sqlite
def test_the_cli_refuses_a_bad_file_and_ray_on_sqlite(workspace: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**tiny_study(), "drift": {"pairs": "all"}}))
    assert run(["sweep", str(bad)]) == 2
    assert capsys.readouterr().err == "error: bad.yaml: parts.tiny.drift.pairs: 'all' is not allowed; allowed: 'tl-ft' or 'none'\n"
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_study()))
    assert run(["sweep", str(good), "--executor", "ray"]) == 2
    assert "--executor ray needs PostgreSQL" in capsys.readouterr().err
    assert latest_run_id() is None and not (workspace / "datasets").exists()


def _beyond_rows() -> tuple[dict[tuple, float], dict[tuple, float]]:
    """The stored faithfulness values (checkpoint, method, sample, metric) and sanity values
    (checkpoint, method, randomisation, sample, similarity)."""
    with session_scope() as s:
        faith = {tuple(r[:-1]): r[-1] for r in s.execute(select(
            GroundTruthMetric.checkpoint_id, GroundTruthMetric.method, GroundTruthMetric.sample_pk,
            GroundTruthMetric.metric, GroundTruthMetric.value).where(GroundTruthMetric.metric.in_(FAITH))).all()}
        checked = {tuple(r[:-1]): r[-1] for r in s.execute(select(
            DriftMetric.checkpoint_a_id, DriftMetric.method_a, DriftMetric.params_hash_b, DriftMetric.sample_pk,
            DriftMetric.metric, DriftMetric.value).where(DriftMetric.selection == SELECTION)).all()}
    return faith, checked


@only_sqlite  # the PostgreSQL path runs in test_sweep_ray.py
def test_a_local_sweep_then_a_second_run_skips_what_is_stored(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = parse_study({**tiny_study(), "beyond": TINY_BEYOND})
    first = run_sweep(study)
    assert first.ok and [len(p.tasks) for p in first.stages] == [1, 1, 2, 8, 6, 3, 2, 0]
    second = run_sweep(study)
    assert second.ok and [len(p.tasks) for p in second.stages] == [0] * 8
    assert [p.skipped for p in second.stages] == [1, 1, 2, 8, 6, 3, 2, 0]
    assert run(["sweep", "status"]) == 0
    out = capsys.readouterr().out
    assert f"sweep run {second.run_id}: study tiny, executor local, done" in out
    assert [line.split()[:3] for line in out.splitlines() if line.split()[:1] == ["beyond"]] == [["beyond", "0", "2"]]

    # the beyond tasks stored what the jobs store when called directly with the file's values
    faith, checked = _beyond_rows()
    with session_scope() as session:
        ckpt = session.scalar(select(Checkpoint.id).where(Checkpoint.phase == "ft", Checkpoint.degree == "all"))
    assert {k[0] for k in faith} == {k[0] for k in checked} == {ckpt}
    assert sorted({k[1] for k in faith}) == ["baseline_random", "baseline_sobel", "gradcam", "saliency"]
    assert len(faith) == 4 * 3 * 2 and len(checked) == 2 * 2 * 2 * 3  # (methods x steps) x samples x similarities
    assert {k[2] for k in checked} == {"sanity:cascading:head:s0", "sanity:cascading:block1:s0"}
    with session_scope() as session:
        session.execute(delete(GroundTruthMetric).where(GroundTruthMetric.metric.in_(FAITH)))
        session.execute(delete(DriftMetric).where(DriftMetric.selection == SELECTION))
    faithfulness([ckpt], ["saliency", "gradcam"], selection="all", baselines=True, metrics=FAITH, max_samples=3)
    sanity(ckpt, ["saliency", "baseline_sobel"], mode="cascading", layers=["head", "block1"], limit=2)
    assert _beyond_rows() == (faith, checked)
    # the plan of another seed: costs from this workspace's measured rates
    data = tiny_study()
    data["models"]["training"]["seed"] = 1
    plans = {p.stage: p for p in plan_study(parse_study(data))}
    with session_scope() as session:
        cells = session.execute(select(Checkpoint.train_time_s, Checkpoint.history)
                                .where(Checkpoint.phase.in_(("tl", "ft")))).all()
        per_map = session.scalar(select(func.avg(AttributionMap.seconds)).where(AttributionMap.method == "saliency"))
    per_epoch = sorted(t / len(h) for t, h in cells)  # one epoch over the same training images
    assert [t.estimate_s for t in plans["train"].tasks] == pytest.approx([sum(per_epoch) / 2] * 2)
    saliency = [t for t in plans["explain"].tasks if t.args["method"] == "saliency"]
    assert [t.estimate_s for t in saliency] == pytest.approx(
        [per_map * (t.args["stop"] - t.args["start"]) for t in saliency])
    assert plans["pretrain"].skipped == 1 and plans["data"].unmeasured == 0 and plans["evaluate"].unmeasured == 6


@only_sqlite
def test_leftovers_of_a_killed_task_are_removed_after_its_stage(workspace: Path) -> None:
    """What a task killed mid-write leaves (temporary files, a staging folder, a map chunk no index
    row names) goes; complete files and older temporaries (not this stage's) stay."""
    import os
    import time

    from xai_core.sweep.executors import remove_leftovers

    ckpts, maps, data = (workspace / "checkpoints", workspace / "attributions" / "abc" / "saliency-1",
                         workspace / "datasets")
    for folder in (ckpts, maps, data / ".tmp-tiny-123"):
        folder.mkdir(parents=True)
    old = ckpts / ".tmp-old.safetensors"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    since = time.time() - 1
    (ckpts / ".tmp-abc.safetensors").write_bytes(b"half")
    (ckpts / "cell.safetensors").write_bytes(b"whole")
    (maps / ".chunk-xyz.tmp").write_bytes(b"half")
    (maps / "chunk-0000.npy").write_bytes(b"unindexed")
    assert remove_leftovers(since) == 4
    assert sorted(p.name for p in ckpts.iterdir()) == [".tmp-old.safetensors", "cell.safetensors"]
    assert not list(maps.iterdir()) and not list(data.iterdir())
