"""The database tables (SQLAlchemy 2.0 typed ORM classes). Every schema change ships with an Alembic migration."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def _now() -> datetime:
    return datetime.now(timezone.utc)


def column_limit(column: Any) -> int:
    """The declared length of a ``String`` column: PostgreSQL refuses longer values (SQLite would
    store them), so user-supplied names are checked against it before anything is written."""
    return int(column.property.columns[0].type.length)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    """A benchmark built by the generator or a folder of the user's own labelled images."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # "synthetic" | "imported"
    root: Mapped[str] = mapped_column(String(1000))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    class_names: Mapped[list[Any]] = mapped_column(default=list)
    image_size: Mapped[int] = mapped_column(Integer)
    n_samples: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    samples: Mapped[list["Sample"]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="Sample.id"
    )


class Sample(Base):
    """One image of a dataset, its label, split and (when known) lesion mask."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("dataset_id", "sample_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(200))
    split: Mapped[str] = mapped_column(String(10), index=True)
    label: Mapped[int] = mapped_column(Integer)
    image_path: Mapped[str] = mapped_column(String(1000))
    mask_path: Mapped[Optional[str]] = mapped_column(String(1000), nullable=True)
    lesion_area: Mapped[int] = mapped_column(Integer, default=0)
    n_lesions: Mapped[int] = mapped_column(Integer, default=0)

    dataset: Mapped[Dataset] = relationship(back_populates="samples")


class Checkpoint(Base):
    """A trained network: its architecture, pre-training, fine-tuning degree, phase and lineage."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    arch: Mapped[str] = mapped_column(String(50), index=True)
    width: Mapped[float] = mapped_column(Float, default=1.0)
    num_classes: Mapped[int] = mapped_column(Integer)
    in_chans: Mapped[int] = mapped_column(Integer, default=1)
    input_size: Mapped[int] = mapped_column(Integer)
    pretrain: Mapped[str] = mapped_column(String(50), index=True)  # imagenet | natural | mri | none | external
    degree: Mapped[Optional[str]] = mapped_column(String(10), nullable=True)  # tl 1conv .. all
    phase: Mapped[str] = mapped_column(String(10), index=True)  # pretrain | tl | ft | epoch | external
    epoch: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    parent_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL"), nullable=True
    )
    dataset_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True
    )
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    history: Mapped[list[Any]] = mapped_column(default=list)
    train_time_s: Mapped[float] = mapped_column(Float, default=0.0)
    device: Mapped[str] = mapped_column(String(20), default="cpu")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    parent: Mapped[Optional["Checkpoint"]] = relationship(remote_side=[id])


class Prediction(Base):
    """A checkpoint's prediction on one sample (selects correct samples and true positives)."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("checkpoint_id", "sample_pk"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    pred: Mapped[int] = mapped_column(Integer)
    prob: Mapped[float] = mapped_column(Float)
    correct: Mapped[bool] = mapped_column(Boolean)


class AttributionMap(Base):
    """Index of one stored attribution map: (checkpoint sha256, method, parameter hash, sample)."""

    __tablename__ = "attribution_maps"
    __table_args__ = (UniqueConstraint("checkpoint_id", "method", "params_hash", "sample_pk"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(50), index=True)
    params_hash: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    target: Mapped[int] = mapped_column(Integer)
    store_path: Mapped[str] = mapped_column(String(1000))  # chunk file, relative to the workspace
    store_index: Mapped[int] = mapped_column(Integer)  # row inside the chunk
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # compute time per map
    device: Mapped[str] = mapped_column(String(20), default="cpu")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class GroundTruthMetric(Base):
    """One ground-truth metric value of one map against its sample's lesion mask.

    Long form: one row per (checkpoint, method, params hash, sample, metric), so a newly registered
    metric (``xai_core.metrics.registry``) needs no schema change; queries pivot to one column per metric.
    """

    __tablename__ = "gt_metrics"
    __table_args__ = (UniqueConstraint("checkpoint_id", "method", "params_hash", "sample_pk", "metric"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(50), index=True)  # also the chance maps baseline_random, baseline_sobel
    params_hash: Mapped[str] = mapped_column(String(64))
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(50))  # a registered ground-truth metric's name
    value: Mapped[float] = mapped_column(Float)
    selection: Mapped[str] = mapped_column(String(12))  # correct | all | incorrect
    correct: Mapped[bool] = mapped_column(Boolean)  # the checkpoint classified the sample correctly
    constant_map: Mapped[bool] = mapped_column(Boolean, default=False)  # the map is the same at every pixel


class DriftMetric(Base):
    """One drift metric value between two maps of the same sample: checkpoint A (e.g. TL) with
    (method A, params hash A) against checkpoint B (e.g. FT) with (method B, params hash B).

    Long form like :class:`GroundTruthMetric`; a same-method comparison has method A = method B.
    """

    __tablename__ = "drift_metrics"
    __table_args__ = (
        UniqueConstraint("checkpoint_a_id", "checkpoint_b_id", "method_a", "params_hash_a", "method_b",
                         "params_hash_b", "sample_pk", "metric"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_a_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    checkpoint_b_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    method_a: Mapped[str] = mapped_column(String(50), index=True)
    params_hash_a: Mapped[str] = mapped_column(String(64))
    method_b: Mapped[str] = mapped_column(String(50))
    params_hash_b: Mapped[str] = mapped_column(String(64))
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(50))  # a registered drift metric's name
    value: Mapped[float] = mapped_column(Float)
    selection: Mapped[str] = mapped_column(String(20))  # true_positive | all


# ------------------------------------------------------------------------------------------
# review studies (issue 12): accounts, sessions, audit log, blinded reading studies, ratings
# ------------------------------------------------------------------------------------------
class User(Base):
    """A dashboard account. Only an argon2 hash of the password is stored."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # admin | reviewer
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class LoginThrottle(Base):
    """Failed logins per account name (known or not), and until when the next try is refused."""

    __tablename__ = "login_throttle"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)


class AuthSession(Base):
    """A login: the SHA-256 of its random token (the token itself is never stored), revoked at logout."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEvent(Base):
    """Who did what when: logins, account and study changes, ratings, refused requests."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    actor: Mapped[str] = mapped_column(String(100))  # account name ("" for the single-user dashboard)
    action: Mapped[str] = mapped_column(String(50), index=True)
    outcome: Mapped[str] = mapped_column(String(10))  # ok | failed | refused
    target: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReviewStudy(Base):
    """A blinded reading study: its settings and whether it is open for ratings."""

    __tablename__ = "review_studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | closed
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ReviewCase(Base):
    """One map to rate, behind an opaque key. Method, checkpoint and catch status are the
    unblinding key: only admin functions read them."""

    __tablename__ = "review_cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("review_studies.id", ondelete="CASCADE"), index=True)
    case_key: Mapped[str] = mapped_column(String(32), unique=True)
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="RESTRICT"), index=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="RESTRICT"), index=True)
    method: Mapped[str] = mapped_column(String(50))  # a registered method, or a chance map for catch trials
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_catch: Mapped[bool] = mapped_column(Boolean, default=False)


class ReviewAssignment(Base):
    """A case in one reviewer's randomised queue, at ``position``."""

    __tablename__ = "review_assignments"
    __table_args__ = (UniqueConstraint("study_id", "reviewer_id", "case_id"),
                      UniqueConstraint("study_id", "reviewer_id", "position"))

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("review_studies.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("review_cases.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)


class ReviewRating(Base):
    """A reviewer's rating of one case; the unique key makes a retried or doubled submission one row."""

    __tablename__ = "review_ratings"
    __table_args__ = (UniqueConstraint("study_id", "reviewer_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("review_studies.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("review_cases.id", ondelete="CASCADE"))
    evidence_match: Mapped[int] = mapped_column(Integer)  # 1..5
    plausible: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(String(2000), default="")
    point_x: Mapped[Optional[float]] = mapped_column(Float, nullable=True)  # image column of the click
    point_y: Mapped[Optional[float]] = mapped_column(Float, nullable=True)  # image row of the click
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SweepRun(Base):
    """One ``xaudit sweep`` run: the study, the executor, its state and the planned task counts."""

    __tablename__ = "sweep_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    study: Mapped[str] = mapped_column(String(100), index=True)
    executor: Mapped[str] = mapped_column(String(20))
    address: Mapped[Optional[str]] = mapped_column(String(300), nullable=True)
    state: Mapped[str] = mapped_column(String(10))  # running | done | failed
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {stage: {"tasks": n, "skipped": k}}
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[Optional[str]] = mapped_column(String(2000), nullable=True)


class SweepTask(Base):
    """One task of a sweep run; the unique key makes a retried task one row (its ``attempts`` grow)."""

    __tablename__ = "sweep_tasks"
    __table_args__ = (UniqueConstraint("run_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sweep_runs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(400))
    state: Mapped[str] = mapped_column(String(10))  # queued | running | done | failed
    node: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    pid: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    summary: Mapped[Optional[str]] = mapped_column(String(1000), nullable=True)
    error: Mapped[Optional[str]] = mapped_column(String(2000), nullable=True)
