"""Database: migrations from an empty file, schema == models, pragmas, round trip, cascades."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

from db import Dataset, Sample, get_engine, session_scope
from db.models import Base
from db.session import alembic_config, make_engine
from xai_core.config import workspace_dir
from xai_core.errors import WorkspaceError


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_empty_database_is_migrated_to_head_and_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head() == "0004"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert set(inspect(engine).get_table_names()) >= {
        "datasets", "samples", "checkpoints", "predictions", "attribution_maps",
        "gt_metrics", "drift_metrics", "alembic_version",
    }


def test_upgrade_keeps_existing_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text(
            "INSERT INTO datasets (name, kind, root, params, class_names, image_size, n_samples,"
            " created_at) VALUES ('old', 'synthetic', '/x', '{}', '[]', 64, 0, '2026-01-01')"
        ))
    engine.dispose()
    upgraded = make_engine(url)
    with upgraded.connect() as conn:
        assert conn.execute(text("SELECT name FROM datasets")).scalar_one() == "old"
        assert MigrationContext.configure(conn).get_current_revision() == "0004"


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
