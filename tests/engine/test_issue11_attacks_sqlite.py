"""Review of issue 11's SQLite -> ``postgres`` work by a hostile customer database (and a host
app's models): each source is built for real, exported, restored with the documented command
(the real ``psql``, ``--single-transaction``, as an ordinary database owner) and read back.
Each test pins a hole that was found and fixed: a value the customer stored that ran code on
the vendor's machine, made the file fail to restore, or came back changed without a word."""

from __future__ import annotations

import builtins
import pickle
import re
import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from flask_backup_manager.engine import ExportError, export

from .test_postgres_to_postgres import restore
from .test_sqlite_to_postgres import processes  # noqa: F401 (the fixture, used by name)


def _sqlite(path: Path, script: str, rows: dict[str, list[tuple]] | None = None) -> str:
    with closing(sqlite3.connect(path)) as con:
        con.executescript(script)
        for table, values in (rows or {}).items():
            marks = ", ".join("?" * len(values[0]))
            con.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
        con.commit()
    return f"sqlite:///{path}"


def _types(pg: psycopg.Connection, table: str) -> dict[str, str]:
    return dict(
        pg.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [f"public.{table}"],
        ).fetchall()
    )


# -- a model's type that unpickles on SQLite by its dialect implementation -------------------


class Bomb:
    """Unpickling it opens ``path`` for writing: creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (builtins.open, (str(self.path), "w"))


class Settings(sa.types.TypeDecorator):
    """jsonb on PostgreSQL, pickled on SQLite: PickleType only as its SQLite implementation."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.PickleType())
        return dialect.type_descriptor(postgresql.JSONB())


class Token(sa.types.TypeDecorator):
    """A UUID stored as 16 bytes on SQLite, uuid on PostgreSQL (as sqlalchemy_utils' UUIDType)."""

    impl = sa.BINARY(16)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID())
        return dialect.type_descriptor(sa.BINARY(16))


@pytest.mark.parametrize(
    "column_type",
    [Settings(), Token().with_variant(sa.PickleType(), "sqlite")],
    ids=["load_dialect_impl", "with_variant"],
)
def test_a_type_that_is_a_pickletype_on_sqlite_never_unpickles_the_customers_bytes(
    tmp_path, column_type
):
    """Converting the value would mean reading it as the app does on SQLite, which unpickles
    it: the export refuses the column, naming it, and runs nothing."""
    marker = tmp_path / "unpickled"
    url = _sqlite(
        tmp_path / "p.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);",
        {"t": [(1, pickle.dumps(Bomb(marker)))]},
    )
    md = sa.MetaData()
    sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", column_type))
    out = tmp_path / "p.postgres.sql.gz"
    with pytest.raises(ExportError, match=r"^cannot copy t\.v \(id=1\) to PostgreSQL "):
        export(url, "postgres", out, metadata=md)
    assert not marker.exists()
    assert not out.exists()
    pickle.loads(pickle.dumps(Bomb(marker))).close()  # the bomb is real
    assert marker.exists()


# -- declared sizes PostgreSQL refuses -------------------------------------------------------


def test_declared_sizes_beyond_postgresqls_limits_get_the_unconstrained_type(
    tmp_path, owner_db, psql
):
    url = _sqlite(
        tmp_path / "s.db",
        """CREATE TABLE t (id INTEGER PRIMARY KEY, a NUMERIC(1001), b NUMERIC(0), c DECIMAL(2, 5),
                           d VARCHAR(20000000), e CHAR(10485761), f VARCHAR(10485760));
           CREATE TABLE m (id INTEGER PRIMARY KEY, a NUMERIC, d TEXT);""",
        {
            "t": [(1, 12345.5, 7, 0.00001, "long", "x", "y")],
            "m": [(1, 2.5, "model's")],
        },
    )
    md = sa.MetaData()
    sa.Table(
        "m",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.Numeric(2000, 2)),
        sa.Column("d", sa.String(50_000_000)),
    )
    out = tmp_path / "s.postgres.sql.gz"
    assert export(url, "postgres", out, metadata=md).warnings == ()
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert _types(pg, "t") == {
            "id": "bigint",
            "a": "numeric",
            "b": "numeric",
            "c": "numeric",
            "d": "text",
            "e": "text",
            "f": "character varying(10485760)",
        }
        assert _types(pg, "m") == {"id": "bigint", "a": "numeric", "d": "text"}
        assert pg.execute("SELECT a, b, c, d, e, f FROM t").fetchone() == (
            Decimal("12345.5"),
            Decimal(7),
            Decimal("0.00001"),
            "long",
            "x",
            "y",
        )
        assert pg.execute("SELECT a, d FROM m").fetchone() == (Decimal("2.5"), "model's")


# -- keys and indexes PostgreSQL cannot build -------------------------------------------------


def test_a_key_unique_constraint_or_index_on_a_json_column_is_left_out_and_logged(
    tmp_path, owner_db, psql
):
    """SQLite indexes JSON as text; PostgreSQL's json has no btree operator class."""
    url = _sqlite(
        tmp_path / "j.db",
        """CREATE TABLE doc (body JSON PRIMARY KEY, tag JSON UNIQUE, n INTEGER);
           CREATE INDEX doc_tag_n ON doc (tag, n);
           CREATE INDEX doc_n ON doc (n);
           CREATE TABLE ref (id INTEGER PRIMARY KEY, body JSON REFERENCES doc (body));""",
        {"doc": [('{"a": 1}', '["x"]', 1)], "ref": [(1, '{"a": 1}')]},
    )
    out = tmp_path / "j.postgres.sql.gz"
    warnings = export(url, "postgres", out).warnings
    assert sorted(warnings) == [
        "table doc: no index (tag, n): PostgreSQL cannot index a json column",
        "table doc: no primary key (body): PostgreSQL cannot index a json column",
        "table doc: no unique constraint (tag): PostgreSQL cannot index a json column",
        "table ref: no foreign key (body) to doc, as PostgreSQL cannot compare json and json",
    ]
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert pg.execute("SELECT body, tag, n FROM doc").fetchall() == [({"a": 1}, ["x"], 1)]
        assert pg.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'doc'"
        ).fetchall() == [("doc_n",)]


def test_a_foreign_key_between_types_postgresql_cannot_compare_is_left_out_and_logged(
    tmp_path, owner_db, psql
):
    """SQLite takes a foreign key between columns of any declared types; PostgreSQL refuses
    one between bigint and text (the whole restore with it), and takes one between varchar and
    text, or an integer and a numeric."""
    url = _sqlite(
        tmp_path / "fk.db",
        """CREATE TABLE p (code TEXT PRIMARY KEY, num NUMERIC UNIQUE);
           CREATE TABLE c (id INTEGER PRIMARY KEY, code INTEGER REFERENCES p (code),
                           name VARCHAR(10) REFERENCES p (code),
                           num INTEGER REFERENCES p (num));""",
        {"p": [("1", 2)], "c": [(1, 1, "1", 2)]},
    )
    out = tmp_path / "fk.postgres.sql.gz"
    assert export(url, "postgres", out).warnings == (
        "table c: no foreign key (code) to p, as PostgreSQL cannot compare bigint and text",
    )
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        keys = pg.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'public.c'::regclass AND contype = 'f' ORDER BY 1"
        ).fetchall()
        assert keys == [
            ("FOREIGN KEY (name) REFERENCES p(code)",),
            ("FOREIGN KEY (num) REFERENCES p(num)",),
        ]
        assert pg.execute("SELECT code, name, num FROM c").fetchone() == (1, "1", 2)


# -- values PostgreSQL would read otherwise, or not at all ------------------------------------


#: (declared type, a value SQLite holds, the PostgreSQL type it falls back to, why): each a
#: value PostgreSQL would change without a word, or refuse in the middle of the restore
CHANGED = [
    ("NUMERIC(10, 2)", 1.234, "text", "1.234 has more decimals than numeric(10, 2)"),
    ("NUMERIC(3, 2)", 9.999, "text", "9.999 does not fit numeric(3, 2) rounded"),
    ("NUMERIC", "١٢", "text", "'١٢' is not a number"),
    ("NUMERIC", "1_000", "text", "'1_000' is not a number"),
    ("NUMERIC", "inf", "text", "'inf' is not a number"),
    ("DATE", "2020-01-02 23:59:59", "text", "is a date and time, not a date"),
    ("DATETIME", "2020-01-02 10:00:00+05:00", "text", "has a UTC offset"),
    ("TIME", "10:00:00-03:00", "text", "has a UTC offset"),
    ("JSON", "NaN", "text", "'NaN' is not JSON PostgreSQL reads"),
    ("JSON", "[1, Infinity]", "text", "is not JSON PostgreSQL reads"),
    ("JSON", "[" * 5000 + "]" * 5000, "text", "is not JSON PostgreSQL reads"),
    ("JSON", b'"\xff"', "bytea", "is not JSON PostgreSQL reads"),
    ("JSONB", '{"a": "\\u0000"}', "text", "which jsonb cannot hold"),
    ("JSONB", '{"a": "\\ud800"}', "text", "which jsonb cannot hold"),
    ("JSONB", "[1e999999]", "text", "does not fit PostgreSQL's numeric"),
]


@pytest.mark.parametrize(("declared", "value", "kind", "why"), CHANGED)
@pytest.mark.usefixtures("processes")
def test_a_value_postgresql_would_change_or_refuse_falls_back_to_a_type_that_keeps_it(
    tmp_path, owner_db, psql, declared, value, kind, why
):
    """Where no model gives the column's type: the value comes last, in the rows a helper
    process encodes when the table is cut into parts."""
    fitting = {"NUMERIC(10, 2)": 1.5, "NUMERIC(3, 2)": 1.5, "DATE": "2020-01-02"}
    fitting |= {"DATETIME": "2020-01-02 03:04:05", "TIME": "03:04:05"}
    first = fitting.get(declared, "[1]" if "JSON" in declared else 7)
    url = _sqlite(
        tmp_path / "v.db",
        f"CREATE TABLE t (v {declared}, n INTEGER);",
        {"t": [(first, i) for i in range(300)] + [(value, 300)]},
    )
    with closing(sqlite3.connect(tmp_path / "v.db")) as con:
        stored = con.execute("SELECT v FROM t WHERE n = 300").fetchone()[0]
    out = tmp_path / "v.postgres.sql.gz"
    result = export(url, "postgres", out)
    (warning,) = result.warnings
    assert warning.startswith(f"table t, column v: copied as PostgreSQL {kind}")
    assert "rowid 301: " in warning and why in warning
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert _types(pg, "t") == {"v": kind, "n": "bigint"}
        got = pg.execute("SELECT v FROM t WHERE n = 300").fetchone()[0]
    assert got == (repr(stored) if isinstance(stored, float) else stored)


def test_a_models_numeric_is_rounded_as_the_app_reads_it_or_refused_where_it_cannot_fit(
    tmp_path, owner_db, psql
):
    """Where the model gives the type, the copy holds what the app reads on SQLite (SQLAlchemy
    rounds a Numeric to its scale); a value that no longer fits once rounded stops the export,
    instead of a file that stops in the middle of the restore."""
    md = sa.MetaData()
    t = sa.Table(
        "t", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Numeric(3, 2))
    )
    url = _sqlite(tmp_path / "m.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v NUMERIC(3, 2));")
    with closing(sqlite3.connect(tmp_path / "m.db")) as con:
        con.executemany("INSERT INTO t VALUES (?, ?)", [(1, 1.234), (2, -1.005)])
        con.commit()
    lite = sa.create_engine(url)
    with lite.connect() as con:
        app_reads = [r.v for r in con.execute(t.select().order_by(t.c.id))]
    lite.dispose()
    out = tmp_path / "m.postgres.sql.gz"
    assert export(url, "postgres", out, metadata=md).warnings == ()
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        got = [r[0] for r in pg.execute("SELECT v FROM t ORDER BY id")]
    assert got == [Decimal("1.23"), Decimal("-1.01")]
    assert got[0] == app_reads[0]

    with closing(sqlite3.connect(tmp_path / "m.db")) as con:
        con.execute("INSERT INTO t VALUES (3, 9.999)")
        con.commit()
    with pytest.raises(ExportError) as e:
        export(url, "postgres", tmp_path / "m2.postgres.sql.gz", metadata=md)
    assert str(e.value) == (
        "cannot copy t.v (id=3) to PostgreSQL numeric(3, 2): "
        "9.999 does not fit numeric(3, 2) rounded"
    )


# -- hostile DEFAULT clauses -------------------------------------------------------------------

#: DEFAULT clauses with the tokens SQLite accepts there (MARK: the marker file's path)
HOSTILE_DEFAULTS = [
    "((((((1))))))",
    "- - 1",
    "-(-(1))",
    "+'1'",
    "'a' || 'b'",
    "CAST(1 AS TEXT)",
    "X'41'",
    "x'00ff5c'",
    "'1e5'",
    "' 12 '",
    "'١٢'",
    "'1_000'",
    "1 -- c\n",
    "/* c */ 2",
    "'é\\'",
    "'E''\\x41'''",
    "'$$'",
    "'$fbm_guard$'",
    "'\n\\! touch MARK\n'",
    "'\r\\! touch MARK'",
    "'\\\\! touch MARK'",
    "'--'",
    "'/*'",
    '"dq"',
    "'NaN'",
    "'Infinity'",
    "'inf'",
    "1e999",
    "'1e999999'",
    "'1e-20000'",
    "9223372036854775807",
    "9223372036854775808",
    "0xFFFFFFFFFFFFFFFF",
    "'true'",
    "TRUE",
    "'2020-01-02'",
    "'2020-01-02 23:59:59'",
    "'2020-01-02 10:00:00+05:00'",
    "'10:00:00+05:00'",
    "'{\"a\": 1}'",
    "'[1, 2'",
    '\'{"a": "\\u0000"}\'',
    "'00000000-0000-0000-0000-000000000001'",
    "x'00000000000000000000000000000001'",
    "'a\u2028b'",
    "'\U0001f600'",
    "'-0'",
    "1.5e-3",
]
HOSTILE_TYPES = [
    "",
    "TEXT",
    "INTEGER",
    "REAL",
    "NUMERIC",
    "NUMERIC(5, 2)",
    "BLOB",
    "BOOLEAN",
    "DATE",
    "DATETIME",
    "TIME",
    "VARCHAR(5)",
    "JSON",
    "JSONB",
    "UUID",
    "BINARY(16)",
    "NOTBINARY",
    '"x\n\\! touch MARK"',
]


def test_hostile_defaults_restore_running_nothing_and_a_new_row_gets_what_sqlite_gives(
    tmp_path, owner_db, psql
):
    """Every DEFAULT clause SQLite takes, in columns of every declared type: the file restores
    with the real psql, runs nothing, and a row the app inserts on the copy relying on the
    defaults holds what the copy of a row SQLite filled from the same defaults holds (where
    the default is carried, and the column kept its type)."""
    marker = tmp_path / "ran"
    path = tmp_path / "h.db"
    tables: dict[str, list[str]] = {}
    with closing(sqlite3.connect(path)) as con:
        for n, declared in enumerate(HOSTILE_TYPES):
            declared = declared.replace("MARK", str(marker))
            cols = []
            for d in HOSTILE_DEFAULTS:
                d = d.replace("MARK", str(marker))
                try:  # the defaults SQLite takes in such a column
                    con.execute(f"CREATE TABLE probe (v {declared} DEFAULT {d})")
                    con.execute("INSERT INTO probe DEFAULT VALUES")
                except sqlite3.Error:
                    continue
                finally:
                    con.execute("DROP TABLE IF EXISTS probe")
                cols.append(f"c{len(cols)} {declared} DEFAULT {d}")
            tables[f"t{n}"] = cols
            con.execute(f"CREATE TABLE t{n} (id INTEGER PRIMARY KEY, {', '.join(cols)})")
            con.execute(f"INSERT INTO t{n} (id) VALUES (1)")
        con.commit()
    assert sum(map(len, tables.values())) > 600
    out = tmp_path / "h.postgres.sql.gz"
    result = export(f"sqlite:///{path}", "postgres", out)
    restore(psql, owner_db, out)
    assert not marker.exists()
    # not carried, or the column fell back: (table, column)
    skipped = {re.match(r"table (\w+), column (\w+):", w).groups() for w in result.warnings}
    compared = 0
    with psycopg.connect(owner_db) as pg:
        for table, cols in tables.items():
            copied = pg.execute(f"SELECT * FROM {table}").fetchone()
            new = pg.execute(f"INSERT INTO {table} (id) VALUES (2) RETURNING *").fetchone()
            for i, decl in enumerate(cols, 1):
                name = decl.split()[0]
                if (table, name) in skipped:
                    continue
                assert new[i] == copied[i], (table, decl, copied[i], new[i])
                compared += 1
    assert compared > 300
    assert not marker.exists()
