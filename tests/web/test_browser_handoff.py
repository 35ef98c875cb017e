"""The whole hand-off of issue 14 ("Done when"), as new users of both sides do it, against the
example shop run as it is deployed: the vendor makes a key pair with ``keygen``; the shop is
started with its public key; the shop's admin makes a redacted, encrypted copy in a real
browser and a one-download link to it; the vendor, in a browser without the shop's session,
opens the link, downloads the file and restores it with the command the page shows; the link
is then dead.

Needs Debian's Chromium (``make chromium``) and, for the ``sqlite3_db`` format whose page
shows ``age -d``, Debian's ``age``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from example_app import VENDOR
from flask_backup_manager.engine import parse_recipient
from flask_backup_manager.engine.redaction import FIRST_NAMES, LAST_NAMES

from .conftest import SCREENSHOTS, SEEDED, Demo, sign_in

LABEL = "Acme support"
AGE_MAGIC = b"age-encryption.org/v1\n"
#: the password hash every user of a vendor copy has (the profile's ``fixed:`` rule)
VENDOR_HASH = VENDOR["users.password_hash"].removeprefix("fixed:")


def vendor_keygen(folder: Path) -> tuple[Path, str]:
    """The vendor's key pair, made as the README says: the secret key's file, and the public
    key taken from what the command printed."""
    made = subprocess.run(
        [sys.executable, "-m", "flask_backup_manager", "keygen", "-o", "vendor.key"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    printed = re.search(r"BACKUP_MANAGER_RECIPIENTS: (age1[0-9a-z]+)$", made.stdout, re.M)
    assert printed, made.stdout
    assert "AGE-SECRET-KEY" not in made.stdout + made.stderr  # the secret went to the file only
    return folder / "vendor.key", printed[1]


def restore(shown: str, fmt: str, saved: Path, key: Path, copy: Path) -> None:
    """Run the link page's restore command as the vendor pastes it: its file, key file and
    target replaced by the vendor's own (``python`` is the vendor's interpreter)."""
    argv = shlex.split(shown)
    name = saved.name
    # python -m flask_backup_manager restore FILE.age --identity vendor.key --target URL
    assert argv[:4] == ["python", "-m", "flask_backup_manager", "restore"], shown
    target = argv[argv.index("--target") + 1]
    argv = [sys.executable] + [
        str(key) if a == "vendor.key" else f"sqlite:///{copy}" if a == target else a
        for a in argv[1:]
    ]
    assert name in argv, argv
    argv[argv.index(name)] = str(saved)
    done = subprocess.run(argv, cwd=saved.parent, capture_output=True, text=True)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"


def row_counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [
            n
            for (n,) in con.execute(
                "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'"
            )
        ]
        return {n: con.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}
    finally:
        con.close()


def people(db: Path) -> dict[int, tuple[str, str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {i: (n, e) for i, n, e in con.execute("select id, name, email from customers")}
    finally:
        con.close()


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db"])
def test_vendor_gets_a_redacted_encrypted_copy_through_a_one_download_link_and_restores_it(
    browser: Browser, make_demo, tmp_path: Path, fmt: str
):
    # 1. The vendor, once: a key pair.
    vendor_dir = tmp_path / "vendor"
    vendor_dir.mkdir()
    key, public = vendor_keygen(vendor_dir)
    fingerprint = parse_recipient(public).fingerprint
    assert fingerprint.startswith("SHA256:")

    # 2. The shop, shipped with the vendor's public key.
    demo: Demo = make_demo(BACKUP_MANAGER_RECIPIENTS=json.dumps([{"label": LABEL, "key": public}]))
    shop_db = Path(demo.env["EXAMPLE_APP_INSTANCE"]) / "shop.sqlite3"

    # 3. The admin makes the copy: the vendor profile, encrypted (ticked by default).
    page = sign_in(browser, demo)
    try:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        page.get_by_role("link", name="Backups").first.click()
        page.get_by_role("link", name="New backup").click()
        expect(page).to_have_url(re.compile(r"/backups/new$"))
        encrypt = page.get_by_role("checkbox", name=re.compile(rf"^Encrypt for {LABEL}\b"))
        expect(encrypt).to_be_visible()
        expect(encrypt).to_be_checked()
        expect(page.get_by_test_id("encryption")).to_contain_text(f"Encrypt for {LABEL}")
        page.get_by_test_id("redaction-vendor").check()
        page.get_by_test_id(f"format-{fmt}").check()
        page.screenshot(path=str(SCREENSHOTS / f"ui-handoff-new-{fmt}.png"), full_page=True)
        page.get_by_role("button", name="Create backup").click()

        # 4. Its page: succeeded, encrypted for the vendor's key, an .age file.
        expect(page).to_have_url(re.compile(r"/backups/\d+$"))
        detail = page.get_by_test_id("backup-detail")
        expect(detail).to_have_attribute("data-status", "succeeded", timeout=60_000)
        expect(detail.get_by_test_id("status")).to_have_text("succeeded")
        for_whom = page.get_by_test_id("encrypted-for")
        expect(for_whom).to_contain_text(f"{LABEL} {fingerprint}")
        expect(for_whom).to_contain_text(re.compile(r"SHA256:[A-Za-z0-9+/]{43}"))
        filename = detail.locator('[data-field="filename"]')
        expect(filename).to_have_text(re.compile(r"\.age$"))
        expect(detail.locator('[data-field="redaction"]')).to_have_text("vendor")
        name = filename.inner_text()
        sha256 = page.get_by_test_id("sha256").inner_text()

        page.get_by_test_id("link-max").fill("1")
        page.get_by_test_id("link-note").fill("ticket #4711")
        page.get_by_role("button", name="Create link").click()
        expect(page.get_by_test_id("new-link-url")).to_have_value(
            re.compile(rf"^{re.escape(demo.url)}/backups/l/[A-Za-z0-9_-]{{43}}$")
        )
        page.get_by_role("button", name="Copy").click()
        expect(page.get_by_test_id("copied")).to_be_visible()
        url = page.evaluate("navigator.clipboard.readText()")  # what goes into the ticket
        assert url == page.get_by_test_id("new-link-url").input_value()
        row = page.get_by_test_id("link-row")
        expect(row).to_contain_text("ticket #4711")
        expect(row.locator('[data-field="downloads"]')).to_have_text("0 of 1")
        page.screenshot(path=str(SCREENSHOTS / f"ui-handoff-detail-{fmt}.png"), full_page=True)
    finally:
        page.context.close()

    # 5. The vendor opens the link with no session of the shop's and downloads the file.
    saved = vendor_dir / name
    vendor = browser.new_context(accept_downloads=True)
    try:
        visit = vendor.new_page()
        visit.set_default_timeout(15_000)
        answer = visit.goto(url)
        assert answer is not None and answer.status == 200
        expect(visit.get_by_test_id("link-filename")).to_have_text(name)
        expect(visit.get_by_test_id("link-sha256")).to_have_text(sha256)
        expect(visit.get_by_test_id("link-format")).to_have_text(fmt)
        manifest = visit.get_by_test_id("link-manifest")
        expect(manifest.locator('[data-field="app_name"]')).to_have_text("shop")
        expect(manifest.locator('[data-field="redaction"]')).to_have_text("vendor")
        rows = sum(SEEDED.values())
        expect(manifest.locator('[data-field="tables"]')).to_contain_text(f"{rows:,} rows")
        shown = visit.get_by_test_id("link-restore")
        expect(shown).to_contain_text("--identity vendor.key")
        expect(visit.get_by_test_id("encrypted-for")).to_contain_text(f"{LABEL} {fingerprint}")
        expect(visit.get_by_test_id("link-key-help")).to_contain_text("keygen -o vendor.key")
        expect(shown).to_contain_text(name)
        command = shown.inner_text().splitlines()[0]
        visit.screenshot(path=str(SCREENSHOTS / f"ui-handoff-link-{fmt}.png"), full_page=True)
        with visit.expect_download() as info:
            visit.get_by_role("link", name="Download").click()
        assert info.value.suggested_filename == name
        info.value.save_as(saved)
    finally:
        vendor.close()
    data = saved.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha256
    assert data.startswith(AGE_MAGIC)
    assert not data.startswith(b"\x1f\x8b") and b"SQLite format 3\x00" not in data

    # 6. The vendor restores it with the page's command, into a new SQLite file.
    copy = tmp_path / "copy.db"
    restore(command, fmt, saved, key, copy)
    shop, restored = row_counts(shop_db), row_counts(copy)
    assert set(restored) == set(shop)  # every table of the shop, the Backup Manager's too
    own = {t for t in shop if t.startswith("backup_manager_")}
    assert own and all(restored[t] == 0 for t in own)  # its history never travels
    assert {t: restored[t] for t in SEEDED} == {t: shop[t] for t in SEEDED} == SEEDED
    before, after = people(shop_db), people(copy)
    assert before.keys() == after.keys()
    assert all(after[i][0] != before[i][0] and after[i][1] != before[i][1] for i in before)
    # pseudonyms from the rule's own lists (one may match another customer's real name)
    assert all(
        n.split(" ")[0] in FIRST_NAMES and n.split(" ")[1] in LAST_NAMES for n, _ in after.values()
    )
    con = sqlite3.connect(copy)
    try:
        assert con.execute("select distinct password_hash from users").fetchall() == [
            (VENDOR_HASH,)
        ]
    finally:
        con.close()

    # 7. Used up: to anyone else the link is dead.
    other = browser.new_context()
    try:
        visit = other.new_page()
        answer = visit.goto(url)
        assert answer is not None and answer.status == 404
        expect(visit.get_by_test_id("link-gone")).to_be_visible()
    finally:
        other.close()
