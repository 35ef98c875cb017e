"""The pages' states in a real browser, against the example shop run as it is deployed (web
server and workers as separate processes): no worker, a refusal with its link, flash messages
and no second post on reload, the confirmations, Try again, a file gone or damaged in storage,
the phone layout at 360 px and the keyboard order of a row's actions.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import SCREENSHOTS, Demo, sign_in, start_demo, stop_demo

NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture(scope="module")
def idle(tmp_path_factory, redis_url, loopback) -> Iterator[Demo]:
    """A shop with no worker, one active backup at a time (the default): what is created
    stays queued."""
    d = start_demo(tmp_path_factory.mktemp("idle"), redis_url, workers=0)
    yield d
    stop_demo(d)


@pytest.fixture
def idle_admin(browser: Browser, idle: Demo) -> Iterator[Page]:
    """The idle shop's admin; the backups a test leaves queued are cancelled after it, so the
    next test has its one active backup free."""
    page = sign_in(browser, idle)
    yield page
    page.goto("/backups/")
    page.evaluate(
        """async () => {
          const r = await fetch("/backups/api/backups?per_page=100");
          for (const b of (await r.json()).backups)
            if (b.status === "queued" || b.status === "running")
              await BackupManager.api("POST", `/backups/api/backups/${b.id}/cancel`);
        }"""
    )
    page.context.close()


def ours(page: Page):
    """Our flash messages (the shop's layout shows its own, in its own style)."""
    return page.locator('.bm [data-testid="flash"]')


def create(page: Page, format_: str = "sqlite3") -> str:
    """Create a backup from the create page; the id of the new backup, whose page is shown."""
    page.goto("/backups/new")
    page.get_by_test_id(f"format-{format_}").check()
    page.get_by_test_id("create-backup").click()
    expect(page).to_have_url(re.compile(r"/backups/\d+$"))
    return page.url.rsplit("/", 1)[1]


def total(page: Page) -> int:
    return page.request.get("/backups/api/backups").json()["total"]


def test_no_worker_is_said_before_and_after_creating_until_one_starts(browser: Browser, make_demo):
    demo = make_demo(workers=0)
    page = sign_in(browser, demo)
    try:
        page.goto("/backups/")
        warning = page.get_by_test_id("worker-warning")
        expect(warning).to_have_text(
            re.compile(r"No worker is listening on queue \S+: start one with flask backups worker")
        )
        page.goto("/backups/new")
        expect(warning).to_be_visible()
        expect(warning.locator("code")).to_have_text("flask backups worker")
        backup_id = create(page, "sqlite3_db")
        expect(ours(page)).to_have_text(f"Backup {backup_id} queued.")
        expect(warning).to_contain_text("No worker is listening")
        expect(page.get_by_test_id("phase-line")).to_contain_text("waiting for a worker")

        # a worker starts: the page follows by itself, the warning goes, the backup is made
        demo.start_worker()
        detail = page.get_by_test_id("backup-detail")
        expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
        expect(warning).to_be_hidden()
    finally:
        page.context.close()


def test_reloading_after_create_posts_nothing_again(idle_admin: Page):
    page = idle_admin
    before = total(page)
    backup_id = create(page)
    expect(ours(page)).to_have_text(f"Backup {backup_id} queued.")
    expect(page.get_by_text(f"Backup {backup_id} queued.")).to_have_count(1)  # not the shop's too
    page.reload()
    expect(page.get_by_test_id("backup-detail")).to_have_attribute("data-backup-id", backup_id)
    expect(ours(page)).to_have_count(0)  # shown once
    assert total(page) == before + 1


def test_refusal_links_to_the_backup_that_is_queued(idle_admin: Page):
    page = idle_admin
    first = create(page)
    page.goto("/backups/new")
    page.get_by_test_id("create-backup").click()
    expect(page).to_have_url(re.compile(r"/backups/new$"))  # a reload posts nothing
    flash = ours(page)
    expect(flash).to_have_attribute("role", "alert")
    expect(flash).to_have_text(
        f"Another backup is already queued or running: backup {first}. "
        "Try again when it has finished."
    )
    expect(flash).not_to_contain_text("BACKUP_MANAGER")
    page.reload()
    expect(ours(page)).to_have_count(0)
    page.goto("/backups/new")
    page.get_by_test_id("create-backup").click()
    ours(page).get_by_role("link", name=f"backup {first}").click()
    expect(page).to_have_url(re.compile(rf"/backups/{first}$"))
    expect(page.get_by_test_id("backup-detail")).to_have_attribute("data-status", "queued")


def test_cancel_asks_first_and_a_cancelled_backup_can_be_tried_again(idle_admin: Page):
    page = idle_admin
    backup_id = create(page, "sqlite3_db")
    detail = page.get_by_test_id("backup-detail")
    asked = []

    def dismiss(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_test_id("cancel").click()
    expect(detail).to_have_attribute("data-status", "queued")
    assert asked and asked[0].startswith(f"Cancel backup {backup_id}?")
    expect(page.get_by_test_id("retry")).to_be_hidden()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("cancel").click()
    expect(ours(page)).to_have_text(f"Backup {backup_id} cancelled.")
    expect(detail).to_have_attribute("data-status", "cancelled")

    page.get_by_test_id("retry").click()
    expect(page).to_have_url(re.compile(r"/backups/\d+$"))
    again = page.url.rsplit("/", 1)[1]
    assert again != backup_id
    expect(ours(page)).to_have_text(f"Backup {again} queued (backup {backup_id} tried again).")
    expect(detail).to_have_attribute("data-status", "queued")
    expect(page.locator('[data-field="format"]')).to_have_text("sqlite3_db")


def _succeeded(page: Page, format_: str = "sqlite3") -> str:
    backup_id = create(page, format_)
    expect(page.get_by_test_id("backup-detail")).to_have_attribute(
        "data-status", "succeeded", timeout=60_000
    )
    return backup_id


def _stored(demo: Demo, page: Page) -> Path:
    name = page.locator('[data-field="filename"]').inner_text()
    return Path(demo.env["EXAMPLE_APP_INSTANCE"], "backups", name)


def test_a_file_missing_from_storage_is_shown_without_download_and_can_be_deleted(
    admin: Page, demo: Demo
):
    page = admin
    backup_id = _succeeded(page)
    expect(page.get_by_test_id("download")).to_be_visible()
    _stored(demo, page).unlink()
    page.reload()
    problem = page.get_by_test_id("file-problem")
    expect(problem).to_contain_text("The file is missing from storage.")
    expect(page.get_by_test_id("download")).to_have_count(0)
    page.goto("/backups/")
    row = page.locator(f'[data-testid="backup-row"][data-backup-id="{backup_id}"]')
    expect(row.get_by_test_id("file-problem")).to_have_text("The file is missing from storage.")
    expect(row.get_by_test_id("download")).to_be_hidden()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("delete").click()
    expect(ours(page)).to_have_text(f"Backup {backup_id} deleted.")
    expect(row).to_have_count(0)


def test_a_damaged_file_is_shown_as_no_longer_matching_its_checksum(admin: Page, demo: Demo):
    page = admin
    _succeeded(page)
    path = _stored(demo, page)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped, the size unchanged
    path.write_bytes(bytes(data))
    page.reload()
    expect(page.get_by_test_id("file-problem")).to_contain_text(
        "The file no longer matches its checksum."
    )
    expect(page.get_by_test_id("download")).to_have_count(0)
    expect(page.get_by_test_id("delete")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("delete").click()
    expect(page).to_have_url(re.compile(r"/backups/$"))


def test_phone_width_fits_without_horizontal_scrolling(browser: Browser, demo: Demo):
    page = sign_in(browser, demo, width=360, height=740)
    try:
        backup_id = _succeeded(page)
        assert page.evaluate(NO_HORIZONTAL_SCROLL), "the detail page scrolls sideways"
        # nor do its tables (the log, the audit trail) scroll inside their boxes
        assert page.evaluate(
            """[...document.querySelectorAll(".bm-scroll")]
                .every(box => box.scrollWidth <= box.clientWidth)"""
        )
        page.screenshot(path=str(SCREENSHOTS / "ui-detail-360.png"), full_page=True)
        page.goto("/backups/")
        row = page.locator(f'[data-testid="backup-row"][data-backup-id="{backup_id}"]')
        expect(row).to_be_visible()
        assert page.evaluate(NO_HORIZONTAL_SCROLL), "the list scrolls sideways"
        # every part of the row is shown, inside the screen: nothing hidden, nothing clipped
        labels = row.evaluate(
            """row => [...row.querySelectorAll("td[data-label]")]
                .filter(td => td.getBoundingClientRect().width > 0)
                .map(td => getComputedStyle(td, "::before").content)"""
        )
        assert labels == ['"Format: "', '"Copy: "', '"Size: "', '"Created: "', '"Duration: "']
        for name in ("download", "delete", "backup-link", "status"):
            expect(row.get_by_test_id(name)).to_be_in_viewport()
        clipped = row.evaluate(
            """row => [...row.querySelectorAll("th, td, a, button")]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth
                          || e.scrollWidth > e.clientWidth + 1)
                .map(e => e.outerHTML.slice(0, 80))"""
        )
        assert clipped == []
        page.screenshot(path=str(SCREENSHOTS / "ui-list-360.png"), full_page=True)
        page.goto("/backups/new")
        assert page.evaluate(NO_HORIZONTAL_SCROLL), "the create page scrolls sideways"
        page.goto(f"/backups/{backup_id}")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("delete").click()
        expect(page).to_have_url(re.compile(r"/backups/$"))
    finally:
        page.context.close()


def test_a_rows_actions_are_one_tab_stop_each(admin: Page, demo: Demo):
    page = admin
    backup_id = _succeeded(page)
    page.goto("/backups/")
    row = page.locator(f'[data-testid="backup-row"][data-backup-id="{backup_id}"]')
    row.get_by_test_id("backup-link").focus()
    focused = ["Backup " + backup_id]
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.getAttribute('aria-label')"))
    assert focused[:3] == [
        f"Backup {backup_id}",
        f"Download backup {backup_id}",
        f"Delete backup {backup_id}",
    ]
    assert focused[3] != focused[2]  # then the next row (or what follows the list)
    page.keyboard.press("Shift+Tab")  # back on Delete: Enter asks first
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    expect(ours(page)).to_have_text(f"Backup {backup_id} deleted.")
