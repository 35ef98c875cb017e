"""SQLite -> ``postgres``: the types a column gets in PostgreSQL (issue 11). The host's models
decide where they describe a table, TypeDecorators by what they load for PostgreSQL, their
values converted as the app itself reads and writes them (never unpickled); without models the
declared name decides first, then SQLite's affinity; a column whose values do not fit its type
falls back to one that holds them, with a line in the backup's log."""

from __future__ import annotations

import builtins
import datetime as dt
import gzip
import pickle
import sqlite3
import uuid
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite.base import ischema_names

from flask_backup_manager.engine import ExportError, export

from .test_postgres_to_postgres import restore
from .test_sqlite_to_postgres import processes  # noqa: F401 (the fixture, used by name)

UTC = dt.timezone.utc


class AwareDateTime(sa.types.TypeDecorator):
    """A timezone-aware datetime that SQLite stores as naive UTC text (a common recipe)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class BinaryUUID(sa.types.TypeDecorator):
    """As sqlalchemy_utils' UUIDType(binary=True): PostgreSQL's uuid there, 16 bytes elsewhere."""

    impl = sa.BINARY(16)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID())
        return dialect.type_descriptor(sa.BINARY(16))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return str(value) if dialect.name == "postgresql" else value.bytes

    def process_result_value(self, value, dialect):
        if value is None or isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(value)


class JSONType(sa.types.TypeDecorator):
    """As sqlalchemy_utils' JSONType: json on PostgreSQL, JSON text in a TEXT column elsewhere."""

    impl = sa.UnicodeText
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON())
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value, dialect):
        if dialect.name == "postgresql" or value is None:
            return value
        import json

        return json.dumps(value)

    def process_result_value(self, value, dialect):
        if dialect.name == "postgresql" or value is None:
            return value
        import json

        return json.loads(value)


class JSONText(sa.types.TypeDecorator):
    """JSON kept as text on every database: stored the same on both."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        import json

        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value, dialect):
        import json

        return None if value is None else json.loads(value)


class Cents(sa.types.TypeDecorator):
    """Money as an integer number of cents on every database: stored the same on both."""

    impl = sa.Integer
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else int(value * 100)

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value) / 100


def app_models() -> tuple[sa.MetaData, sa.Table, sa.Table]:
    md = sa.MetaData()
    thing = sa.Table(
        "thing",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("settings", sa.PickleType, nullable=False),
        sa.Column("at", AwareDateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("token", BinaryUUID, nullable=False),
        sa.Column("doc", JSONType),
        sa.Column("meta", JSONText),
        sa.Column("took", sa.Interval),
        sa.Column("price", Cents),
        sa.Column("name", sa.String(20), nullable=False, server_default="anon"),
        sa.Column("tries", sa.Integer, nullable=False, server_default=sa.text("42")),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column(
            "stamped", sa.DateTime, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
    )
    store = sa.Table(
        "store",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.PickleType, nullable=False),
    )
    return md, thing, store


def app_rows() -> list[dict]:
    """Rows of ``thing`` as the app writes them: aware datetimes in several offsets, UUIDs
    whose bytes are no UTF-8, JSON, intervals, money."""
    return [
        {
            "id": i,
            "settings": {"title": f"Project {i}", "tags": ["a", i]},
            "at": dt.datetime(
                2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=i))
            ),
            "token": uuid.UUID(int=i * 2**100 + 255),  # bytes that are no UTF-8
            "doc": {"k": [i, None, "é"]},
            "meta": {"b": i, "a": "\\\t\n"},
            "took": dt.timedelta(days=i, seconds=5, microseconds=7),
            "price": Decimal("12.34") * i,
            "name": f"n{i}",
            "tries": i,
            "done": i % 2 == 0,
            "stamped": dt.datetime(2020, 1, 2, 3, 4, i),
        }
        for i in range(1, 6)
    ]


def _pg_engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def _types(pg: psycopg.Connection, table: str) -> dict[str, str]:
    return dict(
        pg.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0",
            [f"public.{table}"],
        ).fetchall()
    )


class Bomb:
    """Unpickling it opens ``path`` for writing: creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (builtins.open, (str(self.path), "w"))


@pytest.mark.usefixtures("processes")
def test_the_models_typedecorators_and_server_defaults_work_on_the_restored_copy(
    tmp_path, owner_db, psql
):
    md, thing, store = app_models()
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    md.create_all(lite)
    rows = app_rows()
    marker = tmp_path / "unpickled"
    bomb = pickle.dumps(Bomb(marker))
    with lite.begin() as con:
        con.execute(thing.insert(), rows)
        con.execute(store.insert(), [{"id": 1, "value": "harmless"}])
        # the app reads every settings value of the SQLite file with pickle: one that runs
        # code when loaded, written straight to the file
        con.execute(sa.text("INSERT INTO store (id, value) VALUES (2, :b)"), {"b": bomb})
    lite.dispose()

    out = tmp_path / "app.postgres.sql.gz"
    result = export(f"sqlite:///{tmp_path / 'app.db'}", "postgres", out, metadata=md)
    assert result.warnings == ()
    assert not marker.exists()
    restore(psql, owner_db, out)
    assert not marker.exists()
    with psycopg.connect(owner_db) as pg:
        assert _types(pg, "thing") == {
            "id": "bigint",
            "settings": "bytea",
            "at": "timestamp with time zone",
            "token": "uuid",
            "doc": "json",
            "meta": "text",
            "took": "interval",
            "price": "bigint",
            "name": "character varying(20)",
            "tries": "bigint",
            "done": "boolean",
            "stamped": "timestamp without time zone",
        }
        # the text as SQLite holds it
        assert pg.execute("SELECT meta FROM thing WHERE id = 1").fetchone() == (
            '{"a": "\\\\\\t\\n", "b": 1}',
        )
        # the pickle's bytes, unchanged, never loaded
        assert pg.execute("SELECT value FROM store WHERE id = 2").fetchone() == (bomb,)

    engine = _pg_engine(owner_db)
    try:
        with engine.begin() as con:
            got = [dict(r._mapping) for r in con.execute(thing.select().order_by(thing.c.id))]
            assert got == rows
            assert got[0]["at"].tzinfo is not None  # aware in, aware out
            assert con.execute(store.select().where(store.c.id == 1)).one().value == "harmless"
            # a new row through the same models, relying on the server defaults
            before = dt.datetime.now(UTC)
            new_id = con.execute(
                thing.insert().values(settings={"new": True}, token=uuid.UUID(int=7)),
            ).inserted_primary_key[0]
            after = dt.datetime.now(UTC)
            new = con.execute(thing.select().where(thing.c.id == new_id)).one()._mapping
    finally:
        engine.dispose()
    assert new_id == 6  # the identity goes on after the largest id
    assert new["settings"] == {"new": True} and new["token"] == uuid.UUID(int=7)
    assert (new["name"], new["tries"], new["done"]) == ("anon", 42, False)
    assert before - dt.timedelta(seconds=5) <= new["at"] <= after + dt.timedelta(seconds=5)
    assert new["at"].tzinfo is not None
    assert new["stamped"].tzinfo is None  # a plain DateTime: CURRENT_TIMESTAMP's wall time
    assert not marker.exists()
    pickle.loads(bomb).close()  # the bomb is real: loading it is what creates the marker
    assert marker.exists()


def test_a_pickle_type_is_copied_as_its_bytes_even_when_they_are_no_pickle(
    tmp_path, owner_db, psql
):
    """The stored bytes go over as they are (a value the app could not even read)."""
    md, _, store = app_models()
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    md.create_all(lite)
    with lite.begin() as con:
        con.execute(sa.text("INSERT INTO store VALUES (1, x'00ff'), (2, 'text')"))
    lite.dispose()
    out = tmp_path / "app.postgres.sql.gz"
    export(f"sqlite:///{tmp_path / 'app.db'}", "postgres", out, metadata=md)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert pg.execute("SELECT value FROM store ORDER BY id").fetchall() == [
            (b"\x00\xff",),
            (b"text",),
        ]


def test_a_value_a_models_typedecorator_cannot_read_stops_the_export_naming_it(tmp_path):
    md, _, _ = app_models()
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    md.create_all(lite)
    with lite.begin() as con:
        con.execute(
            sa.text("INSERT INTO thing (id, settings, token) VALUES (1, x'00', 'not 16 bytes')")
        )
    lite.dispose()
    with pytest.raises(ExportError) as e:
        export(f"sqlite:///{tmp_path / 'app.db'}", "postgres", tmp_path / "o.sql.gz", metadata=md)
    assert str(e.value).startswith("cannot copy thing.token (id=1) to PostgreSQL uuid: ")
    assert "the model's BinaryUUID cannot read 'not 16 bytes'" in str(e.value)


def _sqlite(path: Path, script: str) -> str:
    with closing(sqlite3.connect(path)) as con:
        con.executescript(script)
    return f"sqlite:///{path}"


#: declared binary type names of common DDL, each a bytea in PostgreSQL
BINARY_NAMES = [
    "BINARY(16)",
    "VARBINARY(255)",
    "binary varying(8)",
    "BYTEA",
    "BLOB",
    "TINYBLOB",
    "MEDIUMBLOB",
    "LONGBLOB",
    "LONGVARBINARY",
    "IMAGE",
    "RAW(16)",
    "LONG RAW",
]


def test_declared_binary_types_without_models_are_bytea_with_every_byte(tmp_path, owner_db, psql):
    cols = ", ".join(f"c{i} {name}" for i, name in enumerate(BINARY_NAMES))
    url = _sqlite(tmp_path / "bin.db", f"CREATE TABLE t (id INTEGER PRIMARY KEY, {cols});")
    values = [uuid.UUID(int=2**127 + 255).bytes, b"\x00\xff\xfe", b"", b"\\x00", b"\x80" * 20]
    with closing(sqlite3.connect(tmp_path / "bin.db")) as con:
        row = ", ".join("?" * len(BINARY_NAMES))
        for i, v in enumerate(values):
            con.execute(f"INSERT INTO t VALUES ({i}, {row})", [v] * len(BINARY_NAMES))
        con.commit()
    out = tmp_path / "bin.postgres.sql.gz"
    result = export(url, "postgres", out)
    assert result.warnings == ()
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert _types(pg, "t") == {
            "id": "bigint",
            **{f"c{i}": "bytea" for i in range(len(BINARY_NAMES))},
        }
        got = pg.execute("SELECT * FROM t ORDER BY id").fetchall()
    assert got == [(i, *[v] * len(BINARY_NAMES)) for i, v in enumerate(values)]


#: the PostgreSQL type of each type name SQLAlchemy's SQLite dialect knows (no model)
KNOWN_NAMES = {
    "BIGINT": "bigint",
    "BLOB": "bytea",
    "BOOL": "boolean",
    "BOOLEAN": "boolean",
    "CHAR": "text",
    "DATE": "date",
    "DATE_CHAR": "date",
    "DATETIME": "timestamp without time zone",
    "DATETIME_CHAR": "timestamp without time zone",
    "DECIMAL": "numeric",
    "DOUBLE": "double precision",
    "FLOAT": "double precision",
    "INT": "bigint",
    "INTEGER": "bigint",
    "JSON": "json",
    "JSONB": "jsonb",
    "NCHAR": "text",
    "NUMERIC": "numeric",
    "NVARCHAR": "text",
    "REAL": "double precision",
    "SMALLINT": "smallint",
    "TEXT": "text",
    "TIME": "time without time zone",
    "TIMESTAMP": "timestamp without time zone",
    "TIME_CHAR": "time without time zone",
    "VARCHAR": "text",
}


def test_every_type_name_sqlalchemys_sqlite_dialect_knows_has_a_fitting_postgres_type(
    tmp_path, owner_db, psql
):
    assert set(KNOWN_NAMES) <= set(ischema_names)
    known = sorted(n for n in ischema_names if n in KNOWN_NAMES)
    others = {  # with sizes, and names SQLite knows by their affinity only
        "VARCHAR(12)": "character varying(12)",
        "CHAR(3)": "character(3)",
        "NUMERIC(10, 2)": "numeric(10,2)",
        "UUID": "uuid",
        "TINYINT": "bigint",
        "STRING": "text",
        "MONEY": "text",
        "": "text",
    }
    decls = [*known, *others]
    cols = ", ".join(f"c{i} {d}" for i, d in enumerate(decls))
    url = _sqlite(tmp_path / "names.db", f"CREATE TABLE t ({cols});")
    out = tmp_path / "names.postgres.sql.gz"
    export(url, "postgres", out)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        got = _types(pg, "t")
    want = {**KNOWN_NAMES, **others}
    assert {d: got[f"c{i}"] for i, d in enumerate(decls)} == {d: want[d] for d in decls}
    assert set(ischema_names) - set(KNOWN_NAMES) == set()  # a new name gets a row above


# -- columns without models whose values do not fit their type ------------------------------


@pytest.mark.parametrize(
    ("declared", "values", "kind", "restored", "why"),
    [
        (
            "INTEGER",
            [1, b"abc"],
            "text",
            ["1", "abc"],
            "not bigint: rowid 2: b'abc' is not an integer",
        ),
        ("INTEGER", [1, b"\xff\x00"], "bytea", [b"1", b"\xff\x00"], "not text: rowid 2: bytes"),
        (
            "NUMERIC",
            [1.5, "n/a"],
            "text",
            ["1.5", "n/a"],
            "not numeric: rowid 2: 'n/a' is not a number",
        ),
        ("TEXT", ["plain", b"\xff"], "bytea", [b"plain", b"\xff"], "not text: rowid 2: bytes"),
        ("TEXT", ["a\x00b"], "bytea", [b"a\x00b"], "a NUL character"),
        (
            "DATETIME",
            ["2020-01-02 03:04:05", "yesterday"],
            "text",
            ["2020-01-02 03:04:05", "yesterday"],
            "is not a date and time",
        ),
        ("VARCHAR(3)", ["abc", "abcd"], "text", ["abc", "abcd"], "4 characters do not fit in 3"),
        ("BOOLEAN", [1, 2], "text", ["1", "2"], "2 is not a boolean"),
        (
            "BLOB",
            [b"\x00", 5],
            "bytea",
            [b"\x00", b"5"],
            "not bytea: rowid 2: 5 is not binary data",
        ),
    ],
)
@pytest.mark.usefixtures("processes")
def test_a_column_without_a_model_falls_back_to_a_type_that_holds_its_values(
    tmp_path, owner_db, psql, declared, values, kind, restored, why
):
    """The bad value comes last, in the rows a helper process encodes when the table is cut
    into parts: the whole table is written again, in one file that restores."""
    url = _sqlite(
        tmp_path / "fit.db",
        f"CREATE TABLE t (n {declared}, other INTEGER); CREATE TABLE after (x INTEGER);"
        "INSERT INTO after VALUES (1), (2);",
    )
    filler = 300  # rows that fit, before the values that do not
    with closing(sqlite3.connect(tmp_path / "fit.db")) as con:
        con.executemany("INSERT INTO t VALUES (?, ?)", [(None, i) for i in range(filler)])
        con.executemany("INSERT INTO t VALUES (?, ?)", [(v, 1) for v in values])
        con.commit()
    out = tmp_path / "fit.postgres.sql.gz"
    result = export(url, "postgres", out)
    assert result.rows == filler + len(values) + 2
    (warning,) = result.warnings
    assert warning.startswith(f"table t, column n: copied as PostgreSQL {kind}")
    assert why.replace("rowid 2", f"rowid {filler + 2}") in warning
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert _types(pg, "t") == {"n": kind, "other": "bigint"}
        got = pg.execute("SELECT n FROM t WHERE n IS NOT NULL").fetchall()
        assert sorted(r[0] for r in got) == sorted(restored)
        assert pg.execute("SELECT count(*), sum(other) FROM t").fetchone() == (
            filler + len(values),
            sum(range(filler)) + len(values),
        )
        assert pg.execute("SELECT x FROM after ORDER BY x").fetchall() == [(1,), (2,)]
    # one CREATE TABLE and one COPY block each: the first attempts were taken back
    text = gzip.decompress(out.read_bytes()).decode()
    assert text.count('CREATE TABLE "public"."t"') == 1
    assert text.count('COPY "public"."t"') == 1


def test_several_columns_fall_back_and_a_foreign_key_between_different_types_is_left_out(
    tmp_path, owner_db, psql
):
    url = _sqlite(
        tmp_path / "fk.db",
        """
        CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE child (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent (id),
                            n REAL, d DATE);
        INSERT INTO parent VALUES (1, 'one'), (2, 'two');
        INSERT INTO child VALUES (1, 1, 1.5, '2020-01-02'), (2, 'x', 'many', 'soon'),
                                 (3, 2, x'ff', NULL);
    """,
    )
    out = tmp_path / "fk.postgres.sql.gz"
    result = export(url, "postgres", out)
    assert sorted(w.split(":")[0] for w in result.warnings) == [
        "table child",
        "table child, column d",
        "table child, column n",
        "table child, column pid",
    ]
    assert "table child: no foreign key (pid) to parent" in "\n".join(result.warnings)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert _types(pg, "child") == {"id": "bigint", "pid": "text", "n": "bytea", "d": "text"}
        assert pg.execute("SELECT pid, n, d FROM child ORDER BY id").fetchall() == [
            ("1", b"1.5", "2020-01-02"),
            ("x", b"many", "soon"),
            ("2", b"\xff", None),
        ]
        # the key still works, and inserts go on after the largest id
        assert pg.execute("INSERT INTO child (pid) VALUES ('y') RETURNING id").fetchone() == (4,)


@pytest.mark.parametrize(
    ("schema", "models", "message"),
    [
        # the identity column (INT is no rowid alias: it holds text)
        (
            "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES ('x', 'a');",
            False,
            "cannot copy t.id (id='x') to PostgreSQL bigint: 'x' is not an integer",
        ),
        # a column whose type the models give
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 'a');",
            True,
            "cannot copy t.v (id=1) to PostgreSQL bigint: 'a' is not an integer",
        ),
    ],
)
def test_a_refused_value_in_the_identity_or_a_modelled_column_still_stops_the_export(
    tmp_path, schema, models, message
):
    url = _sqlite(tmp_path / "bad.db", schema)
    md = sa.MetaData()
    if models:
        sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Integer))
    out = tmp_path / "bad.postgres.sql.gz"
    with pytest.raises(ExportError) as e:
        export(url, "postgres", out, metadata=md)
    assert str(e.value) == message
    assert not out.exists()
