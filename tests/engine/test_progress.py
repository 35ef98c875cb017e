"""What an export tells its progress callback: the phase under way in words, a lock wait before
it waits (naming who holds the lock), and a percent that only grows, on each of the six paths."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import psycopg
import pytest

from flask_backup_manager.engine import ExportError, Progress, export
from flask_backup_manager.engine.base import Tracker
from flask_backup_manager.engine.model import TableSpec

from ..conftest import DATASETS, run_psql

CHINOOK_SQLITE = f"sqlite:///{DATASETS / 'chinook' / 'Chinook_Sqlite.sqlite'}"

#: the phases each path goes through after its tables, in order
AFTER_TABLES = {
    ("sqlite", "sqlite3_db"): ["verifying the file"],
    ("sqlite", "sqlite3"): ["verifying the file"],
    ("sqlite", "postgres"): ["verifying the file"],
    ("postgresql", "postgres"): ["verifying the file"],
    ("postgresql", "sqlite3_db"): ["creating indexes", "verifying the file"],
    ("postgresql", "sqlite3"): ["creating indexes", "writing the SQL text", "verifying the file"],
}


@pytest.fixture
def chinook_pg(pg_url, psql) -> str:
    script = (DATASETS / "chinook" / "Chinook_PostgreSql.sql").read_text()
    # into this test's database, not one of its own
    script = re.sub(r"^(DROP DATABASE|CREATE DATABASE|\\c) .*$", "", script, flags=re.M)
    run_psql(psql, pg_url, stdin=script.encode())
    return pg_url


def phases_of(seen: list[Progress]) -> list[str]:
    """The phases in the order they came, each once in a row, the tables' as 'copying'."""
    out: list[str] = []
    for p in seen:
        name = "copying" if p.table is not None else p.phase
        if name and (not out or out[-1] != name):
            out.append(name)
    return out


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3", "postgres"])
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_each_path_says_its_phases_in_order_with_a_percent_that_only_grows(
    tmp_path: Path, kind: str, fmt: str, request
):
    source = CHINOOK_SQLITE if kind == "sqlite" else request.getfixturevalue("chinook_pg")
    seen: list[Progress] = []
    result = export(source, fmt, tmp_path / "out", progress=seen.append)
    assert phases_of(seen) == ["copying", *AFTER_TABLES[(kind, fmt)]]
    copying = {p.phase for p in seen if p.table is not None}
    assert "copying table " + ("Track" if kind == "sqlite" else "track") in copying
    percents = [p.percent for p in seen]
    assert percents == sorted(percents) and 0 <= percents[0] and percents[-1] <= 99
    last_table = max(i for i, p in enumerate(seen) if p.table is not None)
    assert seen[last_table].percent > 30  # the rows' share counts, whatever the path
    assert result.tables == seen[-1].tables_total


def spec(key: str, rows: int) -> TableSpec:
    return TableSpec(key=key, name=key, schema=None, load_tables=dict, estimated_rows=rows)


def test_a_table_copied_anew_never_takes_the_percent_back():
    seen: list[Progress] = []
    a, b = spec("a", 100), spec("b", 100)
    tracker = Tracker([a, b], seen.append, rows_until=80)
    tracker.interval = 0  # every call reported
    tracker.start(a)
    tracker.rows(100)
    tracker.finish(a)
    tracker.start(b)
    tracker.rows(60)
    tracker.restart(b)  # b's 60 rows no longer count
    tracker.rows(10)
    assert tracker.p.rows_done == 110
    tracker.rows(90)
    tracker.finish(b)
    tracker.phase("verifying the file", 99)
    tracker.step(1, 2)
    tracker.step(2, 2)
    percents = [p.percent for p in seen]
    assert percents == sorted(percents)
    assert max(p.percent for p in seen if p.table == "b") == 80
    assert percents[-1] == 99
    assert seen[-1].phase == "verifying the file" and seen[-1].table is None


def test_a_lock_wait_is_reported_before_the_wait_naming_its_holder(tmp_path: Path, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
        con.execute("INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)")
    waiting = threading.Event()
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.phase and p.phase.startswith("waiting for a lock"):
            waiting.set()

    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE b IN ACCESS EXCLUSIVE MODE")
        holder_pid = holder.info.backend_pid
        done: list[object] = []
        job = threading.Thread(
            target=lambda: done.append(
                export(pg_url, "postgres", tmp_path / "out", progress=progress, lock_timeout=120)
            )
        )
        job.start()
        assert waiting.wait(30), "the wait was not reported while it waited"
        assert done == []  # still waiting
        time.sleep(0.5)
        assert done == []
        holder.rollback()
        job.join(60)
    assert done and done[0].rows == 2
    wait = next(p.phase for p in seen if p.phase.startswith("waiting"))
    m = re.fullmatch(
        r"waiting for a lock on b \(held by pid (\d+), 'idle in transaction' for \d+ s\)", wait
    )
    assert m and int(m[1]) == holder_pid, wait
    assert (tmp_path / "out").stat().st_size > 0


def test_a_lock_that_is_never_released_still_fails_naming_the_table(tmp_path: Path, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE a (id int PRIMARY KEY)")
    seen: list[Progress] = []
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE a IN ACCESS EXCLUSIVE MODE")
        pid = holder.info.backend_pid
        with pytest.raises(ExportError, match=r"^table a is locked by another session: gave up"):
            export(pg_url, "sqlite3_db", tmp_path / "out", progress=seen.append, lock_timeout=1)
    held = rf"waiting for a lock on a \(held by pid {pid}, 'idle in transaction' for \d+ s\)"
    assert re.fullmatch(held, seen[0].phase)
    assert not (tmp_path / "out").exists()
