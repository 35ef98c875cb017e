"""Issue 13 attacked as a hostile customer would: canary values planted where a rule should
reach them but the first build did not (an R*Tree a trigger fills, an FTS index whose content is
a view, a generated column over a generated column), files that failed their own verification
(any R*Tree in the ``sqlite3`` format), and the ``postgres`` restore of an SQLite table whose
largest id is 0. Each test names the behaviour it pins; each failed before its fix."""

from __future__ import annotations

import gzip
import sqlite3
import struct
import uuid
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.redaction import profile_from_mapping

from .test_postgres_to_postgres import restore
from .test_sqlite_to_sqlite import restore_with_cli

CANARY = "zqcanaryqz"
#: a coordinate no rule leaves in the copy, and its bytes as R*Tree stores it (32-bit floats)
SPOT = 123456.75
SQLITE_PATHS = ["sqlite3_db", "sqlite3", "postgres"]


def plain(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def make_db(path: Path, script: str) -> Path:
    with closing(sqlite3.connect(path)) as con:
        con.executescript(script)
        con.commit()
    return path


def loaded(out: Path, fmt: str, tmp_path: Path) -> Path:
    """The SQLite database a vendor has from ``out`` (its ``sqlite3`` text loaded by the shell)."""
    if fmt == "sqlite3_db":
        return out
    db = tmp_path / "loaded.db"
    restore_with_cli(out, db)
    return db


def test_an_rtree_table_survives_the_sqlite3_formats_verification(tmp_path):
    """R*Tree's CREATE VIRTUAL TABLE reads ``PRAGMA page_size``: the verification's authorizer
    refused it, so no database with an R*Tree could be backed up as ``sqlite3`` at all."""
    src = make_db(
        tmp_path / "s.db",
        "CREATE VIRTUAL TABLE rt USING rtree(id, minx, maxx);"
        "INSERT INTO rt VALUES (1, 2, 3), (2, 4, 5);",
    )
    out = tmp_path / "o.sql.gz"
    result = export(f"sqlite:///{src}", "sqlite3", out)
    assert result.manifest["tables"]["rt"] == 2 and result.manifest["verification"]["loaded"]
    with closing(sqlite3.connect(loaded(out, "sqlite3", tmp_path))) as con:
        assert con.execute("SELECT id, minx, maxx FROM rt ORDER BY id").fetchall() == [
            (1, 2.0, 3.0),
            (2, 4.0, 5.0),
        ]


@pytest.mark.parametrize("fmt", SQLITE_PATHS)
def test_an_rtree_a_trigger_of_a_redacted_table_fills_is_copied_without_rows(tmp_path, fmt):
    """A spatial index fed by a trigger holds the redacted coordinates (a home's location);
    its columns cannot carry a rule (a virtual table's), so it was copied as it was."""
    src = make_db(
        tmp_path / "s.db",
        "CREATE TABLE homes (id INTEGER PRIMARY KEY, owner TEXT, lat REAL);"
        "CREATE VIRTUAL TABLE homes_rt USING rtree(id, minlat, maxlat);"
        "CREATE TRIGGER homes_ai AFTER INSERT ON homes BEGIN "
        "INSERT INTO homes_rt VALUES (new.id, new.lat, new.lat); END;"
        f"INSERT INTO homes VALUES (1, '{CANARY}', {SPOT});",
    )
    profile = profile_from_mapping("p", {"homes.owner": "name", "homes.lat": "fixed:0"})
    out = tmp_path / f"o.{fmt}"
    result = export(f"sqlite:///{src}", fmt, out, redaction=profile)
    data = plain(out)
    assert CANARY.encode() not in data
    assert str(SPOT).encode() not in data and struct.pack("<f", SPOT) not in data
    assert any("homes_rt: copied without rows" in w for w in result.warnings)
    if fmt != "postgres":
        with closing(sqlite3.connect(loaded(out, fmt, tmp_path))) as con:
            assert con.execute("SELECT count(*) FROM homes_rt").fetchone() == (0,)
            assert con.execute("SELECT lat FROM homes").fetchall() == [(0.0,)]


@pytest.mark.parametrize("fmt", SQLITE_PATHS)
def test_an_fts_index_whose_content_is_a_view_of_a_redacted_table_holds_no_original(tmp_path, fmt):
    """``content='a_view'``: the index's words came from the view's (original) rows, and
    the postgres path read the view's text as it is; on the SQLite paths the index is built
    again from the view over the redacted rows, on postgres its columns are NULL."""
    src = make_db(
        tmp_path / "s.db",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, bio TEXT);"
        "CREATE VIEW people AS SELECT id, email, bio FROM users;"
        "CREATE VIEW people2 AS SELECT * FROM people;"
        "CREATE VIRTUAL TABLE people_fts USING fts5(email, bio, content='people2', "
        "content_rowid='id', prefix='2 3');"
        f"INSERT INTO users VALUES (1, '{CANARY}@x.org', 'bio{CANARY}');"
        "INSERT INTO people_fts(people_fts) VALUES('rebuild');",
    )
    profile = profile_from_mapping("p", {"users.email": "email", "users.bio": "blank"})
    out = tmp_path / f"o.{fmt}"
    export(f"sqlite:///{src}", fmt, out, redaction=profile)
    assert CANARY.encode() not in plain(out)
    if fmt == "postgres":
        return
    db = loaded(out, fmt, tmp_path)
    assert CANARY.encode() not in db.read_bytes()
    with closing(sqlite3.connect(db)) as con:
        (email,) = con.execute("SELECT email FROM users").fetchone()
        found = con.execute(
            "SELECT rowid FROM people_fts WHERE people_fts MATCH ?", (f'"{email}"',)
        ).fetchall()
        assert found == [(1,)]
        assert not con.execute(
            "SELECT rowid FROM people_fts WHERE people_fts MATCH ?", (f'"{CANARY}"*',)
        ).fetchall()
        con.execute("INSERT INTO people_fts(people_fts) VALUES('integrity-check')")


@pytest.mark.parametrize("fmt", SQLITE_PATHS)
def test_a_generated_column_over_a_generated_column_is_computed_from_redacted_values(
    tmp_path, fmt, psql, owner_db
):
    """``g2 AS (g1 || '!')`` over ``g1 AS (email || '#')``: the recomputation read ``g1`` from
    the original row (the postgres copy held the e-mail), and ``||`` came out as ``| |``."""
    src = make_db(
        tmp_path / "s.db",
        "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT,"
        " g1 TEXT GENERATED ALWAYS AS (email || '#') VIRTUAL,"
        " g2 TEXT GENERATED ALWAYS AS (g1||'!' /* a comment */) STORED,"
        " n INTEGER GENERATED ALWAYS AS (length(g2) - -1) STORED);"
        f"INSERT INTO u (id, email) VALUES (1, '{CANARY}@x.org');",
    )
    profile = profile_from_mapping("p", {"u.email": "email"})
    out = tmp_path / f"o.{fmt}"
    export(f"sqlite:///{src}", fmt, out, redaction=profile)
    assert CANARY.encode() not in plain(out)
    if fmt == "postgres":
        restore(psql, owner_db, out)
        with psycopg.connect(owner_db) as con:
            row = con.execute("SELECT email, g1, g2, n FROM u").fetchone()
    else:
        with closing(sqlite3.connect(loaded(out, fmt, tmp_path))) as con:
            row = con.execute("SELECT email, g1, g2, n FROM u").fetchone()
    email, g1, g2, n = row
    assert email.endswith("@example.invalid")
    assert (g1, g2, n) == (email + "#", email + "#!", len(email) + 3)


@pytest.mark.parametrize("top", [0, -5])
def test_a_table_whose_largest_id_is_not_positive_restores_in_postgresql(
    tmp_path, psql, owner_db, top
):
    """``setval(seq, 0, true)`` is out of a sequence's range (it starts at 1): the whole
    restore failed; now the sequence is left at 1, and the next row gets it."""
    src = make_db(
        tmp_path / "s.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
        f"INSERT INTO t VALUES ({top}, 'a'), ({top - 1}, 'b');",
    )
    out = tmp_path / "o.sql.gz"
    export(f"sqlite:///{src}", "postgres", out)
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as con:
        (new,) = con.execute("INSERT INTO t (v) VALUES ('c') RETURNING id").fetchone()
        assert new == 1
        assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)


INHERITANCE = f"""
CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, code text);
CREATE TABLE staff (badge int) INHERITS (people);
CREATE TABLE interns () INHERITS (staff);
CREATE TABLE guests (id int, email text, code text) PARTITION BY RANGE (id);
CREATE TABLE guests_1 PARTITION OF guests FOR VALUES FROM (0) TO (100);
INSERT INTO people VALUES (1, '{CANARY}p@x.org', 'same');
INSERT INTO staff VALUES (2, '{CANARY}s@x.org', 'same', 7);
INSERT INTO interns VALUES (3, '{CANARY}i@x.org', 'same', 8);
INSERT INTO guests VALUES (4, '{CANARY}g@x.org', 'same');
"""


@pytest.mark.parametrize("fmt", ["postgres", "sqlite3_db", "sqlite3"])
def test_a_rule_on_an_inheritance_parent_reaches_its_children(pg_url, tmp_path, fmt):
    """An inheritance child is a table of its own (a partition is read through its parent):
    the rules on ``people`` left the rows of ``staff`` and ``interns`` as they were. The
    children's inherited columns now take the parent's rule, hashes alike across the tree."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(INHERITANCE)
    profile = profile_from_mapping(
        "p", {"people.email": "email", "people.code": "hash", "guests.email": "email"}
    )
    out = tmp_path / f"o.{fmt}"
    result = export(pg_url, fmt, out, redaction=profile)
    assert CANARY.encode() not in plain(out)
    assert result.manifest["tables"] == {"guests": 1, "interns": 1, "people": 1, "staff": 1}
    if fmt == "postgres":
        return
    with closing(sqlite3.connect(loaded(out, fmt, tmp_path))) as con:
        rows = [
            con.execute(f"SELECT email, code FROM {t}").fetchone()
            for t in ("people", "staff", "interns")
        ]
    assert all(e.endswith("@example.invalid") for e, _ in rows)
    assert len({c for _, c in rows}) == 1 and rows[0][1] != "same"


def test_a_childs_own_keep_overrides_its_parents_rule(pg_url, tmp_path):
    """``staff.email: keep`` on the child says its values go as they are: the parent's rule
    does not override the host's word, and ``staff``'s child follows its nearest parent."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(INHERITANCE)
    profile = profile_from_mapping("p", {"people.email": "email", "staff.email": "keep"})
    out = tmp_path / "o.db"
    export(pg_url, "sqlite3_db", out, redaction=profile)
    with closing(sqlite3.connect(out)) as con:
        assert con.execute("SELECT email FROM staff").fetchone() == (f"{CANARY}s@x.org",)
        assert con.execute("SELECT email FROM interns").fetchone() == (f"{CANARY}i@x.org",)
        assert con.execute("SELECT email FROM people").fetchone()[0].endswith(".invalid")


ONE_ROW = "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);"


def test_a_scratch_database_a_killed_worker_left_is_reaped_by_the_next_verification(
    verifier, tmp_path
):
    """A worker killed while loading leaves its ``fbm_verify_`` database (made here as that
    worker made it, by the role itself): the role then owns another database, which the
    file's guard refuses, so every later verification said "not loaded". The next one drops
    it, holding the lock that tells it no other verification uses it."""
    url, owned = verifier
    stale = f"fbm_verify_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(stale)))
    assert owned() == [stale]
    src = make_db(tmp_path / "s.db", ONE_ROW)
    result = export(f"sqlite:///{src}", "postgres", tmp_path / "o.sql.gz", verify_postgres_url=url)
    assert result.manifest["verification"]["loaded"] is True
    assert owned() == []


def test_the_reaping_drops_no_other_database_of_the_role(verifier, tmp_path):
    """Only the names the verification gives its own scratch databases are reaped: another
    database of the role is the host's, left alone (and the check says why it did not load)."""
    url, owned = verifier
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE DATABASE fbm_verify_keepme")
    src = make_db(tmp_path / "s.db", ONE_ROW)
    result = export(f"sqlite:///{src}", "postgres", tmp_path / "o.sql.gz", verify_postgres_url=url)
    verification = result.manifest["verification"]
    assert verification["loaded"] is False and "fbm_verify_keepme" in verification["how"]
    assert owned() == ["fbm_verify_keepme"]


@pytest.mark.parametrize("fmt", ["postgres", "sqlite3_db", "sqlite3"])
def test_a_table_rule_on_an_inheritance_parent_reaches_its_children(
    pg_url, psql, owner_db, tmp_path, fmt
):
    """``sessions: no_rows`` copied the tokens of ``sessions_old`` (its child, a table of its
    own), and ``cache: skip`` made the ``postgres`` export fail on the child's INHERITS; the
    children now follow their parent, as partitions do."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            "CREATE TABLE sessions (id int, token text);"
            "CREATE TABLE sessions_old () INHERITS (sessions);"
            "CREATE TABLE sessions_older () INHERITS (sessions_old);"
            f"INSERT INTO sessions_old VALUES (1, '{CANARY}o');"
            f"INSERT INTO sessions_older VALUES (2, '{CANARY}oo');"
            "CREATE TABLE cache (id int, v text); CREATE TABLE cache_kid () INHERITS (cache);"
            f"INSERT INTO cache_kid VALUES (1, '{CANARY}c');"
            "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1);"
        )
    profile = profile_from_mapping("p", {"sessions": "no_rows", "cache": "skip"})
    out = tmp_path / f"o.{fmt}"
    result = export(pg_url, fmt, out, redaction=profile)
    assert CANARY.encode() not in plain(out)
    assert result.manifest["tables"] == {
        "kept": 1,
        "sessions": 0,
        "sessions_old": 0,
        "sessions_older": 0,
    }
    if fmt == "postgres":
        restore(psql, owner_db, out)
        with psycopg.connect(owner_db) as con:
            assert con.execute("SELECT count(*) FROM sessions").fetchone() == (0,)


@pytest.mark.parametrize("rule", ["fixed:x", "blank", "name"])
@pytest.mark.parametrize("fmt", SQLITE_PATHS)
def test_a_repeating_rule_on_a_unique_column_is_refused_naming_its_key(tmp_path, fmt, rule):
    """``fixed``/``blank``/``name`` on a unique column: the SQLite paths failed on SQLite's
    bare "UNIQUE constraint failed", and the ``postgres`` one wrote a file whose unique index
    fails only in the vendor's restore (unverified without a server). Refused up front."""
    src = make_db(
        tmp_path / "s.db",
        "CREATE TABLE f (id INTEGER PRIMARY KEY, e TEXT UNIQUE);"
        f"INSERT INTO f VALUES (1, '{CANARY}1'), (2, '{CANARY}2');",
    )
    out = tmp_path / f"o.{fmt}"
    with pytest.raises(ExportError, match=r"redaction 'f\.e': .* unique: use hash or null"):
        export(f"sqlite:///{src}", fmt, out, redaction=profile_from_mapping("p", {"f.e": rule}))
    assert not out.exists()


def test_a_repeating_rule_on_a_unique_postgresql_column_is_refused(pg_url, tmp_path):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE f (id int PRIMARY KEY, e text); CREATE UNIQUE INDEX ON f (e)")
    with pytest.raises(ExportError, match=r"redaction 'f\.e': fixed repeats"):
        export(
            pg_url,
            "postgres",
            tmp_path / "o.sql.gz",
            redaction=profile_from_mapping("p", {"f.e": "fixed:x"}),
        )
