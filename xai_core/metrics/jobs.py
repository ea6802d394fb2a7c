"""Jobs: ``evaluate`` (ground-truth metrics of stored maps) and ``drift`` (TL→FT drift of stored maps).

Both read attribution maps from the attribution store (``AttributionMap`` index rows + chunk
files), compute the metrics in vectorised chunks, and bulk-insert one row per sample in one DB
transaction per chunk. They are resumable: rows already stored for (checkpoint[s], method,
params hash, sample) are skipped. Progress goes through a ``(done, total, message)`` callback.

Sample selection (stored with every row):

* ``evaluate``: ``correct`` (default; the MRI study evaluates correctly classified test images),
  ``incorrect`` or ``all`` — read from the checkpoint's ``Prediction`` rows; samples without a
  lesion mask (or a mask covering the whole image) are excluded because the metrics are undefined.
* ``drift``: ``true_positive`` (default; samples whose class both checkpoints predict correctly,
  i.e. true positives of their class for both, as in the chest X-ray study) or ``all``.

Chance baselines: for every evaluated checkpoint the same samples are also scored with a random
map (``baseline_random``) and a Sobel edge map of the image (``baseline_sobel``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select

from models.checkpoints import resolve_checkpoint
from xai_core.data.dataset import cached_dataset
from xai_core.errors import ConfigError, ShapeError, UnknownNameError, WorkspaceError
from xai_core.metrics.baselines import random_maps, sobel_maps
from xai_core.metrics.drift_measures import drift_metrics
from xai_core.metrics.ground_truth import GROUND_TRUTH_KEYS, constant_maps, ground_truth_metrics
from xai_core.progress import Progress, silent

GT_SELECTIONS = ("correct", "all", "incorrect")
DRIFT_SELECTIONS = ("true_positive", "all")
BASELINE_HASH = {"baseline_random": "random-seed0", "baseline_sobel": "sobel3x3"}
DRIFT_TOP_PERCENT = (10, 20)  # the DriftMetric table stores iou_top10 and iou_top20
CHUNK = 256


@dataclass
class EvaluateResult:
    """What ``evaluate`` did for one (checkpoint, method, params hash)."""

    checkpoint_id: int
    method: str
    params_hash: str
    selection: str
    computed: int
    skipped: int
    note: str = ""

    @property
    def rows(self) -> int:
        """New rows written (alias of ``computed``)."""
        return self.computed


@dataclass
class DriftResult:
    """What ``drift`` did for one (checkpoint A, checkpoint B, method, params hash)."""

    checkpoint_a_id: int
    checkpoint_b_id: int
    method: str
    params_hash: str
    selection: str
    computed: int
    skipped: int

    @property
    def rows(self) -> int:
        """New rows written (alias of ``computed``)."""
        return self.computed


# ------------------------------------------------------------------------------------------
# lookups
# ------------------------------------------------------------------------------------------
def _map_groups(session: Any, checkpoint_id: int, methods: Sequence[str] | None) -> list[tuple[str, str]]:
    """Distinct (method, params hash) with stored maps for a checkpoint, optionally filtered."""
    from db import AttributionMap

    groups = session.execute(
        select(AttributionMap.method, AttributionMap.params_hash)
        .where(AttributionMap.checkpoint_id == checkpoint_id)
        .distinct()
        .order_by(AttributionMap.method, AttributionMap.params_hash)
    ).all()
    groups = [(m, h) for m, h in groups]
    if methods:
        have = sorted({m for m, _ in groups})
        unknown = [m for m in methods if m not in have]
        if unknown:
            raise UnknownNameError(
                f"no stored {', '.join(unknown)} maps for checkpoint {checkpoint_id} (stored: {', '.join(have) or 'none'}); "
                f"run `xaudit explain --checkpoint {checkpoint_id} --methods {','.join(unknown)}` first"
            )
        groups = [(m, h) for m, h in groups if m in set(methods)]
    return groups


def _predictions(session: Any, checkpoint_id: int) -> dict[int, tuple[int, bool]]:
    from db import Prediction

    rows = session.execute(
        select(Prediction.sample_pk, Prediction.pred, Prediction.correct).where(Prediction.checkpoint_id == checkpoint_id)
    ).all()
    return {int(pk): (int(pred), bool(ok)) for pk, pred, ok in rows}


def _require_predictions(preds: dict[int, tuple[int, bool]], checkpoint: Any) -> None:
    if not preds:
        raise WorkspaceError(
            f"checkpoint {checkpoint.name!r} has no stored predictions, so correct/incorrect samples are unknown; "
            "train it with `xaudit train` (which stores test predictions) or re-import it"
        )


# ------------------------------------------------------------------------------------------
# reading maps, masks and images
# ------------------------------------------------------------------------------------------
def read_stored_maps(checkpoint_id: int, method: str, phash: str, sample_pks: Sequence[int]) -> np.ndarray:
    """``(N, H, W)`` float32 stored maps for (checkpoint, method, params hash or its prefix)."""
    from xai_core.attribution.store import read_maps_by_hash

    return read_maps_by_hash(checkpoint_id, method, phash, sample_pks).maps


def _dataset_arrays(session: Any, sample_pks: Sequence[int], dataset: Any = None) -> tuple[Any, dict[int, int]]:
    """The (cached) dataset holding ``sample_pks`` and a map sample pk -> row in it."""
    from db import Dataset, Sample

    if dataset is not None:
        pks = np.asarray(dataset.sample_pks, dtype=np.int64)
        pos = {int(p): i for i, p in enumerate(pks.tolist())}
        missing = [int(p) for p in sample_pks if int(p) not in pos]
        if missing:
            raise WorkspaceError(f"sample {missing[0]} is not in the given dataset; pass the dataset the maps were made on")
        return dataset, pos
    ids = session.scalars(select(Sample.dataset_id).where(Sample.id.in_([int(p) for p in sample_pks])).distinct()).all()
    if len(ids) != 1:
        raise WorkspaceError(
            f"the samples span {len(ids)} datasets; evaluate one dataset's maps at a time"
            if ids else "the samples are not in the database; rebuild the dataset with `xaudit data build`"
        )
    ds_row = session.get(Dataset, ids[0])
    ds = cached_dataset(ds_row.name)
    pks = np.asarray(ds.sample_pks, dtype=np.int64)
    return ds, {int(p): i for i, p in enumerate(pks.tolist())}


def _masks_and_images(session: Any, sample_pks: Sequence[int], need_images: bool,
                      dataset: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    ds, pos = _dataset_arrays(session, sample_pks, dataset)
    idx = np.asarray([pos[int(p)] for p in sample_pks], dtype=np.int64)
    masks = np.asarray(ds.masks)[idx].astype(bool)
    images = np.asarray(ds.images)[idx].astype(np.float32) if need_images else None
    return masks, images


# ------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------
def _select_gt(preds: dict[int, tuple[int, bool]], pks: Iterable[int], selection: str) -> list[int]:
    keep = []
    for pk in sorted({int(p) for p in pks}):
        if pk not in preds:
            continue
        ok = preds[pk][1]
        if selection == "all" or (selection == "correct" and ok) or (selection == "incorrect" and not ok):
            keep.append(pk)
    return keep


def _stored_gt(session: Any, checkpoint_id: int, method: str, phash: str) -> set[int]:
    from db import GroundTruthMetric

    return set(
        session.scalars(
            select(GroundTruthMetric.sample_pk).where(
                GroundTruthMetric.checkpoint_id == checkpoint_id,
                GroundTruthMetric.method == method,
                GroundTruthMetric.params_hash == phash,
            )
        ).all()
    )


def _gt_rows(checkpoint_id: int, method: str, phash: str, selection: str, pks: Sequence[int],
             preds: dict[int, tuple[int, bool]], maps: np.ndarray, masks: np.ndarray, n_directions: int) -> list[dict[str, Any]]:
    if maps.shape != masks.shape:
        raise ShapeError(
            f"{method} maps of checkpoint {checkpoint_id} are {maps.shape[1:]} but the lesion masks are {masks.shape[1:]}; "
            "explain at the dataset's image size"
        )
    values = ground_truth_metrics(maps, masks, n_directions=n_directions)
    const = constant_maps(maps)
    cols = {k: values[k].tolist() for k in GROUND_TRUTH_KEYS}
    return [
        {
            "checkpoint_id": checkpoint_id, "method": method, "params_hash": phash, "sample_pk": int(pk),
            "selection": selection, "correct": preds[int(pk)][1], "constant_map": bool(const[i]),
            **{k: float(cols[k][i]) for k in GROUND_TRUTH_KEYS},
        }
        for i, pk in enumerate(pks)
    ]


def _insert(model: Any, rows: list[dict[str, Any]]) -> None:
    from db import session_scope

    if rows:
        with session_scope() as session:  # one transaction per chunk
            session.execute(insert(model), rows)


def evaluate(
    checkpoints: Sequence[int | str] | None = None,
    methods: Sequence[str] | None = None,
    selection: str = "correct",
    baselines: bool = True,
    progress: Progress = silent,
    *,
    chunk_size: int = CHUNK,
    n_directions: int = 8,
    dataset: Any = None,
) -> list[EvaluateResult]:
    """Ground-truth metrics of every stored map of ``checkpoints`` (default: all with maps).

    For each (checkpoint, method, params hash): the selected samples that have a lesion mask,
    minus those already stored, in chunks of ``chunk_size``: read maps and masks, compute
    :func:`ground_truth_metrics`, insert ``GroundTruthMetric`` rows (one transaction per chunk).
    With ``baselines`` the union of those samples is also scored with ``baseline_random`` and
    ``baseline_sobel``. Returns one :class:`EvaluateResult` per group.

    Masks (and images for the Sobel baseline) come from ``xai_core.data.load_dataset`` of the
    samples' dataset, or from ``dataset`` when the caller already holds it loaded (anything with
    ``images``, ``masks`` and ``sample_pks`` arrays, e.g. a ``LoadedDataset``).
    """
    from db import AttributionMap, Checkpoint, GroundTruthMetric, session_scope

    if selection not in GT_SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(GT_SELECTIONS)} (got {selection!r})")
    plans: list[tuple[int, str, str, list[int], int, dict[int, tuple[int, bool]]]] = []
    notes: list[EvaluateResult] = []
    with session_scope() as session:
        if checkpoints:
            ckpts = [resolve_checkpoint(ref) for ref in checkpoints]
        else:
            ids = session.scalars(select(AttributionMap.checkpoint_id).distinct()).all()
            ckpts = [session.get(Checkpoint, i) for i in sorted(ids)]
        if not ckpts:
            raise WorkspaceError("no attribution maps are stored yet; run `xaudit explain` first")
        problems: list[str] = []
        for ck in ckpts:
            groups = _map_groups(session, ck.id, methods)
            if not groups:  # only possible for an explicitly requested checkpoint
                problems.append(f"checkpoint {ck.name!r} has no stored attribution maps; "
                                f"run `xaudit explain --checkpoint {ck.id}` first")
                notes.append(EvaluateResult(ck.id, "-", "-", selection, 0, 0, "skipped: no stored maps"))
                continue
            preds = _predictions(session, ck.id)
            if not preds:  # skip it and say so; an error only when nothing can be evaluated
                problems.append(f"checkpoint {ck.name!r} has no stored predictions, so correct/incorrect samples "
                                "are unknown; train it with `xaudit train` (which stores test predictions)")
                notes.append(EvaluateResult(ck.id, "-", "-", selection, 0, 0, "skipped: no stored predictions"))
                continue
            union: set[int] = set()
            for method, phash in groups:
                pks = session.scalars(
                    select(AttributionMap.sample_pk).where(
                        AttributionMap.checkpoint_id == ck.id, AttributionMap.method == method,
                        AttributionMap.params_hash == phash)
                ).all()
                chosen = _select_gt(preds, pks, selection)
                union.update(chosen)
                done = _stored_gt(session, ck.id, method, phash)
                todo = [p for p in chosen if p not in done]
                plans.append((ck.id, method, phash, todo, len(chosen) - len(todo), preds))
            if baselines and union:
                for base, phash in BASELINE_HASH.items():
                    done = _stored_gt(session, ck.id, base, phash)
                    todo = sorted(p for p in union if p not in done)
                    plans.append((ck.id, base, phash, todo, len(union) - len(todo), preds))
        if not plans and problems:
            raise WorkspaceError(problems[0])
    total = sum(len(p[3]) for p in plans)
    done_n = 0
    progress(0, total, "evaluate")
    results = []
    for ck_id, method, phash, todo, skipped, preds in plans:
        written = 0
        for start in range(0, len(todo), chunk_size):
            pks = todo[start : start + chunk_size]
            with session_scope() as session:
                masks, images = _masks_and_images(session, pks, method == "baseline_sobel", dataset)
            area = masks.reshape(len(pks), -1).sum(axis=1)
            keep = (area > 0) & (area < masks[0].size)  # metrics are undefined without lesion / background
            done_n += len(pks) - int(keep.sum())
            if not keep.all():
                pks = [p for p, k in zip(pks, keep.tolist()) if k]
                masks = masks[keep]
                images = None if images is None else images[keep]
            if not pks:
                progress(done_n, total, f"checkpoint {ck_id} {method}")
                continue
            if method == "baseline_random":
                maps = random_maps(np.asarray(pks), masks.shape[1], masks.shape[2], seed=0)
            elif method == "baseline_sobel":
                assert images is not None
                maps = sobel_maps(images)
            else:
                maps = read_stored_maps(ck_id, method, phash, pks)
            _insert(GroundTruthMetric, _gt_rows(ck_id, method, phash, selection, pks, preds, maps, masks, n_directions))
            written += len(pks)
            done_n += len(pks)
            progress(done_n, total, f"checkpoint {ck_id} {method}")
        results.append(EvaluateResult(ck_id, method, phash, selection, written, skipped))
    return results + notes


# ------------------------------------------------------------------------------------------
# drift
# ------------------------------------------------------------------------------------------
def default_pairs(session: Any) -> list[tuple[int, int]]:
    """(TL, FT) checkpoint pairs: every ``phase='ft'`` checkpoint whose parent has ``phase='tl'``."""
    from db import Checkpoint

    parent = Checkpoint.__table__.alias("parent")
    rows = session.execute(
        select(parent.c.id, Checkpoint.id)
        .join(parent, parent.c.id == Checkpoint.parent_id)
        .where(Checkpoint.phase == "ft", parent.c.phase == "tl")
        .order_by(Checkpoint.id)
    ).all()
    return [(int(a), int(b)) for a, b in rows]


def _stored_drift(session: Any, a: int, b: int, method: str, phash: str) -> set[int]:
    from db import DriftMetric

    return set(
        session.scalars(
            select(DriftMetric.sample_pk).where(
                DriftMetric.checkpoint_a_id == a, DriftMetric.checkpoint_b_id == b,
                DriftMetric.method == method, DriftMetric.params_hash == phash)
        ).all()
    )


def drift_label(method_a: str, hash_a: str, method_b: str, hash_b: str) -> tuple[str, str]:
    """(method, params_hash) stored in ``DriftMetric``: the method and its hash when both sides use
    the same ones, else ``"m_a:m_b"`` and ``"<hash_a[:31]>:<hash_b[:31]>"`` (cross-method drift)."""
    if method_a == method_b and hash_a == hash_b:
        return method_a, hash_a
    return f"{method_a}:{method_b}", f"{hash_a[:31]}:{hash_b[:31]}"


def split_drift_label(method: str, params_hash: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Inverse of :func:`drift_label`: ((method A, hash or prefix), (method B, hash or prefix))."""
    if ":" in method:
        ma, mb = method.split(":", 1)
        ha, hb = params_hash.split(":", 1)
        return (ma, ha), (mb, hb)
    return (method, params_hash), (method, params_hash)


def _comparisons(ga: set[tuple[str, str]], gb: set[tuple[str, str]], methods: Sequence[str] | None,
                 a: int, b: int) -> list[tuple[str, str, str, str]]:
    """(method A, hash A, method B, hash B) to compare for one checkpoint pair.

    ``methods`` entries are a method name (same method on both sides) or ``"m_a:m_b"`` (method
    ``m_a`` of checkpoint A against ``m_b`` of checkpoint B); default: every method stored for both.
    """
    specs = list(methods) if methods else sorted({m for m, _ in ga} & {m for m, _ in gb})
    out: list[tuple[str, str, str, str]] = []
    for spec in specs:
        ma, _, mb = spec.partition(":")
        mb = mb or ma
        if ma == mb:
            found = [(m, h, m, h) for m, h in sorted(ga & gb) if m == ma]
        else:
            found = [(ma, ha, mb, hb) for m1, ha in sorted(ga) if m1 == ma for m2, hb in sorted(gb) if m2 == mb]
        if not found:
            raise UnknownNameError(
                f"no {spec} maps stored for checkpoints {a} and {b}; "
                f"run `xaudit explain` on both with --methods {','.join(sorted({ma, mb}))}"
            )
        out.extend(found)
    return out


def drift(
    pairs: Sequence[tuple[int | str, int | str]] | None = None,
    methods: Sequence[str] | None = None,
    selection: str = "true_positive",
    progress: Progress = silent,
    *,
    chunk_size: int = CHUNK,
) -> list[DriftResult]:
    """Drift metrics between the stored maps of checkpoint pairs ``(A, B)`` (default: TL→FT pairs).

    Any two checkpoints (e.g. two epochs) can be paired; ``methods`` may also name cross-method
    comparisons ``"m_a:m_b"`` (then A may equal B: two methods on one checkpoint). For each pair
    and comparison: samples with maps on both sides, filtered by ``selection``, minus those
    stored; :func:`drift_metrics` (A → B) per chunk, one transaction per chunk of ``DriftMetric`` rows.
    """
    from db import AttributionMap, DriftMetric, session_scope

    if selection not in DRIFT_SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(DRIFT_SELECTIONS)} (got {selection!r})")
    plans: list[tuple[int, int, tuple[str, str, str, str], list[int], int]] = []
    with session_scope() as session:
        if pairs:
            id_pairs = [(resolve_checkpoint(a).id, resolve_checkpoint(b).id) for a, b in pairs]
        else:
            id_pairs = default_pairs(session)
        if not id_pairs:
            raise WorkspaceError(
                "no TL→FT checkpoint pairs found; train a pair with `xaudit train --protocol tl-ft` "
                "or pass --pair A:B with two checkpoint ids or names"
            )
        for a, b in id_pairs:
            comps = _comparisons(set(_map_groups(session, a, None)), set(_map_groups(session, b, None)), methods, a, b)
            if a == b and any(ma == mb and ha == hb for ma, ha, mb, hb in comps):
                raise ConfigError(
                    f"pair {a}:{b} compares a checkpoint with itself; give two different checkpoints "
                    "or cross-method comparisons like --methods gradcam:layercam"
                )
            preds_a = _predictions(session, a)
            preds_b = _predictions(session, b)
            if selection == "true_positive":
                for ck_id, preds in ((a, preds_a), (b, preds_b)):
                    if not preds:
                        _require_predictions(preds, resolve_checkpoint(ck_id))
            for ma, ha, mb, hb in comps:
                sets = []
                for ck_id, m, h in ((a, ma, ha), (b, mb, hb)):
                    sets.append(set(session.scalars(select(AttributionMap.sample_pk).where(
                        AttributionMap.checkpoint_id == ck_id, AttributionMap.method == m,
                        AttributionMap.params_hash == h)).all()))
                both = sets[0] & sets[1]
                if selection == "true_positive":
                    both = {p for p in both if preds_a.get(p, (0, False))[1] and preds_b.get(p, (0, False))[1]}
                label, lhash = drift_label(ma, ha, mb, hb)
                done = _stored_drift(session, a, b, label, lhash)
                todo = sorted(p for p in both if p not in done)
                plans.append((a, b, (ma, ha, mb, hb), todo, len(both) - len(todo)))
    total = sum(len(p[3]) for p in plans)
    done_n = 0
    progress(0, total, "drift")
    results = []
    for a, b, (ma, ha, mb, hb), todo, skipped in plans:
        label, lhash = drift_label(ma, ha, mb, hb)
        for start in range(0, len(todo), chunk_size):
            pks = todo[start : start + chunk_size]
            maps_a = read_stored_maps(a, ma, ha, pks)
            maps_b = read_stored_maps(b, mb, hb, pks)
            if maps_a.shape != maps_b.shape:
                raise ShapeError(
                    f"{label} maps of checkpoints {a} and {b} differ in size ({maps_a.shape[1:]} vs {maps_b.shape[1:]}); "
                    "explain both at the same input size"
                )
            values = drift_metrics(maps_a, maps_b, top_percent=DRIFT_TOP_PERCENT)
            cols = {k: v.tolist() for k, v in values.items()}
            rows = [
                {"checkpoint_a_id": a, "checkpoint_b_id": b, "method": label, "params_hash": lhash,
                 "sample_pk": int(pk), "selection": selection, **{k: float(cols[k][i]) for k in cols}}
                for i, pk in enumerate(pks)
            ]
            _insert(DriftMetric, rows)
            done_n += len(pks)
            progress(done_n, total, f"{a}→{b} {label}")
        results.append(DriftResult(a, b, label, lhash, selection, len(todo), skipped))
    return results


def count_rows() -> dict[str, int]:
    """Number of stored ground-truth and drift rows (the pages' empty-workspace check)."""
    from db import DriftMetric, GroundTruthMetric, session_scope

    with session_scope() as session:
        return {
            "gt_metrics": int(session.scalar(select(func.count(GroundTruthMetric.id))) or 0),
            "drift_metrics": int(session.scalar(select(func.count(DriftMetric.id))) or 0),
        }
