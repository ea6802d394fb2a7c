"""Background jobs: work started from the dashboard runs in its own process, its state in a file.

A job kind is a function ``fn(progress, **params) -> JSON-able result`` registered with
:func:`register_job`. :func:`start` writes ``$XAUDIT_HOME/jobs/<id>.json`` (state ``queued``)
and starts ``python -m xai_core.background <id>``; that process marks the job ``running``,
records its progress in the file (at most once a second), and ends it ``done`` with the result
or ``failed`` with the error's one line (an unexpected error's traceback goes to
``jobs/<id>.log``). Every session reads the state back (:func:`read_job`, :func:`list_jobs`), so
a page reload, a second browser or a restarted dashboard sees the same job, and the dashboard
stays responsive while the job computes.

A job's id is its kind and a hash of its parameters: while one runs, an identical one is refused
(:class:`~xai_core.errors.JobRunningError`). A job whose process ended without reporting (killed,
out of memory, machine restarted) reads back as ``failed`` with a line saying so.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import models
from xai_core.config import configure_threads, home, workspace_dir
from xai_core.errors import JobRunningError, UnknownNameError, XAuditError
from xai_core.progress import Progress

JOBS_DIR = "jobs"
ACTIVE = ("queued", "running")
WRITE_EVERY_S = 1.0  # progress reaches the state file at most this often (and always at the end)

JobFunction = Callable[..., Any]
_KINDS: dict[str, JobFunction] = {}


def register_job(kind: str) -> Callable[[JobFunction], JobFunction]:
    """Decorator: make ``fn(progress, **params)`` startable in the background as ``kind``."""
    def decorate(fn: JobFunction) -> JobFunction:
        if kind in _KINDS:
            raise ValueError(f"job kind {kind!r} is registered twice")
        _KINDS[kind] = fn
        return fn
    return decorate


def get_job_kind(kind: str) -> JobFunction:
    """The registered function of ``kind``; :class:`UnknownNameError` naming the kinds otherwise."""
    if kind not in _KINDS:
        raise UnknownNameError(f"unknown background job {kind!r}; jobs: {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]


@dataclass
class JobState:
    """One job as its state file holds it."""

    id: str
    kind: str
    params: dict[str, Any]
    state: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    result: Any = None
    error: str = ""
    pid: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] (0 before the job reports a total)."""
        return min(1.0, self.done / self.total) if self.total else 0.0


def job_id(kind: str, params: dict[str, Any]) -> str:
    """``<kind>-<12 hex digits>``: the same kind and parameters always give the same id."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return f"{kind}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def jobs_dir() -> Path:
    return workspace_dir(JOBS_DIR)


def _state_path(jid: str) -> Path:
    return jobs_dir() / f"{jid}.json"


def log_path(jid: str) -> Path:
    """Where the job's process writes its output (and an unexpected error's traceback)."""
    return jobs_dir() / f"{jid}.log"


@contextmanager
def _locked() -> Iterator[None]:
    """The workspace's job lock: state changes are read-modify-write under it (across processes)."""
    with open(jobs_dir() / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_file(path: Path) -> JobState | None:
    try:
        return JobState(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError):
        return None  # missing, or not a job file


def _write(state: JobState) -> None:
    """Atomically replace the job's state file."""
    path = _state_path(state.id)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, path)


def _update(jid: str, **changes: Any) -> JobState | None:
    """Set ``changes`` on the stored state of ``jid`` (under the lock); None when it has no file."""
    with _locked():
        state = _read_file(_state_path(jid))
        if state is None:
            return None
        for key, value in changes.items():
            setattr(state, key, value)
        _write(state)
        return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process holds the pid
    return True


def _fail_if_gone(jid: str, pid: int, code: int | None = None) -> JobState | None:
    """Mark the job failed if it is still active under process ``pid``, which has ended without
    reporting (killed, out of memory, the machine restarted); the stored state."""
    with _locked():
        state = _read_file(_state_path(jid))
        if state is not None and state.active and state.pid == pid:
            exit_code = "" if code is None else f", exit code {code}"
            state.state, state.finished = "failed", time.time()
            state.error = (f"the job's process (pid {pid}) ended before finishing (killed, out of memory or the "
                           f"machine restarted{exit_code}); its output is in {log_path(jid)}")
            _write(state)
        return state


def _settle(state: JobState) -> JobState:
    """A job that says it is active but whose process is gone is failed (and stored so)."""
    if state.active and state.pid is not None and not _alive(state.pid):
        return _fail_if_gone(state.id, state.pid) or state
    return state


def read_job(jid: str) -> JobState | None:
    """The state of job ``jid`` in this workspace, or None when it was never started here."""
    state = _read_file(_state_path(jid))
    return None if state is None else _settle(state)


def list_jobs(kind: str | None = None) -> list[JobState]:
    """The workspace's jobs (of ``kind``, or all), most recently created first."""
    folder = home() / JOBS_DIR
    if not folder.is_dir():
        return []
    states = [s for s in (_read_file(p) for p in folder.glob("*.json")) if s is not None]
    return sorted((_settle(s) for s in states if kind is None or s.kind == kind),
                  key=lambda s: s.created, reverse=True)


def _reap(proc: subprocess.Popen, jid: str) -> None:
    """Wait for the job's process (no zombie left behind); if it exited without ending the job,
    the job failed."""
    _fail_if_gone(jid, proc.pid, proc.wait())


def start(kind: str, **params: Any) -> JobState:
    """Start job ``kind`` with ``params`` (JSON values) in its own process and return its state
    (``queued``). :class:`JobRunningError` while an identical job is queued or running."""
    get_job_kind(kind)
    jid = job_id(kind, params)
    with _locked():
        current = _read_file(_state_path(jid))
        if current is not None and current.active and (current.pid is None or _alive(current.pid)):
            since = time.strftime("%H:%M:%S", time.localtime(current.started or current.created))
            raise JobRunningError(f"the same {kind} job is already {current.state} (since {since}, "
                                  f"{current.done}/{current.total} {current.message}); wait for it to finish "
                                  "or change a setting")
        state = JobState(id=jid, kind=kind, params=params)
        _write(state)
        with open(log_path(jid), "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "xai_core.background", jid], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env={**os.environ, "XAUDIT_HOME": str(home())}, start_new_session=True,
            )
        state.pid = proc.pid
        _write(state)  # the child sets the same pid when it starts running: order does not matter
    threading.Thread(target=_reap, args=(proc, jid), name=f"reap-{jid}", daemon=True).start()
    return state


class _StateProgress:
    """A progress callback that records the job's progress in its state file (≤ 1 write/s)."""

    def __init__(self, jid: str) -> None:
        self.jid, self._last = jid, 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= WRITE_EVERY_S or done >= total:
            self._last = now
            _update(self.jid, done=int(done), total=int(total), message=str(message)[:200])


def run_job(jid: str) -> int:
    """Run job ``jid`` in this process (what ``python -m xai_core.background <id>`` does): 0 when
    it is done, 1 when it failed (the state file says why)."""
    state = _read_file(_state_path(jid))
    if state is None:
        print(f"no job {jid} in {jobs_dir()}", file=sys.stderr)
        return 1
    _update(jid, state="running", pid=os.getpid(), started=time.time(), message="starting")
    try:
        configure_threads()
        fn = get_job_kind(state.kind)
        result = fn(progress=_StateProgress(jid), **state.params)
    except XAuditError as exc:
        _update(jid, state="failed", error=str(exc), finished=time.time())
        return 1
    except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason
        traceback.print_exc()
        _update(jid, state="failed", finished=time.time(),
                error=f"{type(exc).__name__}: {exc} (traceback in {log_path(jid)})")
        return 1
    reported = _read_file(_state_path(jid))
    total = reported.total if reported is not None else 0
    _update(jid, state="done", result=result, done=total, finished=time.time(), message="done")
    return 0


# The jobs the dashboard starts ---------------------------------------------------------------


@register_job("train")
def train_job(progress: Progress, **params: Any) -> dict[str, Any]:
    """:func:`models.train` with the Models page's settings; the saved checkpoints' ids and names."""
    infos = models.train(progress=progress, **params)
    return {"checkpoints": [{"id": int(info.id), "name": str(info.name)} for info in infos]}


if __name__ == "__main__":  # the job's process; the module's own name holds the registered kinds
    from xai_core import background

    sys.exit(background.run_job(sys.argv[1]))
