"""Reviewer attacks on the pages of issue 12 in a real browser: a hostile customer's table names
reach the phase, the log, the failure reason and its hover text, and a forged format the flash
message; none of it may run as script or load anything. The example shop on PostgreSQL, its
web server and worker as separate processes.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import re

import psycopg
from playwright.sync_api import Browser, Page, expect
from psycopg import sql

from .conftest import sign_in

#: a table name (at most 63 bytes) that runs script and loads /pwned if shown as HTML
PAYLOAD = '<img src="/pwned" onerror="window.pwned=1">'


def no_payload_ran(page: Page, requests: list[str]) -> None:
    assert page.evaluate("window.pwned") is None, "the payload ran as script"
    assert not [u for u in requests if "pwned" in u], requests


def test_a_table_named_as_html_is_shown_as_text_in_phase_log_reason_and_flash(
    browser: Browser, make_demo, pg_url: str
):
    demo = make_demo(DATABASE_URL=pg_url, BACKUP_MANAGER_LOCK_TIMEOUT="20")
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(PAYLOAD)))
    page = sign_in(browser, demo)
    requests: list[str] = []
    page.context.on("request", lambda r: requests.append(r.url))
    try:
        with psycopg.connect(pg_url) as holder:  # the job waits for this lock, then gives up
            holder.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(PAYLOAD))
            )
            page.goto("/backups/new")
            page.get_by_test_id("format-postgres").check()
            page.get_by_test_id("create-backup").click()
            expect(page).to_have_url(re.compile(r"/backups/\d+$"))
            detail = page.get_by_test_id("backup-detail")
            # written by the page's script from the API while the job waits
            phase = detail.locator('[data-field="phase"]')
            expect(phase).to_contain_text(f"waiting for a lock on {PAYLOAD}", timeout=30_000)
            expect(page.get_by_test_id("log")).to_contain_text(f"waiting for a lock on {PAYLOAD}")
            expect(detail).to_have_attribute("data-status", "failed", timeout=60_000)
            expect(detail.locator('[data-field="error"]')).to_contain_text(PAYLOAD)
            no_payload_ran(page, requests)
            holder.rollback()

        # the list: the reason on the second line and as the badge's hover text
        page.goto("/backups/")
        row = page.get_by_test_id("backup-row").first
        expect(row.locator('[data-field="error"]')).to_contain_text(PAYLOAD)
        assert PAYLOAD in (row.get_by_test_id("status").get_attribute("title") or "")
        no_payload_ran(page, requests)

        # the server-rendered detail page and its log, then Try again: the table's log line
        row.get_by_test_id("backup-link").click()
        expect(page.get_by_test_id("log")).to_contain_text(f"waiting for a lock on {PAYLOAD}")
        no_payload_ran(page, requests)
        page.get_by_test_id("retry").click()
        detail = page.get_by_test_id("backup-detail")
        expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
        expect(page.get_by_test_id("log")).to_contain_text(f"table {PAYLOAD}: 0 rows")
        no_payload_ran(page, requests)
        page.reload()
        expect(page.get_by_test_id("log")).to_contain_text(f"table {PAYLOAD}: 0 rows")
        no_payload_ran(page, requests)

        # a forged format comes back in the refusal's flash message, as text
        page.goto("/backups/new")
        page.evaluate(
            "v => { const r = document.querySelector('[data-testid=format-postgres]');"
            " r.value = v; r.checked = true; }",
            PAYLOAD,
        )
        page.get_by_test_id("create-backup").click()
        flash = page.locator('.bm [data-testid="flash"]')
        expect(flash).to_contain_text("Unknown format")
        expect(flash).to_contain_text("<img src=")
        no_payload_ran(page, requests)
    finally:
        page.context.close()


def test_a_download_click_on_a_file_damaged_or_gone_since_says_why_on_a_page(admin: Page, demo):
    """The list checks a file by a stat only, and any page may be older than the file's fate:
    its Download stays. A click must then explain, not fail in the download bar (a link with
    the `download` attribute is fetched as a download, never shown as a page)."""
    from pathlib import Path

    page = admin
    page.goto("/backups/new")
    page.get_by_test_id("format-sqlite3").check()
    page.get_by_test_id("create-backup").click()
    detail = page.get_by_test_id("backup-detail")
    expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
    backup_id = detail.get_attribute("data-backup-id")
    name = page.locator('[data-field="filename"]').inner_text()
    path = Path(demo.env["EXAMPLE_APP_INSTANCE"], "backups", name)

    # a good file still downloads from the list, and the page stays
    page.goto("/backups/")
    row = page.locator(f'[data-testid="backup-row"][data-backup-id="{backup_id}"]')
    with page.expect_download() as got:
        row.get_by_test_id("download").click()
    assert got.value.failure() is None and got.value.suggested_filename == name
    expect(page).to_have_url(re.compile(r"/backups/$"))

    # one byte flipped, the size unchanged: the list's stat sees nothing wrong
    good = path.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    page.reload()
    row.get_by_test_id("download").click()
    expect(page.get_by_test_id("error-page")).to_contain_text(
        "no longer matches its sha256", timeout=15_000
    )
    expect(page.get_by_test_id("error-advice")).to_contain_text("delete this backup")

    # the detail page, loaded before the file went
    path.write_bytes(good)
    page.goto(f"/backups/{backup_id}")
    path.unlink()  # reloaded, the page would say so; this one does not know
    page.get_by_test_id("download").click()
    expect(page.get_by_test_id("error-page")).to_contain_text("missing from storage")


def test_a_running_backups_elapsed_time_is_the_servers_whatever_the_browsers_clock(
    browser: Browser, make_demo, pg_url: str
):
    """A browser whose clock is an hour off (a VM, a dual-boot machine keeping local time in
    its hardware clock) showed "1 h 00 min elapsed" for a backup four seconds in."""
    from datetime import datetime, timedelta, timezone

    demo = make_demo(DATABASE_URL=pg_url, BACKUP_MANAGER_LOCK_TIMEOUT="600")
    page = sign_in(browser, demo)
    page.clock.set_system_time(datetime.now(timezone.utc) + timedelta(hours=1))
    try:
        with psycopg.connect(pg_url) as holder:  # the job waits here: running, for a while
            holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            page.goto("/backups/new")
            page.get_by_test_id("format-postgres").check()
            page.get_by_test_id("create-backup").click()
            detail = page.get_by_test_id("backup-detail")
            expect(detail.locator('[data-field="phase"]')).to_contain_text(
                "waiting for a lock on orders", timeout=30_000
            )
            elapsed = detail.locator('[data-field="elapsed"]')
            for _ in range(3):  # the page's script rewrites it each second
                shown = elapsed.inner_text()
                assert re.fullmatch(r"· [1-5]?[0-9]\.[0-9] s elapsed", shown.strip()), shown
                expect(elapsed).not_to_have_text(shown)
            holder.rollback()
        expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
    finally:
        page.context.close()


def test_a_long_table_name_in_the_phase_or_the_reason_fits_a_phone(
    browser: Browser, make_demo, pg_url: str
):
    """A name of 63 letters without a space, in "waiting for a lock on ..." and in the failure
    reason, made the detail page 600 px wide at 360 px: it wraps instead."""
    name = "x" * 63
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    demo = make_demo(DATABASE_URL=pg_url, BACKUP_MANAGER_LOCK_TIMEOUT="20")
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(name)))
    page = sign_in(browser, demo, width=360, height=740)
    try:
        with psycopg.connect(pg_url) as holder:
            holder.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(name))
            )
            page.goto("/backups/new")
            page.get_by_test_id("format-postgres").check()
            page.get_by_test_id("create-backup").click()
            detail = page.get_by_test_id("backup-detail")
            phase = detail.locator('[data-field="phase"]')
            expect(phase).to_contain_text(f"waiting for a lock on {name}", timeout=30_000)
            assert page.evaluate(fits), page.evaluate("document.documentElement.scrollWidth")
            expect(detail).to_have_attribute("data-status", "failed", timeout=60_000)
            expect(detail.locator('[data-field="error"]')).to_contain_text(name)
            assert page.evaluate(fits), page.evaluate("document.documentElement.scrollWidth")
            holder.rollback()
        page.reload()  # as the server renders it
        assert page.evaluate(fits), page.evaluate("document.documentElement.scrollWidth")
    finally:
        page.context.close()
