"""The fast paths of the redacted ``sqlite3_db`` copy give exactly the file the plain ones give:
a big column of few texts has its rule's values written into the UPDATE
(:func:`.from_sqlite._inlined`), one of a few more values reads them from a temp table
(:func:`.from_sqlite._mapped`), any other calls the rule's function per row. Each test makes
the same copy, with the same key, through each path and compares the files byte for byte."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from flask_backup_manager.engine import export
from flask_backup_manager.engine.redaction import Redaction, profile_from_mapping
from flask_backup_manager.engine.writers.sqlite import from_sqlite

KEY = b"k" * 32
ROWS = 12000


def _source(path: Path, values: list[object], *, tail: list[object] = ()) -> Path:
    """A table ``t`` of :data:`ROWS` rows whose column ``c`` cycles through ``values``, then
    ``tail`` (values the first rows never show)."""
    with closing(sqlite3.connect(path)) as con:
        con.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, c TEXT COLLATE NOCASE, "
            "m VARCHAR(200), n INTEGER)"
        )
        rows = [(values[i % len(values)], values[i % len(values)], i) for i in range(ROWS)]
        rows += [(v, v, -1) for v in tail]
        con.executemany("INSERT INTO t (c, m, n) VALUES (?, ?, ?)", rows)
        con.commit()
    return path


def _copy(tmp_path: Path, db: Path, name: str, rules: dict[str, str]) -> bytes:
    out = tmp_path / f"{name}.db"
    redaction = Redaction(profile_from_mapping("p", rules), KEY)
    export(f"sqlite:///{db}", "sqlite3_db", out, redaction=redaction)
    return out.read_bytes()


def _three_paths(tmp_path, monkeypatch, db: Path, rules: dict[str, str]) -> list[bytes]:
    """The copy through the inlined values, the temp table, and the rule per row."""
    inlined = _copy(tmp_path, db, "inlined", rules)
    monkeypatch.setattr(from_sqlite, "INLINE_VALUES", 0)
    mapped = _copy(tmp_path, db, "mapped", rules)
    monkeypatch.setattr(from_sqlite, "SAMPLE_ROWS", ROWS * 10)
    plain = _copy(tmp_path, db, "plain", rules)
    return [inlined, mapped, plain]


@pytest.mark.parametrize("rule", ["hash", "email", "name"])
def test_inlined_values_give_the_same_file_as_the_map_and_the_functions(
    tmp_path, monkeypatch, rule
):
    """``A`` apart from ``a`` under NOCASE, NULL kept, a value seen only after the sample
    (row 12,001) hashed by the rule itself, a CR and a NUL inside a text: the same bytes."""
    db = _source(
        tmp_path / "s.db", ["A", "a", None, "x\r\ny"], tail=["latecanary", "n\x00ul", b"blob"]
    )
    files = _three_paths(tmp_path, monkeypatch, db, {"t.c": rule, "t.m": rule, "t.n": "fixed:0"})
    assert files[0] == files[1] == files[2]
    assert b"latecanary" not in files[0]


def test_a_blob_among_the_first_values_takes_the_map_and_gives_the_same_file(tmp_path, monkeypatch):
    """A BLOB among the sampled values of a TEXT column is not a text to compare with: the
    column takes the map (keyed by storage class), with the same result."""
    db = _source(tmp_path / "s.db", ["ok", b"ok", "ok2"])
    files = _three_paths(tmp_path, monkeypatch, db, {"t.c": "hash"})
    assert files[0] == files[1] == files[2]


def test_numbers_in_a_column_without_text_affinity_are_not_inlined(tmp_path, monkeypatch):
    """A column declared without a type stores 1 and '1' apart: not inlined (the values go
    to the map, keyed by storage class), and the same file."""
    db = tmp_path / "s.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, c)")
        con.executemany("INSERT INTO t (c) VALUES (?)", [([1, "1"][i % 2],) for i in range(ROWS)])
        con.commit()
    files = _three_paths(tmp_path, monkeypatch, db, {"t.c": "hash"})
    assert files[0] == files[1] == files[2]
