"""Load (issue 12): 8 reviewer processes rate 100 cases each at the same time, re-sending about 20%
(double clicks racing themselves, later changes), on SQLite (WAL) and on PostgreSQL. Exactly one
row per (reviewer, case) must come out — 800 — each holding the values that reviewer sent last,
one audit event per accepted call, and no exception may reach a reviewer."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from db import AuditEvent, ReviewCase, ReviewRating, ReviewStudy, User, session_scope
from tests.review_load import Report, plan, reviewer_process
from tests.review_seed import METHODS, PASSWORD, REVIEWERS, seed_review_workspace
from xai_core.review import accounts, reading, studies

N_REVIEWERS = 8
PER_REVIEWER = 100
CATCH = 60  # 2 checkpoints × 2 methods × 12 test samples = 48 map cases, + 60 catch trials = 108
DEADLINE_S = 120  # a hang fails the test instead of stalling the suite


def _stored(study: str) -> dict[tuple[str, str], tuple]:
    with session_scope() as session:
        rows = session.execute(
            select(User.name, ReviewCase.case_key, ReviewRating.evidence_match, ReviewRating.plausible,
                   ReviewRating.note, ReviewRating.point_x, ReviewRating.point_y)
            .join(User, ReviewRating.reviewer_id == User.id).join(ReviewCase, ReviewRating.case_id == ReviewCase.id)
            .join(ReviewStudy, ReviewRating.study_id == ReviewStudy.id).where(ReviewStudy.name == study)
        ).all()
    stored = {(name, key): (em, pl, note, None if x is None else (x, y)) for name, key, em, pl, note, x, y in rows}
    assert len(stored) == len(rows)
    return stored


def test_plan_resends_a_fifth_and_ends_with_the_last_values() -> None:
    keys = [f"k{i}" for i in range(PER_REVIEWER)]
    sends = plan("rex", keys, seed=3, size=32)
    doubles = [key for key, _, double in sends if double]
    assert len(doubles) == 10 and len(sends) == 110  # 100 first sends + 10 changes (doubles send twice)
    assert {key for key, _, _ in sends} == set(keys)
    last = {key: values for key, values, _ in sends}
    changed = [key for key in keys if sum(k == key for k, _, _ in sends) == 2]
    assert len(changed) == 10 and not set(changed) & set(doubles)
    assert all(last[key][2].endswith("v2 <b>'\"") for key in changed)  # the change is the last send


def test_eight_reviewer_processes_lose_and_duplicate_nothing(workspace: Path) -> None:
    ws = seed_review_workspace()
    names = REVIEWERS + tuple(f"reader{i}" for i in range(N_REVIEWERS - len(REVIEWERS)))
    for name in names[len(REVIEWERS):]:
        accounts.add_user(name, "reviewer", PASSWORD)
    created = studies.create_study(studies.StudySpec(
        "load", ws.checkpoints, METHODS, names, samples=tuple(int(p) for p in ws.test_pks), catch_trials=CATCH,
        readers_per_case=N_REVIEWERS, seed=1), actor=accounts.LOCAL)
    assert created["cases"] == 2 * len(METHODS) * len(ws.test_pks) + CATCH >= PER_REVIEWER

    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(N_REVIEWERS + 1), ctx.Queue()
    procs = [ctx.Process(target=reviewer_process, args=("load", name, PASSWORD, PER_REVIEWER, seed, ws.size,
                                                        start, results), daemon=True)
             for seed, name in enumerate(names)]
    for p in procs:
        p.start()
    try:
        try:
            start.wait(timeout=DEADLINE_S)  # every reviewer signed in and holds its queue
        except threading.BrokenBarrierError:
            pass  # a reviewer failed before rating (it broke the barrier); its report says why
        tic = time.perf_counter()
        reports: list[Report] = [results.get(timeout=DEADLINE_S) for _ in procs]
        elapsed = time.perf_counter() - tic
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert [r.errors for r in reports] == [[]] * N_REVIEWERS  # no exception reached a reviewer
    assert [p.exitcode for p in procs] == [0] * N_REVIEWERS
    assert sorted(r.reviewer for r in reports) == sorted(names)
    assert all((len(r.last), r.double_clicks, r.changes, r.calls) == (100, 10, 10, 120) for r in reports)

    expected = {(r.reviewer, key): values for r in reports for key, values in r.last.items()}
    stored = _stored("load")
    assert len(stored) == N_REVIEWERS * PER_REVIEWER == 800
    assert stored == expected  # none lost, none duplicated, each the last value its reviewer sent
    with session_scope() as session:
        assert session.scalar(select(func.count(ReviewRating.id))) == 800
        audited = session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "rating"))
    assert audited == sum(r.calls for r in reports) == 960  # one committed audit event per accepted call
    status = studies.study_status("load")
    assert dict(zip(status.reviewer, status.rated)) == {name: PER_REVIEWER for name in names}
    left = reading.next_case("load", names[0])  # resumes at the first unrated case of the queue
    queue = reading.queue("load", names[0])
    assert left is not None and left.case_key == next(k for _, k, rated in queue if not rated)
    assert left.rated == PER_REVIEWER and left.total == created["cases"]
    assert elapsed < 60, f"800 ratings by 8 reviewers took {elapsed:.1f} s ({[round(r.seconds, 1) for r in reports]})"

