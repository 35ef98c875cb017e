"""Helpers of the S3 web tests (test_s3_web.py): the host app on a bucket of moto's real S3
server, the big host databases that make several parts, and the worker's process tree."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..conftest import ROOT, process_tree

API = "/backups/api"
MiB = 1024 * 1024
PREFIX = "backups"
FLASK = [sys.executable, "-m", "flask", "--app", "tests.hostapp:create_app", "backups"]


def on_s3(host_env, monkeypatch, server, bucket: str, work: Path, **options) -> dict:
    """The config of a host app whose backups live in ``s3://BUCKET/backups`` on ``server``,
    built in ``work``; ``BACKUP_MANAGER_STORAGE_DIR`` unset (with STORAGE_URL it is an error)."""
    host_env["HOSTAPP_STORAGE_DIR"] = ""
    monkeypatch.setenv("HOSTAPP_STORAGE_DIR", "")
    return {
        "BACKUP_MANAGER_STORAGE_URL": f"s3://{bucket}/{PREFIX}",
        "BACKUP_MANAGER_S3_OPTIONS": {"endpoint_url": server.endpoint_url, **options},
        "BACKUP_MANAGER_WORK_DIR": str(work),
    }


def add_random_notes(db: Path, megabytes: int) -> None:
    """Orders whose notes are random hex (incompressible as a file: the sqlite3_db file grows
    by about as much as they hold)."""
    rows = megabytes * MiB // 200
    con = sqlite3.connect(db)
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO orders (customer_id, total, note) SELECT 1, 2, hex(randomblob(100))"
        " FROM n",
        (rows,),
    )
    con.commit()
    con.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str, **headers: str):
    """GET ``url`` with urllib (as a browser following the redirect would): status, headers,
    body."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
        return r.status, r.headers, r.read()


def keys(client, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(client, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def files_in(directory: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))
        if directory.is_dir()
        else []
    )


def wait_for(
    predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, pause: float = 0.1
):
    """Poll ``predicate`` until it answers something true (that answer), at most ``timeout``
    seconds; a worker ``proc`` that dies meanwhile fails at once, with its stderr."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the worker died waiting for {what}: {proc.stderr.read().decode()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)


def signal_tree(proc: subprocess.Popen, sig: int) -> list[int]:
    """Send ``sig`` to the process groups of the worker and its work horse (started under
    setsid: none of them is the test's); the pids of the tree."""
    tree = process_tree(proc.pid)
    groups = {os.getpgid(pid) for pid in tree}
    assert os.getpgrp() not in groups
    for group in groups:
        os.killpg(group, sig)
    return tree


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and its work horse (:func:`signal_tree`) and wait until all are gone."""
    tree = signal_tree(proc, signal.SIGKILL)
    proc.wait()
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in tree),
        timeout=60,
        what="the worker's processes to die",
    )


def freeze(proc: subprocess.Popen) -> list[int]:
    return signal_tree(proc, signal.SIGSTOP)


def flask_cli(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FLASK, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
