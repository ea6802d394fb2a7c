"""Engine and sessions: SQLite in the workspace (WAL, foreign keys) or ``$DATABASE_URL`` (PostgreSQL).

The schema is always brought to the newest Alembic revision before first use, so a user's
existing database is migrated, never recreated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from xai_core.config import database_url
from xai_core.errors import ConfigError, WorkspaceError

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


CONNECT_TIMEOUT_S = 5  # a server that is down or unreachable fails fast, not after minutes


def parse_url(url: str) -> URL:
    """``url`` parsed, or a ConfigError saying what a database URL looks like."""
    try:
        return make_url(url)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL; use postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            "or unset it to use SQLite in the workspace"
        ) from None


def _connect_args(parsed: URL) -> dict[str, Any]:
    if parsed.get_backend_name() == "sqlite":
        return {"timeout": 30}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def _reason(exc: DBAPIError) -> str:
    """The driver's first line without the connection preamble and severity prefix."""
    lines = str(exc.orig).strip().splitlines() or ["unknown error"]
    first = lines[0].split(" failed: ", 1)[-1].strip()
    return first.removeprefix("FATAL:").strip()


def open_error(parsed: URL, exc: DBAPIError) -> WorkspaceError:
    """One line saying why the database cannot be opened and how to fix it (never the password)."""
    reason = _reason(exc)
    low = reason.lower()
    if parsed.get_backend_name() == "sqlite":
        message = (f"cannot open the database at {parsed.database} ({reason}); "
                   "check XAUDIT_HOME is writable or DATABASE_URL is reachable")
    else:
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        user = parsed.username or "(default user)"
        if "database" in low and "does not exist" in low:
            message = (f"database {parsed.database!r} does not exist on the PostgreSQL server at {where}; "
                       f"create it (createdb {parsed.database}) or fix the database name in DATABASE_URL")
        elif "role" in low and "does not exist" in low:
            message = (f"the PostgreSQL server at {where} has no user {user!r}; "
                       "create it (createuser) or fix the user name in DATABASE_URL")
        elif "password" in low:
            message = (f"the PostgreSQL server at {where} refused user {user!r} ({reason}); "
                       "fix the user name and password in DATABASE_URL")
        elif "permission denied" in low:
            message = (f"user {user!r} may not create xaudit's tables in database {parsed.database!r} at {where} "
                       f"({reason}); use the database's owner in DATABASE_URL or grant CREATE on schema public")
        else:
            message = (f"cannot reach the PostgreSQL server at {where} ({reason}); "
                       "start the server or fix the host and port in DATABASE_URL")
    if parsed.password:
        message = message.replace(str(parsed.password), "***")
    return WorkspaceError(message)


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` with the SQLite pragmas installed and the schema migrated.

    User errors (server down, unknown database, wrong password, unwritable file) raise a
    WorkspaceError of one line; the password never appears in it."""
    parsed = parse_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    try:
        engine = create_engine(parsed, connect_args=_connect_args(parsed), pool_pre_ping=not is_sqlite)
    except (ArgumentError, NoSuchModuleError):
        raise ConfigError(
            f"DATABASE_URL names an unsupported database ({parsed.drivername}); "
            "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE or unset it to use SQLite"
        ) from None
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        connection = engine.connect()
    except OperationalError as exc:
        engine.dispose()
        raise open_error(parsed, exc) from None
    try:
        with connection.begin():
            cfg = alembic_config(parsed.render_as_string(hide_password=False))
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except (OperationalError, ProgrammingError) as exc:
        connection.close()
        engine.dispose()
        if is_sqlite or "permission denied" in str(exc.orig).lower():  # read-only file, no CREATE right
            raise open_error(parsed, exc) from None
        raise
    connection.close()
    return engine


_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def get_engine() -> Engine:
    """The engine of the current workspace (one per URL, made and migrated on first use)."""
    url = database_url()
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = make_engine(url)
    return engine


# One session factory for every engine (the engine is bound per session): ``sessionmaker()`` makes a
# new Session subclass each time, and setting up that class's events cost ~0.3 ms per transaction.
_SESSIONS = sessionmaker(expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    session = _SESSIONS(bind=get_engine())
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engines() -> None:
    """Close and forget the cached engines (tests switch XAUDIT_HOME or DATABASE_URL)."""
    with _LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()

