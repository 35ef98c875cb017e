"""SQLite -> ``postgres``: column defaults (issue 11). Constants and SQLite's clock are carried
as PostgreSQL defaults of the same value and form, a model's ``server_default`` as the model
says; what has no equivalent is listed in the backup's log; the default text is the
customer's, and reaches the file only rebuilt."""

from __future__ import annotations

import datetime as dt
import gzip
import sqlite3
import uuid
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flask_backup_manager.engine import export
from flask_backup_manager.engine.writers.postgres.sqlite_defaults import (
    NotCarried,
    sqlite_constant,
)

from .test_postgres_to_postgres import restore

UTC = dt.timezone.utc

#: (column, its SQLite declaration, what a row inserted with DEFAULT VALUES holds in
#: PostgreSQL; None: the default is not carried, and the log names it)
COLUMNS = [
    ("i", "INTEGER NOT NULL DEFAULT 7", 7),
    ("neg", "INTEGER NOT NULL DEFAULT -3", -3),
    ("par", "REAL NOT NULL DEFAULT (-2.5)", -2.5),
    ("expo", "REAL NOT NULL DEFAULT 1.5e-3", 0.0015),
    ("hex", "INTEGER NOT NULL DEFAULT 0x10", 16),
    ("big", "INTEGER NOT NULL DEFAULT -9223372036854775808", -(2**63)),
    ("num", "NUMERIC(10, 2) NOT NULL DEFAULT '12.50'", Decimal("12.50")),
    ("numtext", "INTEGER NOT NULL DEFAULT '12'", 12),  # SQLite's affinity: the integer 12
    ("s", "TEXT NOT NULL DEFAULT 'it''s'", "it's"),
    ("dq", 'TEXT NOT NULL DEFAULT "double"', "double"),
    ("uni", "VARCHAR(9) NOT NULL DEFAULT 'é\\ \t\n'", "é\\ \t\n"),
    ("blob", "BLOB NOT NULL DEFAULT X'00FF5C'", b"\x00\xff\\"),
    ("yes", "BOOLEAN NOT NULL DEFAULT TRUE", True),
    ("no", "BOOLEAN NOT NULL DEFAULT FALSE", False),
    ("truth", "INTEGER NOT NULL DEFAULT TRUE", 1),
    ("day", "DATE NOT NULL DEFAULT '2020-02-03'", dt.date(2020, 2, 3)),
    ("ts", "DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP", "now"),
    ("fn_ts", "DATETIME NOT NULL DEFAULT (datetime('now'))", "now"),
    ("d", "DATE NOT NULL DEFAULT CURRENT_DATE", "today"),
    ("tm", "TIME NOT NULL DEFAULT CURRENT_TIME", "time"),
    ("txt_ts", "TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP", "now as text"),
    ("nul", "TEXT DEFAULT NULL", None),
    # not carried
    ("rnd", "INTEGER DEFAULT (random())", None),
    ("expr", "INTEGER DEFAULT (1 + 2)", None),
    ("refused", "INTEGER DEFAULT 'abc'", None),
    ("short", "VARCHAR(5) DEFAULT CURRENT_TIMESTAMP", None),
]
#: the defaults the log lists: (the default as SQLite gives it, why)
NOT_CARRIED = {
    "rnd": ("random()", "not a constant"),
    "expr": ("1 + 2", "not a constant"),
    "refused": ("'abc'", "a PostgreSQL bigint column refuses it: 'abc' is not an integer"),
    "short": (
        "CURRENT_TIMESTAMP",
        "a PostgreSQL character varying(5) column refuses SQLite's CURRENT_TIMESTAMP",
    ),
}


def _sqlite(path: Path, script: str) -> str:
    with closing(sqlite3.connect(path)) as con:
        con.executescript(script)
    return f"sqlite:///{path}"


def test_sqlite_defaults_with_an_equivalent_are_carried_and_the_others_listed(
    tmp_path, owner_db, psql
):
    cols = ",\n".join(f"{name} {decl}" for name, decl, _ in COLUMNS)
    url = _sqlite(tmp_path / "d.db", f"CREATE TABLE t (id INTEGER PRIMARY KEY, {cols});")
    out = tmp_path / "d.postgres.sql.gz"
    result = export(url, "postgres", out)
    assert len(result.warnings) == len(NOT_CARRIED)
    for name, (text, why) in NOT_CARRIED.items():
        start = f"table t, column {name}: default {text} not carried to PostgreSQL ({why}"
        assert any(w.startswith(start) for w in result.warnings), (start, result.warnings)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db, autocommit=True) as pg:
        # a session far from UTC: SQLite's clock is UTC, and so are the copy's defaults
        pg.execute("SET TimeZone = 'Pacific/Kiritimati'")
        before = dt.datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        row = pg.execute("INSERT INTO t DEFAULT VALUES RETURNING *").fetchone()
        after = dt.datetime.now(UTC).replace(tzinfo=None)
    got = dict(zip(["id", *(name for name, _, _ in COLUMNS)], row, strict=True))
    assert got["id"] == 1
    for name, _, want in COLUMNS:
        value = got[name]
        if want == "now":
            assert before <= value <= after, name
        elif want == "today":
            assert before.date() <= value <= after.date()
        elif want == "time":
            assert isinstance(value, dt.time)
            at = dt.datetime.combine(before.date(), value)
            assert before <= at <= after or before.date() != after.date()
        elif want == "now as text":
            assert len(value) == 19
            assert before <= dt.datetime.fromisoformat(value) <= after
        else:
            assert value == want and type(value) is type(want), name


def test_a_default_sqlite_would_store_in_another_form_follows_the_column_type_it_falls_back_to(
    tmp_path, owner_db, psql
):
    """A column whose values fall back to text takes its default as text."""
    url = _sqlite(
        tmp_path / "f.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 5,
                        m INTEGER DEFAULT 'none');
        INSERT INTO t (n, m) VALUES ('five', 1);
    """,
    )
    out = tmp_path / "f.postgres.sql.gz"
    result = export(url, "postgres", out)
    assert [w.split(":")[0] for w in result.warnings] == ["table t, column n", "table t, column m"]
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert pg.execute("INSERT INTO t DEFAULT VALUES RETURNING n, m").fetchone() == ("5", None)


def test_hostile_default_text_restores_as_the_string_it_is(tmp_path, owner_db, psql):
    marker = tmp_path / "ran"
    evil = f"x'); DROP TABLE t; --\n\\! touch {marker}\n\\\\! touch {marker}\r"
    quoted = "'" + evil.replace("'", "''") + "'"
    url = _sqlite(
        tmp_path / "h.db",
        f"CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT NOT NULL DEFAULT {quoted},\n"
        f'"\\! touch {marker}" TEXT NOT NULL DEFAULT "\\! touch {marker}");',
    )
    out = tmp_path / "h.postgres.sql.gz"
    assert export(url, "postgres", out).warnings == ()
    restore(psql, owner_db, out)
    assert not marker.exists()
    with psycopg.connect(owner_db) as pg:
        assert pg.execute("INSERT INTO t DEFAULT VALUES RETURNING s").fetchone() == (evil,)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("42", ("value", 42)),
        ("- (+ (-1))", ("value", 1)),
        ("-0.0", ("value", -0.0)),
        ("((7))", ("value", 7)),
        ("0xFFFFFFFFFFFFFFFF", ("value", -1)),
        ("9223372036854775808", ("value", 9.223372036854776e18)),
        ("1e3", ("value", 1000.0)),
        (".5", ("value", 0.5)),
        ("'a''b'", ("value", "a'b")),
        ("x'0aFF'", ("value", b"\n\xff")),
        ("null", ("null", None)),
        ("current_date", ("clock", "CURRENT_DATE")),
        ("time('now')", ("clock", "CURRENT_TIME")),
    ],
)
def test_the_constants_sqlite_allows_as_defaults_are_read_as_sqlite_reads_them(text, parsed):
    assert sqlite_constant(text) == parsed
    with closing(sqlite3.connect(":memory:")) as con:
        con.execute(f"CREATE TABLE t (v DEFAULT ({text}))")
        con.execute("INSERT INTO t DEFAULT VALUES")
        (value,) = con.execute("SELECT v FROM t").fetchone()
    if parsed[0] == "value":
        assert value == parsed[1] and type(value) is type(parsed[1])


@pytest.mark.parametrize(
    "text",
    [
        "1 + 2",
        "-'1'",
        "x'0'",
        "x'zz'",
        "0x",
        "1.2.3",
        "'open",
        "abs(1)",
        "datetime('now', 'localtime')",
        "CURRENT_TIMESTAMP || 'x'",
        "(1",
        "1; DROP TABLE t",
        "'a' 'b'",
        "[ident]",
    ],
)
def test_anything_else_is_not_a_constant(text):
    with pytest.raises(NotCarried):
        sqlite_constant(text)


def test_the_models_server_defaults_win_over_sqlites(tmp_path, owner_db, psql):
    url = _sqlite(
        tmp_path / "m.db",
        """
        CREATE TABLE item (id INTEGER PRIMARY KEY, kind TEXT NOT NULL DEFAULT 'sqlite',
                           n INTEGER NOT NULL DEFAULT 1, at DATETIME NOT NULL DEFAULT '2000-01-01',
                           ref CHAR(32) NOT NULL DEFAULT '0123456789abcdef0123456789abcdef',
                           extra TEXT DEFAULT 'kept', flag BOOLEAN NOT NULL DEFAULT 0,
                           seen DATETIME NOT NULL DEFAULT (datetime('now')),
                           epoch INTEGER NOT NULL DEFAULT 0,
                           stamp DATETIME NOT NULL DEFAULT '2000-01-01');
        INSERT INTO item (id) VALUES (1);
    """,
    )
    md = sa.MetaData()
    item = sa.Table(
        "item",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False, server_default="it's the model's"),
        sa.Column("n", sa.Integer, nullable=False, server_default=sa.text("42")),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        # a text() in PostgreSQL's words is not in SQLite's either: not carried
        sa.Column("ref", sa.Uuid, nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("extra", sa.Text),  # no server_default: SQLite's is kept
        # text() in SQLite's words, as an app written on SQLite has them
        sa.Column("flag", sa.Boolean, nullable=False, server_default=sa.text("0")),
        sa.Column("seen", sa.DateTime, nullable=False, server_default=sa.text("(datetime('now'))")),
        # SQLite's SQL that PostgreSQL does not read, and a string the column refuses (SQLite
        # stores the word itself): not carried, else the whole restore would fail
        sa.Column(
            "epoch", sa.Integer, nullable=False, server_default=sa.text("(strftime('%s','now'))")
        ),
        sa.Column("stamp", sa.DateTime, nullable=False, server_default="CURRENT_TIMESTAMP"),
    )
    out = tmp_path / "m.postgres.sql.gz"
    warnings = export(url, "postgres", out, metadata=md).warnings
    assert warnings == (
        "table item, column ref: default gen_random_uuid() not carried to PostgreSQL "
        "(not a constant)",
        "table item, column epoch: default (strftime('%s','now')) not carried to PostgreSQL "
        "(not a constant)",
        "table item, column stamp: default CURRENT_TIMESTAMP not carried to PostgreSQL "
        "(a PostgreSQL timestamp without time zone column refuses it: "
        "'CURRENT_TIMESTAMP' is not a date and time)",
    )
    dump = gzip.decompress(out.read_bytes()).decode()
    assert "strftime" not in dump and "gen_random_uuid" not in dump
    restore(psql, owner_db, out)
    engine = sa.create_engine(owner_db.replace("postgresql://", "postgresql+psycopg://", 1))
    given = {"ref": uuid.UUID(int=5), "epoch": 7, "stamp": dt.datetime(2001, 2, 3)}
    try:
        with engine.begin() as con:
            before = dt.datetime.now(UTC)
            new = con.execute(item.insert().values(**given).returning(*item.c)).one()._mapping
            after = dt.datetime.now(UTC)
    finally:
        engine.dispose()
    assert new["id"] == 2
    assert (new["kind"], new["n"], new["extra"]) == ("it's the model's", 42, "kept")
    assert before - dt.timedelta(seconds=5) <= new["at"] <= after + dt.timedelta(seconds=5)
    assert new["flag"] is False
    naive_utc = (before.replace(tzinfo=None), after.replace(tzinfo=None))
    assert naive_utc[0] - dt.timedelta(seconds=5) <= new["seen"] <= naive_utc[1]
    assert {k: new[k] for k in given} == given
