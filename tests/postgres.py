"""A throw-away PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` in a temporary folder.

The server listens on 127.0.0.1 at a free port (password auth, SCRAM) and on a unix socket inside
its folder (trust); it runs as the unprivileged ``postgres`` user when the tests run as root
(``initdb`` refuses root), and is stopped and its folder removed by :meth:`PgCluster.stop`, or by
a watchdog process when the test run dies without stopping it.
``scripts/ensure_postgres.sh`` installs Debian's ``postgresql`` when it is missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "postgres"
BACKENDS = ("sqlite", "postgresql")

# Runs a test that uses the ``workspace`` fixture once per database backend (tests/integration/
# does so for all its tests); ``only_sqlite`` pins a test about the SQLite file to SQLite.
on_both_backends = pytest.mark.parametrize("backend", BACKENDS, indirect=True)
only_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def pg_bindir() -> Path:
    """The server binaries: ``pg_config --bindir`` when it has ``initdb``, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian's layout)."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name.split(".")[0]))
    candidates += [Path(p) for p in reversed(versions)]
    for path in candidates:
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    raise RuntimeError("PostgreSQL server binaries not found: run scripts/ensure_postgres.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The user the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise RuntimeError("tests run as root but there is no 'postgres' user to run the server: "
                           "run scripts/ensure_postgres.sh (Debian's postgresql creates it)") from None
    return SUPERUSER


@dataclass
class PgCluster:
    """One running cluster; :attr:`url` connects as the superuser over TCP with its password."""

    folder: Path
    port: int
    password: str
    bindir: Path
    user: str | None
    watchdog: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> Path:
        return self.folder / "run"

    def url(self, database: str = "postgres", *, user: str = SUPERUSER, password: str | None = None,
            port: int | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg2://{user}:{pw}@127.0.0.1:{port or self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` over the unix socket (trust auth) and return psql's unaligned output."""
        out = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=60, user=self.user, cwd=self.folder,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def create_database(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
        subprocess.run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.folder / "data"), "-m", "immediate",
                        "-w"], capture_output=True, timeout=60, user=self.user, cwd=self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)


# Stops the server and removes its folder when the process that started it dies without
# stopping it (a test run killed by a CI timeout or SIGKILL gets no fixture teardown).
WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, pg_ctl, folder, user = sys.argv[1:5]
while True:
    try:
        os.kill(int(parent), 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
subprocess.run([pg_ctl, "stop", "-D", folder + "/data", "-m", "immediate", "-w"], capture_output=True,
               user=user or None, cwd=folder)
shutil.rmtree(folder, ignore_errors=True)
"""


def start_cluster() -> PgCluster:
    """initdb + pg_ctl start in a new temporary folder; the caller must :meth:`PgCluster.stop` it."""
    bindir = pg_bindir()
    user = _run_as()
    # as root, /tmp (world-traversable) rather than $TMPDIR, which the server user may not enter
    folder = Path(tempfile.mkdtemp(prefix="xaudit-pg-", dir="/tmp" if user else None))
    password = secrets.token_hex(12)
    cluster = PgCluster(folder=folder, port=free_port(), password=password, bindir=bindir, user=user)
    try:
        (folder / "run").mkdir()
        (folder / "pwfile").write_text(password + "\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (folder, folder / "run", folder / "pwfile"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        _checked([str(bindir / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER, "-E", "UTF8",
                  "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                  f"--pwfile={folder / 'pwfile'}", "--no-sync"], user, folder)
        options = (f"-c listen_addresses=127.0.0.1 -c port={cluster.port} -c unix_socket_directories={folder / 'run'}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
                   " -c shared_buffers=32MB")
        _checked([str(bindir / "pg_ctl"), "start", "-D", str(folder / "data"), "-w", "-t", "60",
                  "-l", str(folder / "server.log"), "-o", options], user, folder)
        cluster.watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(bindir / "pg_ctl"), str(folder), user or ""],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _checked(cmd: list[str], user: str | None, cwd: Path) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, user=user, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {out.stderr.strip() or out.stdout.strip()}")
