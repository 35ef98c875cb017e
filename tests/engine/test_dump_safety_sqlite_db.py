"""``sqlite3_db`` files (issue 9, item 7): nothing of the customer's file leaves but the data
kept, and views or triggers that call functions SQLite does not define are named in warnings.

- The copy is written by ``VACUUM INTO``: deleted rows, overwritten values, dropped tables
  and tables left out by ``exclude=`` are in the source file's free pages and freed cells,
  and must not be anywhere in the output's bytes; every row kept comes back with its rowid.
- A view calling the sqlite3 shell's ``edit()`` runs a command when the vendor queries it in
  the shell: the export warns, and ``sqlite3 -safe F`` (what the README says) runs nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.checks.sqlite_calls import calls, undefined_calls

SQLITE3 = shutil.which("sqlite3") or "sqlite3"
API = "/backups/api"

SECRETS = {
    "deleted": b"SECRET-DELETED-ROW",
    "updated": b"SECRET-OLD-VALUE",
    "dropped": b"SECRET-DROPPED-TABLE",
    "excluded": b"SECRET-EXCLUDED-TABLE",
    "indexed": b"SECRET-DELETED-INDEX-KEY",
}


def build_leaky_db(path: Path, journal: str) -> Path:
    """A database whose file holds secrets only in free pages and freed cells (and in a table
    the export leaves out), and data of every kind the format must keep exactly."""
    with closing(sqlite3.connect(path, isolation_level=None)) as con:
        # as most apps' SQLite leaves freed content (this one is built to zero it)
        con.execute("PRAGMA secure_delete=OFF")
        con.execute("PRAGMA page_size=8192")
        con.execute("PRAGMA auto_vacuum=INCREMENTAL")
        con.execute(f"PRAGMA journal_mode={journal}")
        con.execute("PRAGMA user_version=7")
        con.execute("PRAGMA application_id=99")
        con.executescript(
            """
            CREATE TABLE plain (v TEXT, n);  -- no INTEGER PRIMARY KEY: rowids only in the rowid
            CREATE INDEX plain_v ON plain (v);
            CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
            CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
            CREATE TABLE st (id INTEGER PRIMARY KEY, x INT, y ANY) STRICT;
            CREATE VIRTUAL TABLE docs USING fts5(body);
            CREATE TABLE gone (v TEXT);
            CREATE TABLE left_out (v TEXT);
            CREATE VIEW plain_view AS SELECT upper(v) AS u FROM plain;
            """
        )
        con.execute("BEGIN")
        filler = "x" * 300
        for i in range(400):
            con.execute("INSERT INTO plain VALUES (?, ?)", (f"keep {i} {filler}", i * 1.5))
            con.execute("INSERT INTO seq (v) VALUES (?)", (f"seq {i}",))
            con.execute("INSERT INTO kv VALUES (?, ?)", (f"k{i:04}", bytes([i % 256]) * 50))
            con.execute("INSERT INTO st VALUES (?, ?, ?)", (i, i * 3, "t" if i % 2 else 2.5))
        for i in range(200):  # whole pages of them, and cells between kept rows
            con.execute(
                "INSERT INTO plain VALUES (?, ?)",
                (f"{SECRETS['deleted'].decode()} {i} {filler}", None),
            )
            con.execute("INSERT INTO plain VALUES (?, 0)", (f"{SECRETS['indexed'].decode()} {i}",))
            con.execute(
                "INSERT INTO gone VALUES (?)", (f"{SECRETS['dropped'].decode()} {i} {filler}",)
            )
            con.execute("INSERT INTO left_out VALUES (?)", (f"{SECRETS['excluded'].decode()}",))
        con.execute("INSERT INTO docs (rowid, body) VALUES (5, 'searchable words')")
        con.execute("UPDATE seq SET v = ? WHERE id = 10", (SECRETS["updated"].decode() + filler,))
        con.execute("COMMIT")
        con.execute("UPDATE seq SET v = 'new value' WHERE id = 10")
        con.execute("DELETE FROM plain WHERE v LIKE 'SECRET%' OR rowid % 7 = 0")
        con.execute("DELETE FROM seq WHERE id > 390")  # sqlite_sequence still says 400
        con.execute("DROP TABLE gone")
        con.execute("ANALYZE")
    return path


def file_bytes(path: Path) -> bytes:
    """The database file and any WAL beside it."""
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def contents(path: Path, skip: tuple[str, ...] = ()) -> dict:
    """Every row of every table (rowids, storage classes, internal and shadow tables too),
    the schema and the header's settings."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        kinds = {r[1]: (r[2], r[4]) for r in con.execute("PRAGMA main.table_list")}
        data = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            if name in skip:
                continue
            kind, without_rowid = kinds[name]
            rowid = "rowid, " if kind == "table" and not without_rowid else ""
            q = '"' + name.replace('"', '""') + '"'
            cols = [r[1] for r in con.execute(f"PRAGMA table_xinfo({q})")]
            typed = ", ".join(f'"{c}", typeof("{c}")' for c in cols)
            order = "ORDER BY rowid" if rowid else "ORDER BY 1"
            rows = con.execute(f"SELECT {rowid}{typed} FROM {q} {order}").fetchall()
            # the statistics of a table left out go with it (rowid, tbl, typeof(tbl), ...)
            data[name] = [r for r in rows if name != "sqlite_stat1" or r[1] not in skip]
        schema = sorted(
            r
            for r in con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
            if r[2] not in skip
        )
        header = {
            p: con.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_size", "auto_vacuum", "encoding", "user_version", "application_id")
        }
    return {"data": data, "schema": schema, "header": header}


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite3_db_holds_no_byte_of_deleted_rows_dropped_or_excluded_tables(tmp_path, journal):
    src = build_leaky_db(tmp_path / "src.db", journal)
    before = file_bytes(src)
    for what, secret in SECRETS.items():  # or the test would prove nothing
        assert secret in before, what
    out = tmp_path / "copy.sqlite3"
    export(f"sqlite:///{src}", "sqlite3_db", out, exclude=["left_out"])

    data = out.read_bytes()
    for what, secret in SECRETS.items():
        assert secret not in data, what
    assert data[18:20] == b"\x01\x01"  # a rollback-journal header: one self-contained file
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["copy.sqlite3", "src.db", *(["src.db-wal", "src.db-shm"] if journal == "wal" else [])]
    )
    want = contents(src, skip=("left_out",))
    got = contents(out)
    assert (
        got["header"]
        == want["header"]
        == {
            "page_size": 8192,
            "auto_vacuum": 2,
            "encoding": "UTF-8",
            "user_version": 7,
            "application_id": 99,
        }
    )
    assert got["schema"] == want["schema"]
    for table, rows in want["data"].items():  # rowids too: plain has gaps and no IPK
        assert got["data"][table] == rows, table
    assert got == want
    with closing(sqlite3.connect(out)) as con:
        assert con.execute("PRAGMA freelist_count").fetchone() == (0,)
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'seq'").fetchone() == (
            400,
        )
        assert con.execute("SELECT rowid FROM docs WHERE docs MATCH 'words'").fetchall() == [(5,)]
        assert (2,) not in con.execute("SELECT rowid FROM plain WHERE rowid % 7 = 0").fetchall()


def test_app_functions_in_checks_defaults_and_generated_columns_do_not_stop_the_copy(tmp_path):
    """VACUUM INTO parses each table again, which fails on a function only the app defines;
    the copy takes the rows as they are and evaluates none of them. The warnings name it."""
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.create_function("app_norm", 1, lambda x: x, deterministic=True)
        con.create_collation("app_order", lambda a, b: (a > b) - (a < b))
        con.execute(
            "CREATE TABLE t (a TEXT CHECK (app_norm(a) IS NOT NULL) COLLATE app_order,"
            " b DEFAULT (app_norm(1)), c AS (app_norm(a)) STORED, d AS (app_norm(a)))"
        )
        con.executemany("INSERT INTO t (a) VALUES (?)", [("x",), ("y",), ("z",)])
        con.execute("DELETE FROM t WHERE a = 'y'")
        con.commit()
    out = tmp_path / "copy.sqlite3"
    result = export(f"sqlite:///{src}", "sqlite3_db", out)
    with closing(sqlite3.connect(out)) as con:
        assert con.execute("SELECT rowid, a, b, c FROM t").fetchall() == [
            (1, "x", 1, "x"),
            (3, "z", 1, "z"),
        ]
    assert [w for w in result.warnings if "table 't'" in w and "'app_norm'()" in w]


# -- functions SQLite does not define ---------------------------------------------------------


def shell(db: Path, sql: str, cwd: Path, *, safe: bool) -> subprocess.CompletedProcess:
    """The real sqlite3 shell on ``db``, everything it may write kept in ``cwd``: the temp
    file edit() writes (SQLITE_TMPDIR, TMPDIR) and no ~/.sqliterc of the machine (HOME)."""
    env = {**os.environ, "HOME": str(cwd), "TMPDIR": str(cwd), "SQLITE_TMPDIR": str(cwd)}
    env.pop("EDITOR", None)
    env.pop("VISUAL", None)
    args = [SQLITE3, *(["-safe"] if safe else []), str(db), sql]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_views_and_triggers_calling_shell_or_app_functions_are_warned_and_safe_shell_runs_none(
    tmp_path, fmt
):
    marker = tmp_path / "ran" / "MARKER"
    marker.parent.mkdir()
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.create_function("app_audit", -1, lambda *a: None)
        con.executescript(
            f"""
            CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
            INSERT INTO t (v) VALUES ('one');
            CREATE VIEW v AS SELECT edit('x', 'touch {marker}') AS e FROM t;
            CREATE VIEW "quiet
view" AS SELECT "EdIt" /* hidden */ ('y', 'touch {marker}') AS e;
            CREATE VIEW plain AS SELECT upper(v), count(*) OVER (PARTITION BY id) FROM t;
            CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN SELECT app_audit(new.id); END;
            CREATE VIEW loads AS SELECT load_extension('/nonexistent/evil.so');
            CREATE TRIGGER on_view INSTEAD OF DELETE ON plain BEGIN SELECT readfile('x'); END;
            CREATE TABLE skipped (a);  -- left out: its trigger is not in the copy
            CREATE TRIGGER skipped_t AFTER INSERT ON skipped BEGIN SELECT edit('a', 'b'); END;
            """
        )
        con.commit()
    out = tmp_path / "copy.sqlite3"
    result = export(f"sqlite:///{src}", fmt, out, exclude=["skipped"])
    if fmt == "sqlite3":  # restored as the README says: gunzip -c F | sqlite3 -safe new.db
        dump, out = out, tmp_path / "new.db"
        restored = subprocess.run(
            ["bash", "-o", "pipefail", "-c", 'gunzip -c "$1" | "$2" -safe "$3"', "-", dump]
            + [SQLITE3, out],
            cwd=tmp_path,
            env={**os.environ, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert (restored.returncode, restored.stderr) == (0, "")
        assert not marker.exists()

    named = {w.split(" calls ")[0] for w in result.warnings}
    assert named == {
        "view 'v'",
        "view 'quiet\\nview'",
        "trigger 't_audit'",
        "view 'loads'",
        "trigger 'on_view'",
    }
    assert all("\n" not in w and "\x1b" not in w for w in result.warnings)
    assert any("'edit'()" in w for w in result.warnings)
    assert any("'app_audit'()" in w for w in result.warnings)

    # what the README says: the shell in safe mode refuses edit(), and runs nothing
    for view in ("v", '"quiet\nview"'):
        opened = shell(out, f"SELECT * FROM {view};", tmp_path, safe=True)
        assert opened.returncode != 0 and "safe mode" in opened.stderr
        assert not marker.exists()
    # without -safe the same query runs the command (harmless here: a file in tmp_path),
    # which is why the warning and -safe exist
    unsafe = shell(out, "SELECT * FROM v;", tmp_path, safe=False)
    assert unsafe.returncode == 0, unsafe.stderr
    assert marker.exists()
    assert sorted(p.name for p in marker.parent.iterdir()) == ["MARKER"]


@pytest.mark.parametrize(
    "sql, type, want",
    [
        (
            "CREATE VIEW v AS SELECT [readfile]('/etc/passwd'), `writefile`('f', 1)",
            "view",
            ["readfile", "writefile"],
        ),
        ("CREATE VIEW v AS SELECT 'edit(' || \"edit(\" FROM t -- edit(\n", "view", []),
        ("CREATE VIEW v AS SELECT x FROM t WHERE x REGEXP 'a'", "view", ["regexp"]),
        (
            "CREATE VIEW v(a) AS WITH c(x) AS (SELECT 1) SELECT CAST(x AS VARCHAR(3)) FROM c",
            "view",
            [],
        ),
        (
            "CREATE VIEW v AS SELECT * FROM generate_series(1, 3), json_each('[]')",
            "view",
            ["generate_series"],
        ),
        (
            "CREATE TRIGGER tr AFTER DELETE ON t WHEN shell_x(old.a) BEGIN "
            "INSERT INTO log(a) VALUES (sha3(old.a)); END",
            "trigger",
            ["shell_x", "sha3"],
        ),
        (
            "CREATE TABLE t (a VARCHAR(10) DEFAULT (edit('x','y')), b DECIMAL(5, 2))",
            "table",
            ["edit"],
        ),
        ("CREATE INDEX i ON t (app_key(a)) WHERE app_ok(a)", "index", ["app_key", "app_ok"]),
        ("CREATE VIEW v AS SELECT left('abc', 1), abs(-1)", "view", ["left"]),
    ],
)
def test_calls_are_found_as_sqlite_tokenises_the_sql(sql, type, want):
    assert undefined_calls(sql, type) == want
    assert set(want) <= {n.lower() for n in calls(sql, type)}


def test_a_job_logs_the_warnings_of_its_export(app, client, run_worker, host_env):
    host_db = Path(host_env["HOSTAPP_DATABASE_URL"].removeprefix("sqlite:///"))
    with closing(sqlite3.connect(host_db)) as con:
        con.execute("CREATE VIEW shell_view AS SELECT edit('x', 'true') AS e")
        con.commit()
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    run_worker()
    done = client.get(f"{API}/backups/{backup_id}").json
    assert done["status"] == "succeeded", done
    logs = client.get(f"{API}/backups/{backup_id}/logs").json["logs"]
    warned = [x for x in logs if x["level"] == "warning" and "view 'shell_view'" in x["message"]]
    assert len(warned) == 1 and "'edit'()" in warned[0]["message"]


@pytest.mark.parametrize(
    "index, message",
    [
        ("CREATE INDEX i ON t (a COLLATE app_order)", "the app's collation sequence app_order"),
        ("CREATE INDEX i ON t (app_key(a))", "unknown function: app_key()"),
    ],
)
def test_an_index_only_the_app_can_order_is_a_one_line_error_and_no_file(tmp_path, index, message):
    """SQLite cannot build or check such an index without the app's code: the export says so
    (it never runs a stand-in that would order the index wrongly)."""
    src = tmp_path / "src.db"
    with closing(sqlite3.connect(src)) as con:
        con.create_collation("app_order", lambda a, b: (a > b) - (a < b))
        con.create_function("app_key", 1, lambda x: x, deterministic=True)
        con.execute("CREATE TABLE t (a TEXT)")
        con.execute(index)
        con.executemany("INSERT INTO t VALUES (?)", [("b",), ("a",)])
        con.commit()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ExportError, match=re.escape(message)) as e:
        export(f"sqlite:///{src}", "sqlite3_db", out_dir / "copy.sqlite3")
    assert "\n" not in str(e.value)
    assert os.listdir(out_dir) == []
