"""The background job runner (xai_core.background) with the real training job on a tiny dataset:
its own process, state transitions and progress in the workspace, the saved checkpoint, a failing
job's one line, a killed job, and an identical job refused while one runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db import Checkpoint, session_scope
from tests.postgres import only_sqlite
from xai_core import background
from xai_core.background import JobState, job_id, list_jobs, read_job, start
from xai_core.data import build_dataset, load_dataset
from xai_core.errors import JobRunningError, UnknownNameError

TINY = dict(dataset="tiny", arch="vgg16", pretrain="none", degree="all", protocol="single", width=0.125)
TIMEOUT_S = 300
runner_only = only_sqlite  # tests of the runner itself, not of the storage: one backend is enough


@pytest.fixture
def tiny(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XAUDIT_THREADS", "1")  # the job's process: one torch thread, like the tests
    build_dataset("tiny", n=40, size=32, seed=1)
    return workspace


def watch(jid: str) -> list[JobState]:
    """Every distinct state the job's file shows, polled every 20 ms until it has ended."""
    seen: list[JobState] = []
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        state = read_job(jid)
        assert state is not None
        if not seen or (state.state, state.done, state.total) != (seen[-1].state, seen[-1].done, seen[-1].total):
            seen.append(state)
        if not state.active:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"job {jid} still {seen[-1].state} after {TIMEOUT_S} s")


def test_training_job_runs_in_its_own_process_and_saves_the_checkpoint(tiny: Path) -> None:
    queued = start("train", **TINY, epochs=2)
    assert queued.state == "queued" and queued.pid not in (None, os.getpid())
    assert queued.id == job_id("train", {**TINY, "epochs": 2}) == read_job(queued.id).id
    assert (tiny / "jobs" / f"{queued.id}.json").is_file()
    # the same job again while the first one is queued or running: refused in one line
    with pytest.raises(JobRunningError, match=r"^the same train job is already (queued|running)"):
        start("train", **TINY, epochs=2)

    seen = watch(queued.id)
    states = [s.state for s in seen]
    assert states[-1] == "done", seen[-1].error
    order = ["queued", "running", "done"]
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)  # never goes back
    assert "running" in states
    final = seen[-1]
    assert final.total > 0 and final.done == final.total and final.fraction == 1.0
    assert final.started is not None and final.finished is not None and final.finished >= final.started
    running = [s for s in seen if s.state == "running" and s.total]
    assert all(0 <= s.done <= s.total for s in running)
    assert [s.done for s in running] == sorted(s.done for s in running)  # one fit: progress only grows
    name = "tiny-vgg16-w0.125-none-all-s0"
    (saved,) = final.result["checkpoints"]
    assert saved["name"] == name
    with session_scope() as session:
        row = session.get(Checkpoint, saved["id"])
        assert row is not None and row.name == name and row.phase == "ft" and len(row.history) == 2
        assert Path(row.path).is_file()
    assert [j.id for j in list_jobs("train")] == [queued.id] and list_jobs("other") == []

    # once done, the same settings may run again (a new job under the same id)
    again = start("train", **TINY, epochs=2)
    assert again.id == queued.id and again.state == "queued"
    assert watch(again.id)[-1].state == "done"


@runner_only
def test_a_failing_job_ends_failed_with_the_error_line(tiny: Path) -> None:
    with pytest.raises(UnknownNameError) as direct:  # what the job will meet in its own process
        load_dataset("missing", split="train")
    job = start("train", **{**TINY, "dataset": "missing"}, epochs=1)
    final = watch(job.id)[-1]
    assert final.state == "failed" and final.error == str(direct.value)
    assert final.result is None and final.finished is not None
    assert list_jobs("train")[0].error == final.error


@runner_only
def test_a_killed_job_reads_back_failed(tiny: Path) -> None:
    job = start("train", **TINY, epochs=50)
    os.kill(job.pid, signal.SIGKILL)
    final = watch(job.id)[-1]
    assert final.state == "failed"
    assert final.error.startswith(f"the job's process (pid {job.pid}) ended before finishing (killed")
    assert final.error.endswith(f"its output is in {background.log_path(job.id)}")


@runner_only
def test_a_job_left_running_by_a_dead_process_is_failed_on_read(workspace: Path) -> None:
    """A dashboard that was restarted finds the file of a job whose process is gone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    jobs = workspace / "jobs"
    jobs.mkdir()
    params = {**TINY, "epochs": 3}
    state = JobState(id=job_id("train", params), kind="train", params=params, state="running", done=5, total=10,
                     pid=gone.pid, started=time.time())
    (jobs / f"{state.id}.json").write_text(json.dumps(state.__dict__))
    back = read_job(state.id)
    assert back.state == "failed" and back.done == 5 and back.finished is not None
    assert back.error.startswith(f"the job's process (pid {gone.pid}) ended before finishing (killed")
    assert json.loads((jobs / f"{state.id}.json").read_text())["state"] == "failed"  # stored so


@runner_only
def test_unknown_job_kind_names_the_kinds(workspace: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"^unknown background job 'nope'; jobs: train$"):
        start("nope")
    assert job_id("train", {"a": 1, "b": 2}) == job_id("train", {"b": 2, "a": 1}) != job_id("train", {"a": 1, "b": 3})
    assert not (workspace / "jobs").exists() or list_jobs() == []
