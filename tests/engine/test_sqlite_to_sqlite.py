"""The SQLite side of the export engine: SQLite -> ``sqlite3_db`` and ``sqlite3``."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from contextlib import closing
from fnmatch import fnmatch
from pathlib import Path

import pytest

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.checks.sqlite_shell import ShellReader, normalise
from flask_backup_manager.engine.writers.sqlite.render import exact_real_expression

from ..conftest import DATASETS, move_money_in_sqlite

CHINOOK = DATASETS / "chinook" / "Chinook_Sqlite.sqlite"

SQLITE3 = shutil.which("sqlite3") or "sqlite3"

#: doubles SQLite 3.40 reads back one ulp off when given Python's repr (or its own quote())
HARD_FLOATS = [
    -2.2606631148481385e-299,
    1.829402849984213e-298,
    -1.576209342660012e-294,
    -3.394825485491527e-306,
    -1.1352904205810249e-307,
    -3.8461908647605975e-299,
]

EXTREME_VALUES = [
    2**63 - 1,
    -(2**63),
    0,
    1e308,
    -1e308,
    5e-324,
    0.1 + 0.2,
    -0.0,
    1.7976931348623157e308,
    2.2250738585072014e-308,
    float("inf"),
    float("-inf"),
    1e16,
    123456789012345678.0,
    *HARD_FLOATS,
]

TEXTS = [
    'it\'s a "quote"',
    "back\\slash \\N",
    "tab\there",
    "new\nline\r\nCRLF",
    "\\N",
    "😀 ünïcødé",
    "",
    " ",
    "NULL",
    "'",
    "--",
    ";",
    "x'00'",
]

BLOBS = [b"\x00", b"\x00\x01\xff\x00", b"", bytes(range(256)), b"\\N\n\t'"]

SCHEMA = """
PRAGMA user_version = 42;
PRAGMA application_id = 1234;
CREATE TABLE "Order" ("Select" INTEGER PRIMARY KEY AUTOINCREMENT, "Group" TEXT NOT NULL,
                      "MixedCase" REAL, "from" BLOB);
CREATE TABLE weird ("a""b" TEXT, t TEXT, n NUMERIC, i INTEGER, r REAL, b BLOB, untyped,
                    s STRING, "table" VARCHAR(10));
CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE strict_t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB,
                       anything ANY, shout TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL,
                       twice INT GENERATED ALWAYS AS (id * 2) STORED) STRICT;
CREATE TABLE parent (id INTEGER PRIMARY KEY, a INT NOT NULL, b INT NOT NULL, UNIQUE (a, b));
CREATE TABLE child (id INTEGER PRIMARY KEY, pa INT, pb INT,
                    FOREIGN KEY (pa, pb) REFERENCES parent (a, b) ON DELETE CASCADE);
CREATE TABLE "other.t" (x, "Y" TEXT DEFAULT 'dflt', z INT DEFAULT (1 + 2));
CREATE TABLE secret (id INTEGER PRIMARY KEY AUTOINCREMENT, token TEXT);
CREATE INDEX secret_token ON secret (token);
CREATE TABLE desc_key (x INTEGER PRIMARY KEY DESC, t TEXT, u);
CREATE VIRTUAL TABLE docs_fts USING fts5(title, body, tokenize = 'porter');
CREATE VIRTUAL TABLE bare_fts USING fts5(words, content = '');
CREATE VIEW "Order View" AS SELECT "Select", "Group" FROM "Order" WHERE "MixedCase" > 0;
CREATE VIEW secret_view AS SELECT token FROM secret;
CREATE TRIGGER order_audit AFTER INSERT ON "Order"
BEGIN INSERT INTO kv (k, v) VALUES ('audit ' || new."Select", new."Group"); END;
CREATE INDEX weird_partial ON weird (i) WHERE i IS NOT NULL;
CREATE INDEX weird_expr ON weird (lower(t), i + 1);
CREATE UNIQUE INDEX "Order group" ON "Order" ("Group" COLLATE NOCASE DESC);
"""

#: a table wider than one printf() call renders (100 columns), of every declared affinity
WIDE_TYPES = ["INT", "TEXT", "REAL", "BLOB", "", "NUMERIC", "VARCHAR(5)"] * 33
WIDE = "CREATE TABLE wide ({});".format(", ".join(f"c{i} {t}" for i, t in enumerate(WIDE_TYPES)))


def build_hard_db(path: Path, *, seed: int = 7, wide: bool = True) -> Path:
    """A database that holds every case the SQLite formats must carry exactly (``wide``: and
    a table of 231 columns)."""
    rnd = random.Random(seed)
    doubles = []
    while len(doubles) < 3000:
        (x,) = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))
        if x == x:
            doubles.append(x)
    doubles += [rnd.uniform(-1e6, 1e6) for _ in range(1000)] + [round(rnd.random(), 2)] * 3
    with closing(sqlite3.connect(path, isolation_level=None)) as con:
        con.executescript(SCHEMA + (WIDE if wide else ""))
        con.execute("BEGIN")
        for i, text in enumerate(TEXTS):
            con.execute(
                'INSERT INTO "Order" ("Group", "MixedCase", "from") VALUES (?, ?, ?)',
                (text, i - 3.5, BLOBS[i % len(BLOBS)]),
            )
        con.execute('DELETE FROM "Order" WHERE "Select" = (SELECT max("Select") FROM "Order")')
        mixed = [None, *EXTREME_VALUES, *TEXTS, *BLOBS, "abc", "12", "1e5", "0x10"]
        for v in mixed:  # every column holds every kind of value (affinity permitting)
            con.execute("INSERT INTO weird VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (v,) * 9)
        con.executemany("INSERT INTO weird (r, untyped) VALUES (?, ?)", ((d, d) for d in doubles))
        con.execute("INSERT INTO weird DEFAULT VALUES")
        con.execute("DELETE FROM weird WHERE rowid IN (3, 5, 8)")  # rowids with gaps
        con.executemany("INSERT INTO kv VALUES (?, ?)", ((f"k{i}", v) for i, v in enumerate(mixed)))
        if wide:
            insert = f"INSERT INTO wide VALUES ({', '.join('?' * len(WIDE_TYPES))})"
            cols = range(len(WIDE_TYPES))
            plain = [v for v in mixed if not (isinstance(v, str) and "\r" in v)]
            # rowids 1-64, the first statement rendered, hold no CR: the quick path renders
            # them. Row i, column j holds plain[i + j]: each column every kind of value
            con.executemany(
                insert, ([plain[(i + j) % len(plain)] for j in cols] for i in range(60))
            )
            # then rows where every column holds what its type leads one to expect, the
            # last ones with CRs (rendered by the CR-safe query)
            con.executemany(
                insert,
                (
                    [i * j if "INT" in WIDE_TYPES[j] else f"t{i}" + "\r\n" * (i > 3) for j in cols]
                    for i in range(8)
                ),
            )
        con.executemany(
            "INSERT INTO strict_t (id, name, score, data, anything) VALUES (?, ?, ?, ?, ?)",
            [
                (1, "a", 1e308, b"\x00", 2**63 - 1),
                (2, "b", 5e-324, None, "text"),
                (3, "c", None, b"", 0.1 + 0.2),
                (4, "😀", -0.0, None, None),
            ],
        )
        con.executemany("INSERT INTO parent VALUES (?, ?, ?)", [(1, 1, 1), (2, 1, 2)])
        # x is no rowid alias (DESC): the rowids (2, 3, 4) differ from x; texts hold NULs
        con.executemany(
            "INSERT INTO desc_key VALUES (?, ?, ?)",
            [
                (5, "gone", None),
                (20, "a\x00b", "c\x00d"),
                (30, "\x00", 1),
                (40, "plain", "\x00\r\n"),
            ],
        )
        con.execute("DELETE FROM desc_key WHERE x = 5")
        con.executemany("INSERT INTO child VALUES (?, ?, ?)", [(1, 1, 1), (2, 1, 2), (3, None, 9)])
        con.execute("INSERT INTO \"other.t\" (x) VALUES (NULL), (1), ('two')")
        con.executemany(
            "INSERT INTO secret (token) VALUES (?)", [("SECRET-TOKEN-1",), ("SECRET-TOKEN-2",)]
        )
        con.executemany(
            "INSERT INTO docs_fts (rowid, title, body) VALUES (?, ?, ?)",
            [
                (3, "hello", "the quick brown fox"),
                (10, "jumps", "over the lazy dogs 😀"),
                (11, "it's", "back\\slash\nnew line"),
            ],
        )
        con.execute("INSERT INTO docs_fts (docs_fts, rank) VALUES ('rank', 'bm25(10.0, 1.0)')")
        con.execute("INSERT INTO bare_fts (rowid, words) VALUES (1, 'contentless words')")
        con.execute("COMMIT")
        con.execute("ANALYZE")
    return path


def canon(value: object) -> object:
    """A value with its Python type (= SQLite storage class); floats bit for bit (-0.0)."""
    if isinstance(value, float):
        return ("real", struct.pack(">d", value))
    return (type(value).__name__, value)


def snapshot(path: Path) -> dict:
    """Everything that must survive a copy: the schema SQL, the header pragmas, and every row
    (rowid included) of every table, internal and shadow tables too, with each value's
    storage class as SQLite's typeof() reports it. The schema SQL as the sqlite3 format writes
    it: re-tokenised (:func:`normalise`: comments and line breaks outside literals gone);
    :func:`verbatim_schema` gives it as stored."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        schema = sorted(
            (
                (kind, name, table, None if sql is None else normalise(sql))
                for kind, name, table, sql in con.execute(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master"
                )
            ),
            key=repr,
        )
        kinds = {r[1]: (r[2], r[4]) for r in con.execute("PRAGMA main.table_list")}
        data = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            kind, without_rowid = kinds[name]
            cols = [r[1] for r in con.execute(f"PRAGMA table_xinfo({quote(name)})")]
            sel = ", ".join([*map(quote, cols), *(f"typeof({quote(c)})" for c in cols)])
            if kind == "table" and not without_rowid:
                sel, order = f"rowid, {sel}", "ORDER BY rowid"
            else:
                order = ""
            rows = con.execute(f"SELECT {sel} FROM {quote(name)} {order}").fetchall()
            data[name] = [tuple(map(canon, r)) for r in rows]
        pragmas = {
            p: con.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("user_version", "application_id", "encoding")
        }
    return {"schema": schema, "data": data, "pragmas": pragmas}


def verbatim_schema(path: Path) -> list[tuple]:
    """``sqlite_master`` as stored, comments and line breaks included."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        return sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"), key=repr)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def check_health(path: Path) -> None:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []


def restore_with_cli(dump: Path, db: Path) -> None:
    """``gunzip -c DUMP | sqlite3 DB``; any message from sqlite3 fails the test."""
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f'gunzip -c "{dump}" | {SQLITE3} "{db}"'],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "")


def restore_with_python(dump: Path, db: Path) -> sqlite3.Connection:
    """``executescript`` of the whole dump; returns the connection that ran it (caller closes)."""
    con = sqlite3.connect(db, isolation_level=None)
    with gzip.open(dump, "rt", encoding="utf-8") as f:
        con.executescript(f.read())
    return con


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def hard_db(tmp_path) -> Path:
    return build_hard_db(tmp_path / "hard.db")


def copies(source: Path, tmp: Path, **kw) -> dict[str, Path]:
    """The source exported as ``sqlite3_db`` and as ``sqlite3`` restored both ways."""
    out = {"db": tmp / "copy.sqlite3", "dump": tmp / "copy.sql.gz"}
    export(sqlite_url(source), "sqlite3_db", out["db"], **kw)
    export(sqlite_url(source), "sqlite3", out["dump"], **kw)
    out["cli"] = tmp / "cli.db"
    restore_with_cli(out["dump"], out["cli"])
    out["py"] = tmp / "py.db"
    restore_with_python(out["dump"], out["py"]).close()
    return out


# -- exactness --------------------------------------------------------------------------------


def test_sqlite3_db_is_an_exact_copy_of_every_table_value_and_storage_class(hard_db, tmp_path):
    out = tmp_path / "copy.sqlite3"
    export(sqlite_url(hard_db), "sqlite3_db", out)
    assert snapshot(out) == snapshot(hard_db)
    assert verbatim_schema(out) == verbatim_schema(hard_db)
    check_health(out)
    assert out.read_bytes()[18:20] == b"\x01\x01"  # not WAL: one self-contained file
    assert sorted(os.listdir(tmp_path)) == ["copy.sqlite3", "hard.db"]


def test_sqlite3_format_keeps_storage_classes_and_schema_both_restores(hard_db, tmp_path):
    c = copies(hard_db, tmp_path)
    want = snapshot(hard_db)
    assert snapshot(c["db"]) == want
    for restored in (c["cli"], c["py"]):
        got = snapshot(restored)
        assert got["schema"] == want["schema"]
        assert got["pragmas"] == want["pragmas"]
        for table, rows in want["data"].items():
            assert got["data"][table] == rows, table
        assert got == want
        check_health(restored)


def test_sqlite3_format_restores_to_the_same_dump_text_as_the_source(tmp_path):
    c = copies(CHINOOK, tmp_path)

    def dump(db: Path) -> str:
        return subprocess.run(
            [SQLITE3, db, ".dump"], capture_output=True, text=True, check=True
        ).stdout

    def statements(db: Path) -> list[str]:
        """The .dump's statements, each re-tokenised as the sqlite3 format writes schema SQL."""
        reader = ShellReader()
        items = reader.feed(dump(db).encode()) + reader.close()
        return [normalise(i.sql.decode()) for i in items]

    assert dump(c["db"]) == dump(CHINOOK)
    want = statements(CHINOOK)  # the sqlite3 format's schema SQL is normalised
    assert statements(c["cli"]) == want
    assert statements(c["py"]) == want


def test_extreme_floats_round_trip_exactly_through_sqlite3_format(tmp_path):
    rnd = random.Random(11)
    values = [*HARD_FLOATS, 5e-324, -5e-324, 1e308, 2.2250738585072014e-308]
    while len(values) < 20000:
        (x,) = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))
        if x == x:
            values.append(x)
    src = tmp_path / "floats.db"
    with closing(sqlite3.connect(src)) as con:
        con.execute("CREATE TABLE f (x)")
        con.executemany("INSERT INTO f VALUES (?)", ((v,) for v in values))
        con.commit()
    export(sqlite_url(src), "sqlite3", tmp_path / "f.sql.gz")
    restore_with_cli(tmp_path / "f.sql.gz", tmp_path / "f.db")
    with closing(sqlite3.connect(tmp_path / "f.db")) as con:
        got = [r[0] for r in con.execute("SELECT x FROM f ORDER BY rowid")]
    assert [canon(v) for v in got] == [canon(v) for v in values]


def test_exact_real_expression_evaluates_to_the_same_double_in_sqlite():
    values = [*HARD_FLOATS, 5e-324, -1.7976931348623157e308, 2.0**-1074 * 3, 0.1, -2.5e300]
    with closing(sqlite3.connect(":memory:")) as con:
        for v in values:
            assert con.execute(f"SELECT {exact_real_expression(v)}").fetchone()[0] == v


def test_restored_script_connection_can_use_fts5_at_once(hard_db, tmp_path):
    export(sqlite_url(hard_db), "sqlite3", tmp_path / "d.sql.gz")
    with closing(restore_with_python(tmp_path / "d.sql.gz", tmp_path / "d.db")) as con:
        hits = con.execute("SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'dog' ORDER BY rank")
        assert hits.fetchall() == [(10,)]
        assert con.execute(
            "SELECT rowid FROM bare_fts WHERE bare_fts MATCH 'words'"
        ).fetchall() == [(1,)]
        con.execute("INSERT INTO docs_fts (docs_fts) VALUES ('integrity-check')")


def test_dump_puts_schema_first_and_indexes_triggers_views_after_the_rows(hard_db, tmp_path):
    export(sqlite_url(hard_db), "sqlite3", tmp_path / "d.sql.gz")
    lines = gzip.decompress((tmp_path / "d.sql.gz").read_bytes()).decode().splitlines()
    assert lines[:3] == [
        "-- SQLite database dump made by flask-backup-manager",
        "-- Restore: python -m flask_backup_manager restore FILE --target sqlite:///NEWDB",
        "--      or: gunzip -c FILE | sqlite3 -safe NEWDB",
    ]
    # the manifest's head, then the settings; the rows written of each table at the end
    start = next(i for i, x in enumerate(lines) if not x.startswith("--"))
    assert lines[3].startswith("-- flask-backup-manager manifest")
    assert lines[start : start + 3] == [
        "PRAGMA foreign_keys=OFF;",
        "PRAGMA ignore_check_constraints=ON;",
        "BEGIN TRANSACTION;",
    ]
    end = max(i for i, x in enumerate(lines) if not x.startswith("--"))
    assert lines[end - 1 : end + 2] == [
        "COMMIT;",
        "PRAGMA ignore_check_constraints=OFF;",
        "-- rows written, by table:",
    ]
    first_insert = next(i for i, x in enumerate(lines) if x.startswith("INSERT"))
    last_insert = max(i for i, x in enumerate(lines) if x.startswith("INSERT"))
    creates = [i for i, x in enumerate(lines) if x.startswith("CREATE TABLE")]
    later = [
        i
        for i, x in enumerate(lines)
        if x.startswith(("CREATE INDEX", "CREATE VIEW", "CREATE TRIGGER", "CREATE UNIQUE"))
    ]
    assert max(creates) < first_insert and min(later) > last_insert


def test_an_instead_of_trigger_on_a_view_is_in_every_copy(tmp_path):
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.executescript(
            """CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT);
            CREATE VIEW v AS SELECT a, b FROM t;
            CREATE TRIGGER v_insert INSTEAD OF INSERT ON v BEGIN
                INSERT INTO t (b) VALUES (upper(new.b));
            END;
            INSERT INTO t (b) VALUES ('x');"""
        )
    c = copies(src, tmp_path)
    want = snapshot(src)
    assert ("trigger", "v_insert", "v") in [r[:3] for r in want["schema"]]
    for kind in ("db", "cli", "py"):
        assert snapshot(c[kind]) == want, kind


# -- include / exclude ------------------------------------------------------------------------


def test_exclude_leaves_the_table_and_its_bytes_out_of_both_formats(hard_db, tmp_path):
    c = copies(hard_db, tmp_path, exclude=["secret"])
    want = snapshot(c["db"])
    assert "secret" not in want["data"]
    assert "secret" not in [r[1] for r in want["schema"] if r[0] != "view"]
    seq = {r[1][1]: r[2][1] for r in want["data"]["sqlite_sequence"]}  # rowid, name, seq
    assert "secret" not in seq and "Order" in seq
    assert snapshot(c["cli"]) == want
    assert snapshot(c["py"]) == want
    check_health(c["db"])
    assert b"SECRET-TOKEN" not in c["db"].read_bytes()
    assert b"SECRET-TOKEN" not in gzip.decompress(c["dump"].read_bytes())


def test_include_takes_names_and_patterns(tmp_path):
    out = tmp_path / "x.sqlite3"
    export(sqlite_url(CHINOOK), "sqlite3_db", out, include=["Playlist*", "Artist"])
    with closing(sqlite3.connect(out)) as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == {"Artist", "Playlist", "PlaylistTrack"}


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db"])
def test_include_of_an_unknown_table_fails_and_leaves_no_file(tmp_path, fmt):
    with pytest.raises(ExportError, match="no such table to include: Nope"):
        export(sqlite_url(CHINOOK), fmt, tmp_path / "out", include=["Artist", "Nope"])
    assert os.listdir(tmp_path) == []


# -- progress ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db"])
def test_progress_reports_every_table_finished_with_its_exact_row_count(tmp_path, fmt):
    events = []
    result = export(sqlite_url(CHINOOK), fmt, tmp_path / "out", progress=events.append)
    finished = [e.finished for e in events if e.finished]
    with closing(sqlite3.connect(CHINOOK)) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%'"
            )
        ]
        want = {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    assert dict(finished) == want and len(finished) == len(want)
    assert events[-1].tables_done == events[-1].tables_total == len(want)
    assert result.rows == sum(want.values()) == events[-1].rows_done
    # parents before children: every table's FK parents finished before it
    order = [k for k, _ in finished]
    assert order.index("Artist") < order.index("Album") < order.index("Track")


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db"])
def test_a_failure_during_the_export_leaves_no_file(hard_db, tmp_path, fmt):
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def boom(p):
        if p.finished:
            raise RuntimeError("disk on fire")

    with pytest.raises(ExportError, match="disk on fire"):
        export(sqlite_url(hard_db), fmt, out_dir / "x", progress=boom)
    assert os.listdir(out_dir) == []


def test_a_missing_source_file_is_an_error_and_is_not_created(tmp_path):
    with pytest.raises(ExportError, match="no such database file: .*missing.db"):
        export(sqlite_url(tmp_path / "missing.db"), "sqlite3", tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"not a database\n" * 100)
    with pytest.raises(ExportError, match="file is not a database"):
        export(sqlite_url(tmp_path / "junk.db"), "sqlite3_db", tmp_path / "out")
    assert os.listdir(tmp_path) == ["junk.db"]


# -- consistency --------------------------------------------------------------------------------


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db"])
def test_export_reads_one_snapshot_while_the_app_keeps_moving_money(
    tmp_path, monkeypatch, fmt, parts
):
    """Accounts live in two tables with a filler between them; a writer moves money from one to
    the other all along. Without one snapshot the copy would see a sum that never existed.
    With parts, every table is big: the WAL database's snapshot is copied for the parallel."""
    from flask_backup_manager.engine import parallel

    monkeypatch.setattr(parallel, "PARTS", parts)
    monkeypatch.setattr(parallel, "PARALLEL_ROWS", 1 if parts > 1 else parallel.PARALLEL_ROWS)
    db = tmp_path / "bank.db"
    with closing(sqlite3.connect(db, isolation_level=None)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        con.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, pad BLOB)")
        con.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO a VALUES (?, 1000)", ((i,) for i in range(200)))
        con.executemany("INSERT INTO b VALUES (?, 1000)", ((i,) for i in range(200)))
        con.executemany("INSERT INTO filler (pad) VALUES (randomblob(1000))", ([],) * 6000)
        con.execute("COMMIT")
    total = 400 * 1000
    stop = threading.Event()
    commits = []

    def slowly(p) -> None:  # give the writer time between (and inside) tables
        time.sleep(0.05)

    writer = threading.Thread(target=move_money_in_sqlite, args=(db, stop, commits))
    writer.start()
    try:
        while len(commits) < 20:
            time.sleep(0.01)
        before = len(commits)
        out = tmp_path / "out"
        export(sqlite_url(db), fmt, out, progress=slowly)
        during = len(commits) - before
    finally:
        stop.set()
        writer.join()
    if fmt == "sqlite3":
        restored = tmp_path / "restored.db"
        restore_with_cli(out, restored)
        out = restored
    with closing(sqlite3.connect(out)) as con:
        got = con.execute("SELECT (SELECT sum(balance) FROM a) + (SELECT sum(balance) FROM b)")
        assert got.fetchone()[0] == total
    assert during > 10  # the app really wrote while the export ran


# -- command line -------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask_backup_manager", "export", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("fmt", ["sqlite3", "sqlite3_db"])
def test_command_line_export_writes_the_file_and_exits_0(tmp_path, fmt):
    out = tmp_path / "chinook.out"
    done = run_cli("--source", sqlite_url(CHINOOK), "--format", fmt, "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "11 tables, 15607 rows" in done.stdout
    assert os.listdir(tmp_path) == ["chinook.out"]


def test_command_line_missing_source_fails_with_one_line_and_no_file(tmp_path):
    out = tmp_path / "x.sql.gz"
    done = run_cli(
        "--source", sqlite_url(tmp_path / "nope.db"), "--format", "sqlite3", "--output", str(out)
    )
    assert done.returncode != 0
    assert done.stderr.startswith("error: no such database file:")
    assert done.stderr.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_command_line_unknown_format_is_a_usage_error(tmp_path):
    done = run_cli(
        "--source", sqlite_url(CHINOOK), "--format", "xml", "--output", str(tmp_path / "x")
    )
    assert done.returncode == 2 and "invalid choice: 'xml'" in done.stderr
    assert os.listdir(tmp_path) == []


# -- the snapshot copy ----------------------------------------------------------------------------


def test_sqlite3_db_of_a_rollback_journal_database_is_vacuumed_from_its_one_snapshot_copy(
    hard_db, tmp_path, monkeypatch
):
    """The copy the source makes to keep the app's commits unblocked is the one the output is
    written from (by VACUUM INTO): the pages are not copied a second time, and no snapshot
    file is left behind."""
    from flask_backup_manager.engine.sources import sqlite

    made = []
    real = sqlite._snapshot_copy

    def counted(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(sqlite, "_snapshot_copy", counted)
    out = tmp_path / "copy.sqlite3"
    export(sqlite_url(hard_db), "sqlite3_db", out)
    assert len(made) == 1
    assert snapshot(out) == snapshot(hard_db)
    check_health(out)
    assert sorted(os.listdir(tmp_path)) == ["copy.sqlite3", "hard.db"]


@pytest.fixture
def file_copies(monkeypatch):
    """What each try of the snapshot's copy by a process of its own answered (True: it made
    the copy), for every database size."""
    from flask_backup_manager.engine.sources import sqlite

    monkeypatch.setattr(sqlite, "FILE_COPY_MIN", 0)
    answers: list[bool] = []
    real = sqlite._file_copy

    def spied(*a, **kw):
        answers.append(real(*a, **kw))
        return answers[-1]

    monkeypatch.setattr(sqlite, "_file_copy", spied)
    return answers


def test_the_snapshot_copy_leaves_the_locks_of_the_apps_own_connections_in_place(
    hard_db, tmp_path, file_copies
):
    """The copy of a rollback-journal file is made byte for byte by a process of its own:
    closing a descriptor of the file in the exporting process would drop every POSIX lock
    that process holds on it. An app connection of this process that is writing keeps its
    lock through the export (another process still cannot write), and its uncommitted row
    is in no copy."""
    before = snapshot(hard_db)
    app = sqlite3.connect(hard_db, isolation_level=None)
    try:
        app.execute("BEGIN IMMEDIATE")
        app.execute("""INSERT INTO "Order" ("Group") VALUES ('uncommitted')""")
        for fmt, name in (("sqlite3_db", "copy.db"), ("sqlite3", "copy.sql.gz")):
            export(sqlite_url(hard_db), fmt, tmp_path / name)
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], "
                "timeout=0, isolation_level=None); c.execute('BEGIN IMMEDIATE')",
                str(hard_db),
            ],
            capture_output=True,
            text=True,
        )
        assert other.returncode == 1 and "database is locked" in other.stderr
        app.execute("COMMIT")
    finally:
        app.close()
    assert file_copies == [True, True]
    restore_with_cli(tmp_path / "copy.sql.gz", tmp_path / "restored.db")
    for db in (tmp_path / "copy.db", tmp_path / "restored.db"):
        assert snapshot(db) == before  # the committed rows, not the one that was not


def test_a_database_turned_to_wal_after_it_was_opened_is_copied_with_its_wal(
    hard_db, tmp_path, monkeypatch, file_copies
):
    """The journal mode is asked again under the read lock: a database the app turns to WAL
    between the export's opening and its copy (a new connection's first PRAGMA, say) holds
    commits in its WAL, which a copy of the file alone would lose; the backup API copies it."""
    from flask_backup_manager.engine.sources import sqlite

    app = sqlite3.connect(hard_db, isolation_level=None)
    checked = sqlite._file_copy

    def turned_to_wal_first(*a, **kw):
        app.execute("PRAGMA journal_mode=WAL")
        app.execute("""INSERT INTO "Order" ("Group") VALUES ('in the WAL')""")
        return checked(*a, **kw)

    monkeypatch.setattr(sqlite, "_file_copy", turned_to_wal_first)
    try:
        export(sqlite_url(hard_db), "sqlite3_db", tmp_path / "copy.db")
        assert snapshot(tmp_path / "copy.db") == snapshot(hard_db)
    finally:
        app.close()
    assert file_copies == [False]
    with closing(sqlite3.connect(tmp_path / "copy.db")) as con:
        found = con.execute("""SELECT count(*) FROM "Order" WHERE "Group" = 'in the WAL'""")
        assert found.fetchone()[0] == 1


def test_without_a_python_to_start_the_snapshot_is_copied_with_the_backup_api(
    hard_db, tmp_path, monkeypatch, file_copies
):
    """Where ``sys.executable`` is not a Python (an app embedded in uWSGI, say), the copy is
    made in this process with SQLite's backup API: the same rows. A program named like a
    Python that copies nothing fails the export, saying so, and leaves nothing behind."""
    for program in ("/bin/true", str(tmp_path / "missing" / "python3")):
        monkeypatch.setattr(sys, "executable", program)
        out = tmp_path / "copy.sqlite3"
        export(sqlite_url(hard_db), "sqlite3_db", out, verify=False)
        assert snapshot(out) == snapshot(hard_db)
        check_health(out)
        out.unlink()
    assert file_copies == [False, False]
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(ExportError, match="copying the database file failed: the copy is inc"):
        export(sqlite_url(hard_db), "sqlite3_db", tmp_path / "copy.sqlite3", verify=False)
    assert sorted(os.listdir(tmp_path)) == ["bin", "hard.db"]


def test_a_private_file_is_read_in_place_without_a_snapshot_copy(hard_db):
    from sqlalchemy.engine import make_url

    from flask_backup_manager.engine.sources.sqlite import SQLiteSource

    for private, copied in ((False, True), (True, False)):
        src = SQLiteSource(make_url(sqlite_url(hard_db)), private=private)
        try:
            assert (src.copy is not None) is copied
        finally:
            src.close()


@pytest.mark.parametrize("in_parts_too", [False, True])
def test_text_that_is_not_utf8_is_copied_byte_for_byte(tmp_path, monkeypatch, in_parts_too):
    """SQLite stores whatever bytes it is given as TEXT; both formats keep them as they are
    (read back by their hex: Python cannot decode them), in one process and in parts."""
    if in_parts_too:
        from flask_backup_manager.engine import parallel

        monkeypatch.setattr(parallel, "PARALLEL_ROWS", 1)
        monkeypatch.setattr(parallel, "PARTS", 2)
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.executemany(
            "INSERT INTO t (v) VALUES (CAST(? AS TEXT))",
            [(b,) for b in (b"\xc3(", b"caf\xe9", b"\xff\xfe'", b"ok", b"a\r\nb\x80")] * 3,
        )
        con.commit()

    def rows(db: Path) -> list:
        with closing(sqlite3.connect(db)) as con:
            return con.execute("SELECT id, typeof(v), hex(v) FROM t ORDER BY id").fetchall()

    c = {"db": tmp_path / "copy.db", "dump": tmp_path / "copy.sql.gz", "cli": tmp_path / "cli.db"}
    export(sqlite_url(src), "sqlite3_db", c["db"])
    export(sqlite_url(src), "sqlite3", c["dump"])
    restore_with_cli(c["dump"], c["cli"])
    assert rows(c["db"]) == rows(c["cli"]) == rows(src)
    assert len(rows(src)) == 15 and rows(src)[0][1] == "text"


@pytest.mark.parametrize("encoding", ["UTF-16le", "UTF-16be"])
def test_a_utf16_database_restores_from_sql_in_its_own_encoding(tmp_path, encoding):
    """The SQL text says the database's encoding first, so a restore stores the texts as the
    source does; a text holding a NUL (written as the hex of its bytes) comes back whole."""
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.execute(f"PRAGMA encoding = '{encoding}'")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, w)")
        con.executemany(
            "INSERT INTO t (v, w) VALUES (?, ?)",
            [("a\x00b", "\x00"), ("déjà vu 😀", "x\r\ny\x00z"), ("plain", 7), ("it's", None)],
        )
        con.commit()
    dump, cli = tmp_path / "copy.sql.gz", tmp_path / "cli.db"
    export(sqlite_url(src), "sqlite3", dump)
    restore_with_cli(dump, cli)
    assert snapshot(cli) == snapshot(src)
    assert snapshot(cli)["pragmas"]["encoding"] == encoding
    with closing(restore_with_python(dump, tmp_path / "py.db")) as con:
        assert con.execute("SELECT v, w FROM t ORDER BY id").fetchall()[0] == ("a\x00b", "\x00")


def test_names_that_are_sqlite3_shell_commands_are_not_run_by_the_restore(tmp_path):
    where = tmp_path / "ran"
    where.mkdir()
    src = tmp_path / "names.db"
    con = sqlite3.connect(src)
    try:
        for i, sep in enumerate(("\n",)):
            t = quote(f"t{i}{sep}.shell touch {where}/t{i}{sep}")
            c = quote(f"c{i}{sep}.shell touch {where}/c{i}{sep}")
            ix = quote(f"i{i}{sep}.shell touch {where}/i{i}{sep}")
            con.execute(f"CREATE TABLE {t} ({c} INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
            con.execute(f"CREATE INDEX {ix} ON {t} (v)")
            con.execute(
                f"INSERT INTO {t} (v) VALUES (?)", (f"{sep}.shell touch {where}/v{i}{sep}",)
            )
        con.execute("ANALYZE")  # sqlite_stat1 rows name the tables and indexes
        con.commit()
    finally:
        con.close()
    out = tmp_path / "names.sqlite3.sql.gz"
    export(sqlite_url(src), "sqlite3", out)
    new = tmp_path / "new.db"
    restored = subprocess.run(
        ["bash", "-o", "pipefail", "-c", 'gunzip -c "$1" | "$2" "$3"', "-", out, SQLITE3, new],
        capture_output=True,
        text=True,
        check=False,
    )
    assert list(where.iterdir()) == []
    assert (restored.returncode, restored.stderr) == (0, "")
    with closing(sqlite3.connect(new)) as con:
        assert (
            con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            == 3
        )
    # a CR inside a quoted name: the shell drops one before an LF, Python's text mode reads
    # one as an LF (other names), and no SQL text can say it otherwise: the export is
    # refused, naming the table
    for i, sep in enumerate(("\r\n", "\r"), start=1):
        with closing(sqlite3.connect(src)) as con:
            con.execute(f"CREATE TABLE {quote(f't{i}{sep}.shell touch {where}/t{i}')} (v)")
            con.commit()
        with pytest.raises(ExportError, match=rf"table t{i}\\r(\\n)?\.shell touch"):
            export(sqlite_url(src), "sqlite3", tmp_path / "cr.sqlite3.sql.gz")
        with closing(sqlite3.connect(src)) as con:
            con.execute(f"DROP TABLE {quote(f't{i}{sep}.shell touch {where}/t{i}')}")
            con.commit()
    assert list(where.iterdir()) == []


class DirWatch:
    """Every name seen in ``path`` while the block runs: listed from a thread, as fast as it
    goes, and at each progress call (pass ``progress`` to export())."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(os.listdir(self.path))

    def progress(self, _p: object) -> None:
        self.seen.update(os.listdir(self.path))

    def __enter__(self) -> DirWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def strays(self, output: Path, *known: str) -> set[str]:
        """The names a cleaner removing ``.<output>.*.part*`` after a dead worker would miss."""
        glob = f".{output.name}.*.part*"  # the cleaner's: part files and their sidecars
        return {n for n in self.seen if n not in (output.name, *known) and not fnmatch(n, glob)}


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_every_temp_file_beside_the_output_is_one_a_cleaner_finds(tmp_path, fmt, journal):
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.execute(f"PRAGMA journal_mode={journal}")
        con.execute("CREATE TABLE kept (id INTEGER PRIMARY KEY, v BLOB)")
        con.execute("CREATE TABLE gone (id INTEGER PRIMARY KEY, v BLOB)")
        for table in ("kept", "gone"):  # a VACUUM long enough to be seen
            con.executemany(f"INSERT INTO {table} (v) VALUES (randomblob(4000))", [()] * 8000)
        con.commit()
    out = tmp_path / f"out.{fmt}"
    with DirWatch(tmp_path) as w:
        export(sqlite_url(src), fmt, out, exclude=["gone"], progress=w.progress)
    assert w.strays(out, "src.db", "src.db-wal", "src.db-shm") == set()


def test_rows_closed_after_the_source_closed_raise_nothing(hard_db):
    from sqlalchemy.engine import make_url

    from flask_backup_manager.engine.sources.sqlite import SQLiteSource

    src = SQLiteSource(make_url(sqlite_url(hard_db)))
    rows = src.row_batches(src.tables()[0], size=1)
    next(rows)
    src.close()
    rows.close()  # as the garbage collector would, later


# -- big tables: rendered by several processes --------------------------------------------------


@pytest.fixture
def in_parts(monkeypatch):
    """Every table is big enough to be cut into three rowid ranges, each rendered by its own
    process (the exporting one and two parallel)."""
    from flask_backup_manager.engine import parallel

    monkeypatch.setattr(parallel, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(parallel, "PARTS", 3)


def add_awkward_rowids(path: Path) -> None:
    """Rowids at both ends of the 64-bit range with a huge gap, and rows bigger than one
    statement's aim (so each goes alone into its statement)."""
    with closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE ends (id INTEGER PRIMARY KEY, v)")
        con.executemany(
            "INSERT INTO ends VALUES (?, ?)",
            [(-(2**63), "min"), (-1, -1.5), (0, None), (7, b"\x00\xff"), (2**63 - 1, "max")],
        )
        con.execute("CREATE TABLE empty (id INTEGER PRIMARY KEY, v)")
        con.execute("CREATE TABLE big (v BLOB)")  # rowid not a column: carried as rowid
        con.executemany("INSERT INTO big VALUES (randomblob(?))", [(300_000,)] * 5)
        con.executemany("INSERT INTO big VALUES (?)", [(i,) for i in range(3000)])
        con.commit()


def test_big_tables_rendered_in_parts_restore_to_the_exact_copy(hard_db, tmp_path, in_parts):
    add_awkward_rowids(hard_db)
    c = copies(hard_db, tmp_path)
    want = snapshot(hard_db)
    for restored in (c["cli"], c["py"]):
        assert snapshot(restored) == want
        check_health(restored)
    with gzip.open(c["dump"], "rt", encoding="utf-8") as f:
        statements = sum(line.startswith('INSERT INTO "big"') for line in f)
    assert statements >= 5 + 1  # a 300 kB row is a statement of its own; small rows share


def helper_pids(parent: int | None = None) -> list[int]:
    """The helper processes (rendering rows; not the one copying the snapshot) that ``parent``
    (this process) started, found in /proc as `ps` would show them; other programs' processes
    are never touched."""
    parent = os.getpid() if parent is None else parent
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"engine/child.py" in cmd and b"\0--copy\0" not in cmd:
            pids.append(int(entry))
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def holds_a_file_in(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` has a file inside ``folder`` open."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{folder}/"):
                return True
        except OSError:
            continue
    return False


@pytest.fixture
def one_big_table(tmp_path, in_parts) -> Path:
    """A database of one table of 2 million rows, cut into ranges for helper processes; the
    output goes to the empty directory ``tmp_path / "out"``."""
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) "
            "INSERT INTO t SELECT i, printf('row %d', i) FROM n"
        )
        con.commit()
    (tmp_path / "out").mkdir()
    return src


def test_a_helper_killed_mid_table_fails_the_export_and_leaves_no_file(one_big_table, tmp_path):
    out_dir = tmp_path / "out"
    killed: list[int] = []
    stop = threading.Event()

    def kill_the_first_helper() -> None:
        while not stop.is_set() and not killed:
            for pid in helper_pids():
                os.kill(pid, 9)
                killed.append(pid)

    killer = threading.Thread(target=kill_the_first_helper)
    killer.start()
    try:
        with pytest.raises(ExportError, match="a helper process failed: exit -9"):
            export(sqlite_url(one_big_table), "sqlite3", out_dir / "x.sql.gz")
    finally:
        stop.set()
        killer.join()
    assert killed and os.listdir(out_dir) == []
    assert helper_pids() == []


def test_a_cancel_stops_the_helpers_too(one_big_table, tmp_path):
    from flask_backup_manager.engine import ExportCancelled

    out_dir = tmp_path / "out"
    cancel = threading.Event()
    seen = []

    def cancel_once_helpers_run(p) -> None:
        if p.table == "t" and not cancel.is_set() and (pids := helper_pids()):
            seen.extend(pids)
            cancel.set()

    start = time.monotonic()
    with pytest.raises(ExportCancelled):
        export(
            sqlite_url(one_big_table),
            "sqlite3",
            out_dir / "x",
            progress=cancel_once_helpers_run,
            cancel=cancel,
        )
    assert seen and helper_pids() == [] and os.listdir(out_dir) == []
    assert time.monotonic() - start < 30


def test_without_a_python_to_start_helpers_every_part_is_rendered_here(
    hard_db, tmp_path, in_parts, monkeypatch
):
    """An app embedded in a program that is not Python (sys.executable unusable) still gets
    its backup: the parts a helper would render are rendered by the exporting process."""
    add_awkward_rowids(hard_db)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    c = copies(hard_db, tmp_path)
    assert snapshot(c["cli"]) == snapshot(hard_db)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_helpers_die_with_a_worker_killed_mid_export(one_big_table, tmp_path):
    """A worker killed with SIGKILL (out of memory, a deploy) leaves no helper rendering on."""
    script = (
        "import sys; from flask_backup_manager.engine import parallel, export; "
        "parallel.PARALLEL_ROWS = 1; parallel.PARTS = 3; "
        "export('sqlite:///' + sys.argv[1], 'sqlite3', sys.argv[2])"
    )
    out_dir = tmp_path / "out"
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(one_big_table), str(out_dir / "x")]
    )

    def rendering(pids: list[int]) -> bool:
        """Both helpers hold their part file open: each has asked to die with its parent (a
        helper killed sooner, still starting up, ends on its own once it sees its parent gone,
        after a start-up that a loaded machine makes longer than the pause below)."""
        return len(pids) == 2 and all(holds_a_file_in(p, out_dir) for p in pids)

    try:
        deadline = time.monotonic() + 30
        while not rendering(pids := helper_pids(worker.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pids, "no helper started"
        assert rendering(pids), f"the helpers {pids} did not start rendering their parts"
    finally:
        worker.kill()
        worker.wait()
    time.sleep(0.5)  # far less than a helper's share of 2 million rows takes
    assert not any(map(alive, pids))
