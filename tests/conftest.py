from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from . import services

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture(scope="session")
def _pg(tmp_path_factory):
    url, bindir, handle = services.postgres(tmp_path_factory.mktemp("pg"))
    yield url, bindir
    del handle


@pytest.fixture(scope="session")
def pg_admin_url(_pg) -> str:
    """A PostgreSQL URL (database ``postgres``) of a role that may create databases."""
    return _pg[0]


@pytest.fixture(scope="session")
def psql(_pg) -> Path:
    return _pg[1] / "psql"


@pytest.fixture
def make_pg_db(pg_admin_url):
    """Create fresh, empty databases; returns their ``postgresql://`` URLs; drops them after."""
    made = []

    def make() -> str:
        name = f"fbm_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)

    yield make
    with psycopg.connect(pg_admin_url, autocommit=True) as con:
        for name in made:
            con.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_url(make_pg_db) -> str:
    return make_pg_db()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url, handle = services.redis_url(tmp_path_factory.mktemp("redis"))
    yield url
    del handle


@pytest.fixture(scope="session")
def loopback() -> None:
    """Fail at once, saying why, when nothing can connect to 127.0.0.1 (the web server tests'
    address): e.g. a network namespace whose loopback interface is down."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        try:
            socket.create_connection(server.getsockname(), timeout=3).close()
        except OSError as e:
            pytest.fail(f"cannot connect to 127.0.0.1 ({e}): is the loopback interface down?")


def run_psql(psql: Path, url: str, *args: str, stdin: bytes | None = None) -> str:
    """Run psql against ``url``; raises with psql's stderr when it fails."""
    out = subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, *args],
        input=stdin,
        capture_output=True,
        check=False,
    )
    if out.returncode:
        raise AssertionError(f"psql failed: {out.stderr.decode(errors='replace')[-2000:]}")
    return out.stdout.decode()


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def host_env(tmp_path, redis_url, monkeypatch) -> dict[str, str]:
    """Environment of the test host app (tests/hostapp.py): a SQLite database in tmp_path, the
    test Redis and a queue of its own, so parallel runs and a running demo never cross."""
    env = {
        "HOSTAPP_INSTANCE": str(tmp_path / "instance"),
        "HOSTAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'host.db'}",
        "HOSTAPP_REDIS_URL": redis_url,
        "HOSTAPP_QUEUE": f"fbm-test-{uuid.uuid4().hex[:8]}",
        "HOSTAPP_STORAGE_DIR": str(tmp_path / "storage"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _make_app(config=None):
    from .hostapp import create_app, db, seed

    app = create_app(config)
    with app.app_context():
        db.create_all()
        seed()
    return app


def _close_app(app) -> None:
    from rq import Queue

    from flask_backup_manager.queue import redis_connection

    from .hostapp import db

    with app.app_context():
        db.session.remove()
        conn = redis_connection()
        Queue(app.config["BACKUP_MANAGER_QUEUE"], connection=conn).delete(delete_jobs=True)
        conn.close()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def app(host_env):
    app = _make_app()
    yield app
    _close_app(app)


@pytest.fixture
def make_app(host_env, monkeypatch):
    """Build the host app with extra config, which its worker subprocesses see too."""
    made = []

    def make(**config):
        monkeypatch.setenv("HOSTAPP_CONFIG", json.dumps(config))
        host_env["HOSTAPP_CONFIG"] = json.dumps(config)
        made.append(_make_app())
        return made[-1]

    yield make
    for app in made:
        _close_app(app)


@pytest.fixture
def pg_app(host_env, pg_url, monkeypatch):
    """The host app on a real PostgreSQL database."""
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    monkeypatch.setenv("HOSTAPP_DATABASE_URL", url)
    host_env["HOSTAPP_DATABASE_URL"] = url
    app = _make_app()
    yield app
    _close_app(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


WORKER = [sys.executable, "-m", "flask", "--app", "tests.hostapp:create_app", "backups", "worker"]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (RQ's work horse runs in a session of its own)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # it ended while the tree was read
        return [pid]
    return [pid] + [p for c in children for p in process_tree(int(c))]


def checking_pids() -> list[int]:
    """This process's children (started by any of its threads) checking a ``postgres`` file
    as it is written (PsqlCheck)."""
    children = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children += (task / "children").read_text().split()
        except OSError:  # that thread ended meanwhile
            continue
    found = []
    for pid in children:
        try:
            if b"m.check_main()" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:  # it ended meanwhile
            continue
    return found


@pytest.fixture
def worker(host_env):
    """Start real workers (``flask backups worker``) that keep running until the test ends."""
    procs = []

    def start(prefix: list[str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(
            (prefix or []) + WORKER,
            cwd=ROOT,
            env={**os.environ, **host_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            for pid in process_tree(proc.pid):
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


@pytest.fixture
def run_worker(host_env):
    """Run a real RQ worker (``flask backups worker --burst``) in a subprocess until the queue
    is empty."""

    def run(timeout: float = 180) -> subprocess.CompletedProcess:
        cmd = [*WORKER, "--burst"]
        out = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, **host_env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    return run


#: the two account tables :func:`move_money_in_postgres` moves money between (2000 rows each)
BANK_SQL = b"""
    CREATE TABLE checking (id integer PRIMARY KEY, balance bigint NOT NULL);
    CREATE TABLE savings (id integer PRIMARY KEY, balance bigint NOT NULL);
    INSERT INTO checking SELECT g, 1000 FROM generate_series(1, 2000) g;
    INSERT INTO savings SELECT g, 1000 FROM generate_series(1, 2000) g;
"""


def move_money_in_postgres(url: str, stop, moved: list) -> None:
    """Until ``stop`` is set, move 7 from a ``checking`` row to a ``savings`` row, one
    transaction each: the two tables' sum never changes in any snapshot."""
    with psycopg.connect(url) as con:
        i = 0
        while not stop.is_set():
            i += 1
            with con.transaction():
                con.execute(
                    "UPDATE checking SET balance = balance - 7 WHERE id = %s", [i % 2000 + 1]
                )
                con.execute(
                    "UPDATE savings SET balance = balance + 7 WHERE id = %s", [(i * 13) % 2000 + 1]
                )
            moved.append(i)


def move_money_in_sqlite(db, stop, commits: list, pause: float = 0.0) -> None:
    """The same for SQLite tables ``a`` and ``b`` (ids 0..199)."""
    import random
    import sqlite3
    import time
    from contextlib import closing

    rnd = random.Random(1)
    with closing(sqlite3.connect(db, isolation_level=None, timeout=10)) as w:
        while not stop.is_set():
            amount, i, j = rnd.randint(1, 50), rnd.randrange(200), rnd.randrange(200)
            w.execute("BEGIN IMMEDIATE")
            w.execute("UPDATE a SET balance = balance - ? WHERE id = ?", (amount, i))
            w.execute("UPDATE b SET balance = balance + ? WHERE id = ?", (amount, j))
            w.execute("COMMIT")
            commits.append(1)
            if pause:
                time.sleep(pause)


def admin_connection(pg_admin_url: str) -> psycopg.Connection:
    return psycopg.connect(pg_admin_url, autocommit=True)


def url_with(pg_admin_url: str, **kw: str) -> str:
    return make_url(pg_admin_url).set(**kw).render_as_string(hide_password=False)


@pytest.fixture
def owner_db(pg_admin_url):
    """A fresh database owned by a fresh LOGIN role that is not a superuser; its URL."""
    role = f"fbm_owner_{uuid.uuid4().hex[:10]}"
    with admin_connection(pg_admin_url) as con:
        con.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        con.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(role), sql.Identifier(role)
            )
        )
    yield url_with(pg_admin_url, username=role, database=role)
    with admin_connection(pg_admin_url) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(role)))
        con.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def s3_env(monkeypatch, tmp_path) -> dict[str, str]:
    """boto3's standard credential chain sees the test credentials only: environment variables,
    and config files of the test's own (never the developer's ~/.aws)."""
    from .s3server import TEST_CREDENTIALS

    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    env = {
        **TEST_CREDENTIALS,
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API server (moto's standalone server over HTTP) for the whole session."""
    from .s3server import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, s3_env) -> str:
    """A new, empty bucket on the session's S3 server; its name."""
    return s3_server.create_bucket()


@pytest.fixture
def make_s3_server(tmp_path, s3_env):
    """Start S3 servers of the test's own (one it may kill, or one enforcing IAM through
    ``env``); stopped when the test ends."""
    from .s3server import S3Server

    servers = []

    def make(env: dict[str, str] | None = None):
        servers.append(S3Server(tmp_path, env).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()
