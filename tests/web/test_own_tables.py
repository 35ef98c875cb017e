"""The copy does not describe itself: a backup carries the Backup Manager's own tables with
their schema and no rows, so the app started on a restored copy (each format, restored as a
user would) shows no backups, and its first backup is backup 1."""

from __future__ import annotations

import gzip
import shlex
import shutil
import subprocess
from contextlib import contextmanager

import pytest

from flask_backup_manager.engine.model import PSQL_RESTORE, SQLITE_RESTORE

from ..conftest import _close_app
from ..hostapp import Customer, Order, create_app, db

API = "/backups/api"
#: written into a log line and an audit row of the customer's history: no file may hold it
MARKER = "own-history-marker-93c2"
FORMATS = ("sqlite3_db", "sqlite3", "postgres")


def make_history(app, client, run_worker) -> dict[str, dict]:
    """A failed-to-be-forgotten history (a backup, its log and audit rows, one with
    :data:`MARKER`), then one backup of each format; their rows once the worker is done."""
    first = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    state = app.extensions["backup_manager"]
    with app.app_context():
        db.session.add(state.models.BackupLog(backup_id=first, message=f"{MARKER} log"))
        db.session.add(state.models.BackupAudit(action="download", backup_id=first, detail=MARKER))
        db.session.commit()
    ids = {fmt: client.post(f"{API}/backups", json={"format": fmt}).json["id"] for fmt in FORMATS}
    run_worker()
    done = {fmt: client.get(f"{API}/backups/{i}").json for fmt, i in ids.items()}
    assert {d["status"] for d in done.values()} == {"succeeded"}, done
    return done


def restore(fmt: str, path, tmp_path, request, psql) -> str:
    """The backup file at ``path`` restored as its format's description says; the copy's
    SQLAlchemy URL."""
    if fmt == "sqlite3_db":  # the file itself
        copy = tmp_path / "copy.sqlite3"
        shutil.copy(path, copy)
        return f"sqlite:///{copy}"
    if fmt == "sqlite3":
        copy = tmp_path / "restored.db"
        command = f"gunzip -c {shlex.quote(str(path))} | {SQLITE_RESTORE} {shlex.quote(str(copy))}"
    else:
        target = request.getfixturevalue("owner_db")
        client = PSQL_RESTORE.replace("psql", shlex.quote(str(psql)), 1)
        command = f"gunzip -c {shlex.quote(str(path))} | {client} -q -d {shlex.quote(target)}"
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stderr) == (0, ""), out
    if fmt == "sqlite3":
        return f"sqlite:///{copy}"
    return target.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def app_on(uri: str, storage):
    """The test host app started on the copy at ``uri`` (as the vendor would: its own storage)."""
    copy = create_app({"SQLALCHEMY_DATABASE_URI": uri, "BACKUP_MANAGER_STORAGE_DIR": str(storage)})
    try:
        yield copy
    finally:
        _close_app(copy)


@pytest.mark.parametrize("host", ["sqlite", "postgresql"])
def test_the_app_on_a_restored_copy_shows_no_backups_and_makes_backup_1(
    host, request, host_env, run_worker, psql, tmp_path
):
    app = request.getfixturevalue("app" if host == "sqlite" else "pg_app")
    client = app.test_client()
    done = make_history(app, client, run_worker)
    storage = app.extensions["backup_manager"].storage_dir

    for fmt in FORMATS:
        path = storage / done[fmt]["filename"]
        data = path.read_bytes()
        assert MARKER.encode() not in (data if fmt == "sqlite3_db" else gzip.decompress(data))
        log = [
            r["message"] for r in client.get(f"{API}/backups/{done[fmt]['id']}/logs").json["logs"]
        ]
        for table in (
            "backup_manager_backups",
            "backup_manager_logs",
            "backup_manager_audit",
            "backup_manager_links",
        ):
            assert f"table {table}: 0 rows" in log, (fmt, log)
        assert "table customers: 50 rows" in log

        here = tmp_path / fmt
        here.mkdir()
        uri = restore(fmt, path, here, request, psql)
        with app_on(uri, here / "storage") as copy:
            models = copy.extensions["backup_manager"].models
            with copy.app_context():
                assert [m.query.count() for m in models] == [0] * len(models), (host, fmt)
                assert (Customer.query.count(), Order.query.count()) == (50, 150)
            api = copy.test_client()
            listed = api.get(f"{API}/backups").json
            assert (listed["total"], listed["backups"]) == (0, []), (host, fmt)
            made = api.post(f"{API}/backups", json={"format": "sqlite3_db"})
            assert made.status_code == 202 and made.json["id"] == 1, (host, fmt, made.json)

            # its worker (on the copy) makes that backup
            worker_env = {
                "HOSTAPP_DATABASE_URL": uri,
                "HOSTAPP_STORAGE_DIR": str(here / "storage"),
            }
            saved = {k: host_env[k] for k in worker_env}
            host_env.update(worker_env)
            try:
                run_worker()
            finally:
                host_env.update(saved)
            assert api.get(f"{API}/backups/1").json["status"] == "succeeded", (host, fmt)
