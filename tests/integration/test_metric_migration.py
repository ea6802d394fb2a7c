"""Revision 0005: wide metric tables (one column per metric, revision 0004) become long (one row per
value) without losing a row, on SQLite and PostgreSQL; cross-method drift rows get both sides'
method and full params hash back; the downgrade restores the wide rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from db.session import alembic_config, make_engine
from tests.postgres import BACKENDS

HASH_G = "a" * 40 + "0123456789abcdef01234567"  # full 64-character params hashes of stored maps
HASH_L = "b" * 40 + "76543210fedcba9876543210"
GT = ["precision", "mass_accuracy", "pointing_game", "roc_auc", "average_precision", "emd_score"]
DRIFT = ["com_displacement", "peak_displacement", "iou_top10", "iou_top20", "pearson", "spearman", "gini_change",
         "entropy_change"]
# (checkpoint, method, params hash, sample, correct, first value): the six values are first + k / 64
GT_ROWS = [(1, "saliency", "h1", 1, True, 0.1234567890123456), (1, "saliency", "h1", 2, False, 0.5),
           (2, "baseline_sobel", "sobel3x3", 1, True, 0.03125)]
# (A, B, method, params hash, sample, first value): same method, a cross-method pair whose maps
# are stored (hash prefixes resolve) and one whose maps are gone (the prefixes stay)
DRIFT_ROWS = [(1, 2, "gradcam", HASH_G, 1, -0.25), (1, 2, "gradcam", HASH_G, 2, 0.0),
              (1, 2, "gradcam:layercam", f"{HASH_G[:31]}:{HASH_L[:31]}", 1, 0.75),
              (1, 2, "x:y", "abc:def", 2, 0.375)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'old.db'}"


def _to(url: str, revision: str, downgrade: bool = False) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        (command.downgrade if downgrade else command.upgrade)(cfg, revision)
    engine.dispose()


def _seed_revision_0004(url: str) -> None:
    _to(url, "0004")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO datasets (name, kind, root, params, class_names, image_size, n_samples, "
                          "created_at) VALUES ('d', 'synthetic', '/x', '{}', '[]', 16, 2, '2026-01-01 00:00:00+00:00')"))
        for i in (1, 2):
            conn.execute(text("INSERT INTO samples (dataset_id, sample_id, split, label, image_path, lesion_area, "
                              f"n_lesions) VALUES (1, 's{i}', 'test', 0, 'i', 4, 1)"))
            conn.execute(text("INSERT INTO checkpoints (name, arch, width, num_classes, in_chans, input_size, pretrain,"
                              " degree, phase, path, sha256, metrics, history, train_time_s, device, created_at) VALUES"
                              f" ('c{i}', 'resnet50', 1.0, 2, 1, 16, 'imagenet', 'tl', 'tl', 'p', 's', '{{}}', '[]', 0,"
                              " 'cpu', '2026-01-01 00:00:00+00:00')"))
        for ck, method, phash in ((1, "gradcam", HASH_G), (2, "gradcam", HASH_G), (2, "layercam", HASH_L)):
            conn.execute(text("INSERT INTO attribution_maps (checkpoint_id, method, params_hash, params, sample_pk, "
                              "target, store_path, store_index, seconds, device, created_at) VALUES (:c, :m, :h, '{}', 1,"
                              " 0, 'a.npy', 0, 0, 'cpu', '2026-01-01 00:00:00+00:00')"), {"c": ck, "m": method, "h": phash})
        for ck, method, phash, pk, ok, first in GT_ROWS:
            conn.execute(text(f"INSERT INTO gt_metrics (checkpoint_id, method, params_hash, sample_pk, selection, correct,"
                              f" constant_map, {', '.join(GT)}) VALUES (:c, :m, :h, :s, 'correct', :ok, :ok,"
                              f" {', '.join(f':v{k}' for k in range(len(GT)))})"),
                         {"c": ck, "m": method, "h": phash, "s": pk, "ok": ok,
                          **{f"v{k}": first + k / 64 for k in range(len(GT))}})
        for a, b, method, phash, pk, first in DRIFT_ROWS:
            conn.execute(text(f"INSERT INTO drift_metrics (checkpoint_a_id, checkpoint_b_id, method, params_hash, "
                              f"sample_pk, selection, {', '.join(DRIFT)}) VALUES (:a, :b, :m, :h, :s, 'all', "
                              f"{', '.join(f':v{k}' for k in range(len(DRIFT)))})"),
                         {"a": a, "b": b, "m": method, "h": phash, "s": pk,
                          **{f"v{k}": first + k / 64 for k in range(len(DRIFT))}})
    engine.dispose()


def test_wide_metric_rows_become_long_rows_and_back(url: str) -> None:
    _seed_revision_0004(url)
    engine = make_engine(url)  # opening the database migrates it to head
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
        gt = conn.execute(text("SELECT checkpoint_id, method, params_hash, sample_pk, correct, constant_map, metric,"
                               " value, selection FROM gt_metrics")).all()
        drift = conn.execute(text("SELECT checkpoint_a_id, checkpoint_b_id, method_a, params_hash_a, method_b,"
                                  " params_hash_b, sample_pk, metric, value, selection FROM drift_metrics")).all()
    engine.dispose()
    assert sorted((r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5]), r[6], r[7], r[8]) for r in gt) == sorted(
        (ck, method, phash, pk, ok, ok, metric, first + k / 64, "correct")
        for ck, method, phash, pk, ok, first in GT_ROWS for k, metric in enumerate(GT))
    sides = {"gradcam": ("gradcam", HASH_G, "gradcam", HASH_G),
             "gradcam:layercam": ("gradcam", HASH_G, "layercam", HASH_L),  # full hashes from attribution_maps
             "x:y": ("x", "abc", "y", "def")}  # maps gone: the stored prefixes
    assert sorted(tuple(r) for r in drift) == sorted(
        (a, b, *sides[method], pk, metric, first + k / 64, "all")
        for a, b, method, _, pk, first in DRIFT_ROWS for k, metric in enumerate(DRIFT))

    _to(url, "0004", downgrade=True)  # and back: the same wide rows (cross-method hashes as 31-char prefixes)
    engine = create_engine(url)
    with engine.connect() as conn:
        wide_gt = conn.execute(text(f"SELECT checkpoint_id, method, params_hash, sample_pk, correct, {', '.join(GT)}"
                                    " FROM gt_metrics")).all()
        wide_drift = conn.execute(text("SELECT checkpoint_a_id, checkpoint_b_id, method, params_hash, sample_pk, "
                                       f"{', '.join(DRIFT)} FROM drift_metrics")).all()
    engine.dispose()
    assert sorted((r[0], r[1], r[2], r[3], bool(r[4]), *r[5:]) for r in wide_gt) == sorted(
        (ck, method, phash, pk, ok, *[first + k / 64 for k in range(len(GT))]) for ck, method, phash, pk, ok, first in GT_ROWS)
    assert sorted(tuple(r) for r in wide_drift) == sorted(
        (a, b, method, phash, pk, *[first + k / 64 for k in range(len(DRIFT))])
        for a, b, method, phash, pk, first in DRIFT_ROWS)
