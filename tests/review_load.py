"""Test helper: one reviewer of the concurrency test, run in its own (spawned) process.

The reviewer signs in, takes the first ``n`` cases of their queue and rates each once; about 20%
of them are sent again — half at once from two threads (a double click racing itself), half a few
cases later with changed values (the reviewer changed their mind). Every exception a call raises
is caught and reported back instead of killing the process, so the test can assert none reached
the reviewer. The workspace comes from the environment (``XAUDIT_HOME``, ``DATABASE_URL``)."""

from __future__ import annotations

import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

Values = tuple[int, bool, str, tuple[float, float] | None]


@dataclass
class Report:
    """What one reviewer process sends back."""

    reviewer: str
    last: dict[str, Values] = field(default_factory=dict)  # case key -> the values sent last
    calls: int = 0  # submit_rating calls that returned normally
    double_clicks: int = 0
    changes: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _values(rng: random.Random, reviewer: str, index: int, version: int, size: int) -> Values:
    point = None if rng.random() < 0.3 else (round(rng.uniform(0, size - 1), 2), round(rng.uniform(0, size - 1), 2))
    return rng.randint(1, 5), rng.random() < 0.5, f"{reviewer} case {index} v{version} <b>'\"", point


def plan(reviewer: str, keys: list[str], seed: int, size: int, resend: float = 0.2
         ) -> list[tuple[str, Values, bool]]:
    """The reviewer's sends in order: ``(case_key, values, double_click)``. ``resend`` of the cases
    are sent again: half as a double click (the same values twice at once), half with changed
    values 1-15 cases later (or at the end)."""
    rng = random.Random(seed)
    again = rng.sample(range(len(keys)), round(resend * len(keys)))
    doubles, changed = set(again[: len(again) // 2]), set(again[len(again) // 2:])
    later: dict[int, list[int]] = {}
    for i in changed:
        later.setdefault(min(i + rng.randint(1, 15), len(keys)), []).append(i)
    sends: list[tuple[str, Values, bool]] = []
    for i in range(len(keys) + 1):
        for j in later.get(i, []):
            sends.append((keys[j], _values(rng, reviewer, j, 2, size), False))
        if i < len(keys):
            sends.append((keys[i], _values(rng, reviewer, i, 1, size), i in doubles))
    return sends


def reviewer_process(study: str, reviewer: str, password: str, n: int, seed: int, size: int,
                     start: Any, results: Any) -> None:
    """Sign in, wait at ``start`` (a barrier: every reviewer starts rating at once), rate, and put a
    :class:`Report` on ``results`` whatever happens."""
    report = Report(reviewer)
    try:
        try:
            from xai_core.review import accounts, reading

            actor = accounts.session_actor(accounts.authenticate(reviewer, password))
            assert actor is not None and actor.name == reviewer
            keys = [key for _, key, _ in reading.queue(study, actor.name)][:n]
            sends = plan(actor.name, keys, seed, size)
        except BaseException:
            start.abort()  # the others and the test stop waiting for this reviewer
            raise
        start.wait(timeout=120)
        tic = time.perf_counter()
        for key, values, double in sends:
            if double:
                _double_click(study, actor.name, key, values, report)
                report.double_clicks += 1
            else:
                report.changes += key in report.last
                _send(study, actor.name, key, values, report)
            report.last[key] = values
        report.seconds = time.perf_counter() - tic
    except BaseException:  # noqa: BLE001 — reported to the test, which fails on it
        report.errors.append(traceback.format_exc())
    results.put(report)


def _send(study: str, reviewer: str, key: str, values: Values, report: Report) -> None:
    from xai_core.review import reading

    evidence, plausible, note, point = values
    try:
        reading.submit_rating(study, reviewer, key, evidence, plausible, note=note, point=point)
        report.calls += 1
    except Exception:  # noqa: BLE001
        report.errors.append(traceback.format_exc())


def _double_click(study: str, reviewer: str, key: str, values: Values, report: Report) -> None:
    """The same submission twice at the same moment, from two threads (two requests of one click);
    each thread counts into its own report, merged after both ended."""
    both = threading.Barrier(2)
    partial = [Report(reviewer), Report(reviewer)]

    def click(mine: Report) -> None:
        both.wait(timeout=30)
        _send(study, reviewer, key, values, mine)

    threads = [threading.Thread(target=click, args=(p,)) for p in partial]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in partial:
        report.calls += p.calls
        report.errors += p.errors
