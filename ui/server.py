"""Start the packaged dashboard (``ui/app.py``) for a workspace and wait until it answers (CLI, e2e test, bench)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from xai_core.errors import ConfigError

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/ensure_chromium.sh); Playwright drives it
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_port_free(port: int) -> None:
    """ConfigError (one line naming the port and ``--port``) when something already listens on
    ``port``: checked before a long build, so the dashboard does not fail to start at its end."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Streamlit binds: TIME_WAIT is no conflict
        try:
            s.bind(("", port))
        except OSError as exc:
            raise ConfigError(
                f"dashboard port {port} is already in use ({exc.strerror}); stop what serves it "
                f"or choose another port with --port"
            ) from None


def start_dashboard(home: Path, port: int = 8501, address: str | None = None, quiet: bool = False) -> subprocess.Popen:
    """The dashboard (via :mod:`ui.launch`) on ``port`` serving ``home``, in the background."""
    cmd = [sys.executable, "-m", "ui.launch", "--server.port", str(port), "--server.headless", "true"]
    if address:
        cmd += ["--server.address", address]
    env = {**os.environ, "XAUDIT_HOME": str(home)}
    out = subprocess.PIPE if quiet else None
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if quiet else None)


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    """Return once ``url/_stcore/health`` says ok; RuntimeError (with the server's output) if the
    process exits or ``timeout_s`` passes first."""
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.terminate()
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"streamlit did not come up on {url}: {out[-2000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server, killing it after 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
