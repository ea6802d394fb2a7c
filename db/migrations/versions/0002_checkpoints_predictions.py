"""checkpoints and predictions

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False, unique=True),
        sa.Column("arch", sa.String(50), nullable=False, index=True),
        sa.Column("width", sa.Float(), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("in_chans", sa.Integer(), nullable=False),
        sa.Column("input_size", sa.Integer(), nullable=False),
        sa.Column("pretrain", sa.String(50), nullable=False, index=True),
        sa.Column("degree", sa.String(10), nullable=True),
        sa.Column("phase", sa.String(10), nullable=False, index=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("checkpoints.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("train_time_s", sa.Float(), nullable=False),
        sa.Column("device", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("checkpoint_id", sa.Integer(),
                  sa.ForeignKey("checkpoints.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sample_pk", sa.Integer(), sa.ForeignKey("samples.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("pred", sa.Integer(), nullable=False),
        sa.Column("prob", sa.Float(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("checkpoint_id", "sample_pk"),
    )


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("checkpoints")
