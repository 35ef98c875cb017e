"""The new engine code (a loading process on APSW's SQLite, age encryption) attacked as a
hostile customer and as an attacker on the vendor's side would: each test builds the attack
for real and looks for its effect, and each failed before its fix."""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from flask_backup_manager.__main__ import main
from flask_backup_manager.engine import ExportCancelled, ExportError, export
from flask_backup_manager.engine.encryption import MAGIC, STANZAS_MAX, keygen, parse_recipient
from flask_backup_manager.engine.restore import restore
from flask_backup_manager.engine.verify import SQLiteLoad

CANARY = b"CANARY-r1-5c0ffee-plaintext"


def plaintext_files(directory: Path) -> list[Path]:
    """The files under ``directory`` that hold the canary or an SQLite database's pages."""
    return [
        p
        for p in directory.rglob("*")
        if p.is_file() and (CANARY in (data := p.read_bytes()) or data[:6] == b"SQLite")
    ]


def test_the_scratch_database_of_a_verification_has_no_name_while_it_loads(tmp_path):
    """The scratch database holds every row of the file, in plaintext: past its cache (32 MB)
    its pages went to a named file beside the backup, which a worker killed while it encrypts
    left behind (the loading process dies with it; nothing removed the file). Its name now
    goes as soon as it is open, so there is nothing to find, killed or not."""
    out = tmp_path / "out"
    out.mkdir()
    load = SQLiteLoad(out / ".b.sql.gz.0000abcd.part")
    try:
        load.feed(b"CREATE TABLE t (a);\n")
        row = b"('" + CANARY + b"-" + b"x" * 900 + b"')"
        statement = b"INSERT INTO t VALUES " + b",\n".join([row] * 1000) + b";\n"
        for _ in range(60):  # about 55 MB of pages: more than the cache holds
            load.feed(statement)
        load.close()
        verification = load.result({"t": 60_000})
        assert verification.ok and verification.loaded and verification.rows == 60_000
        assert plaintext_files(out) == []
    finally:
        load.discard()
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "pasted",
    ['"{}"', "'{}'", "key={}", "<{}>", "# {}", "age1{}", "ssh-ed25519 {}", "{} vendor"],
)
def test_a_secret_key_pasted_in_quotes_or_after_a_name_is_never_echoed(pasted, capsys):
    """Only a secret key at the start of the text was called one: quoted (as a config file
    or a shell holds it) or after a name, the error echoed its first 25 characters or so at
    start-up and on the command line."""
    secret, _ = keygen()
    text = pasted.format(secret)
    with pytest.raises(ValueError) as e:
        parse_recipient(text)
    assert "is a secret key, not a public key" in str(e.value)
    body = secret.removeprefix("AGE-SECRET-KEY-1")
    assert body[:6] not in str(e.value) and body[:6].lower() not in str(e.value)
    assert (
        main(
            ["export", "--source", "sqlite:///x.db", "--format", "sqlite3"]
            + ["--output", "o.sql.gz", "--encrypt-to", text]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "is a secret key" in err and body[:6] not in err


def b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def forged_age(stanzas: int) -> bytes:
    """An age file anyone can make, no key needed: ``stanzas`` X25519 stanzas of random
    bytes, a random MAC, a few bytes of payload."""
    body = b"".join(
        b"-> X25519 " + b64(os.urandom(32)) + b"\n" + b64(os.urandom(32)) + b"\n"
        for _ in range(stanzas)
    )
    return MAGIC + body + b"--- " + b64(os.urandom(32)) + b"\n" + os.urandom(64)


@pytest.mark.parametrize("stanzas, says", [(100, "more than 64 recipients"), (3000, "64 KiB")])
def test_an_age_header_of_many_stanzas_is_refused_before_pyrage_parses_it(
    stanzas, says, tmp_path, capsys
):
    """The age crate parses a header again from its start as it reads more of it: 2,000
    forged stanzas took 3 s of CPU, 8,000 (800 KB) 52 s, a 20 MB file hours, before "no
    matching key". Such a header is refused at once; nothing is written at the target."""
    key = tmp_path / "key.txt"
    key.write_text(keygen()[0] + "\n")
    path = tmp_path / "b.sql.gz.age"
    path.write_bytes(forged_age(stanzas))
    target = tmp_path / "new.db"
    assert (
        main(["restore", str(path), "--identity", str(key), "--target", f"sqlite:///{target}"]) == 1
    )
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.sql.gz.age", "key.txt"]


def test_an_export_to_more_recipients_than_a_restore_reads_is_refused_before_any_work(tmp_path):
    """The restore refuses a header of more than 64 stanzas: an export to more would make a
    file that no restore of ours reads."""
    recipients = [parse_recipient(keygen()[1]) for _ in range(STANZAS_MAX + 1)]
    with pytest.raises(ExportError, match="at most 64"):
        export(
            f"sqlite:///{tmp_path / 'none.db'}",
            "sqlite3",
            tmp_path / "o.age",
            recipients=recipients,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_cancel_stops_the_verifications_last_statements_at_once(tmp_path):
    """After the read-through the verification waited for the loading process to end, deaf
    to a cancel, and the export then renamed its file into place as if never cancelled: a
    file's last statements (here a CREATE INDEX taking about 17 ms a row, 20,000 rows, which
    a hostile schema can make as slow as it likes) held the worker for as long as they ran."""
    load = SQLiteLoad(tmp_path / ".b.sql.gz.0000abcd.part")
    cancel = threading.Event()
    try:
        load.feed(b"CREATE TABLE t (a);\n")
        load.feed(b"INSERT INTO t VALUES " + b",".join([b"(1)"] * 20_000) + b";\n")
        slow = b"length(replace(printf('%.*c', 3000 + a, 'x'), 'x', printf('%.*c', 3000, 'y')))"
        load.feed(b"CREATE INDEX slow ON t (" + slow + b");\n")
        load.close()
        threading.Timer(1.0, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(ExportCancelled):
            load.result({"t": 20_000}, cancel)
        assert time.monotonic() - started < 120  # the index alone takes about 350 s
        assert load.proc is not None and load.proc.poll() is not None
    finally:
        cancel.set()
        load.discard()
    assert list(tmp_path.iterdir()) == []


def fts_file(path: Path, *, disguised: bool) -> Path:
    """An SQLite file with a table and an FTS5 table; ``disguised``: its CREATE VIRTUAL TABLE
    rewritten (writable_schema) with two spaces, which SQLite reads as the same."""
    with closing(sqlite3.connect(path)) as con:
        con.executescript(
            "CREATE TABLE t (a); INSERT INTO t VALUES (1);"
            "CREATE VIRTUAL TABLE f USING fts5(a); INSERT INTO f VALUES ('x'), ('y'), ('z');"
        )
        if disguised:
            con.execute("PRAGMA writable_schema = ON")
            con.execute(
                "UPDATE sqlite_master SET sql = replace(sql, 'CREATE VIRTUAL', 'CREATE  VIRTUAL')"
                " WHERE name = 'f'"
            )
        con.commit()
    return path


def test_a_sqlite3_db_restore_never_counts_a_virtual_table_however_its_text_is_spaced(tmp_path):
    """The restore of a ``sqlite3_db`` file counts each table's rows, but not a virtual
    table's (its module's code would run on the customer's file): it told them by the text
    'CREATE VIRTUAL%', so 'CREATE  VIRTUAL TABLE' was counted, its module run (3 rows more,
    a table more). SQLite's own reading of the schema decides now."""
    plain = restore(fts_file(tmp_path / "a.db", disguised=False), f"sqlite:///{tmp_path / 'a2.db'}")
    odd = restore(fts_file(tmp_path / "b.db", disguised=True), f"sqlite:///{tmp_path / 'b2.db'}")
    assert (odd.tables, odd.rows) == (plain.tables, plain.rows)
    with closing(sqlite3.connect(tmp_path / "b2.db")) as con:
        assert con.execute("SELECT count(*) FROM f").fetchone()[0] == 3  # the copy is whole
