"""metric values in long form; drift rows name both sides' method and parameter hash

One row per (map or map pair, metric) instead of one column per metric, so a newly registered
metric needs no schema change. Every wide row becomes one long row per metric column. Drift rows
of a cross-method comparison stored ``method = "m_a:m_b"`` and ``params_hash = "<31 chars of
hash A>:<31 chars of hash B>"``; they get ``method_a``/``method_b`` and the full hashes, looked up
in ``attribution_maps`` (the prefix is kept when the maps are gone).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# the metric columns of revision 0004 (frozen here: later registrations do not change this migration)
GT_COLUMNS = ["precision", "mass_accuracy", "pointing_game", "roc_auc", "average_precision", "emd_score"]
DRIFT_COLUMNS = ["com_displacement", "peak_displacement", "iou_top10", "iou_top20", "pearson", "spearman",
                 "gini_change", "entropy_change"]
GT_KEYS = ["checkpoint_id", "method", "params_hash", "sample_pk"]
INDEXES = {  # index=True columns of each table (revision 0004, and of the long form here)
    "gt_metrics": (["checkpoint_id", "method", "sample_pk"], ["checkpoint_id", "method", "sample_pk"]),
    "drift_metrics": (["checkpoint_a_id", "checkpoint_b_id", "method", "sample_pk"],
                      ["checkpoint_a_id", "checkpoint_b_id", "method_a", "sample_pk"]),
}


def _fk(table: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.id", ondelete="CASCADE")


def _map_columns() -> list[sa.Column]:
    """The columns that name one map, the same in both forms of ``gt_metrics``."""
    return [sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("checkpoint_id", sa.Integer(), _fk("checkpoints"), nullable=False),
            sa.Column("method", sa.String(50), nullable=False),
            sa.Column("params_hash", sa.String(64), nullable=False),
            sa.Column("sample_pk", sa.Integer(), _fk("samples"), nullable=False)]


def _pair_columns() -> list[sa.Column]:
    """The id and checkpoint columns of a drift row, the same in both forms of ``drift_metrics``."""
    return [sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("checkpoint_a_id", sa.Integer(), _fk("checkpoints"), nullable=False),
            sa.Column("checkpoint_b_id", sa.Integer(), _fk("checkpoints"), nullable=False)]


def _move_aside(table: str, suffix: str, indexed: list[str]) -> str:
    """Rename ``table`` to ``table + suffix`` and free its index, key and sequence names for the new
    table (PostgreSQL keeps a renamed table's key and sequence names; index names are global)."""
    for column in indexed:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    old = f"{table}{suffix}"
    op.rename_table(table, old)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER SEQUENCE {table}_id_seq RENAME TO {old}_id_seq")
        op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
    return old


def _indexes(table: str, indexed: list[str]) -> None:
    for column in indexed:
        op.create_index(f"ix_{table}_{column}", table, [column])


def _q(name: str) -> str:
    return f'"{name}"'


def _full_hash(checkpoint_id: int, method: str, prefix: str) -> str:
    """The stored maps' full params hash starting with ``prefix`` (``prefix`` itself when not unique)."""
    found = op.get_bind().execute(
        sa.text("SELECT DISTINCT params_hash FROM attribution_maps WHERE checkpoint_id = :c AND method = :m "
                "AND params_hash LIKE :p"), {"c": checkpoint_id, "m": method, "p": prefix + "%"}).scalars().all()
    return found[0] if len(found) == 1 else prefix


def upgrade() -> None:
    bind = op.get_bind()
    wide = _move_aside("gt_metrics", "_wide", INDEXES["gt_metrics"][0])
    op.create_table(
        "gt_metrics",
        *_map_columns(),
        sa.Column("metric", sa.String(50), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("selection", sa.String(12), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("constant_map", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("checkpoint_id", "method", "params_hash", "sample_pk", "metric"),
    )
    _indexes("gt_metrics", INDEXES["gt_metrics"][1])
    for metric in GT_COLUMNS:
        bind.execute(sa.text(
            "INSERT INTO gt_metrics (checkpoint_id, method, params_hash, sample_pk, metric, value, selection, correct,"
            f" constant_map) SELECT checkpoint_id, method, params_hash, sample_pk, :metric, {_q(metric)}, selection,"
            f" correct, constant_map FROM {wide} ORDER BY id"), {"metric": metric})
    op.drop_table(wide)

    wide = _move_aside("drift_metrics", "_wide", INDEXES["drift_metrics"][0])
    op.create_table(
        "drift_metrics",
        *_pair_columns(),
        sa.Column("method_a", sa.String(50), nullable=False),
        sa.Column("params_hash_a", sa.String(64), nullable=False),
        sa.Column("method_b", sa.String(50), nullable=False),
        sa.Column("params_hash_b", sa.String(64), nullable=False),
        sa.Column("sample_pk", sa.Integer(), _fk("samples"), nullable=False),
        sa.Column("metric", sa.String(50), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("selection", sa.String(20), nullable=False),
        sa.UniqueConstraint("checkpoint_a_id", "checkpoint_b_id", "method_a", "params_hash_a", "method_b",
                            "params_hash_b", "sample_pk", "metric"),
    )
    _indexes("drift_metrics", INDEXES["drift_metrics"][1])
    insert = ("INSERT INTO drift_metrics (checkpoint_a_id, checkpoint_b_id, method_a, params_hash_a, method_b,"
              " params_hash_b, sample_pk, metric, value, selection) SELECT checkpoint_a_id, checkpoint_b_id, {sides},"
              " sample_pk, :metric, {value}, selection FROM " + wide + " WHERE {where} ORDER BY id")
    for metric in DRIFT_COLUMNS:  # same method and hash on both sides: the bulk, in one statement per metric
        bind.execute(sa.text(insert.format(sides="method, params_hash, method, params_hash", value=_q(metric),
                                           where="method NOT LIKE '%:%'")), {"metric": metric})
    cross = bind.execute(sa.text(f"SELECT DISTINCT checkpoint_a_id, checkpoint_b_id, method, params_hash FROM {wide}"
                                 " WHERE method LIKE '%:%'")).all()
    for a, b, method, phash in cross:  # "m_a:m_b" with "<hash A prefix>:<hash B prefix>"
        method_a, method_b = method.split(":", 1)
        prefix_a, _, prefix_b = phash.partition(":")
        sides = {"ma": method_a, "ha": _full_hash(a, method_a, prefix_a), "mb": method_b,
                 "hb": _full_hash(b, method_b, prefix_b or prefix_a)}
        for metric in DRIFT_COLUMNS:
            bind.execute(sa.text(insert.format(
                sides=":ma, :ha, :mb, :hb", value=_q(metric),
                where="checkpoint_a_id = :a AND checkpoint_b_id = :b AND method = :m AND params_hash = :h")),
                {"metric": metric, "a": a, "b": b, "m": method, "h": phash, **sides})
    op.drop_table(wide)


def _pivot(columns: list[str]) -> str:
    """``MAX(CASE WHEN metric = 'x' THEN value END) AS "x", ...`` for the wide columns."""
    return ", ".join(f"MAX(CASE WHEN metric = '{c}' THEN value END) AS {_q(c)}" for c in columns)


def _complete(columns: list[str]) -> str:
    """HAVING clause: the map (pair) has a value of every wide column."""
    listed = ", ".join(f"'{c}'" for c in columns)
    return f"COUNT(CASE WHEN metric IN ({listed}) THEN 1 END) = {len(columns)}"


def downgrade() -> None:
    """Back to one column per metric: values of metrics without a column, and maps missing one of
    the columns' metrics, are dropped; cross-method drift rows are packed as in revision 0004."""
    bind = op.get_bind()
    long = _move_aside("gt_metrics", "_long", INDEXES["gt_metrics"][1])
    op.create_table(
        "gt_metrics",
        *_map_columns(),
        sa.Column("selection", sa.String(12), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        *[sa.Column(name, sa.Float(), nullable=False) for name in GT_COLUMNS],
        sa.Column("constant_map", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("checkpoint_id", "method", "params_hash", "sample_pk"),
    )
    _indexes("gt_metrics", INDEXES["gt_metrics"][0])
    keys = ", ".join([*GT_KEYS, "selection", "correct", "constant_map"])
    bind.execute(sa.text(
        f"INSERT INTO gt_metrics ({keys}, {', '.join(map(_q, GT_COLUMNS))}) SELECT {keys}, {_pivot(GT_COLUMNS)}"
        f" FROM {long} GROUP BY {keys} HAVING {_complete(GT_COLUMNS)} ORDER BY MIN(id)"))
    op.drop_table(long)

    long = _move_aside("drift_metrics", "_long", INDEXES["drift_metrics"][1])
    op.create_table(
        "drift_metrics",
        *_pair_columns(),
        sa.Column("method", sa.String(50), nullable=False),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("sample_pk", sa.Integer(), _fk("samples"), nullable=False),
        sa.Column("selection", sa.String(20), nullable=False),
        *[sa.Column(name, sa.Float(), nullable=False) for name in DRIFT_COLUMNS],
        sa.UniqueConstraint("checkpoint_a_id", "checkpoint_b_id", "method", "params_hash", "sample_pk"),
    )
    _indexes("drift_metrics", INDEXES["drift_metrics"][0])
    same = "method_a = method_b AND params_hash_a = params_hash_b"
    method = f"CASE WHEN {same} THEN method_a ELSE method_a || ':' || method_b END"
    phash = (f"CASE WHEN {same} THEN params_hash_a ELSE substr(params_hash_a, 1, 31) || ':' || "
             "substr(params_hash_b, 1, 31) END")
    groups = "checkpoint_a_id, checkpoint_b_id, method_a, params_hash_a, method_b, params_hash_b, sample_pk, selection"
    bind.execute(sa.text(
        f"INSERT INTO drift_metrics (checkpoint_a_id, checkpoint_b_id, method, params_hash, sample_pk, selection, "
        f"{', '.join(map(_q, DRIFT_COLUMNS))}) SELECT checkpoint_a_id, checkpoint_b_id, {method}, {phash}, sample_pk, "
        f"selection, {_pivot(DRIFT_COLUMNS)} FROM {long} GROUP BY {groups} HAVING {_complete(DRIFT_COLUMNS)} "
        "ORDER BY MIN(id)"))
    op.drop_table(long)
