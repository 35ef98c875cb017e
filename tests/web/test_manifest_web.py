"""The manifest and the verification in the web layer (issue 13, sections 2 and 3): the job
hands the engine what it knows of the copy, keeps the whole manifest on the row, logs the
verification; the API serves the manifest, ``flask backups show ID --manifest`` prints it, the
detail page gets it. Real worker, real SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.metadata
import json
import uuid

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from flask_backup_manager.jobs import distribution_version

from ..conftest import admin_connection, url_with

API = "/backups/api"
HTML = {"Accept": "text/html"}
HOST_TABLES = ("customers", "orders")


def source_counts(app) -> dict[str, int]:
    from ..hostapp import db

    with app.app_context():
        return {t: db.session.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in HOST_TABLES}


def made(client, run_worker, fmt: str = "sqlite3", **body) -> dict:
    backup = client.post(f"{API}/backups", json={"format": fmt, **body}).json
    run_worker()
    done = client.get(f"{API}/backups/{backup['id']}").json
    assert done["status"] == "succeeded", done
    return done


def test_a_queued_backup_has_no_manifest_yet_404_in_json(client):
    backup = client.post(f"{API}/backups", json={"format": "sqlite3"}).json
    assert backup["verification"] is None and backup["redaction"] is None
    answer = client.get(f"{API}/backups/{backup['id']}/manifest")
    assert answer.status_code == 404
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json["error"] == {
        "code": "no_manifest",
        "message": f"Backup {backup['id']} has no manifest: it is still queued, and one is "
        "written with a finished file.",
    }
    assert client.get(f"{API}/backups/999/manifest").json["error"]["code"] == "not_found"


def test_the_manifest_needs_the_view_permission(client):
    backup = client.post(f"{API}/backups", json={"format": "sqlite3"}).json
    denied = client.get(
        f"{API}/backups/{backup['id']}/manifest", headers={"X-Test-Permissions": "download"}
    )
    assert denied.status_code == 403


def test_the_manifest_of_a_full_copy_says_what_the_file_is_and_counts_the_sources_rows(
    app, client, run_worker
):
    backup = made(client, run_worker)
    answer = client.get(f"{API}/backups/{backup['id']}/manifest")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    m = answer.json
    assert m["manifest_version"] == 1
    assert m["package_version"] == importlib.metadata.version("flask-backup-manager")
    assert m["created_at"] == backup["created_at"] and m["created_by"] == "tester"
    assert m["app"] == {"name": "hostapp", "version": None}
    assert m["format"] == "sqlite3"
    assert m["source"]["dialect"] == "sqlite" and m["source"]["database"] == "host.db"
    assert m["redaction"] is None
    counts = source_counts(app)
    assert {t: m["tables"][t] for t in HOST_TABLES} == counts
    # the Backup Manager's own tables travel without their rows
    assert m["tables"]["backup_manager_backups"] == 0
    assert m["rows"] == sum(counts.values())
    assert m["file"] == {
        "name": backup["filename"],
        "size": backup["size"],
        "sha256": backup["sha256"],
    }
    assert m["verification"]["loaded"] is True
    assert m["verification"]["summary"] == backup["verification"]
    assert backup["verification"] == (
        f"verified: {len(m['tables'])} tables, {m['rows']:,} rows match"
    )
    logs = [
        line["message"] for line in client.get(f"{API}/backups/{backup['id']}/logs").json["logs"]
    ]
    assert backup["verification"] in logs
    assert logs.index(backup["verification"]) < len(logs) - 1  # before "finished: ..."


def test_show_manifest_prints_the_same_json_and_refuses_one_not_made_yet(client, run_worker, app):
    backup = made(client, run_worker, "sqlite3_db")
    runner = app.test_cli_runner()
    out = runner.invoke(args=["backups", "show", str(backup["id"]), "--manifest"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == client.get(f"{API}/backups/{backup['id']}/manifest").json
    queued = client.post(f"{API}/backups", json={"format": "sqlite3"}).json
    refused = runner.invoke(args=["backups", "show", str(queued["id"]), "--manifest"])
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: Backup {queued['id']} has no manifest: it is still queued, and one is written "
        "with a finished file.\n"
    )
    shown = runner.invoke(args=["backups", "show", str(backup["id"])])
    assert "redaction: -" in shown.stdout
    assert f"verification: {backup['verification']}" in shown.stdout


def test_the_detail_page_and_the_list_get_the_manifest_and_the_profile(client, run_worker):
    backup = made(client, run_worker)
    page = client.get(f"/backups/{backup['id']}", headers=HTML)
    assert page.status_code == 200
    assert 'data-testid="manifest"' in page.text
    assert f"/backups/api/backups/{backup['id']}/manifest" in page.text
    assert client.get("/backups/", headers=HTML).status_code == 200


def test_the_app_version_is_the_configured_one_and_the_schema_revision_alembics(
    make_app, run_worker
):
    app = make_app(BACKUP_MANAGER_APP_VERSION="4.2.0", BACKUP_MANAGER_APP_NAME="shop")
    from ..hostapp import db

    with app.app_context():
        db.session.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        db.session.execute(sa.text("INSERT INTO alembic_version VALUES ('3f9a1c2e77b0')"))
        db.session.commit()
    client = app.test_client()
    backup = made(client, run_worker, "sqlite3_db")
    m = client.get(f"{API}/backups/{backup['id']}/manifest").json
    assert m["app"] == {"name": "shop", "version": "4.2.0"}
    assert m["schema_revision"] == "3f9a1c2e77b0"
    assert backup["filename"].startswith("shop-")


def test_without_a_configured_version_the_apps_distribution_names_it():
    assert distribution_version("flask") == importlib.metadata.version("flask")
    assert distribution_version("flask_backup_manager") == importlib.metadata.version(
        "flask-backup-manager"
    )
    assert distribution_version("no_such_package_" + uuid.uuid4().hex[:6]) is None


@pytest.fixture
def scratch_role_url(pg_admin_url):
    """The URL (database ``postgres``) of a fresh role that may create databases and is no
    superuser: the role a worker verifies postgres files with."""
    role = f"fbm_verify_{uuid.uuid4().hex[:10]}"
    with admin_connection(pg_admin_url) as con:
        con.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CREATEDB").format(sql.Identifier(role))
        )
    yield url_with(pg_admin_url, username=role)
    with admin_connection(pg_admin_url) as con:
        for (name,) in con.execute(
            "SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = %s", [role]
        ).fetchall():
            con.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        con.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_postgres_file_is_restored_into_a_scratch_database_of_the_configured_server(
    make_app, run_worker, scratch_role_url, pg_admin_url
):
    app = make_app(BACKUP_MANAGER_VERIFY_POSTGRES_URL=scratch_role_url)
    client = app.test_client()
    backup = made(client, run_worker, "postgres")
    m = client.get(f"{API}/backups/{backup['id']}/manifest").json
    assert m["verification"]["loaded"] is True, m["verification"]
    assert backup["verification"].startswith("verified: ")
    assert {t: m["tables"][t] for t in HOST_TABLES} == source_counts(app)
    role = psycopg.conninfo.conninfo_to_dict(scratch_role_url)["user"]
    with psycopg.connect(pg_admin_url) as con:  # the scratch database is gone
        left = con.execute(
            "SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = %s", [role]
        ).fetchall()
    assert left == []


def test_without_a_scratch_server_a_postgres_file_is_checked_and_the_manifest_says_why(
    client, run_worker
):
    backup = made(client, run_worker, "postgres")
    m = client.get(f"{API}/backups/{backup['id']}/manifest").json
    assert m["verification"]["loaded"] is False
    assert "BACKUP_MANAGER_VERIFY_POSTGRES_URL" in m["verification"]["how"]
    assert backup["verification"] == m["verification"]["summary"]
