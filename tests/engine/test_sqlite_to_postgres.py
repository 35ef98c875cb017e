"""SQLite -> ``postgres`` format: tables built from the reflected SQLAlchemy tables, values
checked while they are encoded, restored by an ordinary database owner."""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flask_backup_manager.engine import ExportError, export

from ..conftest import DATASETS
from . import test_sqlite_to_sqlite
from .test_postgres_to_postgres import restore

#: a fixture of its: every table cut into three rowid ranges, two for helper processes
in_parts = test_sqlite_to_sqlite.in_parts

CHINOOK = DATASETS / "chinook" / "Chinook_Sqlite.sqlite"


@pytest.fixture(params=["one process", "in parts"])
def processes(request, monkeypatch):
    """Once as a small database is exported, once as a big one: every table cut into three
    rowid ranges, encoded by the exporting process and two helper processes."""
    if request.param == "in parts":
        from flask_backup_manager.engine import parallel

        monkeypatch.setattr(parallel, "PARALLEL_ROWS", 1)
        monkeypatch.setattr(parallel, "PARTS", 3)
    return request.param


def _plain(value):
    """A PostgreSQL value as SQLite holds it."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return value


def test_chinook_sqlite_restores_into_postgres_with_every_value(
    owner_db,
    psql,
    tmp_path,
    processes,
):
    out = tmp_path / "chinook.postgres.sql.gz"
    result = export(f"sqlite:///{CHINOOK}", "postgres", out)
    assert result.tables == 11 and result.rows > 15_000
    restore(psql, owner_db, out)
    lite = sqlite3.connect(f"file:{CHINOOK}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        with psycopg.connect(owner_db) as pg:
            for table in tables:
                cols = [r[1] for r in lite.execute(f'PRAGMA table_info("{table}")')]
                select = ", ".join(f'"{c}"' for c in cols)
                order = ", ".join(str(i + 1) for i in range(len(cols)))
                want = lite.execute(f'SELECT {select} FROM "{table}" ORDER BY {order}').fetchall()
                got = pg.execute(f'SELECT {select} FROM public."{table}" ORDER BY {order}')
                assert [tuple(map(_plain, r)) for r in got] == want, table
            # the foreign keys and primary keys came along, and ids go on from the largest
            assert pg.execute("""SELECT count(*) FROM pg_constraint
                                 WHERE contype = 'f' AND connamespace = 'public'::regnamespace
                              """).fetchone() == (11,)
            new = pg.execute("""INSERT INTO public."Artist" ("Name") VALUES ('new')
                                RETURNING "ArtistId" """).fetchone()
            assert new == (lite.execute('SELECT max("ArtistId") + 1 FROM "Artist"').fetchone())
    finally:
        lite.close()


def _sqlite(path, script: str) -> str:
    con = sqlite3.connect(path)
    try:
        con.executescript(script)
    finally:
        con.close()
    return f"sqlite:///{path}"


def _models(url: str) -> sa.MetaData:
    """Models of every table of ``url`` with the types SQLAlchemy reflects: where a model gives
    a column's type, a value it refuses stops the export (without, the column falls back, see
    test_sqlite_to_postgres_types.py)."""
    md = sa.MetaData()
    engine = sa.create_engine(url)
    md.reflect(engine)
    engine.dispose()
    return md


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("n INTEGER", "'abc'", "t.n (id=2) to PostgreSQL bigint: 'abc' is not an integer"),
        ("n VARCHAR(3)", "'abcd'", "t.n (id=2) to PostgreSQL character varying(3)"),
        ("n DATETIME", "'yesterday'", "t.n (id=2) to PostgreSQL timestamp"),
        ("n NUMERIC(4, 2)", "123.5", "does not fit numeric(4, 2)"),
        ("n TEXT", "'a' || char(0) || 'b'", "a NUL character"),
        ("n BOOLEAN", "2", "2 is not a boolean"),
    ],
)
def test_a_value_postgres_would_refuse_stops_the_export_naming_table_column_and_row(
    tmp_path, column, value, message
):
    """Where the host's models give the column's type."""
    url = _sqlite(
        tmp_path / "bad.db",
        f"""
        CREATE TABLE t (id INTEGER PRIMARY KEY, {column});
        INSERT INTO t VALUES (1, NULL), (2, {value});
    """,
    )
    out = tmp_path / "bad.postgres.sql.gz"
    with pytest.raises(ExportError, match="cannot copy ") as e:
        export(url, "postgres", out, metadata=_models(url))
    assert message in str(e.value)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.db"]


def test_sqlite_odd_values_and_orphans_restore(owner_db, psql, tmp_path):
    url = _sqlite(
        tmp_path / "odd.db",
        r"""
        CREATE TABLE parent (id INTEGER PRIMARY KEY, name);
        CREATE TABLE child (
            id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id),
            t TEXT, b BLOB, f REAL, ok BOOLEAN, at DATETIME, d DATE, price NUMERIC(10, 2),
            "select" TEXT, "Mixed Case" TEXT
        );
        CREATE UNIQUE INDEX child_t ON child (t);
        INSERT INTO parent VALUES (1, 'one'), (2, 42), (3, 4.5);
        INSERT INTO child VALUES
          (1, 1, 'tab	nl
 back\slash \N', x'00ff5c0a', 1.5, 1, '2020-01-02 03:04:05', '2020-01-02', 0.99, 's', 'M'),
          (2, 99, 'orphan', NULL, -0.0, 0, '2020-01-02T03:04:05.123456', '2020-01-02 00:00:00',
           10, NULL, NULL),
          (7, NULL, NULL, 'text as blob', 1e300, 'true', NULL, NULL, '3.14', NULL, NULL);
    """,
    )
    out = tmp_path / "odd.postgres.sql.gz"
    export(url, "postgres", out)
    dump = gzip.decompress(out.read_bytes()).decode()
    assert 'FOREIGN KEY ("parent_id") REFERENCES "public"."parent" ("id") NOT VALID' in dump
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert pg.execute("SELECT name FROM parent ORDER BY id").fetchall() == [
            ("one",),
            ("42",),
            ("4.5",),
        ]
        rows = pg.execute(
            'SELECT t, b, f, ok, at, d, price, "select", "Mixed Case" FROM child ORDER BY id'
        ).fetchall()
        assert rows[0] == (
            "tab\tnl\n back\\slash \\N",
            b"\x00\xff\\\n",
            1.5,
            True,
            dt.datetime(2020, 1, 2, 3, 4, 5),
            dt.date(2020, 1, 2),
            Decimal("0.99"),
            "s",
            "M",
        )
        assert rows[1][4] == dt.datetime(2020, 1, 2, 3, 4, 5, 123456)
        assert rows[2][1:4] == (b"text as blob", 1e300, True)
        assert pg.execute("INSERT INTO child (t) VALUES ('new') RETURNING id").fetchone() == (8,)


def test_host_model_types_decide_the_postgres_columns(owner_db, psql, tmp_path):
    import sqlalchemy as sa

    url = _sqlite(
        tmp_path / "app.db",
        """
        CREATE TABLE job (id INTEGER PRIMARY KEY, flag INTEGER, at TEXT, kind VARCHAR(1),
                          data TEXT, small INTEGER);
        INSERT INTO job VALUES (1, 1, '2024-05-06 07:08:09+02:00', 'a', '{"k": [1]}', 7),
                               (2, 0, NULL, 'b', 'null', NULL);
    """,
    )
    md = sa.MetaData()
    sa.Table(
        "job",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("flag", sa.Boolean),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("kind", sa.Enum("a", "b", name="kind")),
        sa.Column("data", sa.JSON),
        sa.Column("small", sa.SmallInteger),
    )
    out = tmp_path / "app.postgres.sql.gz"
    export(url, "postgres", out, metadata=md)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        types = dict(
            pg.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'public.job'::regclass AND attnum > 0"
            ).fetchall()
        )
        assert types == {
            "id": "bigint",
            "flag": "boolean",
            "at": "timestamp with time zone",
            "kind": "text",
            "data": "json",
            "small": "smallint",
        }
        row = pg.execute("SELECT flag, at, kind, data, small FROM job WHERE id = 1").fetchone()
        assert row[0] is True and row[1].utcoffset() is not None
        assert row[1] == dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.timezone.utc)
        assert row[2:] == ("a", {"k": [1]}, 7)


@pytest.mark.parametrize(
    "type_",
    [
        "INTEGER",
        "SMALLINT",
        "BOOLEAN",
        "REAL",
        "TEXT",
        "VARCHAR(3)",
        "CHAR(3)",
        "BLOB",
        "DATETIME",
    ],
)
def test_a_batch_encoded_in_bulk_reads_as_value_by_value(tmp_path, type_):
    """Whatever mix of SQLite values a column holds, a batch comes out as the column's
    per-value encoder writes it, or is refused with the same error."""
    from flask_backup_manager.engine.writers.postgres.copy_text import NULL, _column
    from flask_backup_manager.engine.writers.postgres.from_sqlite import bulk_encoder, encoder

    con = sqlite3.connect(tmp_path / "t.db")
    con.execute(f"CREATE TABLE t (v {type_})")
    t = sa.Table("t", sa.MetaData(), autoload_with=sa.create_engine(f"sqlite:///{tmp_path}/t.db"))
    con.close()
    kind = t.c.v.type
    enc, bulk = encoder(kind), bulk_encoder(kind)
    samples = [
        (1, 0, 1),
        (1, None, 0),
        (None, None),
        (2**40, -(2**63), 2**63 - 1),
        (32767, -32768),
        (32768,),
        (1.5, -0.0, 1e300),
        (1.0, 2),
        (float("inf"), 1.0),
        ("abc", "déjà", ""),
        ("abcd", "ab"),
        ("tab\t", "nl\n", "cr\r", "back\\slash", "\\N", None),
        ("a\x00b", "x"),
        ("2020-01-02 03:04:05", "2020-01-02 03:04:05.000000"),
        (b"\x00\xff", "bytes"),
        ("1", 1, 1.5),
    ]
    for col in samples:
        try:
            want = [NULL if v is None else enc(v) for v in col]
        except ValueError:
            want = ValueError
        try:
            got = [str(v) for v in _column(bulk, enc, col)]  # as %s writes them
        except ValueError:
            got = ValueError
        assert got == want, col


def test_values_after_the_first_batch_are_checked_named_and_keep_the_identity_going(
    owner_db,
    psql,
    tmp_path,
    processes,
):
    url = _sqlite(
        tmp_path / "big.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT);
        WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 2500)
        INSERT INTO t SELECT i * 2, CASE WHEN i % 7 THEN i END, 'row ' || char(9) || i FROM k;
        CREATE TABLE u (n INTEGER, s TEXT);
        INSERT INTO u SELECT n, s FROM t;
    """,
    )
    out = tmp_path / "big.postgres.sql.gz"
    export(url, "postgres", out)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert pg.execute("SELECT count(*), count(n), max(id) FROM t").fetchone() == (
            2500,
            2143,
            5000,
        )
        assert pg.execute("SELECT s FROM t WHERE id = 4000").fetchone() == ("row \t2000",)
        assert pg.execute("INSERT INTO t (n) VALUES (1) RETURNING id").fetchone() == (5001,)
    con = sqlite3.connect(tmp_path / "big.db")
    con.execute("UPDATE u SET n = 'x' WHERE rowid = 2222")
    con.execute("DELETE FROM u WHERE rowid % 100 = 1")  # the 2222nd row is not rowid 2222
    con.commit()
    con.close()
    with pytest.raises(ExportError, match=r"cannot copy u\.n \(rowid 2222\) to PostgreSQL bigint"):
        export(url, "postgres", out, metadata=_models(url))


def _names_that_run_commands(where: Path, line: str) -> list[tuple[str, str]]:
    """(table name, column name) pairs that, written raw on lines of their own, are shell
    commands of the restoring client, each creating a file in ``where``."""
    pairs = []
    for i, sep in enumerate(("\n", "\r\n", "\r")):
        pairs.append(
            (
                f"t{i}{sep}{line} touch {where}/t{i}{sep}",
                f"c{i}{sep}{line} touch {where}/c{i}{sep}",
            )
        )
    return pairs


def test_names_that_are_psql_commands_are_not_run_by_the_restore(owner_db, psql, tmp_path):
    where = Path(tempfile.mkdtemp(prefix="fbm", dir="/tmp"))  # short: names stay below 63 bytes
    try:
        script = [
            "CREATE TABLE p (id INTEGER PRIMARY KEY, k INTEGER);",
            "INSERT INTO p VALUES (1, 1);",
        ]
        pairs = _names_that_run_commands(where, "\\!")
        for table, column in pairs:
            t, c = _quote(table), _quote(column)
            # a foreign key to a column that is not unique: written as a comment line
            script.append(f"CREATE TABLE {t} ({c} INTEGER REFERENCES p (k), v TEXT);")
            script.append(f"INSERT INTO {t} VALUES (1, 'x');")
        url = _sqlite(tmp_path / "names.db", "\n".join(script))
        out = tmp_path / "names.postgres.sql.gz"
        export(url, "postgres", out)
        restored = subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                'gunzip -c "$1" | "$2" -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$3"',
                "restore",
                str(out),
                str(psql),
                owner_db,
            ],
            capture_output=True,
            check=False,
        )
        assert list(where.iterdir()) == []
        assert restored.returncode == 0, restored.stderr
        with psycopg.connect(owner_db) as pg:  # the names themselves came through
            names = pg.execute("SELECT relname FROM pg_class WHERE relname LIKE 't_%touch%'")
            assert sorted(r[0] for r in names) == sorted(t for t, _ in pairs)
    finally:
        shutil.rmtree(where)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_every_row_is_copied_once_when_the_integer_key_is_no_rowid(tmp_path, processes):
    """``INTEGER PRIMARY KEY DESC`` is not the rowid: it may hold NULL and text. Rows are
    read by their rowid, so none is lost, in one process or in parts."""
    url = _sqlite(
        tmp_path / "desc.db",
        """
        CREATE TABLE d (id INTEGER PRIMARY KEY DESC, v TEXT);
        INSERT INTO d VALUES (NULL, 'a'), (NULL, 'b'), (5, 'c'), (2, 'd'), (9, 'e');
        CREATE TABLE empty (id INTEGER PRIMARY KEY, v TEXT);
    """,
    )
    out = tmp_path / "desc.postgres.sql.gz"
    assert export(url, "postgres", out).rows == 5
    with gzip.open(out, "rt") as f:
        text = f.read()
    block = text.split("FROM stdin;\n", 1)[1].split("\\.", 1)[0]
    assert sorted(block.splitlines()) == sorted(["\\N\ta", "\\N\tb", "5\tc", "2\td", "9\te"])


def test_a_long_refused_value_in_a_helper_is_named_without_hanging(tmp_path, monkeypatch):
    """A helper's message about a refused value stays one short line (its key may be 100 kB);
    it never fills the pipe the exporting process reads last."""
    from flask_backup_manager.engine import parallel

    monkeypatch.setattr(parallel, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(parallel, "PARTS", 2)
    url = _sqlite(
        tmp_path / "long.db",
        """
        CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER);
        WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 10)
        INSERT INTO t SELECT printf('%d', x) || zeroblob(0), x FROM i;
        UPDATE t SET k = k || printf('%.*c', 100000, 'x'), n = 'not a number' WHERE n = 9;
    """,
    )
    with pytest.raises(ExportError, match=r"cannot copy t\.n \(k='9x+\.\.\.\) to PostgreSQL") as e:
        export(url, "postgres", tmp_path / "long.sql.gz", metadata=_models(url))
    assert len(str(e.value)) < 300


def test_tables_named_past_postgresqls_63_bytes_restore_with_their_keys(owner_db, psql, tmp_path):
    """PostgreSQL cuts a name to 63 bytes; a key named after its table must not become the
    table's own name (a key is a relation too), in ASCII or in two-byte letters."""
    parent, child = "p" * 70, "é" * 40  # 70 and 80 bytes
    db = tmp_path / "long.db"
    with closing(sqlite3.connect(db)) as con:
        con.executescript(f"""
            CREATE TABLE "{parent}" (id INTEGER PRIMARY KEY, code TEXT UNIQUE NOT NULL);
            CREATE TABLE "{child}" (id INTEGER PRIMARY KEY,
                                    parent_id INTEGER REFERENCES "{parent}" (id));
            INSERT INTO "{parent}" VALUES (1, 'a'), (2, 'b');
            INSERT INTO "{child}" VALUES (1, 2);
        """)
        con.commit()
    out = tmp_path / "long.postgres.sql.gz"
    export(f"sqlite:///{db}", "postgres", out)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        names = pg.execute("""SELECT relname, relkind FROM pg_class
                              WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
                              ORDER BY 1""").fetchall()
        assert names == [(parent[:63], "r"), ("é" * 31, "r")]
        kinds = pg.execute("""SELECT contype, count(*) FROM pg_constraint
                              WHERE connamespace = 'public'::regnamespace
                                AND contype IN ('f', 'p', 'u')  -- 18 lists NOT NULL ('n') too
                              GROUP BY 1 ORDER BY 1""").fetchall()
        assert kinds == [("f", 1), ("p", 2), ("u", 1)]
        assert pg.execute(f'SELECT parent_id FROM public."{child}"').fetchall() == [(2,)]


@pytest.mark.parametrize("redacted", [False, True])
@pytest.mark.parametrize("where", ["first", "last"])
def test_text_that_is_not_utf8_fails_naming_its_table_not_its_text(
    tmp_path, in_parts, where, redacted
):
    """SQLite keeps any bytes as text; PostgreSQL's text cannot hold them. The export fails
    with a line naming the table, whether the exporting process (the first rowid range) or a
    helper (the last) reads the row, redacted or not, and the value (the customer's data) is
    in no message (sqlite3's own quotes it)."""
    from flask_backup_manager.engine.redaction import profile_from_mapping

    db = tmp_path / "bad.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, tag TEXT, body TEXT)")
        con.executemany("INSERT INTO notes VALUES (?, 'a', 'b')", [(i,) for i in range(2, 30)])
        at = 1 if where == "first" else 30
        con.execute("INSERT INTO notes VALUES (?, 'a', CAST(X'5345435245549f' AS TEXT))", (at,))
        con.commit()
    (tmp_path / "out").mkdir()
    profile = profile_from_mapping("p", {"notes.tag": "fixed:x"}) if redacted else None
    with pytest.raises(ExportError) as e:
        export(f"sqlite:///{db}", "postgres", tmp_path / "out" / "x.sql.gz", redaction=profile)
    assert "notes: text that is not UTF-8" in str(e.value)
    assert "SECRET" not in str(e.value) and "\n" not in str(e.value)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_hostile_table_name_in_an_error_is_escaped_from_a_helper_too(tmp_path, in_parts, where):
    """The message names the table, whose name is the customer's: an ESC and newlines in it
    come out escaped and folded whichever process (this one, or a helper) read the row, as
    they would reach a terminal or a log viewer."""
    name = "n'\x1b[31m\n);\n.shell touch MARKER\n-- \"x"
    quoted = '"' + name.replace('"', '""') + '"'
    db = tmp_path / "bad.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute(f"CREATE TABLE {quoted} (id INTEGER PRIMARY KEY, body TEXT)")
        at = 1 if where == "first" else 30
        rows = [(i,) for i in range(1, 31) if i != at]
        con.executemany(f"INSERT INTO {quoted} VALUES (?, 'b')", rows)
        con.execute(f"INSERT INTO {quoted} VALUES (?, CAST(X'5345435245549f' AS TEXT))", (at,))
        con.commit()
    with pytest.raises(ExportError) as e:
        export(f"sqlite:///{db}", "postgres", tmp_path / "x.sql.gz")
    assert "\\x1b[31m );" in str(e.value) and "text that is not UTF-8" in str(e.value)
    assert "\x1b" not in str(e.value) and "\n" not in str(e.value)


#: what two SQLites give differently: the sqlite3 module's (Debian's 3.40) and APSW's (3.54)
DIFFERING = "SELECT round(0.15, 1), datetime('2024-02-30'), CAST(10 * 1.0 / 3 AS TEXT)"


@pytest.mark.parametrize("where", ["first", "last"])
def test_values_sqlite_computes_on_read_are_the_ones_the_exports_sqlite_computes(
    owner_db, psql, tmp_path, in_parts, where
):
    """Stored rows are read through APSW, whose SQLite is not the one the export otherwise
    runs: a value computed on read (a VIRTUAL generated column, an ALTER TABLE column's
    default) must be the export's SQLite's, as every other path computes it, whichever
    process (this one, or a helper) reads the row. A STORED column whose expression calls a
    function only that SQLite has (``soundex``) is read as it is stored."""
    import apsw

    with closing(sqlite3.connect(":memory:")) as con:
        ours = con.execute(DIFFERING).fetchone()
        code = con.execute("SELECT soundex('robert')").fetchone()[0]
    assert tuple(apsw.Connection(":memory:").execute(DIFFERING).fetchone()) != ours, (
        "this test needs two SQLites that compute these differently"
    )
    db = tmp_path / "computed.db"
    with closing(sqlite3.connect(db)) as con:
        con.executescript("""
            CREATE TABLE t (id INTEGER PRIMARY KEY, x REAL, d TEXT, y INTEGER,
                            r REAL GENERATED ALWAYS AS (round(x, 1)) VIRTUAL,
                            w TEXT GENERATED ALWAYS AS (datetime(d)) VIRTUAL,
                            q TEXT GENERATED ALWAYS AS (CAST(y * 1.0 / 3 AS TEXT)) VIRTUAL);
            CREATE TABLE s (id INTEGER PRIMARY KEY, name TEXT,
                            code TEXT GENERATED ALWAYS AS (soundex(name)) STORED);
        """)
        at = 1 if where == "first" else 30
        for i in range(1, 31):
            row = (i, 0.15, "2024-02-30", 10) if i == at else (i, 1.0, "2024-01-01", 3)
            con.execute("INSERT INTO t (id, x, d, y) VALUES (?, ?, ?, ?)", row)
            con.execute("INSERT INTO s (id, name) VALUES (?, ?)", (i, "robert"))
        con.commit()
        con.execute("ALTER TABLE t ADD COLUMN f REAL DEFAULT 1.7976931348623157e308")
        con.commit()
        here = con.execute("SELECT r, w, q, f FROM t WHERE id = ?", (at,)).fetchone()
    assert here[:3] == ours
    out = tmp_path / "computed.sql.gz"
    export(f"sqlite:///{db}", "postgres", out)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        got = pg.execute("SELECT r, w, q, f FROM public.t WHERE id = %s", (at,)).fetchone()
        codes = pg.execute("SELECT DISTINCT code FROM public.s").fetchall()
    assert got == here
    assert codes == [(code,)]


def test_a_cancel_interrupts_a_read_of_stored_rows_within_the_batch(tmp_path):
    """A cancel interrupts the query under way (:func:`.base.watch`), the one reading stored
    rows through APSW too: its next row raises, and the rest of the batch is not read."""
    import apsw
    from sqlalchemy.engine import make_url

    from flask_backup_manager.engine.sources.sqlite import SQLiteSource

    db = tmp_path / "many.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.executemany("INSERT INTO t VALUES (?, 'v')", [(i,) for i in range(1, 20_001)])
        con.commit()
    source = SQLiteSource(make_url(f"sqlite:///{db}"))
    try:
        (spec,) = source.tables()
        assert source.stored_reader(spec)
        batches = source.row_batches(spec, 10_000)
        assert len(next(batches)) == 10_000
        source.interrupt()  # what a cancel's watcher calls
        with pytest.raises(apsw.InterruptError):
            next(batches)
    finally:
        source.close()


def test_a_default_an_older_row_lacks_is_read_as_the_exports_sqlite_reads_it(tmp_path):
    """A column added by ALTER TABLE is not in the rows written before it: SQLite reads its
    default for them, and Debian's 3.40 reads ``TRUE`` in a TEXT column as 1, APSW's 3.54 as
    '1'. The export reads it as the rest of the export does: a model's Integer and Boolean
    take it (through APSW's '0', a Boolean would have been true, and the Integer refused)."""
    db = tmp_path / "added.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        con.executemany("INSERT INTO a VALUES (?, 'x')", [(1,), (2,)])
        con.commit()
        con.execute("ALTER TABLE a ADD COLUMN n TEXT DEFAULT TRUE")
        con.execute("ALTER TABLE a ADD COLUMN b TEXT DEFAULT FALSE")
        con.commit()
        assert con.execute("SELECT n, b FROM a").fetchall() == [(1, 0), (1, 0)]
    md = sa.MetaData()
    sa.Table(
        "a",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.Text),
        sa.Column("n", sa.Integer),
        sa.Column("b", sa.Boolean),
    )
    out = tmp_path / "added.sql.gz"
    export(f"sqlite:///{db}", "postgres", out, metadata=md, verify=False)
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert lines[lines.index(next(x for x in lines if x.startswith("COPY"))) + 1 :][:2] == [
        "1\tx\t1\tf",
        "2\tx\t1\tf",
    ]


def test_a_redacted_export_reads_only_the_tables_without_a_rule_through_apsw(tmp_path):
    """A column a rule rewrites is read by an expression calling the redaction's functions,
    which only the sqlite3 connection has; a table without a rule is read as it is stored,
    and its generated column computed from a redacted one is recomputed (not as stored)."""
    from sqlalchemy.engine import make_url

    from flask_backup_manager.engine.redaction import Redaction, profile_from_mapping
    from flask_backup_manager.engine.sources.sqlite import SQLiteSource

    db = tmp_path / "mixed.db"
    with closing(sqlite3.connect(db)) as con:
        con.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT,
                                domain TEXT GENERATED ALWAYS AS (substr(email, 3)) STORED);
            CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT);
            INSERT INTO users (id, email) VALUES (1, 'a@example.com');
            INSERT INTO events VALUES (1, 'login');
        """)
    profile = profile_from_mapping("p", {"users.email": "email"})
    source = SQLiteSource(make_url(f"sqlite:///{db}"), redaction=Redaction(profile, b"k" * 32))
    try:
        by_name = {s.name: s for s in source.tables()}
        assert not source.stored_reader(by_name["users"])
        assert source.stored_reader(by_name["events"])
        (row,) = [r for b in source.row_batches(by_name["users"]) for r in b]
        assert "a@example.com" not in map(str, row) and "example.com" not in map(str, row)
    finally:
        source.close()
