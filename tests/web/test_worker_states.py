"""What a backup says while its worker is in trouble, with the trouble caused for real: a real
worker whose work horse is killed, a table another session holds locked, a job that raises.
The backup's row, its log and the API always say what is happening."""

from __future__ import annotations

import os
import re
import signal
import time

import psycopg
import pytest

from flask_backup_manager.presenters import human_size, plural

from ..conftest import process_tree
from .test_reliability import API, backup, locked, messages, parts, pg_host, wait_for

__all__ = ["pg_host"]  # a fixture of this module too

WAITING = re.compile(
    r"waiting for a lock on orders \(held by pid (\d+), 'idle in transaction' for \d+ s\)"
)


def create(client, fmt: str = "postgres") -> int:
    answer = client.post(f"{API}/backups", json={"format": fmt})
    assert answer.status_code == 202, answer.json
    return answer.json["id"]


def finished(client, backup_id: int, timeout: float = 60) -> dict:
    return wait_for(
        lambda: (b := backup(client, backup_id))["status"] not in ("queued", "running") and b,
        timeout=timeout,
        what=f"backup {backup_id} to finish",
    )


def test_killed_work_horse_fails_the_backup_within_seconds_and_the_worker_goes_on(
    pg_host, pg_url, worker
):
    # the reaper would take a minute: the failure must come from the horse's death
    app, client = pg_host(LOCK_TIMEOUT=600, HEARTBEAT=10, WORKER_LOST_AFTER=60)
    with locked(pg_url, "orders"):  # the job waits on the lock: it is surely mid-export
        backup_id = create(client)
        proc = worker()
        wait_for(
            lambda: (
                WAITING.fullmatch(backup(client, backup_id)["progress"]["phase"] or "")
                and parts(app)
            ),
            what="the export to wait for the lock, its temp file made",
        )
        horse = process_tree(proc.pid)[1]  # RQ's work horse, the worker's one child
        os.kill(horse, signal.SIGKILL)
        killed = time.monotonic()
        done = finished(client, backup_id, timeout=30)
    assert time.monotonic() - killed < 30
    assert done["status"] == "failed"
    assert done["error"] == "the worker's process died (signal 9) while making the backup"
    assert done["progress"]["phase"] is None
    assert "failed: the worker's process died (signal 9) while making the backup" in messages(
        client, backup_id
    )
    assert parts(app) == []
    assert proc.poll() is None  # the worker lives on ...
    again = finished(client, create(client))  # ... and makes the next backup
    assert again["status"] == "succeeded", again["error"]
    assert again["progress"]["percent"] == 100


def test_lock_wait_is_logged_and_shown_while_it_waits_then_the_backup_succeeds(
    pg_host, pg_url, worker
):
    app, client = pg_host(LOCK_TIMEOUT=120)
    with locked(pg_url, "orders") as holder:  # LOCK TABLE, then idle in transaction
        backup_id = create(client, "sqlite3_db")
        assert backup(client, backup_id)["progress"]["phase"] == "waiting for a worker"
        worker()
        line = wait_for(
            lambda: next((m for m in messages(client, backup_id) if WAITING.fullmatch(m)), None),
            what="the lock wait's log line",
        )
        assert int(WAITING.fullmatch(line)[1]) == holder.info.backend_pid
        shown = backup(client, backup_id)
        assert shown["status"] == "running"
        assert shown["progress"]["phase"] == line
        assert shown["progress"]["percent"] == 0
        assert shown["progress"]["eta"] is None
    done = finished(client, backup_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] | {"phase": None, "percent": 100, "eta": None} == done["progress"]
    log = messages(client, backup_id)
    assert log.index(line) < log.index("table orders: 150 rows")
    assert "verifying the file" in log
    assert re.fullmatch(r"finished: \d+ tables, \d+ rows, \d+ bytes, sha256 \w+", log[-1])


def test_storage_that_breaks_under_a_running_worker_fails_the_job_saying_so(
    host_env, make_app, tmp_path, worker
):
    """The worker checked the storage when it started; the directory becomes a file after
    that (a volume unmounted and something written in its place): the job fails saying why,
    and the worker goes on."""
    client = make_app().test_client()
    storage = tmp_path / "storage"
    proc = worker()
    wait_for(lambda: storage.is_dir(), what="the worker's storage check")  # it made the dir
    storage.rmdir()
    storage.write_text("not a directory")
    backup_id = create(client, "sqlite3")
    done = finished(client, backup_id)
    assert done["status"] == "failed"
    assert done["error"].startswith("the storage cannot be used: ")
    assert str(storage) in done["error"] and "\n" not in done["error"]
    assert f"failed: {done['error']}" in messages(client, backup_id)
    assert done["progress"]["phase"] is None
    assert proc.poll() is None


def test_a_job_that_raises_keeps_its_message(app, monkeypatch):
    """A bug in the job (an exception nothing expects, which no real input here causes:
    injected) fails the backup with the exception's name and message, never leaving it
    running, and reaches RQ, which records the job as failed."""
    import flask_backup_manager.jobs as jobs

    def bug(*args, **kw):
        raise RuntimeError("something nobody expected\nat line 2")

    monkeypatch.setattr(jobs, "export", bug)
    client = app.test_client()
    backup_id = create(client, "sqlite3")
    with app.app_context(), pytest.raises(RuntimeError):
        jobs.run_backup(backup_id)
    done = backup(client, backup_id)
    assert done["status"] == "failed"
    assert done["error"] == "internal error: RuntimeError: something nobody expected at line 2"
    assert f"failed: {done['error']}" in messages(client, backup_id)
    assert done["progress"]["phase"] is None


def test_a_job_past_its_timeout_keeps_timed_out_while_the_worker_goes_on(pg_host, pg_url, worker):
    app, client = pg_host(JOB_TIMEOUT=3, LOCK_TIMEOUT=600)
    with locked(pg_url, "orders"):
        backup_id = create(client)
        proc = worker()
        done = finished(client, backup_id, timeout=30)
    assert done["status"] == "failed"
    assert done["error"] == "timed out after 3 s"
    assert "failed: timed out after 3 s" in messages(client, backup_id)
    assert parts(app) == []
    assert proc.poll() is None


def test_progress_never_goes_back_and_tells_the_time_left(pg_host, pg_url, worker):
    """A backup big enough to be watched: polled all along, its percent only grows, its ETA
    shows once rows are copied, and the phases follow each other in the log."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((-g)::text) AS b "
            "FROM generate_series(1, 600000) g"
        )
        con.execute("ANALYZE big")
    app, client = pg_host()
    backup_id = create(client, "sqlite3")
    worker()
    seen, etas = [], []
    while (b := backup(client, backup_id))["status"] in ("queued", "running"):
        seen.append(b["progress"]["percent"])
        etas.append(b["progress"]["eta"])
        time.sleep(0.05)
    assert b["status"] == "succeeded", b["error"]
    assert seen == sorted(seen), seen
    assert any(0 < p < 99 for p in seen), seen
    assert any(isinstance(e, int) and e >= 0 for e in etas), etas
    log = messages(client, backup_id)
    assert log.index("table big: 600000 rows") < log.index("writing the SQL text")
    assert log.index("writing the SQL text") < log.index("verifying the file")
    assert not any(m.startswith("copying table") for m in log)


def test_counts_are_worded_for_one_and_for_many():
    assert [plural(n, "table") for n in (0, 1, 2)] == ["0 tables", "1 table", "2 tables"]
    assert human_size(1) == "1 byte"
