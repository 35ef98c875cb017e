"""What the pages say of each state of a backup and of the queue, through Flask's test client
(the browser tests, test_browser_pages.py, check what needs a browser: dialogs, scripts,
layout): flash messages after each form, refusals, a file gone or damaged, no worker, the
phase of a running backup, the list's rows and Try again."""

from __future__ import annotations

import html
import re
import time
from datetime import timedelta

import pytest

from flask_backup_manager.lifecycle import finish, update
from flask_backup_manager.models import Status, utcnow
from flask_backup_manager.service import FILE_DAMAGED, FILE_MISSING

from .test_pages import API, HTML, token


def flashes(page: str) -> list[tuple[str, str]]:
    """(kind, text) of each of our flash messages on a page."""
    found = re.findall(r'data-testid="flash" data-kind="(\w+)"[^>]*>(.*?)</p>', page, re.S)
    return [(kind, html.unescape(re.sub(r"<[^>]+>", "", text)).strip()) for kind, text in found]


def row(page: str, backup_id: int) -> str:
    """The HTML of one backup's row on the list."""
    match = re.search(
        rf'<tr data-testid="backup-row" data-backup-id="{backup_id}".*?</tr>', page, re.S
    )
    assert match, f"no row of backup {backup_id}"
    return match.group(0)


def section(page: str, testid: str) -> str | None:
    """The HTML of the element with ``data-testid=testid``, from its opening tag to its
    closing one (None: absent)."""
    match = re.search(rf'<(\w+)[^<>]*data-testid="{testid}"[^<>]*>.*?</\1>', page, re.S)
    return match.group(0) if match else None


def opening(page: str, testid: str) -> str:
    """The opening tag of the element with ``data-testid=testid``."""
    return re.search(rf'<[^<>]*data-testid="{testid}"[^<>]*>', page).group(0)


def made(client, format_: str = "sqlite3_db") -> int:
    """A queued backup, made through the API (with the page's token: the client has cookies)."""
    headers = {"X-CSRFToken": token(client)}
    return client.post(f"{API}/backups", json={"format": format_}, headers=headers).json["id"]


def storage_file(app, backup_id: int):
    with app.app_context():
        from flask_backup_manager.service import file_path, get_backup

        return file_path(get_backup(backup_id))


def test_each_form_flashes_what_it_did_once_and_redirects(client):
    csrf = token(client)
    created = client.post("/backups/", data={"format": "sqlite3", "csrf_token": csrf})
    assert created.status_code == 303
    backup_id = int(created.headers["Location"].rsplit("/", 1)[1])
    page = client.get(created.headers["Location"], headers=HTML).text
    assert flashes(page) == [("success", f"Backup {backup_id} queued.")]
    assert 'role="status"' in opening(page, "flash")
    assert flashes(client.get(created.headers["Location"], headers=HTML).text) == []  # once

    cancelled = client.post(f"/backups/{backup_id}/cancel", data={"csrf_token": csrf})
    assert cancelled.status_code == 303
    page = client.get(cancelled.headers["Location"], headers=HTML).text
    assert flashes(page) == [("success", f"Backup {backup_id} cancelled.")]

    deleted = client.post(f"/backups/{backup_id}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/backups/"
    page = client.get("/backups/", headers=HTML).text
    assert flashes(page) == [("success", f"Backup {backup_id} deleted.")]


def test_our_pages_show_our_flash_messages_and_never_the_hosts(client):
    with client.session_transaction() as session:
        session["_flashes"] = [
            ("message", "the host's own news"),
            ("backup_manager-success", "ours"),
        ]
    page = client.get("/backups/", headers=HTML).text
    assert flashes(page) == [("success", "ours")]
    assert "the host's own news" not in page


def test_a_refusal_is_flashed_as_an_alert_on_the_page_to_try_again_from(client):
    csrf = token(client)
    backup_id = made(client)
    answer = client.post(f"/backups/{backup_id}/cancel", data={"csrf_token": csrf})
    client.get(answer.headers["Location"], headers=HTML)  # its flash, seen
    again = client.post(f"/backups/{backup_id}/cancel", data={"csrf_token": csrf})
    assert again.status_code == 303 and again.headers["Location"] == f"/backups/{backup_id}"
    page = client.get(again.headers["Location"], headers=HTML).text
    assert [kind for kind, _ in flashes(page)] == ["error"]
    assert 'role="alert"' in opening(page, "flash")


def test_create_with_the_queue_down_is_flashed_on_the_create_page_which_warns(host_env):
    from ..hostapp import create_app, db

    app = create_app({"BACKUP_MANAGER_REDIS_URL": "redis://127.0.0.1:1/0"})  # nothing listens
    with app.app_context():
        db.create_all()
    try:
        client = app.test_client()
        answer = client.post("/backups/", data={"format": "sqlite3", "csrf_token": token(client)})
        assert answer.status_code == 303 and answer.headers["Location"] == "/backups/new"
        page = client.get("/backups/new", headers=HTML).text
        [(kind, text)] = flashes(page)
        assert kind == "error" and "job queue" in text  # the service's sentence
        assert "The job queue is unavailable" in section(page, "worker-warning")
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def test_no_worker_is_said_on_the_list_the_create_page_and_a_queued_backups_page(client):
    backup_id = made(client)
    for path in ("/backups/", "/backups/new", f"/backups/{backup_id}"):
        page = client.get(path, headers=HTML).text
        warning = section(page, "worker-warning")
        assert warning and "hidden" not in opening(page, "worker-warning"), path
        assert "No worker is listening on queue" in warning, path
        assert "<code>flask backups worker</code>" in warning, path


def test_the_warning_goes_once_a_worker_listens(client, worker):
    worker()
    deadline = time.monotonic() + 60
    while "No worker is listening" in client.get("/backups/", headers=HTML).text:
        assert time.monotonic() < deadline, "the worker never registered"
        time.sleep(0.2)
    assert section(client.get("/backups/new", headers=HTML).text, "worker-warning") is None


def test_list_rows_give_status_format_size_creator_duration_and_direct_actions(client, run_worker):
    done = made(client, "sqlite3")
    run_worker()
    queued = made(client)
    page = client.get("/backups/", headers=HTML).text
    finished = row(page, done)
    assert 'data-testid="status"' in finished and ">succeeded<" in finished
    assert "<code>sqlite3</code>" in finished
    assert re.search(r'data-field="size">\d+(\.\d)? (bytes|KiB)<', finished)
    assert "by tester" in finished and "<time datetime=" in finished
    assert re.search(r'data-field="duration">\d+\.\d s<', finished)
    # one link to the backup's page, one Download, one Delete: three tab stops
    assert re.findall(r"<(a|button)\b", finished) == ["a", "a", "button"]
    assert f'aria-label="Download backup {done}"' in finished
    assert f'aria-label="Delete backup {done}"' in finished
    assert "data-confirm=" in finished
    waiting = row(page, queued)
    assert re.search(r'data-testid="download"[^>]*\bhidden\b', waiting)
    assert re.search(r'data-testid="delete-form"[^>]*\bhidden\b', waiting)


def test_a_failed_backup_shows_its_reason_on_the_list_and_can_be_tried_again(client, app):
    backup_id = made(client, "sqlite3")
    with app.app_context():
        finish(backup_id, (Status.QUEUED,), Status.FAILED, error="disk full")
    page = client.get("/backups/", headers=HTML).text
    failed = row(page, backup_id)
    assert 'title="disk full"' in failed  # on the badge
    assert re.search(r'data-field="error"\s*>disk full<', failed)  # and on a second line
    detail = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert "hidden" not in opening(detail, "retry-form")
    answer = client.post(f"/backups/{backup_id}/retry", data={"csrf_token": token(client)})
    assert answer.status_code == 303
    again = client.get(answer.headers["Location"], headers=HTML).text
    new_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    assert new_id != backup_id
    assert flashes(again) == [
        ("success", f"Backup {new_id} queued (backup {backup_id} tried again).")
    ]
    b = client.get(f"{API}/backups/{new_id}").json
    assert (b["status"], b["format"]) == ("queued", "sqlite3")


def test_only_a_failed_or_cancelled_backup_can_be_tried_again(client):
    backup_id = made(client)
    detail = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert re.search(r'data-testid="retry-form"\s+hidden', detail)
    answer = client.post(f"/backups/{backup_id}/retry", data={"csrf_token": token(client)})
    assert answer.headers["Location"] == f"/backups/{backup_id}"
    page = client.get(answer.headers["Location"], headers=HTML).text
    assert flashes(page) == [
        (
            "error",
            f"Only a failed or cancelled backup can be tried again (backup {backup_id}: queued).",
        )
    ]
    assert client.get(f"{API}/backups").json["total"] == 1


def test_cancel_asks_first(client):
    backup_id = made(client)
    form = section(client.get(f"/backups/{backup_id}", headers=HTML).text, "cancel-form")
    assert f'data-confirm="Cancel backup {backup_id}?' in form


@pytest.mark.parametrize("how", ["missing", "damaged", "shorter"])
def test_a_file_gone_or_changed_in_storage_is_shown_without_download(client, app, run_worker, how):
    backup_id = made(client)
    run_worker()
    path = storage_file(app, backup_id)
    data = path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "damaged":  # same size: only reading it finds out
        path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        path.write_bytes(data[:-10])
    sentence = FILE_MISSING if how == "missing" else FILE_DAMAGED
    detail = client.get(f"/backups/{backup_id}", headers=HTML).text
    problem = section(detail, "file-problem")
    assert problem and 'role="alert"' in opening(detail, "file-problem") and sentence in problem
    assert 'data-testid="download"' not in detail
    assert not re.search(r'data-testid="delete-form"[^>]*\bhidden\b', detail)
    listed = row(client.get("/backups/", headers=HTML).text, backup_id)
    if how == "damaged":  # the list only stats the file: same size, nothing seen
        assert 'data-testid="file-problem"' not in listed
    else:
        assert sentence in listed
        assert re.search(r'data-testid="download"[^>]*\bhidden\b', listed)
    if how != "missing":  # put back as it was: the page reads it again and finds it good
        path.write_bytes(data)
        detail = client.get(f"/backups/{backup_id}", headers=HTML).text
        assert 'data-testid="file-problem"' not in detail
        assert 'data-testid="download"' in detail


def test_a_running_backup_shows_its_phase_elapsed_time_and_time_left(client, app):
    backup_id = made(client)
    with app.app_context():
        update(
            backup_id,
            status=Status.RUNNING,
            started_at=utcnow() - timedelta(seconds=75),
            phase="copying table orders",
        )
    detail = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert re.search(r'data-field="phase">copying table orders<', detail)
    assert re.search(r'data-field="elapsed"\s*>&middot; 1 min 1\d s elapsed<', detail)
    assert re.search(r'data-field="eta" hidden', detail)  # no estimate yet
    with app.app_context():
        update(backup_id, eta=130)
    detail = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert re.search(r'data-field="eta"\s*>&middot; about 2 min left<', detail)
    with app.app_context():
        update(backup_id, eta=22)
    detail = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert re.search(r'data-field="eta"\s*>&middot; about 20 s left<', detail)
    assert "hidden" in opening(detail, "worker-warning")  # running: no warning
    listed = row(client.get("/backups/", headers=HTML).text, backup_id)
    assert re.search(r'data-field="phase"\s*>copying table orders<', listed)


def test_the_create_page_says_the_backup_managers_own_history_is_not_copied(client):
    page = client.get("/backups/new", headers=HTML).text
    own = section(page, "own-tables")
    assert "copied with their structure but no rows" in " ".join(own.split())
