"""Issue 12's engine changes attacked as a hostile customer would: tables copied with their schema
and no rows (``export(no_rows=...)``) next to customer tables that point at them, share their
sequences or their names, and a lock wait whose holder says hostile things. Each database is built
for real, exported, and restored with the documented commands (``psql -X -v ON_ERROR_STOP=1
--single-transaction`` as an ordinary role, the ``sqlite3`` shell, ``-safe`` too)."""

from __future__ import annotations

import gzip
import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from flask_backup_manager.engine import ExportError, Progress, export, parallel

from .test_dump_safety_sqlite import restore_all
from .test_postgres_to_postgres import restore

#: text written into the rows left behind: no file may hold it
MARKER = "historymarker5b1e"


def file_bytes(path: Path, fmt: str) -> bytes:
    data = path.read_bytes()
    return data if fmt == "sqlite3_db" else gzip.decompress(data)


def sqlite_copy(tmp_path: Path, source: str, fmt: str, no_rows: list[str]) -> Path:
    """The export of ``source`` in ``fmt`` as an SQLite database (restored if need be)."""
    out = tmp_path / f"copy.{fmt}"
    export(source, fmt, out, no_rows=no_rows)
    assert MARKER.encode() not in file_bytes(out, fmt)
    if fmt == "sqlite3_db":
        return out
    # restored by the sqlite3 shell, with and without -safe, and by Python: the -safe one
    return restore_all(out, tmp_path)[1]


def sqlite_db(path: Path, script: str) -> str:
    """An SQLite database file at ``path`` made by ``script``; its URL."""
    with closing(sqlite3.connect(path, isolation_level=None)) as con:
        con.executescript(script)
    return f"sqlite:///{path}"


def pg(url: str, script: str | sql.Composable) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(script)


def rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(query).fetchall()


# -- SQLite: the rows of the emptied tables deleted in the snapshot copy --------------------


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_an_emptied_full_text_table_leaves_no_word_of_its_rows_in_the_copy(tmp_path, fmt):
    # FTS keeps a deleted row's words in its index segments until they are merged, and a
    # contentless FTS5 table refuses DELETE altogether
    source = sqlite_db(
        tmp_path / "host.db",
        f"""
            CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
            INSERT INTO customers (name) VALUES ('alice');
            CREATE VIRTUAL TABLE bm_search USING fts5(body);
            CREATE VIRTUAL TABLE bm_words USING fts5(body, content='');
            CREATE VIRTUAL TABLE customer_search USING fts5(body);
            INSERT INTO bm_search VALUES ('{MARKER} backup 1 of the shop');
            INSERT INTO bm_words VALUES ('{MARKER} words');
            INSERT INTO customer_search VALUES ('customer text');
            ANALYZE;
            """,
    )
    copy = sqlite_copy(tmp_path, source, fmt, ["bm_search", "bm_words"])
    with closing(sqlite3.connect(copy)) as con:
        assert con.execute("SELECT count(*) FROM bm_search").fetchone() == (0,)
        assert con.execute("SELECT rowid FROM bm_search('backup')").fetchall() == []
        assert con.execute("SELECT rowid FROM bm_words('words')").fetchall() == []
        assert con.execute("SELECT body FROM customer_search('customer')").fetchall() == [
            ("customer text",)
        ]
        assert con.execute("SELECT name FROM customers").fetchall() == [("alice",)]
        # the table works as before: the app can write to it
        con.execute("INSERT INTO bm_search VALUES ('backup 2')")
        assert con.execute("SELECT body FROM bm_search('backup')").fetchall() == [("backup 2",)]
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stats = {r[0] for r in con.execute("SELECT tbl FROM sqlite_stat1")}
        assert not {t for t in stats if t.startswith(("bm_search", "bm_words"))}


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_a_cascading_key_to_an_emptied_table_keeps_the_customers_rows(tmp_path, fmt):
    source = sqlite_db(
        tmp_path / "host.db",
        f"""
            PRAGMA foreign_keys = ON;
            CREATE TABLE bm_backups (id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT,
                backup_id INTEGER REFERENCES bm_backups (id) ON DELETE CASCADE);
            CREATE TABLE notes (id INTEGER PRIMARY KEY,
                backup_id INTEGER REFERENCES bm_backups (id) ON DELETE SET NULL);
            CREATE TABLE seen (what TEXT);
            -- a customer trigger that writes into the emptied table: never run by the copy
            CREATE TRIGGER orders_log AFTER UPDATE ON orders
            BEGIN INSERT INTO bm_backups (status) VALUES ('updated ' || new.note); END;
            CREATE TRIGGER bm_gone BEFORE DELETE ON bm_backups
            BEGIN INSERT INTO seen VALUES (old.status); END;
            INSERT INTO bm_backups (status) VALUES ('{MARKER} 1'), ('{MARKER} 2');
            INSERT INTO orders VALUES (1, 'keep me', 1), (2, 'and me', 2);
            INSERT INTO notes VALUES (1, 1);
            """,
    )
    copy = sqlite_copy(tmp_path, source, fmt, ["bm_backups"])
    with closing(sqlite3.connect(copy)) as con:
        assert con.execute("SELECT * FROM orders ORDER BY id").fetchall() == [
            (1, "keep me", 1),
            (2, "and me", 2),
        ]
        assert con.execute("SELECT * FROM notes").fetchall() == [(1, 1)]
        assert con.execute("SELECT count(*) FROM bm_backups").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM seen").fetchone() == (0,)
        triggers = {
            r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        assert triggers == {"orders_log", "bm_gone"}


# -- PostgreSQL: keys, sequences and names around the emptied tables -------------------------


def test_a_partitioned_customer_table_keyed_to_an_emptied_table_restores(
    pg_url, owner_db, psql, tmp_path
):
    # PostgreSQL (before 18) cannot add a key NOT VALID to a partitioned table
    pg(
        pg_url,
        f"""
        CREATE TABLE bm_backups (id serial PRIMARY KEY, status text);
        CREATE TABLE events (id int, at date NOT NULL,
                             backup_id int REFERENCES bm_backups (id)) PARTITION BY RANGE (at);
        CREATE TABLE events_2026 PARTITION OF events
            FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        INSERT INTO bm_backups (status) VALUES ('{MARKER}');
        INSERT INTO events VALUES (1, '2026-05-01', 1);
        """,
    )
    out = tmp_path / "copy.sql.gz"
    result = export(pg_url, "postgres", out, no_rows=["bm_backups"])
    assert MARKER.encode() not in file_bytes(out, "postgres")
    restore(psql, owner_db, out)
    assert rows(owner_db, "SELECT id, backup_id FROM events") == [(1, 1)]
    assert rows(owner_db, "SELECT count(*) FROM bm_backups") == [(0,)]
    assert any("events" in w and "bm_backups" in w for w in result.warnings)


def test_a_materialized_view_of_an_emptied_table_does_not_stop_the_restore(
    pg_url, owner_db, psql, tmp_path
):
    # the shop's dashboard: its query divides by the number of backups, none in the copy
    pg(
        pg_url,
        f"""
        CREATE TABLE bm_backups (id serial PRIMARY KEY, status text);
        CREATE TABLE orders (id int PRIMARY KEY, total int);
        INSERT INTO bm_backups (status) VALUES ('failed'), ('{MARKER}');
        INSERT INTO orders VALUES (1, 10), (2, 30);
        CREATE VIEW backups_seen AS SELECT status FROM bm_backups;
        CREATE MATERIALIZED VIEW failure_rate AS SELECT
            count(*) FILTER (WHERE status = 'failed') * 100 / count(*) AS pct FROM backups_seen;
        CREATE MATERIALIZED VIEW revenue AS SELECT sum(total) AS total FROM orders;
        """,
    )
    out = tmp_path / "copy.sql.gz"
    result = export(pg_url, "postgres", out, no_rows=["bm_backups"])
    assert MARKER.encode() not in file_bytes(out, "postgres")
    restore(psql, owner_db, out)
    assert rows(owner_db, "SELECT * FROM revenue") == [(40,)]
    assert rows(
        owner_db, "SELECT relname, relispopulated FROM pg_class WHERE relkind = 'm' ORDER BY 1"
    ) == [("failure_rate", False), ("revenue", True)]
    assert any("failure_rate" in w and "REFRESH" in w for w in result.warnings)
    pg(
        owner_db,
        "INSERT INTO bm_backups (status) VALUES ('ok'); REFRESH MATERIALIZED VIEW failure_rate",
    )
    assert rows(owner_db, "SELECT pct FROM failure_rate") == [(0,)]


def test_a_sequence_of_an_emptied_table_a_customer_table_draws_from_keeps_its_value(
    pg_url, owner_db, psql, tmp_path
):
    pg(
        pg_url,
        f"""
        CREATE TABLE bm_audit (id serial PRIMARY KEY, detail text);
        CREATE TABLE invoices (id int PRIMARY KEY DEFAULT nextval('bm_audit_id_seq'), total int);
        INSERT INTO invoices (total) VALUES (10), (20), (30);
        INSERT INTO bm_audit (detail) VALUES ('{MARKER}');
        """,
    )
    out = tmp_path / "copy.sql.gz"
    export(pg_url, "postgres", out, no_rows=["bm_audit"])
    restore(psql, owner_db, out)
    # the customer's next invoice does not collide with one copied
    assert rows(owner_db, "INSERT INTO invoices (total) VALUES (40) RETURNING id") == [(5,)]


def test_a_customer_table_of_the_same_name_in_another_schema_is_copied_whole(
    pg_url, owner_db, psql, tmp_path
):
    pg(
        pg_url,
        f"""
        CREATE TABLE bm_backups (id serial PRIMARY KEY, status text);
        CREATE SCHEMA shop;
        CREATE TABLE shop.bm_backups (id int PRIMARY KEY, status text);
        CREATE TABLE "BM_BACKUPS" (id int PRIMARY KEY, status text);
        INSERT INTO bm_backups (status) VALUES ('{MARKER}');
        INSERT INTO shop.bm_backups VALUES (7, 'the shop''s own');
        INSERT INTO "BM_BACKUPS" VALUES (8, 'the shop''s too');
        """,
    )
    out = tmp_path / "copy.sql.gz"
    export(pg_url, "postgres", out, no_rows=["bm_backups"])
    restore(psql, owner_db, out)
    assert rows(owner_db, "SELECT count(*) FROM public.bm_backups") == [(0,)]
    assert rows(owner_db, "SELECT * FROM shop.bm_backups") == [(7, "the shop's own")]
    assert rows(owner_db, 'SELECT * FROM "BM_BACKUPS"') == [(8, "the shop's too")]


# -- PostgreSQL: the lock wait ---------------------------------------------------------------

#: a table name a customer may give: quotes, a line break, an escape sequence
HOSTILE = "or'd\"\n\x1b[31mers"
SECRET = "pw-3c1d-never-shown"


def test_a_lock_wait_reports_one_bounded_line_without_the_holders_words_and_keeps_the_snapshot(
    pg_url, tmp_path
):
    table = sql.Identifier(HOSTILE)
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(table))
        con.execute(sql.SQL("INSERT INTO {} VALUES (1, 'before')").format(table))
        con.execute("CREATE TABLE later (id int PRIMARY KEY)")
    holder = psycopg.connect(pg_url)
    other = psycopg.connect(pg_url, autocommit=True)
    try:
        holder.execute(f"SET application_name = 'evil\n{SECRET}'")
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        # what the holder last ran, held in its transaction: a password
        holder.execute(f"SELECT 'ALTER ROLE x PASSWORD ''{SECRET}'' ' || repeat('x', 10000)")
        waits: list[str] = []

        def progress(p: Progress) -> None:
            if p.phase and p.phase.startswith("waiting") and not waits:
                waits.append(p.phase)
                # committed after the export's snapshot: not in the copy
                other.execute("INSERT INTO later VALUES (1)")
                holder.execute(sql.SQL("INSERT INTO {} VALUES (2, 'after')").format(table))
                holder.commit()

        out = tmp_path / "copy.db"
        export(pg_url, "sqlite3_db", out, progress=progress)
    finally:
        holder.close()
        other.close()
    [wait] = waits
    assert wait.startswith("waiting for a lock on ")
    assert "held by pid " in wait
    assert SECRET not in wait and "evil" not in wait and "ALTER" not in wait
    assert wait.isprintable() and len(wait) < 300
    with closing(sqlite3.connect(out)) as con:
        quoted = HOSTILE.replace('"', '""')
        assert con.execute(f'SELECT * FROM "{quoted}"').fetchall() == [(1, "before")]
        assert con.execute("SELECT count(*) FROM later").fetchone() == (0,)


@pytest.mark.parametrize("name", ["orders", HOSTILE])
def test_a_table_dropped_while_the_export_waits_for_it_fails_in_one_line(pg_url, tmp_path, name):
    table = sql.Identifier(name)
    pg(pg_url, sql.SQL("CREATE TABLE {} (id int); CREATE TABLE keep (id int)").format(table))
    holder = psycopg.connect(pg_url)
    try:
        holder.execute(sql.SQL("DROP TABLE {}").format(table))

        def progress(p: Progress) -> None:
            if p.phase and p.phase.startswith("waiting") and holder.info.transaction_status:
                holder.commit()

        out = tmp_path / "copy.sql.gz"
        with pytest.raises(ExportError) as e:
            export(pg_url, "postgres", out, progress=progress)
    finally:
        holder.close()
    assert "does not exist" in str(e.value) and str(e.value).isprintable()
    assert not out.exists()


def test_a_table_copied_without_rows_emptied_while_the_export_waits_does_not_fail_it(
    pg_url, tmp_path
):
    pg(
        pg_url,
        f"""CREATE TABLE bm_logs (id int, message text);
            INSERT INTO bm_logs VALUES (1, '{MARKER}');
            CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);""",
    )
    holder = psycopg.connect(pg_url)
    try:
        holder.execute("TRUNCATE bm_logs")  # the history pruned

        def progress(p: Progress) -> None:
            if p.phase and p.phase.startswith("waiting") and holder.info.transaction_status:
                holder.commit()

        out = tmp_path / "copy.db"
        export(pg_url, "sqlite3_db", out, no_rows=["bm_logs"], progress=progress, lock_timeout=60)
    finally:
        holder.close()
    with closing(sqlite3.connect(out)) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM bm_logs").fetchone() == (0,)


@pytest.mark.parametrize("held", ["orders", "orders_2026", "archive"])
def test_a_partitioned_table_held_locked_is_reported_as_waited_for(pg_url, tmp_path, held):
    # the tables' row estimates were read with pg_partition_tree(), which waits for the
    # partitions' locks: the export waited there, unreported, even for a table left out
    pg(
        pg_url,
        """CREATE TABLE orders (id int, at date NOT NULL) PARTITION BY RANGE (at);
           CREATE TABLE orders_2026 PARTITION OF orders
               FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
           CREATE TABLE archive (id int) PARTITION BY LIST (id);
           CREATE TABLE archive_1 PARTITION OF archive FOR VALUES IN (1);
           INSERT INTO orders VALUES (1, '2026-02-01'), (2, '2026-03-01');""",
    )
    holder = psycopg.connect(pg_url)
    waits: list[str] = []
    try:
        holder.execute(f"LOCK TABLE {held} IN ACCESS EXCLUSIVE MODE")

        def progress(p: Progress) -> None:
            if p.phase and p.phase.startswith("waiting") and holder.info.transaction_status:
                waits.append(p.phase)
                holder.commit()

        out = tmp_path / "copy.db"
        export(pg_url, "sqlite3_db", out, progress=progress, lock_timeout=60, exclude=["archive"])
    finally:
        holder.close()
    if held == "archive":  # left out: not waited for
        assert waits == []
    else:
        [wait] = waits
        assert wait.startswith("waiting for a lock on orders (held by pid ")
    with closing(sqlite3.connect(out)) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (2,)


@pytest.mark.parametrize("timeout", [0, 0.0001])
def test_a_lock_timeout_of_zero_gives_up_at_once_not_never(pg_url, tmp_path, timeout):
    pg(pg_url, "CREATE TABLE orders (id int)")
    holder = psycopg.connect(pg_url)
    try:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        out = tmp_path / "copy.sql.gz"
        with pytest.raises(ExportError, match="table orders is locked by another session"):
            export(pg_url, "postgres", out, lock_timeout=timeout)
    finally:
        holder.close()
    assert not out.exists()


# -- progress -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3", "postgres"])
@pytest.mark.parametrize("host", ["sqlite", "postgresql"])
def test_the_percent_stays_in_bounds_and_only_grows_with_parts_and_tables_without_rows(
    host, fmt, tmp_path, request, monkeypatch
):
    # the SQLite paths cut each table into three rowid ranges read by helper processes; the
    # statistics lie (the estimates are of another size than the tables)
    monkeypatch.setattr(parallel, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(parallel, "PARTS", 3)
    schema = f"""
        CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT);
        CREATE TABLE bm_logs (id INTEGER PRIMARY KEY, message TEXT);
        INSERT INTO bm_logs (message) SELECT '{MARKER}' FROM big_source;
        """
    if host == "sqlite":
        db = tmp_path / "host.db"
        with closing(sqlite3.connect(db, isolation_level=None)) as con:
            con.execute("CREATE TABLE big_source (n INTEGER)")
            con.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
                " INSERT INTO big_source SELECT i FROM n"
            )
            con.executescript(schema)
            con.execute("ANALYZE")
            con.execute("INSERT INTO big (body) SELECT hex(randomblob(50)) FROM big_source")
            con.execute("DROP TABLE big_source")
        source = f"sqlite:///{db}"
    else:
        source = request.getfixturevalue("pg_url")
        pg(
            source,
            """CREATE TABLE big_source AS SELECT generate_series(1, 3000) AS n;"""
            + schema.replace("INTEGER PRIMARY KEY", "serial PRIMARY KEY")
            + "ANALYZE; INSERT INTO big (body) SELECT md5(n::text) FROM big_source;"
            " DROP TABLE big_source;",
        )
    seen: list[Progress] = []
    out = tmp_path / f"copy.{fmt}"
    export(source, fmt, out, no_rows=["bm_logs"], progress=seen.append)
    assert MARKER.encode() not in file_bytes(out, fmt)
    percents = [p.percent for p in seen]
    assert percents == sorted(percents) and 0 <= percents[0] and percents[-1] <= 99
    for p in seen:
        assert p.tables_done <= p.tables_total == 2
        assert p.rows_done <= p.rows_total
        assert p.phase and p.phase.isprintable()
    finished = dict(p.finished for p in seen if p.finished)
    assert finished == {"big": 3000, "bm_logs": 0}


#: customer keys of every kind to the emptied table, and its own keys
KEYS_SQLITE = f"""
CREATE TABLE bm_backups (id INTEGER PRIMARY KEY, code TEXT UNIQUE, parent INTEGER
                         REFERENCES bm_backups (id), customer INTEGER REFERENCES customers (id));
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE tickets (id INTEGER PRIMARY KEY,
    backup_id INTEGER REFERENCES bm_backups (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    code TEXT REFERENCES bm_backups (code) ON UPDATE CASCADE);
CREATE UNIQUE INDEX bm_pair ON bm_backups (id, code);
CREATE TABLE pairs (a INTEGER, b TEXT, FOREIGN KEY (a, b) REFERENCES bm_backups (id, code));
INSERT INTO customers VALUES (1, 'alice');
INSERT INTO bm_backups VALUES (1, 'a', NULL, 1), (2, 'b', 1, 1);
INSERT INTO bm_backups VALUES (3, '{MARKER}', 2, 1);
INSERT INTO tickets VALUES (1, 1, 'a'), (2, 2, NULL);
INSERT INTO pairs VALUES (2, 'b');
"""
KEYS_PG = (
    KEYS_SQLITE.replace("INTEGER PRIMARY KEY", "int PRIMARY KEY").replace(
        "CREATE TABLE customers (id int PRIMARY KEY, name TEXT);", ""
    )
    + """
ALTER TABLE pairs ADD COLUMN c int;
CREATE TABLE notes (id int, backup_id int);
INSERT INTO notes VALUES (1, 99);
ALTER TABLE notes ADD CONSTRAINT notes_backup FOREIGN KEY (backup_id) REFERENCES bm_backups (id)
    NOT VALID;
"""
)


@pytest.mark.parametrize("host", ["sqlite", "postgresql"])
def test_every_kind_of_key_to_an_emptied_table_restores_with_psql(
    host, tmp_path, request, owner_db, psql
):
    if host == "sqlite":
        source = sqlite_db(tmp_path / "host.db", KEYS_SQLITE)
    else:
        source = request.getfixturevalue("pg_url")
        pg(source, "CREATE TABLE customers (id int PRIMARY KEY, name text);" + KEYS_PG)
    out = tmp_path / "copy.sql.gz"
    export(source, "postgres", out, no_rows=["bm_backups"])
    assert MARKER.encode() not in file_bytes(out, "postgres")
    restore(psql, owner_db, out)
    assert rows(owner_db, "SELECT count(*) FROM bm_backups") == [(0,)]
    assert rows(owner_db, "SELECT id, backup_id FROM tickets ORDER BY id") == [(1, 1), (2, 2)]
    assert rows(owner_db, "SELECT a FROM pairs") == [(2,)]
    # the keys are there, and hold for new rows
    with psycopg.connect(owner_db, autocommit=True) as con:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            con.execute("INSERT INTO tickets VALUES (3, 5, NULL)")
        con.execute("INSERT INTO bm_backups (id, code) VALUES (5, 'x')")
        con.execute("INSERT INTO tickets VALUES (3, 5, 'x')")


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE orders ALTER COLUMN id TYPE bigint",  # rewrites the table
        "TRUNCATE orders",
        "TRUNCATE orders_2026",  # a partition of the table waited for
        "ALTER TABLE orders ALTER COLUMN id TYPE bigint; ALTER TABLE later ALTER note TYPE text",
    ],
)
def test_a_table_rewritten_while_the_export_waits_for_its_lock_fails_rather_than_copy_it_empty(
    pg_url, tmp_path, change
):
    # PostgreSQL: after a rewrite or TRUNCATE a table looks empty to an older snapshot
    pg(
        pg_url,
        """CREATE TABLE orders (id int, at date NOT NULL) PARTITION BY RANGE (at);
           CREATE TABLE orders_2026 PARTITION OF orders
               FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
           INSERT INTO orders VALUES (1, '2026-02-01'), (2, '2026-03-01');
           CREATE TABLE later (note varchar(10));
           INSERT INTO later VALUES ('kept');""",
    )
    holder = psycopg.connect(pg_url)
    try:
        holder.execute(change)

        def progress(p: Progress) -> None:
            if p.phase and p.phase.startswith("waiting") and holder.info.transaction_status:
                holder.commit()

        out = tmp_path / "copy.db"
        with pytest.raises(ExportError) as e:
            export(pg_url, "sqlite3_db", out, progress=progress, lock_timeout=60)
    finally:
        holder.close()
    assert str(e.value).startswith("table orders") or str(e.value).startswith("table later")
    assert "after the backup began" in str(e.value)
    assert not out.exists()
    # made again, the backup holds the rows as they are now
    export(pg_url, "sqlite3_db", out)
    with closing(sqlite3.connect(out)) as con:
        left = 0 if change.startswith("TRUNCATE") else 2
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (left,)
        assert con.execute("SELECT * FROM later").fetchall() == [("kept",)]


def test_a_lock_given_up_on_a_hostile_table_name_is_one_printable_line(pg_url, tmp_path):
    table = sql.Identifier(HOSTILE)
    pg(pg_url, sql.SQL("CREATE TABLE {} (id int)").format(table).as_string())
    holder = psycopg.connect(pg_url)
    try:
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        with pytest.raises(ExportError) as e:
            export(pg_url, "postgres", tmp_path / "copy.sql.gz", lock_timeout=0)
    finally:
        holder.close()
    assert "is locked by another session" in str(e.value)
    assert str(e.value).isprintable()


TRIGGERED = """
CREATE TABLE bm_backups (id INTEGER PRIMARY KEY, status TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT);
INSERT INTO orders VALUES (1, 'an order');
"""
TRIGGER_SQLITE = """
CREATE TRIGGER orders_seen AFTER INSERT ON orders
BEGIN INSERT INTO bm_backups (status) VALUES ('from a trigger'); END;
"""
TRIGGER_PG = """
CREATE FUNCTION orders_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.bm_backups (status) VALUES ('from a trigger'); RETURN NEW; END $$;
CREATE TRIGGER orders_seen AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_seen();
"""


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3", "postgres"])
@pytest.mark.parametrize("host", ["sqlite", "postgresql"])
def test_a_customer_trigger_writing_into_an_emptied_table_does_not_fill_it_in_the_copy(
    host, fmt, tmp_path, request, psql
):
    if host == "sqlite":
        source = sqlite_db(tmp_path / "host.db", TRIGGERED + TRIGGER_SQLITE)
    else:
        source = request.getfixturevalue("pg_url")
        pg(source, TRIGGERED.replace("INTEGER PRIMARY KEY", "serial PRIMARY KEY") + TRIGGER_PG)
    out = tmp_path / f"copy.{fmt}"
    export(source, fmt, out, no_rows=["bm_backups"])
    if fmt == "postgres":
        target = request.getfixturevalue("owner_db")
        restore(psql, target, out)
        assert rows(target, "SELECT count(*) FROM bm_backups") == [(0,)]
        assert rows(target, "SELECT note FROM orders") == [("an order",)]
        return
    db = out if fmt == "sqlite3_db" else restore_all(out, tmp_path)[1]
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT count(*) FROM bm_backups").fetchone() == (0,)
        assert con.execute("SELECT note FROM orders").fetchall() == [("an order",)]


def test_an_sqlite_database_another_connection_holds_locked_is_reported_as_waited_for(tmp_path):
    # a writer holding the file (BEGIN EXCLUSIVE, or a big transaction whose cache spilled)
    # blocks readers of a database without WAL
    url = sqlite_db(
        tmp_path / "host.db", "CREATE TABLE orders (id INTEGER); INSERT INTO orders VALUES (1);"
    )
    holder = sqlite3.connect(tmp_path / "host.db", isolation_level=None)
    waits: list[str] = []
    try:
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO orders VALUES (2)")

        def progress(p: Progress) -> None:
            if p.phase and p.phase.startswith("waiting") and holder.in_transaction:
                waits.append(p.phase)
                holder.execute("COMMIT")

        out = tmp_path / "copy.db"
        export(url, "sqlite3_db", out, progress=progress, lock_timeout=60)
    finally:
        holder.close()
    assert waits == ["waiting for a lock on the database file (another connection writes)"]
    with closing(sqlite3.connect(out)) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (2,)
