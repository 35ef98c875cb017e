"""Redaction from an SQLite source, on its three paths (``sqlite3_db``, ``sqlite3``, ``postgres``):
every column rule replaces the values in the copy; canary strings and numbers planted in the
source are in no byte of the output, nor in what is derived from them (FTS indexes and their
shadow tables, stored generated columns, ``sqlite_stat4`` samples); hashed keys still meet
their hashed parents, unique columns stay unique, the same value hashes alike within one
backup and differently in the next; the copies restore with the documented commands; a
profile that cannot apply stops the export naming its key."""

from __future__ import annotations

import gzip
import hmac
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from flask_backup_manager.engine import ExportError, export, parallel
from flask_backup_manager.engine.redaction import Redaction, profile_from_mapping

from .test_postgres_to_postgres import restore
from .test_sqlite_to_sqlite import restore_with_cli

USERS = 40
#: planted in the source; no output may hold them
CANARIES = {
    "code": "CODECANARY",
    "email": "mailcanary",
    "name": "Namecanary",
    "password": "pwcanary",
    "bio": "biocanary",
    "note": "notecanary",
    "word": "wordcanary",
    "age": "987654321",
}

SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    code VARCHAR(20) NOT NULL,
    email VARCHAR(120) NOT NULL,
    name TEXT,
    password_hash TEXT,
    age INTEGER NOT NULL CHECK (age >= 0),
    bio TEXT,
    email_lower TEXT GENERATED ALWAYS AS (lower(email)) STORED
);
CREATE INDEX ix_users_name ON users (name);
CREATE UNIQUE INDEX ux_users_code ON users (code);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_code VARCHAR(20) REFERENCES users (code),
                     amount INTEGER);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, data TEXT);
CREATE VIRTUAL TABLE users_fts USING fts5(email, bio, content='users', content_rowid='id');
CREATE VIRTUAL TABLE notes_fts USING fts5(body);
CREATE VIRTUAL TABLE notes4 USING fts4(body);
CREATE VIRTUAL TABLE words USING fts5(w, content='');
CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN
    INSERT INTO users_fts(rowid, email, bio) VALUES (new.id, new.email, new.bio);
    INSERT INTO notes_fts(body) VALUES (new.bio || ' ' || new.email);
    INSERT INTO notes4(body) VALUES (new.bio);
END;
"""

RULES = {
    "users.code": "hash",
    "orders.user_code": "hash",
    "users.email": "email",
    "users.name": "name",
    "users.password_hash": "null",
    "users.age": "fixed:7",
    "users.bio": "blank",
    "sessions": "no_rows",
}


def build_source(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as con:
        con.executescript(SCHEMA)
        c = CANARIES
        for i in range(1, USERS + 1):
            con.execute(
                "INSERT INTO users (id, code, email, name, password_hash, age, bio) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    i,
                    f"{c['code']}{i:03}",
                    f"{c['email']}{i}@Corp.Example",
                    f"{c['name']} {i}",
                    f"{c['password']}{i}",
                    int(c["age"]) + i,
                    f"{c['bio']} {i}",
                ),
            )
            con.execute(
                "INSERT INTO orders (user_code, amount) VALUES (?, ?)", (f"{c['code']}{i:03}", i)
            )
        con.execute("INSERT INTO sessions (data) VALUES ('sessioncanary')")
        con.execute("INSERT INTO words (w) VALUES (?)", (c["word"],))
        con.execute("ANALYZE")
        con.execute("PRAGMA writable_schema=ON")
        con.execute("CREATE TABLE sqlite_stat4(tbl,idx,neq,nlt,ndlt,sample)")
        con.execute("PRAGMA writable_schema=OFF")
        con.execute(
            "INSERT INTO sqlite_stat4 VALUES ('users', 'ix_users_name', '1', '0', '0', ?)",
            (f"{c['name']} 1".encode(),),
        )
        con.commit()
    return path


@pytest.fixture
def source_db(tmp_path) -> Path:
    return build_source(tmp_path / "source.db")


def redaction(key: bytes | None = None) -> Redaction:
    profile = profile_from_mapping("vendor", RULES)
    return Redaction(profile) if key is None else Redaction(profile, key)


def plain_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def assert_no_canary(*blobs: bytes) -> None:
    for blob in blobs:
        for what, canary in CANARIES.items():
            assert canary.encode() not in blob, what
            assert canary.lower().encode() not in blob.lower(), what
        assert b"sessioncanary" not in blob


def hmac_hex(key: bytes, text: str, size: int) -> str:
    return hmac.digest(key, text.encode(), "sha256").hex()[:size]


def check_sqlite_copy(db: Path, key: bytes) -> None:
    """The redacted copy's rows, keys and derived tables."""
    with closing(sqlite3.connect(db)) as con:
        rows = con.execute(
            "SELECT id, code, email, name, password_hash, age, bio, email_lower FROM users "
            "ORDER BY id"
        ).fetchall()
        assert len(rows) == USERS
        for i, code, email, name, pw, age, bio, lower in rows:
            assert code == hmac_hex(key, f"{CANARIES['code']}{i:03}", 20)
            assert email.startswith("u-") and email.endswith("@example.invalid")
            assert len(email) == len("u-@example.invalid") + 16
            assert " " in name and CANARIES["name"] not in name
            assert (pw, age, bio) == (None, 7, "")
            assert lower == email.lower()  # recomputed from the redacted value
        assert len({r[1] for r in rows}) == USERS  # still unique
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        joined = con.execute(
            "SELECT count(*) FROM orders o JOIN users u ON u.code = o.user_code"
        ).fetchone()
        assert joined == (USERS,)
        # the external-content index was built from the redacted rows
        hit = con.execute(
            "SELECT rowid FROM users_fts WHERE users_fts MATCH ?", (f'"{rows[0][2]}"',)
        ).fetchall()
        assert hit == [(1,)]
        assert con.execute("INSERT INTO users_fts(users_fts) VALUES('integrity-check')")
        for emptied in ("notes_fts", "notes4", "words", "sessions"):
            assert con.execute(f"SELECT count(*) FROM {emptied}").fetchone() == (0,)
        stat4 = con.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat4'"
        ).fetchone()
        if stat4 == (1,):
            assert con.execute("SELECT count(*) FROM sqlite_stat4").fetchone() == (0,)


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_sqlite_formats_carry_no_redacted_value_and_keep_keys(source_db, tmp_path, fmt):
    key = bytes(range(32))
    out = tmp_path / f"copy.{fmt}"
    result = export(f"sqlite:///{source_db}", fmt, out, redaction=redaction(key))
    assert_no_canary(plain_bytes(out), out.read_bytes())
    db = out
    if fmt == "sqlite3":
        db = tmp_path / "restored.db"
        restore_with_cli(out, db)
    with closing(sqlite3.connect(db)) as con:
        data = b"".join(
            str(r).encode()
            for t in ("users", "orders", "users_fts_data", "users_fts_idx", "notes_fts_data")
            for r in con.execute(f"SELECT * FROM {t}")
        )
    assert_no_canary(data, db.read_bytes())
    check_sqlite_copy(db, key)
    warned = " ".join(result.warnings)
    for name in ("notes_fts", "notes4", "words"):
        assert f"table {name}: copied without rows" in warned
    assert "users_fts" not in warned


def test_postgres_format_carries_no_redacted_value_and_restores(
    source_db, tmp_path, psql, owner_db
):
    key = bytes(range(32))
    out = tmp_path / "copy.sql.gz"
    export(f"sqlite:///{source_db}", "postgres", out, redaction=redaction(key))
    assert_no_canary(plain_bytes(out))
    url = owner_db
    restore(psql, url, out)
    with psycopg.connect(url) as con:
        rows = con.execute(
            "SELECT id, code, email, age, bio, password_hash, email_lower FROM users ORDER BY id"
        ).fetchall()
        assert len(rows) == USERS
        for i, code, email, age, bio, pw, lower in rows:
            assert code == hmac_hex(key, f"{CANARIES['code']}{i:03}", 20)
            assert email.endswith("@example.invalid") and (age, bio, pw) == (7, "", None)
            assert lower == email.lower()
        assert con.execute(
            "SELECT count(*) FROM orders o JOIN users u ON u.code = o.user_code"
        ).fetchone() == (USERS,)
        fks = con.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"
        ).fetchone()
        assert fks == (1,)
        for emptied in ("notes_fts", "words", "sessions"):
            assert con.execute(f"SELECT count(*) FROM {emptied}").fetchone() == (0,)
        fts = con.execute("SELECT email FROM users_fts ORDER BY 1").fetchall()
        assert sorted(r[2] for r in rows) == [r[0] for r in fts]


def test_hash_is_the_same_across_tables_and_differs_between_backups(source_db, tmp_path):
    codes = []
    for n in (1, 2):
        out = tmp_path / f"copy{n}.db"
        export(f"sqlite:///{source_db}", "sqlite3_db", out, redaction=redaction())
        with closing(sqlite3.connect(out)) as con:
            codes.append(con.execute("SELECT code FROM users ORDER BY id").fetchall())
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
            assert con.execute(
                "SELECT count(*) FROM orders WHERE user_code IN (SELECT code FROM users)"
            ).fetchone() == (USERS,)
    assert set(codes[0]).isdisjoint(codes[1])


@pytest.mark.parametrize(
    ("rules", "says"),
    [
        ({"nosuch.col": "null"}, "'nosuch.col': no such table"),
        ({"users.nosuch": "null"}, "'users.nosuch': table 'users' has no column"),
        ({"users.email": "null"}, "'users.email': null into a NOT NULL column"),
        ({"users.age": "fixed:seven"}, "'users.age': fixed value 'seven' is not an integer"),
        ({"orders.user_code": "hash"}, "orders.user_code: hashed, but the column it references"),
        ({"users.code": "hash"}, "users.code: hash breaks the foreign key"),
        ({"orders.user_code": "null"}, "a foreign key column may only be hashed"),
        ({"users_fts.email": "null"}, "'users_fts.email': a virtual table's column"),
        ({"users.email_lower": "null"}, "a generated column is computed from others"),
    ],
)
@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3", "postgres"])
def test_a_profile_that_cannot_apply_stops_the_export_naming_the_key(
    source_db, tmp_path, rules, says, fmt
):
    out = tmp_path / "copy"
    with pytest.raises(ExportError, match="profile 'vendor'") as e:
        export(
            f"sqlite:///{source_db}",
            fmt,
            out,
            redaction=profile_from_mapping("vendor", rules),
        )
    assert says in str(e.value)
    assert not out.exists()


def test_a_varchar_hash_fits_and_loads_in_postgresql(tmp_path, psql, owner_db):
    db = tmp_path / "short.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, c VARCHAR(20), u UUID, b BLOB)")
        con.execute(
            "INSERT INTO t (c, u, b) VALUES (?, ?, ?)",
            ("x" * 20 + "CANARY", "6f1c2b9e-6c52-4d1f-9f0e-0d0b3f3a1c11", b"CANARY"),
        )
        con.commit()
    profile = profile_from_mapping("p", {"t.c": "hash", "t.u": "hash", "t.b": "hash"})
    out = tmp_path / "t.sql.gz"
    export(f"sqlite:///{db}", "postgres", out, redaction=profile)
    assert b"CANARY" not in plain_bytes(out)
    assert b"6f1c2b9e" not in plain_bytes(out)
    url = owner_db
    restore(psql, url, out)
    with psycopg.connect(url) as con:
        c, u, b = con.execute("SELECT c, u, b FROM t").fetchone()
    assert len(c) == 20 and len(bytes(b)) == 32 and str(u) != "6f1c2b9e-6c52-4d1f-9f0e-0d0b3f3a1c11"


BIG = 250_000


@pytest.fixture(scope="module")
def big_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.db"
    with closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, secret TEXT, n INTEGER)")
        con.executemany(
            "INSERT INTO big (secret, n) VALUES (?, ?)",
            ((f"bigcanary{i}", i) for i in range(BIG)),
        )
        con.commit()
    return path


@pytest.mark.parametrize("fmt", ["sqlite3", "postgres"])
def test_helper_processes_redact_with_the_same_key(big_db, tmp_path, fmt, psql, request):
    """The rows of a big table are rendered by helper processes too: every part hashes with
    the backup's key, which reaches them in their job on stdin."""
    assert BIG >= parallel.PARALLEL_ROWS and parallel.PARTS > 1
    key = b"k" * 32
    profile = profile_from_mapping("p", {"big.secret": "hash"})
    out = tmp_path / "big.out"
    export(f"sqlite:///{big_db}", fmt, out, redaction=Redaction(profile, key))
    data = plain_bytes(out)
    assert b"bigcanary" not in data
    for i in (0, BIG // 3, BIG // 2, BIG - 1):  # one row of each part
        assert hmac_hex(key, f"bigcanary{i}", 64).encode() in data
    if fmt == "postgres":
        url = request.getfixturevalue("owner_db")
        restore(psql, url, out)
        with psycopg.connect(url) as con:
            assert con.execute("SELECT count(DISTINCT secret) FROM big").fetchone() == (BIG,)


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3", "postgres"])
def test_an_index_of_a_table_copied_without_rows_is_left_empty(tmp_path, fmt):
    db = tmp_path / "s.db"
    with closing(sqlite3.connect(db)) as con:
        con.executescript("""
            CREATE TABLE sessions (id INTEGER PRIMARY KEY, data TEXT);
            CREATE VIRTUAL TABLE sessions_fts USING fts5(data, content='sessions',
                                                         content_rowid='id');
            CREATE TRIGGER s_ai AFTER INSERT ON sessions BEGIN
                INSERT INTO sessions_fts(rowid, data) VALUES (new.id, new.data); END;
            INSERT INTO sessions (data) VALUES ('sessioncanary one'), ('sessioncanary two');
        """)
        con.commit()
    out = tmp_path / "out"
    result = export(
        f"sqlite:///{db}", fmt, out, redaction=profile_from_mapping("p", {"sessions": "no_rows"})
    )
    assert b"sessioncanary" not in plain_bytes(out)
    assert any("sessions_fts: copied without rows" in w for w in result.warnings)


def test_the_host_models_types_decide_what_a_rule_may_do(source_db, tmp_path):
    """A model that says ``String(10)`` for a unique column makes a hash into it too short to
    stay unique: refused, though SQLite's own declaration (VARCHAR(20)) would allow it."""
    import sqlalchemy as sa

    md = sa.MetaData()
    sa.Table(
        "users", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("code", sa.String(10))
    )
    profile = profile_from_mapping("vendor", {"users.code": "hash", "orders.user_code": "hash"})
    with pytest.raises(ExportError, match="'users.code': hash into 10 characters would collide"):
        export(
            f"sqlite:///{source_db}", "sqlite3_db", tmp_path / "o", metadata=md, redaction=profile
        )


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_rowids_stay_and_the_text_loads_in_the_safe_shell(tmp_path, fmt):
    db = tmp_path / "s.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (secret TEXT, n INT)")
        con.executemany(
            "INSERT INTO t (rowid, secret, n) VALUES (?, ?, ?)",
            [(i * 7, f"rowcanary{i}\r\nline", i) for i in range(1, 50)],
        )
        con.commit()
    key = b"r" * 32
    profile = profile_from_mapping("p", {"t.secret": "hash", "t.n": "fixed:3"})
    out = tmp_path / "out"
    export(f"sqlite:///{db}", fmt, out, redaction=Redaction(profile, key))
    assert b"rowcanary" not in plain_bytes(out)
    copy = out
    if fmt == "sqlite3":
        copy = tmp_path / "restored.db"
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f'gunzip -c "{out}" | sqlite3 -safe "{copy}"'],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
    with closing(sqlite3.connect(copy)) as con:
        rows = con.execute("SELECT rowid, secret, n FROM t ORDER BY rowid").fetchall()
    assert rows == [(i * 7, hmac_hex(key, f"rowcanary{i}\r\nline", 64), 3) for i in range(1, 50)]


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3", "postgres"])
def test_a_without_rowid_table_is_redacted_too(tmp_path, fmt):
    db = tmp_path / "s.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE k (email TEXT PRIMARY KEY, pin INTEGER) WITHOUT ROWID")
        con.executemany(
            "INSERT INTO k VALUES (?, ?)", [(f"wrcanary{i}@x.example", 424242) for i in range(30)]
        )
        con.commit()
    profile = profile_from_mapping("p", {"k.email": "email", "k.pin": "hash"})
    out = tmp_path / "out"
    export(f"sqlite:///{db}", fmt, out, redaction=profile)
    data = plain_bytes(out)
    assert b"wrcanary" not in data and b"424242" not in data
    assert data.count(b"@example.invalid") >= 30


def test_a_column_of_few_values_hashes_each_value_as_the_functions_do(tmp_path):
    """sqlite3_db computes a rule once per distinct value of a big column of few values
    (a table of them): still value for value what the functions give, ``A`` apart from ``a``
    under NOCASE, the integer 1 apart from the real 1.0, NULL kept."""
    db = tmp_path / "s.db"
    values = ["A", "a", 1, 1.0, None, "fewcanary"]
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, c COLLATE NOCASE, d)")
        con.executemany(
            "INSERT INTO t (c, d) VALUES (?, ?)",
            [(values[i % len(values)], i) for i in range(12000)],
        )
        con.commit()
    key = b"f" * 32
    out = tmp_path / "out.db"
    profile = profile_from_mapping("p", {"t.c": "hash"})
    export(f"sqlite:///{db}", "sqlite3_db", out, redaction=Redaction(profile, key))
    assert b"fewcanary" not in out.read_bytes()
    with closing(sqlite3.connect(out)) as con:
        got = con.execute("SELECT c FROM t ORDER BY id LIMIT ?", (len(values),)).fetchall()
    texts = ["A", "a", "1", "1.0", None, "fewcanary"]
    assert [r[0] for r in got] == [None if t is None else hmac_hex(key, t, 64) for t in texts]


@pytest.mark.parametrize("rows", [3, 12000], ids=["row-by-row", "few-values"])
def test_a_name_never_comes_back_as_itself_and_matches_the_postgres_rule(tmp_path, rows):
    """``name`` turns a name the key would map to itself into another (the next surname), on
    both of sqlite3_db's ways of computing it, exactly as the PostgreSQL source does."""
    from .test_redaction_postgres import reference

    key = bytes(range(1, 33))  # turns both "Vera Holm" and "Ezra Cole" into themselves
    names = ["Vera Holm", "Ezra Cole", "Alice Smith"]
    db = tmp_path / "s.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n TEXT)")
        con.executemany("INSERT INTO t (n) VALUES (?)", [(names[i % 3],) for i in range(rows)])
        # the same name stored as a BLOB (hashed by its bytes, the same UTF-8) changes too
        con.execute("INSERT INTO t (n) VALUES (CAST('Vera Holm' AS BLOB))")
        con.commit()
    out = tmp_path / "out.db"
    profile = profile_from_mapping("p", {"t.n": "name"})
    export(f"sqlite:///{db}", "sqlite3_db", out, redaction=Redaction(profile, key))
    with closing(sqlite3.connect(out)) as con:
        got = [n for (n,) in con.execute("SELECT n FROM t ORDER BY id LIMIT 3")]
    assert got == [reference("name", key, n, "text", None) for n in names]
    assert all(g != n for g, n in zip(got, names, strict=True))
    with closing(sqlite3.connect(out)) as con:
        (blob,) = con.execute("SELECT n FROM t ORDER BY id DESC LIMIT 1").fetchone()
    assert blob == got[0] != "Vera Holm"
