"""Shared fixtures: every test that touches the workspace gets its own, with a fresh engine.

``workspace`` uses SQLite in the workspace by default; a test marked ``@on_both_backends``
(tests/postgres.py) runs twice, the second time with ``DATABASE_URL`` naming a fresh database on a
throw-away PostgreSQL server that is started once per session (only when a test asks for it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from db import reset_engines
from tests.postgres import PgCluster, start_cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server on 127.0.0.1 at a free port, in a temporary folder; stopped and removed
    at the end of the session, whatever happened."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a new empty database on the session's server, dropped after the test."""
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    reset_engines()
    pg_cluster.drop_database(name)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` unless a test is parametrized over backends (``@on_both_backends``)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
              backend: str) -> Iterator[Path]:
    """An empty workspace in a temporary folder, selected through XAUDIT_HOME; its database is
    the workspace's SQLite file or, for ``backend == "postgresql"``, a fresh PostgreSQL database."""
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("XAUDIT_HOME", str(home))
    if backend == "postgresql":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_engines()
    yield home
    reset_engines()


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread per test: tiny models on a 2-core CI box lose to OpenMP oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its lowest cost in tests (the product's default costs ~50 ms a hash by design)."""
    from argon2 import PasswordHasher

    from xai_core.review import accounts

    monkeypatch.setattr(accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
