"""A download link in a real browser, against the example shop run as it is deployed (issue 14,
section 2): the admin makes a link on a backup's page and copies it; a browser without the
admin's session opens it and downloads the very file.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from .conftest import SCREENSHOTS, Demo


def succeeded_backup(page: Page, demo: Demo) -> tuple[str, str]:
    """Make a sqlite3 backup from the create page and watch it succeed on its page; its id
    and sha256."""
    page.goto("/backups/new")
    page.get_by_test_id("format-sqlite3").check()
    demo.pause_worker()
    try:
        page.get_by_test_id("create-backup").click()
        expect(page).to_have_url(re.compile(r"/backups/\d+$"))
        expect(page.get_by_test_id("link-form")).to_be_hidden()  # no file to share yet
    finally:
        demo.resume_worker()
    detail = page.get_by_test_id("backup-detail")
    expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.get_by_test_id("link-form")).to_be_visible()  # shown once there is a file
    return page.url.rsplit("/", 1)[1], page.get_by_test_id("sha256").inner_text()


def test_a_link_made_on_the_detail_page_downloads_in_a_browser_without_the_session(
    admin: Page, browser: Browser, demo: Demo, tmp_path: Path
):
    page = admin
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    backup_id, sha256 = succeeded_backup(page, demo)
    expect(page.get_by_test_id("no-links")).to_be_visible()

    page.get_by_test_id("link-hours").fill("24")
    page.get_by_test_id("link-max").fill("1")
    page.get_by_test_id("link-note").fill("ticket #4711")
    page.get_by_test_id("create-link").click()
    shown = page.get_by_test_id("new-link-url")
    expect(shown).to_have_value(
        re.compile(rf"^{re.escape(demo.url)}/backups/l/[A-Za-z0-9_-]{{43}}$")
    )
    url = shown.input_value()
    page.get_by_test_id("copy-link").click()
    expect(page.get_by_test_id("copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    row = page.get_by_test_id("link-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ticket #4711")
    expect(row.locator('[data-field="downloads"]')).to_have_text("0 of 1")
    page.screenshot(path=str(SCREENSHOTS / "ui-link-made.png"), full_page=True)

    vendor = browser.new_context(accept_downloads=True)  # no cookie of the shop's
    try:
        visit = vendor.new_page()
        visit.set_default_timeout(15_000)
        requests: list[str] = []
        visit.on("request", lambda r: requests.append(r.url))
        answer = visit.goto(url)
        assert answer is not None and answer.status == 200
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"
        expect(visit.get_by_test_id("link-sha256")).to_have_text(sha256)
        expect(visit.get_by_test_id("link-format")).to_have_text("sqlite3")
        expect(visit.get_by_test_id("link-manifest")).to_contain_text("verified")
        expect(visit.get_by_test_id("link-restore")).to_contain_text("sqlite3 -safe new.db")
        visit.screenshot(path=str(SCREENSHOTS / "ui-link-page.png"), full_page=True)
        with visit.expect_download() as info:
            visit.get_by_test_id("link-download").click()
        download = info.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha256
        # everything the page loaded came from the shop itself
        assert requests and all(r.startswith(demo.url + "/") for r in requests), requests
        assert vendor.cookies() == []

        # used up: the page now answers as any dead link
        again = visit.goto(url)
        assert again is not None and again.status == 404
        expect(visit.get_by_test_id("link-gone")).to_be_visible()
    finally:
        vendor.close()

    page.goto(f"/backups/{backup_id}")
    expect(row.locator('[data-field="downloads"]')).to_have_text("1 of 1")
    expect(page.get_by_test_id("audit")).to_contain_text("link_download")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("revoke-link").click()
    expect(page.locator(".bm").get_by_test_id("flash")).to_contain_text("revoked")
    expect(row).to_have_attribute("data-state", "revoked")
    expect(row.get_by_test_id("revoke-link")).to_have_count(0)
