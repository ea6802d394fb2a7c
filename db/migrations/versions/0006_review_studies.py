"""review studies: accounts, login throttle, sessions, audit log, studies, cases, queues, ratings

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _fk(table: str, ondelete: str = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.id", ondelete=ondelete)


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "login_throttle",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        _when("blocked_until", nullable=True),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer(), _fk("users"), nullable=False, index=True),
        _when("created_at"),
        _when("revoked_at", nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(50), nullable=False, index=True),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_table(
        "review_studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "review_cases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), _fk("review_studies"), nullable=False, index=True),
        sa.Column("case_key", sa.String(32), nullable=False, unique=True),
        sa.Column("sample_pk", sa.Integer(), _fk("samples", "RESTRICT"), nullable=False, index=True),
        sa.Column("checkpoint_id", sa.Integer(), _fk("checkpoints", "RESTRICT"), nullable=False, index=True),
        sa.Column("method", sa.String(50), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("is_catch", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "review_assignments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), _fk("review_studies"), nullable=False, index=True),
        sa.Column("reviewer_id", sa.Integer(), _fk("users"), nullable=False, index=True),
        sa.Column("case_id", sa.Integer(), _fk("review_cases"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _when("submitted_at", nullable=True),
        sa.UniqueConstraint("study_id", "reviewer_id", "case_id"),
        sa.UniqueConstraint("study_id", "reviewer_id", "position"),
    )
    op.create_table(
        "review_ratings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), _fk("review_studies"), nullable=False, index=True),
        sa.Column("reviewer_id", sa.Integer(), _fk("users"), nullable=False, index=True),
        sa.Column("case_id", sa.Integer(), _fk("review_cases"), nullable=False),
        sa.Column("evidence_match", sa.Integer(), nullable=False),
        sa.Column("plausible", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(2000), nullable=False),
        sa.Column("point_x", sa.Float(), nullable=True),
        sa.Column("point_y", sa.Float(), nullable=True),
        _when("created_at"),
        _when("updated_at"),
        sa.UniqueConstraint("study_id", "reviewer_id", "case_id"),
    )


def downgrade() -> None:
    for table in ("review_ratings", "review_assignments", "review_cases", "review_studies", "audit_log",
                  "auth_sessions", "login_throttle", "users"):
        op.drop_table(table)
