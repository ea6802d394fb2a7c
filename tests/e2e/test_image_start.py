"""The Docker image's demo passwords, without Docker: a copy of the quick demo workspace is built as
the image's (``xaudit demo --quick --image-build``, the Dockerfile's step: no password printed, the
workspace marked), then started as the container's command would (``xaudit demo --quick``, here with
``--no-serve``): it prints new passwords, keeps them, and the image's no longer sign in; a second
start replaces nothing. No browser: it shares the e2e tests' quick workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from db import reset_engines
from xai_core.errors import AuthError
from xai_core.review import accounts
from xai_core.review.demo_accounts import DemoAccount, image_mark_path, read_demo_accounts

REPO = Path(__file__).resolve().parents[2]
XAUDIT = Path(sys.executable).with_name("xaudit")


def _demo(home: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``xaudit demo --quick FLAGS`` on workspace ``home`` (SQLite), exit status 0 asserted."""
    env = {**os.environ, "XAUDIT_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([str(XAUDIT), "demo", "--quick", *flags], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _printed(out: str) -> list[list[str]]:
    """The account lines ``xaudit demo`` printed: name, role, password."""
    return [line.split() for line in out.splitlines() if line.startswith("  ")]


def _signs_in(home: Path, account: DemoAccount, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setenv("XAUDIT_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_engines()
    try:
        accounts.authenticate(account.name, account.password)
        return True
    except AuthError:
        return False
    finally:
        reset_engines()


def test_first_start_of_an_image_workspace_replaces_its_demo_passwords(
        quick_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"  # a copy: the shared workspace's passwords stay what the other e2e tests sign in with
    shutil.copytree(quick_workspace, home, ignore=shutil.ignore_patterns("*.tmp*"))
    built = read_demo_accounts(home)
    assert [a.name for a in built] == ["demo-admin", "reader-1", "reader-2"]

    image = _demo(home, "--image-build")
    assert "demo accounts made at image build; their passwords are not printed" in image.stdout
    assert _printed(image.stdout) == [] and not any(a.password in image.stdout + image.stderr for a in built)
    assert image_mark_path(home).is_file() and read_demo_accounts(home) == built

    first = _demo(home, "--no-serve")
    assert "the demo passwords made at image build no longer work; this workspace has its own:" in first.stdout
    new = read_demo_accounts(home)
    assert _printed(first.stdout) == [[a.name, a.role, a.password] for a in new]
    assert [(a.name, a.role) for a in new] == [(a.name, a.role) for a in built]
    assert not {a.password for a in new} & {a.password for a in built}
    assert not image_mark_path(home).exists()
    assert all(_signs_in(home, a, monkeypatch) for a in new)
    assert not any(_signs_in(home, a, monkeypatch) for a in built)

    second = _demo(home, "--no-serve")
    assert "demo accounts exist: demo-admin (admin), reader-1 (reviewer), reader-2 (reviewer)" in second.stdout
    assert _printed(second.stdout) == [] and read_demo_accounts(home) == new
