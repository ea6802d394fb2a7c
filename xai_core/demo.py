"""The embedded demo workspace, built stage by stage: the MRI study (data → pre-training → grid →
maps → ground-truth metrics), then the drift study (five-class data → three architectures trained
TL then FT with epoch checkpoints → LayerCAM and Grad-CAM++ maps), then drift of both →
faithfulness and sanity checks → reader study → report. Its accounts (an admin and two reviewers,
random passwords) are made right after the data, before the dashboard starts.

What it builds is studies/demo.yaml (:func:`full_settings`: its ``mri`` and ``drift`` parts);
``--quick`` is that scaled down (:func:`quick_settings`). Every stage calls the same job function
as the CLI and the sweep's tasks, so a second run skips what is stored. Progress goes to ``build_status.json`` (read by the Overview page) and to the caller's callback.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

import models
from db import Checkpoint, Dataset, Prediction, Sample, get_engine, session_scope
from models import train, train_grid
from models.finetune import TrainConfig
from models.pretraining import ensure_pretrained
from xai_core.attribution import capabilities, explain_checkpoint, list_methods
from xai_core.attribution.jobs import stored_samples
from xai_core.config import workspace_dir
from xai_core.data import build_dataset, dataset_exists
from xai_core.data.params import GeneratorParams, make_params
from xai_core.metrics import drift, evaluate
from xai_core.progress import Progress, silent
from xai_core.report import write_report
from xai_core.review import accounts, studies
from xai_core.review.demo_accounts import (DemoAccount, clear_image_mark, image_mark_path, read_demo_accounts,
                                          save_demo_accounts)
from xai_core.sweep.checks import run_faithfulness, run_sanity, sanity_methods
from xai_core.sweep.plan import ft_epochs
from xai_core.sweep.study import BeyondSpec, Study, StudyError, StudyPart, load_study, pretrain_kwargs, studies_dir
from xai_core.status import BuildStatus, StageStatus, StageTracker, read_status, write_status

ACCOUNTS = (("demo-admin", "admin"), ("reader-1", "reviewer"), ("reader-2", "reviewer"))
STUDY = "demo-study"
STUDY_METHODS = ("saliency", "gradcam")  # a gradient map and a class activation map
# 3 samples × 2 methods × 4 checkpoints (TL and all-layers FT of both sources) + 2 catch trials =
# 26 cases, each read by both reviewers: a few minutes of reading at ~10 s a case
STUDY_SAMPLES = 3
STUDY_CATCH_TRIALS = 2
MRI_PART, DRIFT_PART = "mri", "drift"  # the parts of studies/demo.yaml


def demo_study_file() -> Path:
    """``studies/demo.yaml``: what the demo builds (package data, so an installed xaudit has it)."""
    return studies_dir() / "demo.yaml"


class _Sizes:
    """What both studies' settings derive from their generator parameters and pre-training sizes."""

    data: GeneratorParams
    pretrain_steps: int | None  # None: the source's default
    pretrain_size: int | None  # px of the pretext crops

    @property
    def n_images(self) -> int:
        return self.data.n

    @property
    def size(self) -> int:
        return self.data.size

    def pretrain_kwargs(self) -> dict[str, Any]:
        return pretrain_kwargs(self.pretrain_steps, self.pretrain_size)


@dataclass(frozen=True)
class DriftStudy(_Sizes):
    """The demo's drift study (Elangovan & Ting's design at CPU size; the ``drift`` part of
    studies/demo.yaml): a five-class benchmark, compact networks pre-trained on the formula-driven
    stand-in for ImageNet, each trained TL (head only) then FT (all layers) with a checkpoint every
    ``train.save_every`` FT epochs."""

    dataset: str
    data: GeneratorParams
    archs: tuple[str, ...]
    width: float
    pretrain: str
    pretrain_steps: int | None  # None: the source's default
    pretrain_size: int | None
    train: TrainConfig  # the TL run's settings (epochs, early stopping, save_every, augmentation)
    ft_epochs: int
    methods: tuple[str, ...] | None  # None: every method each architecture supports
    maps_per_checkpoint: int | None  # None: the whole test split
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def classes(self) -> int:
        return self.data.classes

    @property
    def tl_epochs(self) -> int:
        return self.train.epochs

    def describe(self) -> dict[str, Any]:
        d = self.data
        return {
            "dataset": f"{self.dataset}: {d.n} images of {d.size}×{d.size} px, {d.classes} lesion "
                       f"classes, area {d.lesion_area_min:g}–{d.lesion_area_max:g} of the image",
            "models": f"{', '.join(self.archs)} width {self.width:g}, pre-training {self.pretrain} "
                      f"({self.pretrain_steps or 'default'} steps at {self.pretrain_size or 'default'} px), TL "
                      f"{self.tl_epochs} epochs then FT {self.ft_epochs} epochs with a checkpoint every "
                      f"{self.train.save_every or self.ft_epochs}",
            "maps": f"{', '.join(self.methods or ('every supported method',))} on "
                    f"{self.maps_per_checkpoint or 'all'} test images per checkpoint",
        }


def describe_beyond(b: BeyondSpec, selection: str) -> str:
    """The demo's checks beyond the two studies (studies/demo.yaml's ``parts.mri.beyond``) in words."""
    said = []
    if (f := b.faithfulness) is not None:
        said.append(f"{', '.join(f.metric_names())} of {', '.join(f.methods)} and the chance "
                    f"maps on the first {f.samples or 'all'} test images ({selection}) of the {'/'.join(f.degrees)} "
                    "checkpoint of each source")
    if (c := b.sanity) is not None:
        said.append(f"cascading model randomisation (steps {', '.join(c.layers or ('every layer',))}) of "
                    f"{', '.join(c.methods)}{f' and {c.control} (control)' if c.control else ''} on {c.samples} test "
                    f"images of the {c.pretrain}/all checkpoint")
    return "; ".join(said) or "none"


@dataclass(frozen=True)
class DemoSettings(_Sizes):
    """Sizes and recipes of the demo build: :func:`full_settings` is what ``make demo`` builds
    (studies/demo.yaml), :func:`quick_settings` the tests' scale-down of it."""

    preset: str
    dataset: str
    data: GeneratorParams
    arch: str
    sources: tuple[str, ...]
    width: float  # channel multiplier
    degrees: tuple[str, ...]
    pretrain_steps: int | None  # None: the source's default
    pretrain_size: int | None  # px of the pretext crops (smaller than the images: cheaper steps)
    train: TrainConfig  # every grid cell's settings (its epochs per degree)
    init: str  # where a kconv/all cell starts (models.train_grid)
    methods: tuple[str, ...] | None  # None: every method the architecture supports
    maps_per_checkpoint: int | None  # test images explained per checkpoint and method (None: all)
    metrics: tuple[str, ...] | None  # ground-truth metrics (None: every registered one)
    baselines: bool  # chance-level maps scored too
    metrics_selection: str  # samples the ground-truth metrics use (the study: correctly classified)
    drift_selection: str  # samples compared between TL and FT (the study: true positives of both)
    cross_methods: tuple[str, ...]  # methods compared with each other on one checkpoint
    drift_study: DriftStudy
    beyond: BeyondSpec  # parts.mri.beyond, the sanity check's source resolved (empty: no such checks)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        t = self.train
        stopping = f", early stopping from epoch {t.min_epochs}" if t.min_epochs < t.epochs else ""
        return {
            "dataset": f"{self.dataset}: {self.n_images} images of {self.size}×{self.size} px",
            "models": f"{self.arch} width {self.width:g}, pre-training {' and '.join(self.sources)}, "
                      f"degrees {', '.join(self.degrees)}",
            "pre-training": f"{self.pretrain_steps or 'default'} steps of 64 crops at {self.pretrain_size or 'default'} px",
            "epochs": f"{t.epochs} per degree{stopping}",
            "test images explained per checkpoint": self.maps_per_checkpoint or "all",
            "drift samples": self.drift_selection,
            "method settings": self.method_params,
            "drift study": self.drift_study.describe(),
            "beyond the studies": describe_beyond(self.beyond, self.metrics_selection),
        }


def _need(ok: bool, source: str, key: str, message: str) -> None:
    if not ok:
        raise StudyError(f"{source}: {key}: {message} (the demo's stages are built around it; "
                         "other designs run with `xaudit sweep`)")


def settings_from_study(study: Study, source: str = "demo.yaml") -> DemoSettings:
    """The demo's full settings from its study file: the ``mri`` part (a fine-tuning grid of one
    architecture) and the ``drift`` part (``tl-ft`` from one pre-training source), both built
    from generator parameters and explained on the test split; one drift stage compares both, so
    their ``drift`` and ``selections.drift`` agree. Anything else raises :class:`StudyError` naming
    the key."""
    for name in (MRI_PART, DRIFT_PART):
        _need(name in study.parts, source, f"parts.{name}", f"missing; the demo has the parts {MRI_PART} and {DRIFT_PART}")
    mri, dr = study.parts[MRI_PART], study.parts[DRIFT_PART]
    for name, part, protocol in ((MRI_PART, mri, "grid"), (DRIFT_PART, dr, "tl-ft")):
        key = f"parts.{name}"
        _need(part.models.protocol == protocol, source, f"{key}.models.protocol", f"must be {protocol}")
        _need(part.dataset.build is not None, source, f"{key}.dataset", "needs build (generator parameters)")
        _need(part.methods.split == "test", source, f"{key}.methods.split", "must be test")
        _need(part.drift.pairs == "tl-ft" and part.drift.epochs, source, f"{key}.drift",
              "needs pairs: tl-ft and epochs: true")
        _need(part.drift == mri.drift and part.selections.drift == mri.selections.drift, source,
              f"{key}.drift", f"the demo compares both parts in one stage: give them the same drift and selections.drift")
    _need(len(mri.models.archs) == 1, source, f"parts.{MRI_PART}.models.archs", "needs exactly one architecture")
    _need(mri.metrics.enabled, source, f"parts.{MRI_PART}.metrics.names", "needs ground-truth metrics (not [])")
    _need(len(dr.models.pretrain.sources) == 1, source, f"parts.{DRIFT_PART}.models.pretrain.sources",
          "needs exactly one pre-training source")
    _need(not dr.metrics.enabled, source, f"parts.{DRIFT_PART}.metrics.names",
          "must be [] (the demo's drift study has no ground-truth metrics stage)")
    m, d = mri.models, dr.models
    return DemoSettings(
        preset="full", dataset=mri.dataset.name, data=make_params(**(mri.dataset.build or {})), arch=m.archs[0],
        sources=tuple(m.pretrain.sources), width=m.width, degrees=tuple(m.degrees), pretrain_steps=m.pretrain.steps,
        pretrain_size=m.pretrain.size, train=TrainConfig(**m.training.config_fields()), init=m.training.init,
        methods=_method_names(mri), maps_per_checkpoint=mri.methods.samples,
        metrics=None if mri.metrics.names is None else tuple(mri.metrics.names), baselines=mri.metrics.baselines,
        metrics_selection=mri.selections.metrics, drift_selection=mri.selections.drift,
        cross_methods=tuple(mri.drift.cross_methods), method_params=dict(mri.methods.params),
        drift_study=DriftStudy(
            dataset=dr.dataset.name, data=make_params(**(dr.dataset.build or {})), archs=tuple(d.archs), width=d.width,
            pretrain=d.pretrain.sources[0], pretrain_steps=d.pretrain.steps, pretrain_size=d.pretrain.size,
            train=TrainConfig(**d.training.config_fields()), ft_epochs=ft_epochs(dr), methods=_method_names(dr),
            maps_per_checkpoint=dr.methods.samples, method_params=dict(dr.methods.params)),
        beyond=_beyond(mri),
    )


def _beyond(part: StudyPart) -> BeyondSpec:
    """The part's ``beyond`` section (none: an empty one) with the sanity check's source resolved."""
    b = part.beyond or BeyondSpec()
    if b.sanity is None:
        return b
    return b.model_copy(update={"sanity": b.sanity.model_copy(update={"pretrain": part.sanity_source()})})


def _beyond_samples(b: BeyondSpec, faithfulness: int, sanity: int) -> BeyondSpec:
    """``b`` with the checks' sample counts replaced (the quick scale-down)."""
    f = b.faithfulness and b.faithfulness.model_copy(update={"samples": faithfulness})
    c = b.sanity and b.sanity.model_copy(update={"samples": sanity})
    return b.model_copy(update={"faithfulness": f, "sanity": c})


def _method_names(part: StudyPart) -> tuple[str, ...] | None:
    return None if part.methods.names == "all" else tuple(part.methods.names)


def full_settings(path: Path | None = None) -> DemoSettings:
    """What ``make demo`` builds: studies/demo.yaml (or ``path``) read, validated and mapped."""
    file = path or demo_study_file()
    return settings_from_study(load_study(file), file.name)


def _resized(p: GeneratorParams, n: int, size: int) -> GeneratorParams:
    return make_params(**{**asdict(p), "n": n, "size": size})


def quick_settings(full: DemoSettings | None = None) -> DemoSettings:
    """The tests' scale-down of the full demo (a complete small workspace in minutes): the same
    studies, datasets, lesions, methods and training recipes at a fraction of the sizes."""
    full = full or full_settings()
    d = full.drift_study
    return replace(
        full, preset="quick", data=_resized(full.data, 160, 64), width=0.125, degrees=("tl", "all"),
        pretrain_steps=12, pretrain_size=64, train=replace(full.train, epochs=3), maps_per_checkpoint=8,
        drift_selection="all",
        method_params={"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4},
                       "smoothgrad": {"n_samples": 4}, "occlusion": {"window": 16, "stride": 16}},
        drift_study=replace(d, data=_resized(d.data, 100, 32), archs=("densenet_mini", "resnetv2_mini"), width=0.125,
                            pretrain_steps=4, pretrain_size=32,
                            train=replace(d.train, epochs=1, min_epochs=1, save_every=1),
                            ft_epochs=2, maps_per_checkpoint=6),
        beyond=_beyond_samples(full.beyond, faithfulness=4, sanity=4),
    )


def settings_for(quick: bool) -> DemoSettings:
    """The full settings (studies/demo.yaml), or their quick scale-down."""
    full = full_settings()
    return quick_settings(full) if quick else full


# ------------------------------------------------------------------------------------------
# stages
# ------------------------------------------------------------------------------------------
def stage_data(s: DemoSettings, progress: Progress) -> str:
    if dataset_exists(s.dataset):
        return "already built"
    build_dataset(s.dataset, s.data, progress=progress)
    return f"{s.n_images} images"


def stage_pretrain(s: DemoSettings, progress: Progress) -> str:
    for i, source in enumerate(s.sources):
        progress(i, len(s.sources), f"pre-training on {source}")
        ensure_pretrained(source, s.arch, s.width, **s.pretrain_kwargs())
    progress(len(s.sources), len(s.sources), "done")
    return ", ".join(s.sources)


def grid_kwargs(s: DemoSettings) -> dict[str, Any]:
    """``models.train_grid`` arguments of the demo grid (also used by bench/training.py); the
    training settings are studies/demo.yaml's: dihedral flips/rotations (the lesion-shape label is
    invariant) and early stopping only in the last quarter of the schedule (before that, the loss
    on 300 validation images swings too much to stop on: a cell stopped at epoch 6 with 0.83 test
    accuracy that reached 0.94 at epoch 12 in another run; bench/RESULTS.md)."""
    return {"archs": (s.arch,), "pretrains": s.sources, "degrees": s.degrees, "width": s.width, "seed": s.train.seed,
            "init": s.init, "config": s.train, "pretrain_kwargs": s.pretrain_kwargs()}


def stage_train(s: DemoSettings, progress: Progress) -> str:
    cells = train_grid(s.dataset, progress=progress, **grid_kwargs(s))
    accs = ", ".join(f"{c['pretrain']}/{c['degree']} {c['accuracy']:.2f}" for c in cells
                     if c.get("accuracy") is not None)
    return f"{len(cells)} checkpoints ({accs})"


def demo_checkpoints(s: DemoSettings) -> list[int]:
    """The grid's TL and FT checkpoints of the demo dataset, oldest first."""
    with session_scope() as session:
        return list(session.scalars(
            select(Checkpoint.id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == s.dataset, Checkpoint.phase.in_(("tl", "ft")))
            .order_by(Checkpoint.id)
        ).all())


def supported_methods(arch: str, methods: tuple[str, ...] | None) -> list[str]:
    """``methods`` (None: every registered one) that ``arch`` supports, in registry order."""
    caps = capabilities(arch)
    return [m for m in list_methods() if caps.get(m) is True and (methods is None or m in methods)]


def _explain_all(checkpoints: list[int], methods_of: Callable[[str], list[str]], limit: int | None,
                 method_params: dict[str, dict[str, Any]], progress: Progress) -> str:
    """Maps of every checkpoint with each of its architecture's methods, on the first ``limit`` test
    images (the same job and sample order as the sweep's map tasks)."""
    with session_scope() as session:
        arch_of = dict(session.execute(select(Checkpoint.id, Checkpoint.arch).where(Checkpoint.id.in_(checkpoints))).all())
    plan = [(ckpt, methods_of(str(arch_of[ckpt]))) for ckpt in checkpoints]
    total, done, computed = sum(len(ms) for _, ms in plan), 0, 0
    for ckpt, methods in plan:
        model, _ = models.load(ckpt)  # loaded once, explained with every method
        for method in methods:
            progress(done, total, f"{method} on checkpoint {ckpt}")
            computed += explain_checkpoint(ckpt, method, split="test", limit=limit,
                                           params=dict(method_params.get(method, {})), model=model).computed
            done += 1
    progress(total, total, "done")
    names = sorted({m for _, ms in plan for m in ms})
    return f"{len(names)} methods × {len(checkpoints)} checkpoints ({computed} new maps)"


def stage_explain(s: DemoSettings, progress: Progress) -> str:
    return _explain_all(demo_checkpoints(s), lambda arch: supported_methods(arch, s.methods), s.maps_per_checkpoint,
                        s.method_params, progress)


def stage_drift_data(s: DemoSettings, progress: Progress) -> str:
    d = s.drift_study
    if dataset_exists(d.dataset):
        return "already built"
    build_dataset(d.dataset, d.data, progress=progress)
    return f"{d.n_images} images, {d.classes} classes"


def drift_study_pairs(s: DemoSettings) -> dict[str, tuple[int, int]]:
    """Architecture → (TL, FT) checkpoint ids of the drift study's stored pairs."""
    with session_scope() as session:
        rows = session.execute(
            select(Checkpoint.arch, Checkpoint.id, Checkpoint.parent_id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == s.drift_study.dataset, Checkpoint.phase == "ft")).all()
    return {str(arch): (int(parent), int(ft)) for arch, ft, parent in rows if parent is not None}


def stage_drift_train(s: DemoSettings, progress: Progress) -> str:
    """Each architecture: pre-training, TL (head only), FT (all layers) with an epoch checkpoint per
    FT epoch; an architecture whose pair exists is skipped."""
    d = s.drift_study
    done = drift_study_pairs(s)
    for i, arch in enumerate(d.archs):
        if arch in done:
            continue
        progress(i, len(d.archs), f"{arch}: pre-training, TL then FT")
        train(d.dataset, arch=arch, pretrain=d.pretrain, protocol="tl-ft", width=d.width, seed=d.train.seed,
              config=d.train, ft_epochs=d.ft_epochs, pretrain_kwargs=d.pretrain_kwargs())
    progress(len(d.archs), len(d.archs), "done")
    pairs = drift_study_pairs(s)
    with session_scope() as session:
        acc = {ck: (session.get(Checkpoint, ck).metrics or {}).get("accuracy") for pair in pairs.values() for ck in pair}
    return "; ".join(f"{arch} TL {acc[tl]:.2f} → FT {acc[ft]:.2f}" for arch, (tl, ft) in sorted(pairs.items()))


def drift_study_checkpoints(s: DemoSettings) -> list[int]:
    """The drift study's TL and FT checkpoints and the FT run's epoch checkpoints (children of TL)."""
    pairs = drift_study_pairs(s)
    tls = [tl for tl, _ in pairs.values()]
    with session_scope() as session:
        epochs = session.scalars(select(Checkpoint.id).where(Checkpoint.phase == "epoch",
                                                               Checkpoint.parent_id.in_(tls))).all()
    return sorted([ck for pair in pairs.values() for ck in pair] + [int(e) for e in epochs])


def stage_drift_explain(s: DemoSettings, progress: Progress) -> str:
    d = s.drift_study
    return _explain_all(drift_study_checkpoints(s), lambda arch: supported_methods(arch, d.methods),
                        d.maps_per_checkpoint, d.method_params, progress)


def stage_evaluate(s: DemoSettings, progress: Progress) -> str:
    results = evaluate(demo_checkpoints(s), selection=s.metrics_selection, baselines=s.baselines,
                       metrics=s.metrics, progress=progress)
    return f"{sum(r.rows for r in results)} new metric rows"


def stage_drift(s: DemoSettings, progress: Progress) -> str:
    results = drift(selection=s.drift_selection, cross_methods=s.cross_methods, progress=progress)
    return f"{sum(r.rows for r in results)} new drift rows"


def sanity_checkpoint(s: DemoSettings, pretrain: str) -> int | None:
    """The all-layers FT checkpoint of the demo grid pre-trained on ``pretrain`` (None before the grid)."""
    with session_scope() as session:
        return session.scalar(
            select(Checkpoint.id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == s.dataset, Checkpoint.phase == "ft", Checkpoint.degree == "all",
                   Checkpoint.pretrain == pretrain).order_by(Checkpoint.id.desc()))


def stage_beyond(s: DemoSettings, progress: Progress) -> str:
    """The study file's checks beyond the two studies (``parts.mri.beyond``): faithfulness of a few
    methods' maps and of the chance maps on the grid's checkpoints of its degrees, and the cascading
    model-randomisation sanity check on one all-layers FT checkpoint; the same functions as the
    sweep's beyond tasks (:mod:`xai_core.sweep.checks`), and both skip what is stored."""
    faith, check = s.beyond.faithfulness, s.beyond.sanity
    said: list[str] = []
    half = 2 if faith is not None and check is not None else 1  # share of the progress bar per check
    if faith is not None:
        checkpoints = study_checkpoints(s, tuple(faith.degrees))
        if not checkpoints:
            return f"no checkpoints of {s.dataset} yet: run the grid stage first"
        scored = run_faithfulness(faith, checkpoints, s.arch, s.metrics_selection, s.baselines,
                                  progress=lambda d, t, m: progress(d, half * max(t, 1), f"faithfulness: {m}"))
        said.append(f"{', '.join(faith.metric_names())} of "
                    f"{sum(r.computed for r in scored)} new maps on {len(checkpoints)} checkpoints")
    if check is not None:
        checkpoint = sanity_checkpoint(s, str(check.pretrain))
        if checkpoint is None:
            said.append(f"no sanity check: no {check.pretrain}/all checkpoint")
        else:
            checked = run_sanity(check, checkpoint, s.arch, "test", s.method_params,
                                 progress=lambda d, t, m: progress((half - 1) * max(t, 1) + d, half * max(t, 1), m))
            said.append(f"cascading sanity check of {len(sanity_methods(check, s.arch))} methods on checkpoint "
                        f"{checkpoint} ({sum(1 for r in checked if r.computed)} new steps × methods)")
    progress(1, 1, "done")
    return "; ".join(said) or "no checks beyond the studies in the study file"


def stage_report(s: DemoSettings, progress: Progress) -> str:
    return str(write_report(workspace_dir("reports") / "demo", progress=progress, replace=True))


def ensure_demo_accounts() -> list[DemoAccount]:
    """Create the demo accounts (:data:`ACCOUNTS`) that do not exist yet, each with a random password;
    returns those created (empty when all exist). Their passwords are kept for admins to see
    (:mod:`xai_core.review.demo_accounts`) before the accounts are made, so none is ever lost."""
    existing = set(accounts.list_users()["name"])
    created = [DemoAccount(name, role, secrets.token_urlsafe(12)) for name, role in ACCOUNTS if name not in existing]
    if not created:
        return []
    kept = [a for a in read_demo_accounts() if a.name not in {c.name for c in created}]
    save_demo_accounts(kept + created)
    for account in sorted(created, key=lambda a: a.role == "admin"):  # the admin (sign-in on) last
        accounts.add_user(account.name, account.role, account.password, actor=accounts.LOCAL)
    return created


def replace_image_build_passwords() -> list[DemoAccount]:
    """A container's first start: new random passwords for the demo accounts whose password is still
    the one made at image build (the workspace carries the mark of
    :func:`~xai_core.review.demo_accounts.mark_image_build`; an account whose password was changed is
    no longer kept and stays as it is). Returns the new ones; empty without the mark (a workspace
    not built into an image, or a later start).

    The kept file gets the new passwords first (a password the database accepts is always kept),
    then every account's hash in one transaction (all or none; their sessions end), then the mark
    goes. An error in the transaction puts the old file back (the old state); an interruption
    (SIGTERM, a crash) before the mark goes leaves it, and the next start replaces the passwords
    again."""
    if not image_mark_path().exists():
        return []
    kept = read_demo_accounts()
    existing = set(accounts.list_users()["name"])
    new = [replace(a, password=secrets.token_urlsafe(12)) for a in kept if a.name in existing]
    if new:
        renewed = {a.name: a for a in new}
        save_demo_accounts([renewed.get(a.name, a) for a in kept])
        try:
            accounts.replace_passwords({a.name: a.password for a in new}, actor=accounts.LOCAL,
                                       reason="made at image build")
        except Exception:  # rolled back: the old passwords still sign in, so the file keeps them
            save_demo_accounts(kept)
            raise
    clear_image_mark()
    return new


def study_checkpoints(s: DemoSettings, degrees: tuple[str, ...] = ("tl", "all")) -> list[int]:
    """The TL and all-layers FT checkpoint (or those of ``degrees``) of each pre-training source, by source."""
    with session_scope() as session:
        return list(session.scalars(
            select(Checkpoint.id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == s.dataset, Checkpoint.phase.in_(("tl", "ft")), Checkpoint.degree.in_(degrees))
            .order_by(Checkpoint.pretrain, Checkpoint.id)
        ).all())


def study_samples(checkpoints: list[int], methods: list[str], s: DemoSettings, n: int,
                  rng: np.random.Generator) -> dict[int, int]:
    """``n`` random test samples whose maps of every method and checkpoint are stored (reading a
    case computes nothing), drawn among those every checkpoint classifies correctly; when there are
    fewer (the quick preset's models are near chance), among those the most checkpoints classify
    correctly. Returns sample → how many of the checkpoints classify it correctly."""
    stored = set.intersection(*(stored_samples(c, m, s.method_params.get(m)) for c in checkpoints for m in methods))
    with session_scope() as session:
        rows = session.execute(
            select(Prediction.sample_pk, func.count(Prediction.id)).join(Sample, Prediction.sample_pk == Sample.id)
            .where(Prediction.checkpoint_id.in_(checkpoints), Prediction.correct, Prediction.sample_pk.in_(stored),
                   Sample.split == "test")
            .group_by(Prediction.sample_pk)).all()
    correct_by = {int(pk): int(k) for pk, k in rows}
    chosen: list[int] = []
    for k in sorted(set(correct_by.values()), reverse=True):  # the best-classified samples first
        tier = sorted(pk for pk, count in correct_by.items() if count == k)
        chosen += [int(pk) for pk in rng.permutation(tier)[: n - len(chosen)]]
        if len(chosen) == n:
            break
    return {pk: correct_by[pk] for pk in sorted(chosen)}


def stage_review(s: DemoSettings, progress: Progress) -> str:
    """A ready blinded study for the two demo reviewers (skipped when it exists)."""
    if STUDY in set(studies.list_studies()["study"]):
        return "already created"
    ensure_demo_accounts()
    checkpoints = study_checkpoints(s)
    caps = capabilities(s.arch)
    methods = [m for m in STUDY_METHODS if caps.get(m) is True]
    samples = study_samples(checkpoints, methods, s, STUDY_SAMPLES, np.random.default_rng(0))
    if not samples:
        return f"no study: no test sample with stored maps is classified correctly by any of the {len(checkpoints)} checkpoints"
    reviewers = tuple(name for name, role in ACCOUNTS if role == "reviewer")
    made = studies.create_study(studies.StudySpec(
        name=STUDY, checkpoints=tuple(checkpoints), methods=tuple(methods), reviewers=reviewers,
        samples=tuple(samples), show_contour=True, catch_trials=STUDY_CATCH_TRIALS, readers_per_case=2,
        method_params={m: dict(s.method_params.get(m, {})) for m in methods}), actor=accounts.LOCAL)
    correct = sorted(samples.values(), reverse=True)
    which = ("all" if min(correct) == len(checkpoints)
             else ", ".join(str(k) for k in correct[:-1]) + f" and {correct[-1]} of the")
    return (f"{STUDY}: {made['cases']} cases for {' and '.join(reviewers)} ({len(samples)} samples × "
            f"{len(methods)} methods × {len(checkpoints)} checkpoints + {STUDY_CATCH_TRIALS} catch; "
            f"the samples are classified correctly by {which} {len(checkpoints)} checkpoints)")


Stage = Callable[[DemoSettings, Progress], str]
STAGES: list[tuple[str, str, Stage]] = [
    ("data", "Benchmark data", stage_data),
    ("pretrain", "Pre-training (natural, mri)", stage_pretrain),
    ("train", "Fine-tuning grid", stage_train),
    ("explain", "Attribution maps", stage_explain),
    ("evaluate", "Ground-truth metrics", stage_evaluate),
    ("drift-data", "Drift study: five-class data", stage_drift_data),
    ("drift-train", "Drift study: three architectures, TL then FT", stage_drift_train),
    ("drift-explain", "Drift study: LayerCAM and Grad-CAM++ maps", stage_drift_explain),
    ("drift", "TL→FT drift (both studies, along FT epochs)", stage_drift),
    ("beyond", "Faithfulness and sanity checks", stage_beyond),
    ("review", "Reader study", stage_review),
    ("report", "Report", stage_report),
]


def _new_status(s: DemoSettings) -> BuildStatus:
    previous = read_status()
    stages = [StageStatus(name=n, title=t) for n, t, _ in STAGES]
    if previous is not None and previous.preset == s.preset:
        # a workspace built before a stage was added gets that stage, pending
        kept = {st.name: st for st in previous.stages}
        return replace(previous, stages=[kept.get(st.name, st) for st in stages], finished=False)
    return BuildStatus(preset=s.preset, settings=s.describe(), stages=stages)


def build_demo(quick: bool = False, only: tuple[str, ...] | None = None,
               progress: Progress = silent) -> BuildStatus:
    """Build (or complete) the demo workspace; ``only`` restricts to some stages by name.

    Each stage's job skips what is already stored, so a second run is fast.
    """
    get_engine()  # an unreachable database fails here, before the workspace is touched
    s = settings_for(quick)
    status = _new_status(s)
    names = [n for n, _, _ in STAGES if only is None or n in only]
    for index, (name, _title, run) in enumerate(s for s in STAGES if s[0] in names):
        tracker = StageTracker(status, name)
        tracker.start()
        t0 = time.perf_counter()

        def report(done: int, total: int, message: str, _i: int = index, _n: str = name) -> None:
            tracker(done, total, message)
            progress(_i, len(names), f"{_n}: {message}")

        try:
            summary = run(s, report)
        except BaseException as exc:
            tracker.finish("failed", f"{type(exc).__name__}: {exc}")
            raise
        tracker.finish("done", f"{summary} in {time.perf_counter() - t0:.0f} s")
    status.finished = all(st.state == "done" for st in status.stages)
    write_status(status)
    progress(len(names), len(names), "demo built")
    return status
