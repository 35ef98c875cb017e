"""A copy that is safe to send, as an admin of the example shop makes one in a real browser: the
create page offers the shop's ``vendor`` profile and warns about the column it leaves as it is,
the backup is made with it, the detail page names the profile and summarises the manifest, and
the downloaded file carries no seeded customer's e-mail, name or address, but every row.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import gzip
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from werkzeug.security import check_password_hash

from example_app.seed import contact

from .conftest import SCREENSHOTS, SEEDED, sign_in

#: the first seeded customer (example_app/seed.py): what must not reach the vendor
EMAIL = "customer1@example.com"
NAME = "François Rossi"
ADDRESS = contact(1)["address"]
PHONE = contact(1)["phone"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_admin_makes_a_vendor_copy_without_the_customers_personal_data(
    browser: Browser, make_demo, tmp_path: Path, request, database
):
    """On the shop's SQLite file and on PostgreSQL (the rules then run in the server's own
    query), the same copy: the sqlite3 format, loaded here."""
    env = {"DATABASE_URL": request.getfixturevalue("pg_url")} if database == "postgresql" else {}
    demo = make_demo(**env)
    page = sign_in(browser, demo)
    try:
        page.goto("/backups/new")
        choices = page.get_by_test_id("redaction-choices")
        expect(choices).to_contain_text("Full copy")
        expect(choices).to_contain_text("every personal datum")
        expect(page.get_by_test_id("redaction-full")).to_be_checked()
        # The guard: the one personal-looking column the profile leaves as it is.
        expect(page.get_by_test_id("unredacted-vendor")).to_have_text(
            re.compile(r"Not redacted:\s+customers\.phone$")
        )
        expect(page.get_by_test_id("summary-vendor")).to_contain_text("redacted")
        page.screenshot(path=str(SCREENSHOTS / f"ui-new-redaction-{database}.png"), full_page=True)

        page.get_by_test_id("format-sqlite3").check()
        page.get_by_test_id("redaction-vendor").check()
        page.get_by_test_id("create-backup").click()
        expect(page).to_have_url(re.compile(r"/backups/\d+$"))
        backup_id = page.url.rsplit("/", 1)[1]
        detail = page.get_by_test_id("backup-detail")
        expect(detail.locator('[data-field="redaction"]')).to_have_text("vendor")

        # The page follows the job and fills in the manifest's summary by itself.
        expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
        manifest = page.get_by_test_id("manifest")
        expect(manifest).to_be_visible()
        expect(manifest.locator('[data-field="app_name"]')).to_have_text("shop")
        rows = sum(SEEDED.values())
        expect(manifest.locator('[data-field="tables"]')).to_contain_text(f"{rows:,} rows")
        expect(manifest.locator('[data-field="redaction"]')).to_have_text("vendor")
        expect(manifest.locator('[data-field="rules"]')).to_contain_text("customers.email: email")
        expect(manifest.locator('[data-field="verification"]')).to_contain_text(
            f"{rows:,} rows match"
        )
        expect(page.get_by_test_id("log")).to_contain_text("verified:")
        page.screenshot(
            path=str(SCREENSHOTS / f"ui-detail-redaction-{database}.png"), full_page=True
        )

        # The summary is the page's own after a reload too, and the list names the profile.
        page.reload()
        expect(manifest.locator('[data-field="tables"]')).to_contain_text(f"{rows:,} rows")
        page.set_viewport_size({"width": 360, "height": 800})  # a phone: the long rules wrap
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.set_viewport_size({"width": 1100, "height": 900})
        link = page.get_by_test_id("manifest-link")
        assert link.get_attribute("href") == f"/backups/api/backups/{backup_id}/manifest"
        served = page.request.get(link.get_attribute("href"))
        assert served.ok and served.headers["cache-control"] == "no-store"
        assert served.json()["redaction"]["profile"] == "vendor"
        assert {k: served.json()["tables"][k] for k in SEEDED} == SEEDED

        with page.expect_download() as download_info:
            page.get_by_test_id("download").click()
        saved = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(saved)

        page.goto("/backups/")
        row = page.locator(f'[data-testid="backup-row"][data-backup-id="{backup_id}"]')
        expect(row.locator('[data-field="redaction"]')).to_have_text("vendor")
    finally:
        page.context.close()

    text = gzip.decompress(saved.read_bytes()).decode()
    for secret in (EMAIL, NAME, ADDRESS, "customer42@example.com"):
        assert secret not in text, secret
    assert PHONE in text  # uncovered: the guard said so
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(text)
        for table, n in SEEDED.items():
            assert con.execute(f"select count(*) from {table}").fetchone() == (n,), table
        email, address = con.execute("select email, address from customers where id = 1").fetchone()
        assert re.fullmatch(r"u-[0-9a-f]{16}@example\.invalid", email)
        assert address == "1 Example Street, 00000 Nowhere"
        assert con.execute("select count(distinct email) from customers").fetchone() == (600,)
        # Every password is the profile's 'vendor': the vendor signs in to the copy as admin.
        (password_hash,) = con.execute("select password_hash from users").fetchone()
        assert check_password_hash(password_hash, "vendor")
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()
    lines = text.splitlines()
    head = "\n".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("--"))])
    assert '"profile": "vendor"' in head  # the file says what it is, at its head


def test_with_redaction_required_the_create_page_offers_only_the_profiles(
    browser: Browser, make_demo
):
    demo = make_demo(workers=0, BACKUP_MANAGER_REQUIRE_REDACTION="true")
    page = sign_in(browser, demo)
    try:
        page.goto("/backups/new")
        expect(page.get_by_test_id("redaction-full")).to_have_count(0)
        expect(page.get_by_test_id("redaction-choices")).not_to_contain_text("Full copy")
        expect(page.get_by_test_id("redaction-vendor")).to_be_checked()
        expect(page.get_by_test_id("unredacted-vendor")).to_contain_text("customers.phone")
    finally:
        page.context.close()
