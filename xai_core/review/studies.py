"""Blinded reading studies: creation (validated up front), per-reviewer randomised queues, status,
the unblinding key (admins only) and closing.

A study's cases are (checkpoint, method, sample) maps plus optional catch trials — the chance maps
the Benchmark page scores (a random map, the Sobel edge map of the image). Every case is read by
``readers_per_case`` different reviewers (≥ 2 by default, so agreement can be computed); each
reviewer's queue is shuffled on its own and shows only opaque case keys.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import models
from db import (Checkpoint, Prediction, ReviewAssignment, ReviewCase, ReviewRating, ReviewStudy, Sample, User,
                session_scope)
from db.tables import column_limit
from xai_core.attribution import check_supported, get_method
from xai_core.errors import ConfigError, InvalidValueError
from xai_core.metrics.chance_maps import CHANCE_METHODS
from xai_core.review import audit
from xai_core.review.accounts import Actor, require_admin
from xai_core.review.reading import study_row


@dataclass(frozen=True)
class StudySpec:
    """What an admin picks for a study. ``samples`` (Sample primary keys) or ``n_random`` (that many
    random test samples classified correctly by every chosen checkpoint) choose the images."""

    name: str
    checkpoints: tuple[int | str, ...]
    methods: tuple[str, ...]
    reviewers: tuple[str, ...]
    samples: tuple[int, ...] = ()
    n_random: int | None = None
    show_contour: bool = False
    catch_trials: int = 0  # catch cases in the pool (random and Sobel maps, alternating)
    cases_per_reviewer: int | None = None  # None: every case the design gives the reviewer
    readers_per_case: int = 2
    seed: int = 0
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        return {"show_contour": self.show_contour, "catch_trials": self.catch_trials,
                "cases_per_reviewer": self.cases_per_reviewer, "readers_per_case": self.readers_per_case,
                "seed": self.seed, "methods": list(self.methods), "n_random": self.n_random}


@dataclass(frozen=True)
class PoolCase:
    checkpoint_id: int
    method: str
    sample_pk: int
    is_catch: bool
    params: dict[str, Any]


def _checkpoints(refs: tuple[int | str, ...]) -> list[Any]:
    if not refs:
        raise ConfigError("a study needs at least one checkpoint; list them with `xaudit models list`")
    rows = [models.resolve_checkpoint(ref) for ref in refs]
    datasets = {row.dataset_id for row in rows}
    if len(datasets) != 1 or None in datasets:
        raise ConfigError("the study's checkpoints must be trained on one registered dataset")
    return rows


def _check_methods(methods: tuple[str, ...], checkpoints: list[Any]) -> None:
    if not methods:
        raise ConfigError("a study needs at least one attribution method; list them with `xaudit methods`")
    for method in methods:
        get_method(method)
        for row in checkpoints:
            check_supported(method, row.arch)


def _reviewers(session: Any, names: tuple[str, ...], readers_per_case: int) -> list[User]:
    users = []
    for name in dict.fromkeys(names):
        user = session.scalar(select(User).where(User.name == name))
        if user is None or user.role != "reviewer" or user.disabled:
            raise ConfigError(f"{name!r} is not an active reviewer account; add one with "
                              f"`xaudit users add NAME --role reviewer`")
        users.append(user)
    if len(users) < readers_per_case:
        raise ConfigError(f"every case is read by {readers_per_case} reviewers but the study names "
                          f"{len(users)}; add reviewers or lower readers per case")
    return users


def _samples(session: Any, spec: StudySpec, checkpoints: list[Any], rng: np.random.Generator) -> list[int]:
    dataset_id = checkpoints[0].dataset_id
    if spec.samples:
        found = set(session.scalars(select(Sample.id).where(Sample.id.in_(spec.samples),
                                                             Sample.dataset_id == dataset_id)))
        missing = [pk for pk in spec.samples if pk not in found]
        if missing:
            raise ConfigError(f"samples {missing[:5]} are not in the checkpoints' dataset")
        return list(dict.fromkeys(spec.samples))
    if not spec.n_random or spec.n_random < 1:
        raise ConfigError("choose samples, or a number of random correctly classified test samples (≥ 1)")
    ids = [row.id for row in checkpoints]
    correct = (select(Prediction.sample_pk).where(Prediction.checkpoint_id.in_(ids), Prediction.correct)
               .group_by(Prediction.sample_pk).having(func.count(Prediction.id) == len(ids)))
    pool = sorted(session.scalars(select(Sample.id).where(Sample.dataset_id == dataset_id, Sample.split == "test",
                                                          Sample.id.in_(correct))))
    if len(pool) < spec.n_random:
        raise ConfigError(f"only {len(pool)} test samples are classified correctly by every chosen checkpoint; "
                          f"ask for at most {len(pool)}")
    return sorted(int(pk) for pk in rng.choice(pool, size=spec.n_random, replace=False))


def _pool(spec: StudySpec, checkpoints: list[Any], samples: list[int], rng: np.random.Generator) -> list[PoolCase]:
    cases = [PoolCase(int(row.id), method, pk, False, dict(spec.method_params.get(method, {})))
             for row in checkpoints for method in spec.methods for pk in samples]
    for i in range(spec.catch_trials):
        row = checkpoints[int(rng.integers(len(checkpoints)))]
        cases.append(PoolCase(int(row.id), CHANCE_METHODS[i % len(CHANCE_METHODS)],
                              int(rng.choice(samples)), True, {}))
    return cases


def assign(n_cases: int, n_reviewers: int, readers_per_case: int, rng: np.random.Generator
           ) -> list[list[int]]:
    """Each reviewer's queue of case indices: every case goes to ``readers_per_case`` different
    reviewers, loads differ by at most one, each queue is shuffled on its own."""
    order = rng.permutation(n_cases)
    queues: list[list[int]] = [[] for _ in range(n_reviewers)]
    slot = 0
    for case in order:
        for _ in range(readers_per_case):
            queues[slot % n_reviewers].append(int(case))
            slot += 1
    return [list(rng.permutation(q)) for q in queues]


def _validate(spec: StudySpec) -> None:
    if not spec.name.strip() or len(spec.name) > column_limit(ReviewStudy.name):
        raise ConfigError(f"study name must be 1-{column_limit(ReviewStudy.name)} characters")
    if spec.readers_per_case < 1:
        raise InvalidValueError("readers per case must be at least 1")
    if spec.catch_trials < 0:
        raise InvalidValueError("catch trials must be 0 or more")
    if spec.cases_per_reviewer is not None and spec.cases_per_reviewer < 1:
        raise InvalidValueError("cases per reviewer must be at least 1 (or unset for all)")


def create_study(spec: StudySpec, *, actor: Actor) -> dict[str, Any]:
    """Validate ``spec`` (checkpoints exist, methods run on their architectures, reviewers exist),
    draw the cases and every reviewer's blinded queue, and store it all in one transaction."""
    require_admin(actor, "creating studies")
    _validate(spec)
    checkpoints = _checkpoints(spec.checkpoints)
    _check_methods(spec.methods, checkpoints)
    rng = np.random.default_rng(spec.seed)
    try:
        with session_scope() as session:
            reviewers = _reviewers(session, spec.reviewers, spec.readers_per_case)
            pool = _pool(spec, checkpoints, _samples(session, spec, checkpoints, rng), rng)
            if spec.cases_per_reviewer is not None:
                keep = min(len(pool), spec.cases_per_reviewer * len(reviewers) // spec.readers_per_case)
                pool = [pool[i] for i in sorted(rng.choice(len(pool), size=keep, replace=False))]
            study = ReviewStudy(name=spec.name.strip(), settings=spec.settings(), status="open",
                                created_by=actor.name)
            session.add(study)
            session.flush()
            rows = [ReviewCase(study_id=study.id, case_key=secrets.token_hex(8), sample_pk=c.sample_pk,
                               checkpoint_id=c.checkpoint_id, method=c.method, params=c.params, is_catch=c.is_catch)
                    for c in pool]
            session.add_all(rows)
            session.flush()
            for user, queue in zip(reviewers, assign(len(rows), len(reviewers), spec.readers_per_case, rng)):
                session.add_all(ReviewAssignment(study_id=study.id, reviewer_id=user.id, case_id=rows[i].id,
                                                 position=pos) for pos, i in enumerate(queue))
            audit.record(session, actor.name, "study.create", target=study.name, cases=len(rows),
                         reviewers=[u.name for u in reviewers])
    except IntegrityError:
        raise ConfigError(f"a study named {spec.name!r} exists; pick another name") from None
    return {"study": spec.name.strip(), "cases": len(rows), "reviewers": len(reviewers),
            "assignments": len(rows) * spec.readers_per_case}


def list_studies() -> pd.DataFrame:
    """Every study: name, status, cases, reviewers, ratings, creation time (nothing that unblinds)."""
    with session_scope() as session:
        studies = session.scalars(select(ReviewStudy).order_by(ReviewStudy.id)).all()
        rows = []
        for s in studies:
            count = lambda table: session.scalar(select(func.count(table.id)).where(table.study_id == s.id))  # noqa: E731
            reviewers = session.scalar(select(func.count(func.distinct(ReviewAssignment.reviewer_id)))
                                       .where(ReviewAssignment.study_id == s.id))
            rows.append({"study": s.name, "status": s.status, "cases": count(ReviewCase), "reviewers": reviewers,
                         "assigned": count(ReviewAssignment), "rated": count(ReviewRating),
                         "created_by": s.created_by, "created_at": s.created_at})
    return pd.DataFrame(rows, columns=["study", "status", "cases", "reviewers", "assigned", "rated",
                                       "created_by", "created_at"])


def study_status(study: str) -> pd.DataFrame:
    """Per reviewer: cases assigned, rated, and when they submitted the study (or not yet)."""
    with session_scope() as session:
        sid = study_row(session, study).id
        rated = (select(ReviewRating.reviewer_id, func.count(ReviewRating.id).label("rated"))
                 .where(ReviewRating.study_id == sid).group_by(ReviewRating.reviewer_id).subquery())
        rows = session.execute(
            select(User.name, func.count(ReviewAssignment.id), func.max(ReviewAssignment.submitted_at),
                   func.coalesce(func.max(rated.c.rated), 0))
            .join(ReviewAssignment, ReviewAssignment.reviewer_id == User.id)
            .outerjoin(rated, rated.c.reviewer_id == User.id)
            .where(ReviewAssignment.study_id == sid).group_by(User.name).order_by(User.name)
        ).all()
    return pd.DataFrame([{"reviewer": n, "assigned": a, "rated": r, "submitted_at": s} for n, a, s, r in rows],
                        columns=["reviewer", "assigned", "rated", "submitted_at"])


def unblinding_key(study: str, *, actor: Actor) -> pd.DataFrame:
    """Case key → checkpoint, architecture, pre-training, degree, method, sample and catch status.
    Admins only; a reviewer's request is refused and logged."""
    require_admin(actor, f"the unblinding key of study {study!r}")
    with session_scope() as session:
        sid = study_row(session, study).id
        rows = session.execute(
            select(ReviewCase.case_key, ReviewCase.checkpoint_id, Checkpoint.name, Checkpoint.arch,
                   Checkpoint.pretrain, Checkpoint.degree, ReviewCase.method, ReviewCase.params,
                   ReviewCase.sample_pk, Sample.sample_id, Sample.label, ReviewCase.is_catch)
            .join(Checkpoint, ReviewCase.checkpoint_id == Checkpoint.id).join(Sample, ReviewCase.sample_pk == Sample.id)
            .where(ReviewCase.study_id == sid).order_by(ReviewCase.id)
        ).all()
        audit.record(session, actor.name, "study.unblind", target=study)
    columns = ["case_key", "checkpoint_id", "checkpoint", "arch", "pretrain", "degree", "method", "params",
               "sample_pk", "sample_id", "label", "is_catch"]
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def set_study_status(study: str, status: str, *, actor: Actor) -> None:
    """Close a study (no more ratings) or reopen it."""
    require_admin(actor, "closing or reopening studies")
    if status not in ("open", "closed"):
        raise ConfigError(f"unknown study status {status!r}; use open or closed")
    with session_scope() as session:
        study_row(session, study).status = status
        audit.record(session, actor.name, f"study.{'reopen' if status == 'open' else 'close'}", target=study)


def results_stamp(study: str) -> tuple[int, int, str, int]:
    """What a cache of ``study``'s results is keyed on: its ratings' count, largest id and latest
    change, and how many assignments are submitted (a changed rating keeps the count and id)."""
    with session_scope() as session:
        sid = study_row(session, study).id
        count, last_id, changed = session.execute(
            select(func.count(ReviewRating.id), func.coalesce(func.max(ReviewRating.id), 0),
                   func.max(ReviewRating.updated_at)).where(ReviewRating.study_id == sid)).one()
        submitted = session.scalar(select(func.count(ReviewAssignment.id)).where(
            ReviewAssignment.study_id == sid, ReviewAssignment.submitted_at.is_not(None)))
    return int(count), int(last_id), str(changed or ""), int(submitted)
