"""PostgreSQL -> ``sqlite3_db`` and ``sqlite3`` carry the server defaults SQLite has an
equivalent of (``engine/writers/sqlite/defaults.py``), so an app started on its copy inserts
rows relying on them (issue 11, class 3); the others are listed in the backup's log."""

from __future__ import annotations

import datetime
import decimal
import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.base import CONTROL
from flask_backup_manager.engine.writers.sqlite.defaults import Parsed, parse, value_sql

from .test_dump_safety_sqlite import files, restore_all

SCHEMA = r"""
CREATE TYPE mood AS ENUM ('sad', 'happy');
-- as the uuid-ossp extension would make it (without needing the extension installed)
CREATE FUNCTION public.uuid_generate_v4() RETURNS uuid LANGUAGE sql
    AS 'SELECT pg_catalog.gen_random_uuid()';
CREATE TABLE inputs (
    id bigserial PRIMARY KEY,
    payload text,
    step integer NOT NULL DEFAULT 0,
    neg integer NOT NULL DEFAULT -1,
    neg_big bigint NOT NULL DEFAULT (-12),
    price numeric(10, 2) NOT NULL DEFAULT 9.95,
    loss numeric NOT NULL DEFAULT '-2.50'::numeric,
    ratio double precision NOT NULL DEFAULT -0.25,
    label text NOT NULL DEFAULT 'abc',
    code varchar(20) NOT NULL DEFAULT 'x-1'::character varying,
    grade char(3) NOT NULL DEFAULT 'ab',
    active boolean NOT NULL DEFAULT true,
    hidden boolean NOT NULL DEFAULT false,
    born date NOT NULL DEFAULT '2020-01-31',
    seen timestamp NOT NULL DEFAULT '2020-01-01 10:00:00.5',
    seen_tz timestamptz NOT NULL DEFAULT '2020-01-01 10:00:00+02',
    wake time NOT NULL DEFAULT '07:30',
    created timestamptz NOT NULL DEFAULT now(),
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_utc timestamp NOT NULL DEFAULT timezone('utc', now()),
    stamped timestamp(0) NOT NULL DEFAULT LOCALTIMESTAMP(0),
    clock time NOT NULL DEFAULT CURRENT_TIME,
    day date NOT NULL DEFAULT CURRENT_DATE,
    doc jsonb NOT NULL DEFAULT '{"a": [1, 2.5, null], "b": "ü"}',
    meta json NOT NULL DEFAULT '[]'::json,
    guid uuid NOT NULL DEFAULT gen_random_uuid(),
    guid4 uuid NOT NULL DEFAULT public.uuid_generate_v4(),
    fixed uuid NOT NULL DEFAULT '12345678-1234-5678-1234-567812345678',
    feeling mood NOT NULL DEFAULT 'happy',
    photo bytea NOT NULL DEFAULT '\x0102ff'::bytea,
    note text DEFAULT NULL
);
INSERT INTO inputs (payload) VALUES ('from postgres');
"""

#: the constant defaults as the models read them back
CONSTANTS = {
    "step": 0,
    "neg": -1,
    "neg_big": -12,
    "price": decimal.Decimal("9.95"),
    "loss": decimal.Decimal("-2.5"),
    "ratio": -0.25,
    "label": "abc",
    "code": "x-1",
    "grade": "ab ",  # as PostgreSQL pads a char(3)
    "active": True,
    "hidden": False,
    "born": datetime.date(2020, 1, 31),
    "seen": datetime.datetime(2020, 1, 1, 10, 0, 0, 500000),
    "seen_tz": datetime.datetime(2020, 1, 1, 8, 0),  # UTC, as the copy's rows
    "wake": datetime.time(7, 30),
    "doc": {"a": [1, 2.5, None], "b": "ü"},
    "meta": [],
    "fixed": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "feeling": "happy",
    "photo": b"\x01\x02\xff",
    "note": None,
}
#: the defaults read from the clock
CLOCKS = ("created", "created_at", "created_utc", "stamped")


class Base(DeclarativeBase):
    pass


def by_server(type_: sa.types.TypeEngine) -> Mapped:
    """A column the database fills when a row does not give it (as the app's models say)."""
    return mapped_column(type_, server_default=sa.FetchedValue())


class Input(Base):
    """The app's model of ``inputs``, with the types an app gives such columns, each filled
    by the database (whose defaults those of the copy are)."""

    __tablename__ = "inputs"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    payload: Mapped[str | None] = mapped_column(sa.Text)
    step: Mapped[int] = by_server(sa.Integer)
    neg: Mapped[int] = by_server(sa.Integer)
    neg_big: Mapped[int] = by_server(sa.BigInteger)
    price: Mapped[decimal.Decimal] = by_server(sa.Numeric(10, 2))
    loss: Mapped[decimal.Decimal] = by_server(sa.Numeric(10, 1))
    ratio: Mapped[float] = by_server(sa.Float)
    label: Mapped[str] = by_server(sa.Text)
    code: Mapped[str] = by_server(sa.String(20))
    grade: Mapped[str] = by_server(sa.CHAR(3))
    active: Mapped[bool] = by_server(sa.Boolean)
    hidden: Mapped[bool] = by_server(sa.Boolean)
    born: Mapped[datetime.date] = by_server(sa.Date)
    seen: Mapped[datetime.datetime] = by_server(sa.DateTime)
    seen_tz: Mapped[datetime.datetime] = by_server(sa.DateTime(timezone=True))
    wake: Mapped[datetime.time] = by_server(sa.Time)
    created: Mapped[datetime.datetime] = by_server(sa.DateTime(timezone=True))
    created_at: Mapped[datetime.datetime] = by_server(sa.DateTime)
    created_utc: Mapped[datetime.datetime] = by_server(sa.DateTime)
    stamped: Mapped[datetime.datetime] = by_server(sa.DateTime)
    clock: Mapped[datetime.time] = by_server(sa.Time)
    day: Mapped[datetime.date] = by_server(sa.Date)
    doc: Mapped[dict] = by_server(sa.JSON)
    meta: Mapped[list] = by_server(sa.JSON)
    guid: Mapped[uuid.UUID] = by_server(sa.Uuid)
    guid4: Mapped[uuid.UUID] = by_server(sa.Uuid)
    fixed: Mapped[uuid.UUID] = by_server(sa.Uuid)
    feeling: Mapped[str] = by_server(sa.Enum("sad", "happy", name="mood"))
    photo: Mapped[bytes] = by_server(sa.LargeBinary)
    note: Mapped[str | None] = by_server(sa.Text)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


#: how far a default from the clock may be from the insert (a generous bound, not a timing)
NEAR = datetime.timedelta(minutes=2)


@pytest.fixture
def pg_defaults(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(SCHEMA)
    return pg_url


def copies(source: str, where: Path, fmt: str, **kw) -> tuple[list[Path], tuple[str, ...]]:
    """The source exported in ``fmt`` (``sqlite3`` restored by the real sqlite3 shell, with
    and without ``-safe``, and by ``executescript``): the databases and the export's warnings."""
    if fmt == "sqlite3_db":
        db = where / "copy.sqlite3"
        return [db], export(source, "sqlite3_db", db, **kw).warnings
    dump = where / "copy.sqlite3.sql.gz"
    warnings = export(source, "sqlite3", dump, **kw).warnings
    return restore_all(dump, where), warnings


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_the_app_inserts_into_its_copy_relying_on_the_server_defaults(pg_defaults, tmp_path, fmt):
    dbs, warnings = copies(pg_defaults, tmp_path, fmt)
    assert warnings == ()
    for db in dbs:
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with Session(engine) as session:
                before = utc_now()
                session.add_all([Input(payload="new"), Input(payload="newer")])
                session.commit()
                after = utc_now()
                rows = session.scalars(sa.select(Input).order_by(Input.id)).all()
        finally:
            engine.dispose()
        assert [(r.id, r.payload) for r in rows] == [
            (1, "from postgres"),
            (2, "new"),
            (3, "newer"),
        ]
        first, new, newer = rows
        for name, want in CONSTANTS.items():
            assert getattr(first, name) == want, (db.name, name)  # PostgreSQL's defaulting
            assert getattr(new, name) == want, (db.name, name)  # the copy's
        for row in (new, newer):
            for name in CLOCKS:
                value = getattr(row, name)
                assert before - NEAR <= value <= after + NEAR, (db.name, name, value)
            assert row.stamped.microsecond == 0  # timestamp(0)
            assert isinstance(row.clock, datetime.time)
            assert row.day in (before.date(), after.date())
            for name in ("guid", "guid4"):
                value = getattr(row, name)
                assert (value.version, value.variant) == (4, uuid.RFC_4122), (name, value)
        assert len({r.guid for r in rows} | {r.guid4 for r in rows}) == 6  # random each time
        with closing(sqlite3.connect(db)) as con:
            stored = con.execute(
                "SELECT created, created_at, clock, guid, typeof(price) FROM inputs WHERE id = 2"
            ).fetchone()
        # the forms the copy's rows are in: SQLAlchemy's SQLite DateTime, Time and Uuid
        assert len(stored[0]) == len(stored[1]) == len("2001-02-03 04:05:06.789012")
        assert len(stored[2]) == len("04:05:06.789012")
        assert stored[3] == new.guid.hex and stored[4] == "real"


def test_sqlite3_keeps_the_defaults_of_the_sqlite3_db_file(pg_defaults, tmp_path):
    (db,), _ = copies(pg_defaults, tmp_path, "sqlite3_db")
    restored, _ = copies(pg_defaults, tmp_path, "sqlite3")

    def defaults(path: Path) -> list[tuple]:
        with closing(sqlite3.connect(path)) as con:
            return con.execute(
                "SELECT name, dflt_value FROM pragma_table_info('inputs')"
            ).fetchall()

    want = defaults(db)
    assert sum(d is not None for _, d in want) == 28  # all but id, payload and note
    for path in restored:
        assert defaults(path) == want


UNCARRIED = r"""
CREATE SEQUENCE counter;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT pg_catalog.now()';
CREATE TABLE settings (
    id serial PRIMARY KEY,
    key text NOT NULL,
    value text NOT NULL DEFAULT lower('X'),
    updated timestamp NOT NULL DEFAULT (pg_catalog.now() + '1 day'::interval),
    serial_no integer NOT NULL DEFAULT nextval('counter'),
    ident bigint GENERATED BY DEFAULT AS IDENTITY,
    never timestamp NOT NULL DEFAULT 'infinity',
    own_now timestamptz DEFAULT public.now(),
    short varchar(10) DEFAULT 'abcdef'::varchar(3),
    twice integer GENERATED ALWAYS AS (id * 2) STORED,
    kept integer NOT NULL DEFAULT 7
);
INSERT INTO settings (key, never) VALUES ('title', '2000-01-01');
"""


@pytest.fixture
def pg_uncarried(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(UNCARRIED)
    return pg_url


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_a_default_without_sqlite_equivalent_is_listed_in_the_log(pg_uncarried, tmp_path, fmt):
    _, warnings = copies(pg_uncarried, tmp_path, fmt)
    lost = {
        "value": "lower('X'::text)",
        "updated": "(now() + '1 day'::interval)",
        "serial_no": "nextval('public.counter'::regclass)",
        "ident": "GENERATED AS IDENTITY",
        "never": "'infinity'::timestamp without time zone",
        "own_now": "public.now()",
        "short": "'abcdef'::character varying(3)",
    }
    assert sorted(warnings) == sorted(
        f"column settings.{column}: its default {expr} has no SQLite equivalent and is not "
        "carried (a new row must give the value)"
        for column, expr in lost.items()
    )


def host_settings(md: sa.MetaData) -> sa.Table:
    """The host app's model of ``settings``, with server defaults of its own."""
    return sa.Table(
        "settings",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False, server_default="from the models"),
        sa.Column("updated", sa.DateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("serial_no", sa.Integer, nullable=False, server_default=sa.text("(40 + 2)")),
        sa.Column("ident", sa.BigInteger, nullable=False, server_default=sa.text("-1")),
        sa.Column("never", sa.DateTime, nullable=False, server_default="2999-01-01 00:00:00"),
        sa.Column("kept", sa.Integer, nullable=False),  # none of its own: PostgreSQL's is used
    )


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_the_host_models_server_defaults_are_used_where_they_give_one(pg_uncarried, tmp_path, fmt):
    dbs, warnings = copies(
        pg_uncarried, tmp_path, fmt, metadata=host_settings(sa.MetaData()).metadata
    )
    assert sorted(w.split(":")[0] for w in warnings) == [
        "column settings.own_now",
        "column settings.short",
    ]
    settings = host_settings(sa.MetaData())
    for db in dbs:
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with engine.begin() as con:
                before = utc_now()
                con.execute(sa.insert(settings).values(key="theme"))
                after = utc_now()
                row = con.execute(sa.select(settings).where(settings.c.key == "theme")).one()
        finally:
            engine.dispose()
        assert row.value == "from the models"
        assert before - NEAR <= row.updated <= after + NEAR  # CURRENT_TIMESTAMP
        assert row.serial_no == 42 and row.ident == -1
        assert row.never == datetime.datetime(2999, 1, 1)
        assert row.kept == 7


def test_untranslated_defaults_are_named_harmlessly_in_the_log(pg_url, tmp_path):
    column = "evil\x1b]0;owned\x07\nname"
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} text DEFAULT md5({}))").format(
                sql.Identifier("t\r\n.shell x"), sql.Identifier(column), sql.Literal("\x1b[2J")
            )
        )
    (warning,) = export(pg_url, "sqlite3_db", tmp_path / "copy.sqlite3").warnings
    assert not CONTROL.search(warning)
    assert "column t\\r\\n.shell x.evil\\x1b]0;owned\\x07\\nname: its default md5(" in warning


HOSTILE = [
    "'); .shell touch {m}/a; --",
    "x\n.shell touch {m}/b\n",
    "\n.output {m}/c\n.read {m}/d\n'",
    "a\r\nb\r.shell touch {m}/e\r",
    "';\nATTACH '{m}/f' AS f; --",
    '"); .system touch {m}/g',
    "go\n/\n.quit",
]


def test_hostile_default_strings_load_harmlessly_and_are_kept_exactly(pg_url, tmp_path):
    where, marks = tmp_path, tmp_path / "marks"
    marks.mkdir()
    values = [h.format(m="marks") for h in HOSTILE]  # the shell runs in `where`
    columns = [f"c{i}\n.shell touch marks/n{i}" for i in range(len(values))]
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
                sql.Identifier("kind"), sql.SQL(", ").join(map(sql.Literal, values))
            )
        )
        items = [
            sql.SQL("{} text NOT NULL DEFAULT {}").format(sql.Identifier(c), sql.Literal(v))
            for c, v in zip(columns, values, strict=True)
        ]
        items.append(sql.SQL("e kind NOT NULL DEFAULT {}").format(sql.Literal(values[0])))
        con.execute(
            sql.SQL("CREATE TABLE t (id bigserial PRIMARY KEY, {})").format(
                sql.SQL(", ").join(items)
            )
        )
    before = files(where)
    dbs, warnings = copies(pg_url, where, "sqlite3")
    assert warnings == ()
    db = where / "copy.sqlite3"
    assert export(pg_url, "sqlite3_db", db).warnings == ()
    assert list(marks.iterdir()) == []
    assert files(where) == before | {"copy.sqlite3.sql.gz", "copy.sqlite3", *(d.name for d in dbs)}
    for path in [db, *dbs]:
        with closing(sqlite3.connect(path)) as con:
            con.execute("INSERT INTO t DEFAULT VALUES")
            row = con.execute("SELECT * FROM t").fetchone()
        assert list(row) == [1, *values, values[0]], path.name
    assert list(marks.iterdir()) == []


@pytest.mark.parametrize(
    "text, want",
    [
        ("0", Parsed("constant", "0", ("integer",))),
        ("(-1)", Parsed("constant", "-1", ("integer",))),
        ("'-1'::integer", Parsed("constant", "-1", ("integer",))),
        ("0.00001", Parsed("constant", "0.00001", ("numeric",))),
        ("true", Parsed("constant", "t", ("boolean",))),
        ("NULL::text", Parsed("null", None, ("text",))),
        ("'it''s'::text", Parsed("constant", "it's", ("text",))),
        (
            "('abc'::character varying)::text",
            Parsed("constant", "abc", ("character varying", "text")),
        ),
        ('\'a b\'::other."My ""type"""', Parsed("constant", "a b", ('other."My ""type"""',))),
        ("'{1,2}'::integer[]", Parsed("constant", "{1,2}", ("integer[]",))),
        (
            "'2020-01-01 08:00:00+00'::timestamp with time zone",
            Parsed("constant", "2020-01-01 08:00:00+00", ("timestamp with time zone",)),
        ),
        ("now()", Parsed("timestamp")),
        ("CURRENT_TIMESTAMP(3)", Parsed("timestamp", precision=3)),
        ("CURRENT_DATE", Parsed("date")),
        ("LOCALTIME", Parsed("time")),
        ("timezone('utc'::text, now())", Parsed("timestamp")),
        ("(now() AT TIME ZONE 'UTC'::text)", Parsed("timestamp")),
        ("gen_random_uuid()", Parsed("uuid")),
        ('"my ext".uuid_generate_v4()', Parsed("uuid")),
        # not carried
        ("'x'", None),  # no type: not something pg_get_expr writes
        ("E'\\x41'::text", None),
        ("$$x$$::text", None),
        ("'a'::text || 'b'::text", None),
        ("'a'::text); DROP TABLE t; --", None),
        ("'a'::text, 'b'::text", None),
        ("'a'::text -- comment", None),
        ("'a'::text COLLATE \"C\"", None),
        ("'abcdef'::character varying(3)", None),
        ("('a'::text", None),
        ("public.now()", None),
        ("public.gen_random_uuid()", None),
        ("nextval('s'::regclass)", None),
        ("timezone('Europe/Paris'::text, now())", None),
        ("(CURRENT_DATE AT TIME ZONE 'utc'::text)", None),
        ("CURRENT_DATE(2)", None),
        ("$1", None),
        ("", None),
    ],
)
def test_defaults_are_read_by_a_strict_grammar(text, want):
    assert parse(text) == want


def test_stored_values_are_written_as_sqlite_literals():
    assert value_sql("it's") == "'it''s'"
    assert value_sql("a\rb") == "('a'||char(13)||'b')"  # no CR in the sqlite3 format's schema
    assert value_sql(b"\x00\xff") == "X'00ff'"
    assert [value_sql(v) for v in (None, True, -5, 0.5, 1e300)] == [
        "NULL",
        "1",
        "-5",
        "0.5",
        "1e+300",
    ]
    for bad in (float("inf"), float("nan"), 2**63, "a\x00b", decimal.Decimal(1), object()):
        with pytest.raises(ValueError):
            value_sql(bad)
    assert json.loads(value_sql('{"a": 1}')[1:-1]) == {"a": 1}


@pytest.mark.parametrize("include", [None, ["kept"]])
def test_a_table_locked_by_another_session_is_named_not_a_timeout_of_reading_defaults(
    pg_url, tmp_path, include
):
    """pg_get_expr (a default's text) waits for the table's lock like any reader: the tables
    are locked first, so the error names the table; a table left out is neither locked nor
    read, so it stops nothing."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE busy (id int PRIMARY KEY, n int NOT NULL DEFAULT 7)")
        con.execute("CREATE TABLE kept (id int PRIMARY KEY, n int NOT NULL DEFAULT 8)")
    with psycopg.connect(pg_url) as other:
        other.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        out = tmp_path / "locked.db"
        if include is None:
            with pytest.raises(ExportError) as e:
                export(pg_url, "sqlite3_db", out, lock_timeout=1)
            assert str(e.value) == (
                "table busy is locked by another session: gave up waiting after 1 s"
            )
        else:
            export(pg_url, "sqlite3_db", out, include=include, lock_timeout=1)
            with closing(sqlite3.connect(out)) as lite:
                lite.execute("INSERT INTO kept (id) VALUES (1)")
                assert lite.execute("SELECT n FROM kept").fetchall() == [(8,)]
        other.rollback()
