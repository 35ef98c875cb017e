"""What a newcomer met trying issue 13 from the README alone (review R3): the quickstart's
``app.config.from_prefixed_env()`` reads ``FLASK_BACKUP_MANAGER_REDACTION_STRICT=1`` as the
number 1, which the boolean settings refuse; the refusal now says what to write instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_backup_manager import BackupManager


def quickstart_app(tmp_path: Path) -> Flask:
    """The README's quickstart app, with a profile and a column rule, configured from the
    environment as its ``from_prefixed_env()`` line does."""
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = "dev"
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'app.db'}"
    app.config["BACKUP_MANAGER_REDIS_URL"] = "redis://127.0.0.1:6379/15"
    app.config["BACKUP_MANAGER_REDACTION"] = {"vendor": {"users.name": "name"}}
    app.config.from_prefixed_env()
    db = SQLAlchemy()

    class User(db.Model):  # noqa: F841 (declared for the profile's check)
        __tablename__ = "users"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(80))
        email = db.Column(db.String(255), info={"backup_manager": {"redact": "email"}})

    db.init_app(app)
    backups = BackupManager(db=db)
    backups.access_check(lambda permission: True)
    try:
        backups.init_app(app)
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    return app


@pytest.mark.parametrize(
    "key", ["BACKUP_MANAGER_REDACTION_STRICT", "BACKUP_MANAGER_REQUIRE_REDACTION"]
)
def test_a_boolean_redaction_setting_of_1_from_the_environment_says_to_write_true(
    tmp_path, monkeypatch, key
):
    monkeypatch.setenv(f"FLASK_{key}", "1")
    with pytest.raises(ValueError) as refused:
        quickstart_app(tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{key} must be True or False, not 1")
    assert re.search(r"write\s+true or false", message), message


def test_a_boolean_redaction_setting_of_true_from_the_environment_is_taken(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASK_BACKUP_MANAGER_REDACTION_STRICT", "true")
    app = quickstart_app(tmp_path)
    assert app.config["BACKUP_MANAGER_REDACTION_STRICT"] is True


def test_the_demo_login_page_names_the_password_of_a_vendor_copy_which_its_profile_sets(
    tmp_path, redis_url, monkeypatch
):
    """The demo started on a ``vendor`` copy (``DATABASE_URL=sqlite:////...``) refused
    admin / admin while its login page and banner offered only that: both now also name
    ``vendor``, the password every user has in that copy."""
    from werkzeug.security import check_password_hash

    from example_app import VENDOR, create_app

    fixed = VENDOR["users.password_hash"].removeprefix("fixed:")
    assert check_password_hash(fixed, "vendor")
    monkeypatch.setenv("EXAMPLE_APP_INSTANCE", str(tmp_path / "instance"))
    shop = create_app({"BACKUP_MANAGER_REDIS_URL": redis_url})
    page = shop.test_client().get("/login").get_data(as_text=True)
    assert re.search(r"vendor</code> copy of the shop: password <code>vendor</code>", page)
    banner = (Path(__file__).parents[2] / "example_app" / "run_demo.py").read_text()
    assert "on a vendor copy: admin / vendor" in banner


def test_the_standalone_export_writes_when_it_was_made_in_its_manifest_and_file(tmp_path):
    """``python -m flask_backup_manager export --redact ... --manifest ...`` wrote a manifest
    without ``created_at`` (the README's field table lists it for every manifest): the vendor
    who has only the file could not tell when it was made. It now says when, in UTC, and
    ``created_by`` null: the command knows no user."""
    import gzip
    import json
    import sqlite3
    import subprocess
    import sys
    from datetime import datetime, timedelta, timezone

    src = tmp_path / "app.db"
    with sqlite3.connect(src) as con:
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        con.execute("INSERT INTO users VALUES (1, 'ann@canary.test')")
    con.close()
    out, manifest = tmp_path / "out.sql.gz", tmp_path / "m.json"
    args = ["--source", f"sqlite:///{src}", "--format", "sqlite3", "--output", str(out)]
    args += ["--redact", "users.email=email", "--manifest", str(manifest)]
    done = subprocess.run(
        [sys.executable, "-m", "flask_backup_manager", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    m = json.loads(manifest.read_text())
    made = datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - made) < timedelta(minutes=10)
    assert m["created_by"] is None
    text = gzip.decompress(out.read_bytes()).decode()
    assert f'"created_at": "{m["created_at"]}"' in text  # the head of the file says it too
    assert "canary" not in text


def test_a_manifest_that_cannot_be_written_says_the_backup_itself_was(tmp_path):
    """``--manifest`` into a folder that does not exist exited 1 saying only that the
    manifest could not be written, leaving the user to wonder whether the backup was: it
    is, and the error now says so and where."""
    import sqlite3
    import subprocess
    import sys

    src = tmp_path / "app.db"
    with sqlite3.connect(src) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    con.close()
    out = tmp_path / "out.sql.gz"
    args = ["--source", f"sqlite:///{src}", "--format", "sqlite3", "--output", str(out)]
    args += ["--manifest", str(tmp_path / "no-such-dir" / "m.json")]
    done = subprocess.run(
        [sys.executable, "-m", "flask_backup_manager", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "cannot write the manifest" in done.stderr
    assert f"the backup itself is written: {out}" in done.stderr
    assert out.exists()


def test_a_superuser_verification_server_says_which_role_to_name_instead(pg_admin_url, tmp_path):
    """Given the superuser's URL, the manifest said "not loaded: the role ... is, or can
    become, pg_execute_server_program, pg_read_server_files, pg_write_ser..." (cut at 80
    characters, before the superuser itself): it now ends saying what role to name."""
    from flask_backup_manager.engine.verify import verify_postgres

    how = verify_postgres(tmp_path / "unused.sql.gz", {}, {}, pg_admin_url).how
    assert how.startswith("not loaded: the role of BACKUP_MANAGER_VERIFY_POSTGRES_URL ")
    assert how.endswith(
        ": name an ordinary role with CREATEDB, owning no other database and a member of no role"
    )
