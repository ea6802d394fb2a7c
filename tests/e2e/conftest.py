"""A quick demo workspace served by the real dashboard (``python -m ui.launch``) on a free localhost port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.walk import demo_admin
from ui.server import CHROMIUM, CHROMIUM_ARGS, free_port, start_dashboard, stop, wait_healthy
from xai_core.review.demo_accounts import DemoAccount

REPO = Path(__file__).resolve().parents[2]
XAUDIT = Path(sys.executable).with_name("xaudit")
ARTIFACTS = REPO / "tests" / "e2e" / "artifacts"


@pytest.fixture(scope="session")
def quick_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``xaudit demo --quick --no-serve`` into a fresh workspace (the same command users run).

    ``XAUDIT_E2E_WORKSPACE`` names a workspace to build into (or reuse) instead of a temporary one."""
    home = Path(os.environ.get("XAUDIT_E2E_WORKSPACE") or tmp_path_factory.mktemp("quick-demo"))
    env = {**os.environ, "XAUDIT_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([str(XAUDIT), "demo", "--quick", "--no-serve"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return home


@pytest.fixture(scope="session")
def admin(quick_workspace: Path) -> DemoAccount:
    """The quick workspace's demo admin (its pages ask for a sign-in on every full page load)."""
    account = demo_admin(quick_workspace)
    assert account is not None, "the demo build kept no admin password in review/demo-accounts.json"
    return account


def _serve(home: Path) -> Iterator[str]:
    """A dashboard of ``home`` on a free localhost port, stopped afterwards; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_dashboard(home, port, address="127.0.0.1", quiet=True)
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def server(quick_workspace: Path) -> Iterator[str]:
    """The dashboard of the quick workspace, shared by the tests; yields its base URL."""
    yield from _serve(quick_workspace)


@pytest.fixture
def fresh_server(quick_workspace: Path) -> Iterator[str]:
    """A new dashboard of the quick workspace that no browser has opened yet (only its health
    check was asked); yields its base URL."""
    yield from _serve(quick_workspace)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), "Debian chromium missing: run scripts/ensure_chromium.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()
