"""The paths between the two kinds of database, value by value.

- PostgreSQL -> ``sqlite3_db`` and ``sqlite3`` on the real datasets (Pagila, Chinook): every table,
  every row, every value as the README's table of rules says it is stored (the expected values are
  computed here from those rules, never by the engine's own converters), and both formats give
  the same database.
- The three cross paths not yet proven consistent (PostgreSQL -> ``sqlite3_db`` / ``sqlite3``,
  SQLite -> ``postgres``) copy one snapshot while an app keeps moving money.
- SQLite's hard cases -> ``postgres``: every value PostgreSQL can hold arrives, and every value
  it cannot is refused with the table, column and row named.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from decimal import Decimal, InvalidOperation
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from flask_backup_manager.engine import export

from ..conftest import BANK_SQL, DATASETS, move_money_in_postgres, move_money_in_sqlite, run_psql
from .test_postgres_to_postgres import restore
from .test_sqlite_to_sqlite import (
    build_hard_db,
    check_health,
    restore_with_cli,
    snapshot,
    sqlite_url,
)

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1)


# -- PostgreSQL -> SQLite: the README's rules, written out independently --------------------------

_KINDS = {
    "bool": "bool",
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "oid": "int",
    "float4": "float",
    "float8": "float",
    "numeric": "numeric",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "date": "date",
    "time": "time",
    "timetz": "time",
    "interval": "interval",
    "uuid": "uuid",
    "json": "json",
    "jsonb": "json",
    "bytea": "bytea",
    "text": "text",
    "varchar": "text",
    "bpchar": "text",
}


def pg_columns(con: psycopg.Connection, oid: int) -> list[tuple[str, str]]:
    """(name, kind) of each column: the README row it falls under (domains by their base type)."""
    out = []
    for name, typid in con.execute(
        "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        [oid],
    ):
        while True:
            typname, nsp, typtype, category, base = con.execute(
                "SELECT t.typname, n.nspname, t.typtype, t.typcategory, t.typbasetype"
                " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = %s",
                [typid],
            ).fetchone()
            if typtype != "d":
                break
            typid = base
        if category == "A":
            kind = "array"
        elif typtype == "e":
            kind = "enum"
        elif typtype == "r":
            kind = "range"
        elif nsp == "pg_catalog" and typname in _KINDS:
            kind = _KINDS[typname]
        else:
            kind = "other"  # inet, money, tsvector, ...: their text form
        out.append((name, kind))
    return out


def _datetime_text(v: dt.datetime) -> str:
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def canonical_json(v: object) -> str:
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def stored_in_sqlite(kind: str, v: object) -> tuple[object, str]:
    """The README's PostgreSQL -> SQLite table: the value and storage class (``typeof()``)
    SQLite must hold for a PostgreSQL value ``v`` of the given kind, as psycopg reads it (the
    kinds stored as their text form are read as PostgreSQL prints them: ``format('%s', c)``)."""
    if v is None:
        return None, "null"
    if kind == "bool":
        return (1 if v else 0), "integer"
    if kind == "int":
        return v, "integer"
    if kind == "float":
        return (None, "null") if math.isnan(v) else (v, "real")
    if kind == "numeric":
        f = float(v)  # as SQLAlchemy's Numeric binds it on SQLite: a float
        # NUMERIC affinity keeps a float that is a whole number as an INTEGER (SQLite's rule;
        # SQLAlchemy reads either back as the same Decimal)
        return (int(f), "integer") if f.is_integer() else (f, "real")
    if kind == "timestamp":
        if v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        return _datetime_text(v), "text"
    if kind == "date":
        return v.isoformat(), "text"
    if kind == "time":
        return f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}", "text"
    if kind == "interval":
        return _datetime_text(EPOCH + v), "text"
    if kind == "uuid":
        return v.hex, "text"
    if kind in ("json", "array"):
        return canonical_json(v), "text"
    if kind == "bytea":
        return bytes(v), "blob"
    return v, "text"  # text, enum labels, ranges and everything else: their text form


def _tables(con: psycopg.Connection) -> list[tuple[str, str, int, str]]:
    """(copy name, qualified name, oid, relkind) of every table; partitions only in their parent."""
    return [
        (name if nsp == "public" else f"{nsp}.{name}", qualified, oid, relkind)
        for nsp, name, qualified, oid, relkind in con.execute(
            """SELECT n.nspname, c.relname, c.oid::regclass::text, c.oid, c.relkind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                 AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"""
        )
    ]


def _diff(want: Counter, got: Counter) -> str:
    missing, extra = list((want - got).elements())[:3], list((got - want).elements())[:3]
    return f"missing {missing}, unexpected {extra}"


def assert_values_follow_the_rules(pg: str, db: Path) -> int:
    """Every table of ``pg`` is in ``db`` with the same rows, each value stored as the README
    says; returns the number of values compared."""
    compared = 0
    with psycopg.connect(pg) as src, closing(sqlite3.connect(db)) as lite:
        tables = _tables(src)
        names = {r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert names == {t[0] for t in tables}
        for key, qualified, oid, relkind in tables:
            columns = pg_columns(src, oid)
            assert [r[1] for r in lite.execute(f"PRAGMA table_info({quote(key)})")] == [
                c for c, _ in columns
            ], key
            exprs = [
                sql.SQL("format('%s', {})" if kind in ("enum", "range", "other") else "{}").format(
                    sql.Identifier(c)
                )
                for c, kind in columns
            ]
            query = sql.SQL("SELECT {} FROM {}{}").format(
                sql.SQL(", ").join(exprs),
                sql.SQL("ONLY " if relkind == "r" else ""),
                sql.SQL(qualified),
            )
            want = Counter(
                tuple(stored_in_sqlite(kind, v) for (_, kind), v in zip(columns, row, strict=True))
                for row in src.execute(query)
            )
            select = ", ".join(f"{quote(c)}, typeof({quote(c)})" for c, _ in columns)
            got = Counter()
            for row in lite.execute(f"SELECT {select} FROM {quote(key)}"):
                values = []
                for i, (_, kind) in enumerate(columns):
                    v, cls = row[2 * i], row[2 * i + 1]
                    if kind in ("json", "array") and v is not None:
                        v = canonical_json(json.loads(v))
                    values.append((v, cls))
                got[tuple(values)] += 1
            assert sum(got.values()) == sum(want.values()), key
            assert got == want, f"{key}: {_diff(want, got)}"
            compared += sum(want.values()) * len(columns)
    return compared


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def export_both_sqlite_formats(pg: str, tmp_path: Path, **kw) -> Path:
    """Export ``pg`` as ``sqlite3_db`` and as ``sqlite3`` (restored with the sqlite3 shell);
    both are healthy and hold the same database. Returns the ``sqlite3_db`` file."""
    db, dump, cli = tmp_path / "copy.sqlite3", tmp_path / "copy.sql.gz", tmp_path / "cli.db"
    export(pg, "sqlite3_db", db, **kw)
    export(pg, "sqlite3", dump, **kw)
    restore_with_cli(dump, cli)
    check_health(db)
    check_health(cli)
    assert snapshot(cli) == snapshot(db)  # sqlite_master SQL, every row, every storage class
    return db


def test_pagila_to_sqlite_keeps_every_table_row_and_value_by_the_rules(pagila_url, tmp_path):
    db = export_both_sqlite_formats(pagila_url, tmp_path)
    assert assert_values_follow_the_rules(pagila_url, db) > 250_000
    with closing(sqlite3.connect(db)) as con:
        # the partitioned table once, with every partition's rows
        assert con.execute("SELECT count(*) FROM payment").fetchone() == (16_044,)
        assert con.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'payment_p%'"
        ).fetchone() == (0,)
        # PostgreSQL's text form of a range: bounds with a space are quoted
        assert con.execute("SELECT rental_period FROM rental WHERE rental_id = 2").fetchone() == (
            '["2005-05-24 22:54:33","2005-05-28 19:40:33")',
        )


CHINOOK_EXTRA = """
CREATE SCHEMA "Other";
CREATE TABLE "Other"."Invoice Log" (
    invoice_id integer PRIMARY KEY REFERENCES public.invoice (invoice_id),
    at timestamptz NOT NULL, stay tstzrange, amounts numrange, days daterange,
    late interval, total numeric(10, 2), paid boolean, ref uuid, note jsonb, ip inet
);
INSERT INTO "Other"."Invoice Log"
SELECT invoice_id, invoice_date AT TIME ZONE 'America/New_York',
       tstzrange(invoice_date AT TIME ZONE 'America/New_York',
                 invoice_date AT TIME ZONE 'America/New_York' + interval '1 day 00:00:00.25'),
       numrange(total / 1000000, total * 10, '(]'), daterange(invoice_date::date, NULL),
       invoice_date - '2009-01-01', total, invoice_id % 3 = 0,
       md5(invoice_id::text)::uuid, jsonb_build_object('n', invoice_id, 'c', billing_city),
       ('10.0.0.' || invoice_id % 250)::inet
FROM public.invoice;
"""


@pytest.fixture
def chinook_pg(make_pg_db, psql) -> str:
    """Chinook on PostgreSQL, plus a table outside ``public`` with time zones, ranges and
    intervals, in a database whose sessions run in a time zone that is not UTC."""
    url = make_pg_db()
    script = (DATASETS / "chinook" / "Chinook_PostgreSql.sql").read_text()
    script = re.sub(r"^(DROP DATABASE|CREATE DATABASE|\\c) .*$", "", script, flags=re.M)
    run_psql(psql, url, stdin=(script + CHINOOK_EXTRA).encode())
    name = sa.engine.make_url(url).database  # the URL may end in ?host=<socket directory>
    run_psql(psql, url, "-c", f"ALTER DATABASE {name} SET timezone = 'Asia/Kolkata'")
    return url


def test_chinook_to_sqlite_keeps_every_table_row_and_value_by_the_rules(chinook_pg, tmp_path):
    db = export_both_sqlite_formats(chinook_pg, tmp_path)
    assert assert_values_follow_the_rules(chinook_pg, db) > 50_000
    with closing(sqlite3.connect(db)) as con:
        row = con.execute(
            'SELECT at, stay FROM "Other.Invoice Log" WHERE invoice_id = 1'
        ).fetchone()
    # 2021-01-01 00:00 in New York is 05:00 UTC; the range keeps the session's offset
    assert row == (
        "2021-01-01 05:00:00.000000",
        '["2021-01-01 10:30:00+05:30","2021-01-02 10:30:00.25+05:30")',
    )


# -- the host's models read the copy as they read PostgreSQL -------------------------------------

RATINGS = ("G", "PG", "PG-13", "R", "NC-17")


def pagila_models() -> tuple[sa.Table, sa.Table]:
    """How an app that runs on PostgreSQL and on SQLite would declare two of Pagila's tables
    (``payment_date`` is a ``timestamp`` in this Pagila)."""
    md = sa.MetaData()
    payment = sa.Table(
        "payment",
        md,
        sa.Column("payment_id", sa.Integer),
        sa.Column("customer_id", sa.SmallInteger),
        sa.Column("amount", sa.Numeric(5, 2)),
        sa.Column("payment_date", sa.DateTime),
    )
    film = sa.Table(
        "film",
        md,
        sa.Column("film_id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(255)),
        sa.Column("description", sa.Text),
        sa.Column("release_year", sa.Integer),
        sa.Column("rental_rate", sa.Numeric(4, 2)),
        sa.Column("rating", sa.Enum(*RATINGS, name="mpaa_rating")),
        sa.Column("special_features", sa.ARRAY(sa.Text).with_variant(sa.JSON(), "sqlite")),
        sa.Column("fulltext", sa.Text),
        sa.Column("last_update", sa.DateTime),
    )
    return payment, film


def _read(url: str, table: sa.Table, order: sa.Column) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return con.execute(sa.select(table).order_by(order)).all()
    finally:
        engine.dispose()


def test_pagila_models_read_the_sqlite_copy_as_they_read_postgres(pagila_url, tmp_path):
    payment, film = pagila_models()
    db = tmp_path / "copy.sqlite3"
    export(pagila_url, "sqlite3_db", db, metadata=payment.metadata)
    pg = pagila_url.replace("postgresql://", "postgresql+psycopg://", 1)
    for table, order in ((payment, payment.c.payment_id), (film, film.c.film_id)):
        want = _read(pg, table, order)
        got = _read(f"sqlite:///{db}", table, order)
        assert len(got) == len(want) >= 1000
        assert got == want, table.name
    assert isinstance(got[0].rental_rate, Decimal) and isinstance(got[0].special_features, list)


def test_a_timestamptz_model_reads_the_copy_as_naive_utc(chinook_pg, tmp_path):
    md = sa.MetaData()
    log = sa.Table(
        "Invoice Log",
        md,
        sa.Column("invoice_id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("total", sa.Numeric(10, 2)),
        sa.Column("note", sa.JSON),
        sa.Column("ref", sa.Uuid),
        schema="Other",
    )
    db = tmp_path / "copy.sqlite3"
    export(chinook_pg, "sqlite3_db", db, metadata=md)
    on_sqlite = log.to_metadata(sa.MetaData(), schema=None, name="Other.Invoice Log")
    want = _read(chinook_pg.replace("postgresql://", "postgresql+psycopg://", 1), log, log.c[0])
    got = _read(f"sqlite:///{db}", on_sqlite, on_sqlite.c[0])
    assert len(got) == len(want) == 412
    assert want[0].at.utcoffset() == dt.timedelta(hours=5, minutes=30)
    for a, b in zip(want, got, strict=True):
        assert b.at == a.at.astimezone(UTC).replace(tzinfo=None)
        assert (b.invoice_id, b.total, b.note, b.ref) == (a.invoice_id, a.total, a.note, a.ref)


# -- one snapshot while money moves ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_postgres_to_sqlite_reads_one_snapshot_while_money_moves(pg_url, psql, tmp_path, fmt):
    """Transfers from ``checking`` to ``savings`` commit all through the export; the SQLite
    copy still balances, because both tables were read in the same snapshot."""
    run_psql(psql, pg_url, stdin=BANK_SQL)
    stop, moved = threading.Event(), []
    thread = threading.Thread(target=move_money_in_postgres, args=(pg_url, stop, moved))
    thread.start()
    out = tmp_path / "bank.out"
    try:
        while len(moved) < 20:
            time.sleep(0.01)
        before = len(moved)
        export(pg_url, fmt, out, progress=lambda p: time.sleep(0.2))
        during = len(moved) - before
    finally:
        stop.set()
        thread.join()
    assert during > 20
    if fmt == "sqlite3":
        restore_with_cli(out, tmp_path / "restored.db")
        out = tmp_path / "restored.db"
    with closing(sqlite3.connect(out)) as con:
        total = con.execute(
            "SELECT (SELECT sum(balance) FROM checking) + (SELECT sum(balance) FROM savings)"
        ).fetchone()[0]
    assert total == 4_000_000


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sqlite_to_postgres_reads_one_snapshot_while_the_app_moves_money(
    owner_db,
    psql,
    tmp_path,
    journal,
):
    """The same from SQLite, in both journal modes: the restored PostgreSQL copy balances."""
    db = tmp_path / "bank.db"
    with closing(sqlite3.connect(db, isolation_level=None)) as con:
        con.execute(f"PRAGMA journal_mode={journal}")
        con.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        con.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO a VALUES (?, 1000)", ((i,) for i in range(200)))
        con.executemany("INSERT INTO b VALUES (?, 1000)", ((i,) for i in range(200)))
        con.execute("COMMIT")
    stop, commits = threading.Event(), []

    writer = threading.Thread(target=move_money_in_sqlite, args=(db, stop, commits, 0.001))
    writer.start()
    out = tmp_path / "bank.postgres.sql.gz"
    try:
        while len(commits) < 20:
            time.sleep(0.01)
        before = len(commits)
        export(sqlite_url(db), "postgres", out, progress=lambda p: time.sleep(0.1))
        during = len(commits) - before
    finally:
        stop.set()
        writer.join()
    assert during > 10
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as con:
        total = con.execute(
            "SELECT (SELECT sum(balance) FROM a) + (SELECT sum(balance) FROM b)"
        ).fetchone()[0]
    assert total == 400 * 1000


# -- SQLite hard cases -> postgres -----------------------------------------------------------------

REFUSED = object()
#: the bytea a column without a model falls back to last: it holds any SQLite value
ANY_BYTES = "bytea, numbers as their text"


def pg_column(declared: str) -> str:
    """The README's SQLite -> PostgreSQL table: the PostgreSQL type of a declared type."""
    d = declared.strip().upper()
    base = d.split("(")[0].strip()
    if base == "BOOLEAN":
        return "boolean"
    if base in ("INTEGER", "INT", "BIGINT"):
        return "bigint"
    if base in ("REAL", "FLOAT", "DOUBLE"):
        return "double precision"
    if base in ("NUMERIC", "DECIMAL"):
        return "numeric" if base == d else "numeric(" + d.split("(")[1].replace(",", ", ")
    if base in ("VARCHAR", "CHAR"):
        n = d.split("(")[1].rstrip(")").strip()
        return f"character varying({n})" if base == "VARCHAR" else f"character({n})"
    if base == "BLOB":
        return "bytea"
    return "text"  # TEXT, CLOB, no type, anything else (STRING, ANY, ...)


def in_postgres(pg_type: str, v: object) -> object:
    """What PostgreSQL holds for SQLite value ``v`` in a column of ``pg_type``, or REFUSED
    when PostgreSQL cannot hold it there (which the export must refuse, naming it)."""
    if v is None:
        return None
    if pg_type == "text" or pg_type.startswith("character varying"):
        if isinstance(v, bytes):  # a blob in a text column: its UTF-8 text, if it is that
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                return REFUSED
        text = repr(v) if isinstance(v, float) else str(v)  # a REAL as its exact shortest text
        if "\x00" in text:
            return REFUSED
        if pg_type != "text" and len(text) > int(pg_type.split("(")[1].rstrip(")")):
            return REFUSED
        return text
    if pg_type == "bigint":
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or not -(2**63) <= v < 2**63:
            return REFUSED  # text, blobs, fractions, out of range
        return v
    if pg_type == "double precision":
        return float(v) if isinstance(v, int | float) else REFUSED
    if pg_type == "numeric":
        if isinstance(v, bytes):
            return REFUSED
        try:
            return Decimal(repr(v) if isinstance(v, float) else str(v).strip())
        except InvalidOperation:
            return REFUSED
    if pg_type == "bytea":  # a blob; text as its UTF-8 bytes; numbers are not binary data
        if isinstance(v, str):
            return v.encode("utf-8")
        return v if isinstance(v, bytes) else REFUSED
    if pg_type == ANY_BYTES:  # and numbers as the bytes of their text
        if isinstance(v, int | float):
            return (repr(v) if isinstance(v, float) else str(v)).encode()
        return in_postgres("bytea", v)
    raise AssertionError(f"no rule for {pg_type}")


def fallen_back(pg_type: str, values: list) -> str:
    """The README's fallback: the type a column without a model gets for ``values``, its own
    where that holds them all, else text where that does (but for a bytea column), else bytea
    holding any value."""
    if all(in_postgres(pg_type, v) is not REFUSED for v in values):
        return pg_type
    if pg_type not in ("text", "bytea") and all(
        in_postgres("text", v) is not REFUSED for v in values
    ):
        return "text"
    return ANY_BYTES


def canon_pg(v: object) -> object:
    """A value comparable across the two sides: floats bit for bit, Decimals by value."""
    if isinstance(v, float):
        return ("float", repr(v))
    if isinstance(v, Decimal):
        return ("numeric", str((v + 0).normalize()) if v.is_finite() else str(v))
    return (type(v).__name__, v)


def hard_tables(con: sqlite3.Connection) -> dict[str, list[tuple[str, str]]]:
    """The tables a copy carries (not SQLite's own, not FTS5 shadow tables): columns with
    their declared types, generated columns included."""
    names = [
        r[1]
        for r in con.execute("PRAGMA main.table_list")
        if r[2] in ("table", "virtual") and not r[1].startswith("sqlite_")
    ]
    return {
        n: [(r[1], r[2]) for r in con.execute(f"PRAGMA main.table_xinfo({quote(n)})") if r[6] != 1]
        for n in names
    }


def test_sqlite_hard_cases_to_postgres_keep_every_value_falling_back_where_a_type_cannot(
    tmp_path,
    owner_db,
    psql,
):
    """Export the hard-case database, which no model describes: each column whose values its
    type (the README's table) cannot all hold falls back, to text where that holds them, else
    to bytea, with a line in the backup's log naming it; exactly those columns. The dump
    restores (as a plain owner) with every value as the rules say."""
    db = build_hard_db(tmp_path / "hard.db", wide=False)
    with closing(sqlite3.connect(db, isolation_level=None)) as con:
        tables = hard_tables(con)
        original = {  # the values of each row
            t: con.execute(
                f"SELECT {', '.join(quote(c) for c, _ in cols)} FROM {quote(t)}"
            ).fetchall()
            for t, cols in tables.items()
        }
    declared = {(t, c): pg_column(d) for t, cols in tables.items() for c, d in cols}
    types = {
        (t, c): fallen_back(declared[t, c], [row[i] for row in original[t]])
        for t, cols in tables.items()
        for i, (c, _) in enumerate(cols)
    }
    fallen = {k for k in types if types[k] != declared[k]}
    assert len(fallen) > 10 and ANY_BYTES in types.values()  # the hard cases need it
    out = tmp_path / "hard.postgres.sql.gz"
    result = export(sqlite_url(db), "postgres", out)
    warned = {
        (t, c)
        for t, c in types
        for w in result.warnings
        if w.startswith(f"table {t}, column {c}: copied as PostgreSQL ")
    }
    assert warned == fallen
    assert out.exists()
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        in_pg = {
            r[0]
            for r in pg.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind = 'r'"
            )
        }
        assert in_pg == set(tables)
        for table, cols in tables.items():
            got_types = dict(
                pg.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = %s::regclass AND attnum > 0",
                    [f"public.{quote(table)}"],
                ).fetchall()
            )
            assert got_types == {
                c: "bytea" if types[table, c] == ANY_BYTES else types[table, c] for c, _ in cols
            }, table
            want = Counter()
            for row in original[table]:
                want[
                    tuple(
                        canon_pg(in_postgres(types[table, c], v))
                        for (c, _), v in zip(cols, row, strict=True)
                    )
                ] += 1
            select = sql.SQL(", ").join(sql.Identifier(c) for c, _ in cols)
            got = Counter(
                tuple(map(canon_pg, r))
                for r in pg.execute(
                    sql.SQL("SELECT {} FROM public.{}").format(select, sql.Identifier(table))
                )
            )
            assert got == want, f"{table}: {_diff(want, got)}"
