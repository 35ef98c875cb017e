"""``flask backups ...`` through Flask's test runner."""

from __future__ import annotations

import sqlite3


def test_create_list_show_download_delete(app, runner, run_worker, tmp_path):
    result = runner.invoke(args=["backups", "create", "--format", "sqlite3_db"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "backup 1 queued (sqlite3_db)"
    run_worker()

    listing = runner.invoke(args=["backups", "list"])
    assert listing.exit_code == 0
    row = listing.output.splitlines()[1].split()
    assert row[:3] == ["1", "sqlite3_db", "succeeded"]

    shown = runner.invoke(args=["backups", "show", "1"])
    assert "status: succeeded" in shown.output
    assert "table customers: 50 rows" in shown.output

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
    assert runner.invoke(args=["backups", "list"]).output.strip() == "no backups"


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
    assert "is queued" in result.output


def test_create_wait_follows_the_backup_until_a_worker_finishes_it(runner, worker):
    worker()
    result = runner.invoke(args=["backups", "create", "--format", "sqlite3", "--wait"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "backup 1 queued (sqlite3)"
    assert lines[-2] == "backup 1 succeeded"
    assert lines[-1].startswith("hostapp-") and " sha256 " in lines[-1]


def test_cancel_from_the_command_line(runner):
    runner.invoke(args=["backups", "create", "--format", "sqlite3"])
    result = runner.invoke(args=["backups", "cancel", "1"])
    assert result.exit_code == 0 and result.output.strip() == "backup 1 cancelled"
    again = runner.invoke(args=["backups", "cancel", "1"])
    assert again.exit_code == 1 and "already cancelled" in again.output
