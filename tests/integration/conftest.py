"""Integration tests touch the database: each one that uses ``workspace`` runs on SQLite and on
the session's throw-away PostgreSQL server (``backend`` overrides the default SQLite-only one)."""

from __future__ import annotations

import pytest

from tests.postgres import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
