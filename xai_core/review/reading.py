"""What a reviewer does: take the next case of their queue, look at it, rate it, change a rating,
submit the study. Every call names the reviewer; a case key outside their queue is refused and logged.

:func:`submit_rating` is one transaction guarded by the unique key (study, reviewer, case): a
double click, a retried request or a second tab updates the one row instead of adding another.
SQLite's "database is locked" (a writer's commit raced ours) is retried with a short backoff.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db import Dataset, ReviewAssignment, ReviewCase, ReviewRating, ReviewStudy, Sample, User, session_scope
from db.tables import column_limit
from xai_core.errors import AccessDenied, InvalidValueError, UnknownNameError, WorkspaceError
from xai_core.review import audit

MAX_NOTE = column_limit(ReviewRating.note)
EVIDENCE_SCALE = (1, 5)
T = TypeVar("T")


@dataclass(frozen=True)
class Rating:
    evidence_match: int
    plausible: bool
    note: str
    point: tuple[float, float] | None  # (x = column, y = row) in image pixels


@dataclass(frozen=True)
class CaseView:
    """One case as the reviewer sees it: no method, checkpoint or catch status."""

    study: str
    case_key: str
    position: int  # 0-based place in the reviewer's queue
    total: int
    rated: int  # cases of the queue rated so far
    image: np.ndarray  # (H, W) float32 in [0, 1]
    heatmap: np.ndarray  # (H, W) float32 in [0, 1]
    lesion: np.ndarray | None  # (H, W) bool when the study shows the contour
    rating: Rating | None  # the reviewer's current rating of this case
    submitted: bool  # the reviewer submitted the study: ratings are final


def retrying(fn: Callable[[], T], tries: int = 8) -> T:
    """``fn()``, run again when SQLite reports a lock it could not wait out (a concurrent writer)."""
    for attempt in range(tries):
        try:
            return fn()
        except OperationalError as exc:
            if "locked" not in str(exc.orig).lower() or attempt == tries - 1:
                raise
            time.sleep(0.005 * 2 ** attempt * (1 + random.random()))
    raise AssertionError("unreachable")


def _reviewer_id(session: Session, reviewer: str) -> int:
    uid = session.scalar(select(User.id).where(User.name == reviewer, User.role == "reviewer", ~User.disabled))
    if uid is None:
        raise UnknownNameError(f"no active reviewer account {reviewer!r}")
    return int(uid)


def study_row(session: Session, study: str) -> ReviewStudy:
    """The study named ``study``; an unknown name raises :class:`UnknownNameError` listing the studies."""
    row = session.scalar(select(ReviewStudy).where(ReviewStudy.name == study))
    if row is None:
        known = session.scalars(select(ReviewStudy.name).order_by(ReviewStudy.id)).all()
        hint = f"studies: {', '.join(known)}" if known else "create one with `xaudit review create`"
        raise UnknownNameError(f"no review study named {study!r}; {hint}")
    return row


def _refuse(reviewer: str, study: str, case_key: str, what: str) -> AccessDenied:
    audit.record_now(reviewer, what, audit.REFUSED, f"{study}/{case_key}", reason="case not in the reviewer's queue")
    return AccessDenied(f"case {case_key!r} is not in your queue of study {study!r}")


def queue(study: str, reviewer: str) -> list[tuple[int, str, bool]]:
    """The reviewer's queue in order: ``(position, case_key, rated)``."""
    with session_scope() as session:
        sid, rid = study_row(session, study).id, _reviewer_id(session, reviewer)
        rows = session.execute(
            select(ReviewAssignment.position, ReviewCase.case_key, ReviewRating.id)
            .join(ReviewCase, ReviewAssignment.case_id == ReviewCase.id)
            .outerjoin(ReviewRating, (ReviewRating.case_id == ReviewCase.id) & (ReviewRating.reviewer_id == rid))
            .where(ReviewAssignment.study_id == sid, ReviewAssignment.reviewer_id == rid)
            .order_by(ReviewAssignment.position)
        ).all()
    return [(int(p), str(k), r is not None) for p, k, r in rows]


def reviewer_studies(reviewer: str) -> list[str]:
    """Open studies with cases in the reviewer's queue, oldest first."""
    with session_scope() as session:
        rid = _reviewer_id(session, reviewer)
        return list(session.scalars(
            select(ReviewStudy.name).join(ReviewAssignment, ReviewAssignment.study_id == ReviewStudy.id)
            .where(ReviewAssignment.reviewer_id == rid, ReviewStudy.status == "open")
            .group_by(ReviewStudy.id, ReviewStudy.name).order_by(ReviewStudy.id)).all())


def next_case(study: str, reviewer: str) -> CaseView | None:
    """The first case of the reviewer's queue not rated yet (resuming where they left), or None."""
    return _view(study, reviewer, None)


def _scaled(heatmap: np.ndarray) -> np.ndarray:
    """|map| scaled to [0, 1] by its 99.5th percentile (one hot pixel does not wash the rest out)."""
    mag = np.abs(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)))
    top = float(np.percentile(mag, 99.5)) or float(mag.max()) or 1.0
    return np.clip(mag / top, 0.0, 1.0)


def case_arrays(checkpoint_id: int, method: str, params: dict[str, Any], sample_pk: int,
                dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, lesion mask and heatmap of one case; the map from the store (computed when missing)
    or, for a catch trial, the chance map made on the spot."""
    from xai_core.attribution import explain_samples  # lazy: torch and Captum load only when a case is drawn
    from xai_core.data.dataset import cached_dataset
    from xai_core.metrics.chance_maps import CHANCE_MAPS

    data = cached_dataset(dataset)
    index = int(np.searchsorted(data.sample_pks, sample_pk))
    if index >= len(data.sample_pks) or data.sample_pks[index] != sample_pk:
        raise WorkspaceError(f"sample {sample_pk} is missing from dataset {dataset!r}")
    image, mask = data.images[index], data.masks[index]
    if method in CHANCE_MAPS:
        chance = CHANCE_MAPS[method]
        heatmap = chance.make(np.array([sample_pk]), mask[None], image[None])[0]
    else:
        heatmap = explain_samples(checkpoint_id, [sample_pk], method, **params)[0]
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo or 1.0), mask, _scaled(heatmap)


def _in_queue(*columns: Any) -> Any:
    """``columns`` of the assignments of study ``:study`` to the active reviewer ``:reviewer``, joined to
    their study, reviewer, case, sample and dataset (bound parameters, filled at execution)."""
    return (
        select(*columns)
        .select_from(ReviewAssignment)
        .join(ReviewStudy, ReviewAssignment.study_id == ReviewStudy.id)
        .join(User, ReviewAssignment.reviewer_id == User.id)
        .join(ReviewCase, ReviewAssignment.case_id == ReviewCase.id)
        .join(Sample, ReviewCase.sample_pk == Sample.id).join(Dataset, Sample.dataset_id == Dataset.id)
        .where(ReviewStudy.name == bindparam("study"), User.name == bindparam("reviewer"), User.role == "reviewer",
               ~User.disabled)
    )


# A case of the reviewer's queue with what the reading page needs, in one query: by its key, or the
# first one of the queue (in position order) whose case is not among the reviewer's rated ones.
# NOT IN over an uncorrelated subquery, not an anti-join: PostgreSQL then builds the set of rated
# cases once (hashed subplan) whatever its statistics say; a left anti-join, planned on the
# statistics of a freshly filled ratings table, scanned the reviewer's ratings once per queue
# position (8 reviewers rating back to back: next_case 30 -> 47 ms p50).
_CASE = _in_queue(ReviewStudy.id, ReviewStudy.settings, User.id, ReviewAssignment.position,
                  ReviewAssignment.submitted_at, ReviewCase.id, ReviewCase.case_key, ReviewCase.checkpoint_id,
                  ReviewCase.method, ReviewCase.params, ReviewCase.sample_pk, Dataset.name)
_CASE_BY_KEY = _CASE.where(ReviewCase.case_key == bindparam("case_key"))
_RATED = (  # the case ids the reviewer rated: run once per query (not correlated), then a hash lookup
    select(ReviewRating.case_id)
    .where(ReviewRating.study_id == select(ReviewStudy.id).where(ReviewStudy.name == bindparam("study"))
           .scalar_subquery(),
           ReviewRating.reviewer_id == select(User.id).where(User.name == bindparam("reviewer")).scalar_subquery())
    .correlate(None)
)
_CASE_NEXT = _CASE.where(ReviewAssignment.case_id.not_in(_RATED)).order_by(ReviewAssignment.position).limit(1)
# The reviewer's progress (cases assigned, rated) and current rating of one case.
_PROGRESS = select(
    select(func.count(ReviewAssignment.id)).where(ReviewAssignment.study_id == bindparam("sid"),
                                                  ReviewAssignment.reviewer_id == bindparam("rid")).scalar_subquery(),
    select(func.count(ReviewRating.id)).where(ReviewRating.study_id == bindparam("sid"),
                                              ReviewRating.reviewer_id == bindparam("rid")).scalar_subquery(),
)
_CURRENT = select(ReviewRating.evidence_match, ReviewRating.plausible, ReviewRating.note, ReviewRating.point_x,
                  ReviewRating.point_y).where(ReviewRating.study_id == bindparam("sid"),
                                              ReviewRating.reviewer_id == bindparam("rid"),
                                              ReviewRating.case_id == bindparam("cid"))


def _view(study: str, reviewer: str, case_key: str | None) -> CaseView | None:
    """The case ``case_key`` of the reviewer's queue (refused and logged when it is not theirs), or
    with ``case_key=None`` the first one not rated yet (None when every case is rated)."""
    with session_scope() as session:
        if case_key is None:
            found = session.execute(_CASE_NEXT, {"study": study, "reviewer": reviewer}).one_or_none()
        else:
            found = session.execute(_CASE_BY_KEY, {"study": study, "reviewer": reviewer,
                                                   "case_key": case_key}).one_or_none()
        if found is None:
            study_row(session, study)  # an unknown study or reviewer says so
            _reviewer_id(session, reviewer)
            if case_key is None:
                return None
            raise _refuse(reviewer, study, case_key, "case.view")
        sid, settings, rid, position, submitted_at, cid, key, checkpoint_id, method, params, sample_pk, dataset = found
        total, rated = session.execute(_PROGRESS, {"sid": sid, "rid": rid}).one()
        current = session.execute(_CURRENT, {"sid": sid, "rid": rid, "cid": cid}).one_or_none()
    rating = None if current is None else Rating(
        current.evidence_match, current.plausible, current.note,
        None if current.point_x is None else (current.point_x, current.point_y))
    image, mask, heatmap = case_arrays(int(checkpoint_id), method, dict(params), int(sample_pk), str(dataset))
    return CaseView(study, str(key), int(position), int(total), int(rated), image.astype(np.float32),
                    heatmap.astype(np.float32), mask if settings.get("show_contour") else None, rating,
                    submitted_at is not None)


def case_view(study: str, reviewer: str, case_key: str) -> CaseView:
    """One case of the reviewer's queue, with their current rating. Another reviewer's case key is
    refused and logged."""
    view = _view(study, reviewer, case_key)
    assert view is not None  # a foreign or unknown key raised
    return view


def _check_rating(evidence_match: Any, plausible: Any, note: Any) -> tuple[int, bool, str]:
    if isinstance(evidence_match, bool) or not isinstance(evidence_match, (int, np.integer)) \
            or not EVIDENCE_SCALE[0] <= int(evidence_match) <= EVIDENCE_SCALE[1]:
        raise InvalidValueError(f"evidence match must be a whole number {EVIDENCE_SCALE[0]}-{EVIDENCE_SCALE[1]}, "
                                f"got {evidence_match!r}")
    if not isinstance(plausible, (bool, np.bool_)):
        raise InvalidValueError(f"clinically plausible must be yes or no (true/false), got {plausible!r}")
    if not isinstance(note, str):
        raise InvalidValueError("the note must be text")
    if len(note) > MAX_NOTE:
        raise InvalidValueError(f"the note has {len(note)} characters; the limit is {MAX_NOTE}")
    return int(evidence_match), bool(plausible), note


def _check_point(point: Any, size: int) -> tuple[float | None, float | None]:
    if point is None:
        return None, None
    try:
        x, y = (float(v) for v in point)
    except (TypeError, ValueError):
        raise InvalidValueError(f"the clicked point must be (x, y) in image pixels, got {point!r}") from None
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < size and 0 <= y < size):
        raise InvalidValueError(f"the clicked point ({x:g}, {y:g}) is outside the {size}×{size} image")
    return x, y


_CHANGED = ("evidence_match", "plausible", "note", "point_x", "point_y", "updated_at")
_UPSERTS: dict[str, Any] = {}

# Everything a submission checks, in one query: the study's status, the active reviewer, the case in
# their queue (submitted or not) and the image size the clicked point must fall in.
_TARGET = (
    _in_queue(ReviewStudy.id, ReviewStudy.status, User.id, ReviewAssignment.submitted_at, ReviewCase.id,
              Dataset.image_size)
    .where(ReviewCase.case_key == bindparam("case_key"))
    # PostgreSQL: lock the assignment row, so a rating and the same reviewer's submit_study in another
    # tab are ordered (SQLite serialises writers and retries a write whose read snapshot went stale)
    .with_for_update(of=ReviewAssignment)
)


def _upsert_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT (study, reviewer, case) DO UPDATE of the rating columns, built once per
    dialect and executed with parameters (building it per call cost more than running it)."""
    statement = _UPSERTS.get(dialect)
    if statement is None:
        insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect](ReviewRating)
        statement = _UPSERTS[dialect] = insert.on_conflict_do_update(
            index_elements=["study_id", "reviewer_id", "case_id"], set_={k: insert.excluded[k] for k in _CHANGED})
    return statement


def _upsert(session: Session, values: dict[str, Any]) -> None:
    session.connection().execute(_upsert_statement(session.get_bind().dialect.name), values)


def _target(session: Session, study: str, reviewer: str, case_key: str) -> tuple[int, int, int, int]:
    """``(study_id, reviewer_id, case_id, image_size)`` of a case the reviewer may still rate; the
    reason otherwise (unknown study or reviewer, closed study, submitted study, foreign case key)."""
    found = session.execute(_TARGET, {"study": study, "reviewer": reviewer, "case_key": case_key}).one_or_none()
    if found is None:  # find out why, in the order a reviewer would want to hear it
        row = study_row(session, study)
        if row.status != "open":
            raise AccessDenied(f"study {study!r} is closed; ratings can no longer change")
        _reviewer_id(session, reviewer)
        raise _refuse(reviewer, study, case_key, "rating")
    study_id, status, reviewer_id, submitted_at, case_id, size = found
    if status != "open":
        raise AccessDenied(f"study {study!r} is closed; ratings can no longer change")
    if submitted_at is not None:
        raise AccessDenied(f"you submitted study {study!r}; its ratings are final")
    return int(study_id), int(reviewer_id), int(case_id), int(size)


def submit_rating(study: str, reviewer: str, case_key: str, evidence_match: int, plausible: bool,
                  note: str = "", point: tuple[float, float] | None = None) -> None:
    """Store (or change) the reviewer's rating of ``case_key``; one row per (study, reviewer, case)
    however often it is sent. Refused once the reviewer submitted the study or the study is closed.

    The checks read first (one query) and the writes come last, two statements built once and the
    commit: on SQLite the write lock is held only for those."""
    evidence_match, plausible, note = _check_rating(evidence_match, plausible, note)

    def write() -> None:
        with session_scope() as session:
            study_id, reviewer_id, case_id, size = _target(session, study, reviewer, case_key)
            x, y = _check_point(point, size)
            now = datetime.now(timezone.utc)
            _upsert(session, {"study_id": study_id, "reviewer_id": reviewer_id, "case_id": case_id,
                              "evidence_match": evidence_match, "plausible": plausible, "note": note,
                              "point_x": x, "point_y": y, "created_at": now, "updated_at": now})
            audit.record(session, reviewer, "rating", target=f"{study}/{case_key}", evidence_match=evidence_match,
                         plausible=plausible)

    retrying(write)


def submit_study(study: str, reviewer: str) -> int:
    """Make the reviewer's ratings of ``study`` final; every case of their queue must be rated.
    Returns the number of ratings."""
    with session_scope() as session:
        sid, rid = study_row(session, study).id, _reviewer_id(session, reviewer)
        total = session.scalar(select(func.count(ReviewAssignment.id)).where(
            ReviewAssignment.study_id == sid, ReviewAssignment.reviewer_id == rid))
        rated = session.scalar(select(func.count(ReviewRating.id)).where(
            ReviewRating.study_id == sid, ReviewRating.reviewer_id == rid))
        if not total:
            raise AccessDenied(f"you have no cases in study {study!r}")
        if rated < total:
            raise InvalidValueError(f"{total - rated} of your {total} cases are not rated yet; rate them first")
        session.execute(update(ReviewAssignment).where(
            ReviewAssignment.study_id == sid, ReviewAssignment.reviewer_id == rid,
            ReviewAssignment.submitted_at.is_(None)).values(submitted_at=datetime.now(timezone.utc)))
        audit.record(session, reviewer, "study.submit", target=study, ratings=rated)
    return int(rated)


def my_ratings(study: str, reviewer: str, *, owner: str) -> list[dict[str, Any]]:
    """``reviewer``'s ratings by case key, for ``owner`` (the signed-in reviewer) — only their own;
    another reviewer's ratings are refused and logged (admins read results instead)."""
    if owner != reviewer:
        audit.record_now(owner, "ratings.view", audit.REFUSED, f"{study}/{reviewer}")
        raise AccessDenied("you can only see your own ratings")
    with session_scope() as session:
        sid, rid = study_row(session, study).id, _reviewer_id(session, reviewer)
        rows = session.execute(
            select(ReviewCase.case_key, ReviewRating.evidence_match, ReviewRating.plausible, ReviewRating.note,
                   ReviewRating.point_x, ReviewRating.point_y, ReviewRating.updated_at)
            .join(ReviewCase, ReviewRating.case_id == ReviewCase.id)
            .where(ReviewRating.study_id == sid, ReviewRating.reviewer_id == rid).order_by(ReviewRating.id)
        ).all()
    return [r._asdict() for r in rows]
