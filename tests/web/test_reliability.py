"""Each guarantee of the README's "Guarantees" section, with its fault caused for real: a worker
killed with SIGKILL, a table locked by another session, the server ending the connection, a job
past its timeout, a cancel while the export waits, a full filesystem."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ..conftest import DATASETS, ROOT, WORKER, process_tree

API = "/backups/api"


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def pg_host(pg_url, host_env, monkeypatch, make_app):
    """Build the host app on PostgreSQL with extra config: ``pg_host(KEY=value, ...)``."""
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    monkeypatch.setenv("HOSTAPP_DATABASE_URL", url)
    host_env["HOSTAPP_DATABASE_URL"] = url

    def make(**config):
        app = make_app(**{f"BACKUP_MANAGER_{k}": v for k, v in config.items()})
        return app, app.test_client()

    return make


@contextmanager
def locked(url: str, table: str):
    """Another session holds ``table`` in ACCESS EXCLUSIVE mode until the block ends."""
    with psycopg.connect(url) as con:
        con.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield con
        con.rollback()


def backup(client, backup_id):
    return client.get(f"{API}/backups/{backup_id}").json


def messages(client, backup_id):
    return [line["message"] for line in client.get(f"{API}/backups/{backup_id}/logs").json["logs"]]


def parts(app) -> list[Path]:
    return list(app.extensions["backup_manager"].storage_dir.glob(".*.part*"))


def test_worker_killed_mid_export_is_failed_worker_lost_and_its_partial_file_removed(
    pg_host, pg_url, worker
):
    app, client = pg_host(HEARTBEAT=1, WORKER_LOST_AFTER=3)
    with locked(pg_url, "orders"):
        backup_id = client.post(f"{API}/backups", json={"format": "postgres"}).json["id"]
        proc = worker()
        wait_for(
            lambda: backup(client, backup_id)["status"] == "running" and parts(app),
            what="the export to be running with its temp file",
        )
        for pid in process_tree(
            proc.pid
        ):  # the worker and its work horse (RQ gives it its own session)
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
    done = wait_for(
        lambda: (b := backup(client, backup_id))["status"] != "running" and b,
        timeout=15,
        what="the reaper",
    )
    assert time.monotonic() - killed < 3 + 5
    assert done["status"] == "failed"
    assert done["error"] == "worker lost: no heartbeat for 3 s"
    assert "failed: worker lost: no heartbeat for 3 s" in messages(client, backup_id)
    assert parts(app) == []


def test_table_locked_by_someone_else_fails_after_the_lock_timeout_naming_it(
    pg_host, pg_url, run_worker
):
    app, client = pg_host(LOCK_TIMEOUT=1)
    with locked(pg_url, "orders"):
        backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
        run_worker()
    done = backup(client, backup_id)
    assert done["status"] == "failed"
    assert done["error"] == "table orders is locked by another session: gave up waiting after 1 s"
    assert parts(app) == []
    assert not (app.extensions["backup_manager"].storage_dir / done["filename"]).exists()


def test_connection_cut_mid_export_fails_with_the_servers_message(pg_host, pg_url, worker):
    app, client = pg_host()
    # this test's database only: another suite on the same server may have an export of its
    # own waiting on a lock, and terminating that one would leave ours waiting for ever
    query = (
        "SELECT pid FROM pg_stat_activity WHERE application_name = "
        "'flask-backup-manager' AND wait_event_type = 'Lock' AND datname = current_database()"
    )
    with locked(pg_url, "orders"), psycopg.connect(pg_url, autocommit=True) as admin:
        backup_id = client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"]
        worker()
        pid = wait_for(lambda: admin.execute(query).fetchone(), what="the export's backend")[0]
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        done = wait_for(
            lambda: (b := backup(client, backup_id))["status"] != "running" and b,
            what="the job to fail",
        )
    assert done["status"] == "failed"
    assert "terminating connection due to administrator command" in done["error"]
    assert parts(app) == []


def test_job_past_its_timeout_fails_timed_out(pg_host, pg_url, run_worker):
    app, client = pg_host(JOB_TIMEOUT=2)
    with locked(pg_url, "orders"):
        backup_id = client.post(f"{API}/backups", json={"format": "postgres"}).json["id"]
        run_worker()
    done = backup(client, backup_id)
    assert done["status"] == "failed"
    assert done["error"] == "timed out after 2 s"
    assert "failed: timed out after 2 s" in messages(client, backup_id)
    assert parts(app) == []


def test_cancel_stops_a_running_export_promptly_and_removes_its_partial_file(
    pg_host, pg_url, worker
):
    app, client = pg_host(HEARTBEAT=1)
    with locked(pg_url, "orders"):  # the export waits on this lock until it is cancelled
        backup_id = client.post(f"{API}/backups", json={"format": "postgres"}).json["id"]
        proc = worker()
        wait_for(
            lambda: backup(client, backup_id)["status"] == "running" and parts(app),
            what="the export to be running",
        )
        answer = client.post(f"{API}/backups/{backup_id}/cancel").json
        assert answer["status"] == "cancelled"
        wait_for(
            lambda: "stopped: the backup was cancelled" in messages(client, backup_id),
            timeout=10,
            what="the worker to stop the export",
        )
        assert parts(app) == []
        assert proc.poll() is None  # the worker lives on for the next job
    assert backup(client, backup_id)["status"] == "cancelled"


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3", "postgres"])
def test_disk_full_at_any_point_fails_cleanly_and_frees_the_space(tmp_path, fmt):
    """A real tmpfs of a few KiB up to just under the file's size (so the last flush fails),
    mounted in a user+mount namespace: no root needed, nothing to clean up outside."""
    source = f"sqlite:///{DATASETS / 'chinook' / 'Chinook_Sqlite.sqlite'}"
    export = [
        sys.executable,
        "-m",
        "flask_backup_manager",
        "export",
        "--source",
        source,
        "--format",
        fmt,
    ]
    full = tmp_path / "full"
    subprocess.run(export + ["--output", str(full)], check=True, capture_output=True)
    mount = tmp_path / "small"
    mount.mkdir()
    size = full.stat().st_size
    for limit in (8 << 10, size // 2, size - 4096):
        script = (
            f"mount -t tmpfs -o size={limit} tmpfs {mount} && cd {ROOT} && "
            f"{' '.join(map(str, export))} --output {mount}/out; echo rc=$?; "
            f"ls -A {mount}; df --output=used -k {mount} | tail -1"
        )
        out = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, f"cannot mount a small filesystem here: {out.stderr}"
        lines = out.stdout.split()
        assert lines[0] == "rc=1", (limit, out.stdout, out.stderr)
        assert out.stderr.strip().splitlines() == ["error: No space left on device"], out.stderr
        assert lines[1:] == ["0"], f"left behind on a {limit}-byte disk: {lines[1:-1]}"


def test_disk_full_during_a_job_fails_it_with_the_reason_in_its_log(
    app, client, host_env, tmp_path
):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    storage = host_env["HOSTAPP_STORAGE_DIR"]
    Path(storage).mkdir(parents=True, exist_ok=True)
    script = (
        f"mount -t tmpfs -o size=16k tmpfs {storage} && cd {ROOT} && "
        f"{' '.join(WORKER)} --burst; ls -A {storage} > {tmp_path}/left"
    )
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        env={**os.environ, **host_env},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    done = backup(client, backup_id)
    assert done["status"] == "failed"
    assert "No space left on device" in done["error"]
    assert any("No space left on device" in m for m in messages(client, backup_id))
    assert (tmp_path / "left").read_text() == ""


def test_storage_directory_and_files_are_private(app, client, run_worker):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"]
    run_worker()
    storage = app.extensions["backup_manager"].storage_dir
    assert storage.stat().st_mode & 0o777 == 0o700
    path = storage / backup(client, backup_id)["filename"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_password_reaches_no_log_answer_page_or_command_line(
    pg_url, host_env, monkeypatch, make_app, worker
):
    secret, role = "Sup3r-S3cret-pw", f"fbm_pw_{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{secret}'")
    try:
        url = pg_url.replace("postgresql://postgres@", f"postgresql+psycopg://{role}:{secret}@")
        monkeypatch.setenv("HOSTAPP_DATABASE_URL", url)
        host_env["HOSTAPP_DATABASE_URL"] = url
        client = make_app(BACKUP_MANAGER_LOCK_TIMEOUT=2).test_client()
        with locked(pg_url, "orders"):
            backup_id = client.post(f"{API}/backups", json={"format": "postgres"}).json["id"]
            proc = worker()
            wait_for(
                lambda: backup(client, backup_id)["status"] == "running", what="the export to run"
            )
            cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes() for p in process_tree(proc.pid)]
            wait_for(
                lambda: backup(client, backup_id)["status"] == "failed", what="the export to fail"
            )
        assert len(cmdlines) == 2  # the worker and its work horse
        assert all(secret.encode() not in c for c in cmdlines)
        seen = [
            str(backup(client, backup_id)),
            str(messages(client, backup_id)),
            client.get(f"/backups/{backup_id}", headers={"Accept": "text/html"}).text,
        ]
        assert "locked by another session" in seen[0]
        assert all(secret not in text for text in seen)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute(f"DROP OWNED BY {role}")
            con.execute(f"DROP ROLE IF EXISTS {role}")


def test_with_redis_down_the_list_and_pages_still_work(app, client):
    client.post(f"{API}/backups", json={"format": "sqlite3"})
    state = app.extensions["backup_manager"]
    good_url, state.redis_url = state.redis_url, "redis://127.0.0.1:1/0"  # nothing listens
    app.extensions.pop("backup_manager_redis", None)
    try:
        assert client.get(f"{API}/backups").json["total"] == 1
        assert client.get("/backups/", headers={"Accept": "text/html"}).status_code == 200
        assert client.get("/backups/1", headers={"Accept": "text/html"}).status_code == 200
    finally:
        state.redis_url = good_url
        app.extensions.pop("backup_manager_redis", None)


def test_download_answers_if_none_match_with_304(client, run_worker):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"]
    run_worker()
    sha = backup(client, backup_id)["sha256"]
    response = client.get(
        f"{API}/backups/{backup_id}/download", headers={"If-None-Match": f'"{sha}"'}
    )
    assert response.status_code == 304 and response.data == b""


def test_retention_keeps_the_newest_n_after_each_backup(make_app, run_worker):
    app = make_app(BACKUP_MANAGER_KEEP_LAST=2)
    client = app.test_client()
    ids = [client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"] for _ in range(3)]
    run_worker()
    listing = client.get(f"{API}/backups").json["backups"]
    assert [b["id"] for b in listing] == ids[:0:-1]
    storage = app.extensions["backup_manager"].storage_dir
    assert sorted(p.name for p in storage.iterdir()) == sorted(b["filename"] for b in listing)
    with app.app_context():
        from flask_backup_manager.service import audit_trail

        assert audit_trail(ids[0])[-1]["action"] == "delete"
        assert audit_trail(ids[0])[-1]["detail"] == "retention"


def test_retention_by_age_runs_from_the_cli(make_app, run_worker):
    from datetime import timedelta

    from flask_backup_manager.models import utcnow

    app = make_app(BACKUP_MANAGER_KEEP_DAYS=7)
    client = app.test_client()
    old, new = (
        client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"] for _ in range(2)
    )
    run_worker()
    with app.app_context():
        Backup = app.extensions["backup_manager"].models.Backup
        Backup.query.filter_by(id=old).update({"created_at": utcnow() - timedelta(days=8)})
        app.extensions["backup_manager"].db.session.commit()
    result = app.test_cli_runner().invoke(args=["backups", "prune"])
    assert result.exit_code == 0 and result.output.strip() == f"Deleted 1 backup: {old}."
    assert [b["id"] for b in client.get(f"{API}/backups").json["backups"]] == [new]


def test_prune_without_retention_settings_says_what_to_set(runner):
    result = runner.invoke(args=["backups", "prune"])
    assert result.exit_code == 1
    assert "BACKUP_MANAGER_KEEP_LAST" in result.output


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db", "postgres"])
def test_a_cancelled_export_raises_and_leaves_no_file_whenever_the_cancel_comes(tmp_path, fmt):
    import threading

    from flask_backup_manager.engine import ExportCancelled, export

    source = f"sqlite:///{DATASETS / 'chinook' / 'Chinook_Sqlite.sqlite'}"
    # when to cancel, told by the tables done (the calls between them come with time: how many
    # there are depends on the machine's speed, so a count of calls could pass the end unseen)
    moments = {
        "at the start": lambda p: True,
        "mid-way": lambda p: p.tables_done >= p.tables_total // 2,
        "at the very end": lambda p: p.tables_done == p.tables_total,
    }
    for moment in moments.values():
        cancel = threading.Event()

        def progress(p, cancel=cancel, moment=moment):
            if moment(p):
                cancel.set()

        with pytest.raises(ExportCancelled):
            export(source, fmt, tmp_path / "out", progress=progress, cancel=cancel)
        assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kind, fmt", [("sqlite", "sqlite3"), ("postgresql", "sqlite3_db"), ("postgresql", "postgres")]
)
def test_a_cancel_that_comes_between_two_tables_stops_the_next_one(
    tmp_path, make_pg_db, monkeypatch, kind, fmt
):
    """The cancel comes while no query runs (between tables): the export must not go on
    through the other tables, as it did when only the query under way was interrupted."""
    import sqlite3
    import threading

    from flask_backup_manager.engine import ExportCancelled, export
    from flask_backup_manager.engine.sources.postgres import PostgresSource
    from flask_backup_manager.engine.sources.sqlite import SQLiteSource

    tables = [f"t{i:02}" for i in range(30)]
    if kind == "sqlite":
        source = f"sqlite:///{tmp_path / 'many.db'}"
        con = sqlite3.connect(tmp_path / "many.db")
        for t in tables:
            con.execute(
                f"CREATE TABLE {t} AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                f"SELECT i + 1 FROM n WHERE i < 20000) SELECT i, hex(i) AS h FROM n"
            )
        con.commit()
        con.close()
    else:
        source = make_pg_db()
        with psycopg.connect(source, autocommit=True) as con:
            for t in tables:
                con.execute(
                    f"CREATE TABLE {t} AS SELECT i, md5(i::text) AS h "
                    "FROM generate_series(1, 20000) i"
                )
    cancel, interrupted = threading.Event(), threading.Event()
    finished = []
    for cls in (SQLiteSource, PostgresSource):  # the watch's call, seen by the test

        def interrupting(source, interrupt=cls.interrupt):
            interrupt(source)
            interrupted.set()

        monkeypatch.setattr(cls, "interrupt", interrupting)

    def progress(p):
        if p.finished:
            finished.append(p.finished[0])
            if not cancel.is_set():
                cancel.set()
                # the watch interrupts now, while no query runs: wait for it (an event, not a
                # pause a loaded machine may not give the watch's thread)
                assert interrupted.wait(60), "the cancel watch never interrupted the export"

    out = tmp_path / "out"
    with pytest.raises(ExportCancelled):
        export(source, fmt, out, progress=progress, cancel=cancel)
    assert 0 < len(finished) < 15
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_the_cancel_watch_goes_on_interrupting_after_an_interrupt_fails():
    """An interrupt may fail (the source between two connections, no cancel connection to
    the server): the watch must not die of it, or no later query would be interrupted."""
    import threading

    from flask_backup_manager.engine.base import watch

    calls = []

    def interrupt():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("Cannot operate on a closed database.")

    cancel = threading.Event()
    cancel.set()
    stop = watch(cancel, interrupt)
    try:
        deadline = time.monotonic() + 60  # 3 calls come 0.1 s apart; generous under load
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop()
    assert len(calls) >= 3


def test_sqlite_database_locked_by_another_connection_fails_after_the_lock_timeout(tmp_path):
    import sqlite3

    from flask_backup_manager.engine import ExportError, export

    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (a)")
    con.commit()
    con.execute("BEGIN EXCLUSIVE")  # a writer in the middle of a long transaction
    try:
        with pytest.raises(ExportError) as e:
            export(f"sqlite:///{db}", "sqlite3", tmp_path / "out", lock_timeout=1)
    finally:
        con.close()
    assert str(e.value) == (
        "the database is locked by another connection: gave up waiting after 1 s"
    )
    assert sorted(os.listdir(tmp_path)) == ["app.db"]


@pytest.mark.parametrize("side", ["include", "exclude"])
def test_a_table_name_that_matches_nothing_is_an_error_not_ignored(tmp_path, side):
    from flask_backup_manager.engine import ExportError, export

    source = f"sqlite:///{DATASETS / 'chinook' / 'Chinook_Sqlite.sqlite'}"
    with pytest.raises(ExportError, match=f"no such table to {side}: Custmer"):
        export(source, "sqlite3", tmp_path / "out", **{side: ["Custmer"]})
    assert os.listdir(tmp_path) == []


def test_retention_never_lets_a_newer_failure_push_out_the_last_good_backup(make_app, run_worker):
    app = make_app(BACKUP_MANAGER_KEEP_LAST=1)
    client = app.test_client()
    good = client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"]
    run_worker()
    bad = client.post(f"{API}/backups", json={"format": "sqlite3"}).json
    (app.extensions["backup_manager"].storage_dir / bad["filename"]).mkdir()  # it will fail
    run_worker()
    assert backup(client, bad["id"])["status"] == "failed"
    result = app.test_cli_runner().invoke(args=["backups", "prune"])
    assert result.output.strip() == "Deleted 0 backups."
    assert backup(client, good)["status"] == "succeeded"


def test_simultaneous_creations_never_exceed_max_active(pg_host):
    import threading

    app, _ = pg_host(MAX_ACTIVE=1)
    for _round in range(5):
        barrier, codes = threading.Barrier(3), []

        def post(barrier=barrier, codes=codes):
            client = app.test_client()
            barrier.wait()
            codes.append(client.post(f"{API}/backups", json={"format": "sqlite3"}).status_code)

        threads = [threading.Thread(target=post) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        want = [202, 429, 429] if _round == 0 else [429] * 3
        assert sorted(codes) == want, (_round, codes)
    active = [
        b
        for b in app.test_client().get(f"{API}/backups?per_page=100").json["backups"]
        if b["status"] in ("queued", "running")
    ]
    assert len(active) == 1
