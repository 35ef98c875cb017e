"""Review of issue 11's PostgreSQL-side work by a hostile customer database: each source is
built for real, exported, restored with the documented commands (the real ``sqlite3`` shell,
with and without ``-safe``, and ``executescript``; the real ``psql`` as an ordinary database
owner) and used through the app's models. Each test pins a hole that was found and fixed."""

from __future__ import annotations

import datetime
import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_backup_manager.engine import export

from .test_dump_safety_sqlite import restore_all
from .test_postgres_to_postgres import restore, schema_dump


def copies(source: str, where: Path, fmt: str) -> tuple[list[Path], tuple[str, ...]]:
    """The source exported in ``fmt``, restored the documented ways: the databases and the
    export's warnings."""
    if fmt == "sqlite3_db":
        db = where / "copy.sqlite3"
        return [db], export(source, "sqlite3_db", db).warnings
    dump = where / "copy.sqlite3.sql.gz"
    warnings = export(source, "sqlite3", dump).warnings
    return restore_all(dump, where), warnings


def build(url: str, schema: str | sql.Composable) -> str:
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(schema)
    return url


class Base(DeclarativeBase):
    pass


# -- a default nested deeper than Python's stack -------------------------------------------


def nested_casts(depth: int) -> str:
    """``'x'::text`` cast ``depth`` times, between text and varchar: PostgreSQL keeps each
    cast, and pg_get_expr writes each in parentheses of its own."""
    expr = "'x'::text"
    for i in range(depth):
        expr = f"({expr})::{'varchar' if i % 2 == 0 else 'text'}"
    return expr


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_a_default_nested_past_pythons_stack_is_listed_not_a_failed_backup(pg_url, tmp_path, fmt):
    build(
        pg_url,
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL,"
        f" tag text DEFAULT {nested_casts(800)}, kind text NOT NULL DEFAULT {nested_casts(4)});"
        "INSERT INTO notes (body) VALUES ('kept');",
    )
    dbs, warnings = copies(pg_url, tmp_path, fmt)
    (warning,) = warnings
    assert warning.startswith("column notes.tag: its default ")
    assert warning.endswith(
        "has no SQLite equivalent and is not carried (a new row must give the value)"
    )
    for db in dbs:
        with closing(sqlite3.connect(db)) as con:
            con.execute("INSERT INTO notes (body) VALUES ('new')")
            assert con.execute("SELECT id, body, tag, kind FROM notes ORDER BY id").fetchall() == [
                (1, "kept", "x", "x"),
                (2, "new", None, "x"),  # the default nested as real ones are is carried
            ]


# -- a domain's default ------------------------------------------------------------------

DOMAIN_DEFAULTS = r"""
CREATE DOMAIN code AS text DEFAULT 'dom' CHECK (VALUE <> '');
CREATE DOMAIN code2 AS code;  -- takes code's default
CREATE DOMAIN stamp AS timestamptz DEFAULT now();
CREATE DOMAIN shouted AS text DEFAULT upper('x');
CREATE TABLE orders (
    id serial PRIMARY KEY,
    note text,
    code code NOT NULL,
    code2 code2 NOT NULL,
    own code NOT NULL DEFAULT 'own',
    none code DEFAULT NULL,
    at stamp NOT NULL,
    loud shouted
);
INSERT INTO orders (note) VALUES ('from postgres');
"""


class Order(Base):
    """The app's model of ``orders``: the database fills every column but ``note``."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str | None] = mapped_column(sa.Text)
    code: Mapped[str] = mapped_column(sa.Text, server_default=sa.FetchedValue())
    code2: Mapped[str] = mapped_column(sa.Text, server_default=sa.FetchedValue())
    own: Mapped[str] = mapped_column(sa.Text, server_default=sa.FetchedValue())
    none: Mapped[str | None] = mapped_column(sa.Text, server_default=sa.FetchedValue())
    at: Mapped[datetime.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.FetchedValue()
    )


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_a_columns_domain_default_is_carried_as_postgresql_applies_it(pg_url, tmp_path, fmt):
    build(pg_url, DOMAIN_DEFAULTS)
    dbs, warnings = copies(pg_url, tmp_path, fmt)
    assert warnings == (
        "column orders.loud: its default upper('x'::text) has no SQLite equivalent and is not "
        "carried (a new row must give the value)",
    )
    for db in dbs:
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with Session(engine) as session:
                session.add(Order(note="new"))
                session.commit()
                old, new = session.scalars(sa.select(Order).order_by(Order.id)).all()
        finally:
            engine.dispose()
        for row in (old, new):  # PostgreSQL's defaulting, then the copy's
            assert (row.code, row.code2, row.own, row.none) == ("dom", "dom", "own", None)
        assert abs(new.at - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)) < (
            datetime.timedelta(minutes=2)
        )


# -- NaN, which SQLite cannot store ----------------------------------------------------------

NAN = r"""
CREATE TABLE readings (
    id serial PRIMARY KEY,
    label text NOT NULL,
    value double precision NOT NULL DEFAULT 'NaN',
    exact numeric(10, 2) NOT NULL,
    ok real NOT NULL
);
INSERT INTO readings (label, exact, ok) SELECT 'row ' || n, n, n FROM generate_series(1, 12000) n;
UPDATE readings SET value = n * 0.5 FROM generate_series(1, 12000) n WHERE id = n AND n <> 11000;
UPDATE readings SET exact = 'NaN' WHERE id = 11500;
CREATE TABLE probes (id int PRIMARY KEY, reading int NOT NULL REFERENCES readings);
INSERT INTO probes VALUES (1, 11000);
CREATE SCHEMA readings;  -- its tables are "readings.moved0"... in SQLite
CREATE TABLE readings.moved0 (id int PRIMARY KEY);
CREATE TABLE readings."MOVED1" (id int PRIMARY KEY);
CREATE INDEX readings_value ON readings (value);
"""


class Reading(Base):
    __tablename__ = "readings"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.Text)
    value: Mapped[float | None] = mapped_column(sa.Float)
    exact: Mapped[float | None] = mapped_column(sa.Numeric(10, 2))
    ok: Mapped[float] = mapped_column(sa.Float)


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_nan_in_a_not_null_column_is_null_in_the_copy_not_a_failed_backup(pg_url, tmp_path, fmt):
    build(pg_url, NAN)
    dbs, warnings = copies(pg_url, tmp_path, fmt)
    assert warnings == (
        "column readings.value: its default 'NaN'::double precision has no SQLite equivalent "
        "and is not carried (a new row must give the value)",
        "column readings.value holds NaN, which SQLite cannot store: it is NULL there, and the "
        "column may be NULL in the copy",
        "column readings.exact holds NaN, which SQLite cannot store: it is NULL there, and the "
        "column may be NULL in the copy",
    )
    for db in dbs:
        with closing(sqlite3.connect(db)) as con:
            notnull = dict(
                con.execute("SELECT name, \"notnull\" FROM pragma_table_info('readings')")
            )
            indexes = [r[0] for r in con.execute("SELECT name FROM pragma_index_list('readings')")]
            assert con.execute("SELECT count(*) FROM pragma_foreign_key_check").fetchone() == (0,)
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        assert tables == {"readings", "probes", "readings.moved0", "readings.MOVED1"}
        assert notnull == {"id": 0, "label": 1, "value": 0, "exact": 0, "ok": 1}
        assert indexes == ["readings_value"]
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with Session(engine) as session:
                rows = session.scalars(sa.select(Reading).order_by(Reading.id)).all()
        finally:
            engine.dispose()
        assert len(rows) == 12000
        assert (rows[0].value, rows[10999].value, rows[11499].exact) == (0.5, None, None)
        assert rows[11998].value == 5999.5 and rows[11998].exact == 11999


# -- JSON's null in a NOT NULL column -------------------------------------------------------


class Doc(Base):
    __tablename__ = "docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[dict | None] = mapped_column(sa.JSON)
    raw: Mapped[dict | None] = mapped_column(sa.JSON)
    maybe: Mapped[dict | None] = mapped_column(sa.JSON)


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_json_null_in_a_not_null_column_is_json_null_in_the_copy(pg_url, tmp_path, fmt):
    build(
        pg_url,
        "CREATE TABLE docs (id int PRIMARY KEY, body jsonb NOT NULL, raw json NOT NULL,"
        " maybe jsonb);"
        "INSERT INTO docs VALUES (1, 'null', 'null', NULL),"
        """ (2, '{"a": [null]}', '"x"', 'null');""",
    )
    dbs, warnings = copies(pg_url, tmp_path, fmt)
    assert warnings == ()
    for db in dbs:
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with Session(engine) as session:
                rows = session.scalars(sa.select(Doc).order_by(Doc.id)).all()
                read = [(r.body, r.raw, r.maybe) for r in rows]
                session.add(Doc(id=3, body={"b": 1}, raw=[]))
                session.commit()
        finally:
            engine.dispose()
        assert read == [
            (None, None, None),
            ({"a": [None]}, "x", None),  # a nullable column's JSON null: NULL (README)
        ]
        with closing(sqlite3.connect(db)) as con:
            assert con.execute("SELECT body, raw FROM docs WHERE id = 1").fetchone() == (
                "null",
                "null",
            )
            with pytest.raises(sqlite3.IntegrityError):  # the copy's NOT NULL is kept
                con.execute("INSERT INTO docs (id, raw) VALUES (4, '1')")


# -- whole numbers in numeric columns past a float's 53 bits -----------------------------------


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_numeric_ids_past_a_floats_precision_stay_exact_and_distinct(pg_url, tmp_path, fmt):
    ids = [1234567890123456789, 1234567890123456790, -(2**63), 2**63 - 1]
    build(
        pg_url,
        "CREATE TABLE accounts (id numeric(20, 0) PRIMARY KEY, name text NOT NULL,"
        " balance numeric(12, 2) NOT NULL DEFAULT 0, huge numeric);"
        "CREATE TABLE payments (id int PRIMARY KEY, account numeric(20, 0) REFERENCES accounts);"
        + "".join(
            f"INSERT INTO accounts VALUES ({n}, 'a{i}', {i}.25, {n}00);" for i, n in enumerate(ids)
        )
        + f"INSERT INTO payments VALUES (1, {ids[1]});",
    )
    dbs, warnings = copies(pg_url, tmp_path, fmt)
    assert warnings == ()
    for db in dbs:
        with closing(sqlite3.connect(db)) as con:
            stored = con.execute(
                "SELECT id, typeof(id), balance, huge FROM accounts ORDER BY id"
            ).fetchall()
            assert con.execute("SELECT account FROM payments").fetchall() == [(ids[1],)]
        assert stored == [
            (n, "integer", i + 0.25, float(n * 100))
            for i, n in sorted(enumerate(ids), key=lambda x: x[1])
        ]
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with Session(engine) as session:
                assert session.get(Account, ids[1]).name == "a1"
        finally:
            engine.dispose()


# -- postgres: a table's default or CHECK calling a function that reads another table --------

LATE_FUNCTIONS = r"""
CREATE TABLE counters (name text PRIMARY KEY, n integer NOT NULL);
INSERT INTO counters VALUES ('invoice', 41);
CREATE TABLE kinds (kind text PRIMARY KEY);
INSERT INTO kinds VALUES ('paper'), ('online');
CREATE FUNCTION next_invoice() RETURNS integer LANGUAGE sql VOLATILE
    BEGIN ATOMIC SELECT n + 1 FROM public.counters WHERE name = 'invoice'; END;
CREATE FUNCTION known_kind(k text) RETURNS boolean LANGUAGE sql STABLE
    BEGIN ATOMIC SELECT EXISTS (SELECT 1 FROM public.kinds WHERE kind = k); END;
CREATE TABLE invoices (
    id serial PRIMARY KEY,
    no integer NOT NULL DEFAULT public.next_invoice(),
    kind text NOT NULL DEFAULT 'paper' CONSTRAINT kind_known CHECK (public.known_kind(kind))
) PARTITION BY RANGE (id);
CREATE TABLE invoices_low PARTITION OF invoices FOR VALUES FROM (MINVALUE) TO (1000);
CREATE TABLE invoices_high PARTITION OF invoices FOR VALUES FROM (1000) TO (MAXVALUE);
INSERT INTO invoices DEFAULT VALUES;
-- a default calling a function that reads a view; a CHECK not valid for the rows there
CREATE VIEW kind_list AS SELECT kind FROM kinds;
CREATE FUNCTION first_kind() RETURNS text LANGUAGE sql STABLE
    BEGIN ATOMIC SELECT min(kind) FROM public.kind_list; END;
CREATE TABLE notes (id int PRIMARY KEY, kind text NOT NULL DEFAULT public.first_kind());
INSERT INTO notes VALUES (1, 'telex');
ALTER TABLE notes ADD CONSTRAINT note_kind CHECK (public.known_kind(kind)) NOT VALID;
COMMENT ON CONSTRAINT kind_known ON invoices IS 'a kind of the kinds table';
"""


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    no: Mapped[int] = mapped_column(server_default=sa.FetchedValue())
    kind: Mapped[str] = mapped_column(sa.Text, server_default=sa.FetchedValue())


def test_a_tables_default_and_check_calling_a_function_that_reads_a_table_restore(
    pg_url, owner_db, psql, tmp_path
):
    build(pg_url, LATE_FUNCTIONS)
    dump = tmp_path / "late.postgres.sql.gz"
    export(pg_url, "postgres", dump)
    restore(psql, owner_db, dump)
    assert schema_dump(psql, owner_db) == schema_dump(psql, pg_url)
    engine = sa.create_engine(owner_db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(engine) as session:
            session.add_all([Invoice(), Invoice(id=1500, kind="online")])
            session.commit()
            rows = [
                (i.id, i.no, i.kind)
                for i in session.scalars(sa.select(Invoice).order_by(Invoice.id))
            ]
            session.add(Invoice(kind="fax"))
            with pytest.raises(sa.exc.IntegrityError, match="kind_known"):
                session.commit()
    finally:
        engine.dispose()
    assert rows == [(1, 42, "paper"), (2, 42, "paper"), (1500, 42, "online")]
    with psycopg.connect(owner_db, autocommit=True) as con:
        con.execute("INSERT INTO notes (id) VALUES (2)")
        assert con.execute("SELECT * FROM notes ORDER BY id").fetchall() == [
            (1, "telex"),
            (2, "online"),
        ]
        with pytest.raises(psycopg.errors.CheckViolation):
            con.execute("INSERT INTO notes VALUES (3, 'fax')")
