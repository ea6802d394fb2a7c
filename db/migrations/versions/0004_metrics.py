"""ground-truth and drift metrics

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _fk(table: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.id", ondelete="CASCADE")


def upgrade() -> None:
    gt_values = ["precision", "mass_accuracy", "pointing_game", "roc_auc", "average_precision",
                 "emd_score"]
    op.create_table(
        "gt_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("checkpoint_id", sa.Integer(), _fk("checkpoints"), nullable=False, index=True),
        sa.Column("method", sa.String(50), nullable=False, index=True),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("sample_pk", sa.Integer(), _fk("samples"), nullable=False, index=True),
        sa.Column("selection", sa.String(12), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        *[sa.Column(name, sa.Float(), nullable=False) for name in gt_values],
        sa.Column("constant_map", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("checkpoint_id", "method", "params_hash", "sample_pk"),
    )
    drift_values = ["com_displacement", "peak_displacement", "iou_top10", "iou_top20", "pearson",
                    "spearman", "gini_change", "entropy_change"]
    op.create_table(
        "drift_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("checkpoint_a_id", sa.Integer(), _fk("checkpoints"), nullable=False, index=True),
        sa.Column("checkpoint_b_id", sa.Integer(), _fk("checkpoints"), nullable=False, index=True),
        sa.Column("method", sa.String(50), nullable=False, index=True),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("sample_pk", sa.Integer(), _fk("samples"), nullable=False, index=True),
        sa.Column("selection", sa.String(20), nullable=False),
        *[sa.Column(name, sa.Float(), nullable=False) for name in drift_values],
        sa.UniqueConstraint("checkpoint_a_id", "checkpoint_b_id", "method", "params_hash",
                            "sample_pk"),
    )


def downgrade() -> None:
    op.drop_table("drift_metrics")
    op.drop_table("gt_metrics")
