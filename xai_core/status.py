"""Stage-by-stage build status of a workspace, kept in ``$XAUDIT_HOME/build_status.json``.

The demo build writes it as it goes; the Overview page reads it to show progress while the
dashboard is already being served.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xai_core.config import home, workspace_dir

STATUS_FILE = "build_status.json"


@dataclass
class StageStatus:
    name: str
    title: str
    state: str = "pending"  # pending | running | done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    started: float | None = None
    seconds: float | None = None


@dataclass
class BuildStatus:
    preset: str
    settings: dict[str, Any]
    stages: list[StageStatus] = field(default_factory=list)
    finished: bool = False

    def stage(self, name: str) -> StageStatus:
        return next(s for s in self.stages if s.name == name)


def status_path() -> Path:
    return home() / STATUS_FILE


def write_status(status: BuildStatus) -> None:
    """Atomically replace the status file."""
    path = workspace_dir() / STATUS_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(status), indent=1))
    os.replace(tmp, path)


def read_status() -> BuildStatus | None:
    """The workspace's build status, or None when no build was started here."""
    path = status_path()
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    stages = [StageStatus(**s) for s in raw.pop("stages", [])]
    return BuildStatus(stages=stages, **raw)


class StageTracker:
    """A progress callback that records one stage's progress in the status file (≤ 1 write/s)."""

    def __init__(self, status: BuildStatus, name: str) -> None:
        self.status, self.stage = status, status.stage(name)
        self._last = 0.0

    def start(self) -> None:
        self.stage.state, self.stage.started = "running", time.time()
        self.stage.message = ""
        write_status(self.status)

    def __call__(self, done: int, total: int, message: str) -> None:
        self.stage.done, self.stage.total, self.stage.message = done, total, message
        now = time.time()
        if now - self._last >= 1.0 or done >= total:
            self._last = now
            write_status(self.status)

    def finish(self, state: str = "done", message: str = "") -> None:
        self.stage.state = state
        self.stage.seconds = round(time.time() - (self.stage.started or time.time()), 2)
        if message:
            self.stage.message = message
        write_status(self.status)
