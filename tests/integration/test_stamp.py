"""``change_stamp``: (workspace, database, per table (rows, max id)) in one query."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete

from db import Prediction, reset_engines, session_scope
from tests.seed import add_checkpoint, add_dataset_rows
from xai_core.config import database_url
from xai_core.stamp import change_stamp


def test_stamp_follows_inserts_deletes_and_the_workspace(workspace: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    url = database_url()  # the workspace's SQLite file, or this test's PostgreSQL database
    assert url.startswith("sqlite:///" if backend == "sqlite" else "postgresql")
    assert change_stamp() == (str(workspace), url, ())
    assert change_stamp("checkpoints", "predictions") == (
        str(workspace), url, (("checkpoints", 0, 0), ("predictions", 0, 0)))

    masks = np.zeros((3, 8, 8), bool)
    pks = add_dataset_rows("tiny", masks, [0, 1, 0])
    add_checkpoint("a", "vgg16", "none", "all", "ft", pks, [0, 1, 1], [0, 1, 0])
    before = change_stamp("checkpoints", "predictions", "samples")
    assert before[2] == (("checkpoints", 1, 1), ("predictions", 3, 3), ("samples", 3, 3))
    assert change_stamp("checkpoints", "predictions", "samples") == before  # unchanged: same key

    with session_scope() as session:  # a deletion lowers the count even when the max id stays
        session.execute(delete(Prediction).where(Prediction.id == 1))
    assert change_stamp("predictions")[2] == (("predictions", 2, 3),)
    add_checkpoint("b", "vgg16", "none", "all", "ft", pks[:1], [0], [0])
    assert change_stamp("checkpoints", "predictions")[2] == (("checkpoints", 2, 2), ("predictions", 3, 4))

    if backend != "sqlite":
        return  # the workspace switch below is about the SQLite file inside the workspace
    other = tmp_path / "other"
    monkeypatch.setenv("XAUDIT_HOME", str(other))
    reset_engines()
    assert change_stamp("checkpoints") == (str(other), f"sqlite:///{other / 'xaudit.db'}", (("checkpoints", 0, 0),))
    monkeypatch.setenv("DATABASE_URL", url)  # the same folder with another database is another key
    assert change_stamp("checkpoints") == (str(other), url, (("checkpoints", 2, 2),))
    reset_engines()


def test_unknown_table_names_the_known_ones(workspace: Path) -> None:
    with pytest.raises(ValueError, match="no table 'gt_metric'; tables: .*gt_metrics"):
        change_stamp("gt_metric")
