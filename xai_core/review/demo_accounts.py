"""The demo workspace's account passwords, kept so that an admin can see them on the Overview page.

Only the demo keeps passwords in the clear, in ``$XAUDIT_HOME/review/demo-accounts.json`` (mode
0600, written atomically). Once an account's password is changed through
:func:`xai_core.review.accounts.reset_password` its entry is dropped: a kept password is always one
that still works, and a changed one is never written anywhere.

A workspace built into a container image (``xaudit demo --image-build``) also holds a mark,
``review/demo-accounts.image-build``: its kept passwords are in every copy of the image, so the
container's first ``xaudit demo`` replaces them (:func:`xai_core.demo.replace_image_build_passwords`)
and then removes the mark.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from xai_core.config import home, workspace_dir

FILE = "demo-accounts.json"
IMAGE_MARK = "demo-accounts.image-build"  # the kept passwords were made at image build


@dataclass(frozen=True)
class DemoAccount:
    name: str
    role: str
    password: str


def credentials_path(workspace: Path | None = None) -> Path:
    """Where the demo's passwords are kept in ``workspace`` (default: the current one); the file may not exist."""
    return (workspace or home()) / "review" / FILE


def read_demo_accounts(workspace: Path | None = None) -> list[DemoAccount]:
    """The kept demo accounts of ``workspace`` (default: the current one); none when it has no such file."""
    path = credentials_path(workspace)
    if not path.is_file():
        return []
    return [DemoAccount(**entry) for entry in json.loads(path.read_text())["accounts"]]


def save_demo_accounts(accounts: list[DemoAccount]) -> Path:
    """Replace the file with ``accounts``: readable by the workspace's owner only (0600), never half-written."""
    folder = workspace_dir("review")
    fd, tmp = tempfile.mkstemp(prefix=f".{FILE}.", suffix=".tmp", dir=folder)  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"accounts": [asdict(a) for a in accounts]}, out, indent=1)
        os.replace(tmp, folder / FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return folder / FILE


def forget(name: str) -> None:
    """Drop ``name``'s kept password (its password was changed); nothing happens for other accounts."""
    kept = read_demo_accounts()
    if any(a.name == name for a in kept):
        save_demo_accounts([a for a in kept if a.name != name])


def image_mark_path(workspace: Path | None = None) -> Path:
    """The mark of passwords made at image build in ``workspace`` (default: the current one); may not exist."""
    return (workspace or home()) / "review" / IMAGE_MARK


def mark_image_build() -> Path:
    """Mark the current workspace's kept demo passwords as made at image build (shared by every
    container of the image): ``xaudit demo`` replaces them at a container's first start."""
    path = workspace_dir("review") / IMAGE_MARK
    path.write_text("the passwords in demo-accounts.json were made at image build; the container's first "
                    "`xaudit demo` replaces them and removes this file\n")
    return path


def clear_image_mark() -> None:
    """Remove the mark (the passwords made at image build were replaced); nothing happens without one."""
    image_mark_path().unlink(missing_ok=True)
