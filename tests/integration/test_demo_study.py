"""The demo is studies/demo.yaml: its settings are the file's values (read here as plain YAML, not
through the schema), the quick preset scales them down, a broken value is one line (also from
``xaudit demo``, before any work), and the demo's stages call the job functions with the same
arguments as the sweep's tasks of the same study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from models.finetune import TrainConfig
from xai_core import demo
from xai_core.attribution.registry import list_methods
from xai_core.cli import run
from xai_core.data.params import make_params
from xai_core.sweep import StudyError, load_study
from xai_core.sweep.plan import Task
from xai_core.sweep.study import studies_dir
from xai_core.sweep.tasks import run_task

SILENT = lambda *a: None  # noqa: E731
REPO = Path(__file__).resolve().parents[2]


def raw() -> dict[str, Any]:
    """studies/demo.yaml as plain YAML."""
    return yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())


def test_the_demo_file_is_package_data_and_studies_links_to_it() -> None:
    assert demo.demo_study_file() == studies_dir() / "demo.yaml" == REPO / "xai_core" / "studies" / "demo.yaml"
    assert (REPO / "studies").is_symlink() and (REPO / "studies").resolve() == studies_dir()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'xai_core = ["studies/*.yaml"]' in pyproject


def test_full_settings_are_the_values_of_demo_yaml() -> None:
    mri, dr = raw()["parts"]["mri"], raw()["parts"]["drift"]
    s = demo.full_settings()
    m, t = mri["models"], mri["models"]["training"]
    assert (s.preset, s.dataset, s.data) == ("full", mri["dataset"]["name"], make_params(**mri["dataset"]["build"]))
    assert (s.arch, s.sources, s.width, s.degrees) == (m["archs"][0], tuple(m["pretrain"]["sources"]), m["width"],
                                                       tuple(m["degrees"]))
    assert (s.pretrain_steps, s.pretrain_size) == (m["pretrain"]["steps"], m["pretrain"]["size"])
    # the grid's recipe: TrainConfig's defaults but for the file's augmentation and early-stopping start
    assert s.train == TrainConfig(augment=t["augment"], min_epochs=t["min_epochs"]) and s.init == t["init"]
    assert s.methods is None and mri["methods"]["names"] == "all"
    assert (s.maps_per_checkpoint, s.method_params) == (mri["methods"]["samples"], mri["methods"]["params"])
    assert (s.metrics, s.baselines) == (None, mri["metrics"]["baselines"])
    assert (s.metrics_selection, s.drift_selection) == (mri["selections"]["metrics"], mri["selections"]["drift"])
    assert s.cross_methods == tuple(mri["drift"]["cross_methods"])
    # the checks beyond the studies: the file's values, key for key (sanity on the mri/all checkpoint)
    assert s.beyond.faithfulness.model_dump() == mri["beyond"]["faithfulness"]
    assert s.beyond.sanity.model_dump() == mri["beyond"]["sanity"] and s.beyond.sanity.pretrain == "mri"
    assert mri["beyond"]["faithfulness"]["samples"] == 12 and mri["beyond"]["sanity"]["samples"] == 8
    assert "beyond" not in dr

    d, b, dm, dt = s.drift_study, dr["dataset"]["build"], dr["models"], dr["models"]["training"]
    assert d.dataset == dr["dataset"]["name"] == "five-lesions"
    assert (d.n_images, d.size, d.classes, d.data.max_lesions) == (b["n"], b["size"], b["classes"], b["max_lesions"])
    assert (d.data.lesion_area_min, d.data.lesion_area_max, d.data.contrast_min) == (
        b["lesion_area_min"], b["lesion_area_max"], b["contrast_min"])
    assert d.data == make_params(**b)
    assert (d.archs, d.width) == (tuple(dm["archs"]), dm["width"])
    assert (d.pretrain, d.pretrain_steps, d.pretrain_size) == (dm["pretrain"]["sources"][0], dm["pretrain"]["steps"],
                                                               dm["pretrain"]["size"])
    assert dm["protocol"] == "tl-ft" and (d.tl_epochs, d.ft_epochs) == (dt["epochs"], dt["ft_epochs"])
    # TL without early stopping, a checkpoint every third epoch
    assert d.train == TrainConfig(epochs=dt["epochs"], min_epochs=dt["min_epochs"], augment=dt["augment"],
                                  save_every=dt["save_every"]) and dt["save_every"] == 3
    assert (d.methods, d.maps_per_checkpoint) == (tuple(dr["methods"]["names"]), dr["methods"]["samples"])
    assert d.methods == ("layercam", "gradcam_plus_plus") and d.method_params == {}


def test_quick_settings_scale_the_file_down() -> None:
    full = demo.full_settings()
    q = demo.quick_settings(full)
    assert demo.settings_for(quick=False) == full and demo.settings_for(quick=True) == q
    assert (q.preset, q.n_images, q.size, q.degrees, q.train.epochs, q.maps_per_checkpoint) == (
        "quick", 160, 64, ("tl", "all"), 3, 8)
    assert (q.dataset, q.arch, q.sources, q.train.min_epochs) == (full.dataset, full.arch, full.sources,
                                                                 full.train.min_epochs)
    d, fd = q.drift_study, full.drift_study
    assert (d.n_images, d.size, d.archs, d.tl_epochs, d.ft_epochs, d.maps_per_checkpoint) == (
        100, 32, ("densenet_mini", "resnetv2_mini"), 1, 2, 6)
    # the lesions, classes and methods are the file's
    assert (d.classes, d.data.lesion_area_min, d.data.lesion_area_max, d.methods) == (
        fd.classes, fd.data.lesion_area_min, fd.data.lesion_area_max, fd.methods)
    assert (d.train.min_epochs, d.train.save_every, d.train.augment) == (1, 1, fd.train.augment)
    # the beyond checks: the file's but for their sample counts
    assert q.beyond.faithfulness == full.beyond.faithfulness.model_copy(update={"samples": 4})
    assert q.beyond.sanity == full.beyond.sanity.model_copy(update={"samples": 4})


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "studies" / "demo.yaml").read_text()
    assert text.count(old) == 1
    path = tmp_path / "demo.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(("old", "new", "message"), [
    ("lesion_area_max: 0.1", "lesion_area_max: 0.5",
     "demo.yaml: parts.drift.dataset.build: need 0 < lesion_area_min <= lesion_area_max <= 0.12 "
     "(fractions of the image area)"),
    ("width: 0.5 ", "width: -0.5 ", "demo.yaml: parts.drift.models.width: Input should be greater than 0"),
    ("protocol: tl-ft", "protocol: grid",
     "demo.yaml: parts.drift.models: training.ft_epochs applies to protocol tl-ft only; drop it or set protocol: tl-ft"),
    ("names: []             # drift only: no ground-truth metrics of this part\n      baselines: false",
     "baselines: false",
     "demo.yaml: parts.drift.metrics.names: must be [] (the demo's drift study has no ground-truth metrics stage) "
     "(the demo's stages are built around it; other designs run with `xaudit sweep`)"),
    ("pretrain: mri       # on the mri/all checkpoint", "pretrain: imagenet",
     "demo.yaml: parts.mri: beyond.sanity.pretrain: 'imagenet' is not among the pre-training sources of the part; "
     "allowed: natural, mri"),
    ("methods: [saliency, integrated_gradients, gradcam]", "methods: [saliency, integrated_gradient, gradcam]",
     "demo.yaml: parts.mri.beyond.faithfulness.methods: unknown attribution method 'integrated_gradient'; allowed: "
     + ", ".join(list_methods())),
])
def test_a_broken_demo_yaml_value_is_one_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(StudyError) as info:
        demo.full_settings(_broken(tmp_path, old, new))
    assert str(info.value) == message


def test_xaudit_demo_refuses_a_broken_demo_yaml_before_any_work(workspace: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = _broken(tmp_path, "contrast_min: 0.5", "contrast_min: 3")
    monkeypatch.setattr(demo, "demo_study_file", lambda: bad)
    assert run(["demo", "--quick", "--no-serve"]) == 2
    assert capsys.readouterr().err == (
        "error: demo.yaml: parts.drift.dataset.build: need 0 < contrast_min <= contrast_max <= 2\n")
    assert list(workspace.iterdir()) == []


class Calls:
    """Records the calls of a patched job function."""

    def __init__(self, result: Any = None) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("progress", None)
        self.calls.append((args, kwargs))
        return self.result


def test_the_demo_and_the_sweep_call_the_jobs_alike(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full demo's data, grid and drift-study training calls equal the sweep's tasks of
    studies/demo.yaml (the jobs themselves are patched: nothing is built)."""
    import models
    import models.grid
    import xai_core.data

    s, study = demo.full_settings(), load_study(demo.demo_study_file())
    for target in (demo, xai_core.data):
        monkeypatch.setattr(target, "dataset_exists", lambda _name: False)
    built_demo, built_sweep = Calls(), Calls()
    monkeypatch.setattr(demo, "build_dataset", built_demo)
    monkeypatch.setattr(xai_core.data, "build_dataset", built_sweep)
    demo.stage_data(s, SILENT)
    demo.stage_drift_data(s, SILENT)
    for part in ("mri", "drift"):
        run_task(study, Task("data", f"data:{part}", {"part": part}))
    assert [(a[0], a[1]) for a, _ in built_demo.calls] == [  # same names, same generator parameters
        (a[0], make_params(**{n: v for n, v in k.items() if n != "overwrite"})) for a, k in built_sweep.calls]
    assert [a[0] for a, _ in built_demo.calls] == ["mri-lesions", "five-lesions"]

    grid_demo, grid_sweep = Calls([]), Calls([{"name": "cell", "checkpoint_id": 1}])
    monkeypatch.setattr(demo, "train_grid", grid_demo)
    monkeypatch.setattr(models, "train_grid", grid_sweep)
    demo.stage_train(s, SILENT)
    (args, kwargs), = grid_demo.calls
    for source in s.sources:  # the sweep's last cell of a source trains its whole chain of degrees
        run_task(study, Task("train", f"train:{source}", {"part": "mri", "arch": s.arch, "source": source,
                                                          "degree": "all"}))
        assert grid_sweep.calls[-1] == (args, {**kwargs, "pretrains": (source,)})

    tl_ft_demo, tl_ft_sweep = Calls(), Calls([])
    monkeypatch.setattr(demo, "train", tl_ft_demo)
    monkeypatch.setattr(models.grid, "train", tl_ft_sweep)
    demo.stage_drift_train(s, SILENT)
    for arch in s.drift_study.archs:
        run_task(study, Task("train", f"train:{arch}", {"part": "drift", "arch": arch, "source": "procedural",
                                                        "degree": "tlft"}))
    assert len(tl_ft_demo.calls) == 3 and tl_ft_demo.calls == tl_ft_sweep.calls
    assert tl_ft_demo.calls[0][1]["ft_epochs"] == s.drift_study.ft_epochs
