"""The two SQLite formats: ``sqlite3_db`` (a database file) and ``sqlite3`` (gzipped SQL text).

From an SQLite source both are exact copies of the snapshot: every table, rowid, value and storage
class, and the schema (tables, views, triggers, indexes, ``sqlite_sequence``, ``sqlite_stat1``,
``user_version``, ``application_id``, virtual tables with their data), its SQL as written in
``sqlite3_db`` and re-tokenised in ``sqlite3`` (:func:`.checks.sqlite_shell.schema_line`).
From any other source (PostgreSQL) both come from one plan built by
:mod:`.writers.sqlite.from_postgres`, so
``gunzip -c F | sqlite3 new.db`` gives the same database as the ``sqlite3_db`` file.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ... import parallel
from ...base import Tracker, ident, literal, shown
from ...checks import sqlite_calls
from ...checks.sqlite_shell import schema_line
from ...gzipout import GzipOut
from ...manifest import TAIL_TITLE, comment_lines
from ...model import ExportError
from ...sources.sqlite import SQLiteSource, SQLiteTable, remove_sidecars
from . import render
from .render import render_range, statement_sql

#: rows fetched per round trip when rendering a table without rowids
FETCH_ROWS = 2000

_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)
#: what a CR inside a quoted string becomes: the string is closed, a char(13) added, reopened
_CR = "'||char(13)||'"
#: what a TEXT holding a NUL becomes, around the hex digits of its bytes
_HEX = ("CAST(X'", "' AS TEXT)")


# -- sqlite3_db ---------------------------------------------------------------------------


def write_db(source: SQLiteSource, path: Path, tracker: Tracker) -> None:
    """Write a ready-to-use SQLite database file to ``path`` (an empty private temp file)."""
    warn_undefined_calls(source, tracker)
    for note in source.notes:
        tracker.warn(note)
    _vacuum_copy(source, path, tracker)
    remove_sidecars(path)


def warn_undefined_calls(source: SQLiteSource, tracker: Tracker) -> None:
    """A warning for each schema object kept (all but the tables left out and their indexes
    and triggers) that calls a function SQLite does not define (:mod:`.checks.sqlite_calls`): the
    sqlite3 shell's ``edit()`` runs a command when a view that calls it is queried."""
    kept = {s.key for s in source.tables()}
    left_out = {s.name for s in source.all_specs if s.key not in kept}
    objects = [(o.type, o.name, o.sql) for o in source.objects if o.tbl_name not in left_out]
    for message in sqlite_calls.warnings(objects):
        tracker.warn(message)


def _vacuum_copy(source: SQLiteSource, path: Path, tracker: Tracker) -> None:
    """Write the snapshot to ``path`` with ``VACUUM INTO``: SQLite rebuilds every b-tree from
    the rows, so no free page or freed cell of the customer's file (deleted rows, dropped
    tables, old versions of rows) reaches the output, which the page copies of the backup API
    carried byte for byte. ``VACUUM INTO`` keeps every rowid (a plain ``VACUUM`` renumbers
    those of tables without an ``INTEGER PRIMARY KEY``), the schema SQL, ``sqlite_sequence``,
    ``sqlite_stat1``, the header's page size, auto_vacuum, encoding, ``user_version`` and
    ``application_id``. Its journal beside ``path`` lives only while it runs and holds no
    page (the new file has no old content to save); a cleaner's ``.<output>.*.part*`` finds it.

    It cannot run inside a transaction, so it reads the snapshot's copy (a private file
    nobody else writes, made now if the source read its file in place), through the source's
    connection (a cancel interrupts it), reopened read-write
    (:meth:`.SQLiteSource.writable_snapshot_copy`): the copy holds the same snapshot for every
    transaction. Tables left out are first dropped from that copy, and the rows of those
    copied without rows deleted (:func:`_empty`; secure_delete on), so none of their rows are
    copied: VACUUM INTO writes no freed page."""
    specs = source.tables()
    kept = {s.key for s in specs}
    dropped = [s.name for s in source.all_specs if s.key not in kept]
    emptied = [s.name for s in specs if s.key in source.no_rows]
    con = source.writable_snapshot_copy()
    # the copy is private and thrown away: its changes (tables dropped or emptied, values
    # redacted) need no fsync at their COMMIT, which would write the whole copy to disk
    con.execute("PRAGMA synchronous=OFF")  # the output's too: export() fsyncs it once, later
    if dropped or emptied:
        con.execute("PRAGMA secure_delete=ON")
        con.execute("PRAGMA foreign_keys=OFF")  # no ON DELETE action reaches another table
        con.execute("BEGIN")
        for name in dropped:
            con.execute(f"DROP TABLE main.{ident(name)}")
        for name in emptied:
            _empty(source, con, name)
        con.execute("COMMIT")
    if source.redaction is not None:
        _redact(source, con)
    pages = _PageProgress(specs, tracker)
    used = con.execute(
        "SELECT page_count - freelist_count FROM pragma_page_count, pragma_freelist_count"
    ).fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    failed: list[BaseException] = []

    def progress() -> int:
        try:
            written = os.stat(path).st_size // size
            pages.step(max(used - written, 0), used)
        except BaseException as e:  # raised through SQLite it would be lost: kept, re-raised
            failed.append(e)
            return 1
        return 0

    con.set_progress_handler(progress, PROGRESS_STEPS)
    try:
        _vacuum_into(con, path)
    except sqlite3.OperationalError:
        if failed:
            raise failed[0] from None
        raise
    finally:
        con.set_progress_handler(None, 0)
    pages.finish()


def _empty(source: SQLiteSource, con: sqlite3.Connection, name: str) -> None:
    """Delete every row of table ``name`` in the writable snapshot copy ``con``, with its
    ``sqlite_sequence`` row (AUTOINCREMENT starts afresh) and its statistics (which hold row
    counts and, in ``sqlite_stat4``, sample keys). Its triggers are dropped for the DELETE,
    which would run them, and made again after it."""
    triggers = [
        o for o in source.objects if o.type == "trigger" and o.tbl_name.lower() == name.lower()
    ]
    for trigger in triggers:
        con.execute(f"DROP TRIGGER main.{ident(trigger.name)}")
    spec = next(s for s in source.tables() if s.name == name)
    if spec.kind == "virtual":  # made anew: FTS keeps a deleted row's words in its index
        con.execute(f"DROP TABLE main.{ident(name)}")  # and a contentless one refuses DELETE
        con.execute(spec.sql)
    else:
        con.execute(f"DELETE FROM main.{ident(name)}")
    for trigger in triggers:
        con.execute(trigger.sql)
    internal = {o.name for o in source.objects if o.type == "table"}
    for table, column in _STATS:
        if table in internal:
            con.execute(f"DELETE FROM main.{table} WHERE {column} = ?", (name,))


def _redact(source: SQLiteSource, con: sqlite3.Connection) -> None:
    """Replace the redacted columns' values in the writable snapshot copy ``con`` by their
    rules' (:meth:`.SQLiteSource.column_sql`), before ``VACUUM INTO`` copies it: VACUUM INTO
    writes only the live rows, so no original value reaches the output. The tables'
    triggers are dropped for the UPDATE (which would run them) and made again after it,
    CHECK constraints are not evaluated (the values passed them; an app's function they call
    is not defined here), and stored generated columns are computed again by SQLite from the
    new values. Then the FTS tables over a redacted table are built again from its new rows
    (``'rebuild'``), and ``sqlite_stat4`` / ``sqlite_stat3`` samples (index keys) of every
    table changed are deleted; ``sqlite_stat1`` holds counts only and stays."""
    specs = {s.name: s for s in source.tables() if s.key not in source.no_rows}
    redacted = [
        s
        for s in specs.values()
        if s.kind == "table" and any(source.redacted_column(s, c) is not None for c in s.columns)
    ]
    rebuilt = [n for n in source.rebuilt if n in specs]
    if not redacted and not rebuilt:
        return
    con.execute("PRAGMA foreign_keys=OFF")  # no ON UPDATE action reaches another table
    con.execute("PRAGMA ignore_check_constraints=ON")
    con.execute("BEGIN")
    changed = []
    for spec in redacted:
        lower = spec.name.lower()
        triggers = [
            o for o in source.objects if o.type == "trigger" and o.tbl_name.lower() == lower
        ]
        for trigger in triggers:
            con.execute(f"DROP TRIGGER main.{ident(trigger.name)}")
        sets, maps, params = [], [], []
        for c in spec.columns:
            found = source.redacted_column(spec, c)
            if found is None:
                continue
            expr = found[0]
            if found[1] != "constant":
                inline = _inlined(source, con, spec, c, params)
                if inline is not None:
                    expr = inline
                elif _few_values(con, spec.name, c):
                    expr = _mapped(source, con, spec, c, f"fbm_map_{len(maps)}")
                    maps.append(f"fbm_map_{len(maps)}")
            sets.append(f"{ident(c)} = {expr}")
        _with_stubs(con, f"UPDATE main.{ident(spec.name)} SET {', '.join(sets)}", params=params)
        for m in maps:
            con.execute(f"DROP TABLE temp.{ident(m)}")
        for trigger in triggers:
            con.execute(trigger.sql)
        changed.append(spec.name)
    for name in rebuilt:
        con.execute(f"INSERT INTO main.{ident(name)}({ident(name)}) VALUES('rebuild')")
        changed.extend(source.shadow_tables(name))
    internal = {o.name for o in source.objects if o.type == "table"}
    for table in ("sqlite_stat3", "sqlite_stat4"):
        if table in internal:
            for name in changed:
                con.execute(f"DELETE FROM main.{table} WHERE tbl = ?", (name,))
    con.execute("COMMIT")
    con.execute("PRAGMA ignore_check_constraints=OFF")


#: rows sampled to tell a column of few distinct values (:func:`_few_values`), and the most
#: distinct values among them for one
SAMPLE_ROWS, FEW_VALUES = 10000, 1000
#: the most distinct values of a big text column whose replacements are written into the
#: UPDATE itself (:func:`_inlined`)
INLINE_VALUES = 4


def _inlined(
    source: SQLiteSource,
    con: sqlite3.Connection,
    spec: SQLiteTable,
    column: str,
    params: list[object],
) -> str | None:
    """For a big column of TEXT affinity whose first :data:`SAMPLE_ROWS` values are at most
    :data:`INLINE_VALUES` distinct texts (pgbench's filler, a status), the expression
    ``CASE WHEN col = ?v COLLATE BINARY THEN ?h ... ELSE rule(col) END``, each ``h`` the
    rule's value of ``v`` computed once here, the values appended to ``params``; else None.
    A full map (:func:`_mapped`) costs a scan of the table to build it and a b-tree seek per
    row, this one comparison per row: the redacted UPDATE then costs about what a constant's
    does. It gives value for value what the rule gives: a value not in the sample (or NULL)
    goes to the rule itself, and in a column of TEXT affinity every stored value is a text,
    a BLOB or NULL (SQLite turns numbers into text as they are stored), so an equal text is
    the same value of the same storage class; the replacement is stored as the rule's would
    be, with the column's affinity."""
    if _affinity(spec.declared_types.get(column)) != "text":
        return None
    col = ident(column)
    sample = f"SELECT {col} AS v FROM main.{ident(spec.name)} LIMIT {SAMPLE_ROWS}"
    n, distinct, others = con.execute(
        f"SELECT count(*), count(DISTINCT v), count(v) - sum(typeof(v) = 'text') FROM ({sample})"
    ).fetchone()
    if n < SAMPLE_ROWS or distinct > INLINE_VALUES or others:
        return None
    text_factory, con.text_factory = con.text_factory, bytes
    try:
        raw = [r[0] for r in con.execute(f"SELECT DISTINCT v FROM ({sample}) WHERE v IS NOT NULL")]
    finally:
        con.text_factory = text_factory
    try:
        values = [v.decode() for v in raw]  # bound back as the same text
    except UnicodeDecodeError:
        return None
    if not values:  # NULLs only: the rule is NULL for each
        return None
    found = source.redacted_column(spec, column, value="?1")
    assert found is not None
    whens = []
    for v in values:
        h = con.execute(f"SELECT {found[0]}", (v,)).fetchone()[0]
        params += [v, h]
        whens.append(f"WHEN {col} = ?{len(params) - 1} COLLATE BINARY THEN ?{len(params)}")
    rule = source.redacted_column(spec, column)
    assert rule is not None
    return f"CASE {' '.join(whens)} ELSE {rule[0]} END"


def _affinity(declared: str | None) -> str:
    """The column affinity SQLite gives a declared type (its rules 1 to 5, in order)."""
    t = (declared or "").upper()
    if "INT" in t:
        return "integer"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "text"
    if not t or "BLOB" in t:
        return "blob"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "real"
    return "numeric"


def _few_values(con: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``column`` of a big table holds few distinct values, judged by its first
    :data:`SAMPLE_ROWS` values (a status, a filler, a country)."""
    distinct, n = con.execute(
        f"SELECT count(DISTINCT {ident(column)}), count(*) FROM "
        f"(SELECT {ident(column)} FROM main.{ident(table)} LIMIT {SAMPLE_ROWS})"
    ).fetchone()
    return n >= SAMPLE_ROWS and distinct <= FEW_VALUES


def _mapped(
    source: SQLiteSource, con: sqlite3.Connection, spec: SQLiteTable, column: str, name: str
) -> str:
    """The rule of ``column`` computed once per distinct value, into the temp table ``name``
    (by storage class and value: 1 and 1.0 hash apart, as the functions do), and the
    expression reading a row's replacement from it: a look-up in C costs less than a call of
    a Python function per row. NULL stays NULL, as under the functions."""
    col, table, m = ident(column), ident(spec.name), f"temp.{ident(name)}"
    con.execute(f"CREATE TABLE {m} (t, v, h, PRIMARY KEY (t, v)) WITHOUT ROWID")
    con.execute(
        f"INSERT OR IGNORE INTO {m} (t, v) SELECT typeof({col}), {col} FROM main.{table} "
        f"WHERE {col} IS NOT NULL"
    )
    found = source.redacted_column(spec, column, value="v")
    assert found is not None
    con.execute(f"UPDATE {m} SET h = {found[0]}")
    return f"(SELECT h FROM {m} WHERE t = typeof({col}) AND v = {col} COLLATE BINARY)"


#: SQLite's tables that hold facts of another table, by the column naming it
_STATS = (
    ("sqlite_sequence", "name"),
    ("sqlite_stat1", "tbl"),
    ("sqlite_stat3", "tbl"),
    ("sqlite_stat4", "tbl"),
)


#: virtual machine steps between two progress calls of ``VACUUM INTO``
PROGRESS_STEPS = 20000
#: what SQLite says when the schema names a function or collation only the app defines
_UNDEFINED = re.compile(r"no such (function|collation sequence): (.+)", re.DOTALL)


def _vacuum_into(con: sqlite3.Connection, path: Path) -> None:
    """``VACUUM INTO path``. SQLite parses each table and index again as it creates them in
    the new file, and refuses one whose CHECK, generated column or index expression calls a
    function (or names a collation) that only the app defines. VACUUM copies the rows and
    index entries as they are and evaluates none of those: the missing names are defined as
    stubs, and the VACUUM begins again on the emptied file. A stub function fails the copy if
    ever called; an index that uses an app's collation fails the integrity check that
    follows, as SQLite cannot check its order without it."""
    _with_stubs(con, f"VACUUM INTO {literal(path)}", lambda: os.truncate(path, 0))


def _with_stubs(
    con: sqlite3.Connection,
    sql: str,
    again: Callable[[], object] | None = None,
    params: list[object] | tuple[()] = (),
) -> None:
    """Run ``sql`` (with ``params``), defining as stubs (:func:`_stub`) the functions and
    collations only the app defines that SQLite asks for (see :func:`_vacuum_into`),
    ``again()`` before each new try."""
    stubs: set[tuple[str, str]] = set()
    while True:
        try:
            con.execute(sql, params)
            return
        except sqlite3.OperationalError as e:
            m = _UNDEFINED.fullmatch(str(e))
            if m is None or (m[1], m[2]) in stubs:
                raise
            stubs.add((m[1], m[2]))
        if again is not None:
            again()
        stub = _stub(m[1], m[2])
        if m[1] == "function":
            con.create_function(m[2], -1, stub, deterministic=True)
        else:
            con.create_collation(m[2], stub)


def _stub(kind: str, name: str) -> Callable[..., Any]:
    """A function or collation standing for one only the app defines; it refuses to run."""

    def refuse(*args: object) -> Any:
        raise ExportError(
            f"the copy needs the app's {kind} {shown(name)}, which SQLite does not define "
            "(for an index or a generated column): cannot copy the database without the app"
        )

    return refuse


class _PageProgress:
    """Turns the pages written so far into the tracker's per-table events: the row counts
    are known from the snapshot, the pages are spread over them in table order."""

    def __init__(self, specs: list[SQLiteTable], tracker: Tracker) -> None:
        self.specs, self.tracker = specs, tracker
        self.total = sum(s.estimated_rows for s in specs)
        self.i = 0  # the table being reported
        self.in_table = 0  # its rows reported so far
        self.done = 0  # all rows reported so far
        self.open = False

    def step(self, remaining: int, total: int) -> None:
        if total:
            self._advance(self.total * (total - remaining) // total)

    def finish(self) -> None:
        self._advance(self.total)

    def _advance(self, upto: int) -> None:
        while self.i < len(self.specs):
            spec = self.specs[self.i]
            if not self.open:
                self.tracker.start(spec)
                self.open, self.in_table = True, 0
            take = min(spec.estimated_rows - self.in_table, upto - self.done)
            if take > 0:
                self.tracker.rows(take)
                self.in_table += take
                self.done += take
            if self.in_table < spec.estimated_rows:
                return
            self.tracker.finish(spec)
            self.i, self.open = self.i + 1, False


# -- sqlite3 (SQL text) --------------------------------------------------------------------


def write_sql(source: SQLiteSource, path: Path, tracker: Tracker) -> None:
    """Write gzipped SQL text to ``path`` that ``sqlite3 new.db`` and ``executescript`` load."""
    warn_undefined_calls(source, tracker)
    for note in source.notes:
        tracker.warn(note)
    with GzipOut(path, tracker.inline) as out:
        _dump(source, out, tracker)


#: the first lines of a ``sqlite3`` file (no text from the source in them)
HEADER = (
    "-- SQLite database dump made by flask-backup-manager",
    "-- Restore: python -m flask_backup_manager restore FILE --target sqlite:///NEWDB",
    "--      or: gunzip -c FILE | sqlite3 -safe NEWDB",
)


def _dump(source: SQLiteSource, out: GzipOut, tracker: Tracker) -> None:
    """SQL text equal to the ``sqlite3_db`` copy: schema SQL from ``sqlite_master``
    re-tokenised (:func:`.checks.sqlite_shell.normalise`: comments dropped, each entry one line but
    for newlines inside its literals and quoted names, so that no line of it can be read by
    the ``sqlite3`` shell as a command or a statement's end; the source refuses an entry that
    is not one statement of its type), rows with their rowids, values rendered by SQLite
    itself (``quote()``) except REALs, which
    get an exactly-round-tripping literal (see :func:`.writers.sqlite.render.real_literal`).

    Virtual tables (FTS5, ...) are created with their own ``CREATE VIRTUAL TABLE``, which makes
    their shadow tables; then the shadow tables' rows are replaced by the source's. The index is
    thus copied byte for byte (contentless and external-content tables too, which cannot be
    rebuilt from their rows) and the connection that ran the script can use the table at once,
    which ``.dump``'s ``writable_schema`` approach does not give.
    """
    con = source.con
    specs = source.tables()
    kept = {s.name for s in specs}
    render.prepare(con)
    for line in HEADER + tracker.header:
        out.line(line)
    encoding = con.execute("PRAGMA main.encoding").fetchone()[0]
    if encoding != "UTF-8":  # said before any table exists, or it is too late
        out.line(f"PRAGMA encoding={literal(encoding)};")
    out.line("PRAGMA foreign_keys=OFF;")
    # the rows passed the source's CHECK constraints already; evaluated again while loading,
    # a CHECK would run whatever function it calls once per row, with the loading client's
    # functions (the plain sqlite3 shell's edit() runs a program)
    out.line("PRAGMA ignore_check_constraints=ON;")
    out.line("BEGIN TRANSACTION;")
    for pragma in ("user_version", "application_id"):
        value = con.execute(f"PRAGMA main.{pragma}").fetchone()[0]
        if value:
            out.line(f"PRAGMA {pragma}={value};")
    for o in source.objects:  # in the source's order, so sqlite_master reads the same
        if o.type == "table" and o.name in kept:
            out.line(schema_line(o.type, o.name, o.sql))
    for spec in specs:
        tracker.start(spec)
        if spec.key in source.no_rows:
            pass  # its schema only
        elif spec.kind == "virtual":
            rebuilt = spec.name in source.rebuilt
            for name in source.shadow_tables(spec.name):
                if rebuilt and not name.lower().endswith("_config"):
                    continue  # built again from the redacted rows, below
                out.line(f"DELETE FROM {ident(name)};")
                _insert_rows(source, source.shadow_table(name), out, None)
            tracker.rows(spec.estimated_rows)
        else:
            _insert_rows(source, spec, out, tracker)
        tracker.finish(spec)
    _internal_tables(source, kept, out)
    views = {o.name for o in source.objects if o.type == "view"}
    for o in source.objects:  # a trigger's table may be a view (INSTEAD OF)
        if (
            o.type in ("index", "trigger", "view")
            and o.sql
            and (o.type == "view" or o.tbl_name in kept or o.tbl_name in views)
        ):
            out.line(schema_line(o.type, o.name, o.sql))
    for name in source.rebuilt:  # the FTS tables over a redacted table (or a view over
        if name in kept and name not in source.no_rows:  # one: made just above), new rows
            out.line(f"INSERT INTO {ident(name)}({ident(name)}) VALUES('rebuild');")
    out.line("COMMIT;")
    out.line("PRAGMA ignore_check_constraints=OFF;")
    for line in comment_lines(tracker.counts, TAIL_TITLE):
        out.line(line)


def _insert_rows(
    source: SQLiteSource, spec: SQLiteTable, out: GzipOut, tracker: Tracker | None
) -> None:
    """The table's rows as multi-row ``INSERT`` statements rendered by SQLite itself (C speed:
    Python only passes the text on). A big table of a file nobody writes (the snapshot copy,
    or a file the engine built) is cut into rowid ranges, rendered side by side by helper
    processes (:func:`.writers.sqlite.render.render_part`), each into a gzip member that is
    appended in order."""
    cols = list(spec.columns)
    if spec.hidden_rowid:
        cols.insert(0, spec.hidden_rowid)
    if not cols:
        return
    target = ident(spec.name)
    if spec.hidden_rowid or len(cols) != len(spec.declared_types):
        target += "(" + ",".join(ident(c) for c in cols) + ")"
    safe = _row_sql(source, spec, cols, fast=False)
    con, key, table = source.con, spec.rowid_alias, f"main.{ident(spec.name)}"
    rows = tracker.rows if tracker is not None else None
    if key is None:  # no rowid to cut by (WITHOUT ROWID): one statement per row
        head = literal(f"INSERT INTO {target} VALUES")
        _row_per_statement(con, f"SELECT {head} || {safe} || ';' FROM {table}", out, rows)
        return
    sql = statement_sql(table, key, _row_sql(source, spec, cols, fast=True))
    safe = statement_sql(table, key, safe)
    head = f"INSERT INTO {target} VALUES\n".encode()
    parts = source.rowid_ranges(spec)
    path = [str(Path(render.__file__).parent)]
    if source.redaction_key is not None:  # the helper registers the rules' functions
        path += parallel.package_path()
    # bytes, not str: SQLite's text goes out as it is stored (even if it is not valid UTF-8)
    text_factory, con.text_factory = con.text_factory, bytes
    try:
        done = parallel.in_parts(
            source.frozen,
            source.children,
            parts,
            parallel.command("render:render_part", path),
            {
                **render.RenderJob(sql=sql, safe=safe, head=head.decode()),
                **parallel.redaction_job(source.redaction_key),
            },
            out,
            lambda lo, hi: render_range(con, sql, safe, head, lo, hi, out.write, rows),
        )
    finally:
        con.text_factory = text_factory
    if rows is not None:
        rows(sum(d["rows"] for d in done))


def _row_per_statement(
    con: sqlite3.Connection, sql: str, out: GzipOut, rows: Callable[[int], object] | None
) -> None:
    text_factory, con.text_factory = con.text_factory, bytes
    cur = con.execute(sql)
    try:
        while batch := cur.fetchmany(FETCH_ROWS):
            lines = [r[0] for r in batch]
            lines.append(b"")
            out.write(b"\n".join(lines))
            if rows is not None:
                rows(len(batch))
    finally:
        cur.close()
        con.text_factory = text_factory


#: columns rendered by one printf() call (SQLite allows a function 127 arguments)
PRINTF_COLUMNS = 100


def _row_sql(source: SQLiteSource, spec: SQLiteTable, cols: list[str], *, fast: bool) -> str:
    """The SQL expression that renders a row's ``cols`` as ``(v1,v2,...)``, each value an SQL
    literal, by one ``printf()`` per hundred columns (a chain of ``||`` copies the row at
    every step).

    ``fast`` adds a quicker path for the rows whose values have the storage class the
    columns' declared types lead one to expect (integer or text, or NULL): those are printed
    by ``%s`` and ``%Q`` with no dispatch per value. Its literals do not guard CRs, see
    :func:`.writers.sqlite.render.render_range`; the others, all of them when not ``fast``, do."""
    whole = len(cols) <= PRINTF_COLUMNS  # then the parentheses go in the format too
    groups = []
    for i in range(0, len(cols), PRINTF_COLUMNS):
        group = cols[i : i + PRINTF_COLUMNS]
        values = [source.column_sql(spec, c) for c in group]  # the source's reading of each
        general = _printf([("%s", _literal_sql(v)) for v in values], whole)
        typed = (
            [
                _redacted(source.redacted_column(spec, c))
                or _typed(v, spec.declared_types.get(c), rowid=c == spec.hidden_rowid)
                for c, v in zip(group, values, strict=True)
            ]
            if fast
            else []
        )
        if not any(typed):
            groups.append(general)
            continue
        pairs = zip(values, typed, strict=True)
        quick = _printf([t[1:] if t else ("%s", _literal_sql(v)) for v, t in pairs], whole)
        guards = " AND ".join(t[0] for t in typed if t and t[0] is not None)
        groups.append(f"CASE WHEN {guards} THEN {quick} ELSE {general} END" if guards else quick)
    return groups[0] if whole else f"'(' || {_concat(groups)} || ')'"


def _printf(values: list[tuple[str, str]], whole: bool) -> str:
    """``printf()`` of ``(format, expression)`` pairs joined by commas, in parentheses if
    ``whole``."""
    fmt = ",".join(f for f, _ in values)
    if whole:
        fmt = f"({fmt})"
    return f"printf('{fmt}', {', '.join(e for _, e in values)})"


def _typed(c: str, declared: str | None, *, rowid: bool) -> tuple[str | None, str, str] | None:
    """``(guard, format, expression)`` printing the value of expression ``c`` while ``guard``
    holds, for a column whose ``declared`` type has INTEGER or TEXT affinity (SQLite's rules);
    None for the others. The rowid is always an integer: it needs no guard."""
    if rowid:
        return None, "%d", c
    declared = (declared or "").upper()
    if "INT" in declared:
        return f"typeof({c}) IN ('integer','null')", "%s", f"ifnull({c},'NULL')"
    if "CHAR" in declared or "CLOB" in declared or "TEXT" in declared:
        # %Q, like quote(), ends a text at a NUL: a text holding one takes the other path
        guard = f"typeof({c}) IN ('text','null') AND NOT ifnull(instr({c}, char(0)), 0)"
        return guard, "%Q", c
    return None


def _redacted(found: tuple[str, str] | None) -> tuple[None, str, str] | None:
    """``(None, format, expression)`` printing a redacted column's value with no test: its
    rule gives text with no quote, CR or NUL (``%Q``), an integer, or a BLOB (see
    :func:`.redaction.sqlite.output`), so the expression (a function call) is evaluated once
    per row; None for the others (a constant costs nothing to test)."""
    if found is None:
        return None
    expr, gives = found
    if gives == "text":
        return None, "%Q", expr
    if gives == "integer":
        return None, "%s", f"ifnull({expr},'NULL')"
    if gives == "bytes":
        return None, "%s", f"quote({expr})"
    return None


def _concat(exprs: list[str]) -> str:
    """``exprs`` joined with ``','`` by ``||`` nested as a balanced tree: SQLite limits an
    expression's depth to 1000, which a flat chain over a wide table would pass."""
    if len(exprs) == 1:
        return exprs[0]
    mid = len(exprs) // 2
    return f"({_concat(exprs[:mid])}) || ',' || ({_concat(exprs[mid:])})"


def _literal_sql(c: str) -> str:
    """The SQL expression that renders the value of expression ``c`` as an SQL literal,
    whatever its storage class. A REAL is rendered by :func:`real_literal` when SQLite reads
    that text back as the same double, else by :func:`exact_real_expression`; a CR in a TEXT
    as ``char(13)``; a TEXT holding a NUL (where ``quote()`` would end it) as
    ``CAST(X'...' AS TEXT)``."""
    # the sqlite3 shell drops a CR before an LF even inside a string: 'a'||char(13)||'b'
    text = (
        f"CASE WHEN instr({c}, char(0)) THEN {literal(_HEX[0])} || hex({c}) || {literal(_HEX[1])} "
        f"WHEN instr({c}, char(13)) THEN replace(quote({c}), char(13), {literal(_CR)}) "
        f"ELSE quote({c}) END"
    )
    real = f"CASE WHEN CAST(fbm_real({c}) AS REAL) = {c} THEN fbm_real({c}) ELSE fbm_exact({c}) END"
    # dispatch on the storage class first: integers and NULLs, most values, cost nothing more
    return (
        f"CASE typeof({c}) WHEN 'integer' THEN {c} WHEN 'null' THEN 'NULL' "
        f"WHEN 'text' THEN {text} WHEN 'real' THEN {real} ELSE quote({c}) END"
    )


def _internal_tables(source: SQLiteSource, kept: set[str], out: GzipOut) -> None:
    """``sqlite_sequence`` and ``sqlite_stat1`` rows (with their rowids) of the tables kept
    and of their shadow tables, but those copied without rows."""
    con = source.con
    internal = {o.name for o in source.objects if o.type == "table"}
    tables = {o.name: o for o in source.objects if o.type == "table"}
    owners = set(kept) - source.no_rows
    for spec in source.tables():
        if spec.kind == "virtual" and spec.key not in source.no_rows:
            owners.update(source.shadow_tables(spec.name))
    autoinc = any(_AUTOINCREMENT.search(tables[n].sql or "") for n in kept)
    for table, cols, wanted in (
        ("sqlite_sequence", "name,seq", "sqlite_sequence" in internal and autoinc),
        ("sqlite_stat1", "tbl,idx,stat", "sqlite_stat1" in internal),
    ):
        if not wanted:
            continue
        names = ["rowid", *cols.split(",")]  # sqlite3_db's VACUUM INTO keeps rowids too
        out.line(
            "DELETE FROM sqlite_sequence;"
            if table == "sqlite_sequence"
            else "ANALYZE sqlite_master;"
        )
        literals = " || ',' || ".join(f"quote({c})" for c in names)
        for owner, values in con.execute(f"SELECT {cols.split(',')[0]}, {literals} FROM {table}"):
            if owner in owners:
                out.line(f"INSERT INTO {table}({','.join(names)}) VALUES({values});")


__all__ = ["write_db", "write_sql"]
