"""attribution map index

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attribution_maps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("checkpoint_id", sa.Integer(),
                  sa.ForeignKey("checkpoints.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("method", sa.String(50), nullable=False, index=True),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("sample_pk", sa.Integer(), sa.ForeignKey("samples.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.Column("store_path", sa.String(1000), nullable=False),
        sa.Column("store_index", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("device", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("checkpoint_id", "method", "params_hash", "sample_pk"),
    )


def downgrade() -> None:
    op.drop_table("attribution_maps")
