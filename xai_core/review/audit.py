"""The audit log: who did what when (logins, account and study changes, ratings, refusals)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db import AuditEvent, session_scope

OK, FAILED, REFUSED = "ok", "failed", "refused"
_INSERT = insert(AuditEvent)


def record(session: Session, actor: str, action: str, outcome: str = OK, target: str = "",
           **detail: Any) -> None:
    """Add one audit event to ``session``'s transaction (it is stored with the change it describes).
    A plain INSERT, not an ORM object: flushing one cost more than the rating it records."""
    session.connection().execute(_INSERT, {"actor": actor[:100], "action": action, "outcome": outcome,
                                           "target": target[:300], "detail": detail})


def record_now(actor: str, action: str, outcome: str = OK, target: str = "", **detail: Any) -> None:
    """Store one audit event in its own transaction (refusals and failures, whose change is rolled back)."""
    with session_scope() as session:
        record(session, actor, action, outcome, target, **detail)


def audit_frame(limit: int = 500, action: str | None = None, actor: str | None = None) -> pd.DataFrame:
    """The newest ``limit`` events (optionally of one ``action`` and/or one ``actor``; ``""`` is the
    local single-user dashboard or shell), newest first. Callers check the role."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    with session_scope() as session:
        rows = [{"at": e.at, "actor": e.actor, "action": e.action, "outcome": e.outcome, "target": e.target,
                 "detail": e.detail} for e in session.scalars(query)]
    return pd.DataFrame(rows, columns=["at", "actor", "action", "outcome", "target", "detail"])


def audit_facets() -> tuple[list[str], list[str]]:
    """The distinct actions and actors in the log, sorted: what the Admin page's filters offer."""
    with session_scope() as session:
        actions = session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)).all()
        actors = session.scalars(select(AuditEvent.actor).distinct().order_by(AuditEvent.actor)).all()
    return list(actions), list(actors)
