"""Aggregated queries behind the Benchmark and Drift pages, and CSV/Parquet export of any table.

Every function returns a pandas DataFrame built from the stored per-sample rows; the pages only
display them. Metric values are stored long (one row per metric); :func:`gt_frame` and
:func:`drift_frame` read them in one query pivoted by the database (:func:`pivoted`) to one
column per registered metric, the wide layout of the pages and of ``export_table(name, path)``,
which writes one of :data:`TABLES` atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import case, func, select

from db import Checkpoint, Dataset, DriftMetric, GroundTruthMetric, Prediction, Sample, get_engine, session_scope
from xai_core.errors import ConfigError, InputFileError, WorkspaceError
from xai_core.metrics.drift_job import CROSS_METHODS, comparison_label
from xai_core.metrics.evaluate_job import GT_SELECTIONS
from xai_core.metrics.order import sort_by_degree
from xai_core.metrics.registry import get_drift_metric, get_ground_truth_metric, list_drift_metrics, list_ground_truth_metrics
from xai_core.metrics.statistics import (
    NEAR_CHANCE_MARGIN,
    clustered_summary,
    near_chance,
    ranking_uncertainty,
    stability_ranking,
    summarise,
)

CHECKPOINT_COLS = ["checkpoint_id", "checkpoint", "arch", "pretrain", "degree", "phase"]
GT_KEY = ["checkpoint_id", "method", "params_hash", "sample_pk"]  # one map
DRIFT_KEY = ["checkpoint_a_id", "checkpoint_b_id", "method_a", "params_hash_a", "method_b", "params_hash_b",
             "sample_pk"]  # one map pair


def read_frame(statement: Any) -> pd.DataFrame:
    with get_engine().connect() as conn:
        return pd.read_sql(statement, conn)


def count_rows() -> dict[str, int]:
    """Number of stored ground-truth and drift metric values (the pages' empty-workspace check)."""
    with session_scope() as session:  # count(*), which SQLite answers from the b-tree without reading rows
        return {model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (GroundTruthMetric, DriftMetric)}


def pivoted(model: Any, key: list[str], names: list[str], *where: Any) -> Any:
    """Subquery of ``model``'s long rows (``GroundTruthMetric`` / ``DriftMetric``) with one row per
    ``key`` and one column per metric of ``names`` (NULL where a value is not stored), plus the
    row's ``selection`` and, for ground-truth rows, ``correct`` and ``constant_map``.

    The pivot runs in the database (``MAX(CASE WHEN metric = :name THEN value END)`` grouped by
    ``key``, in the unique index's order), so a page reads one row per map as before the long
    form, not one per value: 4-5x less to transfer and convert (bench/metric_storage.py).
    """
    flags = [func.max(case((getattr(model, c), 1), else_=0)).label(c) for c in ("correct", "constant_map")
             if hasattr(model, c)]
    return (
        select(*[getattr(model, c) for c in key], func.min(model.selection).label("selection"), *flags,
               *[func.max(case((model.metric == k, model.value))).label(k) for k in names])
        .where(model.metric.in_(names), *where)
        .group_by(*[getattr(model, c) for c in key])
        .subquery()
    )


def _selected(selection: str) -> list[Any]:
    """WHERE clauses of ground-truth rows for ``selection`` (the row's ``correct`` flag)."""
    if selection not in GT_SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(GT_SELECTIONS)} (got {selection!r})")
    flag = {"correct": True, "incorrect": False}.get(selection)
    return [] if flag is None else [GroundTruthMetric.correct.is_(flag)]


def gt_frame(selection: str = "correct", methods: list[str] | None = None,
             metrics: list[str] | None = None) -> pd.DataFrame:
    """Per-map ground-truth rows joined with checkpoint and sample columns, one column per metric
    (``metrics``, default: every registered ground-truth metric; NaN where not evaluated).

    ``selection`` filters on each row's ``correct`` flag (``correct``, ``incorrect``, ``all``).
    One query of the long rows, pivoted in pandas.
    """
    names = list(metrics) if metrics else list_ground_truth_metrics()
    where = [*_selected(selection), *([GroundTruthMetric.method.in_(list(methods))] if methods else [])]
    g = pivoted(GroundTruthMetric, GT_KEY, names, *where)
    stmt = (
        select(
            g.c.checkpoint_id, Checkpoint.name.label("checkpoint"), Checkpoint.arch, Checkpoint.pretrain,
            Checkpoint.degree, Checkpoint.phase, g.c.method, g.c.params_hash, g.c.sample_pk,
            Sample.sample_id, Sample.label, Sample.lesion_area, g.c.selection, g.c.correct, g.c.constant_map,
            *[g.c[k] for k in names],
        )
        .join(Checkpoint, Checkpoint.id == g.c.checkpoint_id)
        .join(Sample, Sample.id == g.c.sample_pk)
        .order_by(*[g.c[c] for c in GT_KEY])
    )
    df = read_frame(stmt)
    df["degree"] = df["degree"].fillna("-")
    df["correct"] = df["correct"].astype(bool)
    df["constant_map"] = df["constant_map"].astype(bool)
    return df.astype({k: float for k in names})


# What a drift row compares (drift_frame's ``kind``): the final TL→FT pair, a TL→epoch pair of the
# fine-tuning run (drift along training), two methods on the same checkpoint, or any other pair.
DRIFT_KINDS = ("tl-ft", "epoch", "cross-method", "other")


def _kind_where(kind: str) -> list[Any]:
    """WHERE clauses on ``DriftMetric`` rows selecting one of :data:`DRIFT_KINDS` (``all``: none)."""
    if kind == "all":
        return []
    if kind not in DRIFT_KINDS:
        raise ConfigError(f"drift kind must be one of {', '.join(DRIFT_KINDS)} or all (got {kind!r})")
    d = DriftMetric
    if kind == "cross-method":
        return [d.checkpoint_a_id == d.checkpoint_b_id]
    phase_of_b = {"tl-ft": ["ft"], "epoch": ["epoch"]}.get(kind)
    b_in = select(Checkpoint.id).where(Checkpoint.phase.in_(phase_of_b or ["ft", "epoch"]))
    return [d.checkpoint_a_id != d.checkpoint_b_id,
            d.checkpoint_b_id.in_(b_in) if phase_of_b else d.checkpoint_b_id.not_in(b_in)]


def drift_frame(selection: str | None = None, methods: list[str] | None = None,
                metrics: list[str] | None = None, kind: str = "tl-ft") -> pd.DataFrame:
    """Per-pair drift rows with the samples' ``dataset``, both checkpoints' names, B's architecture/pre-training, both
    sides' phase and degree and B's epoch (``phase_a, degree_a, phase_b, degree_b, epoch_b``), the
    row's ``kind`` (:data:`DRIFT_KINDS`), the comparison's label ``method`` (``m`` or ``m_a:m_b``,
    see :func:`comparison_label`; what ``methods`` filters on) next to both sides' method and
    params hash, and one column per metric (``metrics``, default: every registered drift metric).

    ``kind`` (default ``tl-ft``): which rows — ``tl-ft`` the final fine-tuned checkpoints
    (``phase_b == 'ft'``, A ≠ B: what the pooled TL→FT tables and findings read), ``epoch``
    (``phase_b == 'epoch'``: drift along training), ``cross-method`` (A = B: two methods on one
    checkpoint), ``other``, or ``all``."""
    ca = Checkpoint.__table__.alias("ca")
    cb = Checkpoint.__table__.alias("cb")
    names = list(metrics) if metrics else list_drift_metrics()
    where = [*([DriftMetric.selection == selection] if selection else []), *_kind_where(kind)]
    d = pivoted(DriftMetric, DRIFT_KEY, names, *where)
    stmt = (
        select(
            d.c.checkpoint_a_id, ca.c.name.label("checkpoint_a"), d.c.checkpoint_b_id, cb.c.name.label("checkpoint_b"),
            Dataset.name.label("dataset"), cb.c.arch.label("arch"), cb.c.pretrain.label("pretrain"), ca.c.phase.label("phase_a"),
            ca.c.degree.label("degree_a"), cb.c.phase.label("phase_b"), cb.c.degree.label("degree_b"),
            cb.c.epoch.label("epoch_b"), d.c.method_a, d.c.params_hash_a, d.c.method_b,
            d.c.params_hash_b, d.c.sample_pk, Sample.sample_id, Sample.label, d.c.selection, *[d.c[k] for k in names],
        )
        .join(ca, ca.c.id == d.c.checkpoint_a_id)
        .join(cb, cb.c.id == d.c.checkpoint_b_id)
        .join(Sample, Sample.id == d.c.sample_pk)
        .join(Dataset, Dataset.id == Sample.dataset_id)
        .order_by(*[d.c[c] for c in DRIFT_KEY])
    )
    df = read_frame(stmt).astype({k: float for k in names})
    df["epoch_b"] = df["epoch_b"].astype("Int64")
    same = (df["checkpoint_a_id"] == df["checkpoint_b_id"]).to_numpy()
    df.insert(df.columns.get_loc("epoch_b") + 1, "kind",
              np.select([same, df["phase_b"].eq("ft").to_numpy(), df["phase_b"].eq("epoch").to_numpy()],
                        ["cross-method", "tl-ft", "epoch"], "other") if len(df) else pd.Series(dtype=object))
    df.insert(df.columns.get_loc("method_a"), "method",
              [comparison_label(a, b) for a, b in zip(df["method_a"], df["method_b"], strict=True)])
    if methods:
        df = df[df["method"].isin(list(methods))].reset_index(drop=True)
    return df


def checkpoint_accuracy() -> pd.DataFrame:
    """Test accuracy per checkpoint from its ``Prediction`` rows on test-split samples
    (falls back to all its predictions when none are on the test split)."""
    df = read_frame(
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
    """Per checkpoint: ``checkpoint_id, checkpoint`` (name), ``arch, pretrain, degree, num_classes``,
    its ``dataset`` (None for a checkpoint of no registered dataset) and its test ``accuracy`` /
    ``n_predictions`` (:func:`checkpoint_accuracy`; NaN / 0 without)."""
    info = read_frame(select(Checkpoint.id.label("checkpoint_id"), Checkpoint.name.label("checkpoint"), Checkpoint.arch,
                         Checkpoint.pretrain, Checkpoint.degree, Checkpoint.num_classes, Dataset.name.label("dataset"))
                  .outerjoin(Dataset, Dataset.id == Checkpoint.dataset_id))
    out = info.merge(checkpoint_accuracy(), on="checkpoint_id", how="left")
    out["n_predictions"] = out["n_predictions"].fillna(0).astype(int)
    return out


def benchmark_table(selection: str = "correct", metrics: list[str] | None = None, n_boot: int = 1000) -> pd.DataFrame:
    """Mean, median and bootstrap 95% CI per (method, pre-training, degree) and ground-truth metric
    (default: every registered one)."""
    names = metrics or list_ground_truth_metrics()
    return summarise(gt_frame(selection, metrics=names), ["method", "pretrain", "degree"], names, n_boot=n_boot)


def accuracy_frame(method: str, metric: str = "precision", selection: str = "correct") -> pd.DataFrame:
    """Per checkpoint: mean ``metric`` of ``method`` maps next to the checkpoint's test accuracy."""
    df = gt_frame(selection, methods=[method], metrics=[get_ground_truth_metric(metric).name])
    if df.empty:
        return pd.DataFrame(columns=[*CHECKPOINT_COLS, metric, "n", "accuracy"])
    per = df.groupby(CHECKPOINT_COLS, dropna=False)[metric].agg(["mean", "size"]).reset_index()
    per = per.rename(columns={"mean": metric, "size": "n"})
    return sort_by_degree(per.merge(checkpoint_accuracy(), on="checkpoint_id", how="left"),
                          ["arch", "pretrain", "degree", "checkpoint_id"])


def drift_table(n_boot: int = 1000, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, median and bootstrap 95% CI per (architecture, method) and drift metric (default:
    every registered one)."""
    names = metrics or list_drift_metrics()
    return summarise(drift_frame(metrics=names), ["arch", "method"], names, n_boot=n_boot)


def reversal_table(metric: str = "iou_top20", n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(stability ranking of architectures per method, Kendall tau + reversal flags per method pair
    with the tau's bootstrap CI and the share of replicates that reverse, :func:`ranking_uncertainty`),
    on the final TL→FT pairs (same method on both sides)."""
    name = get_drift_metric(metric).name
    frame = same_method(drift_frame(metrics=[name]))
    return stability_ranking(frame, metric=name), ranking_uncertainty(frame, name, n_boot=n_boot)


def same_method(frame: pd.DataFrame) -> pd.DataFrame:
    """Drift rows comparing one method with itself (A and B explained alike)."""
    return frame[frame["method_a"] == frame["method_b"]].reset_index(drop=True)


STUDY_GRAIN = ["arch", "method", "pretrain", "degree", "pair"]


def drift_study_table(n_boot: int = 1000, metrics: list[str] | None = None) -> pd.DataFrame:
    """The drift study at its grain: per (architecture, method, pre-training source, FT degree,
    TL→FT pair ``"tl-name → ft-name"``) and drift metric (default: every registered one) the
    ``n`` map pairs, ``mean``, ``median``, bootstrap 95% CI (``ci_low, ci_high``) and the
    inter-sample spread ``sd, q25, q75, iqr`` (:func:`summarise` with ``spread``); final TL→FT pairs
    only, same method on both sides."""
    names = metrics or list_drift_metrics()
    frame = same_method(drift_frame(metrics=names))
    frame = frame.assign(degree=frame["degree_b"].fillna("-"),
                         pair=frame["checkpoint_a"] + " → " + frame["checkpoint_b"])
    return summarise(frame, STUDY_GRAIN, names, n_boot=n_boot, spread=True)


def _auc(metrics: dict[str, Any] | None) -> float:
    """A checkpoint's ROC-AUC: macro one-vs-rest (``roc_auc_macro``) where stored, else ``roc_auc``."""
    m = metrics or {}
    value = m.get("roc_auc_macro", m.get("roc_auc"))
    return float("nan") if value is None else float(value)


PHASE_COLUMNS = ["dataset", "arch", "pretrain", "degree", "tl_checkpoint", "ft_checkpoint", "num_classes", "chance",
                 "tl_accuracy", "ft_accuracy", "tl_auc", "ft_auc", "tl_working", "ft_working", "both_working"]


def phase_accuracy_table(margin: float = NEAR_CHANCE_MARGIN) -> pd.DataFrame:
    """Per TL→FT pair (``phase='ft'`` child of a ``phase='tl'`` checkpoint): dataset, architecture,
    pre-training, FT degree, both checkpoints' names, test accuracy (from their stored test
    predictions, :func:`checkpoint_info`; else ``metrics['accuracy']``) and ROC-AUC (macro
    one-vs-rest with more than two classes, :func:`_auc`), chance ``1/K`` and whether each phase
    works — not near chance (:func:`near_chance`: accuracy ≥ 1/K + ``margin``), the rule the
    findings leave near-chance models out by."""
    with session_scope() as session:
        rows = session.execute(select(Checkpoint.id, Checkpoint.phase, Checkpoint.parent_id, Checkpoint.metrics)
                               .where(Checkpoint.phase.in_(["tl", "ft"]))).all()
    stored = {int(r.id): r for r in rows}
    pairs = [(int(r.parent_id), int(r.id)) for r in rows
             if r.phase == "ft" and r.parent_id is not None and getattr(stored.get(int(r.parent_id)), "phase", "") == "tl"]
    if not pairs:
        return pd.DataFrame(columns=PHASE_COLUMNS)
    info = checkpoint_info().set_index("checkpoint_id")

    def accuracy(ck: int) -> float:
        acc = info.at[ck, "accuracy"]
        fallback = (stored[ck].metrics or {}).get("accuracy")
        return float(acc) if np.isfinite(acc) else float("nan") if fallback is None else float(fallback)

    out = []
    for tl, ft in sorted(pairs, key=lambda p: p[1]):
        k = int(info.at[ft, "num_classes"])
        tl_acc, ft_acc = accuracy(tl), accuracy(ft)
        tl_ok, ft_ok = (not bool(near_chance(a, k, margin)) for a in (tl_acc, ft_acc))
        out.append({"dataset": info.at[ft, "dataset"], "arch": info.at[ft, "arch"], "pretrain": info.at[ft, "pretrain"], "degree": info.at[ft, "degree"],
                    "tl_checkpoint": info.at[tl, "checkpoint"], "ft_checkpoint": info.at[ft, "checkpoint"],
                    "num_classes": k, "chance": 1.0 / max(k, 2), "tl_accuracy": tl_acc, "ft_accuracy": ft_acc,
                    "tl_auc": _auc(stored[tl].metrics), "ft_auc": _auc(stored[ft].metrics),
                    "tl_working": tl_ok, "ft_working": ft_ok, "both_working": tl_ok and ft_ok})
    return sort_by_degree(pd.DataFrame(out, columns=PHASE_COLUMNS), ["dataset", "arch", "pretrain", "degree"])


CROSS_METRICS = ["iou_top20", "pearson", "com_displacement"]


def cross_method_table(methods: tuple[str, str] = CROSS_METHODS, n_boot: int = 1000,
                       metrics: list[str] | None = None) -> pd.DataFrame:
    """Agreement between two methods' maps of the same checkpoint (default LayerCAM vs Grad-CAM++,
    the ``cross-method`` rows of ``xaudit drift``): per architecture, pre-training, phase (``tl`` /
    ``ft``, separately) and metric (default :data:`CROSS_METRICS`: top-20% IoU, Pearson, centre-of-mass
    displacement) ``n, mean, median``, bootstrap 95% CI and ``sd, q25, q75, iqr``."""
    names = metrics or CROSS_METRICS
    label = comparison_label(*methods)
    frame = drift_frame(metrics=names, methods=[label, comparison_label(methods[1], methods[0])], kind="cross-method")
    frame = frame[frame["phase_b"].isin(["tl", "ft"])].rename(columns={"phase_b": "phase"})
    return summarise(frame, ["arch", "pretrain", "phase", "method"], names, n_boot=n_boot, spread=True)


def epoch_accuracy() -> pd.DataFrame:
    """Per epoch checkpoint (``phase='epoch'``): ``checkpoint_id, epoch``, ``val_accuracy`` — the
    validation accuracy of that epoch in its run's ``history`` (the run's final checkpoint,
    saved after its epochs: same parent and degree, named ``<run>-e<epoch>``; NaN while the run
    has not finished) — and ``test_accuracy`` (the epoch checkpoint's own ``metrics``)."""
    cols = ["checkpoint_id", "epoch", "val_accuracy", "test_accuracy"]
    with session_scope() as session:
        rows = session.execute(select(Checkpoint.id, Checkpoint.name, Checkpoint.phase, Checkpoint.parent_id,
                                      Checkpoint.degree, Checkpoint.epoch, Checkpoint.metrics, Checkpoint.history)
                               .where(Checkpoint.phase.in_(["epoch", "tl", "ft"]))).all()
    runs = {(r.name, r.parent_id, r.degree): r.history or [] for r in rows if r.phase != "epoch"}
    out = []
    for r in rows:
        if r.phase != "epoch" or r.epoch is None:
            continue
        run = r.name.removesuffix(f"-e{r.epoch}")
        history = runs.get((run, r.parent_id, r.degree), [])
        val = next((h.get("val_acc") for h in history if h.get("epoch") == r.epoch), None)
        test = (r.metrics or {}).get("accuracy")
        out.append((int(r.id), int(r.epoch), float("nan") if val is None else float(val),
                    float("nan") if test is None else float(test)))
    return pd.DataFrame(out, columns=cols)


EPOCH_COLUMNS = ["arch", "pretrain", "degree", "method", "epoch", "mean", "ci_low", "ci_high", "n", "n_clusters",
                 "val_accuracy", "test_accuracy"]


def drift_by_epoch(metric: str = "iou_top20", n_boot: int = 1000) -> pd.DataFrame:
    """Drift along fine-tuning: per (architecture, pre-training, degree of the run, method, epoch)
    the mean ``metric`` between the TL checkpoint's maps and that epoch checkpoint's (same method),
    with a 95% CI of the clustered bootstrap over images (:func:`clustered_summary`), ``n`` map pairs
    (``n_clusters`` images), and the epoch checkpoints' validation accuracy (from their run's
    history) and test accuracy (:func:`epoch_accuracy`; mean over the group's checkpoints).

    Columns :data:`EPOCH_COLUMNS`, sorted by arch, pretrain, degree, method, epoch. Rows come from
    the TL→epoch pairs of ``xaudit drift`` (train with ``--protocol tl-ft --save-every 1``)."""
    name = get_drift_metric(metric).name
    frame = drift_frame(metrics=[name], kind="epoch")
    frame = frame[(frame["phase_a"] == "tl") & (frame["method_a"] == frame["method_b"])]
    if frame.empty:
        return pd.DataFrame(columns=EPOCH_COLUMNS)
    frame = frame.assign(epoch=frame["epoch_b"].astype(int), degree=frame["degree_b"].fillna("-"))
    by = ["arch", "pretrain", "degree", "method", "epoch"]
    summary = clustered_summary(frame, name, by, n_boot=n_boot)
    acc = (frame[[*by, "checkpoint_b_id"]].drop_duplicates()
           .merge(epoch_accuracy().drop(columns="epoch"), left_on="checkpoint_b_id", right_on="checkpoint_id",
                  how="left")
           .groupby(by, as_index=False)[["val_accuracy", "test_accuracy"]].mean())
    out = summary.merge(acc, on=by, how="left")
    return sort_by_degree(out[EPOCH_COLUMNS], by)


TABLES = {
    "gt-metrics": "per-sample ground-truth metrics (all selections)",
    "drift-metrics": "per-sample drift metrics (every kind: TL→FT, TL→epoch, cross-method)",
    "benchmark": "ground-truth summary per method x pre-training x degree with CIs",
    "drift-summary": "drift summary per architecture x method with CIs",
    "rankings": "architecture stability ranking per method (iou_top20)",
    "reversals": "Kendall tau between methods' rankings, its bootstrap CI, reversal flags and replicate share",
    "accuracy": "per-checkpoint mean metric and test accuracy",
    "drift-study": "drift per architecture x method x pre-training x TL→FT pair with SD, IQR and CIs",
    "phase-accuracy": "TL vs FT test accuracy and AUC per TL→FT pair, and whether each phase works",
    "cross-method": "LayerCAM vs Grad-CAM++ agreement on the same checkpoint per architecture, TL and FT",
    "drift-epochs": "drift of each FT epoch checkpoint vs TL per architecture x method x epoch with CIs (iou_top20)",
}


def table(name: str, **options: Any) -> pd.DataFrame:
    """One of :data:`TABLES` as a DataFrame (options: selection, method, metric, n_boot)."""
    selection = options.get("selection", "correct")
    n_boot = int(options.get("n_boot", 1000))
    metric = options.get("metric")
    if name == "gt-metrics":
        return gt_frame("all")
    if name == "drift-metrics":
        return drift_frame(kind="all")
    if name == "benchmark":
        return benchmark_table(selection, n_boot=n_boot)
    if name == "drift-summary":
        return drift_table(n_boot=n_boot)
    if name == "rankings":
        return reversal_table(metric or "iou_top20", n_boot=n_boot)[0]
    if name == "reversals":
        return reversal_table(metric or "iou_top20", n_boot=n_boot)[1]
    if name == "drift-study":
        return drift_study_table(n_boot=n_boot)
    if name == "phase-accuracy":
        return phase_accuracy_table()
    if name == "cross-method":
        return cross_method_table(n_boot=n_boot)
    if name == "drift-epochs":
        return drift_by_epoch(metric or "iou_top20", n_boot=n_boot)
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


def chance_precision(selection: str = "correct") -> float:
    """Mean lesion share ``n / HW`` of the evaluated samples (the expected precision by chance)."""
    evaluated = select(GroundTruthMetric.sample_pk).where(*_selected(selection)).distinct()
    df = read_frame(select(Sample.lesion_area, Dataset.image_size).join(Dataset).where(Sample.id.in_(evaluated)))
    if df.empty:
        return float("nan")
    return float(np.mean(df["lesion_area"].to_numpy(float) / df["image_size"].to_numpy(float) ** 2))
