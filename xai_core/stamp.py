"""Change stamps: what a cached read of the workspace's tables is keyed on.

A dashboard cache (``st.cache_data``) keyed on :func:`change_stamp` of the tables it reads is
recomputed when a job adds or removes rows in them, or when the workspace (``XAUDIT_HOME``) or
the database (``DATABASE_URL``) is another one, and served from the cache otherwise.
"""

from __future__ import annotations

from sqlalchemy import func, select

from db import Base, session_scope
from xai_core.config import database_url, home

TableStamp = tuple[str, int, int]  # (table, row count, largest id; 0 when empty)


def change_stamp(*tables: str) -> tuple[str, str, tuple[TableStamp, ...]]:
    """``(workspace folder, database URL, ((table, rows, max id), ...))`` for ``tables`` (names
    in :mod:`db.tables`), read in one query. Every job inserts rows (new ids) or deletes them
    (fewer rows), so the stamp changes whenever a table's content does; no tables: the workspace
    identity alone (for caches that read files, not rows)."""
    known = Base.metadata.tables
    unknown = [t for t in tables if t not in known]
    if unknown:
        raise ValueError(f"no table {unknown[0]!r}; tables: {', '.join(sorted(known))}")
    columns = []
    for name in tables:
        table = known[name]
        columns += [select(func.count()).select_from(table).scalar_subquery(),
                    select(func.coalesce(func.max(table.c.id), 0)).scalar_subquery()]
    values: tuple = ()
    if columns:
        with session_scope() as session:
            values = tuple(session.execute(select(*columns)).one())
    stamps = tuple((name, int(values[2 * i]), int(values[2 * i + 1])) for i, name in enumerate(tables))
    return str(home()), database_url(), stamps


def stamp_rows(stamp: tuple[str, str, tuple[TableStamp, ...]], table: str) -> int:
    """Rows of ``table`` when ``stamp`` (a :func:`change_stamp` naming it) was taken: a page's
    "is there anything yet" check without a second query."""
    for name, rows, _ in stamp[2]:
        if name == table:
            return rows
    raise ValueError(f"the stamp has no table {table!r}; it covers {', '.join(t for t, _, _ in stamp[2])}")
