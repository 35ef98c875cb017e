"""The Backup Manager's pages in a real browser, against the example shop run as it is deployed:
its web server and one RQ worker as separate processes, sharing a SQLite database and Redis.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
#: Row counts of the example shop's seed (example_app/seed.py).
SEEDED = {
    "users": 1,
    "categories": 8,
    "products": 300,
    "customers": 600,
    "orders": 1500,
    "order_lines": 3694,
}
SCREENSHOTS = Path(os.environ.get("BACKUP_MANAGER_SCREENSHOTS", "/tmp"))


@dataclass
class Demo:
    url: str
    worker: subprocess.Popen
    logs: Path

    def pause_worker(self) -> None:
        """Freeze the worker process: a job enqueued now stays ``queued`` in the database."""
        os.kill(self.worker.pid, signal.SIGSTOP)

    def resume_worker(self) -> None:
        os.kill(self.worker.pid, signal.SIGCONT)

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def demo(tmp_path_factory, redis_url, loopback) -> Iterator[Demo]:
    """The example shop's web server and one worker, on a fresh instance folder and SQLite file."""
    tmp = tmp_path_factory.mktemp("demo")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "EXAMPLE_APP_INSTANCE": str(tmp / "instance"),
        "REDIS_URL": redis_url,
        "BACKUP_MANAGER_QUEUE": f"browser-{uuid.uuid4().hex[:8]}",  # no other test's worker
    }
    flask = [sys.executable, "-m", "flask", "--app", "example_app"]
    seeded = subprocess.run([*flask, "seed"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert seeded.returncode == 0, seeded.stderr

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115  (closed when the process ends)
        try:
            return subprocess.Popen(
                [*flask, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()

    web = start("web", "run", "--host", "127.0.0.1", "--port", str(port), "--no-reload")
    worker = start("worker", "backups", "worker")
    d = Demo(url=f"http://127.0.0.1:{port}", worker=worker, logs=tmp)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert web.poll() is None and worker.poll() is None, f"demo died:\n{d.output()}"
            assert time.monotonic() < deadline, f"the web server did not start:\n{d.output()}"
            try:
                with urllib.request.urlopen(f"{d.url}/login", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        yield d
    finally:
        _stop(worker)
        _stop(web)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `make chromium` "
            "(the browser tests drive Debian's Chromium; Playwright cannot download browsers here)."
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def admin(browser: Browser, demo: Demo) -> Iterator[Page]:
    """A page of a browser session signed in as the demo admin."""
    context = browser.new_context(
        base_url=demo.url, accept_downloads=True, viewport={"width": 1100, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Demo Shop")).to_be_visible()
    yield page
    context.close()


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
        expect(page).to_have_url(re.compile(r"/backups/$"))
        top = page.get_by_test_id("backup-row").first
        expect(top.get_by_test_id("status")).to_have_text("queued")
        expect(top).to_contain_text(format_)
        backup_id = top.get_attribute("data-backup-id")

        top.get_by_role("link", name=f"Details of backup {backup_id}").click()
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
        expect(page).to_have_url(re.compile(r"/backups/$"))
        made.append(page.get_by_test_id("backup-row").first.get_attribute("data-backup-id"))
        page.goto(f"/backups/{made[-1]}")
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
        expect(page).to_have_url(re.compile(r"/backups/$"))
        page.get_by_test_id("backup-row").first.get_by_role(
            "link", name=re.compile("^Details")
        ).click()
        detail = page.get_by_test_id("backup-detail")
        expect(detail).to_have_attribute("data-status", "queued")
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
