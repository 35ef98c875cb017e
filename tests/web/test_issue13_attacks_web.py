"""Attacks on the web side of issue 13 (redaction profiles, the manifest): ways around
BACKUP_MANAGER_REQUIRE_REDACTION, a job whose profile changed under it, the manifest's answers
for each state, markup from the customer's schema or the host's rules on the pages, bad
declarations at start-up, and ``flask backups redaction check`` on a database it cannot
reach. Each test failed before its fix, or pins a door found closed."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.engine import make_url
from werkzeug.datastructures import MultiDict

from flask_backup_manager import BackupManager

from ..conftest import _close_app, _make_app, url_with
from .conftest import apps_on
from .test_redaction_web import VENDOR, start

API = "/backups/api"
HTML = {"Accept": "text/html"}


def token_of(client) -> str:
    page = client.get("/backups/", headers=HTML)
    return re.search(r'data-csrf-token="([^"]+)"', page.text).group(1)


def worker_config(host_env, monkeypatch, **config) -> None:
    """The config the next worker subprocess starts with (the app in the test keeps its own)."""
    host_env["HOSTAPP_CONFIG"] = json.dumps(config)
    monkeypatch.setenv("HOSTAPP_CONFIG", host_env["HOSTAPP_CONFIG"])


# -- REQUIRE_REDACTION: no way to a full copy --------------------------------------------


def test_a_full_copy_queued_before_redaction_was_required_is_not_made_by_a_worker_requiring_it(
    make_app, run_worker, host_env, monkeypatch
):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": "sqlite3"})
    assert made.status_code == 202 and made.json["redaction"] is None
    worker_config(
        host_env,
        monkeypatch,
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR},
        BACKUP_MANAGER_REQUIRE_REDACTION=True,
    )
    run_worker()
    backup = client.get(f"{API}/backups/{made.json['id']}").json
    assert backup["status"] == "failed", backup
    assert "full copy" in backup["error"] and "BACKUP_MANAGER_REQUIRE_REDACTION" in backup["error"]
    assert not any(app.extensions["backup_manager"].storage_dir.glob("*"))


def test_a_retry_of_a_full_copy_once_redaction_is_required_is_refused_on_the_page(
    make_app, host_env, monkeypatch
):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    client = app.test_client()
    first = client.post(f"{API}/backups", json={"format": "sqlite3"}).json
    client.post(f"{API}/backups/{first['id']}/cancel")
    app.extensions["backup_manager"].require_redaction = True  # as a restart with it on
    answer = client.post(
        f"/backups/{first['id']}/retry",
        data={"csrf_token": token_of(client)},
        headers=HTML,
        follow_redirects=True,
    )
    assert answer.status_code == 200
    assert "A full copy is not allowed here" in answer.text
    assert client.get(f"{API}/backups").json["total"] == 1


BAD_VALUES = ["", None, " ", "\t", "Vendor", "VENDOR", "vendor ", "v\u0435ndor", "vendor\x00"]


@pytest.mark.parametrize("value", [*BAD_VALUES, [], {}, 0, False, [""], 0.0], ids=repr)
def test_required_redaction_turns_every_other_value_away_with_a_4xx_json_and_creates_nothing(
    make_app, value
):
    app = make_app(
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR}, BACKUP_MANAGER_REQUIRE_REDACTION=True
    )
    client = app.test_client()
    answer = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": value})
    assert answer.status_code in (400, 403), answer.data
    assert answer.json["error"]["code"] in ("unknown_redaction", "redaction_required")
    assert client.get(f"{API}/backups").json["total"] == 0


def test_a_json_body_with_the_key_twice_is_read_by_its_last_and_refused_when_that_is_full(
    make_app,
):
    app = make_app(
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR}, BACKUP_MANAGER_REQUIRE_REDACTION=True
    )
    client = app.test_client()
    body = '{"format": "sqlite3", "redaction": "vendor", "redaction": ""}'
    answer = client.post(f"{API}/backups", data=body, content_type="application/json")
    assert answer.status_code == 403 and answer.json["error"]["code"] == "redaction_required"
    assert client.get(f"{API}/backups").json["total"] == 0


@pytest.mark.parametrize("fields", [["", "vendor"], ["Vendor", "vendor"], [" "]])
def test_a_form_with_odd_redaction_fields_never_makes_a_full_copy_when_one_is_required(
    make_app, fields
):
    app = make_app(
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR}, BACKUP_MANAGER_REQUIRE_REDACTION=True
    )
    client = app.test_client()
    data = MultiDict([("format", "sqlite3"), ("csrf_token", token_of(client))])
    data.setlist("redaction", fields)
    answer = client.post("/backups/", data=data, headers=HTML, follow_redirects=True)
    assert answer.status_code == 200 and answer.request.path == "/backups/new"
    assert client.get(f"{API}/backups").json["total"] == 0


@pytest.mark.parametrize("value", ["", " ", "Vendor"])
def test_the_cli_never_makes_a_full_copy_when_one_is_required(make_app, value):
    app = make_app(
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR}, BACKUP_MANAGER_REQUIRE_REDACTION=True
    )
    out = app.test_cli_runner().invoke(
        args=["backups", "create", "--format", "sqlite3", "--redaction", value]
    )
    assert out.exit_code == 1 and out.output.startswith("Error: "), out.output
    assert out.output.count("\n") == 1
    with app.app_context():
        assert app.extensions["backup_manager"].models.Backup.query.count() == 0


def test_a_profile_removed_after_its_backup_was_queued_fails_it_and_makes_no_full_copy(
    make_app, run_worker, host_env, monkeypatch
):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR, "other": {"orders": "no_rows"}})
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"}).json
    worker_config(host_env, monkeypatch, BACKUP_MANAGER_REDACTION={"other": {"orders": "no_rows"}})
    run_worker()
    backup = client.get(f"{API}/backups/{made['id']}").json
    assert backup["status"] == "failed"
    assert backup["error"] == "redaction profile 'vendor' is no longer configured"
    assert not any(app.extensions["backup_manager"].storage_dir.glob("*"))


# -- the manifest endpoint ---------------------------------------------------------------


def test_the_manifest_of_an_unknown_a_failed_or_a_deleted_backup_is_a_404_json_never_cached(
    make_app,
):
    app = make_app()
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": "sqlite3"}).json
    for path in ("999", "abc", "-1", "1e3", str(2**70)):
        answer = client.get(f"{API}/backups/{path}/manifest")
        assert answer.status_code == 404 and answer.headers["Cache-Control"] == "no-store"
        assert answer.json["error"]["code"] == "not_found"
    client.post(f"{API}/backups/{made['id']}/cancel")
    answer = client.get(f"{API}/backups/{made['id']}/manifest")
    assert answer.status_code == 404 and answer.json["error"]["code"] == "no_manifest"
    assert "was cancelled" in answer.json["error"]["message"]
    assert client.delete(f"{API}/backups/{made['id']}").status_code == 204
    gone = client.get(f"{API}/backups/{made['id']}/manifest")
    assert gone.status_code == 404 and gone.json["error"]["code"] == "not_found"
    denied = client.get(f"{API}/backups/1/manifest", headers={"X-Test-Permissions": "create"})
    assert denied.status_code == 403


# -- markup from the schema or the rules -------------------------------------------------

EVIL = "<img src=x onerror=alert(1)>"


def pages_of(client, backup_id: int) -> dict[str, str]:
    out = {}
    for path in ("/backups/new", "/backups/", f"/backups/{backup_id}", "/backups/activity"):
        page = client.get(path, headers=HTML)
        assert page.status_code == 200, path
        out[path] = page.text
    return out


def test_markup_in_table_column_and_rule_text_is_escaped_on_every_page(make_app, run_worker):
    rules = {**VENDOR, "orders.note": f"fixed:{EVIL}", f"{EVIL}.x": "skip"}
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": rules})
    from ..hostapp import db

    with app.app_context():
        db.session.execute(sa.text(f'CREATE TABLE "{EVIL}.x" (id integer, "{EVIL}phone" text)'))
        db.session.execute(sa.text(f'CREATE TABLE "{EVIL}" (id integer, "{EVIL}phone" text)'))
        db.session.execute(sa.text(f'INSERT INTO "{EVIL}" VALUES (1, :v)'), {"v": EVIL})
        db.session.commit()
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"}).json
    for path, text in pages_of(client, made["id"]).items():
        assert EVIL not in text and "<img" not in text, path
    assert "phone" in client.get("/backups/new", headers=HTML).text  # the guard saw it
    run_worker()
    backup = client.get(f"{API}/backups/{made['id']}").json
    assert backup["status"] == "succeeded", backup
    manifest = client.get(f"{API}/backups/{made['id']}/manifest").json
    assert EVIL in manifest["tables"]  # the summary has a name of markup to show...
    for path, text in pages_of(client, made["id"]).items():
        assert EVIL not in text and "<img" not in text, path  # ... shown as text
    assert (
        "&lt;img src=x onerror=alert(1)&gt;"
        in pages_of(client, made["id"])[f"/backups/{made['id']}"]
    )


def test_the_verification_servers_password_host_and_role_are_on_no_page_log_or_answer(
    make_app, run_worker, pg_admin_url
):
    secret = "sekrit-verify-77"
    url = url_with(pg_admin_url, password=secret, database="no_such_db_r2", username="r2nobody")
    app = make_app(BACKUP_MANAGER_VERIFY_POSTGRES_URL=url)
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": "postgres"}).json
    run_worker()
    backup = client.get(f"{API}/backups/{made['id']}")
    assert backup.json["status"] == "failed", backup.json
    assert "verification failed" in backup.json["error"]
    answers = [backup.text, client.get(f"{API}/backups/{made['id']}/logs").text]
    answers += [client.get(f"{API}/backups/{made['id']}/manifest").text]
    answers += list(pages_of(client, made["id"]).values())
    for text in answers:  # nor its host and role: the host's configuration, not the viewer's
        assert secret not in text and "r2nobody" not in text and '"127.0.0.1"' not in text
    assert 'role \\"***\\" does not exist' in backup.text  # still says what went wrong


# -- start-up checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        ["vendor"],
        "vendor",
        {"vendor": ["users.email"]},
        {"vendor": "users.email"},
        {"vendor": {"users": {"email": "email"}}},
        {"vendor": {"users.email": ["email"]}},
        {"vendor": {"users.email": None}},
        {"vendor": {"users.email": ""}},
        {"vendor": {"": "null"}},
        {"vendor": {"users.email.x.y": "null"}},
        {"vendor": None},
    ],
    ids=repr,
)
def test_a_profile_config_of_a_wrong_shape_stops_the_app_naming_the_key(tmp_path, config):
    with pytest.raises(ValueError, match="BACKUP_MANAGER_REDACTION"):
        start(tmp_path, BACKUP_MANAGER_REDACTION=config)


def test_two_apps_in_one_process_keep_their_own_profiles(tmp_path):
    first = start(tmp_path / "a", BACKUP_MANAGER_REDACTION={"vendor": {"users.email": "email"}})
    second = start(tmp_path / "b", BACKUP_MANAGER_REDACTION={"other": {"sessions": "no_rows"}})
    from flask_backup_manager.state import redactions

    with first.app_context():
        assert list(redactions()) == ["vendor"]
    with second.app_context():
        assert list(redactions()) == ["other"]


def test_a_model_with_a_bad_rule_imported_after_init_app_is_named_not_a_bare_500(tmp_path):
    app = Flask("lateapp", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite'}",
        BACKUP_MANAGER_REDACTION={"vendor": {}},
    )
    db = SQLAlchemy(app)
    BackupManager(app, db=db, access=lambda permission: True)

    class Late(db.Model):
        __tablename__ = "late"
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.Text, info={"backup_manager": {"redact": "scramble"}})

    with app.app_context():
        db.create_all()
    client = app.test_client()
    answer = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"})
    assert answer.status_code == 500
    assert answer.json["error"]["code"] == "bad_redaction_config"
    assert "late.email" in answer.json["error"]["message"]
    page = client.get("/backups/new", headers=HTML)
    assert page.status_code == 500 and "late.email" in page.text
    with app.app_context():
        assert app.extensions["backup_manager"].models.Backup.query.count() == 0
        db.engine.dispose()


# -- flask backups redaction check -------------------------------------------------------


def test_redaction_check_on_a_database_it_cannot_reach_is_one_line_without_the_password(
    tmp_path,
):
    app = Flask("unreachable", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg://someone:sekrit-pw-91@127.0.0.1:1/shop",
        BACKUP_MANAGER_REDACTION={"vendor": {}},
    )
    db = SQLAlchemy(app)
    BackupManager(app, db=db)
    out = app.test_cli_runner().invoke(args=["backups", "redaction", "check"])
    assert out.exit_code == 1, out.output
    assert isinstance(out.exception, SystemExit), out.exception
    assert out.output.startswith("Error: ") and out.output.count("\n") == 1, out.output
    assert "sekrit-pw-91" not in out.output


def test_the_create_page_opens_while_a_sqlite_writer_holds_the_database(make_app, host_env):
    """A writer's RESERVED lock lets the guard read; an EXCLUSIVE one (a commit in
    rollback-journal mode) kept the page waiting the driver's 5 s, then answered 500: the
    guard now waits 2 s, then falls back to the models' columns."""
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    path = host_env["HOSTAPP_DATABASE_URL"].removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("CREATE TABLE contacts (id integer, phone text)")
        page = app.test_client().get("/backups/new", headers=HTML)
        assert page.status_code == 200
        writer.execute("COMMIT")
        writer.execute("BEGIN EXCLUSIVE")
        page = app.test_client().get("/backups/new", headers=HTML)
        assert page.status_code == 200 and "Full copy" in page.text
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with app.app_context():  # the pooled connection waits as long as before for the others
        from ..hostapp import db

        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


# -- the guard's reflection on PostgreSQL ------------------------------------------------


@pytest.fixture
def owner_app(host_env, owner_db, monkeypatch):
    """The host app on a database whose role is no superuser (it owns the database)."""
    yield from apps_on(owner_db, host_env, monkeypatch)


def test_a_schema_the_role_cannot_read_is_still_guarded_and_never_a_500(
    owner_app, owner_db, pg_admin_url, run_worker
):
    app = owner_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    admin = url_with(owner_db, username=make_url(pg_admin_url).username)
    with psycopg.connect(admin, autocommit=True) as con:  # the superuser's, closed to the role
        con.execute("CREATE SCHEMA hidden")
        con.execute("CREATE TABLE hidden.people (id integer PRIMARY KEY, phone text)")
        con.execute("REVOKE ALL ON SCHEMA hidden FROM PUBLIC")
    client = app.test_client()
    page = client.get("/backups/new", headers=HTML)
    assert page.status_code == 200
    choices = client.get(f"{API}/formats").json["redactions"]
    assert "hidden.people.phone" in choices[0]["unredacted"]
    out = app.test_cli_runner().invoke(args=["backups", "redaction", "check"])
    assert out.exit_code == 0 and "not redacted: hidden.people.phone" in out.stdout, out.output
    api = app.test_client()  # no cookie: no CSRF token needed
    made = api.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"}).json
    run_worker()
    backup = api.get(f"{API}/backups/{made['id']}").json
    assert backup["status"] == "failed"  # the engine's answer: one line, saying why
    assert "permission denied for schema hidden" in backup["error"] and "\n" not in backup["error"]


def test_the_create_page_guard_of_a_huge_schema_reads_its_columns_alone(make_app):
    """A full reflection (constraints, indexes: 7 statements a table on SQLite) of a schema of
    3,000 tables held the create page 10 s on every load: the guard reads only columns."""
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    from ..hostapp import db

    tables = 400
    with app.app_context():
        for i in range(tables):
            db.session.execute(sa.text(f"CREATE TABLE t{i} (id integer PRIMARY KEY, phone text)"))
        db.session.commit()
        engine = db.engine
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = app.test_client().get("/backups/new", headers=HTML)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert page.status_code == 200
    assert page.text.count("t399.phone") == 2  # under the full copy and under vendor
    assert len(statements) < 2 * tables, len(statements)


def test_a_key_naming_a_table_in_other_case_never_leaves_the_column_unredacted(
    make_app, run_worker
):
    """SQLite's names ignore case, the keys do not: ``CUSTOMERS.name`` is no model's table, so
    it passes the start-up checks; the check and the backup refuse it, never copying
    ``customers.name`` as it is."""
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": {"CUSTOMERS.name": "fixed:x"}})
    out = app.test_cli_runner().invoke(args=["backups", "redaction", "check"])
    assert out.exit_code == 1 and "no such table 'CUSTOMERS'" in out.output, out.output
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"}).json
    run_worker()
    backup = client.get(f"{API}/backups/{made['id']}").json
    assert backup["status"] == "failed" and "no such table 'CUSTOMERS'" in backup["error"]
    assert not any(app.extensions["backup_manager"].storage_dir.glob("*"))


def test_a_postgres_hosts_password_host_and_port_are_in_no_manifest_page_log_or_file_head(
    host_env, pg_url, monkeypatch, run_worker
):
    url = url_with(pg_url, password="sekrit-host-55", port="5432", host="127.0.0.1")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    config = json.dumps({"BACKUP_MANAGER_REDACTION": {"vendor": VENDOR}})
    for key, value in (("HOSTAPP_DATABASE_URL", url), ("HOSTAPP_CONFIG", config)):
        monkeypatch.setenv(key, value)
        host_env[key] = value
    app = _make_app()
    try:
        client = app.test_client()
        made = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"})
        run_worker()
        backup = client.get(f"{API}/backups/{made.json['id']}").json
        assert backup["status"] == "succeeded", backup
        manifest = client.get(f"{API}/backups/{backup['id']}/manifest").text
        assert json.loads(manifest)["source"]["dialect"] == "postgresql"
        download = client.get(f"{API}/backups/{backup['id']}/download")
        head = gzip.decompress(download.data)[:20_000].decode()
        download.close()
        texts = [manifest, head, client.get(f"{API}/backups/{backup['id']}/logs").text]
        texts += list(pages_of(client, backup["id"]).values())
        for text in texts:
            assert "sekrit-host-55" not in text and "127.0.0.1" not in text
            assert ":5432" not in text and '"port"' not in text
    finally:
        _close_app(app)


@pytest.mark.parametrize("backup_id", ["999", "x", "1"])
def test_show_manifest_of_an_unknown_or_unfinished_backup_is_a_one_line_error(make_app, backup_id):
    app = make_app()
    app.test_client().post(f"{API}/backups", json={"format": "sqlite3"})  # 1: queued
    out = app.test_cli_runner().invoke(args=["backups", "show", backup_id, "--manifest"])
    assert out.exit_code == 1 and out.output.startswith("Error: "), out.output
    assert out.output.count("\n") == 1
