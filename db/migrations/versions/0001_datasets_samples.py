"""datasets and samples

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("root", sa.String(1000), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("class_names", sa.JSON(), nullable=False),
        sa.Column("image_size", sa.Integer(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "samples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("sample_id", sa.String(200), nullable=False),
        sa.Column("split", sa.String(10), nullable=False, index=True),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("image_path", sa.String(1000), nullable=False),
        sa.Column("mask_path", sa.String(1000), nullable=True),
        sa.Column("lesion_area", sa.Integer(), nullable=False),
        sa.Column("n_lesions", sa.Integer(), nullable=False),
        sa.UniqueConstraint("dataset_id", "sample_id"),
    )


def downgrade() -> None:
    op.drop_table("samples")
    op.drop_table("datasets")
