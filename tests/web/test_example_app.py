"""The example shop behind ``make demo``: its launcher, its access rules, its databases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from example_app import create_app, database_url, db
from example_app.models import Category
from example_app.seed import counts, seed

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
def demo_launcher(tmp_path, redis_url, loopback):
    """``example_app/run_demo.py`` run from inside example_app/, as ``make demo`` runs it."""
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "EXAMPLE_APP_INSTANCE": str(tmp_path / "instance"),
        "REDIS_URL": redis_url,
        "BACKUP_MANAGER_QUEUE": f"demo-{uuid.uuid4().hex[:8]}",
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
    try:
        seen = []
        for line in proc.stdout:  # until the banner: both processes are up and being watched
            seen.append(line)
            if "Ctrl-C stops" in line:
                break
        else:  # the launcher gave up (its output ended): say why, after it has exited
            proc.wait(timeout=30)
        assert proc.poll() is None, "".join(seen)
        yield proc, port, "".join(seen)
    finally:  # also when it never started or the test failed half-way
        if proc.poll() is None:  # let the launcher stop its children
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


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
