"""The HTML pages, through Flask's test client (the browser tests drive the same pages live)."""

from __future__ import annotations

import re

import pytest
from jinja2 import ChoiceLoader, DictLoader

from flask_backup_manager.presenters import human_size

HTML = {"Accept": "text/html"}
API = "/backups/api"


def token(client) -> str:
    page = client.get("/backups/", headers=HTML)
    return re.search(r'data-csrf-token="([^"]+)"', page.text).group(1)


def rows(html: str) -> list[tuple[str, str]]:
    """(id, status) of each row of the list, top to bottom."""
    return re.findall(r'data-backup-id="(\d+)" data-status="(\w+)"', html)


def test_empty_list_says_what_a_backup_is_and_offers_to_make_one(client):
    page = client.get("/backups/", headers=HTML)
    assert page.status_code == 200
    assert 'data-testid="empty-state"' in page.text
    assert "SQL data" in page.text and "asset files are" in page.text
    assert 'href="/backups/new"' in page.text


def test_new_page_offers_each_format_and_says_files_are_not_copied(client):
    page = client.get("/backups/new", headers=HTML)
    assert page.status_code == 200
    for name in ("sqlite3_db", "sqlite3"):
        assert f'name="format" value="{name}"' in page.text
    assert "<code>gunzip -c FILE | sqlite3 -safe new.db</code>" in page.text  # `...` shown as code
    assert "Uploaded files and other" in page.text and "<strong>not</strong>" in page.text
    assert 'action="/backups/" class="bm-form"' in page.text


def test_create_form_redirects_to_the_new_backup_and_the_list_has_it_on_top_as_queued(client):
    answer = client.post("/backups/", data={"format": "sqlite3", "csrf_token": token(client)})
    assert answer.status_code == 303
    backup_id = client.get(f"{API}/backups").json["backups"][0]["id"]
    assert answer.headers["Location"] == f"/backups/{backup_id}"
    listing = client.get("/backups/", headers=HTML).text
    assert rows(listing)[0][1] == "queued"
    assert "<code>sqlite3</code>" in listing


def test_create_form_without_csrf_token_is_refused(client):
    token(client)  # the session cookie exists, as in a forged cross-site post
    answer = client.post("/backups/", data={"format": "sqlite3"}, headers=HTML)
    assert answer.status_code == 400
    assert "CSRF" in answer.text and 'data-testid="error-page"' in answer.text
    assert client.get(f"{API}/backups").json["total"] == 0


def test_create_form_with_an_unknown_format_flashes_why_on_the_create_page(client):
    answer = client.post(
        "/backups/", data={"format": "zip", "csrf_token": token(client)}, headers=HTML
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/backups/new"
    page = client.get("/backups/new", headers=HTML).text
    assert re.search(r'data-testid="flash" data-kind="error"[^>]*>Unknown format', page)
    assert client.get(f"{API}/backups").json["total"] == 0


def test_list_is_paginated_newest_first(make_app):
    app = make_app(BACKUP_MANAGER_PER_PAGE=2, BACKUP_MANAGER_MAX_ACTIVE=10)
    client = app.test_client()
    ids = [client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"] for _ in range(5)]
    first = client.get("/backups/", headers=HTML).text
    assert [r[0] for r in rows(first)] == [str(ids[4]), str(ids[3])]
    assert "Page 1 of 3" in first and 'href="/backups/?page=2"' in first and "Newer" not in first
    last = client.get("/backups/?page=3", headers=HTML).text
    assert [r[0] for r in rows(last)] == [str(ids[0])]
    assert 'href="/backups/?page=2"' in last and "Older" not in last
    assert client.get("/backups/?page=x", headers=HTML).status_code == 400


def test_detail_of_a_queued_backup_polls_and_offers_cancel_not_delete(client):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    page = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert f'data-poll-url="/backups/api/backups/{backup_id}"' in page
    assert f'data-logs-url="/backups/api/backups/{backup_id}/logs"' in page
    assert re.search(r'data-testid="cancel-form"\s+action=', page)  # shown
    assert re.search(r'data-testid="delete-form" hidden', page)
    assert re.search(r'data-testid="download"[^>]*\bhidden\b', page)
    assert "queued: format sqlite3_db" in page


def test_detail_of_a_succeeded_backup_shows_file_facts_log_and_download(client, run_worker):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    run_worker()
    b = client.get(f"{API}/backups/{backup_id}").json
    assert b["status"] == "succeeded"
    page = client.get(f"/backups/{backup_id}", headers=HTML).text
    assert "data-poll-url" not in page  # finished: nothing to watch
    assert b["sha256"] in page and human_size(b["size"]) in page
    assert f'href="/backups/api/backups/{backup_id}/download"' in page
    assert not re.search(r'data-testid="download"[^>]*\bhidden\b', page)
    assert re.search(r'data-testid="cancel-form" hidden', page)
    assert "table customers: 50 rows" in page
    assert 'value="100"' in page  # the progress bar


def test_cancel_then_delete_forms_redirect_and_remove_the_backup(client):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    csrf = token(client)
    answer = client.post(f"/backups/{backup_id}/cancel", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["Location"] == f"/backups/{backup_id}"
    assert client.get(f"{API}/backups/{backup_id}").json["status"] == "cancelled"
    answer = client.post(f"/backups/{backup_id}/delete", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["Location"] == "/backups/"
    assert client.get(f"/backups/{backup_id}", headers=HTML).status_code == 404


def test_delete_form_of_an_active_backup_flashes_why_on_its_page(client):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    answer = client.post(
        f"/backups/{backup_id}/delete", data={"csrf_token": token(client)}, headers=HTML
    )
    assert answer.status_code == 303 and answer.headers["Location"] == f"/backups/{backup_id}"
    page = client.get(answer.headers["Location"], headers=HTML).text
    assert "cancel it before deleting it" in page
    assert client.get(f"{API}/backups/{backup_id}").json["status"] == "queued"


def test_unknown_backup_is_a_404_page(client):
    answer = client.get("/backups/424242", headers=HTML)
    assert answer.status_code == 404
    assert 'data-testid="error-page"' in answer.text and "No such backup." in answer.text


@pytest.mark.parametrize(
    ("method", "path", "granted"),
    [
        ("get", "/backups/", "create,delete"),
        ("get", "/backups/new", "view"),
        ("post", "/backups/", "view"),
        ("post", "/backups/1/delete", "view,create"),
    ],
)
def test_each_page_asks_for_its_permission(client, method, path, granted):
    answer = getattr(client, method)(path, headers={**HTML, "X-Test-Permissions": granted})
    assert answer.status_code == 403
    assert 'data-testid="error-page"' in answer.text


def test_pages_show_only_the_actions_the_user_may_take(client):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    view_only = {**HTML, "X-Test-Permissions": "view"}
    listing = client.get("/backups/", headers=view_only).text
    assert 'data-testid="new-backup"' not in listing and rows(listing)
    detail = client.get(f"/backups/{backup_id}", headers=view_only).text
    for action in ("download", "cancel-form", "delete-form"):
        assert f'data-testid="{action}"' not in detail
    everything = client.get(f"/backups/{backup_id}", headers=HTML).text
    for action in ("download", "cancel-form", "delete-form"):
        assert f'data-testid="{action}"' in everything


def test_pages_render_inside_the_hosts_layout_with_their_assets(make_app):
    app = make_app(BACKUP_MANAGER_BASE_TEMPLATE="host/layout.html")
    host = "<html><body><nav>HOST NAV</nav>{% block content %}{% endblock %}</body></html>"
    app.jinja_env.loader = ChoiceLoader(
        [DictLoader({"host/layout.html": host}), app.jinja_env.loader]
    )
    page = app.test_client().get("/backups/", headers=HTML).text
    assert "HOST NAV" in page and 'class="bm-topbar"' not in page
    assert 'href="/backups/static/backup_manager/backup_manager.css"' in page
    assert 'src="/backups/static/backup_manager/backup_manager.js"' in page
    assert re.search(r'class="bm" data-csrf-token="[^"]+"', page)


def test_assets_are_served_locally_and_pages_load_nothing_from_elsewhere(client):
    page = client.get("/backups/new", headers=HTML).text
    assets = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        if "/static/" in asset:
            answer = client.get(asset)
            assert answer.status_code == 200
            answer.close()


@pytest.mark.parametrize(
    ("size", "shown"),
    [(None, "\u2014"), (0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"),
     (5 * 1024**2, "5.0 MiB"), (3 * 1024**4, "3.0 TiB")],
)  # fmt: skip
def test_sizes_are_human_readable(size, shown):
    assert human_size(size) == shown


def test_refused_creation_is_explained_on_the_form_with_a_link_to_the_active_backup(make_app):
    client = make_app(BACKUP_MANAGER_MAX_ACTIVE=1).test_client()
    form = {"format": "sqlite3_db", "csrf_token": token(client)}
    first = client.post("/backups/", data=form)
    assert first.status_code == 303
    second = client.post("/backups/", data=form)
    assert second.status_code == 303 and second.headers["Location"] == "/backups/new"
    page = client.get("/backups/new", headers=HTML).text
    flash = re.search(r'data-testid="flash" data-kind="error"[^>]*>(.*?)</p>', page, re.S)
    assert flash, page
    assert flash.group(1) == (
        f'Another backup is already queued or running: <a href="{first.headers["Location"]}">'
        f"backup {first.headers['Location'].rsplit('/', 1)[1]}</a>. Try again when it has "
        "finished."
    )
    assert "BACKUP_MANAGER" not in page
    assert 'data-testid="format-sqlite3_db"' in page  # the choices are offered again
    assert client.get(f"{API}/backups").json["total"] == 1


def test_detail_page_shows_who_created_and_downloaded_it(client, run_worker):
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"]
    run_worker()
    client.get(f"{API}/backups/{backup_id}/download").close()
    page = client.get(f"/backups/{backup_id}", headers=HTML).text
    audit = page[page.index('data-testid="audit"') :]
    assert re.findall(r"<td>(tester)</td>\s*<td>(\w+)", audit) == [
        ("tester", "create"),
        ("tester", "download"),
    ]
