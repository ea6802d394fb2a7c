"""Shared fixtures: every test that touches the workspace gets its own, with a fresh engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db import reset_engines


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty workspace in a temporary folder, selected through XAUDIT_HOME."""
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("XAUDIT_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_engines()
    yield home
    reset_engines()


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread per test: tiny models on a 2-core CI box lose to OpenMP oversubscription."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
