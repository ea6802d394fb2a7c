"""sweeps: sweep_runs and sweep_tasks (progress of `xaudit sweep`)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sweep_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study", sa.String(100), nullable=False, index=True),
        sa.Column("executor", sa.String(20), nullable=False),
        sa.Column("address", sa.String(300), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        _when("started_at", nullable=False),
        _when("finished_at"),
        sa.Column("error", sa.String(2000), nullable=True),
    )
    op.create_table(
        "sweep_tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("sweep_runs.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("node", sa.String(200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("queued_at", nullable=False),
        _when("started_at"),
        _when("finished_at"),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("summary", sa.String(1000), nullable=True),
        sa.Column("error", sa.String(2000), nullable=True),
        sa.UniqueConstraint("run_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("sweep_tasks")
    op.drop_table("sweep_runs")
