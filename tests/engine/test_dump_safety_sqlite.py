"""The ``sqlite3`` format is never a weapon against whoever restores it (issue 9).

Each test builds a hostile database for real (SQLite, or PostgreSQL for PG -> sqlite3), exports
it, restores the file with the README's commands (``gunzip -c F | sqlite3 new.db``, also with
``-safe``, run as a subprocess in the test's directory, and Python's ``executescript``), and
asserts the effect: no marker file where a payload pointed, no file made by an ``ATTACH``, and
either a clear ExportError naming the object or a restored database holding the source's
objects and rows.
"""

from __future__ import annotations

import gzip
import random
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.base import shown
from flask_backup_manager.engine.export import read_through, script_check
from flask_backup_manager.engine.writers.sqlite import from_sqlite

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def restore_all(dump: Path, where: Path) -> list[Path]:
    """The file restored three ways, in ``where`` (the shell's working directory)."""
    out = []
    for flags in ([], ["-safe"]):
        new = where / f"shell{len(out)}.db"
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", 'gunzip -c "$1" | "$2" "${@:3}"', "-"]
            + [str(dump), SQLITE3, *flags, str(new)],
            cwd=where,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, b""), (flags, done.stderr[-2000:])
        out.append(new)
    new = where / "py.db"
    with closing(sqlite3.connect(new)) as con:
        con.executescript(gzip.open(dump, "rt", encoding="utf-8").read())
    out.append(new)
    return out


def contents(db: Path) -> dict:
    """The objects (type, name, table) and every table's rows (rowid, values, storage class)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        con.text_factory = bytes
        objects = sorted(con.execute("SELECT type, name, tbl_name FROM sqlite_master"))
        rows = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cols = [r[1].decode() for r in con.execute(f"PRAGMA table_info({q(name.decode())})")]
            sel = ", ".join([*map(q, cols), *(f"typeof({q(c)})" for c in cols)])
            got = con.execute(f"SELECT {sel} FROM {q(name.decode())}").fetchall()
            rows[name] = sorted(got, key=repr)
    return {"objects": objects, "rows": rows}


def files(where: Path) -> set[str]:
    return {p.name for p in where.rglob("*")}


@pytest.fixture
def room(tmp_path):
    """(the directory the databases live and the shell runs in, the one payloads point at)"""
    marks = tmp_path / "marks"
    marks.mkdir()
    return tmp_path, marks


def export_and_restore(db: Path, where: Path, marks: Path) -> None:
    """Export, restore three ways; the restores hold what the source holds; nothing ran."""
    before = files(where)
    dump = where / "dump.sqlite3.sql.gz"
    export(url(db), "sqlite3", dump)
    restored = restore_all(dump, where)
    assert list(marks.iterdir()) == []
    made = {"dump.sqlite3.sql.gz", *(p.name for p in restored)}
    assert files(where) == before | made  # no file made by an ATTACH or .output
    want = contents(db)
    for new in restored:
        assert contents(new) == want, new.name


# -- the ways in named by the issue ------------------------------------------------------------


def test_a_check_calling_the_shells_edit_runs_nothing_while_the_rows_load(room):
    """The plain shell defines edit(), which runs a program: a CHECK calling it would run
    once per row as the data loads. The file loads rows with CHECKs off (they held in the
    source already): the plain shell and executescript run nothing and keep the CHECK;
    ``sqlite3 -safe`` refuses the table outright (it names edit() before anything runs)."""
    where, marks = room
    db = where / "check.db"
    with closing(sqlite3.connect(db)) as con:
        con.create_function("edit", 2, lambda text, editor: text, deterministic=True)
        con.execute(f"CREATE TABLE t (a TEXT, CHECK (edit(a, 'touch {marks}/check') <> 'zz'))")
        con.executemany("INSERT INTO t VALUES (?)", [("x",), ("y",)])
        con.commit()
    dump = where / "dump.sqlite3.sql.gz"
    result = export(url(db), "sqlite3", dump)
    assert any("edit" in w for w in result.warnings)
    for flags, new in (([], "plain.db"), (["-safe"], "safe.db")):
        subprocess.run(
            ["bash", "-c", 'gunzip -c "$1" | "$2" "${@:3}"', "-", str(dump), SQLITE3, *flags, new],
            cwd=where,
            capture_output=True,
            timeout=120,
            check=False,
        )
    with closing(sqlite3.connect(where / "py.db")) as con:  # Python has no edit(): refused
        with pytest.raises(sqlite3.OperationalError, match="no such function: edit"):
            con.executescript(gzip.open(dump, "rt", encoding="utf-8").read())
    assert list(marks.iterdir()) == []
    with closing(sqlite3.connect(where / "plain.db")) as con:
        con.create_function("edit", 2, lambda text, editor: text)
        assert con.execute("SELECT a FROM t ORDER BY a").fetchall() == [("x",), ("y",)]
        with pytest.raises(sqlite3.IntegrityError):  # the CHECK is there, and on again
            con.execute("INSERT INTO t VALUES ('zz')")


def test_a_go_line_in_a_view_stays_inside_one_line_of_the_dump(room):
    where, marks = room
    db = where / "go.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t(shell, x)")
        con.execute("INSERT INTO t VALUES ('a', 1)")
        con.execute(f"CREATE VIEW v AS SELECT\ngo\n.shell 'touch {marks}/go'\nFROM t AS go")
        con.execute("CREATE VIEW w AS SELECT 6\n/\n2 AS half FROM t")  # the shell: SELECT 6;
        con.commit()
    export_and_restore(db, where, marks)


def test_a_comment_left_open_in_one_entry_and_closed_in_the_next(room):
    where, marks = room
    db = where / "comment.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE a(x) /* left open")
        con.execute(f"CREATE TABLE b(\"*/;\n.shell 'touch {marks}/comment'\n\" TEXT)")
        con.execute("CREATE TABLE c(y -- a comment to the end of the line\n)")
        con.execute("INSERT INTO b VALUES ('*/;\n.shell x')")
        con.commit()
    export_and_restore(db, where, marks)


def test_virtual_table_arguments_with_shell_lines(room):
    where, marks = room
    db = where / "vtab.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute(f"CREATE VIRTUAL TABLE f USING fts4(a, b\ngo\n.shell 'touch {marks}/fts4'\n)")
        con.execute(f"CREATE VIRTUAL TABLE g USING fts5(a, b, prefix=2 /*\n.output {marks}/o\n*/)")
        con.execute("INSERT INTO f VALUES ('x\ngo\n.shell y', 'z')")
        con.execute("INSERT INTO g VALUES ('p', 'q')")
        con.commit()
    export_and_restore(db, where, marks)


WRITABLE_SCHEMA = [
    # (name, type, the text written into sqlite_master.sql)
    ("t", "table", "CREATE TABLE t(a); ATTACH '{where}/attached.db' AS e"),
    ("t", "table", "CREATE TABLE t(a);\n.shell touch {marks}/extra"),
    ("v", "view", "CREATE VIEW v AS SELECT 1; ATTACH '{where}/attached.db' AS e"),
    ("i", "index", "CREATE INDEX i ON t(a);\n.output {marks}/index"),
    ("r", "trigger", "CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT 1; END; ATTACH 'x' AS y"),
    ("v", "view", "CREATE VIEW v AS SELECT $a('x) ; ATTACH '{where}/attached.db' AS e; --'"),
    (
        "r",
        "trigger",
        "CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT @a('x); END; ATTACH 'y' AS z",
    ),
    ("i", "index", "CREATE TABLE i(b)"),
    (
        "t",
        "table",
        "CREATE TABLE t AS WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n FROM c)"
        " SELECT n AS a FROM c",
    ),
    ("v", "view", "CREATE VIEW other AS SELECT 1"),
    ("r", "trigger", "CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT 1;"),
]


@pytest.mark.parametrize(("name", "kind", "text"), WRITABLE_SCHEMA)
def test_extra_statements_written_with_writable_schema_refuse_the_export(room, name, kind, text):
    where, marks = room
    db = where / "ws.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t(a)")
        con.execute("CREATE INDEX i ON t(a)")
        con.execute("CREATE VIEW v AS SELECT 1")
        con.execute("CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT 1; END")
        con.execute("PRAGMA writable_schema=ON")
        con.execute(
            "UPDATE sqlite_master SET sql = ? WHERE name = ?",
            (text.format(where=where, marks=marks), name),
        )
        con.commit()
    before = files(where)
    # refused by the check, or by SQLite itself when it reads the schema
    said = rf"^(the {kind} {name} in sqlite_master is not one|malformed database schema \({name}\))"
    with pytest.raises(ExportError, match=said):
        export(url(db), "sqlite3", where / "ws.sqlite3.sql.gz")
    assert files(where) == before
    assert list(marks.iterdir()) == []


# -- generated hostile names, every object kind --------------------------------------------------

PIECES = [
    "'", '"', "`", "[", "]", "\\", "\n", "\r", "go", "GO", "\ngo\n", "/", "\n/\n", ".", "$$",
    "*/", "/*", "--", ";", " ", "x", "\t", "\n.shell touch {m}/s{n}\n", "\n.output {m}/o{n}\n",
    "\n.system touch {m}/y{n}\n", "\n  go\n", "END;", "\r\n",
]  # fmt: skip


def hostile(rng: random.Random, marks: Path, n: int = 6, cr: bool = True) -> str:
    """Hostile text; without CRs if not ``cr`` (a CR in a name or literal of the schema is
    refused: see test_a_cr_in_any_schema_name_or_literal_is_refused_naming_the_object)."""
    text = "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, n)))
    text = text.format(m=marks, n=rng.randrange(10**6))
    return "x" + (text if cr else text.replace("\r", ""))  # never sqlite_...


def build_hostile_sqlite(
    db: Path, rng: random.Random, marks: Path, cr: int | None = None
) -> list[str]:
    """A table, its columns, default, CHECK, comments, an index, a view, a trigger and rows,
    every name and text hostile, the values with CRs too. The schema's names and literals
    have none but the ``cr``-th (0: the table's name .. 6: the trigger's, 7: the view's
    alias, 8: the default, 9: the CHECK's literal). Returns the names."""
    texts = [hostile(rng, marks, cr=k == cr) for k in range(10)]
    if cr is not None:
        texts[cr] += "\r"
    t, a, b, c, i, v, r, alias, default, check = texts
    names = [t, a, b, c, i, v, r]
    if len({n.lower() for n in names}) < len(names):
        t = t + "1"  # the same name twice: make the table's unique
    comment = hostile(rng, marks).replace("*/", "")
    line_comment = hostile(rng, marks).replace("\n", " ")
    with closing(sqlite3.connect(db)) as con:
        con.execute(
            f"CREATE TABLE {q(t)} ({q(a)} INTEGER PRIMARY KEY, /* {comment} */"
            f" {q(b)} TEXT DEFAULT {lit(default)} CHECK ({q(b)} <> {lit(check)}),"
            f" -- {line_comment}\n"
            f" {q(c)} BLOB)"
        )
        con.execute(f"CREATE INDEX {q(i)} ON {q(t)} ({q(b)}) -- {line_comment}")
        con.execute(f"CREATE VIEW {q(v)} AS SELECT {q(a)} AS {q(alias)}, {lit(check)} FROM {q(t)}")
        con.execute(
            f"CREATE TRIGGER {q(r)} AFTER INSERT ON {q(t)} BEGIN"
            f" UPDATE {q(t)} SET {q(c)} = {lit(default)} WHERE 0; /* {comment} */ END"
        )
        rows = [
            (n, hostile(rng, marks, 12), hostile(rng, marks).encode() if n % 2 else None)
            for n in range(1, 40)
        ]
        con.executemany(f"INSERT INTO {q(t)} VALUES (?, ?, ?)", rows)
        con.execute(f"INSERT INTO {q(t)} ({q(a)}) VALUES (99)")  # the default
        con.commit()
    return [t, a, b, c, i, v, r]


@pytest.mark.parametrize("seed", range(12))
def test_generated_hostile_names_in_every_object_kind(room, seed):
    where, marks = room
    db = where / "hostile.db"
    build_hostile_sqlite(db, random.Random(seed), marks)
    export_and_restore(db, where, marks)


@pytest.mark.parametrize("cr", range(10))
def test_a_cr_in_any_schema_name_or_literal_is_refused_naming_the_object(room, cr):
    """The shell drops a CR before an LF, Python's text mode reads a CR as an LF: no SQL text
    restores such a name or literal alike everywhere (a value's CR is written as char(13))."""
    where, marks = room
    db = where / "cr.db"
    names = build_hostile_sqlite(db, random.Random(100 + cr), marks, cr=cr)
    before = files(where)
    with pytest.raises(ExportError, match="holds a CR") as e:
        export(url(db), "sqlite3", where / "cr.sqlite3.sql.gz")
    kind, name = {7: ("view", names[5]), 8: ("table", names[0]), 9: ("table", names[0])}.get(
        cr, (None, names[cr] if cr < 7 else "")
    )
    owner = {1: 0, 2: 0, 3: 0}.get(cr)  # a column's CR: the table's entry is refused
    said = shown(names[owner]) if owner is not None else shown(name)
    assert f" {said} in sqlite_master" in str(e.value), str(e.value)
    assert kind is None or f"the {kind} " in str(e.value)
    assert files(where) == before and list(marks.iterdir()) == []
    export(url(db), "sqlite3_db", where / "cr.sqlite3")  # the other formats carry it as it is
    assert verbatim(where / "cr.sqlite3") == verbatim(db)


def verbatim(db: Path) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return sorted(con.execute("SELECT type, name, sql FROM sqlite_master"), key=repr)


# -- PostgreSQL -> sqlite3 -------------------------------------------------------------------------


def test_hostile_postgresql_names_make_a_harmless_sqlite3_file(room, make_pg_db):
    where, marks = room
    rng = random.Random(7)
    pg = make_pg_db()
    with psycopg.connect(pg, autocommit=True) as con:
        for _ in range(4):
            schema, table, col, other, uniq, index = (
                hostile(rng, marks).replace("\r", "")
                for _ in range(6)  # a CR: refused
            )
            ident = sql.Identifier
            con.execute(sql.SQL("CREATE SCHEMA {}").format(ident(schema)))
            con.execute(
                sql.SQL(
                    "CREATE TABLE {}.{} (id int PRIMARY KEY, {} text NOT NULL, {} text,"
                    " CONSTRAINT {} UNIQUE ({}))"
                ).format(
                    ident(schema), ident(table), ident(col), ident(other), ident(uniq), ident(col)
                )
            )
            con.execute(
                sql.SQL("CREATE INDEX {} ON {}.{} ({})").format(
                    ident(index), ident(schema), ident(table), ident(other)
                )
            )
            with con.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {}.{} VALUES (%s, %s, %s)").format(
                        ident(schema), ident(table)
                    ),
                    [(n, f"{n}{hostile(rng, marks, 10)}", hostile(rng, marks)) for n in range(20)],
                )
    dump = where / "pg.sqlite3.sql.gz"
    db = where / "pg.sqlite3"
    export(pg, "sqlite3", dump)
    export(pg, "sqlite3_db", db)
    restored = restore_all(dump, where)
    assert list(marks.iterdir()) == []
    assert files(where) == {"marks", dump.name, db.name, *(p.name for p in restored)}
    want = contents(db)
    assert len(want["rows"]) == 4
    for new in restored:
        assert contents(new) == want, new.name


# -- the last check: a writer bug is caught before the file counts as done ----------------------


def test_script_check_refuses_a_file_with_a_dot_command_between_statements(tmp_path):
    bad = tmp_path / "bad.sql.gz"
    bad.write_bytes(gzip.compress(b"BEGIN TRANSACTION;\nCREATE TABLE t(a);\n.shell id\nCOMMIT;\n"))
    with pytest.raises(ExportError, match=r"line 3 as a command: \.shell id"):
        read_through(bad, gzipped=True, script=script_check("sqlite3"))


def test_a_writer_that_emits_a_command_line_fails_the_export(room, monkeypatch):
    where, marks = room
    db = where / "plain.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t(a)")
        con.commit()
    monkeypatch.setattr(from_sqlite, "HEADER", ("-- a header", f".shell touch {marks}/bug"))
    out = where / "bug.sqlite3.sql.gz"
    with pytest.raises(ExportError, match=r"line 2 as a command: \.shell touch"):
        export(url(db), "sqlite3", out)
    assert not out.exists() and files(where) == {"marks", "plain.db"}
