"""The Backup Manager's pages in a real browser, against the example shop run as it is deployed:
its web server and one RQ worker as separate processes, sharing a SQLite database and Redis.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import SCREENSHOTS, SEEDED, Demo


def _check_sqlite_db(path: Path) -> None:
    con = sqlite3.connect(path)
    try:
        for table, n in SEEDED.items():
            assert con.execute(f"select count(*) from {table}").fetchone() == (n,), table
    finally:
        con.close()


def _check_sqlite_sql_gz(path: Path) -> None:
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(gzip.decompress(path.read_bytes()).decode())
        for table, n in SEEDED.items():
            assert con.execute(f"select count(*) from {table}").fetchone() == (n,), table
    finally:
        con.close()


@pytest.mark.parametrize(
    ("format_", "check_file"), [("sqlite3_db", _check_sqlite_db), ("sqlite3", _check_sqlite_sql_gz)]
)
def test_admin_creates_watches_downloads_and_deletes_a_backup(
    admin: Page, demo: Demo, tmp_path: Path, format_, check_file
):
    page = admin
    page.get_by_role("link", name="Backups", exact=True).click()
    expect(page).to_have_url(re.compile(r"/backups/$"))
    page.get_by_test_id("new-backup").click()
    expect(page.get_by_text("Only the application's SQL data is copied")).to_be_visible()

    demo.pause_worker()
    try:
        page.get_by_test_id(f"format-{format_}").check()
        page.get_by_test_id("create-backup").click()
        expect(page).to_have_url(re.compile(r"/backups/\d+$"))  # the new backup's page
        backup_id = page.url.rsplit("/", 1)[1]
        expect(page.locator(".bm").get_by_test_id("flash")).to_have_text(
            f"Backup {backup_id} queued."
        )
        page.get_by_role("link", name="Backups", exact=True).click()
        expect(page).to_have_url(re.compile(r"/backups/$"))
        top = page.get_by_test_id("backup-row").first
        assert top.get_attribute("data-backup-id") == backup_id
        expect(top.get_by_test_id("status")).to_have_text("queued")
        expect(top).to_contain_text(format_)

        top.get_by_role("link", name=f"Backup {backup_id}", exact=True).click()
        expect(page).to_have_url(re.compile(rf"/backups/{backup_id}$"))
        detail = page.get_by_test_id("backup-detail")
        expect(detail.get_by_test_id("status")).to_have_text("queued")
        expect(page.get_by_test_id("download")).to_be_hidden()
        expect(page.get_by_test_id("cancel")).to_be_visible()
        page.evaluate("window.__same_page = true")
    finally:
        demo.resume_worker()

    # The page follows the job by itself: no reload (the marker survives), no click.
    expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
    assert page.evaluate("window.__same_page") is True
    expect(detail.get_by_test_id("status")).to_have_text("succeeded")
    expect(page.get_by_test_id("progress")).to_contain_text("100%")
    log = page.get_by_test_id("log")
    for table, n in SEEDED.items():
        expect(log).to_contain_text(f"table {table}: {n} row{'' if n == 1 else 's'}")
    expect(log).to_contain_text("finished:")
    sha256 = page.get_by_test_id("sha256").inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", sha256)
    expect(page.get_by_test_id("size")).to_have_text(re.compile(r"^\d+(\.\d)? (bytes|KiB|MiB)$"))
    expect(page.get_by_test_id("cancel")).to_be_hidden()
    if format_ == "sqlite3_db":
        page.screenshot(path=str(SCREENSHOTS / "ui-detail.png"), full_page=True)

    with page.expect_download() as download_info:
        page.get_by_test_id("download").click()
    download = download_info.value
    assert download.suggested_filename.startswith("shop-")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha256
    check_file(saved)

    # The confirm step: dismissing it keeps the backup, accepting it deletes it.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_test_id("delete").click()
    expect(page).to_have_url(re.compile(rf"/backups/{backup_id}$"))
    expect(detail).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("delete").click()
    expect(page).to_have_url(re.compile(r"/backups/$"))
    expect(page.locator(f'[data-testid="backup-row"][data-backup-id="{backup_id}"]')).to_have_count(
        0
    )


def test_list_shows_newest_first_with_status_badges_and_sizes(admin: Page, demo: Demo):
    page = admin
    made = []
    for format_ in ("sqlite3", "sqlite3_db"):  # one after the other: one active backup at a time
        page.goto("/backups/new")
        page.get_by_test_id(f"format-{format_}").check()
        page.get_by_test_id("create-backup").click()
        expect(page).to_have_url(re.compile(r"/backups/\d+$"))
        made.append(page.url.rsplit("/", 1)[1])
        expect(page.get_by_test_id("backup-detail")).to_have_attribute(
            "data-status", "succeeded", timeout=60_000
        )
    page.goto("/backups/")
    rows = page.get_by_test_id("backup-row")
    assert rows.nth(0).get_attribute("data-backup-id") == made[1]
    assert rows.nth(1).get_attribute("data-backup-id") == made[0]
    expect(rows.nth(0).get_by_test_id("status")).to_have_class(re.compile("bm-badge-succeeded"))
    expect(rows.nth(0)).to_contain_text(re.compile(r"\d+(\.\d)? (KiB|MiB)"))
    page.screenshot(path=str(SCREENSHOTS / "ui-list.png"), full_page=True)


def test_admin_cancels_a_queued_backup_from_its_page(admin: Page, demo: Demo):
    page = admin
    demo.pause_worker()
    try:
        page.goto("/backups/new")
        page.get_by_test_id("format-sqlite3").check()
        page.get_by_test_id("create-backup").click()
        expect(page).to_have_url(re.compile(r"/backups/\d+$"))
        detail = page.get_by_test_id("backup-detail")
        expect(detail).to_have_attribute("data-status", "queued")
        page.once("dialog", lambda dialog: dialog.accept())  # "Cancel backup N?"
        page.get_by_test_id("cancel").click()
        expect(detail).to_have_attribute("data-status", "cancelled")
    finally:
        demo.resume_worker()
    expect(page.get_by_test_id("cancel")).to_be_hidden()
    expect(page.get_by_test_id("delete")).to_be_visible()
    expect(page.get_by_test_id("download")).to_be_hidden()
    expect(page.get_by_test_id("log")).to_contain_text("cancelled")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("delete").click()
    expect(page).to_have_url(re.compile(r"/backups/$"))


def test_anonymous_visitor_is_sent_to_login_and_refused_by_the_api(browser: Browser, demo: Demo):
    context = browser.new_context(base_url=demo.url)
    try:
        page = context.new_page()
        page.goto("/backups/")
        expect(page).to_have_url(re.compile(r"/login\?next=/backups/$"))
        answer = context.request.get("/backups/api/backups")
        assert answer.status == 403
        assert answer.json()["error"]["code"] == "forbidden"
        answer = context.request.post("/backups/api/backups", data={"format": "sqlite3_db"})
        assert answer.status == 403
    finally:
        context.close()


def test_post_without_csrf_token_from_a_signed_in_browser_is_refused(admin: Page):
    page = admin
    page.goto("/backups/")
    before = page.get_by_test_id("backup-row").count()
    # The session cookie rides along (as on a forged cross-site form), the token does not.
    answer = page.request.post("/backups/", form={"format": "sqlite3_db"})
    assert answer.status == 400
    answer = page.request.post("/backups/api/backups", data={"format": "sqlite3_db"})
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "csrf_failed"
    # The page's own token, sent the way its script does, gets through the check.
    status = page.evaluate(
        "BackupManager.api('DELETE', '/backups/api/backups/999999').then(r => r.status)"
    )
    assert status == 404
    page.reload()
    expect(page.get_by_test_id("backup-row")).to_have_count(before)
