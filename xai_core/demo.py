"""The embedded demo workspace, built stage by stage: the MRI study (data → pre-training → grid →
maps → ground-truth metrics), then the drift study (five-class data → three architectures trained
TL then FT with epoch checkpoints → LayerCAM and Grad-CAM++ maps), then drift of both →
faithfulness and sanity checks → reader study → report. Its accounts (an admin and two reviewers,
random passwords) are made right after the data, before the dashboard starts.

Every stage calls the same job function the CLI exposes, so a second run skips what is stored.
Progress goes to ``build_status.json`` (read by the Overview page) and to the caller's callback.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from xai_core.metrics import drift, evaluate
from xai_core.metrics.faithfulness_job import faithfulness
from xai_core.metrics.sanity_job import sanity
from xai_core.progress import Progress, silent
from xai_core.report import write_report
from xai_core.review import accounts, studies
from xai_core.review.demo_accounts import DemoAccount, read_demo_accounts, save_demo_accounts
from xai_core.status import BuildStatus, StageStatus, StageTracker, read_status, write_status

DATASET = "mri-lesions"
ARCH = "vgg16"
SOURCES = ("natural", "mri")
ACCOUNTS = (("demo-admin", "admin"), ("reader-1", "reviewer"), ("reader-2", "reviewer"))
STUDY = "demo-study"
STUDY_METHODS = ("saliency", "gradcam")  # a gradient map and a class activation map
# 3 samples × 2 methods × 4 checkpoints (TL and all-layers FT of both sources) + 2 catch trials =
# 26 cases, each read by both reviewers: a few minutes of reading at ~10 s a case
STUDY_SAMPLES = 3
STUDY_CATCH_TRIALS = 2


@dataclass(frozen=True)
class DriftStudy:
    """Sizes of the demo's drift study (Elangovan & Ting's design at CPU size): a five-class benchmark,
    the three families' compact networks pre-trained on the formula-driven stand-in for ImageNet,
    each trained TL (head only) then FT (all layers) with an epoch checkpoint per FT epoch."""

    n_images: int
    size: int
    archs: tuple[str, ...]
    width: float
    pretrain_steps: int
    pretrain_size: int
    tl_epochs: int
    ft_epochs: int
    maps_per_checkpoint: int
    classes: int = 5
    lesion_area: tuple[float, float] = (0.025, 0.05)  # larger than the MRI study's: shapes readable at 64 px
    contrast_min: float = 0.5
    max_lesions: int = 1
    pretrain: str = "procedural"
    methods: tuple[str, ...] = ("layercam", "gradcam_plus_plus")

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": f"{DRIFT_DATASET}: {self.n_images} images of {self.size}×{self.size} px, {self.classes} lesion "
                       f"classes, area {self.lesion_area[0]:g}–{self.lesion_area[1]:g} of the image",
            "models": f"{', '.join(self.archs)} width {self.width:g}, pre-training {self.pretrain} "
                      f"({self.pretrain_steps} steps at {self.pretrain_size} px), TL {self.tl_epochs} epochs then "
                      f"FT {self.ft_epochs} epochs with an epoch checkpoint each",
            "maps": f"{', '.join(self.methods)} on {self.maps_per_checkpoint} test images per checkpoint",
        }


DRIFT_DATASET = "five-lesions"


@dataclass(frozen=True)
class BeyondStudies:
    """Sizes of the demo's checks beyond the two studies: faithfulness of a few methods' maps (and of
    the chance maps) to the model on the grid's all-layers FT checkpoints (the TL ones sit near
    chance in the full demo, so the verdicts would leave them out), and Adebayo et al.'s cascading
    model-randomisation test on one of them, with three cascade steps (head; head to block3; every
    layer — the deciding one) and the Sobel map as the control. Full size, one thread: faithfulness
    ~0.26 s a map (120 maps) and the cascade ~21 s, about 52 s in all on a quiet core (measured 121 s
    at a load of 3-4)."""

    faith_samples: int  # first correctly classified test images per checkpoint and method
    sanity_samples: int  # first test images of the sanity check
    degrees: tuple[str, ...] = ("all",)  # grid checkpoints whose faithfulness is measured
    methods: tuple[str, ...] = ("saliency", "integrated_gradients", "gradcam")
    faith_metrics: tuple[str, ...] = ("deletion_auc", "insertion_auc")  # default parameters (16 steps)
    sanity_methods: tuple[str, ...] = ("saliency", "integrated_gradients")  # a gradient and a path method
    sanity_layers: tuple[str, ...] = ("head", "block3", "block1")  # cumulative cascade steps
    sanity_control: str = "baseline_sobel"  # never looks at the model: the check's control, must fail
    sanity_pretrain: str = "mri"  # the sanity check runs on this source's all-layers FT checkpoint

    def describe(self) -> str:
        return (f"{', '.join(self.faith_metrics)} of {', '.join(self.methods)} and the chance maps on the first "
                f"{self.faith_samples} correctly classified test images of the {'/'.join(self.degrees)} checkpoint "
                f"of each source; cascading model randomisation (steps {', '.join(self.sanity_layers)}) of "
                f"{', '.join(self.sanity_methods)} and {self.sanity_control} (control) on {self.sanity_samples} test "
                f"images of the {self.sanity_pretrain}/all checkpoint")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo build; ``FULL`` is what ``make demo`` builds, ``QUICK`` the tests' version."""

    preset: str
    n_images: int  # all splits
    size: int  # px
    width: float  # vgg16 channel multiplier
    degrees: tuple[str, ...]
    pretrain_steps: int
    pretrain_size: int  # px of the pretext crops (smaller than ``size``: 4x cheaper steps at 64 vs 128)
    epochs: int | None  # None = the training defaults
    maps_per_checkpoint: int  # test images explained per checkpoint and method
    drift_selection: str  # samples compared between TL and FT (the study: true positives of both)
    drift_study: DriftStudy
    beyond: BeyondStudies
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": f"{DATASET}: {self.n_images} images of {self.size}×{self.size} px",
            "models": f"{ARCH} width {self.width:g}, pre-training {' and '.join(SOURCES)}, "
                      f"degrees {', '.join(self.degrees)}",
            "pre-training": f"{self.pretrain_steps} steps of 64 crops at {self.pretrain_size} px",
            "epochs": self.epochs or "training default (early stopping)",
            "test images explained per checkpoint": self.maps_per_checkpoint,
            "drift samples": self.drift_selection,
            "method settings": self.method_params,
            "drift study": self.drift_study.describe(),
            "beyond the studies": self.beyond.describe(),
        }


_DEMO_METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "gradient_shap": {"n_samples": 8},
    "smoothgrad": {"n_samples": 8},
    "occlusion": {"window": 32, "stride": 32},
}

FULL = DemoSettings(
    preset="full", n_images=2000, size=128, width=0.125,
    degrees=("tl", "1conv", "2conv", "3conv", "4conv", "all"),
    pretrain_steps=250, pretrain_size=64, epochs=None, maps_per_checkpoint=40, drift_selection="true_positive",
    method_params=_DEMO_METHOD_PARAMS,
    drift_study=DriftStudy(n_images=1000, size=64, archs=("densenet_mini", "inception_mini", "resnetv2_mini"),
                           width=0.25, pretrain_steps=400, pretrain_size=32, tl_epochs=15, ft_epochs=15,
                           maps_per_checkpoint=60),
    beyond=BeyondStudies(faith_samples=12, sanity_samples=8),
)
QUICK = DemoSettings(
    preset="quick", n_images=160, size=64, width=0.125, degrees=("tl", "all"),
    pretrain_steps=12, pretrain_size=64, epochs=3, maps_per_checkpoint=8, drift_selection="all",
    drift_study=DriftStudy(n_images=100, size=32, archs=("densenet_mini", "resnetv2_mini"), width=0.125,
                           pretrain_steps=4, pretrain_size=32, tl_epochs=1, ft_epochs=2, maps_per_checkpoint=6),
    beyond=BeyondStudies(faith_samples=4, sanity_samples=4),
    method_params={"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4},
                   "smoothgrad": {"n_samples": 4}, "occlusion": {"window": 16, "stride": 16}},
)


def settings_for(quick: bool) -> DemoSettings:
    return QUICK if quick else FULL


# ------------------------------------------------------------------------------------------
# stages
# ------------------------------------------------------------------------------------------
def stage_data(s: DemoSettings, progress: Progress) -> str:
    if dataset_exists(DATASET):
        return "already built"
    build_dataset(DATASET, n=s.n_images, size=s.size, seed=0, progress=progress)
    return f"{s.n_images} images"


def stage_pretrain(s: DemoSettings, progress: Progress) -> str:
    for i, source in enumerate(SOURCES):
        progress(i, len(SOURCES), f"pre-training on {source}")
        ensure_pretrained(source, ARCH, s.width, size=s.pretrain_size, steps=s.pretrain_steps)
    progress(len(SOURCES), len(SOURCES), "done")
    return ", ".join(SOURCES)


def grid_kwargs(s: DemoSettings) -> dict[str, Any]:
    """``models.train_grid`` arguments of the demo grid (also used by bench/training.py)."""
    return {"archs": (ARCH,), "pretrains": SOURCES, "degrees": s.degrees, "width": s.width, "epochs": s.epochs,
            # dihedral flips/rotations: the lesion-shape label is invariant. Early stopping only in the
            # last quarter of the schedule: before that, the loss on 300 validation images swings too
            # much to stop on (a cell stopped at epoch 6 with 0.83 test accuracy that reached 0.94
            # at epoch 12 in another run; bench/RESULTS.md).
            "config": TrainConfig(augment=True, min_epochs=9),
            "pretrain_kwargs": {"steps": s.pretrain_steps, "size": s.pretrain_size}}


def stage_train(s: DemoSettings, progress: Progress) -> str:
    cells = train_grid(DATASET, progress=progress, **grid_kwargs(s))
    accs = ", ".join(f"{c['pretrain']}/{c['degree']} {c['accuracy']:.2f}" for c in cells
                     if c.get("accuracy") is not None)
    return f"{len(cells)} checkpoints ({accs})"


def demo_checkpoints() -> list[int]:
    """The grid's TL and FT checkpoints of the demo dataset, oldest first."""
    with session_scope() as session:
        return list(session.scalars(
            select(Checkpoint.id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == DATASET, Checkpoint.phase.in_(("tl", "ft")))
            .order_by(Checkpoint.id)
        ).all())


def stage_explain(s: DemoSettings, progress: Progress) -> str:
    caps = capabilities(ARCH)
    methods = [m for m in list_methods() if caps.get(m) is True]
    checkpoints = demo_checkpoints()
    total, computed = len(checkpoints) * len(methods), 0
    for i, ckpt in enumerate(checkpoints):
        model, _ = models.load(ckpt)  # loaded once, explained with every method
        for j, method in enumerate(methods):
            progress(i * len(methods) + j, total, f"{method} on checkpoint {ckpt}")
            result = explain_checkpoint(ckpt, method, split="test", limit=s.maps_per_checkpoint,
                                        params=dict(s.method_params.get(method, {})), model=model)
            computed += result.computed
    progress(total, total, "done")
    return f"{len(methods)} methods × {len(checkpoints)} checkpoints ({computed} new maps)"


def stage_drift_data(s: DemoSettings, progress: Progress) -> str:
    d = s.drift_study
    if dataset_exists(DRIFT_DATASET):
        return "already built"
    build_dataset(DRIFT_DATASET, n=d.n_images, size=d.size, seed=0, classes=d.classes, max_lesions=d.max_lesions,
                  lesion_area_min=d.lesion_area[0], lesion_area_max=d.lesion_area[1], contrast_min=d.contrast_min,
                  progress=progress)
    return f"{d.n_images} images, {d.classes} classes"


def drift_study_pairs() -> dict[str, tuple[int, int]]:
    """Architecture → (TL, FT) checkpoint ids of the drift study's stored pairs."""
    with session_scope() as session:
        rows = session.execute(
            select(Checkpoint.arch, Checkpoint.id, Checkpoint.parent_id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == DRIFT_DATASET, Checkpoint.phase == "ft")).all()
    return {str(arch): (int(parent), int(ft)) for arch, ft, parent in rows if parent is not None}


def stage_drift_train(s: DemoSettings, progress: Progress) -> str:
    """Each architecture: formula-driven pre-training, TL (head only), FT (all layers) with an epoch
    checkpoint per FT epoch; an architecture whose pair exists is skipped."""
    d = s.drift_study
    done = drift_study_pairs()
    for i, arch in enumerate(d.archs):
        if arch in done:
            continue
        progress(i, len(d.archs), f"{arch}: pre-training, TL then FT")
        train(DRIFT_DATASET, arch=arch, pretrain=d.pretrain, protocol="tl-ft", width=d.width, save_every=1,
              config=TrainConfig(augment=True, epochs=d.tl_epochs, min_epochs=d.tl_epochs), ft_epochs=d.ft_epochs,
              pretrain_kwargs={"steps": d.pretrain_steps, "size": d.pretrain_size})
    progress(len(d.archs), len(d.archs), "done")
    with session_scope() as session:
        acc = {ck: (session.get(Checkpoint, ck).metrics or {}).get("accuracy") for pair in drift_study_pairs().values()
               for ck in pair}
    return "; ".join(f"{arch} TL {acc[tl]:.2f} → FT {acc[ft]:.2f}" for arch, (tl, ft) in sorted(drift_study_pairs().items()))


def drift_study_checkpoints() -> list[int]:
    """The drift study's TL and FT checkpoints and the FT run's epoch checkpoints (children of TL)."""
    pairs = drift_study_pairs()
    tls = [tl for tl, _ in pairs.values()]
    with session_scope() as session:
        epochs = session.scalars(select(Checkpoint.id).where(Checkpoint.phase == "epoch",
                                                               Checkpoint.parent_id.in_(tls))).all()
    return sorted([ck for pair in pairs.values() for ck in pair] + [int(e) for e in epochs])


def stage_drift_explain(s: DemoSettings, progress: Progress) -> str:
    d = s.drift_study
    checkpoints = drift_study_checkpoints()
    total, computed = len(checkpoints) * len(d.methods), 0
    for i, ckpt in enumerate(checkpoints):
        model, _ = models.load(ckpt)
        for j, method in enumerate(d.methods):
            progress(i * len(d.methods) + j, total, f"{method} on checkpoint {ckpt}")
            computed += explain_checkpoint(ckpt, method, split="test", limit=d.maps_per_checkpoint, model=model).computed
    progress(total, total, "done")
    return f"{len(d.methods)} methods × {len(checkpoints)} checkpoints ({computed} new maps)"


def stage_evaluate(s: DemoSettings, progress: Progress) -> str:
    results = evaluate(demo_checkpoints(), selection="correct", progress=progress)
    return f"{sum(r.rows for r in results)} new metric rows"


def stage_drift(s: DemoSettings, progress: Progress) -> str:
    results = drift(selection=s.drift_selection, progress=progress)
    return f"{sum(r.rows for r in results)} new drift rows"


def sanity_checkpoint(pretrain: str) -> int | None:
    """The all-layers FT checkpoint of the demo grid pre-trained on ``pretrain`` (None before the grid)."""
    with session_scope() as session:
        return session.scalar(
            select(Checkpoint.id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == DATASET, Checkpoint.phase == "ft", Checkpoint.degree == "all",
                   Checkpoint.pretrain == pretrain).order_by(Checkpoint.id.desc()))


def stage_beyond(s: DemoSettings, progress: Progress) -> str:
    """Faithfulness (deletion/insertion AUC) of a few methods' maps and of the chance maps on the
    grid's all-layers FT checkpoints, and the model-randomisation sanity check on one of them
    (:class:`BeyondStudies`); both jobs skip what is stored."""
    b = s.beyond
    caps = capabilities(ARCH)
    methods = [m for m in b.methods if caps.get(m) is True]
    checkpoints = study_checkpoints(b.degrees)
    if not checkpoints:  # faithfulness() reads an empty list as "every checkpoint"
        return f"no checkpoints of {DATASET} yet: run the grid stage first"
    scored = faithfulness(checkpoints, methods, selection="correct", metrics=list(b.faith_metrics),
                          max_samples=b.faith_samples,
                          progress=lambda d, t, m: progress(d, 2 * max(t, 1), f"faithfulness: {m}"))
    said = (f"{', '.join(b.faith_metrics)} of {sum(r.computed for r in scored)} new maps on "
            f"{len(checkpoints)} checkpoints")
    checkpoint = sanity_checkpoint(b.sanity_pretrain)
    if checkpoint is None:
        return f"{said}; no sanity check: no {b.sanity_pretrain}/all checkpoint"
    checked_methods = [m for m in b.sanity_methods if caps.get(m) is True] + [b.sanity_control]
    checked = sanity(checkpoint, checked_methods, mode="cascading", layers=list(b.sanity_layers),
                     limit=b.sanity_samples, params={m: dict(s.method_params.get(m, {})) for m in checked_methods
                                                     if m in s.method_params},
                     progress=lambda d, t, m: progress(max(t, 1) + d, 2 * max(t, 1), m))
    progress(1, 1, "done")
    return (f"{said}; cascading sanity check of {len(checked_methods)} methods on checkpoint {checkpoint} "
            f"({sum(1 for r in checked if r.computed)} new steps × methods)")


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


def study_checkpoints(degrees: tuple[str, ...] = ("tl", "all")) -> list[int]:
    """The TL and all-layers FT checkpoint (or those of ``degrees``) of each pre-training source, by source."""
    with session_scope() as session:
        return list(session.scalars(
            select(Checkpoint.id).join(Dataset, Checkpoint.dataset_id == Dataset.id)
            .where(Dataset.name == DATASET, Checkpoint.phase.in_(("tl", "ft")), Checkpoint.degree.in_(degrees))
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
    checkpoints = study_checkpoints()
    caps = capabilities(ARCH)
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
