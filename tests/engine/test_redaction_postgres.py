"""Redaction from a PostgreSQL source, on its three paths (``postgres``, ``sqlite3_db``,
``sqlite3``): every column rule replaces the values in the copy, with canaries planted in the
source (and in its ``pg_statistic``, by ANALYZE) absent from the whole file; a hashed key and
the hashed keys naming it still meet (the restore with its foreign keys loads,
``PRAGMA foreign_key_check`` is empty); the same within a backup and different between two;
nothing derived from a redacted column leaks (materialized views, generated columns); the key
of the hash never reaches the server's view of a query; a rule that cannot apply to the real
catalog refuses the export, naming its key."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import re
import sqlite3
import uuid
from contextlib import closing

import psycopg
import pytest
from psycopg import sql

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.export import open_source
from flask_backup_manager.engine.redaction import (
    FIRST_NAMES,
    LAST_NAMES,
    ColumnFacts,
    Redaction,
    Rule,
    profile_from_mapping,
)
from flask_backup_manager.engine.redaction.postgres import (
    IPAD_SETTING,
    OPAD_SETTING,
    key_query,
    rule_expr,
)
from flask_backup_manager.engine.sources.postgres import PostgresSource
from flask_backup_manager.engine.url import parse_url

from .test_postgres_to_postgres import restore
from .test_sqlite_to_sqlite import restore_with_cli

#: every canary is a string holding this, or one of the numbers below
CANARY = "CANARY7q"
#: (the int2 canary, 31337, is too short to look for: the hashes hold such digits by chance)
CANARY_NUMBERS = ("7391846250173", "918273645", "4242.42")
USERS = 40

SCHEMA = """
CREATE SCHEMA crm;
CREATE DOMAIN public.code AS varchar(30) CHECK (VALUE <> '');
CREATE DOMAIN public.mail AS text CHECK (VALUE LIKE '%@%');
CREATE TABLE users (
    id bigint PRIMARY KEY,
    email varchar(60) UNIQUE NOT NULL,
    full_name text,
    nick varchar(20),
    pw_hash bytea,
    api_token uuid UNIQUE,
    code public.code,
    alt_mail public.mail,
    pin char(6),
    age int2,
    score int4,
    balance numeric(10, 2) NOT NULL,
    active boolean,
    born date,
    profile jsonb,
    email_lower text GENERATED ALWAYS AS (lower(email)) STORED NOT NULL,
    kept text
);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    token uuid REFERENCES users (api_token),
    note text
);
CREATE TABLE crm.contacts (id int PRIMARY KEY, phone text,
                           user_id bigint REFERENCES users (id));
CREATE TABLE events (id int, kind text, at date, who text) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sessions (id int PRIMARY KEY, secret text);
CREATE TABLE logs (id int, msg text);
CREATE TABLE plain (id serial PRIMARY KEY, word text);
"""

DATA = f"""
INSERT INTO users (id, email, full_name, nick, pw_hash, api_token, code, alt_mail, pin,
                   age, score, balance, active, born, profile, kept)
SELECT CASE WHEN i = 1 THEN 7391846250173 ELSE i END,
       '{CANARY}.mail' || i || '@example.com', '{CANARY} Name ' || i,
       CASE WHEN i % 2 = 0 THEN '{CANARY}nick' END,
       convert_to('{CANARY}pw' || i, 'UTF8'), gen_random_uuid(), '{CANARY}code' || i,
       '{CANARY}alt' || i || '@x.org', 'C7q' || (i % 1000), 31337, 918273645, 4242.42,
       true, '1961-07-04', jsonb_build_object('secret', '{CANARY}json'), 'kept' || i
FROM generate_series(1, {USERS}) i;
INSERT INTO orders (user_id, token, note)
SELECT u.id, u.api_token, 'order' FROM users u, generate_series(1, 3);
INSERT INTO crm.contacts SELECT row_number() OVER (), '+41 {CANARY} ' || id, id FROM users;
INSERT INTO events VALUES (1, 'login', '2024-03-01', '{CANARY} who a'),
                          (2, 'login', '2025-03-01', '{CANARY} who b');
INSERT INTO sessions VALUES (1, '{CANARY}session');
INSERT INTO logs VALUES (1, '{CANARY}log');
INSERT INTO plain (word) VALUES ('hello'), ('world');
SELECT setval('plain_id_seq', 77);
CREATE MATERIALIZED VIEW user_emails AS SELECT email FROM users;
CREATE MATERIALIZED VIEW event_who AS SELECT who FROM events_2024;
CREATE MATERIALIZED VIEW plain_words AS SELECT word FROM plain;
ANALYZE;
"""

RULES = {
    "users.id": "hash",
    "orders.user_id": "hash",
    "crm.contacts.user_id": "hash",
    "users.email": "email",
    "users.full_name": "name",
    "users.nick": "hash",
    "users.pw_hash": "hash",
    "users.api_token": "hash",
    "orders.token": "hash",
    "users.code": "hash",
    "users.alt_mail": "email",
    "users.pin": "fixed:000000",
    "users.age": "null",
    "users.score": "fixed:0",
    "users.balance": "blank",
    "users.active": "blank",
    "users.born": "null",
    "users.profile": "blank",
    "users.kept": "keep",
    "crm.contacts.phone": "hash",
    "events.who": "name",
    "sessions": "no_rows",
    "logs": "skip",
}


def vendor():
    return profile_from_mapping("vendor", RULES)


@pytest.fixture
def source(pg_url) -> str:
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(SCHEMA)
        con.execute(DATA)
    return pg_url


def assert_no_canary(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    assert CANARY.lower() not in text.lower()
    for number in CANARY_NUMBERS:
        assert number not in text, number


def sql_text(path) -> bytes:
    return gzip.decompress(path.read_bytes())


# -- the keyed hash ----------------------------------------------------------------------


def reference(rule: str, key: bytes, text: str, kind: str, size: int | None) -> object:
    """What :mod:`flask_backup_manager.engine.redaction` says ``rule`` makes of a value whose
    text is ``text``, computed with Python's ``hmac``."""
    d = hmac.new(key, text.encode(), hashlib.sha256).digest()
    if rule == "email":
        return f"u-{d.hex()[:16]}@example.invalid"
    if rule == "name":
        made = f"{FIRST_NAMES[d[0] % 64]} {LAST_NAMES[d[1] % 64]}"[:size]
        if made == text:  # never the name it replaces: the next surname
            made = f"{FIRST_NAMES[d[0] % 64]} {LAST_NAMES[(d[1] + 1) % 64]}"[:size]
        return made
    if kind == "integer":
        return (int.from_bytes(d[:8], "big") & ((1 << 63) - 1)) % (1 << (8 * size - 1))
    if kind == "bytes":
        return d
    if kind == "uuid":
        return uuid.UUID(bytes=d[:16])
    return d.hex()[: min(64, size or 64)]


@pytest.mark.parametrize(
    ("rule", "value", "type_name", "kind", "size"),
    [
        ("hash", "héllo wörld", "text", "text", None),
        ("hash", "", "text", "text", None),
        ("hash", "abc", "character varying(20)", "text", 20),
        ("hash", "12345", "bigint", "integer", 8),
        ("hash", "12345", "integer", "integer", 4),
        ("hash", "-7", "smallint", "integer", 2),
        ("hash", "\\x00ff", "bytea", "bytes", None),
        ("hash", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid", "uuid", None),
        ("email", "Alice@Example.org", "text", "text", None),
        ("name", "Alice Smith", "text", "text", None),
        # names the key turns into themselves: the next surname instead
        ("name", "Vera Holm", "text", "text", None),
        ("name", "Ezra Cole", "character varying(9)", "text", 9),
    ],
)
def test_the_servers_hash_is_pythons_hmac_sha256_of_the_values_text(
    pg_url, rule, value, type_name, kind, size
):
    """HMAC-SHA256 built from PostgreSQL's sha256() (the padded keys as settings of the
    transaction) equals Python's hmac for a known key, in every form a rule gives it."""
    key = bytes(range(1, 33))
    facts = ColumnFacts("t", "v", kind, size)
    expr = rule_expr(Rule(rule), sql.Identifier("v"), facts, type_name)
    with psycopg.connect(pg_url) as con:
        con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        con.execute(key_query(sql.Literal(key)))
        query = sql.SQL("SELECT {} FROM (SELECT {}::{} AS v) AS s").format(
            expr, sql.Literal(value), sql.SQL(type_name)
        )
        got, none = con.execute(
            sql.SQL("SELECT ({}), ({})").format(
                query,
                sql.SQL("SELECT {} FROM (SELECT NULL::{} AS v) AS s").format(
                    expr, sql.SQL(type_name)
                ),
            )
        ).fetchone()
    assert got == reference(rule, key, value, kind, size)
    assert none is None


def test_the_name_rule_compares_bytes_under_a_case_insensitive_collation(pg_url):
    """The key turns ``Alice IMAI`` into ``Alice Imai``: the same name to a case-insensitive
    collation of the column, not byte for byte, so it keeps that pseudonym, as Python's rule
    and the SQLite side do (compared under the column's collation, it became ``Alice
    Juarez``, the next surname, which no other side computes)."""
    key = bytes(range(1, 33))
    with psycopg.connect(pg_url, autocommit=True) as con:
        try:
            con.execute(
                "CREATE COLLATION ci"
                " (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
            )
            collate = sql.SQL("COLLATE ci")
        except psycopg.errors.FeatureNotSupported:  # a server without ICU (the embedded one)
            collate = sql.SQL('COLLATE "C"')
        con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        con.execute(key_query(sql.Literal(key)))
        expr = rule_expr(
            Rule("name"), sql.Identifier("v"), ColumnFacts("t", "v", "text", None), "text"
        )
        got = [
            con.execute(
                sql.SQL("SELECT {} FROM (SELECT {}::text {} AS v) AS s").format(
                    expr, sql.Literal(value), collate
                )
            ).fetchone()[0]
            for value in ("Alice IMAI", "Alice Imai")
        ]
    assert got[0] == reference("name", key, "Alice IMAI", "text", None) == "Alice Imai"
    assert got[1] != "Alice Imai"  # a name is never given back byte for byte


def test_the_key_never_reaches_the_server_in_a_querys_text_or_parameters(
    source, tmp_path, monkeypatch
):
    """pg_stat_activity and a server logging every statement see the queries' text and
    parameters: everything the source sends or receives (libpq's trace of the protocol)
    holds neither the key nor its padded forms, which live only in the server session."""
    trace = tmp_path / "trace.txt"
    real_connect = psycopg.connect
    handles = []

    def traced_connect(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        f = open(trace, "w")  # noqa: SIM115 (closed below, after the connection)
        handles.append(f)
        con.pgconn.trace(f.fileno())
        return con

    monkeypatch.setattr(psycopg, "connect", traced_connect)
    src = open_source(parse_url(source), redaction=Redaction(vendor()))
    try:
        for spec in src.tables():
            for chunk in src.copy_out(spec):
                assert_no_canary(bytes(chunk))
            for batch in src.row_batches(spec):
                assert CANARY not in repr(batch)
        src.conn.pgconn.untrace()
        ipad, opad = src.fetch(
            sql.SQL("SELECT current_setting({}), current_setting({})").format(
                sql.Literal(IPAD_SETTING), sql.Literal(OPAD_SETTING)
            )
        )[0]
    finally:
        src.close()
        for f in handles:
            f.close()
    key = bytes(b ^ 0x36 for b in bytes.fromhex(ipad))[:32]
    assert bytes(b ^ 0x5C for b in bytes.fromhex(opad))[:32] == key
    sent = trace.read_text(errors="replace")  # both ways: nor does the server answer them
    assert "COPY (SELECT" in sent and "set_config" in sent  # the trace holds the queries
    for secret in (ipad, opad, key.hex()):
        assert secret not in sent.lower()
    assert repr(key)[2:-1] not in sent


# -- the three paths ---------------------------------------------------------------------


def test_postgres_format_redacts_every_rule_and_restores_with_its_keys(
    source, owner_db, psql, tmp_path
):
    with psycopg.connect(source) as con:  # the statistics hold canaries: none may leave
        sampled = "SELECT count(*) FROM pg_stats WHERE histogram_bounds::text LIKE %s"
        assert con.execute(sampled, [f"%{CANARY}%"]).fetchone()[0] > 0
    out = tmp_path / "copy.sql.gz"
    result = export(source, "postgres", out, redaction=vendor(), verify=False)
    text = sql_text(out)
    assert_no_canary(text)  # values, pg_statistic (ANALYZEd) and the skipped table's rows
    assert any("user_emails" in w and "redacted" in w for w in result.warnings)
    assert any("event_who" in w for w in result.warnings)  # it reads a partition
    assert b"public.logs" not in text  # left out
    target = owner_db  # an ordinary database owner, as the vendor restores it
    restore(psql, target, out)  # with its foreign keys, unique keys and domains' CHECKs
    with psycopg.connect(target) as con:
        one = con.execute
        assert one("SELECT count(*) FROM users").fetchone()[0] == USERS
        # hashed keys meet their hashed parents
        assert (
            one("SELECT count(*) FROM orders JOIN users ON users.id = orders.user_id").fetchone()[0]
            == 3 * USERS
        )  # noqa: E501
        assert one("SELECT count(*) FROM orders JOIN users USING (id)").fetchone()[0] < USERS
        assert (
            one("SELECT count(*) FROM orders o JOIN users u ON u.api_token = o.token").fetchone()[0]
            == 3 * USERS
        )  # noqa: E501
        assert (
            one("SELECT count(*) FROM crm.contacts c JOIN users u ON u.id = c.user_id").fetchone()[
                0
            ]
            == USERS
        )  # noqa: E501
        emails = [r[0] for r in one("SELECT email FROM users")]
        assert all(re.fullmatch(r"u-[0-9a-f]{16}@example\.invalid", e) for e in emails)
        assert len(set(emails)) == USERS
        row = one(
            "SELECT full_name, nick, pw_hash, code, alt_mail, pin, age, score, balance, active,"
            " born, profile, email_lower = lower(email), kept FROM users WHERE kept = 'kept2'"
        ).fetchone()
        first, last = row[0].split(" ")
        assert first in FIRST_NAMES and last in LAST_NAMES
        assert re.fullmatch(r"[0-9a-f]{20}", row[1])  # varchar(20): the hex cut to 20
        assert len(row[2]) == 32 and CANARY.encode() not in row[2]
        assert re.fullmatch(r"[0-9a-f]{30}", row[3])  # the domain over varchar(30)
        assert row[4].endswith("@example.invalid")  # passes the domain's CHECK
        assert row[5:12] == ("000000", None, 0, 0, False, None, {})
        assert row[12] is True  # the generated column, recomputed by the restore
        assert row[13] == "kept2"
        assert one("SELECT count(*) FROM users WHERE nick IS NULL").fetchone()[0] == USERS // 2
        whos = [r[0] for r in one("SELECT who FROM events ORDER BY id")]
        assert all(w.split(" ")[0] in FIRST_NAMES for w in whos)
        assert one("SELECT count(*) FROM events_2025").fetchone()[0] == 1
        assert one("SELECT count(*) FROM sessions").fetchone()[0] == 0
        assert one("SELECT to_regclass('public.logs')").fetchone()[0] is None
        populated = dict(one("SELECT matviewname, ispopulated FROM pg_matviews"))
        assert populated == {"user_emails": False, "event_who": False, "plain_words": True}
        # sequences are not personal data: unchanged
        assert one("SELECT last_value FROM plain_id_seq").fetchone()[0] == 77
        assert one("SELECT word FROM plain ORDER BY id").fetchall() == [("hello",), ("world",)]


def test_only_tables_with_a_column_rule_are_read_through_a_select(source):
    src = PostgresSource(parse_url(source), redaction=Redaction(vendor()))
    try:
        queries = {s.key: src.copy_query(s).as_string(src.conn) for s in src.tables()}
    finally:
        src.close()
    assert queries["plain"].startswith('COPY "public"."plain" (')
    assert queries["users"].startswith("COPY (SELECT ")
    assert 'FROM ONLY "public"."users" AS fbm_t' in queries["users"]
    assert '"email_lower"' not in queries["users"]  # generated: the restore computes it
    assert queries["events"].startswith("COPY (SELECT ")  # partitioned, its rule covers all
    assert "ONLY" not in queries["events"]


def check_sqlite_copy(con: sqlite3.Connection) -> None:
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "logs" not in tables and "user_emails" not in tables and "event_who" not in tables
    assert con.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    joined = "SELECT count(*) FROM orders JOIN users ON users.id = orders.user_id"
    assert con.execute(joined).fetchone()[0] == 3 * USERS
    assert (
        con.execute(
            'SELECT count(*) FROM "crm.contacts" c JOIN users u ON u.id = c.user_id'
        ).fetchone()[0]
        == USERS
    )
    row = con.execute(
        "SELECT email, full_name, nick, code, pin, age, score, balance, active, born, profile,"
        " email_lower, kept FROM users WHERE kept = 'kept2'"
    ).fetchone()
    assert re.fullmatch(r"u-[0-9a-f]{16}@example\.invalid", row[0])
    assert row[1].split(" ")[0] in FIRST_NAMES
    assert re.fullmatch(r"[0-9a-f]{20}", row[2]) and re.fullmatch(r"[0-9a-f]{30}", row[3])
    assert row[4:11] == ("000000", None, 0, 0, 0, None, "{}")
    assert row[11] is None  # generated from the redacted email: NULL, not the original's
    assert row[12] == "kept2"
    assert con.execute("SELECT max(id) > 2147483647 FROM users").fetchone()[0] == 1


def test_sqlite3_db_redacts_every_rule_and_keeps_its_foreign_keys(source, tmp_path):
    out = tmp_path / "copy.sqlite3"
    result = export(source, "sqlite3_db", out, redaction=vendor(), verify=False)
    assert_no_canary(out.read_bytes())  # the file's bytes, free pages included
    assert any("email_lower" in w for w in result.warnings)
    with closing(sqlite3.connect(out)) as con:
        check_sqlite_copy(con)


def test_sqlite3_redacts_every_rule_and_loads_with_the_sqlite3_shell(source, tmp_path):
    out = tmp_path / "copy.sql.gz"
    export(source, "sqlite3", out, redaction=vendor(), verify=False)
    assert_no_canary(sql_text(out))
    db = tmp_path / "restored.db"
    restore_with_cli(out, db)
    with closing(sqlite3.connect(db)) as con:
        check_sqlite_copy(con)


def test_hashes_are_the_same_within_a_backup_and_differ_between_two(source, tmp_path):
    ids = []
    for n in range(2):
        out = tmp_path / f"copy{n}.sqlite3"
        export(source, "sqlite3_db", out, redaction=vendor(), verify=False)
        with closing(sqlite3.connect(out)) as con:
            users = {r[0] for r in con.execute("SELECT id FROM users")}
            assert {r[0] for r in con.execute("SELECT user_id FROM orders")} == users
            ids.append(users)
    assert len(ids[0]) == USERS and not ids[0] & ids[1]


def test_a_value_hashes_alike_whether_common_repeated_or_unique(pg_url):
    """Three ways a column's hash is computed give one hash of one value: values nearly all
    among the statistics' most common ones (each hashed once, in an InitPlan), values that
    repeat (the planner's Memoize) and values that differ (per row). The common values are
    matched by their text: ``character``'s trailing spaces as its text drops them, and a
    case-insensitive collation's ``A`` and ``a`` each hashed as itself."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        try:
            con.execute(
                "CREATE COLLATION ci"
                " (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
            )
            collate = "COLLATE ci"
        except psycopg.errors.FeatureNotSupported:  # a server without ICU (the embedded one):
            collate = ""  # no collation of its makes = differ from equal text
        con.execute(
            f"CREATE TABLE t (id int PRIMARY KEY, common text {collate}, pad character(6),"
            " num int, repeated text, other text, numo int);"
            "INSERT INTO t SELECT i, CASE WHEN i % 2 = 0 THEN 'A' ELSE 'a' END,"
            " CASE WHEN i % 3 = 0 THEN 'x' ELSE 'x  ' END, i % 3, 'r' || (i % 400),"
            " CASE WHEN i <= 4 THEN (ARRAY['A', 'a', 'x', 'r7'])[i] ELSE 'o' || i END,"
            " CASE WHEN i <= 3 THEN i - 1 ELSE i END"
            " FROM generate_series(1, 20000) i; ANALYZE t"
        )
    columns = ("common", "pad", "num", "repeated", "other", "numo")
    profile = profile_from_mapping("p", {f"t.{c}": "hash" for c in columns})
    src = PostgresSource(parse_url(pg_url), redaction=Redaction(profile))
    try:
        (spec,) = src.tables()
        query = src.copy_query(spec).as_string(src.conn)
        for matched in ('("fbm_t"."common") COLLATE "C" WHEN', '("fbm_t"."pad") COLLATE "C" WHEN'):
            assert f"CASE {matched}" in query
        assert 'CASE ("fbm_t"."num") WHEN' in query
        assert "LATERAL" in query  # repeated: 400 values, more than the statistics keep
        rows = {
            r[0]: dict(zip(columns, r[1:], strict=True))
            for batch in src.row_batches(spec)
            for r in batch
        }
    finally:
        src.close()
    other = {i: rows[i]["other"] for i in (1, 2, 3, 4)}  # 'A', 'a', 'x', 'r7', hashed per row
    assert {rows[i]["common"] for i in (2, 4)} == {other[1]}
    assert {rows[i]["common"] for i in (1, 3)} == {other[2]} != {other[1]}
    assert {r["pad"] for r in rows.values()} == {other[3][:6]}  # cut to character(6)
    assert [rows[i]["num"] for i in (3, 4, 5)] == [rows[i]["numo"] for i in (1, 2, 3)]
    assert rows[7]["repeated"] == rows[407]["repeated"] == other[4]
    assert len({r["other"] for r in rows.values()}) == 20000


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        ({"nobody.email": "email"}, "nobody.email"),
        ({"users.nothing": "hash"}, "users.nothing"),
        ({"contacts.phone": "hash"}, "contacts.phone"),  # it is crm.contacts
        ({"crm.contacts.fax": "hash"}, "crm.contacts.fax"),
        ({"users.email": "null"}, "users.email"),  # NOT NULL
        ({"users.score": "fixed:many"}, "users.score"),
        ({"users.pin": "fixed:toolong"}, "users.pin"),  # char(6)
        ({"users.born": "hash"}, "users.born"),
        ({"users.email_lower": "null"}, "users.email_lower"),  # generated
        ({"orders.user_id": "hash"}, "orders.user_id"),  # its parent is not hashed
        ({"users.id": "hash"}, "users.id"),  # its foreign keys are not
        ({"crm.contacts.user_id": "null", "users.id": "hash"}, "crm.contacts.user_id"),
        ({"nobody": "no_rows"}, "nobody"),
    ],
)
def test_a_rule_the_catalog_refuses_stops_the_export_naming_its_key(source, tmp_path, rules, named):
    out = tmp_path / "copy.sql.gz"
    with pytest.raises(ExportError, match=re.escape(named)):
        export(source, "postgres", out, redaction=profile_from_mapping("p", rules), verify=False)
    assert not out.exists()


def test_a_domain_check_the_hash_cannot_pass_fails_the_export_not_the_restore(pg_url, tmp_path):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            "CREATE DOMAIN upper_code AS text CHECK (VALUE ~ '^[A-Z]+$');"
            "CREATE TABLE t (c upper_code); INSERT INTO t VALUES ('ABC')"
        )
    out = tmp_path / "copy.sql.gz"
    with pytest.raises(ExportError, match="upper_code"):
        export(pg_url, "postgres", out, redaction=profile_from_mapping("p", {"t.c": "hash"}))
    assert not out.exists()


def test_a_hashed_key_of_another_length_than_the_key_it_names_is_refused(pg_url, tmp_path):
    """varchar(20) naming a text key: 20 hex digits never equal 64, the restore would fail."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            "CREATE TABLE p (code text PRIMARY KEY);"
            "CREATE TABLE c (code varchar(20) REFERENCES p (code))"
        )
    rules = {"p.code": "hash", "c.code": "hash"}
    out = tmp_path / "copy.sql.gz"
    with pytest.raises(ExportError, match=re.escape("c.code: hashed into another form")):
        export(pg_url, "postgres", out, redaction=profile_from_mapping("p", rules))
    assert not out.exists()
