"""Persistence: SQLAlchemy models, sessions and Alembic migrations."""

from db.tables import (
    AttributionMap,
    AuditEvent,
    AuthSession,
    Base,
    Checkpoint,
    Dataset,
    DriftMetric,
    GroundTruthMetric,
    LoginThrottle,
    Prediction,
    ReviewAssignment,
    ReviewCase,
    ReviewRating,
    ReviewStudy,
    Sample,
    User,
)
from db.session import get_engine, reset_engines, session_scope

__all__ = [
    "AttributionMap",
    "AuditEvent",
    "AuthSession",
    "Base",
    "Checkpoint",
    "Dataset",
    "DriftMetric",
    "GroundTruthMetric",
    "LoginThrottle",
    "Prediction",
    "ReviewAssignment",
    "ReviewCase",
    "ReviewRating",
    "ReviewStudy",
    "Sample",
    "User",
    "get_engine",
    "reset_engines",
    "session_scope",
]
