"""The DuckDB anchor of the bench: PostgreSQL into a SQLite file, run with .venv-bench's python.

    .venv-bench/bin/python bench/duckdb_anchor.py same-schema PG_URL OUT.db SCHEMA.sql
    .venv-bench/bin/python bench/duckdb_anchor.py ctas PG_URL OUT.db

`same-schema` creates OUT.db's tables from SCHEMA.sql (our own output's sqlite_master, taken
once before timing, so both files hold the same keys and types) and fills each with
`INSERT INTO sq.t SELECT cols FROM pg.t`; `ctas` runs `CREATE TABLE sq.t AS SELECT * FROM pg.t`
for each table of PostgreSQL's public schema (DuckDB's own types, no keys). The postgres and
sqlite extensions are loaded from the files the duckdb-ext-* wheels installed; nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import sys
from pathlib import Path

import duckdb


def extension_directory() -> Path:
    """The folder DuckDB reads `v1.4.4/<platform>/*.duckdb_extension` from: the wheels'."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("duckdb-ext-postgres and duckdb-ext-sqlite are not installed: make bench")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "extensions"
        if any(folder.glob(f"v{duckdb.__version__}/*/postgres_scanner.*")):
            return folder
    raise SystemExit(f"no extensions for duckdb {duckdb.__version__} under {spec.origin}")


def quote(text: str) -> str:
    """``text`` inside a SQL string literal (ATTACH takes no parameters)."""
    return text.replace("'", "''")


def connect(pg_url: str, out: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions=false")
    con.execute("SET autoload_known_extensions=false")
    con.execute(f"SET extension_directory='{extension_directory()}'")
    con.execute("LOAD postgres")
    con.execute("LOAD sqlite")
    con.execute(f"ATTACH '{quote(str(out))}' AS sq (TYPE sqlite)")
    con.execute(f"ATTACH '{quote(pg_url)}' AS pg (TYPE postgres, READ_ONLY)")
    return con


def padded(column: str, kind: str) -> str:
    """The select expression of ``column``: DuckDB's postgres scanner trims a char(n)'s
    padding, which PostgreSQL (and our file) keeps, so it is padded back to the same value."""
    match = re.fullmatch(r"CHAR\((\d+)\)", kind.upper())
    return f"""rpad("{column}", {match[1]}, ' ')""" if match else f'"{column}"'


def same_schema(pg_url: str, out: Path, schema: Path) -> None:
    lite = sqlite3.connect(out)
    lite.executescript(schema.read_text())
    tables = {
        name: [(c[1], c[2]) for c in lite.execute(f'pragma table_info("{name}")')]
        for (name,) in lite.execute("select name from sqlite_master where type = 'table'")
    }
    lite.close()
    con = connect(pg_url, out)
    for name, columns in tables.items():
        cols = ", ".join(f'"{c}"' for c, _ in columns)
        values = ", ".join(padded(c, kind) for c, kind in columns)
        con.execute(f'INSERT INTO sq."{name}" ({cols}) SELECT {values} FROM pg.public."{name}"')
    con.close()


def ctas(pg_url: str, out: Path) -> None:
    con = connect(pg_url, out)
    tables = con.execute(
        "select table_name from duckdb_tables() where database_name = 'pg'"
        " and schema_name = 'public'"
    ).fetchall()
    for (name,) in tables:
        con.execute(f'CREATE TABLE sq."{name}" AS SELECT * FROM pg.public."{name}"')
    con.close()


def main(argv: list[str]) -> int:
    mode, pg_url, out, *rest = argv
    if mode == "same-schema":
        same_schema(pg_url, Path(out), Path(rest[0]))
    elif mode == "ctas":
        ctas(pg_url, Path(out))
    else:
        raise SystemExit(f"unknown mode {mode!r}: same-schema or ctas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
