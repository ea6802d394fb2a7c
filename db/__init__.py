"""Persistence: SQLAlchemy models, sessions and Alembic migrations."""

from db.tables import (
    AttributionMap,
    Base,
    Checkpoint,
    Dataset,
    DriftMetric,
    GroundTruthMetric,
    Prediction,
    Sample,
)
from db.session import get_engine, reset_engines, session_scope

__all__ = [
    "AttributionMap",
    "Base",
    "Checkpoint",
    "Dataset",
    "DriftMetric",
    "GroundTruthMetric",
    "Prediction",
    "Sample",
    "get_engine",
    "reset_engines",
    "session_scope",
]
