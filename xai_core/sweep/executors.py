"""Running a study: stage by stage, each stage's tasks on an executor.

* ``local`` (default): the tasks run one after the other in this process (the same job functions
  as the demo and the CLI).
* ``ray``: every task is a Ray task (``ray.remote``) on the cluster at ``--address`` (or a Ray
  instance started on this machine), declaring one CPU, and one GPU for pre-training, training and
  maps when the cluster has GPUs; a task waits for the tasks it depends on (the previous cell of a
  grid, a checkpoint's metrics before its baselines) and a stage starts when the one before has
  finished. Ray re-runs a task whose worker died (``max_retries``); the jobs skip what is stored
  and write atomically, so a re-run adds nothing twice. The workers reach the same workspace
  (shared storage) and the same PostgreSQL database (``DATABASE_URL``).

Progress goes to ``sweep_runs``/``sweep_tasks`` (:mod:`.tracking`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from db import AttributionMap, SweepRun, get_engine, session_scope
from xai_core.config import database_url, home, workspace_dir
from xai_core.errors import ConfigError
from xai_core.sweep import tracking
from xai_core.sweep.plan import STAGES, StagePlan, Task, plan_stage, plan_study
from xai_core.sweep.study import Study
from xai_core.sweep.tasks import execute_in_worker, execute_task, task_data

EXECUTORS = ("local", "ray")
MAX_RETRIES = 3  # Ray re-runs of a task whose worker or node died


@dataclass
class SweepResult:
    """What a run did: its id, per stage the tasks run and skipped, failures, seconds."""

    run_id: int
    stages: list[StagePlan] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (task key, error)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def check_executor(executor: str) -> None:
    """Refuse an unknown executor, and Ray on SQLite (one file on one machine)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "ray" and database_url().startswith("sqlite"):
        raise ConfigError("--executor ray needs PostgreSQL: Ray workers on other nodes cannot share a SQLite file; "
                          "set DATABASE_URL=postgresql://USER:PASSWORD@HOST/DB")


# ------------------------------------------------------------------------------------------
# executors
# ------------------------------------------------------------------------------------------
class LocalExecutor:
    """Tasks one after the other in this process."""

    name = "local"

    def run_stage(self, study: Study, tasks: list[Task], run_id: int) -> list[tuple[str, str]]:
        data = study.model_dump(by_alias=True)
        failed: list[tuple[str, str]] = []
        for task in tasks:
            if any(k in {f for f, _ in failed} for k in task.after):
                tracking.mark_failed(run_id, task.key, "a task it depends on failed")
                failed.append((task.key, "a task it depends on failed"))
                continue
            try:
                execute_task(data, task_data(task), run_id)
            except Exception as exc:  # recorded on the task's row; the stage's other tasks go on
                failed.append((task.key, f"{type(exc).__name__}: {exc}"))
        return failed

    def close(self) -> None:
        """Nothing to release."""


def worker_env() -> dict[str, str]:
    """What a Ray worker needs to see this workspace: the workspace path, the database, the threads,
    and this checkout on ``PYTHONPATH`` (when xaudit is not installed on the nodes)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {"XAUDIT_HOME": str(home()), "DATABASE_URL": database_url(), "PYTHONPATH": path,
            "XAUDIT_THREADS": os.environ.get("XAUDIT_THREADS", "1")}


class RayExecutor:
    """Tasks as Ray tasks on a cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = MAX_RETRIES) -> None:
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, runtime_env={"env_vars": worker_env()}, log_to_driver=False,
                     logging_level="ERROR")
        self.gpus = float(ray.cluster_resources().get("GPU", 0)) > 0
        self.remote = ray.remote(execute_in_worker)
        self.max_retries = max_retries

    def nodes(self) -> int:
        """Alive nodes of the cluster."""
        return sum(1 for n in self.ray.nodes() if n.get("Alive"))

    def run_stage(self, study: Study, tasks: list[Task], run_id: int) -> list[tuple[str, str]]:
        data = study.model_dump(by_alias=True)
        refs: dict[str, Any] = {}
        for task in tasks:
            deps = [refs[k] for k in task.after if k in refs]
            refs[task.key] = self.remote.options(
                num_cpus=task.cpus, num_gpus=1 if (task.gpu and self.gpus) else 0, max_retries=self.max_retries,
                retry_exceptions=False, name=task.key[:100],
            ).remote(data, task_data(task), run_id, *deps)
        failed: list[tuple[str, str]] = []
        by_ref = {ref: key for key, ref in refs.items()}
        pending = list(refs.values())
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    self.ray.get(ref)
                except Exception as exc:  # the task raised, or its worker died more than max_retries times
                    message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
                    tracking.mark_failed(run_id, by_ref[ref], message)
                    failed.append((by_ref[ref], message))
        return failed

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(executor: str, address: str | None = None) -> LocalExecutor | RayExecutor:
    check_executor(executor)
    return RayExecutor(address) if executor == "ray" else LocalExecutor()


# ------------------------------------------------------------------------------------------
# temporaries left by killed tasks
# ------------------------------------------------------------------------------------------
def remove_leftovers(since: float) -> int:
    """Remove, after a stage, what a task killed during it can leave: temporary files and folders
    (``.tmp-*`` datasets, ``.chunk-*.tmp`` maps, ``.tmp-*`` checkpoints) and map chunks that no index row names (a
    worker killed between a chunk's rename and its index transaction), modified since ``since``
    (epoch seconds). Returns how many files were removed. Run only when no task of the stage is
    alive: another job writing the same workspace at the same moment is not supported."""
    removed = 0
    root = home()
    ckpt_dir = workspace_dir("checkpoints", create=False)
    maps_dir = workspace_dir("attributions", create=False)
    candidates = list(ckpt_dir.glob(".tmp-*")) if ckpt_dir.is_dir() else []
    data_dir = workspace_dir("datasets", create=False)
    candidates += list(data_dir.glob(".tmp-*")) if data_dir.is_dir() else []
    if maps_dir.is_dir():
        candidates += list(maps_dir.glob("*/*/.chunk-*.tmp"))
        chunks = [p for p in maps_dir.glob("*/*/chunk-*.npy") if p.stat().st_mtime >= since]
        if chunks:
            rels = {str(p.resolve().relative_to(root)): p for p in chunks}
            with session_scope() as session:
                named = set(session.scalars(select(AttributionMap.store_path).where(
                    AttributionMap.store_path.in_(list(rels)))).all())
            candidates += [p for rel, p in rels.items() if rel not in named]
    for path in candidates:
        try:
            if path.stat().st_mtime >= since:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


# ------------------------------------------------------------------------------------------
# the sweep
# ------------------------------------------------------------------------------------------
def plan_counts(plans: list[StagePlan]) -> dict[str, dict[str, int]]:
    return {p.stage: {"tasks": len(p.tasks), "skipped": p.skipped} for p in plans}


def run_sweep(study: Study, executor: str = "local", address: str | None = None,
              progress: Callable[[str], None] = lambda _m: None,
              make: Callable[[], LocalExecutor | RayExecutor] | None = None) -> SweepResult:
    """Run ``study`` stage by stage on ``executor``; stops after a stage with a failed task."""
    check_executor(executor)
    get_engine()  # an unreachable database fails here, before anything runs
    t0 = time.perf_counter()
    run_id = tracking.start_run(study.name, executor, plan_counts(plan_study(study)), address)
    result = SweepResult(run_id)
    runner = make() if make is not None else make_executor(executor, address)
    try:
        for stage in STAGES:
            plan = plan_stage(study, stage)
            result.stages.append(plan)
            _set_stage_plan(run_id, plan)
            tracking.queue_tasks(run_id, stage, [t.key for t in plan.tasks])
            progress(f"{stage}: {len(plan.tasks)} tasks, {plan.skipped} stored")
            since = time.time() - 1.0
            failed = runner.run_stage(study, plan.tasks, run_id) if plan.tasks else []
            if stage in ("data", "pretrain", "train", "explain"):
                remove_leftovers(since)
            if failed:
                result.failed = failed
                tracking.finish_run(run_id, "failed", f"{failed[0][0]}: {failed[0][1]}")
                break
        else:
            tracking.finish_run(run_id, "done")
    except BaseException as exc:
        tracking.finish_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        runner.close()
    result.seconds = time.perf_counter() - t0
    return result


def _set_stage_plan(run_id: int, plan: StagePlan) -> None:
    """The stage's actual task count (known once the stages before it ran) on the run row."""
    with session_scope() as session:
        run = session.get(SweepRun, run_id)
        counts = dict(run.plan or {})
        counts[plan.stage] = {"tasks": len(plan.tasks), "skipped": plan.skipped}
        session.execute(update(SweepRun).where(SweepRun.id == run_id).values(plan=counts))
