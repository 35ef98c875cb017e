"""Reviewer attacks on the web side of issue 12 (through Flask's test client and real
workers): what a hostile customer's data or a host's own setup could do to the pages and the
API, each pinned by what the admin or a script would see."""

from __future__ import annotations

from werkzeug.exceptions import HTTPException

from .test_pages import API, HTML


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
    client = pg_app.test_client()
    backup_id = client.post(f"{API}/backups", json={"format": "postgres"}).json["id"]
    run_worker()
    backup = client.get(f"{API}/backups/{backup_id}").json
    assert backup["status"] == "succeeded", backup["error"]
    logs = [line["message"] for line in client.get(f"{API}/backups/{backup_id}/logs").json["logs"]]
    assert f"table {name}: 1 row" in logs, logs
