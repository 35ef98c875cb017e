"""The audit trail outlives its backup, as the README promises: per backup, all of it through
``GET /api/audit`` (paginated, newest first) and the Activity page."""

from __future__ import annotations

import re

import pytest

API = "/backups/api"
HTML = {"Accept": "text/html"}


def create(client) -> int:
    return client.post(f"{API}/backups", json={"format": "sqlite3"}).json["id"]


def cancel_and_delete(client, backup_id: int) -> None:
    assert client.post(f"{API}/backups/{backup_id}/cancel").status_code == 200
    assert client.delete(f"{API}/backups/{backup_id}").status_code == 204


def test_the_trail_of_a_deleted_backup_is_still_answered(client):
    backup_id = create(client)
    cancel_and_delete(client, backup_id)
    assert client.get(f"{API}/backups/{backup_id}").status_code == 404  # the backup is gone
    answer = client.get(f"{API}/backups/{backup_id}/audit")
    assert answer.status_code == 200
    trail = answer.json["audit"]
    assert [(a["actor"], a["action"]) for a in trail] == [
        ("tester", "create"),
        ("tester", "cancel"),
        ("tester", "delete"),
    ]
    assert set(trail[0]) == {"at", "actor", "action", "detail"} and trail[0]["at"].endswith("Z")


@pytest.mark.parametrize("backup_id", ["424242", "abc", "1.5", "9" * 19])
def test_the_trail_of_a_backup_that_never_was_is_404(client, backup_id):
    answer = client.get(f"{API}/backups/{backup_id}/audit")
    assert answer.status_code == 404 and answer.json["error"]["code"] == "not_found"


def test_all_activity_is_listed_newest_first_page_by_page(client):
    first, second = create(client), create(client)
    cancel_and_delete(client, first)
    expected = [  # newest first
        (first, "delete"),
        (first, "cancel"),
        (second, "create"),
        (first, "create"),
    ]
    everything = client.get(f"{API}/audit").json
    assert everything["total"] == 4 and everything["page"] == 1 and everything["per_page"] == 20
    assert [(a["backup_id"], a["action"]) for a in everything["audit"]] == expected
    assert set(everything["audit"][0]) == {"at", "actor", "action", "backup_id", "detail"}

    pages = [client.get(f"{API}/audit?page={n}&per_page=3").json for n in (1, 2, 3)]
    assert [[(a["backup_id"], a["action"]) for a in p["audit"]] for p in pages] == [
        expected[:3],
        expected[3:],
        [],
    ]
    assert all(p["total"] == 4 and p["per_page"] == 3 for p in pages)
    assert client.get(f"{API}/audit?per_page=500").json["per_page"] == 100


@pytest.mark.parametrize("query", ["page=0", "page=x", "per_page=0", "page=-1", "per_page=1e3"])
def test_bad_page_arguments_are_400(client, query):
    answer = client.get(f"{API}/audit?{query}")
    assert answer.status_code == 400
    assert answer.json["error"]["code"] in ("bad_argument", "bad_page")


def test_the_activity_needs_the_view_permission(client):
    create(client)
    for path in (f"{API}/audit", "/backups/activity"):
        answer = client.get(path, headers={"X-Test-Permissions": "create,download,delete"})
        assert answer.status_code == 403, path


def test_the_activity_page_links_each_entry_to_its_backup_while_it_exists(make_app):
    client = make_app(BACKUP_MANAGER_PER_PAGE=2).test_client()
    kept, gone = create(client), create(client)
    cancel_and_delete(client, gone)

    listing = client.get("/backups/", headers=HTML).text
    assert 'href="/backups/activity"' in listing  # the list's heading leads here

    page = client.get("/backups/activity", headers=HTML)
    assert page.status_code == 200
    rows = re.findall(
        r'data-testid="activity-entry" data-backup-id="(\d+)">(.*?)</tr>', page.text, re.S
    )
    assert [int(i) for i, _ in rows] == [gone, gone]  # delete, cancel: newest first
    assert all(f'href="/backups/{gone}"' not in row and "(deleted)" in row for _, row in rows)
    assert "delete" in rows[0][1] and "tester" in rows[0][1]
    assert "Page 1 of 2" in page.text and 'href="/backups/activity?page=2"' in page.text

    older = client.get("/backups/activity?page=2", headers=HTML).text
    rows = re.findall(
        r'data-testid="activity-entry" data-backup-id="(\d+)">(.*?)</tr>', older, re.S
    )
    assert [int(i) for i, _ in rows] == [gone, kept]  # gone's create, kept's create
    assert f'href="/backups/{kept}"' in rows[1][1] and "(deleted)" not in rows[1][1]
    assert 'href="/backups/activity?page=1"' in older

    assert "No activity on page 9" in client.get("/backups/activity?page=9", headers=HTML).text
    assert client.get("/backups/activity?page=x", headers=HTML).status_code == 400


def test_the_activity_page_is_one_click_from_the_list_and_fits_a_phone(browser, demo):
    from playwright.sync_api import expect

    from .conftest import sign_in

    page = sign_in(browser, demo, width=360, height=740)
    try:
        page.goto("/backups/new")
        page.get_by_test_id("create-backup").click()
        expect(page.get_by_test_id("backup-detail")).to_be_visible()
        backup_id = page.get_by_test_id("backup-detail").get_attribute("data-backup-id")
        page.goto("/backups/")
        page.get_by_test_id("activity-link").click()
        expect(page.get_by_role("heading", name="Activity")).to_be_visible()
        entry = page.get_by_test_id("activity-entry").first  # the newest: this create
        expect(entry).to_contain_text("admin")
        expect(entry).to_contain_text("create")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        entry.get_by_role("link", name=backup_id, exact=True).click()
        expect(page.get_by_test_id("backup-detail")).to_have_attribute("data-backup-id", backup_id)
    finally:
        page.context.close()


def test_the_audit_pages_on_postgresql(pg_app):
    client = pg_app.test_client()
    first = create(client)
    cancel_and_delete(client, first)
    assert [a["action"] for a in client.get(f"{API}/backups/{first}/audit").json["audit"]] == [
        "create",
        "cancel",
        "delete",
    ]
    page = client.get(f"{API}/audit?page=2&per_page=2").json
    assert page["total"] == 3 and [a["action"] for a in page["audit"]] == ["create"]
    assert client.get(f"{API}/audit?page=99").json["audit"] == []
    assert "(deleted)" in client.get("/backups/activity", headers=HTML).text
