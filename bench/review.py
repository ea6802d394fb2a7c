"""Review studies under load (issue 12): sustained submissions per second and the latency of
``reading.next_case`` and ``reading.submit_rating`` with N reviewers reading at the same time.

Each reviewer signs in, then loops: ``next_case`` (the case's rows, the image from the dataset and
its map read from the attribution store), a pause of ``think`` ms (uniform in 0.5-1.5 × think),
then ``submit_rating`` of that case. Each ``--think-ms`` value is one run per reviewer count: 0 is
the saturated rate (every reviewer as fast as the server answers, ``--cases`` cases each); a pause
like a reader's (default 1000 ms, ``--paced-cases`` cases each) gives the latency readers see.
Reviewers run in up to ``--processes`` processes (spawned), several per process as threads when
there are more reviewers than processes — the way one dashboard server serves several browser
sessions. A barrier starts them together after sign-in and one warm-up ``next_case``
(dataset and torch loaded). Submissions/s = all submissions / (last reviewer done - start).
Baselines measured in the same run: the same loop with 1 reviewer (no contention), and the floor
of one committed write through ``session_scope`` (``audit.record_now``, single process).

Backends: SQLite (WAL) in a temporary workspace; PostgreSQL on a throw-away server
(``tests.postgres.start_cluster``) or ``--database-url`` naming an EMPTY database (its tables are
created and filled; drop it afterwards). Seeded workspace: ``tests.review_seed`` (a real benchmark
of ``--images`` images at ``--size`` px, two checkpoints with stored maps of two methods).

    python bench/review.py [--backends sqlite postgresql] [--reviewers 1 8 32] [--think-ms 0 1000]
                           [--cases 100] [--paced-cases 20] [--processes 8] [--size 128]
                           [--database-url URL] [--markdown]

The load average column is read just before the reviewers start and when they are done: it
includes the benchmark's own processes (8 busy ones at think 0).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD = "correct horse battery"


@dataclass
class Timings:
    """Latencies (seconds) and statements per call of one process's reviewers."""

    submit: list[float] = field(default_factory=list)
    next_case: list[float] = field(default_factory=list)
    submit_queries: list[int] = field(default_factory=list)
    next_queries: list[int] = field(default_factory=list)
    started: float = 0.0  # wall clock (time.time) after the barrier
    finished: float = 0.0
    errors: list[str] = field(default_factory=list)


_calls = threading.local()


def _count_statements() -> None:
    """Count the SQL statements each thread sends (``_calls.n``)."""
    from sqlalchemy import event

    from db import get_engine

    def count(*_args: Any) -> None:
        _calls.n = getattr(_calls, "n", 0) + 1

    event.listen(get_engine(), "before_cursor_execute", count)


@contextmanager
def _measure(latencies: list[float], queries: list[int]) -> Iterator[None]:
    _calls.n = 0
    tic = time.perf_counter()
    yield
    latencies.append(time.perf_counter() - tic)
    queries.append(_calls.n)


def _reviewer(study: str, name: str, cases: int, think_s: float, seed: int, out: Timings, lock: threading.Lock) -> None:
    from xai_core.review import reading

    rng = np.random.default_rng(seed)
    mine = Timings()
    try:
        for _ in range(cases):
            with _measure(mine.next_case, mine.next_queries):
                view = reading.next_case(study, name)
            if view is None:
                raise AssertionError(f"{name}'s queue ended early")
            if think_s:
                time.sleep(think_s * rng.uniform(0.5, 1.5))
            point = (float(rng.uniform(0, view.image.shape[1] - 1)), float(rng.uniform(0, view.image.shape[0] - 1)))
            with _measure(mine.submit, mine.submit_queries):
                reading.submit_rating(study, name, view.case_key, int(rng.integers(1, 6)), bool(rng.random() < 0.5),
                                      note="bench", point=point)
    except Exception:  # noqa: BLE001 — reported in the table's notes
        mine.errors.append(traceback.format_exc())
    with lock:
        for key in ("submit", "next_case", "submit_queries", "next_queries", "errors"):
            getattr(out, key).extend(getattr(mine, key))


def process_main(study: str, names: list[str], cases: int, think_s: float, start: Any, results: Any) -> None:
    """One process: sign its reviewers in, warm up, wait at ``start``, run them as threads, report."""
    out = Timings()
    try:
        from xai_core.review import accounts, reading

        for name in names:
            actor = accounts.session_actor(accounts.authenticate(name, PASSWORD))
            assert actor is not None and actor.name == name
        reading.next_case(study, names[0])  # warm-up: dataset cache, torch and the store's code loaded
        _count_statements()
    except Exception:  # noqa: BLE001
        out.errors.append(traceback.format_exc())
    start.wait(timeout=600)
    lock = threading.Lock()
    threads = [threading.Thread(target=_reviewer, args=(study, n, cases, think_s, zlib.crc32(n.encode()), out, lock))
               for n in names]
    out.started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.finished = time.time()
    results.put(asdict(out))  # a dict: the parent cannot unpickle this module's classes (__mp_main__)


@dataclass
class Row:
    backend: str
    reviewers: int
    think_ms: float
    layout: str
    submissions: int
    wall_s: float
    submit: np.ndarray
    next_case: np.ndarray
    submit_queries: float
    next_queries: float
    errors: int
    load: tuple[float, float]


def run_load(backend: str, study: str, names: list[str], cases: int, processes: int, think_s: float) -> Row:
    """Every reviewer of ``names`` rates ``cases`` cases of ``study`` at once."""
    n_proc = min(processes, len(names))
    groups = [names[i::n_proc] for i in range(n_proc)]
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(n_proc + 1), ctx.Queue()
    procs = [ctx.Process(target=process_main, args=(study, g, cases, think_s, start, results), daemon=True)
             for g in groups]
    for p in procs:
        p.start()
    start.wait(timeout=600)
    load0 = os.getloadavg()[0]
    reports = [Timings(**results.get(timeout=1800)) for _ in procs]
    load1 = os.getloadavg()[0]
    for p in procs:
        p.join(timeout=60)
    errors = [e for r in reports for e in r.errors]
    for e in errors[:3]:
        print(e, file=sys.stderr)
    threads = {len(g) for g in groups}
    layout = f"{n_proc}×{'/'.join(map(str, sorted(threads)))}"
    submit = np.array([s for r in reports for s in r.submit])
    wall = max(r.finished for r in reports) - min(r.started for r in reports)
    return Row(backend, len(names), think_s * 1000, layout, len(submit), wall, submit,
               np.array([s for r in reports for s in r.next_case]),
               float(np.mean([q for r in reports for q in r.submit_queries] or [0])),
               float(np.mean([q for r in reports for q in r.next_queries] or [0])), len(errors), (load0, load1))


def seed(n_images: int, size: int, n_reviewers: int) -> Any:
    """The review fixture plus reviewer accounts ``b00``..; returns the ReviewWorkspace."""
    from tests.review_seed import seed_review_workspace
    from xai_core.review import accounts

    ws = seed_review_workspace(n=n_images, size=size)
    for i in range(n_reviewers):
        accounts.add_user(f"b{i:02d}", "reviewer", PASSWORD)
    return ws


def make_study(ws: Any, name: str, names: list[str], cases: int) -> None:
    """Every reviewer reads the same ``cases`` map cases (readers per case = reviewers), each in
    their own order."""
    from tests.review_seed import METHODS
    from xai_core.review import accounts, studies

    pool = len(ws.checkpoints) * len(METHODS) * len(ws.test_pks)
    if pool < cases:
        raise SystemExit(f"{pool} map cases < --cases {cases}: raise --images")
    studies.create_study(studies.StudySpec(name, ws.checkpoints, METHODS, tuple(names),
                                           samples=tuple(int(p) for p in ws.test_pks), cases_per_reviewer=cases,
                                           readers_per_case=len(names)), actor=accounts.LOCAL)


def write_floor(repeat: int = 200) -> float:
    """Median seconds of one committed one-row transaction through ``session_scope``."""
    from xai_core.review import audit

    times = []
    for i in range(repeat):
        tic = time.perf_counter()
        audit.record_now("bench", "bench.floor", target=str(i))
        times.append(time.perf_counter() - tic)
    return float(np.median(times))


def bench_backend(backend: str, args: argparse.Namespace) -> tuple[list[Row], float]:
    ws = seed(args.images, args.size, max(args.reviewers))
    floor = write_floor()
    rows = []
    for think in args.think_ms:
        cases = args.paced_cases if think else args.cases
        for n in args.reviewers:
            names = [f"b{i:02d}" for i in range(n)]
            study = f"bench{n}-{think:g}"
            make_study(ws, study, names, cases)
            row = run_load(backend, study, names, cases, args.processes, think / 1000)
            rows.append(row)
            print(f"  {backend} {n} reviewers, think {think:g} ms: {row.submissions / row.wall_s:.1f} submissions/s, "
                  f"submit p95 {np.percentile(row.submit, 95) * 1000:.1f} ms, load {row.load[0]:.1f}-{row.load[1]:.1f}",
                  file=sys.stderr, flush=True)
    return rows, floor


@contextmanager
def workspace(backend: str, database_url: str | None) -> Iterator[None]:
    """A temporary XAUDIT_HOME (dataset files, attribution store) and the backend's database."""
    from db import reset_engines

    cluster = None
    with tempfile.TemporaryDirectory(prefix="xaudit-bench-review-") as home:
        os.environ["XAUDIT_HOME"] = home
        os.environ.pop("DATABASE_URL", None)
        try:
            if backend == "postgresql":
                if database_url:
                    os.environ["DATABASE_URL"] = database_url
                else:
                    from tests.postgres import start_cluster

                    cluster = start_cluster()
                    os.environ["DATABASE_URL"] = cluster.url(cluster.create_database())
                _require_empty()
            reset_engines()
            yield
        finally:
            reset_engines()
            os.environ.pop("DATABASE_URL", None)
            if cluster is not None:
                cluster.stop()


def _require_empty() -> None:
    from sqlalchemy import func, select

    from db import Dataset, User, session_scope

    with session_scope() as session:
        if session.scalar(select(func.count(User.id))) or session.scalar(select(func.count(Dataset.id))):
            raise SystemExit("--database-url must name an empty database (the benchmark fills it)")


def table(rows: list[Row], floors: dict[str, float], markdown: bool) -> str:
    head = ["backend", "reviewers", "think ms", "procs×threads", "submissions", "submissions/s", "submit p50 ms",
            "submit p95 ms", "next_case p50 ms", "next_case p95 ms", "queries submit/next", "errors", "load avg"]
    body = []
    for r in rows:
        p = lambda a, q: f"{np.percentile(a, q) * 1000:.1f}" if len(a) else "-"  # noqa: E731
        body.append([r.backend, str(r.reviewers), f"{r.think_ms:g}", r.layout, str(r.submissions),
                     f"{r.submissions / r.wall_s:.1f}",
                     p(r.submit, 50), p(r.submit, 95), p(r.next_case, 50), p(r.next_case, 95),
                     f"{r.submit_queries:.0f}/{r.next_queries:.0f}", str(r.errors),
                     f"{r.load[0]:.1f}-{r.load[1]:.1f}"])
    floor = "; ".join(f"{b} {s * 1000:.1f} ms" for b, s in floors.items())
    note = f"floor of one committed one-row write (audit.record_now, 1 process, median): {floor}"
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines + ["", note])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--reviewers", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--think-ms", nargs="+", type=float, default=[0.0, 1000.0],
                        help="mean pause between showing and rating a case; one run per value")
    parser.add_argument("--cases", type=int, default=100, help="cases each reviewer rates without a pause")
    parser.add_argument("--paced-cases", type=int, default=20, help="cases each reviewer rates with a pause")
    parser.add_argument("--processes", type=int, default=8, help="at most this many reviewer processes")
    parser.add_argument("--images", type=int, default=200, help="dataset size (15%% are test images)")
    parser.add_argument("--size", type=int, default=128, help="image size in px")
    parser.add_argument("--database-url", default=None,
                        help="an empty PostgreSQL database instead of a throw-away server")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; {args.size} px images; "
          f"each reviewer rates {args.cases} cases at think 0, {args.paced_cases} with a pause; load avg at start "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    rows, floors = [], {}
    for backend in args.backends:
        with workspace(backend, args.database_url):
            got, floors[backend] = bench_backend(backend, args)
            rows += got
    print(table(rows, floors, args.markdown))
    print(f"load avg at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
