"""``python -m flask_backup_manager restore``: real round trips, and files it must refuse."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys

import psycopg
import pytest

from flask_backup_manager.engine import export

from .test_postgres_to_postgres import (
    assert_same_database,
    load_hard_schema,
)

AWKWARD = [
    "plain",
    "a\nb\r\nc",
    "\\! touch nothing",
    "\\.",
    "tab\there",
    "quote ' and \"",
    "é ☃",
    "",
    None,
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask_backup_manager", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def pg_source(make_pg_db) -> str:
    url = make_pg_db()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE a (id int PRIMARY KEY, s text, b bytea, n numeric)")
        con.execute("CREATE TABLE b (id int REFERENCES a, j jsonb)")
        for i, s in enumerate(AWKWARD):
            con.execute("INSERT INTO a VALUES (%s, %s, %s, %s)", (i, s, (s or "").encode(), i / 3))
            con.execute("INSERT INTO b VALUES (%s, %s)", (i, '{"k": "v\\n"}'))
    return url


def _rows(url: str) -> list:
    with psycopg.connect(url) as con:
        return [
            con.execute("SELECT * FROM a ORDER BY id").fetchall(),
            con.execute("SELECT * FROM b ORDER BY id").fetchall(),
        ]


def test_postgres_round_trip_as_an_ordinary_owner(pg_source, owner_db, tmp_path):
    dump = tmp_path / "d.postgres.sql.gz"
    export(pg_source, "postgres", dump)
    done = run("restore", str(dump), "--target", owner_db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"2 tables, {2 * len(AWKWARD)} rows"
    assert _rows(owner_db) == _rows(pg_source)


def test_plain_text_file_is_told_by_its_content(pg_source, owner_db, tmp_path):
    dump = tmp_path / "d.postgres.sql.gz"
    export(pg_source, "postgres", dump)
    plain = tmp_path / "no-extension"
    plain.write_bytes(gzip.decompress(dump.read_bytes()))
    assert run("restore", str(plain), "--target", owner_db).returncode == 0
    assert _rows(owner_db) == _rows(pg_source)


def test_non_empty_target_is_refused(pg_source, tmp_path):
    dump = tmp_path / "d.postgres.sql.gz"
    export(pg_source, "postgres", dump)
    done = run("restore", str(dump), "--target", pg_source, "--as-superuser")
    assert done.returncode == 1
    assert done.stderr.startswith("error: the target database is not empty")
    assert len(done.stderr.splitlines()) == 1


def _evil(tmp_path, marker, how: bytes) -> object:
    text = (
        b"\\restrict abc\n"
        b"CREATE TABLE t (i int);\n"
        b"ALTER TABLE public.t CLUSTER ON i;\n" + how % str(marker).encode() + b"\n--\n"
        b"COPY public.t (i) FROM stdin;\n1\n\\.\n\\unrestrict abc\n"
    )
    path = tmp_path / "evil.sql.gz"
    path.write_bytes(gzip.compress(text))
    return path


@pytest.mark.parametrize(
    "how", [b"\\! touch %s", b"SELECT 1; \\! touch %s", b"-- x\r\\! touch %s", b"\\o |touch %s"]
)
def test_a_file_with_a_psql_command_is_refused_and_nothing_committed(
    owner_db,
    tmp_path,
    how,
):
    marker = tmp_path / "MARKER"
    done = run("restore", str(_evil(tmp_path, marker, how)), "--target", owner_db)
    assert done.returncode == 1
    assert "would run the psql command" in done.stderr
    assert not marker.exists()
    with psycopg.connect(owner_db) as con:
        assert con.execute("SELECT to_regclass('public.t')").fetchone() == (None,)


def test_a_truncated_file_is_refused_and_nothing_committed(pg_source, owner_db, tmp_path):
    dump = tmp_path / "d.postgres.sql.gz"
    export(pg_source, "postgres", dump)
    text = gzip.decompress(dump.read_bytes())
    cut = tmp_path / "cut.sql"
    cut.write_bytes(text[: text.index(b"\n\\.\n")])  # inside the first COPY block
    done = run("restore", str(cut), "--target", owner_db)
    assert done.returncode == 1
    assert done.stderr.startswith("error: the SQL file ends inside")
    truncated = tmp_path / "cut.sql.gz"
    truncated.write_bytes(dump.read_bytes()[:-20])
    assert run("restore", str(truncated), "--target", owner_db).returncode == 1
    with psycopg.connect(owner_db) as con:
        assert con.execute("SELECT to_regclass('public.a')").fetchone() == (None,)


def test_bad_url_and_password_never_printed(tmp_path):
    dump = tmp_path / "x.sql"
    dump.write_bytes(b"\\restrict k\n\\unrestrict k\n")
    done = run("restore", str(dump), "--target", "nonsense")
    assert (done.returncode, done.stderr.splitlines()[0]) == (
        1,
        "error: not a database URL: expected postgresql://... or sqlite:///path",
    )
    done = run("restore", str(dump), "--target", "postgresql://u:s3cret@127.0.0.1:1/db")
    assert done.returncode == 1
    assert "s3cret" not in done.stderr + done.stdout


def test_sqlite_round_trip(tmp_path):
    src = tmp_path / "src.db"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, s TEXT, b BLOB)")
    con.executemany(
        "INSERT INTO a VALUES (?, ?, ?)",
        [(i, s, (s or "").encode()) for i, s in enumerate(AWKWARD)],
    )
    con.commit()
    con.close()
    dump = tmp_path / "d.sqlite3.sql.gz"
    export(f"sqlite:///{src}", "sqlite3", dump)
    new = tmp_path / "new.db"
    done = run("restore", str(dump), "--target", f"sqlite:///{new}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 tables, ")
    got = sqlite3.connect(new).execute("SELECT * FROM a ORDER BY id").fetchall()
    assert got == sqlite3.connect(src).execute("SELECT * FROM a ORDER BY id").fetchall()
    again = run("restore", str(dump), "--target", f"sqlite:///{new}")
    assert again.returncode == 1
    assert "exists and is not empty" in again.stderr


def test_sqlite_file_with_a_dot_command_is_refused_and_leaves_no_file(tmp_path):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "e.sql"
    evil.write_bytes(
        b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t (i);\n"
        b".shell touch " + str(marker).encode() + b"\nCOMMIT;\n"
    )
    new = tmp_path / "new.db"
    done = run("restore", str(evil), "--target", f"sqlite:///{new}")
    assert done.returncode == 1
    assert "would run as a command" in done.stderr
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.sql"]


def _forged(tmp_path, body: bytes, name: str = "forged.sql.gz") -> object:
    """A file the customer edited after the export: the tool must not trust what it says."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"\\restrict abc\n" + body + b"\n\\unrestrict abc\n"))
    return path


def test_a_superuser_is_refused_by_the_tool_itself_even_if_the_file_has_no_guard(
    make_pg_db, tmp_path
):
    # the server writes the marker as its own OS user: a directory anyone may write to
    tmp_path.chmod(0o777)
    marker = tmp_path / "MARKER"
    forged = _forged(
        tmp_path,
        b"DO $x$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch %s'''; END $x$;"
        % str(marker).encode(),
    )
    target = make_pg_db()  # the fixtures' admin role: a superuser
    done = run("restore", str(forged), "--target", target)
    assert done.returncode == 1
    assert done.stderr.startswith("error: refusing to restore as this role, which is, or can")
    assert len(done.stderr.splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize(
    "statement",
    [
        b"COMMIT;",
        b"END;",
        b"ROLLBACK;",
        b"/* a /* nested */ comment */ COMMIT;",
        b"-- a comment to CR\rCOMMIT;",
        b"PREPARE TRANSACTION 'x';",
        b"SAVEPOINT s;",
    ],
)
def test_a_file_that_would_commit_half_a_load_is_refused_and_nothing_committed(
    owner_db,
    tmp_path,
    statement,
):
    forged = _forged(
        tmp_path, b"CREATE TABLE public.left_behind (a int);\n" + statement + b"\nSELECT 1/0;"
    )
    done = run("restore", str(forged), "--target", owner_db)
    assert done.returncode == 1
    assert "is not one a backup holds" in done.stderr
    with psycopg.connect(owner_db) as con:
        assert con.execute("SELECT to_regclass('public.left_behind')").fetchone() == (None,)


@pytest.mark.parametrize(
    "statement",
    [
        b"ATTACH '%s' AS x; CREATE TABLE x.p (a); INSERT INTO x.p VALUES (1);",
        b"VACUUM INTO '%s';",
        b"/* no */ ATTACH DATABASE '%s' AS y;",
        b"CREATE TABLE z AS SELECT 1; PRAGMA temp_store_directory = '%s';",
    ],
)
def test_a_sqlite_file_that_would_write_another_file_is_refused(tmp_path, statement):
    written = tmp_path / "written.php"
    forged = tmp_path / "forged.sql"
    forged.write_bytes(
        b"-- SQLite database dump made by flask-backup-manager\nBEGIN TRANSACTION;\n"
        b"CREATE TABLE t (a);\n" + statement.replace(b"%s", str(written).encode()) + b"\nCOMMIT;\n"
    )
    new = tmp_path / "new.db"
    done = run("restore", str(forged), "--target", f"sqlite:///{new}")
    assert done.returncode == 1, done.stdout
    assert len(done.stderr.splitlines()) == 1
    assert not written.exists() and not new.exists()


def test_the_tool_restores_pagila_and_the_hard_cases_as_psql_does(
    pagila_url,
    pg_url,
    owner_db,
    make_pg_db,
    psql,
    tmp_path,
):
    """Every statement kind the writer emits for real schemas is one the tool runs: the
    restored copies equal their sources as the psql restores do."""
    load_hard_schema(psql, pg_url)
    for source, target in ((pagila_url, owner_db), (pg_url, make_pg_db())):
        dump = tmp_path / "d.postgres.sql.gz"
        export(source, "postgres", dump)
        flags = [] if target == owner_db else ["--as-superuser"]  # a fresh db: the admin's
        done = run("restore", str(dump), "--target", target, *flags)
        assert done.returncode == 0, done.stderr
        assert_same_database(psql, source, target)


def test_a_sqlite_file_holding_a_nul_byte_is_a_one_line_error(tmp_path):
    forged = tmp_path / "nul.sql"
    forged.write_bytes(
        b"-- SQLite database dump made by flask-backup-manager\nBEGIN TRANSACTION;\n"
        b"CREATE TABLE t (a);\nINSERT INTO t VALUES ('a\x00b');\nCOMMIT;\n"
    )
    new = tmp_path / "new.db"
    done = run("restore", str(forged), "--target", f"sqlite:///{new}")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    assert not new.exists()
