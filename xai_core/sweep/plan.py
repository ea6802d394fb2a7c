"""A study expanded into tasks, stage by stage, skipping what is stored.

Stages run in order (:data:`STAGES`); a stage's tasks are made from the database right before the
stage runs (so the map tasks see the checkpoints the train stage made), and, for the plan printed
first, from the names the study predicts. Each task names the job it runs (:mod:`.tasks`), its
arguments (JSON), whether it wants a GPU, the tasks of its stage it must wait for, and its cost
estimated from this machine's measured rates (:mod:`.rates`).

Task kinds: ``data`` (build or import the dataset), ``pretrain`` (one source × architecture),
``train`` (one grid cell, or one TL→FT run), ``explain`` (checkpoint × method × shard of samples),
``evaluate`` (checkpoint × method; a checkpoint's chance-level baselines after its methods),
``drift`` (one TL→FT or TL→epoch pair; one checkpoint's cross-method comparison), ``beyond`` (a
part's ``beyond`` checks: faithfulness of one checkpoint's maps; the sanity check of one
checkpoint), ``report``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from db import AttributionMap, Checkpoint, Dataset, DriftMetric, GroundTruthMetric, Sample, session_scope
from models.architectures import DEGREES
from models.finetune import TrainConfig
from models.grid import cell_name
from models.pretraining import get_pretraining_source
from xai_core.attribution.capabilities import capabilities
from xai_core.attribution.jobs import stored_samples
from xai_core.data.params import make_params
from xai_core.data.synth import labels_and_splits
from xai_core.metrics.chance_maps import CHANCE_MAPS
from xai_core.metrics.drift_job import comparisons
from xai_core.metrics.evaluate_job import select_samples as select_for_metrics
from xai_core.metrics.registry import list_drift_metrics, list_ground_truth_metrics
from xai_core.metrics.stored import map_groups, map_samples, missing, predictions, stored_metrics
from xai_core.sweep import rates
from xai_core.sweep.checks import faithfulness_methods, faithfulness_pending, sanity_pending
from xai_core.sweep.study import Study, StudyPart

STAGES = ("data", "pretrain", "train", "explain", "evaluate", "drift", "beyond", "report")
GPU_STAGES = frozenset({"pretrain", "train", "explain", "beyond"})  # placed on GPU nodes when the cluster has GPUs


@dataclass(frozen=True)
class Task:
    """One unit of work: ``stage``, a key unique in the study, the job's JSON arguments."""

    stage: str
    key: str
    args: dict[str, Any]
    gpu: bool = False
    cpus: float = 1.0
    after: tuple[str, ...] = ()  # keys of tasks of the same stage that must finish first
    estimate_s: float | None = None  # None: no measured rate on this machine


@dataclass
class StagePlan:
    """The tasks of one stage, how many were skipped because their results are stored, and notes."""

    stage: str
    tasks: list[Task] = field(default_factory=list)
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def estimate_s(self) -> float:
        """Sum of the tasks' estimates that have a measured rate."""
        return float(sum(t.estimate_s for t in self.tasks if t.estimate_s is not None))

    @property
    def unmeasured(self) -> int:
        """Tasks without a measured rate."""
        return sum(1 for t in self.tasks if t.estimate_s is None)


# ------------------------------------------------------------------------------------------
# what a part makes: names predicted from the study, or read from the database
# ------------------------------------------------------------------------------------------
def grid_order(part: StudyPart) -> list[str]:
    """The grid's degrees in training order (TL first when another degree starts from it)."""
    order = [d for d in DEGREES if d in part.models.degrees]
    if any(d != "tl" for d in order) and "tl" not in order and part.models.training.init != "pretrained":
        order = ["tl", *order]
    return order


def cells(part: StudyPart) -> list[tuple[str, str, str, str]]:
    """(arch, source, degree, checkpoint name) of every train cell; for ``tl-ft`` the degree is
    ``tlft`` and the name is the base of ``<base>-tl`` / ``<base>-ft``."""
    m, ds, seed = part.models, part.dataset.name, part.models.training.seed
    if m.protocol == "tl-ft":
        return [(a, p, "tlft", cell_name(ds, a, m.width, p, "tlft", seed)) for a in m.archs for p in m.pretrain.sources]
    return [(a, p, d, cell_name(ds, a, m.width, p, d, seed)) for a in m.archs for p in m.pretrain.sources
            for d in grid_order(part)]


def _existing(names: list[str]) -> dict[str, int]:
    """{name: id} of the checkpoints of ``names`` whose file exists."""
    if not names:
        return {}
    with session_scope() as session:
        rows = session.execute(select(Checkpoint.name, Checkpoint.id, Checkpoint.path)
                               .where(Checkpoint.name.in_(names))).all()
    return {n: int(i) for n, i, p in rows if Path(p).is_file()}


def explained_checkpoints(part: StudyPart, predicted: bool) -> list[tuple[str, str]]:
    """(checkpoint name, arch) whose maps the part computes: every TL and FT checkpoint of its cells,
    and for ``tl-ft`` with drift ``epochs`` the FT epoch checkpoints (read from the database; when
    ``predicted`` and not trained yet, the most the FT run's ``epochs // save_every`` can give)."""
    out: list[tuple[str, str]] = []
    t = part.models.training
    for arch, _source, degree, name in cells(part):
        if degree != "tlft":
            out.append((name, arch))
            continue
        out += [(f"{name}-tl", arch), (f"{name}-ft", arch)]
        if not (part.drift.epochs and part.drift.pairs != "none" and t.save_every):
            continue
        with session_scope() as session:
            stored = session.scalars(select(Checkpoint.name).where(
                Checkpoint.name.like(f"{name}-ft-e%"), Checkpoint.phase == "epoch").order_by(Checkpoint.id)).all()
        if stored:
            out += [(n, arch) for n in stored]
        elif predicted:
            epochs = ft_epochs(part)
            out += [(f"{name}-ft-e{e}", arch) for e in range(t.save_every, epochs + 1, t.save_every)]
    return out


def ft_epochs(part: StudyPart) -> int:
    """Epochs of a ``tl-ft`` part's FT run: ``ft_epochs``, else ``epochs``, else ``TrainConfig``'s."""
    t = part.models.training
    return t.ft_epochs or t.epochs or TrainConfig.epochs


def part_methods(part: StudyPart, arch: str) -> list[str]:
    """The part's methods that ``arch`` supports (``all``: every supported one), registry order."""
    caps = capabilities(arch)
    names = list(caps) if part.methods.names == "all" else list(part.methods.names)
    return [m for m in names if caps.get(m) is True]


def split_size(part: StudyPart) -> int | None:
    """Samples of the part's split: from the database when the dataset exists, else from the build
    parameters (None for an import not yet made)."""
    with session_scope() as session:
        ds = session.scalar(select(Dataset.id).where(Dataset.name == part.dataset.name))
        if ds is not None:
            return int(session.scalar(select(func.count(Sample.id)).where(
                Sample.dataset_id == ds, Sample.split == part.methods.split)) or 0)
    if part.dataset.build is None:
        return None
    _, splits = labels_and_splits(make_params(**part.dataset.build))
    return int(np.sum(splits == part.methods.split))


def shards(part: StudyPart) -> list[tuple[int, int]]:
    """[start, stop) positions in the split of each map task's samples."""
    n = split_size(part)
    want = part.methods.samples
    total = want if n is None else (n if want is None else min(want, n))
    if total is None:
        return [(0, part.methods.shard)]
    return [(s, min(s + part.methods.shard, total)) for s in range(0, total, part.methods.shard)]


# ------------------------------------------------------------------------------------------
# stages
# ------------------------------------------------------------------------------------------
def _data(study: Study) -> StagePlan:
    plan = StagePlan("data")
    for pname, part in study.parts.items():
        with session_scope() as session:
            exists = session.scalar(select(Dataset.id).where(Dataset.name == part.dataset.name)) is not None
        if exists:
            plan.skipped += 1
            continue
        n = (part.dataset.build or {}).get("n")
        plan.tasks.append(Task("data", f"data:{part.dataset.name}", {"part": pname},
                               estimate_s=rates.data_seconds(n, (part.dataset.build or {}).get("size"))))
    return plan


def _pretrain(study: Study) -> StagePlan:
    plan = StagePlan("pretrain")
    seen: set[tuple[str, str, float]] = set()
    for pname, part in study.parts.items():
        m = part.models
        for arch in m.archs:
            for source in m.pretrain.sources:
                if source == "none" or (source, arch, m.width) in seen:
                    continue
                seen.add((source, arch, m.width))
                in_chans = get_pretraining_source(source).resolve_channels(None)
                with session_scope() as session:
                    paths = session.scalars(select(Checkpoint.path).where(
                        Checkpoint.phase == "pretrain", Checkpoint.pretrain == source, Checkpoint.arch == arch,
                        Checkpoint.width == float(m.width), Checkpoint.in_chans == in_chans)).all()
                if any(Path(p).is_file() for p in paths):
                    plan.skipped += 1
                    continue
                plan.tasks.append(Task("pretrain", f"pretrain:{source}:{arch}:w{m.width:g}",
                                       {"part": pname, "arch": arch, "source": source}, gpu=True,
                                       estimate_s=rates.pretrain_seconds(source, arch, m.width, m.pretrain.steps)))
    return plan


def _train(study: Study) -> StagePlan:
    plan = StagePlan("train")
    for pname, part in study.parts.items():
        m = part.models
        all_cells = cells(part)
        wanted = [n for *_, d, n in all_cells for n in ([f"{n}-tl", f"{n}-ft"] if d == "tlft" else [n])]
        done = _existing(wanted)
        n_train = _split_count(part, "train")
        previous: dict[tuple[str, str], str] = {}
        for arch, source, degree, name in all_cells:
            key = f"train:{name}"
            names = [f"{name}-tl", f"{name}-ft"] if degree == "tlft" else [name]
            if all(n in done for n in names):
                plan.skipped += 1
                previous[(arch, source)] = key
                continue
            after = ()
            if degree not in ("tl", "tlft") and m.training.init != "pretrained":
                before = previous.get((arch, source))
                after = (before,) if before and any(t.key == before for t in plan.tasks) else ()
            epochs = m.training.epochs or TrainConfig.epochs
            epochs += ft_epochs(part) if degree == "tlft" else 0  # the TL run, then the FT run
            plan.tasks.append(Task("train", key, {"part": pname, "arch": arch, "source": source, "degree": degree},
                                   gpu=True, after=after,
                                   estimate_s=rates.train_seconds(arch, m.width, _size(part), epochs, n_train)))
            previous[(arch, source)] = key
    return plan


def _size(part: StudyPart) -> int | None:
    with session_scope() as session:
        size = session.scalar(select(Dataset.image_size).where(Dataset.name == part.dataset.name))
    if size is not None:
        return int(size)
    if part.dataset.build is not None:
        return int(make_params(**part.dataset.build).size)
    return part.dataset.import_.size if part.dataset.import_ else None


def _split_count(part: StudyPart, split: str) -> int | None:
    with session_scope() as session:
        ds = session.scalar(select(Dataset.id).where(Dataset.name == part.dataset.name))
        if ds is not None:
            return int(session.scalar(select(func.count(Sample.id)).where(
                Sample.dataset_id == ds, Sample.split == split)) or 0)
    if part.dataset.build is None:
        return None
    _, splits = labels_and_splits(make_params(**part.dataset.build))
    return int(np.sum(splits == split))


def _split_pks(part: StudyPart) -> list[int] | None:
    """Sample keys of the part's split in explain order (None before the dataset exists)."""
    with session_scope() as session:
        ds = session.scalar(select(Dataset.id).where(Dataset.name == part.dataset.name))
        if ds is None:
            return None
        return [int(p) for p in session.scalars(select(Sample.id).where(
            Sample.dataset_id == ds, Sample.split == part.methods.split).order_by(Sample.id)).all()]


def _explain(study: Study, predicted: bool) -> StagePlan:
    plan = StagePlan("explain")
    for pname, part in study.parts.items():
        ckpts = explained_checkpoints(part, predicted)
        ids = _existing([n for n, _ in ckpts])
        parts_shards = shards(part)
        pks = _split_pks(part)
        size = _size(part)
        for name, arch in ckpts:
            for method in part_methods(part, arch):
                params = dict(part.methods.params.get(method, {}))
                stored = stored_samples(ids[name], method, params) if name in ids and pks is not None else set()
                for start, stop in parts_shards:
                    if pks is not None and name in ids and set(pks[start:stop]) <= stored:
                        plan.skipped += 1
                        continue
                    plan.tasks.append(Task(
                        "explain", f"explain:{name}:{method}:{start}-{stop}",
                        {"part": pname, "checkpoint": name, "method": method, "start": start, "stop": stop},
                        gpu=True, estimate_s=rates.explain_seconds(arch, part.models.width, size, method,
                                                                   stop - start)))
    return plan


def _evaluate(study: Study, predicted: bool) -> StagePlan:
    plan = StagePlan("evaluate")
    for pname, part in study.parts.items():
        if not part.metrics.enabled:
            continue
        names = part.metrics.names or list_ground_truth_metrics()
        ckpts = explained_checkpoints(part, predicted)
        ids = _existing([n for n, _ in ckpts])
        for name, arch in ckpts:
            if is_epoch(name):
                continue  # epoch checkpoints: drift only (as the demo's evaluate of TL and FT checkpoints)
            keys = []
            for method in part_methods(part, arch):
                key = f"evaluate:{name}:{method}"
                if name in ids and not _evaluate_todo(ids[name], method, part.selections.metrics, names):
                    plan.skipped += 1
                    continue
                keys.append(key)
                plan.tasks.append(Task("evaluate", key, {"part": pname, "checkpoint": name, "method": method}))
            if part.metrics.baselines:
                if not keys and name in ids and _baselines_stored(ids[name]):
                    plan.skipped += 1
                    continue
                plan.tasks.append(Task("evaluate", f"evaluate:{name}:baselines",
                                       {"part": pname, "checkpoint": name, "method": None}, after=tuple(keys)))
    return plan


def _baselines_stored(ckpt: int) -> bool:
    """Whether every chance-level map of the checkpoint has metric rows."""
    with session_scope() as session:
        have = set(session.scalars(select(GroundTruthMetric.method).where(
            GroundTruthMetric.checkpoint_id == ckpt, GroundTruthMetric.method.in_(list(CHANCE_MAPS))).distinct()))
    return have == set(CHANCE_MAPS)


def _evaluate_todo(ckpt: int, method: str, selection: str, names: list[str]) -> bool:
    """Whether (checkpoint, method) has a selected map lacking one of the metrics, or no map yet."""
    with session_scope() as session:
        groups = [(m, h) for m, h in map_groups(session, ckpt, None) if m == method]
        if not groups:
            return True
        preds = predictions(session, ckpt)
        for m, phash in groups:
            chosen = select_for_metrics(preds, map_samples(session, ckpt, m, phash), selection)
            stored = stored_metrics(session, GroundTruthMetric, checkpoint_id=ckpt, method=m, params_hash=phash)
            if missing(chosen, stored, names):
                return True
    return False


def drift_pairs(part: StudyPart, predicted: bool) -> list[tuple[str, str]]:
    """(A, B) checkpoint names: TL → every other degree of the grid; TL → FT (and TL → FT epochs)."""
    if part.drift.pairs == "none":
        return []
    out: list[tuple[str, str]] = []
    ckpts = [n for n, _ in explained_checkpoints(part, predicted)]
    for arch, source, degree, name in cells(part):
        if degree == "tlft":
            out += [(f"{name}-tl", n) for n in ckpts if n == f"{name}-ft" or n.startswith(f"{name}-ft-e")]
        elif degree != "tl":
            tl = cell_name(part.dataset.name, arch, part.models.width, source, "tl", part.models.training.seed)
            if tl in ckpts:
                out.append((tl, name))
    return out


def is_epoch(name: str) -> bool:
    """Whether a checkpoint name is an epoch checkpoint's (``...-e<k>``)."""
    return re.search(r"-e\d+$", name) is not None


def _drift(study: Study, predicted: bool) -> StagePlan:
    plan = StagePlan("drift")
    for pname, part in study.parts.items():
        pairs = drift_pairs(part, predicted)
        arch_of = dict(explained_checkpoints(part, predicted))
        sides = sorted({n for pair in pairs for n in pair if not is_epoch(n)})
        ids = _existing(sorted({n for pair in pairs for n in pair}))
        names = list_drift_metrics()
        selection = part.selections.drift
        for a, b in pairs:
            if a in ids and b in ids and not _drift_todo(ids[a], ids[b], None, selection, names):
                plan.skipped += 1
                continue
            plan.tasks.append(Task("drift", f"drift:{a}:{b}", {"part": pname, "a": a, "b": b, "methods": None}))
        for name in sides:
            usable = [m for m in part.drift.cross_methods if m in part_methods(part, arch_of[name])]
            if len(usable) < 2:
                continue
            specs = [f"{ma}:{mb}" for ma, mb in combinations(usable, 2)]
            if name in ids and not _drift_todo(ids[name], ids[name], specs, selection, names):
                plan.skipped += 1
                continue
            plan.tasks.append(Task("drift", f"drift:{name}:cross", {"part": pname, "a": name, "b": name,
                                                                     "methods": specs}))
    return plan


def _drift_todo(a: int, b: int, specs: list[str] | None, selection: str, names: list[str]) -> bool:
    """Whether a drift comparison of (A, B) lacks a metric of a selected sample, or has no maps yet."""
    with session_scope() as session:
        comps = comparisons(set(map_groups(session, a, None)), set(map_groups(session, b, None)), specs, a, b,
                            required=False)
        if not comps:
            return True
        preds_a, preds_b = predictions(session, a), predictions(session, b)
        for ma, ha, mb, hb in comps:
            both = map_samples(session, a, ma, ha) & map_samples(session, b, mb, hb)
            if selection == "true_positive":
                both = {p for p in both if preds_a.get(p, (0, False))[1] and preds_b.get(p, (0, False))[1]}
            stored = stored_metrics(session, DriftMetric, checkpoint_a_id=a, checkpoint_b_id=b, method_a=ma,
                                    params_hash_a=ha, method_b=mb, params_hash_b=hb)
            if missing(sorted(both), stored, names):
                return True
    return False


def degree_checkpoints(part: StudyPart, degrees: list[str]) -> list[tuple[str, str, str]]:
    """(checkpoint name, arch, source) of the part's TL/FT checkpoints of ``degrees`` (``tl-ft``: the
    ``-tl`` checkpoint is degree tl, the ``-ft`` one all)."""
    out: list[tuple[str, str, str]] = []
    for arch, source, degree, name in cells(part):
        if degree == "tlft":
            out += [(f"{name}-{phase}", arch, source) for phase, d in (("tl", "tl"), ("ft", "all")) if d in degrees]
        elif degree in degrees:
            out.append((name, arch, source))
    return out


def _beyond(study: Study) -> StagePlan:
    plan = StagePlan("beyond")
    for pname, part in study.parts.items():
        if part.beyond is None:
            continue
        faith, check = part.beyond.faithfulness, part.beyond.sanity
        if faith is not None:
            names = [(n, a) for n, a, _ in degree_checkpoints(part, faith.degrees) if faithfulness_methods(faith, a)]
            ids = _existing([n for n, _ in names])
            for name, arch in names:
                if name in ids and not faithfulness_pending(faith, ids[name], arch, part.selections.metrics,
                                                            part.metrics.baselines):
                    plan.skipped += 1
                    continue
                plan.tasks.append(Task("beyond", f"beyond:faithfulness:{name}",
                                       {"part": pname, "check": "faithfulness", "checkpoint": name}, gpu=True))
        if check is not None:
            names = [(n, a) for n, a, src in degree_checkpoints(part, ["all"]) if src == part.sanity_source()]
            ids = _existing([n for n, _ in names])
            for name, arch in names:
                if name in ids and not sanity_pending(check, ids[name], arch, part.methods.split, part.methods.params):
                    plan.skipped += 1
                    continue
                plan.tasks.append(Task("beyond", f"beyond:sanity:{name}",
                                       {"part": pname, "check": "sanity", "checkpoint": name}, gpu=True))
    return plan


def _report(study: Study) -> StagePlan:
    plan = StagePlan("report")
    if study.report:
        plan.tasks.append(Task("report", f"report:{study.name}", {}))
    return plan


def plan_stage(study: Study, stage: str, predicted: bool = False) -> StagePlan:
    """The tasks of ``stage`` given what the database holds now (``predicted``: also the checkpoints
    the study will make, for the plan printed before anything runs)."""
    if stage == "data":
        return _data(study)
    if stage == "pretrain":
        return _pretrain(study)
    if stage == "train":
        return _train(study)
    if stage == "explain":
        return _explain(study, predicted)
    if stage == "evaluate":
        return _evaluate(study, predicted)
    if stage == "drift":
        return _drift(study, predicted)
    if stage == "beyond":
        return _beyond(study)
    return _report(study)


def plan_study(study: Study) -> list[StagePlan]:
    """Every stage's plan as far as it can be known before anything runs."""
    return [plan_stage(study, s, predicted=True) for s in STAGES]


def maps_stored_count() -> int:
    """Attribution map rows in the database (what a sweep's map stage adds to)."""
    with session_scope() as session:
        return int(session.scalar(select(func.count(AttributionMap.id))) or 0)
