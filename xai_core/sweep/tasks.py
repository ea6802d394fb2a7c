"""What one sweep task does: the same job functions the CLI and the demo call.

:func:`execute_task` is what both executors run (in this process, or in a Ray worker): it marks
the task's progress row running / done / failed around :func:`run_task`. Every job skips what is
stored and writes atomically, so a task that is run again (a Ray retry after its worker died)
adds nothing twice.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from models.checkpoints import resolve_checkpoint
from models.finetune import TrainConfig
from xai_core.config import configure_threads, workspace_dir
from xai_core.sweep import tracking
from xai_core.sweep.checks import run_faithfulness, run_sanity
from xai_core.sweep.plan import Task, grid_order, part_methods
from xai_core.sweep.study import Study, StudyPart


def _data(study: Study, part: StudyPart, args: dict[str, Any]) -> str:
    from xai_core.data import build_dataset, dataset_exists
    from xai_core.data.importer import import_dataset

    name = part.dataset.name
    if dataset_exists(name):
        return "already built"
    # a folder without its database rows is what a task killed between the two leaves: replace it
    leftover = (workspace_dir("datasets") / name).exists()
    if part.dataset.build is not None:
        build_dataset(name, **part.dataset.build, overwrite=leftover)
        return f"built {name}"
    spec = part.dataset.import_
    assert spec is not None  # the schema requires build or import
    import_dataset(spec.folder, name, split_csv=spec.split_csv, size=spec.size, seed=spec.seed,
                   allow_unbalanced=spec.allow_unbalanced, overwrite=leftover)
    return f"imported {name}"


def _pretrain(study: Study, part: StudyPart, args: dict[str, Any]) -> str:
    from models.pretraining import ensure_pretrained

    _, meta = ensure_pretrained(args["source"], args["arch"], part.models.width, **part.models.pretrain.kwargs())
    return f"pre-training checkpoint {meta.get('checkpoint_id')}"


def _train(study: Study, part: StudyPart, args: dict[str, Any]) -> str:
    from models import train_grid
    from models.grid import train

    m = part.models
    config = TrainConfig(**m.training.config_fields())
    if args["degree"] == "tlft":
        infos = train(part.dataset.name, arch=args["arch"], pretrain=args["source"], protocol="tl-ft", width=m.width,
                      seed=m.training.seed, config=config, ft_epochs=m.training.ft_epochs,
                      pretrain_kwargs=m.pretrain.kwargs())
        return ", ".join(f"{i.name} ({i.id})" for i in infos)
    order = grid_order(part)
    cells = train_grid(part.dataset.name, archs=(args["arch"],), pretrains=(args["source"],),
                       degrees=tuple(order[: order.index(args["degree"]) + 1]), width=m.width, seed=m.training.seed,
                       init=m.training.init, pretrain_kwargs=m.pretrain.kwargs(), config=config)
    cell = cells[-1]
    acc = cell.get("accuracy")
    return f"{cell['name']} ({cell['checkpoint_id']})" + (f" accuracy {acc:.3f}" if acc is not None else "")


def _explain(study: Study, part: StudyPart, args: dict[str, Any]) -> str:
    from xai_core.attribution import explain_checkpoint
    from xai_core.attribution.jobs import select_samples

    ckpt = resolve_checkpoint(args["checkpoint"])
    pks = select_samples(part.dataset.name, part.methods.split).sample_pks[args["start"]:args["stop"]]
    result = explain_checkpoint(int(ckpt.id), args["method"], sample_pks=[int(p) for p in pks], split=None,
                                params=dict(part.methods.params.get(args["method"], {})))
    return f"{result.computed} maps ({result.skipped} stored) on {result.device or 'no device'}"


def _evaluate(study: Study, part: StudyPart, args: dict[str, Any]) -> str:
    from xai_core.metrics import evaluate

    ckpt = resolve_checkpoint(args["checkpoint"])
    if args["method"] is None:  # the chance-level baselines, on the union of the methods' samples
        methods = part_methods(part, ckpt.arch)
        results = evaluate([int(ckpt.id)], methods=methods, selection=part.selections.metrics, baselines=True,
                           metrics=part.metrics.names)
    else:
        results = evaluate([int(ckpt.id)], methods=[args["method"]], selection=part.selections.metrics,
                           baselines=False, metrics=part.metrics.names)
    return f"{sum(r.rows for r in results)} maps evaluated"


def _drift(study: Study, part: StudyPart, args: dict[str, Any]) -> str:
    from xai_core.metrics import drift

    a, b = int(resolve_checkpoint(args["a"]).id), int(resolve_checkpoint(args["b"]).id)
    results = drift(pairs=[(a, b)], methods=args.get("methods"), selection=part.selections.drift, cross_methods=None)
    return f"{sum(r.rows for r in results)} samples compared"


def _beyond(study: Study, part: StudyPart, args: dict[str, Any]) -> str:
    ckpt = resolve_checkpoint(args["checkpoint"])
    assert part.beyond is not None  # the planner makes beyond tasks of parts with the section only
    if args["check"] == "faithfulness":
        assert part.beyond.faithfulness is not None
        results = run_faithfulness(part.beyond.faithfulness, [int(ckpt.id)], ckpt.arch, part.selections.metrics,
                                   part.metrics.baselines)
        return f"{sum(r.computed for r in results)} maps scored ({sum(r.skipped for r in results)} stored)"
    assert part.beyond.sanity is not None
    checked = run_sanity(part.beyond.sanity, int(ckpt.id), ckpt.arch, part.methods.split, part.methods.params)
    return f"{sum(1 for r in checked if r.computed)} of {len(checked)} steps × methods computed"


def _report(study: Study, part: StudyPart | None, args: dict[str, Any]) -> str:
    from xai_core.report import write_report

    return str(write_report(workspace_dir("reports") / study.name, replace=True))


RUNNERS = {"data": _data, "pretrain": _pretrain, "train": _train, "explain": _explain, "evaluate": _evaluate,
           "drift": _drift, "beyond": _beyond, "report": _report}


def run_task(study: Study, task: Task) -> str:
    """Run one task's job; returns a one-line summary."""
    part = study.parts[task.args["part"]] if "part" in task.args else None
    return RUNNERS[task.stage](study, part, task.args)  # type: ignore[arg-type]


def execute_task(study_data: dict[str, Any], task_data: dict[str, Any], run_id: int, *_after: Any) -> str:
    """Run a task with its progress row kept: running (node, pid, attempt), then done or failed.

    Arguments are plain data (what Ray ships to a worker); ``_after`` are the results of the tasks
    this one waits for (Ray resolves them before the call)."""
    study = Study.model_validate(study_data)
    task = Task(**{**task_data, "after": tuple(task_data.get("after", ()))})
    tracking.mark_running(run_id, task.key)
    t0 = time.perf_counter()
    try:
        summary = run_task(study, task)
    except BaseException as exc:
        tracking.mark_failed(run_id, task.key, f"{type(exc).__name__}: {exc}")
        raise
    tracking.mark_done(run_id, task.key, time.perf_counter() - t0, summary)
    return summary


def execute_in_worker(study_data: dict[str, Any], task_data: dict[str, Any], run_id: int, *after: Any) -> str:
    """:func:`execute_task` in a Ray worker: torch threads from ``XAUDIT_THREADS`` first."""
    configure_threads()
    return execute_task(study_data, task_data, run_id, *after)


def task_data(task: Task) -> dict[str, Any]:
    """A task as plain data."""
    return asdict(task)
