"""Reviewer attacks on the web side of issue 12 (through Flask's test client and real
workers): what a hostile customer's data or a host's own setup could do to the pages and the
API, each pinned by what the admin or a script would see."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import HTTPException

from .test_pages import API, HTML, token


def backed_up(client, run_worker, format_: str) -> tuple[dict, list[str]]:
    """A backup made through the API by a real worker: its object, which must have
    succeeded, and its log's messages."""
    backup_id = client.post(f"{API}/backups", json={"format": format_}).json["id"]
    run_worker()
    backup = client.get(f"{API}/backups/{backup_id}").json
    assert backup["status"] == "succeeded", backup["error"]
    return backup, [
        x["message"] for x in client.get(f"{API}/backups/{backup_id}/logs").json["logs"]
    ]


def test_a_host_handler_of_every_http_error_leaves_the_apis_answers_json(make_app):
    """Flask's documented "generic exception handler" (errorhandler(HTTPException)) in the
    host must not turn the API's JSON errors, or our error pages, into the host's page."""
    app = make_app()

    @app.errorhandler(HTTPException)
    def host_generic(e):
        return f"the host's page for {e.code}", e.code

    client = app.test_client()
    for path, code in (
        (f"{API}/backups/999", "not_found"),
        (f"{API}/nope", "not_found"),
        (f"{API}/backups?page=x", "bad_argument"),
    ):
        answer = client.get(path)
        assert answer.mimetype == "application/json", path
        assert answer.json["error"]["code"] == code, path
    page = client.get("/backups/999", headers=HTML)
    assert page.status_code == 404 and 'data-testid="error-page"' in page.text
    # the host's own errors stay the host's
    assert client.get("/nope", headers=HTML).text == "the host's page for 404"


def test_a_table_name_of_control_characters_does_not_fail_a_postgres_backup(
    pg_app, pg_url, run_worker
):
    """A PostgreSQL name holds up to 63 bytes of anything but NUL; each control character is
    shown as four (\\x01), so "copying table ..." outgrew the 255 characters of the phase
    column and the backup failed with the database's 'value too long'."""
    import psycopg
    from psycopg import sql

    name = "\x01" * 63
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(name)))
        con.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(name)))
    _, logs = backed_up(pg_app.test_client(), run_worker, "postgres")
    # the table's log line shows them as its phase does: escaped, not raw in the page
    assert "table " + "\\x01" * 63 + ": 1 row" in logs, logs


def _killed(app, backup_id: int, func: str | None = None, status: int = 9) -> None:
    """RQ's work-horse-killed handler, as the worker calls it, for a job of ``func`` (the
    backup job by default) on ``backup_id`` whose horse ended with wait ``status`` (9:
    SIGKILL)."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from flask_backup_manager.jobs import work_horse_killed
    from flask_backup_manager.queue import JOB_FUNCTION, redis_connection

    with app.app_context():
        job = Job.create(
            func or JOB_FUNCTION,
            args=(backup_id,),
            connection=redis_connection(),
            serializer=JSONSerializer,
        )
        work_horse_killed(job, 12345, status, None)


def test_a_dead_horse_changes_no_finished_backup_and_no_other_jobs_backup(app, run_worker):
    from flask_backup_manager.lifecycle import transition
    from flask_backup_manager.models import Status

    from .test_page_states import made, storage_file

    client = app.test_client()
    done = made(client, "sqlite3")
    run_worker()
    cancelled = made(client)
    client.post(f"{API}/backups/{cancelled}/cancel", headers={"X-CSRFToken": token(client)})
    running = made(client)
    with app.app_context():
        transition(running, (Status.QUEUED,), Status.RUNNING)

    def seen(backup_id):
        backup = client.get(f"{API}/backups/{backup_id}").json
        logs = client.get(f"{API}/backups/{backup_id}/logs").json["logs"]
        return backup["status"], backup["error"], len(logs)

    before = {i: seen(i) for i in (done, cancelled, running)}
    for backup_id in (done, cancelled):  # a horse whose backup finished before it died
        _killed(app, backup_id)
    _killed(app, running, func="os.getpid")  # another job's horse on the same queue
    assert {i: seen(i) for i in (done, cancelled, running)} == before
    assert storage_file(app, done).is_file()

    _killed(app, running, status=3 << 8)  # exited with code 3
    _killed(app, running)  # a second report changes nothing more
    status, error, lines = seen(running)
    assert (status, error) == (
        "failed",
        "the worker's process exited with code 3 while making the backup",
    )
    assert lines == before[running][2] + 1


def test_a_user_name_longer_than_its_column_does_not_break_creating_and_deleting(pg_app):
    """The host names its users (identity); a name is kept as ``created_by`` and as the
    audit's actor, 255 characters each: a longer one was a 500 on PostgreSQL."""
    name = "\u00e9" * 300
    pg_app.extensions["backup_manager"].ext.identity(lambda: name)
    client = pg_app.test_client()
    csrf = token(client)
    created = client.post("/backups/", data={"format": "postgres", "csrf_token": csrf})
    assert created.status_code == 303
    backup = client.get(created.headers["Location"].replace("/backups/", f"{API}/backups/")).json
    assert backup["created_by"] == name[:255]
    cancelled = client.post(f"/backups/{backup['id']}/cancel", data={"csrf_token": csrf})
    assert cancelled.status_code == 303
    audit = client.get(f"{API}/audit").json["audit"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("cancel", name[:255]),
        ("create", name[:255]),
    ]


def test_a_page_past_any_offset_postgresql_takes_is_an_empty_page(pg_app):
    """18 digits times 100 per page is an OFFSET beyond bigint: no query is made for it."""
    client = pg_app.test_client()
    client.post(f"{API}/backups", json={"format": "postgres"})
    huge = "999999999999999999"
    for path in (f"{API}/audit", f"{API}/backups"):
        answer = client.get(f"{path}?page={huge}&per_page=100")
        assert answer.status_code == 200, answer.text
        assert answer.json["total"] == 1 and answer.json["page"] == int(huge)
    page = client.get(f"/backups/activity?page={huge}", headers=HTML)
    assert page.status_code == 200 and f"No activity on page {huge}" in page.text
    page = client.get(f"/backups/?page={huge}", headers=HTML)
    assert page.status_code == 200 and f"No backups on page {huge}" in page.text


def test_a_dead_horse_while_the_database_restarts_leaves_the_worker_running(
    pg_app, pg_url, pg_admin_url
):
    """RQ's worker quits on any exception of its work-horse-killed handler ("found an
    unhandled exception, quitting"), skipping its own failure handling too: a database that
    restarted when the horse died (the OOM killer's day) must not also stop the worker."""
    import psycopg

    from .test_page_states import made

    client = pg_app.test_client()
    backup_id = made(client)
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:  # the pool's are now dead
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]],
        )
    _killed(pg_app, backup_id)  # raises nothing: the worker lives on
    backup = client.get(f"{API}/backups/{backup_id}").json  # and it failed the backup at once
    assert (backup["status"], backup["error"]) == (
        "failed",
        "the worker's process died (signal 9) while making the backup",
    )


def test_a_dead_horse_while_the_database_is_gone_is_logged_not_raised(app, host_env, caplog):
    from pathlib import Path

    from .test_page_states import made

    backup_id = made(app.test_client())
    db_file = Path(host_env["HOSTAPP_DATABASE_URL"].removeprefix("sqlite:///"))
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    db_file.rename(db_file.with_suffix(".away"))  # opened now, an empty file: no tables
    try:
        _killed(app, backup_id)  # raises nothing: the worker lives on
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
        db_file.with_suffix(".away").replace(db_file)
    assert f"backup {backup_id}: its work horse died" in caplog.text
    assert app.test_client().get(f"{API}/backups/{backup_id}").json["status"] == "queued"


def test_try_again_is_a_checked_state_change_that_never_doubles_past_the_limit(make_app):
    """The Try again form: CSRF, the "create" permission, an unknown or deleted backup, a
    double submit under the default one active backup."""
    from .test_page_states import flashes, made

    app = make_app(BACKUP_MANAGER_MAX_ACTIVE=1)
    client = app.test_client()
    csrf = token(client)
    failed = made(client)
    client.post(f"{API}/backups/{failed}/cancel", headers={"X-CSRFToken": csrf})

    assert client.post(f"/backups/{failed}/retry").status_code == 400  # no token
    forbidden = client.post(
        f"/backups/{failed}/retry",
        data={"csrf_token": csrf},
        headers={"X-Test-Permissions": "view"},
    )
    assert forbidden.status_code == 403
    assert client.get(f"{API}/backups").json["total"] == 1

    first = client.post(f"/backups/{failed}/retry", data={"csrf_token": csrf})
    new_id = int(first.headers["Location"].rsplit("/", 1)[1])
    client.get(first.headers["Location"], headers=HTML)  # its own flash, seen there
    again = client.post(f"/backups/{failed}/retry", data={"csrf_token": csrf})  # submitted twice
    assert again.status_code == 303 and again.headers["Location"] == f"/backups/{failed}"
    page = client.get(again.headers["Location"], headers=HTML).text
    assert flashes(page) == [
        (
            "error",
            f"Another backup is already queued or running: backup {new_id}. Try again when "
            "it has finished.",
        )
    ]
    assert f'href="/backups/{new_id}"' in page
    assert client.get(f"{API}/backups").json["total"] == 2

    # the one tried again is running: no second try of it
    running = client.post(f"/backups/{new_id}/retry", data={"csrf_token": csrf})
    page = client.get(running.headers["Location"], headers=HTML).text
    assert flashes(page)[0][0] == "error" and "Only a failed or cancelled" in flashes(page)[0][1]

    client.post(f"/backups/{failed}/delete", data={"csrf_token": csrf})
    gone = client.post(f"/backups/{failed}/retry", data={"csrf_token": csrf}, headers=HTML)
    assert gone.status_code == 404 and 'data-testid="error-page"' in gone.text
    assert client.get(f"{API}/backups").json["total"] == 1


def test_a_directory_where_the_file_was_is_missing_and_its_record_can_be_deleted(app, run_worker):
    """The pages call a backup whose file is replaced by a directory "missing from storage"
    and offer Delete: deleting was a 500 (unlink of a directory), after the row was gone."""
    from .test_page_states import flashes, made, section, storage_file

    client = app.test_client()
    csrf = token(client)
    backup_id = made(client, "sqlite3")
    run_worker()
    path = storage_file(app, backup_id)
    path.unlink()
    path.mkdir()
    detail = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert "The file is missing from storage." in section(detail, "file-problem")
    deleted = client.post(f"/backups/{backup_id}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/backups/"
    page = client.get("/backups/", headers=HTML).text
    assert flashes(page) == [("success", f"Backup {backup_id} deleted.")]
    assert client.get(f"{API}/backups/{backup_id}").status_code == 404
    assert path.is_dir()  # not ours to remove


@pytest.mark.parametrize(
    ("prefix", "hook"), [("/backups", "/backups/api/hook"), ("/", "/api/hook")]
)
def test_a_hosts_own_route_under_the_api_path_keeps_its_own_405(make_app, prefix, hook):
    """A host's route under our prefix (a webhook at /backups/api/hook, or anything under
    /api/ when the prefix is "/") answers a wrong method with the host's 405, not ours;
    our routes' 405s stay JSON."""
    app = make_app(BACKUP_MANAGER_URL_PREFIX=prefix)
    app.add_url_rule(hook, "hook", lambda: "hooked", methods=["POST"])
    app.register_error_handler(405, lambda e: ("the host's 405", 405))
    client = app.test_client()
    assert client.post(hook).text == "hooked"
    answer = client.get(hook)
    assert (answer.status_code, answer.text) == (405, "the host's 405")
    ours = client.put(f"{prefix.rstrip('/')}/api/backups")
    assert ours.status_code == 405 and ours.json["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("created_in", "search_path"),
    [("shop", "shop"), ("public", "shop, public")],
    ids=["tables-in-shop", "tables-in-public-behind-an-empty-shop"],
)
def test_a_postgres_host_whose_search_path_is_not_public_backs_up_without_its_history(
    make_pg_db, host_env, monkeypatch, run_worker, created_in, search_path
):
    """The app's tables (ours among them) are where its search_path finds them, not always in
    public, nor always in the first schema of that path: ours must be found there, and copied
    without their rows."""
    import gzip

    import psycopg

    from ..conftest import _close_app, _make_app

    url = make_pg_db()

    def set_search_path() -> None:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE SCHEMA shop")
            name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
            con.execute(f"ALTER DATABASE {name} SET search_path = {search_path}")

    if created_in == "shop":
        set_search_path()  # before the app creates its tables: they go there
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    monkeypatch.setenv("HOSTAPP_DATABASE_URL", sa_url)
    host_env["HOSTAPP_DATABASE_URL"] = sa_url
    app = _make_app()
    try:
        if created_in == "public":
            set_search_path()  # after: the tables stay in public, found through the path
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()
        backup, logs = backed_up(app.test_client(), run_worker, "postgres")
        key = "" if created_in == "public" else "shop."
        assert f"table {key}backup_manager_backups: 0 rows" in logs, logs
        assert f"table {key}customers: 50 rows" in logs, logs
        storage = app.extensions["backup_manager"].storage_dir
        text = gzip.decompress((storage / backup["filename"]).read_bytes()).decode()
        assert "queued: format postgres" not in text  # our log's rows stayed behind
    finally:
        _close_app(app)


def test_a_bind_backed_up_without_the_backup_managers_tables_still_backs_up(
    make_app, tmp_path, run_worker
):
    """BACKUP_MANAGER_BIND backs up another database than the one holding our tables: none
    of ours is there to copy without rows, and that is no reason to fail."""
    import sqlite3
    from contextlib import closing

    reports = tmp_path / "reports.db"
    with closing(sqlite3.connect(reports)) as con, con:
        con.execute("CREATE TABLE totals (day text PRIMARY KEY, amount integer)")
        con.execute("INSERT INTO totals VALUES ('2026-12-01', 42)")
    from ..hostapp import db

    try:
        app = make_app(
            SQLALCHEMY_BINDS={"reports": f"sqlite:///{reports}"}, BACKUP_MANAGER_BIND="reports"
        )
        _, logs = backed_up(app.test_client(), run_worker, "sqlite3")
        assert "table totals: 1 row" in logs, logs
    finally:  # the test app's db is shared: the next app has no such bind
        db.metadatas.pop("reports", None)


def test_a_csrf_token_that_is_not_ascii_is_refused_not_a_500(client):
    """hmac.compare_digest takes no str with a character past ASCII: a forged token of one
    (a form field, an X-CSRFToken header) was a 500."""
    token(client)  # the session cookie exists
    form = client.post(
        "/backups/", data={"format": "sqlite3", "csrf_token": "\u00e9"}, headers=HTML
    )
    assert form.status_code == 400 and 'data-testid="error-page"' in form.text
    header = client.post(f"{API}/backups", json={"format": "sqlite3"}, headers={"X-CSRFToken": "é"})
    assert header.status_code == 400 and header.json["error"]["code"] == "csrf_failed"
    assert client.get(f"{API}/backups").json["total"] == 0


def test_a_csrf_token_that_is_not_ascii_is_refused_with_flask_wtf_too(app, client):
    from flask_wtf.csrf import CSRFProtect

    CSRFProtect(app)
    client.get("/backups/", headers=HTML)
    answer = client.post(f"{API}/backups", json={"format": "sqlite3"}, headers={"X-CSRFToken": "é"})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "csrf_failed"


def test_a_failure_naming_a_customers_table_escapes_its_control_characters(
    make_app, pg_url, host_env, monkeypatch, run_worker
):
    """The reason a backup failed, on its page and the list, names the table as the phase and
    the log do: a bidi override in the name cannot turn the sentence around."""
    import psycopg
    from psycopg import sql

    name = "spoof\u202etxt.exe"
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    monkeypatch.setenv("HOSTAPP_DATABASE_URL", url)
    host_env["HOSTAPP_DATABASE_URL"] = url
    client = make_app(BACKUP_MANAGER_LOCK_TIMEOUT=1).test_client()
    with psycopg.connect(pg_url) as holder:
        holder.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(name)))
        holder.commit()
        holder.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(name))
        )
        backup_id = client.post(f"{API}/backups", json={"format": "postgres"}).json["id"]
        run_worker()
        holder.rollback()
    backup = client.get(f"{API}/backups/{backup_id}").json
    reason = "table spoof\\u202etxt.exe is locked by another session: gave up waiting after 1 s"
    assert (backup["status"], backup["error"]) == ("failed", reason)
    logs = [x["message"] for x in client.get(f"{API}/backups/{backup_id}/logs").json["logs"]]
    assert f"failed: {reason}" in logs
