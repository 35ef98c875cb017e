"""Fixtures of the web tests that run the example shop as it is deployed (its web server and
RQ workers as separate processes) and drive it with a real browser.

Needs Debian's Chromium (``make chromium``); Playwright cannot download browsers here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ..conftest import _close_app, _make_app

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
    """The example shop, running: its web server at ``url`` and its workers."""

    url: str
    env: dict[str, str]
    logs: Path
    workers: list[subprocess.Popen] = field(default_factory=list)
    web: subprocess.Popen | None = None

    @property
    def worker(self) -> subprocess.Popen:
        return self.workers[0]

    def flask(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "flask", "--app", "example_app", *args]

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """Run ``flask --app example_app ARGS`` with the shop's environment, logging to
        ``logs/NAME.log``."""
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115  (closed when it ends)
        try:
            return subprocess.Popen(
                self.flask(*args), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()

    def start_worker(self) -> subprocess.Popen:
        self.workers.append(self.start(f"worker{len(self.workers)}", "backups", "worker"))
        return self.workers[-1]

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


def start_demo(tmp: Path, redis_url: str, workers: int = 1, **env: str) -> Demo:
    """Seed a fresh instance of the example shop in ``tmp`` and start its web server and
    ``workers`` workers on a queue of its own; ``env`` adds environment variables (any
    ``BACKUP_MANAGER_*`` key, ``DATABASE_URL``, ``REDIS_URL``...). Stop it with
    :func:`stop_demo`."""
    demo = Demo(
        url=f"http://127.0.0.1:{_free_port()}",
        logs=tmp,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "EXAMPLE_APP_INSTANCE": str(tmp / "instance"),
            "REDIS_URL": redis_url,
            "BACKUP_MANAGER_QUEUE": f"browser-{uuid.uuid4().hex[:8]}",  # no other test's worker
            **env,
        },
    )
    seeded = subprocess.run(
        demo.flask("seed"), cwd=ROOT, env=demo.env, capture_output=True, text=True
    )
    assert seeded.returncode == 0, seeded.stderr
    port = demo.url.rsplit(":", 1)[1]
    web = demo.web = demo.start("web", "run", "--host", "127.0.0.1", "--port", port, "--no-reload")
    for _ in range(workers):
        demo.start_worker()
    try:
        deadline = time.monotonic() + 60
        while True:
            alive = web.poll() is None and all(w.poll() is None for w in demo.workers)
            assert alive, f"demo died:\n{demo.output()}"
            assert time.monotonic() < deadline, f"the web server did not start:\n{demo.output()}"
            try:
                with urllib.request.urlopen(f"{demo.url}/login", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
    except BaseException:
        stop_demo(demo)
        raise
    return demo


def stop_demo(demo: Demo) -> None:
    for w in demo.workers:
        _stop(w)
    if demo.web is not None:
        _stop(demo.web)


@pytest.fixture(scope="session")
def demo(tmp_path_factory, redis_url, loopback) -> Iterator[Demo]:
    """The example shop's web server and one worker, on a fresh instance folder and SQLite
    file, shared by the tests of a session (each makes backups of its own)."""
    d = start_demo(tmp_path_factory.mktemp("demo"), redis_url)
    yield d
    stop_demo(d)


@pytest.fixture
def make_demo(tmp_path_factory, redis_url, loopback) -> Iterator:
    """Start a demo of a test's own: ``make_demo(workers=0, BACKUP_MANAGER_HEARTBEAT="2")``;
    stopped when the test ends."""
    made: list[Demo] = []

    def make(workers: int = 1, **env: str) -> Demo:
        made.append(start_demo(tmp_path_factory.mktemp("demo"), redis_url, workers, **env))
        return made[-1]

    yield make
    for d in made:
        stop_demo(d)


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


def sign_in(browser: Browser, demo: Demo, width: int = 1100, height: int = 900) -> Page:
    """A page of a new browser session signed in as the demo admin, ``width`` pixels wide
    (close it with ``page.context.close()``)."""
    context = browser.new_context(
        base_url=demo.url, accept_downloads=True, viewport={"width": width, "height": height}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Demo Shop")).to_be_visible()
    return page


@pytest.fixture
def admin(browser: Browser, demo: Demo) -> Iterator[Page]:
    """A page of a browser session signed in as the demo admin."""
    page = sign_in(browser, demo)
    yield page
    page.context.close()


def apps_on(url: str, host_env: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """For a fixture: a factory of host apps (tests/hostapp.py) on the PostgreSQL database
    ``url``, each with extra config; closes them after the test."""
    made = []

    def make(**config):
        psycopg_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        env = {"HOSTAPP_DATABASE_URL": psycopg_url, "HOSTAPP_CONFIG": json.dumps(config)}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
            host_env[key] = value
        made.append(_make_app())
        return made[-1]

    yield make
    for app in made:
        _close_app(app)
