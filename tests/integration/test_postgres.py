"""PostgreSQL for real: the quick demo and the report through the ``xaudit`` script on the session's
throw-away server, and the ``DATABASE_URL`` mistakes a user makes (server down or hung, unknown
database, wrong password, a URL that is not PostgreSQL's): one line, exit 2, nothing created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import make_url

from db import reset_engines
from db.session import CONNECT_TIMEOUT_S, make_engine
from tests.postgres import PgCluster, free_port
from xai_core.attribution.store import read_maps_by_hash
from xai_core.cli import run
from xai_core.data import load_dataset
from xai_core.errors import WorkspaceError
from xai_core.metrics.ground_truth import explanation_precision

XAUDIT = Path(sys.executable).with_name("xaudit")


def _xaudit(args: list[str], home: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XAUDIT_HOME": str(home), "DATABASE_URL": url}
    return subprocess.run([str(XAUDIT), *args], env=env, capture_output=True, text=True, timeout=900)


def _rows(cluster: PgCluster, database: str, sql: str) -> list[list[str]]:
    return [line.split("|") for line in cluster.psql(sql, database).splitlines()]


def test_quick_demo_then_report_on_postgresql(pg_cluster: PgCluster, pg_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home, out = tmp_path / "ws", tmp_path / "report"
    demo = _xaudit(["demo", "--quick", "--no-serve"], home, pg_url)
    assert demo.returncode == 0, demo.stderr[-3000:]
    report = _xaudit(["report", "--out", str(out)], home, pg_url)
    assert report.returncode == 0, report.stderr[-3000:]
    assert report.stdout.strip().splitlines()[-1] == str(out / "report.html")
    assert "<h1>xaudit report</h1>" in (out / "report.html").read_text()
    assert not (home / "xaudit.db").exists()  # every row went to the server
    db = str(make_url(pg_url).database)

    # lineage: every fine-tuned checkpoint descends from a TL checkpoint of the same pre-training
    n_ft = int(pg_cluster.psql("SELECT count(*) FROM checkpoints WHERE phase = 'ft'", db))
    linked = int(pg_cluster.psql(
        "SELECT count(*) FROM checkpoints c JOIN checkpoints p ON p.id = c.parent_id"
        " WHERE c.phase = 'ft' AND p.phase = 'tl' AND p.pretrain = c.pretrain", db))
    assert n_ft >= 2 and linked == n_ft
    # every ground-truth row of a method (not a baseline) scores a stored map; drift pairs TL with its FT or epochs
    orphans = pg_cluster.psql(
        "SELECT count(*) FROM gt_metrics g WHERE g.method NOT LIKE 'baseline_%' AND NOT EXISTS (SELECT 1 FROM"
        " attribution_maps a WHERE a.checkpoint_id = g.checkpoint_id AND a.method = g.method"
        " AND a.params_hash = g.params_hash AND a.sample_pk = g.sample_pk)", db)
    assert orphans == "0"
    pairs = _rows(pg_cluster, db, "SELECT DISTINCT b.parent_id = a.id, a.phase, b.phase FROM drift_metrics d"
                  " JOIN checkpoints a ON a.id = d.checkpoint_a_id JOIN checkpoints b ON b.id = d.checkpoint_b_id")
    # TL→FT, TL→each FT epoch (the drift study), LayerCAM vs Grad-CAM++ on one TL or FT checkpoint
    assert sorted(pairs) == [["f", "ft", "ft"], ["f", "tl", "tl"], ["t", "tl", "epoch"], ["t", "tl", "ft"]]
    assert pg_cluster.psql("SELECT count(*) FROM gt_metrics WHERE metric = 'precision' AND (value < 0 OR value > 1)",
                           db) == "0"

    # the report's benchmark table equals PostgreSQL's own aggregate of the stored rows
    bench = pd.read_csv(out / "benchmark.csv")
    bench = bench[bench["metric"] == "precision"].set_index(["method", "pretrain", "degree"]).sort_index()
    sql = _rows(pg_cluster, db, "SELECT g.method, c.pretrain, c.degree, count(*), avg(g.value) FROM gt_metrics g"
                " JOIN checkpoints c ON c.id = g.checkpoint_id WHERE g.correct AND g.metric = 'precision'"
                " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    assert len(sql) == len(bench) > 0
    assert [tuple(r[:3]) for r in sql] == list(bench.index)
    assert [int(r[3]) for r in sql] == bench["n"].tolist()
    np.testing.assert_allclose([float(r[4]) for r in sql], bench["mean"].to_numpy(), rtol=0, atol=1e-12)

    # stored values are doubles: recomputing one checkpoint's saliency precision gives the same numbers
    monkeypatch.setenv("XAUDIT_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    reset_engines()

    ck, phash = _rows(pg_cluster, db, "SELECT checkpoint_id, params_hash FROM gt_metrics"
                      " WHERE method = 'saliency' ORDER BY checkpoint_id LIMIT 1")[0]
    stored = _rows(pg_cluster, db, f"SELECT g.sample_pk, g.value FROM gt_metrics g WHERE g.method = 'saliency'"
                   f" AND g.checkpoint_id = {ck} AND g.metric = 'precision' ORDER BY g.sample_pk")
    pks = [int(r[0]) for r in stored]
    dataset = load_dataset(pg_cluster.psql("SELECT name FROM datasets ORDER BY id LIMIT 1", db))
    row_of = {int(pk): i for i, pk in enumerate(dataset.sample_pks)}
    masks = dataset.masks[[row_of[p] for p in pks]]
    maps = read_maps_by_hash(int(ck), "saliency", phash, pks).maps
    np.testing.assert_allclose(explanation_precision(maps, masks), [float(r[1]) for r in stored], rtol=0, atol=1e-12)
    reset_engines()


@pytest.fixture
def hung_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server or a firewall)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture
def password_role(pg_cluster: PgCluster) -> Iterator[tuple[str, str]]:
    """A login role with a password that owns an empty database of the same name."""
    name, password = f"auditor_{os.getpid()}", "right-horse-battery"
    pg_cluster.psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    pg_cluster.psql(f"CREATE DATABASE {name} OWNER {name}")
    yield name, password
    reset_engines()
    pg_cluster.drop_database(name)
    pg_cluster.psql(f"DROP ROLE {name}")


def _one_line_error(args: list[str], url: str, home: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> tuple[str, float]:
    monkeypatch.setenv("XAUDIT_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", url)
    reset_engines()
    t0 = time.perf_counter()
    code = run(args)
    seconds = time.perf_counter() - t0
    reset_engines()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert not home.exists()  # nothing created in the workspace
    return lines[0], seconds


COMMANDS = [["demo", "--quick", "--no-serve"], ["report"], ["data", "build", "--name", "x", "--n", "6"]]


@pytest.mark.parametrize("args", COMMANDS, ids=["demo", "report", "data-build"])
def test_server_down_fails_fast_with_one_line(args: list[str], pg_cluster: PgCluster, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    line, _ = _one_line_error(args, pg_cluster.url("xaudit", port=port), tmp_path / "ws", monkeypatch, capsys)
    assert line == (f"error: cannot reach the PostgreSQL server at 127.0.0.1:{port} (Connection refused); "
                    "start the server or fix the host and port in DATABASE_URL")
    assert pg_cluster.password not in line
    t0 = time.perf_counter()  # a refused connection fails at once (no retries, no waiting for the timeout)
    with pytest.raises(WorkspaceError, match="Connection refused"):
        make_engine(pg_cluster.url("xaudit", port=port))
    assert time.perf_counter() - t0 < 2


def test_hung_server_times_out_after_the_connect_timeout(hung_server: int, pg_cluster: PgCluster, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    line, seconds = _one_line_error(COMMANDS[0], pg_cluster.url("xaudit", port=hung_server), tmp_path / "ws",
                                    monkeypatch, capsys)
    assert line == (f"error: cannot reach the PostgreSQL server at 127.0.0.1:{hung_server} (timeout expired); "
                    "start the server or fix the host and port in DATABASE_URL")
    assert CONNECT_TIMEOUT_S - 0.5 < seconds < CONNECT_TIMEOUT_S + 5


@pytest.mark.parametrize("args", COMMANDS, ids=["demo", "report", "data-build"])
def test_unknown_database_is_named_and_not_created(args: list[str], pg_cluster: PgCluster, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    name = f"nosuch_{os.getpid()}"
    line, _ = _one_line_error(args, pg_cluster.url(name), tmp_path / "ws", monkeypatch, capsys)
    assert line == (f"error: database '{name}' does not exist on the PostgreSQL server at 127.0.0.1:{pg_cluster.port}; "
                    f"create it (createdb {name}) or fix the database name in DATABASE_URL")
    assert pg_cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "0"


def test_wrong_password_and_missing_rights_are_one_line_without_the_password(password_role: tuple[str, str], pg_cluster: PgCluster,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    role, password = password_role
    wrong = "wrong-horse-battery"
    tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    for args in COMMANDS:
        line, _ = _one_line_error(args, pg_cluster.url(role, user=role, password=wrong), tmp_path / "ws",
                                  monkeypatch, capsys)
        assert line == (f"error: the PostgreSQL server at 127.0.0.1:{pg_cluster.port} refused user '{role}' "
                        f"(password authentication failed for user \"{role}\"); "
                        "fix the user name and password in DATABASE_URL")
        assert wrong not in line and password not in line
        assert pg_cluster.psql(tables, role) == "0"
    # the right password over the same TCP/SCRAM path opens the database and migrates it
    monkeypatch.setenv("DATABASE_URL", pg_cluster.url(role, user=role, password=password))
    reset_engines()
    assert run(["data", "list"]) == 0
    assert int(pg_cluster.psql(tables, role)) >= 8
    # a database the user does not own: PostgreSQL 15 gives it no CREATE right on schema public
    line, _ = _one_line_error(COMMANDS[0], pg_cluster.url("postgres", user=role, password=password), tmp_path / "ws",
                              monkeypatch, capsys)
    assert line == (f"error: user '{role}' may not create xaudit's tables in database 'postgres' at "
                    f"127.0.0.1:{pg_cluster.port} (permission denied for schema public); use the database's owner "
                    "in DATABASE_URL or grant CREATE on schema public")
    assert pg_cluster.psql(tables, "postgres") == "0"


@pytest.mark.parametrize(("url", "message"), [
    ("postgres://u:secret@127.0.0.1/x", "error: DATABASE_URL names an unsupported database (postgres); "
     "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE or unset it to use SQLite"),
    ("localhost:5432/xaudit", "error: DATABASE_URL is not a database URL; use "
     "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or unset it to use SQLite in the workspace"),
])
def test_url_that_is_not_postgresql_is_one_line(url: str, message: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    line, _ = _one_line_error(COMMANDS[0], url, tmp_path / "ws", monkeypatch, capsys)
    assert line == message and "secret" not in line


def test_a_killed_test_run_leaves_no_server_behind() -> None:
    """The throw-away server outlives no test run: SIGKILL the process that started it (no teardown
    runs) and the watchdog stops the server and removes its folder."""
    script = ("import os, signal; from tests.postgres import start_cluster; c = start_cluster();"
              " print(c.folder, c.port, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == -9, done.stderr
    folder, port = done.stdout.split()
    deadline = time.monotonic() + 30
    while (Path(folder).exists() or _listening(int(port))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(folder).exists() and not _listening(int(port))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
