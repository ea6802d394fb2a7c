"""Database: migrations from an empty file, schema == models, pragmas, round trip, cascades."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

import models
from db import Checkpoint, Dataset, Sample, get_engine, session_scope
from db.session import alembic_config, make_engine
from db.tables import Base
from models.checkpoints import save_checkpoint
from tests.integration.test_data_build import assert_nothing_written
from tests.integration.test_data_import import make_folder
from tests.postgres import BACKENDS, only_sqlite
from xai_core.config import workspace_dir
from xai_core.data import import_dataset
from xai_core.errors import ConfigError, WorkspaceError


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a new SQLite file, a new PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'fresh.db'}"


def test_empty_database_is_migrated_to_head_and_matches_models(empty_url: str) -> None:
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head() == "0007"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert set(inspect(engine).get_table_names()) >= {
        "datasets", "samples", "checkpoints", "predictions", "attribution_maps",
        "gt_metrics", "drift_metrics", "alembic_version",
    }
    engine.dispose()


PREVIOUS = "0004"  # head - 1
OLD_ROWS = [  # one row per table of the previous revision, inserted with plain SQL
    "INSERT INTO datasets (name, kind, root, params, class_names, image_size, n_samples, created_at)"
    " VALUES ('old', 'synthetic', '/x', '{\"seed\": 7}', '[\"regular\", \"irregular\"]', 64, 1,"
    " '2026-01-01 00:00:00+00:00')",
    "INSERT INTO samples (dataset_id, sample_id, split, label, image_path, mask_path, lesion_area, n_lesions)"
    " VALUES (1, 's0', 'test', 1, 'i/s0', NULL, 17, 2)",
    "INSERT INTO checkpoints (name, arch, width, num_classes, in_chans, input_size, pretrain, degree, phase,"
    " path, sha256, metrics, history, train_time_s, device, created_at) VALUES ('ck', 'vgg16', 0.125, 2, 1,"
    " 64, 'mri', 'tl', 'tl', 'c/ck', 'ab', '{\"test_acc\": 0.8125}', '[]', 1.0000000000000002, 'cpu',"
    " '2026-01-01 00:00:00+00:00')",
    "INSERT INTO predictions (checkpoint_id, sample_pk, pred, prob, correct)"
    " VALUES (1, 1, 1, 0.1234567890123456, TRUE)",
    "INSERT INTO attribution_maps (checkpoint_id, method, params_hash, params, sample_pk, target, store_path,"
    " store_index, seconds, device, created_at) VALUES (1, 'saliency', 'h', '{}', 1, 1, 'a/c.npy', 0, 0.5,"
    " 'cpu', '2026-01-01 00:00:00+00:00')",
    "INSERT INTO gt_metrics (checkpoint_id, method, params_hash, sample_pk, selection, correct, precision,"
    " mass_accuracy, pointing_game, roc_auc, average_precision, emd_score, constant_map)"
    " VALUES (1, 'saliency', 'h', 1, 'correct', TRUE, 0.25, 0.5, 1.0, 0.75, 0.125, 0.0625, FALSE)",
]


def test_upgrade_from_the_previous_revision_keeps_existing_rows(empty_url: str) -> None:
    engine = create_engine(empty_url)
    with engine.begin() as conn:
        cfg = alembic_config(empty_url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, PREVIOUS)
        assert MigrationContext.configure(conn).get_current_revision() == PREVIOUS
        for sql in OLD_ROWS:
            conn.execute(text(sql))
    engine.dispose()
    upgraded = make_engine(empty_url)
    with upgraded.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()
        assert conn.execute(text("SELECT name, image_size FROM datasets")).one() == ("old", 64)
        assert conn.execute(text("SELECT sample_id, lesion_area, n_lesions FROM samples")).one() == ("s0", 17, 2)
        assert conn.execute(text("SELECT prob, correct FROM predictions")).one() == (0.1234567890123456, True)
        assert conn.execute(text("SELECT train_time_s FROM checkpoints")).scalar_one() == 1.0000000000000002
        assert conn.execute(text("SELECT count(*) FROM attribution_maps")).scalar_one() == 1
        assert conn.execute(text("SELECT metric, value FROM gt_metrics ORDER BY value")).all() == [
            ("emd_score", 0.0625), ("average_precision", 0.125), ("precision", 0.25), ("mass_accuracy", 0.5),
            ("roc_auc", 0.75), ("pointing_game", 1.0)]
    with Session(upgraded) as s:  # typed round trip through the models, and ids continue after the old rows
        ds = s.scalars(select(Dataset)).one()
        assert (ds.params, ds.class_names, ds.created_at.year) == ({"seed": 7}, ["regular", "irregular"], 2026)
        assert s.scalars(select(Checkpoint)).one().metrics == {"test_acc": 0.8125}
        s.add(Dataset(name="new", kind="synthetic", root="/y", params={}, class_names=[], image_size=8,
                      n_samples=0))
        s.commit()
        assert s.scalars(select(Dataset.id).order_by(Dataset.id)).all() == [1, 2]
    upgraded.dispose()


@only_sqlite
def test_sqlite_runs_in_wal_mode_with_foreign_keys(workspace: Path) -> None:
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    assert (workspace / "xaudit.db").exists()


def test_round_trip_and_cascade_delete(workspace: Path) -> None:
    with session_scope() as s:
        ds = Dataset(name="d", kind="synthetic", root="/r", params={"seed": 3},
                     class_names=["regular", "irregular"], image_size=32, n_samples=2)
        ds.samples = [
            Sample(sample_id="a", split="train", label=0, image_path="i/a", mask_path="m/a",
                   lesion_area=12, n_lesions=1),
            Sample(sample_id="b", split="test", label=1, image_path="i/b", mask_path=None,
                   lesion_area=0, n_lesions=0),
        ]
        s.add(ds)
    with session_scope() as s:
        got = s.scalars(select(Dataset)).one()
        assert got.params == {"seed": 3} and got.class_names == ["regular", "irregular"]
        assert [(x.sample_id, x.split, x.label, x.lesion_area) for x in got.samples] == [
            ("a", "train", 0, 12), ("b", "test", 1, 0)]
        s.delete(got)
    with session_scope() as s:
        assert s.scalars(select(Sample)).all() == []


def test_failed_transaction_leaves_no_rows(workspace: Path) -> None:
    with pytest.raises(RuntimeError):
        with session_scope() as s:
            s.add(Dataset(name="half", kind="synthetic", root="/r", params={}, class_names=[],
                          image_size=8, n_samples=0))
            s.flush()
            raise RuntimeError("boom")
    with session_scope() as s:
        assert s.scalars(select(Dataset)).all() == []


def test_unwritable_workspace_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAUDIT_HOME", "/proc/xaudit-cannot-exist")
    with pytest.raises(WorkspaceError, match="set XAUDIT_HOME to a writable directory"):
        workspace_dir("datasets")


def test_names_at_the_column_limit_are_stored_and_longer_ones_refused(workspace: Path, tmp_path: Path) -> None:
    """PostgreSQL enforces VARCHAR lengths (SQLite does not): both backends accept a name of exactly
    the limit and refuse one character more with the same one-line error, before writing anything."""
    net = models.build("vgg16", 2, in_chans=1, width=0.125)
    kwargs = dict(arch="vgg16", width=0.125, num_classes=2, in_chans=1, input_size=16, pretrain="none",
                  degree=None, phase="external")
    with pytest.raises(ConfigError, match=r"checkpoint name must be 1\.\.243 characters \(got 244\)"):
        save_checkpoint(net, name="c" * 244, **kwargs)
    assert not (workspace / "checkpoints").exists() or list((workspace / "checkpoints").iterdir()) == []
    save_checkpoint(net, name="c" * 243, **kwargs)

    root = tmp_path / "imgs"
    make_folder(root, {"a": 4, "b": 4}, shape=(16, 16), masks=False)
    (root / "a" / "p0.png").rename(root / "a" / f"{'x' * 199}.png")  # sample id "a-xxx…": 201 characters
    with pytest.raises(ConfigError, match=r"sample id from a/x+\.png is 201 characters long \(at most 200"):
        import_dataset(root, "long")
    assert_nothing_written(workspace)
    (root / "a" / f"{'x' * 199}.png").rename(root / "a" / f"{'x' * 198}.png")
    import_dataset(root, "long")
    with session_scope() as s:
        assert s.scalar(select(Checkpoint.name)) == "c" * 243
        assert sorted(len(x) for x in s.scalars(select(Sample.sample_id)))[-1] == 200
