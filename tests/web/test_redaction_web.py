"""Redaction profiles in the web layer (issue 13, section 1): declared in the config and on
the models' columns, checked at start-up, chosen on the API, the form and the CLI, refused
when a full copy is not allowed, the guard over the database's own tables, and a redacted
backup made by the real worker from real SQLite and PostgreSQL databases."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_backup_manager import BackupManager
from flask_backup_manager.state import redactions

from ..conftest import _close_app, _make_app
from .conftest import ROOT, SEEDED, apps_on

API = "/backups/api"
HTML = {"Accept": "text/html"}

#: the profile the host-app tests declare (tests/hostapp.py: customers, orders)
VENDOR = {"customers.name": "name", "orders.note": "fixed:redacted", "customers.prefs": "null"}
#: planted in the source: none of them may reach a redacted copy
CANARY_NAME = "Zebediah Canarywood 7731"
CANARY_NOTE = "canary-note-55219"


# -- start-up checks ----------------------------------------------------------------------


def make_flask(tmp_path: Path, **config) -> tuple[Flask, SQLAlchemy]:
    app = Flask("redactapp", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="test-secret", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite'}"
    )
    app.config.update(config)
    return app, SQLAlchemy(app)


def define_models(db: SQLAlchemy, email_info: dict | None = None) -> None:
    """users (an e-mail, a name, an age, a password hash) and the sessions that reference them."""

    class User(db.Model):
        __tablename__ = "users"
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(120), nullable=False, unique=True, info=email_info or {})
        name = db.Column(db.String(100), nullable=False)
        age = db.Column(db.Integer)
        password_hash = db.Column(db.String(128), nullable=False)

    class Session(db.Model):
        __tablename__ = "sessions"
        id = db.Column(db.Integer, primary_key=True)
        user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=False)
        token = db.Column(db.String(64))


def start(tmp_path: Path, email_info: dict | None = None, **config) -> Flask:
    app, db = make_flask(tmp_path, **config)
    define_models(db, email_info)
    try:
        BackupManager(app, db=db)
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    return app


def profiles_of(app: Flask) -> dict[str, dict[str, str]]:
    with app.app_context():
        return {name: p.rules() for name, p in redactions().items()}


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        ({"users.emial": "email"}, r"'users\.emial'.*no column 'emial'"),
        ({"users.name": "null"}, r"'users\.name'.*null into a NOT NULL column"),
        ({"users.age": "fixed:old"}, r"'users\.age'.*fixed value 'old' is not an integer"),
        ({"users.name": "fixed:" + "x" * 101}, r"'users\.name'.*longer than the column"),
        ({"sessions.user_id": "hash"}, r"sessions\.user_id.*hash users\.id too"),
        ({"sessions.user_id": "null"}, r"sessions\.user_id.*may only be hashed"),
        ({"users.id": "hash"}, r"users\.id.*sessions\.user_id -> users\.id"),
        ({"users.email": "scramble"}, r"'users\.email'.*unknown rule 'scramble'"),
        ({"users.email": 3}, r"'users\.email'.*a rule is a string"),
    ],
    ids=[
        "unknown-column",
        "null-into-not-null",
        "fixed-of-wrong-type",
        "fixed-too-long",
        "fk-child-hashed-alone",
        "fk-child-nulled",
        "fk-parent-hashed-alone",
        "unknown-rule",
        "rule-not-a-string",
    ],
)
def test_a_bad_declaration_in_the_config_stops_the_app_at_start_naming_the_key(
    tmp_path, rules, named
):
    with pytest.raises(ValueError, match=r"BACKUP_MANAGER_REDACTION profile 'vendor'.*" + named):
        start(tmp_path, BACKUP_MANAGER_REDACTION={"vendor": rules})


@pytest.mark.parametrize(
    ("info", "named"),
    [
        ({"backup_manager": {"redact": "scramble"}}, r"users\.email \(info=.*unknown rule"),
        ({"backup_manager": {"redact": "null"}}, r"'users\.email'.*null into a NOT NULL"),
        ({"backup_manager": {"redact": {"bad name!": "email"}}}, r"profile name 'bad name!'"),
    ],
    ids=["unknown-rule", "null-into-not-null", "bad-profile-name"],
)
def test_a_bad_rule_on_a_models_column_stops_the_app_at_start_naming_the_column(
    tmp_path, info, named
):
    with pytest.raises(ValueError, match=named):
        start(tmp_path, email_info=info)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"BACKUP_MANAGER_REQUIRE_REDACTION": True}, "REQUIRE_REDACTION is on, but no redaction"),
        ({"BACKUP_MANAGER_REDACTION": {"two words": {}}}, "profile name 'two words'"),
        ({"BACKUP_MANAGER_REDACTION": {"v" * 65: {}}}, "must be 1 to 64"),
        ({"BACKUP_MANAGER_REDACTION": ["users.email"]}, "must be a dict of profile names"),
        ({"BACKUP_MANAGER_REDACTION": {"vendor": "email"}}, "a mapping of keys to rules"),
        ({"BACKUP_MANAGER_REDACTION": {"vendor": {"email": "email"}}}, "names a column"),
        ({"BACKUP_MANAGER_REDACTION_STRICT": "yes"}, "REDACTION_STRICT must be True or False"),
        ({"BACKUP_MANAGER_VERIFY_POSTGRES_URL": "localhost"}, "must be a postgresql:// URL"),
        ({"BACKUP_MANAGER_APP_VERSION": 2}, "APP_VERSION must be a string"),
    ],
    ids=[
        "require-without-profile",
        "profile-name-with-space",
        "profile-name-too-long",
        "not-a-dict",
        "profile-not-a-dict",
        "column-key-without-table",
        "strict-not-bool",
        "verify-url-not-postgres",
        "app-version-not-string",
    ],
)
def test_a_bad_redaction_setting_stops_the_app_at_start_naming_the_key(tmp_path, config, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        start(tmp_path, **config)


def test_a_key_naming_a_table_no_model_describes_is_left_to_the_backup_and_the_check(tmp_path):
    app = start(tmp_path, BACKUP_MANAGER_REDACTION={"vendor": {"legacy.secret": "null"}})
    assert profiles_of(app) == {"vendor": {"legacy.secret": "null"}}


def test_config_and_column_rules_are_one_view_and_the_configs_rule_wins(tmp_path):
    app = start(
        tmp_path,
        email_info={"backup_manager": {"redact": "email"}},
        BACKUP_MANAGER_REDACTION={
            "vendor": {"users.email": "hash", "sessions": "no_rows"},
            "support": {"users.name": "name"},
        },
    )
    assert profiles_of(app) == {
        "vendor": {"sessions": "no_rows", "users.email": "hash"},
        "support": {"users.email": "email", "users.name": "name"},
    }


def test_a_column_rule_for_named_profiles_applies_to_those_only(tmp_path):
    app = start(
        tmp_path,
        email_info={"backup_manager": {"redact": {"vendor": "email", "audit": "keep"}}},
        BACKUP_MANAGER_REDACTION={"vendor": {}, "support": {}},
    )
    assert profiles_of(app) == {
        "vendor": {"users.email": "email"},
        "support": {},
        "audit": {"users.email": "keep"},  # a profile the column alone names
    }


def test_column_rules_without_any_profile_named_make_one_profile_called_redacted(tmp_path):
    app = start(tmp_path, email_info={"backup_manager": {"redact": "email"}})
    assert profiles_of(app) == {"redacted": {"users.email": "email"}}


def test_no_rules_anywhere_means_no_profile_and_only_the_full_copy(tmp_path):
    app = start(tmp_path)
    assert profiles_of(app) == {}


# -- choosing, and refusing ---------------------------------------------------------------


def plant_phone(app) -> None:
    """A column no model describes, as a migration would add it: the guard must see it."""
    from ..hostapp import db

    with app.app_context():
        db.session.execute(sa.text("ALTER TABLE customers ADD COLUMN phone VARCHAR(30)"))
        db.session.commit()


def test_formats_offer_the_full_copy_then_each_profile_with_its_summary_and_guard(make_app):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    plant_phone(app)
    choices = app.test_client().get(f"{API}/formats").json["redactions"]
    assert [(c["value"], c["label"]) for c in choices] == [("", "Full copy"), ("vendor", "vendor")]
    assert choices[0]["unredacted"] == ["customers.phone"]
    assert choices[1] == {
        "value": "vendor",
        "label": "vendor",
        "summary": "3 columns redacted in 2 tables",
        "unredacted": ["customers.phone"],
    }


def test_the_guard_is_silenced_by_keep_and_lists_nothing_of_our_own_tables(tmp_path):
    app, db = make_flask(
        tmp_path,
        BACKUP_MANAGER_REDACTION={
            "vendor": {"users.email": "email", "users.password_hash": "keep"},
            "support": {"users.email": "keep", "sessions": "no_rows"},
        },
    )
    define_models(db)
    BackupManager(app, db=db, access=lambda permission: True)
    with app.app_context():
        db.create_all()
    choices = app.test_client().get(f"{API}/formats").json["redactions"]
    assert {c["value"]: c["unredacted"] for c in choices} == {
        "": ["sessions.token", "users.email", "users.password_hash"],
        "vendor": ["sessions.token"],
        "support": ["users.password_hash"],
    }
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_the_create_page_gets_the_choices_and_posts_the_chosen_profile(make_app):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    client = app.test_client()
    page = client.get("/backups/new", headers=HTML)
    assert page.status_code == 200
    token = re.search(r'data-csrf-token="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/backups/",
        data={"format": "sqlite3", "redaction": "vendor", "csrf_token": token},
        headers=HTML,
    )
    assert answer.status_code == 303
    backup = client.get(f"{API}/backups").json["backups"][0]
    assert backup["redaction"] == "vendor"
    logs = client.get(f"{API}/backups/{backup['id']}/logs").json["logs"]
    assert logs[0]["message"] == "queued: format sqlite3, redaction profile vendor"


def test_a_retry_of_a_redacted_backup_is_redacted_with_the_same_profile(make_app):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    client = app.test_client()
    first = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"}).json
    client.post(f"{API}/backups/{first['id']}/cancel")
    page = client.get("/backups/", headers=HTML)
    token = re.search(r'data-csrf-token="([^"]+)"', page.text).group(1)
    client.post(f"/backups/{first['id']}/retry", data={"csrf_token": token}, headers=HTML)
    again = client.get(f"{API}/backups").json["backups"][0]
    assert again["id"] != first["id"] and again["redaction"] == "vendor"


@pytest.mark.parametrize(
    "value", ["nope", ["vendor"], {"vendor": 1}, 5, True, "vendor\n", "v" * 10_000]
)
def test_an_unknown_profile_or_a_value_of_another_type_is_400_and_creates_nothing(make_app, value):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    client = app.test_client()
    answer = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": value})
    assert answer.status_code == 400, answer.json
    error = answer.json["error"]
    assert error["code"] == "unknown_redaction"
    assert "choose one of vendor, or none for a full copy" in error["message"]
    assert len(error["message"]) < 200
    assert client.get(f"{API}/backups").json["total"] == 0


def test_a_full_copy_is_a_null_or_empty_redaction_and_leaves_the_column_null(make_app):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    client = app.test_client()
    for value in (None, ""):
        made = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": value})
        assert made.status_code == 202 and made.json["redaction"] is None


def required(make_app):
    return make_app(
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR}, BACKUP_MANAGER_REQUIRE_REDACTION=True
    )


def test_required_redaction_refuses_a_full_copy_on_the_api_with_403(make_app):
    client = required(make_app).test_client()
    for body in ({"format": "sqlite3"}, {"format": "sqlite3", "redaction": None}):
        answer = client.post(f"{API}/backups", json=body)
        assert answer.status_code == 403
        assert answer.json["error"]["code"] == "redaction_required"
        assert "choose a redaction profile (vendor)" in answer.json["error"]["message"]
    assert client.get(f"{API}/backups").json["total"] == 0
    choices = client.get(f"{API}/formats").json["redactions"]
    assert [c["value"] for c in choices] == ["vendor"]  # no full copy offered
    assert client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"}).json[
        "redaction"
    ] == ("vendor")


def test_required_redaction_refuses_a_full_copy_on_the_form_saying_to_choose_a_profile(make_app):
    client = required(make_app).test_client()
    page = client.get("/backups/new", headers=HTML)
    token = re.search(r'data-csrf-token="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/backups/",
        data={"format": "sqlite3", "redaction": "", "csrf_token": token},
        headers=HTML,
        follow_redirects=True,
    )
    assert answer.status_code == 200
    assert answer.request.path == "/backups/new"
    assert "A full copy is not allowed here: choose a redaction profile" in answer.text
    assert client.get(f"{API}/backups").json["total"] == 0


def test_required_redaction_refuses_a_full_copy_on_the_cli(make_app):
    app = required(make_app)
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["backups", "create", "--format", "sqlite3"])
    assert refused.exit_code == 1
    assert "Error: A full copy is not allowed here: choose a redaction profile" in refused.output
    made = runner.invoke(args=["backups", "create", "--format", "sqlite3", "--redaction", "vendor"])
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith("Backup 1 queued (sqlite3, redaction vendor).")


def test_cli_create_names_the_profiles_when_asked_for_an_unknown_one(make_app):
    runner = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR}).test_cli_runner()
    out = runner.invoke(args=["backups", "create", "--format", "sqlite3", "--redaction", "x"])
    assert out.exit_code == 1
    assert out.output.strip() == (
        "Error: Unknown redaction profile 'x': choose one of vendor, or none for a full copy."
    )


# -- flask backups redaction check ---------------------------------------------------------


def test_redaction_check_lists_the_planted_phone_and_exits_0_unless_strict(make_app):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR, "support": {}})
    plant_phone(app)
    out = app.test_cli_runner().invoke(args=["backups", "redaction", "check"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        "vendor: 3 columns redacted in 2 tables",
        "  not redacted: customers.phone",
        "support: nothing redacted",
        "  not redacted: customers.phone",
    ]
    one = app.test_cli_runner().invoke(args=["backups", "redaction", "check", "vendor"])
    assert one.exit_code == 0 and one.stdout.splitlines()[0].startswith("vendor:")
    assert len(one.stdout.splitlines()) == 2


def test_redaction_check_exits_1_on_a_listed_column_when_strict(make_app):
    app = make_app(
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR}, BACKUP_MANAGER_REDACTION_STRICT=True
    )
    runner = app.test_cli_runner()
    assert runner.invoke(args=["backups", "redaction", "check"]).exit_code == 0  # no phone yet
    plant_phone(app)
    out = runner.invoke(args=["backups", "redaction", "check"])
    assert out.exit_code == 1
    assert "  not redacted: customers.phone" in out.stdout
    assert "BACKUP_MANAGER_REDACTION_STRICT is on" in out.stderr


def test_redaction_check_exits_1_naming_a_key_of_a_table_the_database_lacks(make_app):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": {**VENDOR, "legacy.secret": "null"}})
    out = app.test_cli_runner().invoke(args=["backups", "redaction", "check"])
    assert out.exit_code == 1
    assert "  problem: redaction 'legacy.secret': no such table 'legacy'" in out.stdout


def test_redaction_check_of_an_unknown_profile_or_none_at_all_is_a_one_line_error(
    make_app, tmp_path
):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    out = app.test_cli_runner().invoke(args=["backups", "redaction", "check", "nope"])
    assert out.exit_code == 1
    assert out.output == "Error: Unknown redaction profile 'nope': the profiles are vendor.\n"
    bare = start(tmp_path).test_cli_runner().invoke(args=["backups", "redaction", "check"])
    assert bare.exit_code == 1 and bare.output.startswith("Error: No redaction profile")
    assert bare.output.count("\n") == 1


# -- a redacted backup, made by the real worker -----------------------------------------


def plant_canaries(app) -> dict[str, int]:
    """Canary values in the columns the profile redacts; returns each table's rows."""
    from ..hostapp import db

    with app.app_context():
        db.session.execute(
            sa.text("UPDATE customers SET name = :n, prefs = :p WHERE id = 1"),
            {"n": CANARY_NAME, "p": json.dumps({"canary": CANARY_NOTE})},
        )
        db.session.execute(sa.text("UPDATE orders SET note = :n WHERE id = 3"), {"n": CANARY_NOTE})
        db.session.commit()
        return {
            t: db.session.scalar(sa.text(f"SELECT count(*) FROM {t}"))
            for t in ("customers", "orders")
        }


def file_text(data: bytes, fmt: str) -> bytes:
    """The whole content of a downloaded file: decompressed, or an SQLite file's every page."""
    return data if fmt == "sqlite3_db" else gzip.decompress(data)


def made_redacted(app, run_worker, fmt: str) -> tuple[dict, bytes, dict]:
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": fmt, "redaction": "vendor"})
    assert made.status_code == 202, made.json
    assert made.json["redaction"] == "vendor"
    assert client.get(f"{API}/backups/{made.json['id']}/manifest").json["error"]["code"] == (
        "no_manifest"
    )
    run_worker()
    backup = client.get(f"{API}/backups/{made.json['id']}").json
    assert backup["status"] == "succeeded", backup
    download = client.get(f"{API}/backups/{backup['id']}/download")
    data = download.data
    download.close()
    manifest = client.get(f"{API}/backups/{backup['id']}/manifest")
    assert manifest.status_code == 200 and manifest.headers["Cache-Control"] == "no-store"
    return backup, data, manifest.json


def assert_redacted_copy(backup, data, manifest, counts, fmt, tmp_path) -> None:
    text = file_text(data, fmt)
    for canary in (CANARY_NAME, CANARY_NOTE, "'quoted'"):
        assert canary.encode() not in text, f"{canary!r} reached the {fmt} copy"
    assert backup["redaction"] == "vendor"
    assert backup["verification"] and backup["verification"].startswith(("verified", "checked"))
    assert manifest["redaction"]["profile"] == "vendor"
    assert manifest["redaction"]["rules"] == dict(sorted(VENDOR.items()))
    assert {t: manifest["tables"][t] for t in counts} == counts
    assert manifest["file"]["sha256"] == backup["sha256"]
    assert manifest["file"]["size"] == backup["size"] == len(data)
    assert manifest["created_by"] == "tester"
    assert manifest["app"] == {"name": "hostapp", "version": None}
    if fmt == "sqlite3_db":  # the copy still opens and holds every row
        path = tmp_path / "copy.db"
        path.write_bytes(data)
        with sqlite3.connect(path) as con:
            assert (
                con.execute("SELECT count(*) FROM customers").fetchone()[0] == counts["customers"]
            )
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        con.close()


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db", "postgres"])
def test_a_redacted_backup_from_sqlite_leaves_no_canary_and_its_manifest_counts_the_rows(
    make_app, run_worker, tmp_path, fmt
):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": VENDOR})
    counts = plant_canaries(app)
    backup, data, manifest = made_redacted(app, run_worker, fmt)
    assert_redacted_copy(backup, data, manifest, counts, fmt, tmp_path)
    logs = app.test_client().get(f"{API}/backups/{backup['id']}/logs").json["logs"]
    assert backup["verification"] in [line["message"] for line in logs]


@pytest.fixture
def pg_redacting_app(host_env, pg_url, pg_admin_url, monkeypatch):
    """The host app on a real PostgreSQL database, with the vendor profile and a server to
    restore postgres files into."""
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    config = json.dumps(
        {
            "BACKUP_MANAGER_REDACTION": {"vendor": VENDOR},
            "BACKUP_MANAGER_VERIFY_POSTGRES_URL": pg_admin_url,
        }
    )
    for key, value in (("HOSTAPP_DATABASE_URL", url), ("HOSTAPP_CONFIG", config)):
        monkeypatch.setenv(key, value)
        host_env[key] = value
    app = _make_app()
    yield app
    _close_app(app)


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db", "postgres"])
def test_a_redacted_backup_from_postgres_leaves_no_canary_and_its_manifest_counts_the_rows(
    pg_redacting_app, run_worker, tmp_path, fmt, pg_url
):
    counts = plant_canaries(pg_redacting_app)
    backup, data, manifest = made_redacted(pg_redacting_app, run_worker, fmt)
    assert_redacted_copy(backup, data, manifest, counts, fmt, tmp_path)
    assert manifest["source"]["dialect"] == "postgresql"
    assert "password" not in json.dumps(manifest) and "127.0.0.1" not in json.dumps(manifest)
    with psycopg.connect(pg_url) as con:  # the source itself is untouched
        assert con.execute("SELECT name FROM customers WHERE id = 1").fetchone()[0] == CANARY_NAME


def test_a_backup_with_a_key_naming_a_table_the_database_lacks_fails_naming_it(
    make_app, run_worker
):
    app = make_app(BACKUP_MANAGER_REDACTION={"vendor": {**VENDOR, "legacy.secret": "null"}})
    client = app.test_client()
    made = client.post(f"{API}/backups", json={"format": "sqlite3", "redaction": "vendor"}).json
    run_worker()
    backup = client.get(f"{API}/backups/{made['id']}").json
    assert backup["status"] == "failed"
    assert "legacy.secret" in backup["error"]
    assert backup["filename"] and not list(
        app.extensions["backup_manager"].storage_dir.glob(f"*{backup['filename']}*")
    )


# -- the example shop, deployed: its web server, worker and CLI as separate processes ------


def call(demo, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        demo.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer shop-token", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_shop_deployed_with_redaction_required_makes_only_vendor_copies(make_demo):
    demo = make_demo(BACKUP_MANAGER_REQUIRE_REDACTION="true", EXAMPLE_APP_API_TOKEN="shop-token")
    status, body = call(demo, "GET", f"{API}/formats")
    choices = json.loads(body)["redactions"]
    assert [c["value"] for c in choices] == ["vendor"]
    assert choices[0]["unredacted"] == ["customers.phone"]
    status, body = call(demo, "POST", f"{API}/backups", {"format": "sqlite3"})
    assert status == 403 and json.loads(body)["error"]["code"] == "redaction_required"
    status, body = call(
        demo, "POST", f"{API}/backups", {"format": "sqlite3", "redaction": "vendor"}
    )
    assert status == 202, body
    backup_id = json.loads(body)["id"]
    deadline = time.monotonic() + 120
    while (backup := json.loads(call(demo, "GET", f"{API}/backups/{backup_id}")[1]))[
        "status"
    ] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, f"backup {backup} not done:\n{demo.output()}"
        time.sleep(0.3)
    assert backup["status"] == "succeeded", backup
    assert backup["redaction"] == "vendor" and backup["verification"].startswith("verified: ")
    manifest = json.loads(call(demo, "GET", f"{API}/backups/{backup_id}/manifest")[1])
    assert {t: manifest["tables"][t] for t in SEEDED} == SEEDED
    status, data = call(demo, "GET", f"{API}/backups/{backup_id}/download")
    text = gzip.decompress(data)
    assert b"customer1@example.com" not in text and b"@example.invalid" in text

    def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            demo.flask("backups", *args),
            cwd=ROOT,
            env={**demo.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = cli("create", "--format", "sqlite3")
    assert refused.returncode == 1
    assert "A full copy is not allowed here: choose a redaction profile" in refused.stderr
    checked = cli("redaction", "check")
    assert checked.returncode == 0, checked.stderr
    assert "  not redacted: customers.phone" in checked.stdout.splitlines()
    strict = cli("redaction", "check", "vendor", BACKUP_MANAGER_REDACTION_STRICT="true")
    assert strict.returncode == 1 and "REDACTION_STRICT is on" in strict.stderr


@pytest.fixture
def pg_app_with(host_env, pg_url, monkeypatch):
    """Build the host app on a real PostgreSQL database with extra config."""
    yield from apps_on(pg_url, host_env, monkeypatch)


def test_on_postgres_the_guard_and_the_check_see_every_schema_and_its_keys(pg_app_with, pg_url):
    with psycopg.connect(pg_url) as con:  # a table of another schema, which no model describes
        con.execute("CREATE SCHEMA legacy")
        con.execute("CREATE TABLE legacy.accounts (id bigint PRIMARY KEY, iban text NOT NULL)")
    app = pg_app_with(
        BACKUP_MANAGER_REDACTION={
            "vendor": {**VENDOR, "legacy.accounts.iban": "fixed:XX00"},
            "lax": {"legacy.accounts.iban": "null"},
        }
    )
    choices = app.test_client().get(f"{API}/formats").json["redactions"]
    assert {c["value"]: c["unredacted"] for c in choices} == {
        "": ["legacy.accounts.iban"],
        "vendor": [],
        "lax": [],
    }
    out = app.test_cli_runner().invoke(args=["backups", "redaction", "check"])
    assert out.exit_code == 1
    assert out.stdout.splitlines() == [
        "vendor: 4 columns redacted in 3 tables",
        "lax: 1 column redacted in 1 table",
        "  problem: redaction 'legacy.accounts.iban': null into a NOT NULL column: use blank "
        "or fixed:<value>",
    ]
