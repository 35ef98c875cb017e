"""PostgreSQL -> ``sqlite3_db`` and ``sqlite3``: the rules of
``engine/writers/sqlite/from_postgres.py``."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import sqlite3
import uuid
from contextlib import closing

import psycopg
import pytest
import sqlalchemy as sa

from flask_backup_manager.engine import export

from .test_sqlite_to_sqlite import (
    DirWatch,
    check_health,
    restore_with_cli,
    restore_with_python,
    snapshot,
)

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE SCHEMA other;
CREATE TABLE people (
    id bigserial PRIMARY KEY, name text NOT NULL, nick varchar(20) UNIQUE, active boolean,
    born date, seen timestamp, seen_tz timestamptz, wake time, wake_tz timetz,
    height double precision, weight real, balance numeric(12, 2), big numeric, guid uuid,
    doc jsonb, meta json, tags text[], scores int[], photo bytea, feeling mood, span interval,
    ip inet, during int4range, cash money
);
CREATE INDEX people_name ON people (name);
CREATE TABLE other.pets (owner_id bigint REFERENCES people (id), n int, name text,
                         PRIMARY KEY (owner_id, n));
CREATE TABLE other.things (
    id bigint PRIMARY KEY, name text, active boolean, born date, seen timestamp, wake time,
    balance numeric(12, 2), guid uuid, doc jsonb, feeling mood, span interval, photo bytea
);
CREATE TABLE other.toys (id int PRIMARY KEY, owner_id bigint, n int,
                         FOREIGN KEY (owner_id, n) REFERENCES other.pets (owner_id, n));
"""

GUID = uuid.UUID("12345678-1234-5678-1234-567812345678")
ROW = {
    "name": 'it\'s "q" \\N\ttab\r\nnew 😀',
    "nick": "Bob",
    "active": True,
    "born": datetime.date(1999, 12, 31),
    "seen": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    "seen_tz": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    "wake": datetime.time(7, 30),
    "height": 1e308,
    "weight": 0.5,
    "balance": decimal.Decimal("12.34"),
    "big": decimal.Decimal("3.25"),
    "guid": GUID,
    "doc": {"a": [1, 2.5, None], "b": "ü"},
    "tags": ["x", "y'z"],
    "scores": [1, 2, 3],
    "photo": b"\x00\x01\xff",
    "feeling": "happy",
    "span": datetime.timedelta(days=1, seconds=3),
}


@pytest.fixture
def pg_source(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(SCHEMA)
        cols = ", ".join(ROW)
        marks = ", ".join(["%s"] * len(ROW))
        con.execute(
            f"INSERT INTO people ({cols}) VALUES ({marks})",
            [psycopg.types.json.Jsonb(v) if k == "doc" else v for k, v in ROW.items()],
        )
        con.execute(
            "UPDATE people SET wake_tz = '07:30:00+02', meta = '[1, {\"x\": null}]', "
            "ip = '10.0.0.1/8', during = '[1,5)', cash = 12.5"
        )
        con.execute("INSERT INTO people (name) VALUES ('nulls')")
        con.execute("INSERT INTO other.pets VALUES (1, 1, 'rex'), (1, 2, NULL)")
        con.execute("INSERT INTO other.toys VALUES (10, 1, 2), (11, NULL, NULL)")
        con.execute(
            "INSERT INTO other.things SELECT id, name, active, born, seen, wake, balance, guid, "
            "doc, feeling, span, photo FROM people"
        )
    return pg_url


def test_postgres_to_sqlite3_db_and_sqlite3_give_the_same_database(pg_source, tmp_path):
    db, dump = tmp_path / "copy.sqlite3", tmp_path / "copy.sql.gz"
    events = []
    export(pg_source, "sqlite3_db", db, progress=events.append)
    export(pg_source, "sqlite3", dump)
    restore_with_cli(dump, tmp_path / "cli.db")
    restore_with_python(dump, tmp_path / "py.db").close()
    want = snapshot(db)
    assert snapshot(tmp_path / "cli.db") == want
    assert snapshot(tmp_path / "py.db") == want
    check_health(db)
    finished = dict(e.finished for e in events if e.finished)
    assert finished == {"people": 2, "other.pets": 2, "other.toys": 2, "other.things": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cli.db",
        "copy.sql.gz",
        "copy.sqlite3",
        "py.db",
    ]


def test_postgres_values_are_stored_as_sqlalchemy_stores_them_on_sqlite(pg_source, tmp_path):
    db = tmp_path / "copy.sqlite3"
    export(pg_source, "sqlite3_db", db)
    with closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM people WHERE id = 1").fetchone()
        nulls = con.execute("SELECT * FROM people WHERE id = 2").fetchone()
        sql = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    assert row["name"] == ROW["name"] and row["nick"] == "Bob"
    assert row["active"] == 1
    assert row["born"] == "1999-12-31"
    assert row["seen"] == "2024-01-02 03:04:05.000006"
    assert row["seen_tz"] == "2024-01-02 03:04:05.000000"  # UTC
    assert row["wake"] == "07:30:00.000000" and row["wake_tz"] == "07:30:00.000000"
    assert row["height"] == 1e308 and row["weight"] == 0.5
    assert row["balance"] == 12.34 and row["big"] == 3.25
    assert row["guid"] == GUID.hex
    assert json.loads(row["doc"]) == ROW["doc"] and json.loads(row["meta"]) == [1, {"x": None}]
    assert json.loads(row["tags"]) == ["x", "y'z"] and json.loads(row["scores"]) == [1, 2, 3]
    assert row["photo"] == b"\x00\x01\xff"
    assert row["feeling"] == "happy"
    assert row["span"] == "1970-01-02 00:00:03.000000"
    assert row["ip"] == "10.0.0.1/8" and row["during"] == "[1,5)"
    assert row["cash"].endswith("12.50")
    assert all(nulls[k] is None for k in nulls.keys() if k not in ("id", "name"))
    assert '"id" INTEGER PRIMARY KEY' in sql["people"]
    assert (
        'FOREIGN KEY ("owner_id", "n") REFERENCES "other.pets" ("owner_id", "n")'
        in (sql["other.toys"])
    )


def things(md: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    """The host app's model of ``other.things``."""
    return sa.Table(
        name,
        md,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("active", sa.Boolean),
        sa.Column("born", sa.Date),
        sa.Column("seen", sa.DateTime),
        sa.Column("wake", sa.Time),
        sa.Column("balance", sa.Numeric(12, 2)),
        sa.Column("guid", sa.Uuid),
        sa.Column("doc", sa.JSON),
        sa.Column("feeling", sa.Enum("sad", "happy", name="mood")),
        sa.Column("span", sa.Interval),
        sa.Column("photo", sa.LargeBinary),
        schema=schema,
    )


def test_host_models_read_back_from_the_copy_what_they_read_from_postgres(pg_source, tmp_path):
    host = sa.MetaData()
    on_pg = things(host, "things", "other")
    on_sqlite = things(sa.MetaData(), "other.things", None)  # the copy's name for it
    db = tmp_path / "copy.sqlite3"
    export(pg_source, "sqlite3_db", db, metadata=host)
    pg_engine = sa.create_engine(pg_source.replace("postgresql://", "postgresql+psycopg://"))
    lite = sa.create_engine(f"sqlite:///{db}")
    try:
        with pg_engine.connect() as a, lite.connect() as b:
            want = a.execute(sa.select(on_pg).order_by(on_pg.c.id)).all()
            got = b.execute(sa.select(on_sqlite).order_by(on_sqlite.c.id)).all()
    finally:
        pg_engine.dispose()
        lite.dispose()
    assert got == want
    assert want[0].guid == GUID and want[0].balance == decimal.Decimal("12.34")


def test_row_converter_converts_only_the_columns_that_need_it():
    from flask_backup_manager.engine.writers.sqlite.from_postgres import TablePlan

    def plan(converters):
        return TablePlan("t", "", [], converters)

    assert plan([None, None]).row_converter() is None  # rows go to SQLite untouched
    convert = plan([None, str, lambda v: 1 if v else 0]).row_converter()
    assert convert((5, 7, True)) == [5, "7", 1]
    assert convert((None, None, None)) == [None, None, None]


@pytest.mark.parametrize("rows", [0, 1, 99, 100, 101, 250, 1000])
def test_rows_are_inserted_whole_by_statements_of_many_rows(rows):
    from flask_backup_manager.engine.writers.sqlite.from_postgres import TablePlan

    plan = TablePlan("t", "", [], [None] * 12)  # 83 rows per statement within 999 parameters
    con = sqlite3.connect(":memory:")
    con.execute(f"CREATE TABLE t ({', '.join(f'c{i}' for i in range(12))})")
    want = [tuple(range(r * 12, r * 12 + 12)) for r in range(rows)]
    plan.insert_rows(con, want)
    assert con.execute("SELECT * FROM t ORDER BY rowid").fetchall() == want


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_postgres_to_sqlite_temp_files_are_ones_a_cleaner_finds(pg_source, tmp_path, fmt):
    out = tmp_path / "out"
    out.mkdir()
    out = out / f"copy.{fmt}"
    with DirWatch(out.parent) as w:
        export(pg_source, fmt, out, progress=w.progress)
    assert any(".build." in n for n in w.seen) is (fmt == "sqlite3")  # the build file was seen
    assert w.strays(out) == set()


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_a_cancel_stops_the_rows_streaming_from_postgresql(pg_url, tmp_path, monkeypatch, fmt):
    """The cancel comes while rows stream in: the server stops sending, the export raises
    ExportCancelled long before the table's end, and nothing is left behind."""
    import threading

    from flask_backup_manager.engine import ExportCancelled
    from flask_backup_manager.engine.sources.postgres import PostgresSource
    from flask_backup_manager.engine.writers.sqlite import from_postgres

    with psycopg.connect(pg_url, autocommit=True) as con:  # 100 MB: more than the socket holds
        con.execute(
            "CREATE TABLE big AS SELECT i AS id, repeat(md5(i::text), 32) AS t "
            "FROM generate_series(1, 100000) i"
        )
    cancel, interrupted = threading.Event(), threading.Event()
    batches = []
    insert_rows = from_postgres.TablePlan.insert_rows
    interrupt = PostgresSource.interrupt

    def interrupting(source):  # the watch's call: the cancel has gone to the server
        interrupt(source)
        interrupted.set()

    def counting(plan, con, rows):
        batches.append(len(rows))
        if not cancel.is_set():  # at the first of 20 batches; then wait until the watch (it
            cancel.set()  # looks every 0.1 s) has sent the cancel: an event, not a pause
            assert interrupted.wait(60), "the cancel watch never interrupted the export"
        insert_rows(plan, con, rows)

    monkeypatch.setattr(PostgresSource, "interrupt", interrupting)
    monkeypatch.setattr(from_postgres.TablePlan, "insert_rows", counting)
    with pytest.raises(ExportCancelled):
        export(pg_url, fmt, tmp_path / "out", cancel=cancel)
    # the first, those read ahead (2) and those already in the socket's buffers
    assert 0 < len(batches) < 10
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_a_table_without_columns_is_a_clear_error_and_can_be_left_out(pg_url, tmp_path, fmt):
    from flask_backup_manager.engine import ExportError

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE nothing (); CREATE TABLE kept (id int PRIMARY KEY)")
        con.execute("INSERT INTO nothing DEFAULT VALUES; INSERT INTO kept VALUES (1)")
    with pytest.raises(ExportError, match=r"^table nothing has no columns, which SQLite cannot"):
        export(pg_url, fmt, tmp_path / "out")
    assert os.listdir(tmp_path) == []
    assert export(pg_url, fmt, tmp_path / "out", exclude=["nothing"]).rows == 1


def test_rows_read_in_binary_are_the_rows_read_as_text(pg_url, tmp_path, monkeypatch):
    """Tables of only BINARY_SAFE types are read in binary (less to parse): the SQLite copy
    holds exactly what it holds when the same rows are read as text."""
    from flask_backup_manager.engine.sources import postgres
    from flask_backup_manager.engine.url import parse_url

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("""
            CREATE TABLE safe (i2 int2, i4 int4, i8 int8 PRIMARY KEY, o oid, f float8, b bool,
                               t text, v varchar(5), c char(6), by bytea, u uuid);
            INSERT INTO safe VALUES
              (-32768, -2147483648, -9223372036854775808, 4294967295, 0.1, true, 'déjà 😀',
               'abc', 'ab', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
              (32767, 2147483647, 9223372036854775807, 0, -0.0, false, '', '', '', '', NULL),
              (NULL, NULL, 0, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL),
              (1, 2, 1, 3, 'Infinity', true, e'tab\\there', 'x', 'y', '\\x', NULL),
              (1, 2, 2, 3, 5e-324, true, 'x', 'x', 'y', '\\x00', NULL),
              (1, 2, 3, 3, 1.7976931348623157e308, true, 'x', 'x', 'y', '\\x00', NULL);
            CREATE TABLE dated (id int PRIMARY KEY, at timestamptz);
            INSERT INTO dated VALUES (1, '2020-01-01 12:00+02');
        """)
    source = postgres.PostgresSource(parse_url(pg_url))
    assert {s.key: s.binary for s in source.tables()} == {"safe": True, "dated": False}
    source.close()
    export(pg_url, "sqlite3_db", tmp_path / "binary.db")
    monkeypatch.setattr(postgres, "BINARY_SAFE", set())
    export(pg_url, "sqlite3_db", tmp_path / "text.db")
    assert snapshot(tmp_path / "binary.db") == snapshot(tmp_path / "text.db")
    with closing(sqlite3.connect(tmp_path / "binary.db")) as con:
        assert con.execute("SELECT count(*) FROM safe").fetchone() == (6,)


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_infinity_and_years_python_cannot_hold_stay_postgresql_text(pg_url, tmp_path, fmt):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("""CREATE TABLE spans (id int PRIMARY KEY, d date, ts timestamp,
                                          tz timestamptz)""")
        con.execute("""INSERT INTO spans VALUES
            (1, 'infinity', '-infinity', 'infinity'),
            (2, '2024-02-29', '1999-12-31 23:59:59', '2000-01-01 00:00+02')""")
    out = tmp_path / f"spans.{fmt}"
    export(pg_url, fmt, out)
    db = tmp_path / "spans.db"
    if fmt == "sqlite3":
        restore_with_cli(out, db)
    else:
        db = out
    with closing(sqlite3.connect(db)) as lite:
        assert lite.execute("SELECT * FROM spans ORDER BY id").fetchall() == [
            (1, "infinity", "-infinity", "infinity"),
            (2, "2024-02-29", "1999-12-31 23:59:59.000000", "1999-12-31 22:00:00.000000"),
        ]
