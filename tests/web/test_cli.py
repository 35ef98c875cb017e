"""``flask backups ...`` through Flask's test runner."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path


def test_create_list_show_download_delete(app, runner, run_worker, tmp_path):
    result = runner.invoke(args=["backups", "create", "--format", "sqlite3_db"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Backup 1 queued (sqlite3_db)."
    assert "Warning: No worker is listening on queue" in result.stderr  # none runs yet
    run_worker()

    listing = runner.invoke(args=["backups", "list"])
    assert listing.exit_code == 0
    row = listing.output.splitlines()[1].split()
    assert row[:3] == ["1", "sqlite3_db", "succeeded"]
    assert listing.output.splitlines()[-1] == "1 backup, page 1 of 1"

    shown = runner.invoke(args=["backups", "show", "1"])
    assert "status: succeeded" in shown.output
    assert "table customers: 50 rows" in shown.output
    assert re.search(r"^progress: (\d+) of \1 tables, 200 of 200 rows$", shown.output, re.M)

    target = tmp_path / "copy.sqlite3"
    downloaded = runner.invoke(args=["backups", "download", "1", "-o", str(target)])
    assert downloaded.exit_code == 0, downloaded.output
    con = sqlite3.connect(target)
    try:
        assert con.execute("select count(*) from customers").fetchone() == (50,)
    finally:
        con.close()

    deleted = runner.invoke(args=["backups", "delete", "1"])
    assert deleted.exit_code == 0
    assert runner.invoke(args=["backups", "list"]).output.strip() == "No backups."


def test_create_with_unknown_format_is_a_one_line_error(runner):
    result = runner.invoke(args=["backups", "create", "--format", "zip"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: Unknown format 'zip'")


def test_show_unknown_id_is_an_error(runner):
    result = runner.invoke(args=["backups", "show", "42"])
    assert result.exit_code == 1
    assert "No such backup" in result.output


def test_download_of_unfinished_backup_is_refused(runner):
    runner.invoke(args=["backups", "create", "--format", "sqlite3"])
    result = runner.invoke(args=["backups", "download", "1"])
    assert result.exit_code == 1
    assert "Backup 1 is still queued: it has no file to download." in result.output


def test_create_wait_follows_the_backup_until_a_worker_finishes_it(app, runner, worker):
    import time

    from flask_backup_manager import service

    worker()
    deadline = time.monotonic() + 60
    with app.app_context():
        while service.worker_warning():  # until the worker has registered
            assert time.monotonic() < deadline, service.worker_warning()
            time.sleep(0.2)
    result = runner.invoke(args=["backups", "create", "--format", "sqlite3", "--wait"])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr  # a worker listens
    lines = result.stdout.splitlines()
    assert lines[0] == "Backup 1 queued (sqlite3)."
    assert lines[-2] == "Backup 1 succeeded."
    assert lines[-1].startswith("hostapp-") and " sha256 " in lines[-1]


def test_cancel_from_the_command_line(runner):
    runner.invoke(args=["backups", "create", "--format", "sqlite3"])
    result = runner.invoke(args=["backups", "cancel", "1"])
    assert result.exit_code == 0 and result.output.strip() == "Backup 1 cancelled."
    again = runner.invoke(args=["backups", "cancel", "1"])
    assert again.exit_code == 1 and re.search(r"already (been )?cancelled", again.output)


def test_the_standalone_command_never_prints_a_control_character_of_the_database(tmp_path):
    """Warnings and errors of ``python -m flask_backup_manager`` name customer objects: an
    ESC or C1 sequence in a name reaches the terminal escaped, never raw."""
    import subprocess
    import sys

    db = tmp_path / "src.db"
    name = "v\x1b]0;pwned\x07\x1b[2J\x9b1m"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.execute(f'CREATE VIEW "{name}" AS SELECT app_only(x) FROM t')
    con.commit()
    con.close()

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "flask_backup_manager", "export", "--source"]
        return subprocess.run([*cmd, f"sqlite:///{db}", *args], capture_output=True)

    warned = run("--format", "sqlite3_db", "--output", str(tmp_path / "out.db"))
    assert warned.returncode == 0, warned.stderr
    assert b"app_only" in warned.stderr  # the warning is there...
    refused = run("--format", "sqlite3", "--output", str(tmp_path / "o"), "--include", name)
    assert refused.returncode == 1 and b"no such table" in refused.stderr
    for out in (warned, refused):  # ...and neither it nor the error holds a control byte
        text = out.stderr.decode()
        assert not any(ord(c) < 32 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in text)


def test_the_cli_download_is_audited_where_the_api_downloads_are(app, runner, run_worker, tmp_path):
    from flask_backup_manager import service

    assert runner.invoke(args=["backups", "create", "--format", "sqlite3"]).exit_code == 0
    run_worker()
    result = runner.invoke(args=["backups", "download", "1", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        backup = service.get_backup(1)
        trail = service.audit_trail(1)
        assert (tmp_path / backup.filename).read_bytes() == service.file_path(backup).read_bytes()
    assert [(a["action"], a["detail"]) for a in trail] == [
        ("create", "sqlite3"),
        ("download", "cli"),
    ]
    assert trail[-1]["actor"] == trail[0]["actor"] and trail[-1]["actor"].startswith("cli:")


def test_the_cli_refuses_a_tampered_file_and_leaves_no_output(app, runner, run_worker, tmp_path):
    from flask_backup_manager import service

    assert runner.invoke(args=["backups", "create", "--format", "sqlite3_db"]).exit_code == 0
    run_worker()
    with app.app_context():
        stored = service.file_path(service.get_backup(1))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    stored.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    into_dir = runner.invoke(args=["backups", "download", "1", "-o", str(out)])
    kept = out / "kept.db"
    kept.write_bytes(b"the user's own file")
    onto_file = runner.invoke(args=["backups", "download", "1", "-o", str(kept), "--force"])
    for result in (into_dir, onto_file):
        assert result.exit_code == 1
        assert result.output.strip().splitlines() == [
            "Error: The file of backup 1 no longer matches its sha256: not copied."
        ]
    assert [p.name for p in out.iterdir()] == ["kept.db"]  # no copy, no part file
    assert kept.read_bytes() == b"the user's own file"
    with app.app_context():
        assert [a["action"] for a in service.audit_trail(1)] == ["create"]


def test_list_says_how_many_backups_and_pages(make_app):
    app = make_app(BACKUP_MANAGER_PER_PAGE=2)
    runner = app.test_cli_runner()
    for _ in range(3):
        assert runner.invoke(args=["backups", "create", "--format", "sqlite3"]).exit_code == 0
    listed = runner.invoke(args=["backups", "list"])
    first = listed.stdout.splitlines()
    assert [line.split()[0] for line in first[1:-1]] == ["3", "2"]
    assert first[-1] == "3 backups, page 1 of 2"
    assert listed.stderr.startswith("Warning: No worker is listening on queue ")  # all queued
    assert runner.invoke(args=["backups", "list", "--page", "2"]).stdout.splitlines()[-1] == (
        "3 backups, page 2 of 2"
    )
    past = runner.invoke(args=["backups", "list", "--page", "5"])
    assert past.exit_code == 0 and past.stdout == "No backups on page 5 of 2 (3 in all).\n"
    zero = runner.invoke(args=["backups", "list", "--page", "0"])
    assert zero.exit_code == 1
    assert zero.output == "Error: --page must be a whole number from 1, of at most 18 digits.\n"


def test_waiting_for_a_backup_no_worker_makes_says_so_and_how_to_stop_it(host_env, app):
    """No worker runs: ``create --wait`` warns at once; Ctrl-C says the backup is still
    queued and how to cancel it."""
    import os
    import signal
    import subprocess

    from tests.conftest import ROOT, WORKER

    command = [*WORKER[:-1], "create", "--format", "sqlite3", "--wait"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **host_env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "Backup 1 queued (sqlite3).\n"
        assert proc.stderr.readline().startswith("Warning: No worker is listening on queue ")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "Stopped waiting: backup 1 is still queued (`flask backups cancel 1` stops it)." in err


def test_show_and_list_say_when_a_file_is_gone_or_damaged(app, runner, run_worker):
    from flask_backup_manager import service

    for _ in range(2):
        assert runner.invoke(args=["backups", "create", "--format", "sqlite3"]).exit_code == 0
        run_worker()
    with app.app_context():
        service.file_path(service.get_backup(1)).unlink()
        path = service.file_path(service.get_backup(2))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the same size: only a full read finds it
    path.write_bytes(bytes(data))
    gone = runner.invoke(args=["backups", "show", "1"]).output
    assert "file: The file is missing from storage." in gone.splitlines()
    damaged = runner.invoke(args=["backups", "show", "2"]).output
    assert "file: The file no longer matches its checksum." in damaged.splitlines()
    listing = runner.invoke(args=["backups", "list"]).output.splitlines()
    assert listing[1].split()[:3] == ["2", "sqlite3", "succeeded"]  # a stat finds nothing
    assert listing[2].split()[:3] == ["1", "sqlite3", "succeeded!"]
    assert listing[3].strip() == "! The file is missing from storage."


def test_download_into_a_directory_and_never_over_a_file_without_force(
    app, runner, run_worker, tmp_path, monkeypatch
):
    from flask_backup_manager import service

    assert runner.invoke(args=["backups", "create", "--format", "sqlite3"]).exit_code == 0
    run_worker()
    with app.app_context():
        backup = service.get_backup(1)
        name, stored = backup.filename, service.file_path(backup).read_bytes()

    def download(*args: str):
        return runner.invoke(args=["backups", "download", "1", *args])

    out = tmp_path / "out"
    out.mkdir()
    for given in (f"{out}/", str(out)):  # a directory, with or without its slash
        result = download("-o", given, "--force")
        assert result.exit_code == 0, result.output
        assert (out / name).read_bytes() == stored
    assert [p.name for p in out.iterdir()] == [name]

    missing = download("-o", f"{tmp_path / 'nowhere'}/")
    assert missing.exit_code == 1
    assert (
        missing.output.strip()
        == f"Error: cannot copy backup 1 to {tmp_path}/nowhere/: no such directory"
    )
    assert not (tmp_path / "nowhere").exists()

    mine = tmp_path / "mine.gz"
    mine.write_bytes(b"the user's own file")
    refused = download("-o", str(mine))
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        f"Error: {mine} already exists: add --force to overwrite it"
    ]
    assert mine.read_bytes() == b"the user's own file"
    assert download("-o", str(mine), "--force").exit_code == 0
    assert mine.read_bytes() == stored

    monkeypatch.chdir(out)  # the default target, here, follows the same rule
    again = download()
    assert again.exit_code == 1 and "already exists: add --force" in again.output
    assert download("--force").exit_code == 0 and (out / name).read_bytes() == stored
    assert [p.name for p in out.iterdir()] == [name]  # no part file left


def test_download_of_a_file_gone_from_storage_says_so(app, runner, run_worker, tmp_path):
    from flask_backup_manager import service

    assert runner.invoke(args=["backups", "create", "--format", "sqlite3"]).exit_code == 0
    run_worker()
    with app.app_context():
        service.file_path(service.get_backup(1)).unlink()
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(args=["backups", "download", "1", "-o", str(out)])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: The file of backup 1 is missing from storage."
    assert list(out.iterdir()) == []


def test_export_include_drops_foreign_keys_to_tables_left_out_as_the_readme_says(tmp_path):
    """``--include child`` without its parent: the postgres file has no foreign key (the
    column and values stay); SQLite to sqlite3_db keeps the table's SQL, REFERENCES and all."""
    import gzip
    import subprocess
    import sys

    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));"
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1), (2, 1);"
    )
    con.close()

    def export(fmt: str) -> Path:
        out = tmp_path / f"out.{fmt}"
        cmd = [sys.executable, "-m", "flask_backup_manager", "export", "--source"]
        args = [f"sqlite:///{db}", "--format", fmt, "--output", str(out), "--include", "child"]
        done = subprocess.run([*cmd, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return out

    sql = gzip.open(export("postgres"), "rt").read()
    assert '"parent_id"' in sql and "1\t1\n2\t1\n" in sql
    assert "REFERENCES" not in sql.upper() and "FOREIGN KEY" not in sql.upper()
    copy = sqlite3.connect(export("sqlite3_db"))
    try:
        (schema,) = copy.execute("SELECT sql FROM sqlite_master WHERE name = 'child'").fetchone()
        assert "REFERENCES parent(id)" in schema
        assert copy.execute("SELECT count(*) FROM child").fetchone() == (2,)
        assert copy.execute("SELECT name FROM sqlite_master WHERE name = 'parent'").fetchall() == []
    finally:
        copy.close()
