"""Aggregated queries behind the Benchmark and Drift pages, and CSV/Parquet export of any table.

Every function returns a pandas DataFrame built from the stored per-sample rows; the pages only
display them. ``export_table(name, path)`` writes one of :data:`TABLES` atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from xai_core.errors import ConfigError, InputFileError, WorkspaceError
from xai_core.metrics.drift_measures import drift_keys
from xai_core.metrics.ground_truth import GROUND_TRUTH_KEYS
from xai_core.metrics.jobs import DRIFT_TOP_PERCENT, GT_SELECTIONS
from xai_core.metrics.order import sort_by_degree
from xai_core.metrics.statistics import (
    accuracy_controlled_effect,
    ranking_agreement,
    stability_ranking,
    summarise,
)

DRIFT_KEYS = tuple(drift_keys(DRIFT_TOP_PERCENT))
CHECKPOINT_COLS = ["checkpoint_id", "checkpoint", "arch", "pretrain", "degree", "phase"]


def _frame(statement: Any) -> pd.DataFrame:
    from db import get_engine

    with get_engine().connect() as conn:
        return pd.read_sql(statement, conn)


def gt_frame(selection: str = "correct", methods: list[str] | None = None) -> pd.DataFrame:
    """Per-sample ground-truth rows joined with checkpoint and sample columns.

    ``selection`` filters on each row's ``correct`` flag (``correct``, ``incorrect``, ``all``).
    """
    from db import Checkpoint, GroundTruthMetric as G, Sample

    if selection not in GT_SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(GT_SELECTIONS)} (got {selection!r})")
    stmt = (
        select(
            G.checkpoint_id, Checkpoint.name.label("checkpoint"), Checkpoint.arch, Checkpoint.pretrain,
            Checkpoint.degree, Checkpoint.phase, G.method, G.params_hash, G.sample_pk,
            Sample.sample_id, Sample.label, Sample.lesion_area, G.selection, G.correct, G.constant_map,
            *[getattr(G, k) for k in GROUND_TRUTH_KEYS],
        )
        .join(Checkpoint, Checkpoint.id == G.checkpoint_id)
        .join(Sample, Sample.id == G.sample_pk)
        .order_by(G.checkpoint_id, G.method, G.sample_pk)
    )
    if selection == "correct":
        stmt = stmt.where(G.correct.is_(True))
    elif selection == "incorrect":
        stmt = stmt.where(G.correct.is_(False))
    if methods:
        stmt = stmt.where(G.method.in_(list(methods)))
    df = _frame(stmt)
    df["degree"] = df["degree"].fillna("-")
    df["correct"] = df["correct"].astype(bool)
    df["constant_map"] = df["constant_map"].astype(bool)
    return df


def drift_frame(selection: str | None = None, methods: list[str] | None = None) -> pd.DataFrame:
    """Per-sample drift rows with both checkpoints' names and B's architecture/pre-training."""
    from db import Checkpoint, DriftMetric as D, Sample

    ca = Checkpoint.__table__.alias("ca")
    cb = Checkpoint.__table__.alias("cb")
    stmt = (
        select(
            D.checkpoint_a_id, ca.c.name.label("checkpoint_a"), D.checkpoint_b_id, cb.c.name.label("checkpoint_b"),
            cb.c.arch.label("arch"), cb.c.pretrain.label("pretrain"), D.method, D.params_hash, D.sample_pk,
            Sample.sample_id, Sample.label, D.selection, *[getattr(D, k) for k in DRIFT_KEYS],
        )
        .join(ca, ca.c.id == D.checkpoint_a_id)
        .join(cb, cb.c.id == D.checkpoint_b_id)
        .join(Sample, Sample.id == D.sample_pk)
        .order_by(D.checkpoint_b_id, D.method, D.sample_pk)
    )
    if selection:
        stmt = stmt.where(D.selection == selection)
    if methods:
        stmt = stmt.where(D.method.in_(list(methods)))
    return _frame(stmt)


def checkpoint_accuracy() -> pd.DataFrame:
    """Test accuracy per checkpoint from its ``Prediction`` rows on test-split samples
    (falls back to all its predictions when none are on the test split)."""
    from db import Prediction, Sample

    df = _frame(
        select(Prediction.checkpoint_id, Prediction.correct, Sample.split).join(Sample, Sample.id == Prediction.sample_pk)
    )
    if df.empty:
        return pd.DataFrame(columns=["checkpoint_id", "accuracy", "n_predictions"])
    df["correct"] = df["correct"].astype(float)
    test = df[df["split"] == "test"]
    use = test if not test.empty else df
    # checkpoints without test predictions fall back to all of theirs
    missing = set(df["checkpoint_id"]) - set(use["checkpoint_id"])
    use = pd.concat([use, df[df["checkpoint_id"].isin(missing)]])
    out = use.groupby("checkpoint_id")["correct"].agg(["mean", "size"]).reset_index()
    return out.rename(columns={"mean": "accuracy", "size": "n_predictions"})


def checkpoint_info() -> pd.DataFrame:
    """Per checkpoint: ``checkpoint_id, checkpoint`` (name), ``arch, pretrain, degree, num_classes``
    and its test ``accuracy`` / ``n_predictions`` (:func:`checkpoint_accuracy`; NaN / 0 without)."""
    from db import Checkpoint

    info = _frame(select(Checkpoint.id.label("checkpoint_id"), Checkpoint.name.label("checkpoint"), Checkpoint.arch,
                         Checkpoint.pretrain, Checkpoint.degree, Checkpoint.num_classes))
    out = info.merge(checkpoint_accuracy(), on="checkpoint_id", how="left")
    out["n_predictions"] = out["n_predictions"].fillna(0).astype(int)
    return out


def benchmark_table(selection: str = "correct", metrics: tuple[str, ...] = GROUND_TRUTH_KEYS,
                    n_boot: int = 1000) -> pd.DataFrame:
    """Mean, median and bootstrap 95% CI per (method, pre-training, degree) and metric."""
    return summarise(gt_frame(selection), ["method", "pretrain", "degree"], list(metrics), n_boot=n_boot)


def accuracy_frame(method: str, metric: str = "precision", selection: str = "correct") -> pd.DataFrame:
    """Per checkpoint: mean ``metric`` of ``method`` maps next to the checkpoint's test accuracy."""
    df = gt_frame(selection, methods=[method])
    if df.empty:
        return pd.DataFrame(columns=[*CHECKPOINT_COLS, metric, "n", "accuracy"])
    per = df.groupby(CHECKPOINT_COLS, dropna=False)[metric].agg(["mean", "size"]).reset_index()
    per = per.rename(columns={"mean": metric, "size": "n"})
    return sort_by_degree(per.merge(checkpoint_accuracy(), on="checkpoint_id", how="left"),
                          ["arch", "pretrain", "degree", "checkpoint_id"])


def accuracy_effect(method: str, metric: str = "precision", selection: str = "correct",
                    reference: str | None = None) -> dict[str, Any]:
    """The accuracy-controlled pre-training effect for one method (see
    :func:`xai_core.metrics.statistics.accuracy_controlled_effect`)."""
    frame = accuracy_frame(method, metric, selection).dropna(subset=["accuracy"])
    return accuracy_controlled_effect(frame, performance=metric, reference=reference)


def drift_table(n_boot: int = 1000, metrics: tuple[str, ...] = DRIFT_KEYS) -> pd.DataFrame:
    """Mean, median and bootstrap 95% CI per (architecture, method) and drift metric."""
    return summarise(drift_frame(), ["arch", "method"], list(metrics), n_boot=n_boot)


def reversal_table(metric: str = "iou_top20") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(stability ranking of architectures per method, Kendall tau + reversal flags per method pair)."""
    ranking = stability_ranking(drift_frame(), metric=metric)
    return ranking, ranking_agreement(ranking)


TABLES = {
    "gt-metrics": "per-sample ground-truth metrics (all selections)",
    "drift-metrics": "per-sample drift metrics",
    "benchmark": "ground-truth summary per method x pre-training x degree with CIs",
    "drift-summary": "drift summary per architecture x method with CIs",
    "rankings": "architecture stability ranking per method (iou_top20)",
    "reversals": "Kendall tau between methods' rankings and reversal flags",
    "accuracy": "per-checkpoint mean metric and test accuracy",
}


def table(name: str, **options: Any) -> pd.DataFrame:
    """One of :data:`TABLES` as a DataFrame (options: selection, method, metric, n_boot)."""
    selection = options.get("selection", "correct")
    n_boot = int(options.get("n_boot", 1000))
    metric = options.get("metric")
    if name == "gt-metrics":
        return gt_frame("all")
    if name == "drift-metrics":
        return drift_frame()
    if name == "benchmark":
        return benchmark_table(selection, n_boot=n_boot)
    if name == "drift-summary":
        return drift_table(n_boot=n_boot)
    if name == "rankings":
        return reversal_table(metric or "iou_top20")[0]
    if name == "reversals":
        return reversal_table(metric or "iou_top20")[1]
    if name == "accuracy":
        names = sorted(set(gt_frame("all")["method"]))
        frames = [accuracy_frame(m, metric or "precision", selection).assign(method=m) for m in names]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    raise ConfigError(f"unknown table {name!r}; choose one of {', '.join(TABLES)}")


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix) atomically (temp file, then ``os.replace``)."""
    out = Path(path).expanduser()
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"cannot export to {out.name!r}: use a .csv or .parquet file name")
    if not out.parent.exists():
        raise InputFileError(f"folder {out.parent} does not exist; create it or choose another output path")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def export_table(name: str, path: str | Path, **options: Any) -> tuple[Path, int]:
    """Export table ``name`` to ``path`` (.csv or .parquet); returns (path, number of rows)."""
    frame = table(name, **options)
    if frame.empty:
        raise WorkspaceError(
            f"table {name!r} is empty; compute metrics first with `xaudit evaluate` and `xaudit drift`"
        )
    return write_frame(frame, path), int(len(frame))


def sample_metrics(selection: str, method: str, metric: str, checkpoint_id: int | None = None) -> pd.DataFrame:
    """Rows of one method (and optionally checkpoint) sorted by ``metric`` (the page's click-through)."""
    df = gt_frame(selection, methods=[method])
    if checkpoint_id is not None:
        df = df[df["checkpoint_id"] == checkpoint_id]
    return df.sort_values(metric, kind="stable").reset_index(drop=True)


def chance_precision(selection: str = "correct") -> float:
    """Mean lesion share ``n / HW`` of the evaluated samples (the expected precision by chance)."""
    from db import Dataset, Sample, session_scope

    df = gt_frame(selection)
    if df.empty:
        return float("nan")
    with session_scope() as session:
        sizes = dict(session.execute(select(Sample.id, Dataset.image_size).join(Dataset)).all())
    side = np.asarray([sizes[int(p)] for p in df["sample_pk"].unique()], dtype=float)
    areas = df.drop_duplicates("sample_pk")["lesion_area"].to_numpy(float)
    return float(np.mean(areas / side**2))
