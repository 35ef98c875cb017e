"""The job lifecycle through a real RQ worker process."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3

from flask_backup_manager import service
from flask_backup_manager.jobs import run_backup

API = "/backups/api"


def backup_row(client, backup_id):
    return client.get(f"{API}/backups/{backup_id}").json


def messages(client, backup_id):
    return [line["message"] for line in client.get(f"{API}/backups/{backup_id}/logs").json["logs"]]


def test_worker_takes_backup_from_queued_to_succeeded_with_a_matching_file(app, client, run_worker):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    assert backup_row(client, backup_id)["status"] == "queued"
    run_worker()
    done = backup_row(client, backup_id)
    assert done["status"] == "succeeded", done
    path = app.extensions["backup_manager"].storage_dir / done["filename"]
    data = path.read_bytes()
    assert done["size"] == len(data)
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    assert done["started_at"] and done["finished_at"] and done["duration"] >= 0
    assert done["progress"]["percent"] == 100
    assert done["progress"]["tables_done"] == done["progress"]["tables_total"] >= 4
    con = sqlite3.connect(path)
    try:
        assert con.execute("select count(*) from orders").fetchone() == (150,)
        assert con.execute("select name from customers where id = 7").fetchone() == (
            "customer 7 'quoted'",
        )
    finally:
        con.close()
    log = messages(client, backup_id)
    assert log[0] == "queued: format sqlite3_db"
    assert log[1] == "started: format sqlite3_db"
    assert "table customers: 50 rows" in log
    assert "table orders: 150 rows" in log
    assert log[-1].startswith("finished: ") and done["sha256"] in log[-1]


def test_sqlite3_format_job_makes_a_gzip_that_sqlite_loads(app, client, run_worker):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"]
    run_worker()
    done = backup_row(client, backup_id)
    assert done["status"] == "succeeded", done
    path = app.extensions["backup_manager"].storage_dir / done["filename"]
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(gzip.decompress(path.read_bytes()).decode())
        assert con.execute("select count(*), sum(customer_id) from orders").fetchone()[0] == 150
    finally:
        con.close()


def test_failing_export_ends_failed_with_the_error_in_the_log_and_no_file(app, client, run_worker):
    backup = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json
    storage = app.extensions["backup_manager"].storage_dir
    (storage / backup["filename"]).mkdir(parents=True)  # the file's place is taken
    run_worker()
    done = backup_row(client, backup["id"])
    assert done["status"] == "failed"
    assert "output is a directory" in done["error"]
    assert any(m.startswith("failed: output is a directory") for m in messages(client, done["id"]))
    assert [p.name for p in storage.iterdir()] == [backup["filename"]]  # no temp file left


def test_a_job_delivered_twice_runs_once(app, client, run_worker):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    run_worker()
    first = backup_row(client, backup_id)
    with app.app_context():
        assert run_backup(backup_id) == "skipped"
    assert backup_row(client, backup_id) == first
    assert messages(client, backup_id).count("started: format sqlite3_db") == 1


def test_cancelled_while_queued_never_runs_and_leaves_no_file(app, client, run_worker):
    backup = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json
    assert client.post(f"{API}/backups/{backup['id']}/cancel").json["status"] == "cancelled"
    run_worker()
    assert backup_row(client, backup["id"])["status"] == "cancelled"
    with app.app_context():
        assert not service.file_path(service.get_backup(backup["id"])).exists()


def test_postgres_host_backs_up_in_all_three_formats(pg_app, run_worker, psql, owner_db):
    """The host database and the backup rows in PostgreSQL; each format restores to the data."""
    import subprocess

    from ..conftest import run_psql
    from ..hostapp import Customer, Order, create_app, db

    client = pg_app.test_client()
    ids = {
        fmt: client.post(f"{API}/backups", json={"format": fmt}).json["id"]
        for fmt in ("postgres", "sqlite3_db", "sqlite3")
    }
    run_worker()
    storage = pg_app.extensions["backup_manager"].storage_dir
    done = {fmt: backup_row(client, i) for fmt, i in ids.items()}
    assert {d["status"] for d in done.values()} == {"succeeded"}, done

    with pg_app.app_context():
        expected = [
            (c.id, c.name, c.vip, c.joined, c.prefs, [(o.total, o.note) for o in orders])
            for c in Customer.query.order_by(Customer.id)
            for orders in [Order.query.filter_by(customer_id=c.id).order_by(Order.id).all()]
        ]

    # postgres: psql restores it (as an ordinary owner: the file refuses a superuser); the app
    # then reads the same values
    target = owner_db
    sql = gzip.decompress((storage / done["postgres"]["filename"]).read_bytes())
    run_psql(psql, target, "--single-transaction", "-f", "-", stdin=sql)
    # sqlite3: the sqlite3 shell loads it
    loaded = storage.parent / "loaded.sqlite3"
    subprocess.run(
        ["sqlite3", str(loaded)],
        input=gzip.decompress((storage / done["sqlite3"]["filename"]).read_bytes()),
        check=True,
    )
    for uri in (
        target.replace("postgresql://", "postgresql+psycopg://", 1),
        f"sqlite:///{storage / done['sqlite3_db']['filename']}",
        f"sqlite:///{loaded}",
    ):
        copy = create_app({"SQLALCHEMY_DATABASE_URI": uri})
        with copy.app_context():
            got = [
                (c.id, c.name, c.vip, c.joined, c.prefs, [(o.total, o.note) for o in orders])
                for c in Customer.query.order_by(Customer.id)
                for orders in [Order.query.filter_by(customer_id=c.id).order_by(Order.id).all()]
            ]
            assert got == expected, uri
            # the copy carries the backup tables too: the app's Backup Manager starts on it
            assert copy.test_client().get(f"{API}/backups").status_code == 200
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
