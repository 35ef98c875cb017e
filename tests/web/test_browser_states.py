"""What the detail page says while the worker is in trouble, in a real browser against the example
shop on PostgreSQL (its web server and worker as separate processes): a table another session
holds locked, and a work horse killed in the middle of a backup. The page polls: no reload.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import os
import re
import signal

import psycopg
from playwright.sync_api import Browser, Page, expect

from ..conftest import process_tree
from .conftest import Demo, sign_in

WAITING = re.compile(
    r"waiting for a lock on orders \(held by pid (\d+), 'idle in transaction' for \d+ s\)"
)


def start_backup(page: Page, format_: str = "postgres") -> str:
    """Create a backup from the create page; the new backup's page opens. Its id."""
    page.goto("/backups/new")
    page.get_by_test_id(f"format-{format_}").check()
    page.get_by_test_id("create-backup").click()
    expect(page).to_have_url(re.compile(r"/backups/\d+$"))
    page.evaluate("window.__same_page = true")
    return page.url.rsplit("/", 1)[1]


def shop_on_postgres(make_demo, pg_url: str) -> Demo:
    return make_demo(DATABASE_URL=pg_url, BACKUP_MANAGER_LOCK_TIMEOUT="600")


def test_lock_wait_shows_its_phase_and_log_line_while_it_waits(
    browser: Browser, make_demo, pg_url: str
):
    demo = shop_on_postgres(make_demo, pg_url)
    page = sign_in(browser, demo)
    try:
        with psycopg.connect(pg_url) as holder:  # LOCK TABLE, then idle in transaction
            holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            start_backup(page)
            detail = page.get_by_test_id("backup-detail")
            phase = detail.locator('[data-field="phase"]')
            expect(phase).to_have_text(WAITING, timeout=30_000)
            assert int(WAITING.fullmatch(phase.inner_text())[1]) == holder.info.backend_pid
            expect(detail.get_by_test_id("status")).to_have_text("running")
            expect(page.get_by_test_id("log")).to_contain_text(WAITING)
            expect(detail.locator('[data-field="eta"]')).to_be_hidden()
            holder.rollback()
        expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
        assert page.evaluate("window.__same_page") is True
        expect(page.get_by_test_id("log")).to_contain_text("verifying the file")
        expect(page.get_by_test_id("log")).to_contain_text("table orders: 1500 rows")
    finally:
        page.context.close()


def test_killed_work_horse_shows_failed_with_its_reason_without_a_reload(
    browser: Browser, make_demo, pg_url: str
):
    demo = shop_on_postgres(make_demo, pg_url)
    page = sign_in(browser, demo)
    try:
        with psycopg.connect(pg_url) as holder:  # the job waits here: surely mid-export
            holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            start_backup(page)
            detail = page.get_by_test_id("backup-detail")
            expect(detail.locator('[data-field="phase"]')).to_have_text(WAITING, timeout=30_000)
            horse = process_tree(demo.worker.pid)[1]  # RQ's work horse, the worker's child
            os.kill(horse, signal.SIGKILL)
            expect(detail).to_have_attribute("data-status", "failed", timeout=30_000)
            holder.rollback()
        assert page.evaluate("window.__same_page") is True
        expect(detail.get_by_test_id("status")).to_have_text("failed")
        reason = "the worker's process died (signal 9) while making the backup"
        expect(detail.locator('[data-field="error"]')).to_have_text(reason)
        expect(page.get_by_test_id("log")).to_contain_text(f"failed: {reason}")
        expect(page.get_by_test_id("download")).to_be_hidden()
        assert demo.worker.poll() is None  # the worker lives on for the next backup
    finally:
        page.context.close()
