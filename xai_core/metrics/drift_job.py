"""``drift``: the registered drift metrics between the stored maps of two checkpoints (TL → FT by default).

Default pairs (:func:`default_pairs`): every TL → FT pair (``phase='ft'`` child of a ``phase='tl'``
checkpoint) and every TL → epoch pair (the ``phase='epoch'`` checkpoints the tl-ft protocol saves
during full fine-tuning with ``save_every``, whose parent is the TL checkpoint): drift along
training. Cross-method comparisons on one checkpoint (:data:`CROSS_METHODS`: LayerCAM vs
Grad-CAM++ maps of the same TL or FT checkpoint) give the cross-method agreement per architecture.

Reads both checkpoints' maps from the attribution store, computes every registered drift metric
(or the ones named) A → B in vectorised chunks and bulk-inserts one ``DriftMetric`` row per
(sample, metric) in one DB transaction per chunk; each row names both sides' method and params
hash. Resumable per metric, like ``evaluate``.

Sample selection (stored with every row): ``true_positive`` (default; samples whose class both
checkpoints predict correctly, i.e. true positives of their class for both, as in the chest X-ray
study) or ``all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from sqlalchemy import select

from db import Checkpoint, DriftMetric, session_scope
from models.checkpoints import resolve_checkpoint
from xai_core.attribution.registry import get_method
from xai_core.errors import ConfigError, ShapeError, UnknownNameError, WorkspaceError
from xai_core.metrics.drift_measures import drift_metrics
from xai_core.metrics.registry import get_drift_metric, list_drift_metrics
from xai_core.metrics.stored import (
    CHUNK,
    insert_rows,
    long_rows,
    map_groups,
    map_samples,
    missing,
    needed,
    no_predictions,
    predictions,
    read_stored_maps,
    stored_metrics,
)
from xai_core.progress import Progress, silent

DRIFT_SELECTIONS = ("true_positive", "all")
# the two methods of the chest X-ray study, compared on the same checkpoint by default (registry names)
CROSS_METHODS = ("layercam", "gradcam_plus_plus")


def comparison_label(method_a: str, method_b: str) -> str:
    """How tables name a comparison: the method, or ``"m_a:m_b"`` across methods."""
    return method_a if method_a == method_b else f"{method_a}:{method_b}"


@dataclass
class DriftResult:
    """What ``drift`` did for one (checkpoint A, checkpoint B, method A and hash, method B and hash)."""

    checkpoint_a_id: int
    checkpoint_b_id: int
    method_a: str
    params_hash_a: str
    method_b: str
    params_hash_b: str
    selection: str
    computed: int  # map pairs with at least one new metric value
    skipped: int  # map pairs whose every requested metric was stored already

    @property
    def method(self) -> str:
        """The comparison's label (:func:`comparison_label`)."""
        return comparison_label(self.method_a, self.method_b)

    @property
    def rows(self) -> int:
        """Map pairs computed (alias of ``computed``)."""
        return self.computed


def default_pairs(session: Any, epochs: bool = True) -> list[tuple[int, int]]:
    """(TL, FT) checkpoint pairs: every ``phase='ft'`` checkpoint whose parent has ``phase='tl'``;
    with ``epochs``, also (TL, epoch) pairs: every ``phase='epoch'`` checkpoint whose parent has
    ``phase='tl'`` (the FT epochs of ``train(..., protocol="tl-ft", save_every=1)``; TL-phase epochs
    hang off the pre-training checkpoint and are not paired). TL→FT pairs first, each list by B's id."""
    parent = Checkpoint.__table__.alias("parent")
    phases = ["ft", "epoch"] if epochs else ["ft"]
    rows = session.execute(
        select(parent.c.id, Checkpoint.id)
        .join(parent, parent.c.id == Checkpoint.parent_id)
        .where(Checkpoint.phase.in_(phases), parent.c.phase == "tl")
        .order_by(Checkpoint.phase.desc(), Checkpoint.id)  # 'ft' before 'epoch'
    ).all()
    return [(int(a), int(b)) for a, b in rows]


def cross_method_pairs(session: Any, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """The checkpoints whose two methods' maps are compared with each other: both sides of
    ``pairs`` (epoch checkpoints excluded: the study compares methods on the TL and FT models)."""
    ids = sorted({int(c) for pair in pairs for c in pair})
    if not ids:
        return []
    rows = session.execute(select(Checkpoint.id, Checkpoint.phase).where(Checkpoint.id.in_(ids))).all()
    return sorted(int(i) for i, phase in rows if phase != "epoch")


def comparisons(ga: set[tuple[str, str]], gb: set[tuple[str, str]], methods: Sequence[str] | None,
                a: int, b: int, required: bool = True) -> list[tuple[str, str, str, str]]:
    """(method A, hash A, method B, hash B) to compare for one checkpoint pair.

    ``methods`` entries are a method name (same method on both sides) or ``"m_a:m_b"`` (method
    ``m_a`` of checkpoint A against ``m_b`` of checkpoint B); default: every method stored for both.
    A named comparison without maps on both sides raises, unless not ``required`` (epoch pairs and
    cross-method comparisons the user did not name one by one: skipped).
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
        if not found and not required:
            continue
        if not found:
            raise UnknownNameError(
                f"no {spec} maps stored for checkpoints {a} and {b}; "
                f"run `xaudit explain` on both with --methods {','.join(sorted({ma, mb}))}"
            )
        out.extend(found)
    return out


@dataclass
class _Plan:
    """One (A, B, comparison): the samples to compute and what is stored for them."""

    a: int
    b: int
    sides: tuple[str, str, str, str]  # method A, hash A, method B, hash B
    todo: list[int]
    skipped: int
    stored: dict[int, set[str]]

    @property
    def columns(self) -> dict[str, Any]:
        ma, ha, mb, hb = self.sides
        return {"checkpoint_a_id": self.a, "checkpoint_b_id": self.b, "method_a": ma, "params_hash_a": ha,
                "method_b": mb, "params_hash_b": hb}


def _plans(pairs: Sequence[tuple[int | str, int | str]] | None, methods: Sequence[str] | None, selection: str,
           metrics: Sequence[str], cross_methods: Sequence[str] = ()) -> list[_Plan]:
    plans: list[_Plan] = []
    seen: set[tuple[int, int, str, str, str, str]] = set()
    with session_scope() as session:
        if pairs:
            id_pairs = [(resolve_checkpoint(a).id, resolve_checkpoint(b).id) for a, b in pairs]
            optional: set[tuple[int, int]] = set()
        else:
            id_pairs = default_pairs(session)
            optional = {p for p in id_pairs if p not in set(default_pairs(session, epochs=False))}
        if not id_pairs:
            raise WorkspaceError(
                "no TL→FT checkpoint pairs found; train a pair with `xaudit train --protocol tl-ft` "
                "or pass --pair A:B with two checkpoint ids or names"
            )
        work = [(a, b, methods, (a, b) not in optional) for a, b in id_pairs]
        if cross_methods:
            spec = [f"{ma}:{mb}" for ma, mb in combinations(cross_methods, 2)]
            work += [(c, c, spec, False) for c in cross_method_pairs(session, id_pairs)]
        for a, b, specs, required in work:
            comps = comparisons(set(map_groups(session, a, None)), set(map_groups(session, b, None)), specs, a, b,
                                required)
            if not comps:
                continue
            if a == b and any(ma == mb and ha == hb for ma, ha, mb, hb in comps):
                raise ConfigError(
                    f"pair {a}:{b} compares a checkpoint with itself; give two different checkpoints "
                    "or cross-method comparisons like --methods gradcam:layercam"
                )
            preds_a, preds_b = predictions(session, a), predictions(session, b)
            if selection == "true_positive":
                for ck_id, preds in ((a, preds_a), (b, preds_b)):
                    if not preds:
                        raise no_predictions(resolve_checkpoint(ck_id))
            for ma, ha, mb, hb in comps:
                if (a, b, ma, ha, mb, hb) in seen:  # named twice (e.g. a pair and a cross-method default)
                    continue
                seen.add((a, b, ma, ha, mb, hb))
                both = map_samples(session, a, ma, ha) & map_samples(session, b, mb, hb)
                if selection == "true_positive":
                    both = {p for p in both if preds_a.get(p, (0, False))[1] and preds_b.get(p, (0, False))[1]}
                stored = stored_metrics(session, DriftMetric, checkpoint_a_id=a, checkpoint_b_id=b, method_a=ma,
                                        params_hash_a=ha, method_b=mb, params_hash_b=hb)
                todo = missing(sorted(both), stored, metrics)
                plans.append(_Plan(a, b, (ma, ha, mb, hb), todo, len(both) - len(todo), stored))
    return plans


def drift(
    pairs: Sequence[tuple[int | str, int | str]] | None = None,
    methods: Sequence[str] | None = None,
    selection: str = "true_positive",
    progress: Progress = silent,
    *,
    metrics: Sequence[str] | None = None,
    chunk_size: int = CHUNK,
    cross_methods: Sequence[str] | None = CROSS_METHODS,
) -> list[DriftResult]:
    """Drift metrics between the stored maps of checkpoint pairs ``(A, B)`` (default: every TL→FT
    and TL→epoch pair, :func:`default_pairs`; epoch checkpoints without maps are skipped).

    Any two checkpoints (e.g. two epochs) can be paired; ``methods`` may also name cross-method
    comparisons ``"m_a:m_b"`` (then A may equal B: two methods on one checkpoint); ``metrics``:
    registered drift metric names (default: all registered). ``cross_methods``: registered method
    names compared with each other on the same checkpoint (A = B), on every TL and FT checkpoint
    of the pairs that stores maps of both (default :data:`CROSS_METHODS`, LayerCAM vs Grad-CAM++;
    ``()`` or None: none); each such row is labelled ``"m_a:m_b"``. For each pair and comparison:
    samples with maps on both sides, filtered by ``selection``, that lack one of the metrics;
    :func:`drift_metrics` (A → B) per chunk, one transaction per chunk of ``DriftMetric`` rows.
    """
    if selection not in DRIFT_SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(DRIFT_SELECTIONS)} (got {selection!r})")
    names = [get_drift_metric(k).name for k in metrics] if metrics else list_drift_metrics()
    cross = [get_method(m).name for m in (cross_methods or ())]
    if len(cross) == 1 or len(set(cross)) != len(cross):
        raise ConfigError(f"cross_methods needs two or more different methods (got {', '.join(cross)}); "
                          "e.g. --cross-methods layercam,gradcam_plus_plus")
    plans = _plans(pairs, methods, selection, names, cross)
    total = sum(len(p.todo) for p in plans)
    done_n = 0
    progress(0, total, "drift")
    results = []
    for plan in plans:
        ma, ha, mb, hb = plan.sides
        label = comparison_label(ma, mb)
        for start in range(0, len(plan.todo), chunk_size):
            pks = plan.todo[start : start + chunk_size]
            maps_a = read_stored_maps(plan.a, ma, ha, pks)
            maps_b = read_stored_maps(plan.b, mb, hb, pks)
            if maps_a.shape != maps_b.shape:
                raise ShapeError(
                    f"{label} maps of checkpoints {plan.a} and {plan.b} differ in size "
                    f"({maps_a.shape[1:]} vs {maps_b.shape[1:]}); explain both at the same input size"
                )
            values = drift_metrics(maps_a, maps_b, metrics=needed(pks, plan.stored, names))
            insert_rows(DriftMetric, long_rows({**plan.columns, "selection": selection}, pks, values, plan.stored))
            done_n += len(pks)
            progress(done_n, total, f"{plan.a}→{plan.b} {label}")
        results.append(DriftResult(plan.a, plan.b, ma, ha, mb, hb, selection, len(plan.todo), plan.skipped))
    return results
