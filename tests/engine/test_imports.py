"""The exports that need no SQLAlchemy ``Table`` never import SQLAlchemy (0.2 s of a start-up),
and the URLs the engine reads by itself mean what they mean to SQLAlchemy."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.url import parse_url

from ..conftest import run_psql

SCHEMA = """
    CREATE TABLE parent (id integer PRIMARY KEY, name text);
    CREATE TABLE child (id integer PRIMARY KEY, parent_id integer REFERENCES parent (id));
    INSERT INTO parent VALUES (1, 'one');
    INSERT INTO child VALUES (10, 1), (11, 1);
"""


#: runs the command line as ``python -m flask_backup_manager`` does, then writes the names of
#: the modules loaded by its end to the file named first (``-X importtime`` misses the modules
#: the engine loads through ``importlib``, as its table of paths does)
RUN_AND_LIST_MODULES = """
import json, runpy, sys
listing, sys.argv = sys.argv[1], ["flask_backup_manager", *sys.argv[2:]]
try:
    runpy.run_module("flask_backup_manager", run_name="__main__", alter_sys=True)
finally:
    with open(listing, "w") as f:
        json.dump(sorted(sys.modules), f)
"""


def export_listing_modules(
    source: str, fmt: str, output
) -> tuple[subprocess.CompletedProcess, set]:
    """The command-line export run in a new Python; its result and the modules it loaded."""
    listing = Path(f"{output}.modules.json")
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, str(listing), "export"]
        + ["--source", source, "--format", fmt, "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, set(json.loads(listing.read_text()))


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_sqlite_to_sqlite_never_imports_sqlalchemy(tmp_path, fmt):
    db = tmp_path / "small.db"
    with closing(sqlite3.connect(db)) as con:
        con.executescript(SCHEMA)
    done, modules = export_listing_modules(f"sqlite:///{db}", fmt, tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 tables, 3 rows" in done.stdout
    assert "flask_backup_manager.engine.writers.sqlite.from_sqlite" in modules
    assert not [m for m in modules if m.split(".")[0] == "sqlalchemy"]


def test_postgres_to_postgres_never_imports_sqlalchemy(pg_url, psql, tmp_path):
    run_psql(psql, pg_url, "-c", SCHEMA)
    done, modules = export_listing_modules(pg_url, "postgres", tmp_path / "out.sql.gz")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 tables, 3 rows" in done.stdout
    assert "flask_backup_manager.engine.writers.postgres.from_postgres" in modules
    assert not [m for m in modules if m.split(".")[0] == "sqlalchemy"]


URLS = [
    "sqlite:///relative/app.db",
    "sqlite:///app.db",
    "sqlite:////abs/path/app.db",
    "sqlite:////tmp/a%20b%25c%3Fd.db",
    "sqlite:////tmp/app.db?mode=ro&cache=shared",
    "sqlite+pysqlite:////tmp/app.db",
    "sqlite:///",
    "sqlite://",
    "postgresql://postgres@127.0.0.1/fbm_bench_s20",
    "postgresql+psycopg://us%40er:p%40ss%3Aw%2Fd%25@db.example.com:6543/my%20db?sslmode=require",
    "postgresql://user:pa:ss@host/db",
    "postgresql://user:pa/ss@host/db",
    "postgresql://myadmin@myserver:secret@db.example.com:5432/app",  # Azure's user@server
    "postgresql://me@corp@host/db",
    "postgresql://u:p@h:+5432/d",
    "postgresql://user?x@host/db",
    "sqlite:////tmp/at@sign/app.db",
    "sqlite:///app.db?x=a@b",
    "postgresql://user:@host/db",
    "postgresql://u:p@[::1]:5432/db",
    "postgresql:///db?host=/var/run/postgresql",
    "postgresql://app@/db?host=/var/run/postgresql&port=5433",
    "postgresql://host/db?options=-c%20a%3D1&options=-c%20b%3D2&sslmode=",
    "postgresql://host:5432",
    "postgresql://host",
]


@pytest.mark.parametrize("text", URLS)
def test_a_url_is_parsed_as_sqlalchemy_parses_it(text):
    ours, theirs = parse_url(text), make_url(text)
    for part in ("drivername", "username", "password", "host", "port", "database"):
        assert getattr(ours, part) == getattr(theirs, part), part
    assert ours.query == dict(theirs.query)
    assert ours.get_backend_name() == theirs.get_backend_name()


def test_random_urls_are_parsed_as_sqlalchemy_parses_them():
    """Strings of the characters that give a URL its parts, in any order: where make_url
    reads one, parse_url reads the same parts; where it refuses one, so does parse_url."""
    rnd = random.Random(5)

    def parts(parse, text):
        try:
            u = parse(text)
        except (ArgumentError, ValueError, TypeError):
            return None
        return (u.username, u.password, u.host, u.port, u.database, dict(u.query))

    for _ in range(20000):
        text = "postgresql://" + "".join(rnd.choices("a:/@?=&%2", k=rnd.randint(0, 12)))
        assert parts(parse_url, text) == parts(make_url, text), text


@pytest.mark.parametrize(
    "text", ["", "/tmp/app.db", "sqlite:/app.db", "postgresql://h:x/db", "postgresql://h:/db"]
)
def test_what_sqlalchemy_refuses_as_a_url_is_not_a_database_url(text, tmp_path):
    with pytest.raises((ArgumentError, ValueError)):
        make_url(text)
    with pytest.raises(ValueError):
        parse_url(text)
    with pytest.raises(ExportError, match=r"^not a database URL: expected postgresql://"):
        export(text, "sqlite3_db", tmp_path / "out.db")


def test_a_parsed_url_keeps_its_password_out_of_its_repr():
    assert "secret" not in repr(parse_url("postgresql://u:secret@host/db"))


def test_a_writer_that_cannot_be_imported_is_a_broken_install_not_a_failed_export(
    tmp_path, monkeypatch
):
    """The writers' modules are imported in a thread while the source opens; their
    ImportError is raised as it is, as when they were imported before any work (a job then
    fails as an internal error, with its traceback in the worker's log), and no file is left."""
    import importlib

    export_module = importlib.import_module(
        "flask_backup_manager.engine.export"
    )  # not the function

    db = tmp_path / "a.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        con.commit()
    monkeypatch.setitem(export_module.PATHS, ("sqlite", "postgres"), ("writers.gone:write",))
    (tmp_path / "out").mkdir()
    with pytest.raises(ModuleNotFoundError, match="writers.gone"):
        export(f"sqlite:///{db}", "postgres", tmp_path / "out" / "a.sql.gz")
    assert list((tmp_path / "out").iterdir()) == []
