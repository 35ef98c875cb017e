from __future__ import annotations

import hashlib

import pytest

from flask_backup_manager.queue import redis_connection

API = "/backups/api"
JSON = {"Accept": "application/json"}


def create(client, fmt="sqlite3_db", **kw):
    return client.post(f"{API}/backups", json={"format": fmt}, **kw)


def test_formats_lists_what_a_sqlite_host_can_make(client):
    response = client.get(f"{API}/formats")
    assert response.status_code == 200
    names = [f["name"] for f in response.json["formats"]]
    assert {"sqlite3_db", "sqlite3"} <= set(names)
    assert all(f["description"] for f in response.json["formats"])
    assert response.headers["Cache-Control"] == "no-store"


def test_create_answers_202_and_the_backup_heads_the_list_as_queued(client):
    first = create(client)
    second = create(client, "sqlite3")
    assert first.status_code == second.status_code == 202
    body = second.json
    assert body["status"] == "queued" and body["format"] == "sqlite3"
    assert body["filename"].startswith("hostapp-") and body["filename"].endswith(".sqlite3.sql.gz")
    assert body["created_by"] == "tester"
    listing = client.get(f"{API}/backups").json
    assert [b["id"] for b in listing["backups"]] == [body["id"], first.json["id"]]
    assert listing["total"] == 2 and listing["page"] == 1


def test_list_is_paginated_newest_first(client):
    ids = [create(client).json["id"] for _ in range(5)]
    page2 = client.get(f"{API}/backups?page=2&per_page=2").json
    assert [b["id"] for b in page2["backups"]] == ids[::-1][2:4]
    assert page2["total"] == 5 and page2["per_page"] == 2
    assert client.get(f"{API}/backups?page=zero").status_code == 400


@pytest.mark.parametrize("body", [{"format": "zip"}, {"format": None}, {}, [], "sqlite3"])
def test_unknown_or_missing_format_is_400_and_creates_nothing(client, body):
    response = client.post(f"{API}/backups", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] in ("unknown_format", "bad_request")
    assert client.get(f"{API}/backups").json["total"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/backups/api/backups/999",
        "/backups/api/backups/abc",
        "/backups/api/backups/1.5",
        "/backups/api/backups/999/logs",
        "/backups/api/backups/999/download",
    ],
)
def test_unknown_id_is_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/backups/api/backups/..%2F..%2Fetc%2Fpasswd/download",
        "/backups/api/backups/%2Fetc%2Fpasswd/download",
        "/backups/api/backups/../../host.db/download",
    ],
)
def test_traversal_attempts_are_404(client, path):
    assert client.get(path).status_code == 404


def test_download_of_unfinished_backup_is_409(client):
    backup = create(client).json
    response = client.get(f"{API}/backups/{backup['id']}/download")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "not_finished"


def test_delete_of_queued_backup_is_409_until_cancelled(client):
    backup = create(client).json
    assert client.delete(f"{API}/backups/{backup['id']}").status_code == 409
    cancelled = client.post(f"{API}/backups/{backup['id']}/cancel")
    assert cancelled.json["status"] == "cancelled"
    assert client.delete(f"{API}/backups/{backup['id']}").status_code == 204
    assert client.get(f"{API}/backups/{backup['id']}").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("get", "/backups", "view"),
        ("post", "/backups", "create"),
        ("get", "/backups/1/download", "download"),
        ("delete", "/backups/1", "delete"),
    ],
)
def test_each_route_asks_for_its_permission(client, method, path, permission):
    others = ",".join(p for p in ("view", "create", "download", "delete") if p != permission)
    response = getattr(client, method)(
        API + path, headers={"X-Test-Permissions": others}, json={"format": "sqlite3_db"}
    )
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_cookie_session_without_csrf_token_is_400_and_changes_nothing(client):
    client.set_cookie("session", "anything")
    response = create(client)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "csrf_failed"
    assert client.get(f"{API}/backups").json["total"] == 0


def test_cookie_session_with_the_page_token_may_create(client):
    client.get("/backups/", headers={"Accept": "text/html"})  # the page hands out the token
    with client.session_transaction() as session:
        token = session["_backup_manager_csrf"]
    assert create(client, headers={"X-CSRFToken": "wrong"}).status_code == 400
    assert create(client, headers={"X-CSRFToken": token}).status_code == 202


def test_flask_wtf_csrf_protect_is_honoured_and_bearer_requests_pass(app, client):
    from flask_wtf.csrf import CSRFProtect

    CSRFProtect(app)
    assert create(client).status_code == 202  # no cookie: nothing to forge
    client.set_cookie("session", "anything")
    assert create(client).status_code == 400
    with app.test_request_context():
        from flask import session
        from flask_wtf.csrf import generate_csrf

        token = generate_csrf()
        signed = dict(session)
    with client.session_transaction() as session:
        session.update(signed)
    assert create(client, headers={"X-CSRFToken": token}).status_code == 202


def test_redis_down_gives_503_and_a_failed_row_not_a_stuck_queued_one(app, client):
    state = app.extensions["backup_manager"]
    good_url, state.redis_url = state.redis_url, "redis://127.0.0.1:1/0"  # nothing listens
    app.extensions.pop("backup_manager_redis", None)
    try:
        response = create(client)
    finally:
        state.redis_url = good_url
        app.extensions.pop("backup_manager_redis", None)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "queue_unavailable"
    listing = client.get(f"{API}/backups").json  # the list reads the host database: still works
    assert listing["backups"][0]["status"] == "failed"
    assert "queue unavailable" in listing["backups"][0]["error"]


def test_succeeded_backup_downloads_with_checksum_and_deletes(app, client, run_worker):
    backup = create(client).json
    run_worker()
    done = client.get(f"{API}/backups/{backup['id']}").json
    assert done["status"] == "succeeded", done
    response = client.get(f"{API}/backups/{backup['id']}/download")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f"attachment; filename={done['filename']}"
    assert hashlib.sha256(response.data).hexdigest() == done["sha256"]
    assert response.headers["X-Backup-SHA256"] == done["sha256"]
    assert len(response.data) == done["size"]
    partial = client.get(f"{API}/backups/{backup['id']}/download", headers={"Range": "bytes=0-15"})
    assert partial.status_code == 206 and partial.data == b"SQLite format 3\x00"
    response.close()
    partial.close()
    path = app.extensions["backup_manager"].storage_dir / done["filename"]
    assert path.is_file()
    assert client.delete(f"{API}/backups/{backup['id']}").status_code == 204
    assert not path.exists()


def test_logs_route_lists_lines(client):
    backup = create(client).json
    logs = client.get(f"{API}/backups/{backup['id']}/logs").json["logs"]
    assert logs[0]["message"] == "queued: format sqlite3_db"
    assert set(logs[0]) == {"at", "level", "message"}


def test_redis_connection_is_reused_in_one_process(app):
    with app.app_context():
        assert redis_connection() is redis_connection()


def test_more_active_backups_than_allowed_get_429_naming_the_one_running(make_app):
    client = make_app(BACKUP_MANAGER_MAX_ACTIVE=1).test_client()
    first = create(client).json["id"]
    refused = create(client)
    assert refused.status_code == 429
    assert refused.json["error"] == {
        "code": "too_many_active",
        "message": f"Another backup is already queued or running (backup {first}): "
        "try again when it has finished.",
        "active": [first],
    }
    assert refused.headers["Retry-After"] == "10"  # the heartbeat: the row changes no sooner
    assert client.get(f"{API}/backups").json["total"] == 1


def test_the_429_names_every_backup_ahead_when_more_may_run(make_app):
    client = make_app(BACKUP_MANAGER_MAX_ACTIVE=2).test_client()
    ids = [create(client).json["id"] for _ in range(2)]
    error = create(client).json["error"]
    assert error["active"] == ids
    assert error["message"].startswith(
        f"2 backups are already queued or running (backups {ids[0]}, {ids[1]})"
    )


def test_audit_trail_records_create_download_cancel_and_delete(client, run_worker):
    done_id = create(client).json["id"]
    run_worker()
    client.get(f"{API}/backups/{done_id}/download").close()
    cancelled_id = create(client).json["id"]
    client.post(f"{API}/backups/{cancelled_id}/cancel")
    assert client.delete(f"{API}/backups/{done_id}").status_code == 204
    from flask_backup_manager import service

    with client.application.app_context():
        trail = service.audit_trail(done_id)
    assert [(a["actor"], a["action"]) for a in trail] == [
        ("tester", "create"),
        ("tester", "download"),
        ("tester", "delete"),
    ]
    audit = client.get(f"{API}/backups/{cancelled_id}/audit").json["audit"]
    assert [a["action"] for a in audit] == ["create", "cancel"]


def test_a_file_changed_in_storage_is_refused_not_sent(app, client, run_worker):
    backup_id = create(client).json["id"]
    run_worker()
    done = client.get(f"{API}/backups/{backup_id}").json
    path = app.extensions["backup_manager"].storage_dir / done["filename"]
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"X")
    response = client.get(f"{API}/backups/{backup_id}/download")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "checksum_mismatch"


def test_a_file_storage_cannot_remove_keeps_its_backup(app, client, run_worker, monkeypatch):
    """Read-only storage (EROFS, EACCES): faked, as root removes any file of a writable
    disk. The delete is refused with the reason and nothing is lost: row, log, file."""
    backup_id = create(client).json["id"]
    run_worker()
    done = client.get(f"{API}/backups/{backup_id}").json
    path = app.extensions["backup_manager"].storage_dir / done["filename"]
    real_unlink = type(path).unlink

    def unlink(self, missing_ok=False):
        if self == path:
            raise OSError(30, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(type(path), "unlink", unlink)
    response = client.delete(f"{API}/backups/{backup_id}")
    assert response.status_code == 500
    assert response.json["error"] == {
        "code": "storage_error",
        "message": f"The file of backup {backup_id} cannot be removed from storage "
        "(Read-only file system): the backup is kept.",
    }
    assert client.get(f"{API}/backups/{backup_id}").json["status"] == "succeeded"
    assert client.get(f"{API}/backups/{backup_id}/logs").json["logs"]
    assert path.is_file()
    monkeypatch.undo()
    assert client.delete(f"{API}/backups/{backup_id}").status_code == 204
    assert not path.exists()


def test_every_route_of_the_blueprint_is_behind_the_access_check(make_app):
    app = make_app(HOSTAPP_ACCESS="none")
    client = app.test_client()
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("backup_manager.")]
    checked = 0
    for rule in rules:
        # the static files; and the page a download link opens, whose token is the
        # permission (whoever holds it has no account: tests/web/test_links.py)
        if rule.endpoint in ("backup_manager.static", "backup_manager.link_page"):
            continue
        path = rule.rule.replace("<int:backup_id>", "1").replace("<backup_id>", "1")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method, headers={"Accept": "application/json"})
            assert response.status_code == 403, (method, path)
            checked += 1
    assert checked >= 14


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/backups/api/backups/1"),
        ("post", "/backups/api/backups/1/cancel"),
        ("post", "/backups/1/delete"),
        ("post", "/backups/1/cancel"),
        ("post", "/backups/"),
    ],
)
def test_state_changes_from_a_browser_without_token_are_refused_and_change_nothing(
    client, method, path
):
    backup = create(client).json
    for headers in (
        {"Origin": "https://evil.example"},
        {"Authorization": "Basic YTpi"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        response = getattr(client, method)(path, headers=headers, data={"format": "sqlite3"})
        assert response.status_code == 400, (path, headers)
    client.set_cookie("session", "anything")
    assert getattr(client, method)(path, data={"format": "sqlite3"}).status_code == 400
    client.delete_cookie("session")
    listing = client.get(f"{API}/backups").json
    assert [(b["id"], b["status"]) for b in listing["backups"]] == [(backup["id"], "queued")]


def test_ids_of_deleted_backups_are_never_reused(client):
    first = create(client).json["id"]
    client.post(f"{API}/backups/{first}/cancel")
    assert client.delete(f"{API}/backups/{first}").status_code == 204
    second = create(client).json["id"]
    assert second > first
    assert [
        line["message"] for line in client.get(f"{API}/backups/{second}/logs").json["logs"]
    ] == ["queued: format sqlite3_db"]
    assert [a["action"] for a in client.get(f"{API}/backups/{second}/audit").json["audit"]] == [
        "create"
    ]


def test_per_page_must_be_positive_and_is_capped_at_100(client):
    assert client.get(f"{API}/backups?per_page=0").status_code == 400
    assert client.get(f"{API}/backups?per_page=500").json["per_page"] == 100


def test_a_queued_backup_whose_job_left_the_queue_is_failed_not_stuck(make_app):
    from rq import Queue

    from flask_backup_manager.queue import redis_connection

    app = make_app(BACKUP_MANAGER_HEARTBEAT=1, BACKUP_MANAGER_WORKER_LOST_AFTER=2)
    client = app.test_client()
    backup = create(client).json
    with app.app_context():  # Redis restarted without its data: the job is gone
        Queue(app.config["BACKUP_MANAGER_QUEUE"], connection=redis_connection()).empty()
    assert client.get(f"{API}/backups/{backup['id']}").json["status"] == "queued"
    import time

    time.sleep(2.2)
    done = client.get(f"{API}/backups/{backup['id']}").json
    assert done["status"] == "failed" and done["error"].startswith("queue lost the job")
    assert create(client).status_code == 202  # nothing blocks new backups


def test_times_are_utc_whatever_the_postgres_session_zone(pg_url, host_env, monkeypatch, make_app):
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    monkeypatch.setenv("HOSTAPP_DATABASE_URL", url)
    host_env["HOSTAPP_DATABASE_URL"] = url
    app = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": "-c TimeZone=Asia/Kolkata"}}
    )
    from datetime import datetime, timezone

    before = datetime.now(timezone.utc)
    created = create(app.test_client()).json["created_at"]
    assert created.endswith("Z")
    at = datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert abs((at - before).total_seconds()) < 60


def test_a_download_through_a_real_server_carries_one_date_header(app, client, run_worker):
    """The web server dates every answer itself; werkzeug's conditional answer added a second
    ``Date`` of its own (issue 12)."""
    import http.client
    import threading

    from werkzeug.serving import make_server

    backup_id = create(client).json["id"]
    run_worker()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for path in ("download", ""):  # the file, and a JSON answer beside it
            con = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
            con.request("GET", f"{API}/backups/{backup_id}/{path}".rstrip("/"))
            answer = con.getresponse()
            answer.read()
            con.close()
            assert answer.status == 200
            assert len(answer.msg.get_all("Date")) == 1, answer.msg.items()
    finally:
        server.shutdown()
        thread.join(timeout=30)


def test_without_a_worker_the_api_says_so_beside_a_queued_backup(client):
    backup = create(client).json
    queue = client.application.config["BACKUP_MANAGER_QUEUE"]
    sentence = f"No worker is listening on queue {queue}: start one with `flask backups worker`."
    assert backup["warning"] == sentence
    assert client.get(f"{API}/backups/{backup['id']}").json["warning"] == sentence
    listing = client.get(f"{API}/backups").json
    assert listing["warning"] == sentence and listing["backups"][0]["warning"] == sentence
    cancelled = client.post(f"{API}/backups/{backup['id']}/cancel").json
    assert cancelled["warning"] is None  # nothing waits for a worker any more
    assert client.get(f"{API}/backups").json["backups"][0]["warning"] is None


def test_with_a_worker_listening_the_warning_is_null(client, worker):
    import time

    worker()
    deadline = time.monotonic() + 60
    while client.get(f"{API}/backups").json["warning"] is not None:
        assert time.monotonic() < deadline, "the worker never registered on its queue"
        time.sleep(0.2)
    backup = create(client).json
    assert backup["warning"] is None
    assert client.get(f"{API}/backups/{backup['id']}").json["warning"] is None
