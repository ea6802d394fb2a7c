"""``xaudit demo`` refuses what would fail late, before any build work: a dashboard port that is taken
and a workspace it cannot write (the Docker image with a read-only ``/data``). One ``error:`` line, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db import reset_engines
from xai_core.cli import run

XAUDIT = Path(sys.executable).with_name("xaudit")


@pytest.fixture
def taken_port() -> int:
    """A port on which a socket listens (on localhost only, as a second dashboard would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_taken_port_is_one_line_before_any_work(taken_port: int, tmp_path: Path) -> None:
    env = {**os.environ, "XAUDIT_HOME": str(tmp_path / "ws")}
    env.pop("DATABASE_URL", None)
    t0 = time.perf_counter()
    done = subprocess.run([str(XAUDIT), "demo", "--quick", "--port", str(taken_port)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"error: dashboard port {taken_port} is already in use (Address already in use); "
                           "stop what serves it or choose another port with --port\n")
    assert done.stdout == ""
    assert not (tmp_path / "ws").exists()  # refused before the build touched the workspace
    assert time.perf_counter() - t0 < 60  # process start and imports only, no build stage


def test_port_from_environment_is_checked_too(taken_port: int, workspace: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XAUDIT_PORT", str(taken_port))  # how the Docker image's CMD gets its port
    assert run(["demo", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: dashboard port {taken_port} is already in use") and err.count("\n") == 1
    assert list(workspace.iterdir()) == []


def test_unwritable_workspace_is_one_line(monkeypatch, capsys) -> None:
    """/proc refuses new folders even to root, as a read-only ``/data`` refuses them in the image."""
    monkeypatch.setenv("XAUDIT_HOME", "/proc/xaudit-demo-ws")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_engines()
    try:
        assert run(["demo", "--quick", "--no-serve"]) == 2
    finally:
        reset_engines()
    err = capsys.readouterr().err
    assert err == ("error: cannot create workspace folder /proc/xaudit-demo-ws (No such file or directory); "
                   "set XAUDIT_HOME to a writable directory "
                   "(Docker: mount a writable volume at /data, e.g. -v xaudit-data:/data)\n")
    assert not Path("/proc/xaudit-demo-ws").exists()
