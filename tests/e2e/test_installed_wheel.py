"""The installed package serves the dashboard (issue 10, part 1): the wheel built from this checkout,
installed without dependencies into a temporary target outside it and started from another folder as
``xaudit demo --quick --port P`` (what the Docker image does), answers its health check and renders every
page in Chromium; SIGTERM stops it with its dashboard process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.e2e.walk import PAGES, demo_admin, stored_precision_means, walk
from ui.server import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# not part of a source tree: environments, workspaces, build output, caches
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "workspace*", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", "artifacts", "out")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of a copy of the checkout (the build writes into
    its source tree, so a copy keeps the checkout clean)."""
    root = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, root / "src", ignore=NOT_SOURCE)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(root / "dist"), str(root / "src")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = (root / "dist").glob("xaudit-*.whl")
    return path


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    """The wheel installed with ``pip install --no-deps --target`` (dependencies come from the venv)."""
    target = wheel.parent.parent / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def _repo_files(folder: str, pattern: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in (REPO / folder).glob(pattern)}


def test_wheel_holds_the_dashboard_and_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    views = _repo_files("ui/views", "*.py")
    migrations = _repo_files("db/migrations", "*.py") | _repo_files("db/migrations/versions", "*.py")
    assert {"ui/app.py", "ui/launch.py", "db/migrations/script.py.mako"} <= names
    assert len(views) == 9 and views <= names  # overview, data, models, explain, benchmark, drift, review, results, admin
    assert any("/versions/" in m for m in migrations) and migrations <= names
    assert {n for n in names if n.startswith("ui/views/")} == views  # nothing else, nothing stale


def test_installed_package_reads_its_study_presets(wheel: Path, site: Path, tmp_path: Path) -> None:
    """The presets (studies/ links to xai_core/studies) are package data: the installed demo, run from
    another folder, reads its own demo.yaml."""
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = _repo_files("xai_core", "studies/*.yaml")
    assert "xai_core/studies/demo.yaml" in presets and presets <= names
    assert (REPO / "studies").is_symlink()  # the user-facing folder is not a second copy
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    env.update(PYTHONPATH=str(site), XAUDIT_HOME=str(tmp_path / "ws"))
    done = subprocess.run(
        [sys.executable, "-c", "from xai_core import demo; s = demo.settings_for(quick=True); "
         "print(demo.demo_study_file(), s.dataset, s.drift_study.dataset)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path, mri, drift = done.stdout.split()
    assert Path(path) == site / "xai_core" / "studies" / "demo.yaml" and (mri, drift) == ("mri-lesions", "five-lesions")


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def _wait_for(ok, what: str, timeout_s: float, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout_s
    while not ok():
        assert time.time() < deadline, f"{what} within {timeout_s} s; output:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


def test_installed_wheel_serves_every_page(site: Path, quick_workspace: Path, tmp_path: Path, page) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "ws"  # a copy: the demo resumes it (stored stages are skipped) and rewrites its report
    shutil.copytree(quick_workspace, home, ignore=shutil.ignore_patterns("*.tmp*"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL", "XAUDIT_PORT")}
    env.update(PYTHONPATH=str(site), XAUDIT_HOME=str(home))

    where = subprocess.run(
        [sys.executable, "-c", "import db, models, ui.launch, xai_core; "
         "print(ui.launch.APP, db.__file__, models.__file__, xai_core.__file__, sep='\\n')"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    app, *modules = where.stdout.split()
    assert Path(app) == site / "ui" / "app.py" and Path(app).is_file()  # the checkout is not what runs
    assert all(Path(m).is_relative_to(site) for m in modules), modules

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(site / "bin" / "xaudit"), "demo", "--quick", "--port", str(port)], cwd=elsewhere,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    servers: list[int] = []
    try:
        _wait_for(lambda: _healthy(url) or proc.poll() is not None, "the dashboard answers", 180, log)
        assert proc.poll() is None, log.read_text()[-3000:]
        _wait_for(lambda: "demo workspace complete" in log.read_text(), "the resumed build finishes", 300, log)
        assert f"dashboard: http://localhost:{port}  (workspace {home})" in log.read_text()
        assert "demo accounts exist: demo-admin (admin)" in log.read_text()  # passwords were printed by the first build only

        titles = walk(page, url, stored_precision_means(home / "reports" / "demo" / "benchmark.csv"), demo_admin(home))
        assert list(titles) == list(PAGES) and all(titles[p].startswith(start) for p, start in PAGES.items())

        servers = _children(proc.pid)
        assert len(servers) == 1  # the dashboard (python -m ui.launch)
        proc.send_signal(signal.SIGTERM)  # what docker stop sends
        assert proc.wait(timeout=30) == 0
        assert all(_gone(pid) for pid in servers), servers
        assert not _healthy(url)
    finally:
        for pid in [*servers, proc.pid]:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
