"""Sweep progress in the database (``sweep_runs``, ``sweep_tasks``): what the executors write and
what ``xaudit sweep status`` and the Overview page read.

A task's row is keyed on (run, task key): a task Ray retries after its worker died marks the same
row running again (``attempts`` + 1), so progress never shows a task twice.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any

import pandas as pd
from sqlalchemy import func, select, update

from db import SweepRun, SweepTask, session_scope
from db.tables import column_limit

STATES = ("queued", "running", "done", "failed")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _clip(text: str | None, column: Any) -> str | None:
    return None if text is None else text[: column_limit(column)]


def start_run(study: str, executor: str, plan: dict[str, dict[str, int]], address: str | None = None) -> int:
    """A new run row (state ``running``) with the planned task counts per stage; returns its id."""
    with session_scope() as session:
        run = SweepRun(study=study, executor=executor, address=address, state="running", plan=plan)
        session.add(run)
        session.flush()
        return int(run.id)


def finish_run(run_id: int, state: str, error: str | None = None) -> None:
    """Close a run: ``done`` or ``failed`` (with the first error)."""
    with session_scope() as session:
        session.execute(update(SweepRun).where(SweepRun.id == run_id).values(
            state=state, finished_at=_now(), error=_clip(error, SweepRun.error)))


def queue_tasks(run_id: int, stage: str, keys: list[str]) -> None:
    """One ``queued`` row per task key of ``stage`` (keys already queued in this run are kept)."""
    with session_scope() as session:
        have = set(session.scalars(select(SweepTask.key).where(SweepTask.run_id == run_id, SweepTask.stage == stage)))
        session.add_all(SweepTask(run_id=run_id, stage=stage, key=k, state="queued", attempts=0)
                        for k in keys if k not in have)


def node_name() -> str:
    """This process's node as progress shows it: the host name, and the Ray node id when in a Ray worker."""
    host = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{host}/{ray.get_runtime_context().get_node_id()[:8]}"
    except ImportError:
        pass
    return host


def mark_running(run_id: int, key: str) -> None:
    """The task started (again) in this process: node, pid, attempts + 1."""
    with session_scope() as session:
        session.execute(update(SweepTask).where(SweepTask.run_id == run_id, SweepTask.key == key).values(
            state="running", node=_clip(node_name(), SweepTask.node), pid=os.getpid(),
            attempts=SweepTask.attempts + 1, started_at=_now(), error=None))


def mark_done(run_id: int, key: str, seconds: float, summary: str) -> None:
    with session_scope() as session:
        session.execute(update(SweepTask).where(SweepTask.run_id == run_id, SweepTask.key == key).values(
            state="done", finished_at=_now(), seconds=seconds, summary=_clip(summary, SweepTask.summary)))


def mark_failed(run_id: int, key: str, error: str) -> None:
    with session_scope() as session:
        session.execute(update(SweepTask).where(SweepTask.run_id == run_id, SweepTask.key == key).values(
            state="failed", finished_at=_now(), error=_clip(error, SweepTask.error)))


# ------------------------------------------------------------------------------------------
# reads
# ------------------------------------------------------------------------------------------
def latest_run_id(study: str | None = None) -> int | None:
    """The newest run (of ``study`` when given), None when there is none."""
    with session_scope() as session:
        query = select(SweepRun.id).order_by(SweepRun.id.desc()).limit(1)
        if study:
            query = query.where(SweepRun.study == study)
        return session.scalar(query)


def run_info(run_id: int) -> dict[str, Any] | None:
    """The run row as a dict (study, executor, address, state, times, error), None when unknown."""
    with session_scope() as session:
        run = session.get(SweepRun, run_id)
        if run is None:
            return None
        return {"id": run.id, "study": run.study, "executor": run.executor, "address": run.address,
                "state": run.state, "plan": dict(run.plan or {}), "started_at": run.started_at,
                "finished_at": run.finished_at, "error": run.error}


def stage_frame(run_id: int, stages: tuple[str, ...]) -> pd.DataFrame:
    """One row per stage of a run: planned, skipped (stored before), queued, running, done, failed
    task counts and the nodes its tasks ran on, in stage order."""
    info = run_info(run_id) or {"plan": {}}
    with session_scope() as session:
        counts = session.execute(select(SweepTask.stage, SweepTask.state, func.count(SweepTask.id))
                                 .where(SweepTask.run_id == run_id).group_by(SweepTask.stage, SweepTask.state)).all()
        nodes = session.execute(select(SweepTask.stage, SweepTask.node).where(
            SweepTask.run_id == run_id, SweepTask.node.is_not(None)).distinct()).all()
    by: dict[str, dict[str, int]] = {}
    for stage, state, n in counts:
        by.setdefault(stage, {})[state] = int(n)
    node_by: dict[str, set[str]] = {}
    for stage, node in nodes:
        node_by.setdefault(stage, set()).add(str(node))
    rows = []
    for stage in stages:
        plan = info["plan"].get(stage, {})
        got = by.get(stage, {})
        rows.append({"stage": stage, "planned": int(plan.get("tasks", 0)), "skipped": int(plan.get("skipped", 0)),
                     **{s: got.get(s, 0) for s in STATES}, "nodes": ", ".join(sorted(node_by.get(stage, set())))})
    return pd.DataFrame(rows, columns=["stage", "planned", "skipped", *STATES, "nodes"])


def task_frame(run_id: int, state: str | None = None) -> pd.DataFrame:
    """The task rows of a run (optionally of one state), oldest first."""
    with session_scope() as session:
        query = select(SweepTask.stage, SweepTask.key, SweepTask.state, SweepTask.node, SweepTask.pid,
                       SweepTask.attempts, SweepTask.seconds, SweepTask.summary, SweepTask.error) \
            .where(SweepTask.run_id == run_id).order_by(SweepTask.id)
        if state:
            query = query.where(SweepTask.state == state)
        rows = session.execute(query).all()
    return pd.DataFrame([r._asdict() for r in rows],
                        columns=["stage", "key", "state", "node", "pid", "attempts", "seconds", "summary", "error"])


def latest_sweep() -> tuple[dict[str, Any], pd.DataFrame] | None:
    """The newest sweep run and its stage frame (what the Overview page shows), None when none ran."""
    from xai_core.sweep.plan import STAGES

    run_id = latest_run_id()
    info = run_info(run_id) if run_id is not None else None
    if info is None:
        return None
    return info, stage_frame(int(run_id), STAGES)
