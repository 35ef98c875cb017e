"""The SQLite source: the file opened read-only, one read transaction held until :meth:`close`.

``BEGIN`` plus a first read pins a snapshot: in WAL mode the app keeps committing beside us and we
do not see it. In rollback-journal mode a read transaction blocks every commit to the file (the
app's, and the backup job's own progress lines) for as long as it lasts, so there the snapshot is
first copied, byte for byte under one read lock (as long as the kernel takes to copy the file: a
quarter of SQLite's backup API, which goes page by page through its cache), into
a private temp file beside the path the source is given as ``copy_beside`` (the output, so that
the copy is named after it), and the export reads that copy. A WAL
database with a table big enough to be shared out among helper processes is copied too, once its
row counts are read, through the read transaction; then the export goes on reading the copy,
which the helpers can read as well. Everything (the schema, the row counts, the rows, and the
backup API's pages) is read in one transaction of one snapshot.

The tables are described by SQLAlchemy ``Table`` objects reflected by SQLAlchemy's own SQLite
dialect, through this same connection (lent so that SQLAlchemy cannot end the transaction), when
a writer first asks for one: the SQLite writers never do, and never import SQLAlchemy.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import child, parallel
from ..base import ident, parents_first, select_keys, shown, watch
from ..checks.sqlite_shell import Scratch
from ..checks.sqlite_tokens import all_tokens, tokens
from ..child import BUSY_TIMEOUT, open_read_only
from ..model import ExportError, SourceInfo, TableSpec
from ..redaction import ColumnFacts, Redaction, RedactionError, kind_of_sqlalchemy
from ..redaction import check as check_profile
from ..redaction import sqlite as redact
from . import keys_without_rows

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..url import URL


#: a default that every SQLite reads as the same value (:attr:`SQLiteTable.as_stored`); not
#: TRUE or FALSE, which Debian's 3.40 reads as 1 or 0 in a TEXT column, and 3.54 as '1' or '0'
_STORED_DEFAULT = re.compile(r"NULL|[+-]?[0-9]{1,18}|[xX]'[0-9a-fA-F]*'|'[^'0-9]*'", re.IGNORECASE)


class ColumnInfo(NamedTuple):
    """A row of ``PRAGMA table_xinfo``, by SQLite's names for its columns."""

    cid: int
    name: str
    type: str
    notnull: int
    dflt_value: str | None
    pk: int  # the column's place in the primary key (1, 2...), 0 if not in it
    hidden: int  # 0 stored, 1 hidden (of a virtual table), 2 or 3 generated


class ForeignKeyInfo(NamedTuple):
    """A row of ``PRAGMA foreign_key_list``, by SQLite's names for its columns."""

    id: int
    seq: int
    table: str  # the referenced table, as the foreign key spells it
    from_: str  # SQLite's ``from``
    to: str | None
    on_update: str
    on_delete: str
    match: str


class TableKind(NamedTuple):
    """What ``PRAGMA table_list`` says of a table; a table it does not list is a plain one."""

    kind: str = "table"  # table, view, shadow or virtual
    without_rowid: bool = False
    strict: bool = False


@dataclass(kw_only=True)
class SQLiteTable(TableSpec):
    """A table of an SQLite source with what the SQLite writers need to know of it, read from
    ``sqlite_master`` and ``PRAGMA table_list`` / ``table_xinfo``."""

    #: ``table``, ``virtual`` (FTS5...) or ``shadow`` (a table holding a virtual table's data)
    kind: str
    #: its ``CREATE`` statement as ``sqlite_master`` holds it
    sql: str | None
    strict: bool
    without_rowid: bool
    #: the stored columns a plain INSERT may set (not generated, not hidden), in order
    columns: list[str]
    #: every column's declared type (``""`` for none), by name
    declared_types: dict[str, str]
    #: the primary key's columns, in key order
    primary_key: list[str]
    #: the name the rowid is read and written by where no column holds it, else None (an
    #: ``INTEGER PRIMARY KEY`` column is the rowid; no rowid; every alias shadowed)
    hidden_rowid: str | None
    #: the first of ``rowid``, ``_rowid_``, ``oid`` no column shadows, which the rows are cut
    #: into ranges by; None for a table without rowids (WITHOUT ROWID, virtual)
    rowid_alias: str | None
    #: every value a read of the table gives is stored as it is in the file, whatever SQLite
    #: reads it: no VIRTUAL generated column (computed on read) and no default but NULL, an
    #: integer, a blob or a text without digits (an ALTER TABLE column's default, which the
    #: rows written before it do not hold, is read, and converted to the column's affinity,
    #: by SQLite, each version its own way)
    as_stored: bool = False

    def rowid_expr(self) -> str | None:
        """How to name the rowid of an ordinary rowid table in a query: ``rowid`` or another
        name no column shadows, else its ``INTEGER PRIMARY KEY`` column; None for others."""
        if self.kind != "table" or self.without_rowid:
            return None
        if self.rowid_alias:
            return self.rowid_alias
        pk = self.primary_key
        integer = len(pk) == 1 and (self.declared_types.get(pk[0]) or "").upper() == "INTEGER"
        return ident(pk[0]) if integer else None


@dataclass(frozen=True)
class SchemaObject:
    """A row of ``sqlite_master``."""

    type: str
    name: str
    tbl_name: str
    sql: str | None


class _Lent:
    """The snapshot connection, lent to SQLAlchemy: its commit/rollback/close do nothing, so
    reflecting cannot end our read transaction."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


class SQLiteSource:
    """An SQLite database file opened on one consistent snapshot until :meth:`close`.

    ``tables()`` lists the ordinary and virtual (e.g. FTS5) tables; SQLite's internal tables
    (``sqlite_sequence``, ``sqlite_stat*``) and the shadow tables of virtual tables are not
    listed, but the SQLite writers carry them. ``include``/``exclude`` take table names or shell
    patterns (``audit_*``); an include that matches no table is an error. The tables
    ``no_rows`` names (:attr:`no_rows`) are listed with no rows: :meth:`row_batches` and
    :meth:`rowid_ranges` give none, and the writers leave out their ``sqlite_sequence`` and
    ``sqlite_stat*`` rows. ``private`` says that nothing else writes the file (one the engine
    built itself): it is read in place.

    ``copy_beside`` is where this source's private temp files go: a copy of the snapshot is a
    hidden file beside that path, named after it (``.<name>.snapshot-*.part``: the cleaner
    that removes ``.<output>.*.part`` after a dead worker finds it); export() passes its
    output. :meth:`close` removes the copy.
    """

    def __init__(
        self,
        url: URL | sa.URL,
        *,
        metadata: sa.MetaData | None = None,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        no_rows: Iterable[str] = (),
        copy_beside: Path | None = None,
        private: bool = False,
        lock_timeout: float | None = None,
        cancel: threading.Event | None = None,
        phase: Callable[[str], None] | None = None,
        redaction: Redaction | None = None,
    ) -> None:
        db = url.database
        if not db or db == ":memory:" or db.startswith("file:"):
            raise ExportError("an SQLite source must be a database file: sqlite:///path")
        self.path = Path(db).resolve()
        if not self.path.is_file():
            raise ExportError(f"no such database file: {db}")
        self.con = None
        self.copy = None
        self.host_metadata = metadata
        #: the column rules applied to the values read (:meth:`column_sql`); None: none
        self.redaction = redaction
        self._tables: dict[str, sa.Table] | None = None
        #: a file of the snapshot nobody writes while we read it, which helper processes
        #: (:mod:`.parallel`) may read too: the copy, or a private file; else None
        self.frozen: Path | None = None
        #: helper processes reading the snapshot for a writer: a cancel stops them too
        self.children: set[subprocess.Popen] = set()
        #: an APSW connection to :attr:`frozen`, which reads stored rows (:meth:`row_batches`)
        self._stored: Any = None
        self.copy_beside = copy_beside
        self._timeout = timeout = BUSY_TIMEOUT if lock_timeout is None else lock_timeout
        self._unwatch = watch(cancel, self.interrupt) if cancel is not None else None
        try:
            self.con = open_read_only(self.path, timeout=timeout)
            if phase is not None:  # said before the busy handler waits, as it would silently
                self.con.execute("PRAGMA busy_timeout = 0")
                try:
                    self.con.execute("PRAGMA main.schema_version").fetchone()
                except sqlite3.OperationalError as e:
                    if getattr(e, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                        raise
                    phase("waiting for a lock on the database file (another connection writes)")
                self.con.execute(f"PRAGMA busy_timeout = {round(timeout * 1000)}")
            wal = self.con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
            if not wal and not private:
                self._read_a_copy()
            else:
                # a file of the snapshot that nobody writes while we read it, which other
                # processes may read too: the copy, or a private file (not WAL read in place)
                self.frozen = self.path if private else None
                self._begin()
            self.objects = [
                SchemaObject(*r)
                for r in self.con.execute(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
                )
            ]
            check_schema(self.objects)
            self._sql_of = {o.name: o.sql for o in self.objects if o.type == "table"}
            self._kinds = {
                name: TableKind(kind, bool(wr), bool(strict))
                for _, name, kind, _, wr, strict in self.con.execute("PRAGMA main.table_list")
            }
            #: what a person should know of the redaction (the writers log it)
            self.notes: list[str] = []
            #: FTS tables over a redacted table, built again from its redacted rows
            self.rebuilt: list[str] = []
            #: those of them whose content is a view: no writer reads their rows
            self._over_views: set[str] = set()
            self._facts: dict[tuple[str, str], ColumnFacts] = {}
            if redaction is not None:
                no_rows = [*no_rows, *self._check_redaction(redaction)]
            #: the keys of the tables copied with their schema and no rows
            self.no_rows = keys_without_rows(self._table_names(), no_rows)
            self.all_specs = self._read_tables()
            wanted = set(select_keys([s.key for s in self.all_specs], include, exclude))
            self._specs = [s for s in self.all_specs if s.key in wanted]
            if wal and not private and self._big():
                self._read_a_copy()
        except sqlite3.OperationalError as e:
            self.close()
            if getattr(e, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
            raise ExportError(
                f"the database is locked by another connection: gave up waiting after {timeout:g} s"
            ) from None
        except BaseException:
            self.close()
            raise

    def _big(self) -> bool:
        """Whether a table is big enough for the writers to share it out among helper
        processes (:mod:`.parallel`), which need a file nobody writes."""
        return parallel.PARTS > 1 and any(
            s.estimated_rows >= parallel.PARALLEL_ROWS for s in self._specs
        )

    def _read_a_copy(self) -> None:
        """Go on reading a copy of the snapshot, which helper processes may read too. The
        backup API copies it in one step: through our read transaction where one is open (a
        WAL database read so far in place), else under a read lock of its own."""
        copy = _snapshot_copy(self.con, self.copy_beside, self.path, self.children)
        con, self.con = self.con, None  # a cancel meanwhile has nothing to interrupt
        con.close()
        self._close_stored()
        self.copy = self.frozen = copy
        self.con = open_read_only(copy, timeout=self._timeout)
        self._begin()

    def writable_snapshot_copy(self) -> sqlite3.Connection:
        """The snapshot as a private file the caller may change (``VACUUM INTO`` runs on it,
        which cannot run inside a transaction and, in SQLite 3.40, goes wrong on a read-only
        connection): the copy (made now, through the read transaction, if the file was read
        in place) reopened read-write, without a journal, as this source's connection, which
        a cancel interrupts. The read transaction ends, and the source is read no more
        otherwise: nobody else writes the copy, so it holds the same snapshot; the copy is
        still removed by :meth:`close`."""
        if self.copy is None:
            self._read_a_copy()
        assert self.copy is not None
        con, self.con = self.con, None
        con.close()
        self._close_stored()
        self.frozen = None  # no longer frozen: the writer changes it
        self.con = sqlite3.connect(self.copy, isolation_level=None, timeout=self._timeout)
        self.con.execute("PRAGMA journal_mode=OFF")
        self._functions()
        return self.con

    @property
    def redaction_key(self) -> bytes | None:
        """The backup's key, which helper processes redact with too; None without rules."""
        return self.redaction.key if self.redaction is not None else None

    def _functions(self) -> None:
        """Give the connection the functions the redaction's rules call."""
        if self.redaction is not None:
            redact.register(self.con, self.redaction.key)

    def _begin(self) -> None:
        """Begin the read transaction; its first read pins the snapshot."""
        self._functions()
        self.con.execute("BEGIN")
        self.con.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def interrupt(self) -> None:
        """Stop the query under way (from another thread: a cancel)."""
        for con in (self.con, self._stored):
            if con is not None:
                con.interrupt()
        for proc in list(self.children):
            proc.kill()

    # -- schema -------------------------------------------------------------------------

    def tables(self) -> list[SQLiteTable]:
        return list(self._specs)

    def is_internal(self, name: str) -> bool:
        """SQLite's own tables and the shadow tables of virtual tables."""
        return name.lower().startswith("sqlite_") or self._kind(name).kind == "shadow"

    def shadow_tables(self, vtable: str) -> list[str]:
        """The shadow tables that hold the data of virtual table ``vtable`` (FTS5: ``_data``,
        ``_idx``, ``_content``, ``_docsize``, ``_config``), in ``sqlite_master`` order."""
        vtables = [n for n, k in self._kinds.items() if k.kind == "virtual"]
        out = []
        for o in self.objects:
            if o.type == "table" and self._kind(o.name).kind == "shadow":
                owners = [v for v in vtables if o.name.startswith(v + "_")]
                if owners and max(owners, key=len) == vtable:
                    out.append(o.name)
        return out

    def _kind(self, name: str) -> TableKind:
        return self._kinds.get(name, TableKind())

    def _table_names(self) -> list[str]:
        """The tables to list, in ``sqlite_master`` order."""
        return [o.name for o in self.objects if o.type == "table" and not self.is_internal(o.name)]

    def _read_tables(self) -> list[SQLiteTable]:
        names = self._table_names()
        by_name = {name.lower(): name for name in names}
        specs = []
        parents: dict[str, list[str]] = {}
        for name in names:
            fks = [
                ForeignKeyInfo(*r)
                for r in self.con.execute(f"PRAGMA main.foreign_key_list({ident(name)})")
            ]
            # SQLite finds a referenced table whatever the case of its name
            parents[name] = [by_name[k.table.lower()] for k in fks if k.table.lower() in by_name]
            specs.append(self._describe(name))
        return parents_first(specs, parents)

    def shadow_table(self, name: str) -> SQLiteTable:
        """The shadow table ``name`` (see :meth:`shadow_tables`), described as a listed one."""
        return self._describe(name)

    def _describe(self, name: str) -> SQLiteTable:
        listed = self._kind(name)
        xinfo = [
            ColumnInfo(*r) for r in self.con.execute(f"PRAGMA main.table_xinfo({ident(name)})")
        ]
        rowids = listed.kind in ("table", "shadow") and not listed.without_rowid
        return SQLiteTable(
            key=name,
            name=name,
            schema=None,
            load_tables=self._load_tables,
            estimated_rows=0 if name in self.no_rows else self._count(name),
            kind=listed.kind,
            sql=self._sql_of[name],
            strict=listed.strict,
            without_rowid=listed.without_rowid,
            columns=[c.name for c in xinfo if c.hidden == 0],
            declared_types={c.name: c.type for c in xinfo},
            primary_key=[c.name for c in sorted(xinfo, key=lambda c: c.pk) if c.pk],
            hidden_rowid=rowid_name(self.con, name, xinfo) if rowids else None,
            rowid_alias=rowid_alias(xinfo) if rowids else None,
            as_stored=all(
                c.hidden != 2 and (c.dflt_value is None or _STORED_DEFAULT.fullmatch(c.dflt_value))
                for c in xinfo
            ),
        )

    def _load_tables(self) -> dict[str, sa.Table]:
        """The ``Table`` of every listed table, by name, reflected on first use (through the
        snapshot connection, inside its transaction), column types from the host's
        ``metadata`` where it has the table."""
        if self._tables is not None:
            return self._tables
        import sqlalchemy as sa

        names = self._table_names()
        md = sa.MetaData()
        if names:
            engine = sa.create_engine(
                "sqlite://",
                creator=lambda: _Lent(self.con),
                poolclass=sa.pool.StaticPool,
                pool_reset_on_return=None,
            )
            try:
                with warnings.catch_warnings():
                    # expression indexes and unknown type names are reflected as far as
                    # SQLAlchemy can; the SQLite writers copy the original SQL anyway
                    warnings.simplefilter("ignore", sa.exc.SAWarning)
                    md.reflect(engine, only=names, resolve_fks=False)
            finally:
                engine.dispose()
        for name in names:
            for col in md.tables[name].columns:
                if (model := self.host_column(name, col.name)) is not None:
                    col.type = model.type.copy()
        self._tables = {name: md.tables[name] for name in names}
        return self._tables

    def host_column(self, table: str, column: str) -> sa.Column | None:
        """The host's model of ``column`` of ``table``, if its ``metadata`` has one: the
        column's type (and server default) are then the model's."""
        host = self.host_metadata.tables.get(table) if self.host_metadata is not None else None
        return host.c.get(column) if host is not None else None

    # -- redaction ----------------------------------------------------------------------

    def column_facts(self) -> dict[str, list[ColumnFacts]]:
        """:class:`.ColumnFacts` of every listed table's columns, by table key, from
        ``PRAGMA table_xinfo``, ``foreign_key_list`` and ``index_list``; a column's kind
        and size are the host model's where ``metadata`` describes it, else its declared
        type's (:func:`declared_kind`)."""
        names = self._table_names()
        by_lower = {n.lower(): n for n in names}
        out: dict[str, list[ColumnFacts]] = {}
        for name in names:
            xinfo = [
                ColumnInfo(*r) for r in self.con.execute(f"PRAGMA main.table_xinfo({ident(name)})")
            ]
            xinfo = [c for c in xinfo if c.hidden != 1]
            pk = [c.name for c in xinfo if c.pk]
            uniques = {pk[0]} if len(pk) == 1 else set()
            for _, index, unique, _, partial in self.con.execute(
                f"PRAGMA main.index_list({ident(name)})"
            ):
                if unique and not partial:
                    cols = self.con.execute(f"PRAGMA main.index_info({ident(index)})").fetchall()
                    if len(cols) == 1 and cols[0][2] is not None:
                        uniques.add(cols[0][2])
            fks: dict[int, list[ForeignKeyInfo]] = {}
            for r in self.con.execute(f"PRAGMA main.foreign_key_list({ident(name)})"):
                fks.setdefault(r[0], []).append(ForeignKeyInfo(*r))
            refs = {}
            for parts in fks.values():
                parent = by_lower.get(parts[0].table.lower())
                if len(parts) != 1 or parent is None:
                    continue
                to = parts[0].to or self._single_pk(parent)
                if to is not None:
                    refs[parts[0].from_] = (parent, to)
            facts = []
            for c in xinfo:
                model = self.host_column(name, c.name)
                if model is not None:
                    kind, size = kind_of_sqlalchemy(model.type)
                    if kind == "integer" and size == 4:
                        size = 8  # SQLite's integers, and the postgres format's bigint
                else:
                    kind, size = declared_kind(c.type)
                facts.append(
                    ColumnFacts(
                        name,
                        c.name,
                        kind,
                        size,
                        nullable=not c.notnull and not c.pk,
                        references=refs.get(c.name),
                        unique=c.name in uniques,
                        generated=c.hidden in (2, 3),
                    )
                )
            out[name] = facts
        return out

    def _single_pk(self, table: str) -> str | None:
        pk = [
            r[1]
            for r in sorted(
                self.con.execute(f"PRAGMA main.table_info({ident(table)})"), key=lambda r: r[5]
            )
            if r[5]
        ]
        return pk[0] if len(pk) == 1 else None

    def _check_redaction(self, redaction: Redaction) -> list[str]:
        """Check ``redaction``'s profile against this database's own tables (ExportError
        naming each key that cannot apply), and decide what becomes of what is derived from
        a redacted column: an FTS table whose external content is a redacted table is built
        again from its redacted rows (:attr:`rebuilt`); one with its own content that a
        trigger of a redacted table writes, and every contentless one, is copied without rows
        (returned, for :attr:`no_rows`), with a note saying so (:attr:`notes`)."""
        facts = self.column_facts()
        virtual = {n for n, k in self._kinds.items() if k.kind == "virtual"}
        try:
            check_profile(redaction.profile, facts)
        except RedactionError as e:
            raise ExportError(str(e)) from None
        for table, column in redaction.profile.columns:
            if table in virtual and redaction.column_rule(table, column) is not None:
                raise ExportError(
                    f"profile {redaction.profile.name!r}: redaction {f'{table}.{column}'!r}: "
                    "a virtual table's column: redact the table it is built from"
                )
        self._facts = {(f.table, f.name): f for cols in facts.values() for f in cols}
        redacted = {t.lower() for t in redaction.profile.redacted_tables() if t not in virtual}
        #: tables copied without their rows, or left out: an index of them holds their rows
        rowless = {t.lower() for t in redaction.profile.tables if t not in virtual}
        if not redacted and not rowless:
            return []
        emptied = []
        # views reading a redacted or emptied table, through other views too: an external-
        # content index over one holds its original words
        over, views = set(), {o.name.lower(): o.sql or "" for o in self.objects if o.type == "view"}
        while True:
            more = {
                v
                for v, sql in views.items()
                if v not in over and any(_mentions(sql, t) for t in redacted | rowless | over)
            }
            if not more:
                break
            over |= more
        feeds = [
            o.sql or ""
            for o in self.objects
            if o.type == "trigger" and o.tbl_name.lower() in redacted | rowless
        ]
        for o in self.objects:
            if o.name not in virtual or o.name in redaction.profile.tables:
                continue
            if fts_module(o.sql or "") is None:  # an R*Tree a trigger fills: its own rows
                if any(_mentions(sql, o.name) for sql in feeds):
                    emptied.append(o.name)
                    self.notes.append(
                        f"table {shown(o.name)}: copied without rows, as this virtual table is "
                        "written by a trigger of a table redacted or copied without rows"
                    )
                continue
            content = (fts_content(o.sql or "") or "").lower() or None
            if content in redacted or content in over:
                self.rebuilt.append(o.name)
                if content in over:  # read raw from the view by a writer of rows (postgres)
                    self._over_views.add(o.name)
                continue
            if content in rowless:
                why = "indexes a table copied without its rows"
            elif fts_content(o.sql or "") == "" and redacted:
                why = "is contentless (what it indexes is unknown)"
            elif any(_mentions(sql, o.name) for sql in feeds):
                why = "is written by a trigger of a table redacted or copied without rows"
            else:
                continue
            emptied.append(o.name)
            self.notes.append(
                f"table {shown(o.name)}: copied without rows, as this full-text index {why} "
                "and would carry the original values: rebuild it in the app"
            )
        return emptied

    def redacted_column(
        self, spec: SQLiteTable, column: str, value: str | None = None
    ) -> tuple[str, str] | None:
        """``(expression, what it gives)`` (see :func:`.redaction.sqlite.output`) replacing
        ``column`` of ``spec``, if a rule redacts it; an external-content FTS table's column
        is read through its content table's rule. ``value``: the expression applies to this
        SQL expression instead of the column (a table of its distinct values)."""
        red = self.redaction
        if red is None:
            return None
        table = spec.key
        if spec.kind == "virtual":
            if spec.name in self._over_views:  # its view's text is the original's
                return "NULL", "constant"
            content = fts_content(spec.sql or "")
            if not content or fts_module(spec.sql or "") is None:
                return None
            table = next((t for t in self._table_names() if t.lower() == content.lower()), "")
        rule = red.column_rule(table, column)
        col = self._facts.get((table, column))
        if rule is None or col is None:
            return None
        expr = redact.expression(rule, col, ident(column) if value is None else value)
        return expr, redact.output(rule, col)

    def _count(self, name: str) -> int:
        try:
            return self.con.execute(f"SELECT count(*) FROM main.{ident(name)}").fetchone()[0]
        except sqlite3.OperationalError:  # a virtual table whose module cannot count
            return 0

    # -- rows ---------------------------------------------------------------------------

    def column_sql(self, spec: SQLiteTable, column: str) -> str:
        """The SQL expression every writer reads ``column`` of table ``spec`` by: the one place
        where a table's values leave the source. Today the column itself; a per-column
        transform (redaction) goes here, and reaches every path: :meth:`select_list`
        (:meth:`row_batches`, the ``postgres`` format's helper processes) and the ``printf()``
        rendering of the ``sqlite3`` format, which uses the expression several times per
        value (its type tests, then the value), all inside SQLite's own query, so the fast
        paths stay fast. The rowid is read through here too: a transform leaves it as it is.

        A column a rule redacts is read by the rule's expression (:mod:`.redaction.sqlite`);
        a generated column of a table with a redacted column is computed again from the
        redacted values (:meth:`_recomputed`): it never carries the original's."""
        found = self.redacted_column(spec, column)
        if found is not None:
            return found[0]
        if (
            self.redaction is not None
            and spec.key in self.redaction.profile.redacted_tables()
            and (f := self._facts.get((spec.key, column))) is not None
            and f.generated
        ):
            return self._recomputed(spec, column)
        return ident(column)

    def _recomputed(self, spec: SQLiteTable, column: str) -> str:
        """A generated column's expression evaluated over the table's stored columns as
        the writers read them (redacted), in a subquery of the row: ``(SELECT (expr) FROM
        (SELECT <redacted a> AS a, b AS b, ...))``. NULL when its expression cannot be found."""
        expr = generated_expression(spec.sql or "", column)
        if expr is None:
            return "NULL"
        # every other column, a generated one recomputed too: one left out would be read
        # from the outer row (its original value) by the correlated subquery
        others = [
            c
            for (t, c), f in self._facts.items()
            if t == spec.key and c != column and (not f.generated or _mentions(expr, c))
        ]
        inner = ", ".join(f"{self.column_sql(spec, c)} AS {ident(c)}" for c in others)
        return f"(SELECT ({expr}) FROM (SELECT {inner}))"

    def select_list(self, spec: SQLiteTable, columns: Iterable[str]) -> str:
        """The SELECT list reading ``columns`` of ``spec`` (:meth:`column_sql`)."""
        return ", ".join(self.column_sql(spec, c) for c in columns)

    def rows(self, spec: SQLiteTable) -> Iterator[Sequence[Any]]:
        for batch in self.row_batches(spec):
            yield from batch

    def row_batches(
        self, spec: SQLiteTable, size: int = 5000, between: tuple[int, int] | None = None
    ) -> Iterator[list[Sequence[Any]]]:
        """The rows in rowid order where the table has a rowid (so that "the n-th row" has a
        rowid: :meth:`rowid_of`), else in the table's own order; only those whose rowid is
        ``between`` two values if given. The columns are those of the SQLAlchemy ``Table``.
        Nothing for a table of :attr:`no_rows`. The rows of a plain table are read through
        APSW where :meth:`stored_reader` says so."""
        if spec.key in self.no_rows:
            return
        cols = self.select_list(spec, [c.name for c in spec.table.columns])
        rowid = spec.rowid_expr()
        where = f" WHERE {rowid} BETWEEN ? AND ?" if between is not None else ""
        order = f" ORDER BY {rowid}" if rowid else ""
        sql = f"SELECT {cols} FROM main.{ident(spec.name)}{where}{order}"
        stored = self._stored_con() if self.stored_reader(spec) else None
        yield from child.batches(self.con, stored, sql, between or (), size, spec.key)

    def stored_reader(self, spec: SQLiteTable) -> bool:
        """Whether ``spec``'s rows may be read through APSW (:func:`.child.batches`): a file
        nobody writes, a rowid table (read in rowid order, whatever SQLite plans), every
        value stored as it is (:attr:`SQLiteTable.as_stored`) and read as it is: no column
        a redaction rewrites (its expressions call functions that are on :attr:`con`)."""
        return (
            self.frozen is not None
            and spec.as_stored
            and spec.rowid_expr() is not None
            and all(self.column_sql(spec, c.name) == ident(c.name) for c in spec.table.columns)
        )

    def _stored_con(self) -> Any:
        if self._stored is None and self.frozen is not None:
            self._stored = child.open_stored(self.frozen)
        return self._stored

    def _close_stored(self) -> None:
        stored, self._stored = self._stored, None
        if stored is not None:
            stored.close(True)

    def rowid_of(self, spec: SQLiteTable, n: int) -> int | None:
        """The rowid of the ``n``-th row (from 1) :meth:`row_batches` gives, or None when the
        table has no rowid to name it by (WITHOUT ROWID, virtual, every alias shadowed)."""
        rowid = spec.rowid_expr()
        if rowid is None:
            return None
        found = self.con.execute(
            f"SELECT {rowid} FROM main.{ident(spec.name)} ORDER BY {rowid} LIMIT 1 OFFSET ?",
            (n - 1,),
        ).fetchone()
        return None if found is None else found[0]

    def rowid_ranges(self, spec: SQLiteTable) -> list[tuple[int, int]]:
        """``spec``'s rowids as ranges to read side by side (:func:`.parallel.ranges`: one per
        part when the table is big and :attr:`frozen` names a file helpers may read, else
        one; none for an empty table or one of :attr:`no_rows`)."""
        if spec.key in self.no_rows:
            return []
        return parallel.ranges(
            self.con,
            f"main.{ident(spec.name)}",
            spec.rowid_alias,
            spec.estimated_rows,
            frozen=self.frozen is not None,
        )

    def has_orphans(
        self,
        spec: SQLiteTable,
        parent: SQLiteTable,
        columns: Sequence[str],
        refs: Sequence[str],
    ) -> bool:
        """Whether a row of ``spec`` whose ``columns`` are all non-null finds no row of
        ``parent`` whose ``refs`` equal them (a foreign key the snapshot breaks, or the copy:
        every such row of a table whose parent is copied without rows)."""
        if spec.key in self.no_rows:
            return False
        child, parent_name = ident(spec.name), ident(parent.name)
        cond = " AND ".join(
            f"p.{ident(r)} = c.{ident(c)}" for c, r in zip(columns, refs, strict=True)
        )
        notnull = " AND ".join(f"c.{ident(c)} IS NOT NULL" for c in columns)
        missing = (
            ""
            if parent.key in self.no_rows
            else f" AND NOT EXISTS (SELECT 1 FROM main.{parent_name} p WHERE {cond})"
        )
        found = self.con.execute(
            f"SELECT 1 FROM main.{child} c WHERE {notnull}{missing} LIMIT 1"
        ).fetchone()
        return found is not None

    def info(self) -> SourceInfo:
        return SourceInfo(
            "sqlite", sqlite3.sqlite_version, self.path.name, schema_revision(self.con)
        )

    def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._close_stored()
        con, self.con = self.con, None
        try:
            if con is not None:
                try:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                finally:
                    con.close()
        finally:
            if self.copy is not None:
                self.copy.unlink(missing_ok=True)


def schema_revision(con: sqlite3.Connection) -> str | None:
    """Alembic's revision(s) in ``alembic_version``, joined by ``,``; None without the table."""
    try:
        found = con.execute("SELECT version_num FROM main.alembic_version ORDER BY 1").fetchall()
    except sqlite3.Error:
        return None
    return ",".join(str(v) for (v,) in found) or None


def declared_kind(declared: str) -> tuple[str, int | None]:
    """(kind, size) of a column no model describes, by its declared type, as the
    ``postgres`` format types it: integers are 8 bytes (SMALLINT 2, TINYINT 1), a
    ``VARCHAR(n)`` holds ``n`` characters, a column without a type holds text."""
    t = " ".join(declared.upper().split())
    name = t.split("(")[0].strip()
    size = None
    if "(" in t:
        arg = t.split("(", 1)[1].split(",")[0].split(")")[0].strip()
        size = int(arg) if arg.isdigit() and int(arg) > 0 else None
    if name in ("UUID", "GUID", "UNIQUEIDENTIFIER"):
        return "uuid", None
    if name in ("BOOLEAN", "BOOL"):
        return "boolean", None
    if "INT" in name:
        small = {"SMALLINT": 2, "INT2": 2, "TINYINT": 1}
        return "integer", small.get(name, 8)
    if "CHAR" in name or "CLOB" in name or "TEXT" in name or name == "":
        return "text", size
    if "BLOB" in name or "BINARY" in name or name in ("BYTEA", "RAW", "IMAGE"):
        return "bytes", None
    if "REAL" in name or "FLOA" in name or "DOUB" in name:
        return "float", None
    if name in ("JSON", "JSONB"):
        return "json", None
    if name in ("DATETIME", "TIMESTAMP"):
        return "datetime", None
    if name == "DATE":
        return "date", None
    if name == "TIME":
        return "time", None
    if name in ("NUMERIC", "DECIMAL"):
        return "numeric", None
    return "other", None


def _words(sql: str) -> list[tuple[str, str]]:
    return list(tokens(sql))


def _unquoted(kind: str, text: str) -> str:
    if kind == "string":
        return text[1:-1].replace("''", "'")
    if kind == "quoted":
        q = text[0]
        return text[1:-1] if q == "[" else text[1:-1].replace(q * 2, q)
    return text


def fts_module(sql: str) -> str | None:
    """``fts5``, ``fts4`` or ``fts3`` for a ``CREATE VIRTUAL TABLE ... USING ftsN(...)``."""
    toks = _words(sql)
    for i, (k, t) in enumerate(toks):
        if k == "word" and t.upper() == "USING" and i + 1 < len(toks):
            module = toks[i + 1][1].lower()
            return module if module in ("fts3", "fts4", "fts5") else None
    return None


def fts_content(sql: str) -> str | None:
    """The ``content=`` option of an FTS table: a table's name (external content), ``""``
    (contentless), or None (its own content)."""
    toks = _words(sql)
    for i in range(len(toks) - 2):
        (k, t), (_, eq), (vk, v) = toks[i], toks[i + 1], toks[i + 2]
        if k == "word" and t.lower() == "content" and eq == "=":
            return _unquoted(vk, v)
    return None


def _mentions(sql: str, name: str) -> bool:
    """Whether statement ``sql`` names ``name`` (a table), in any quoting or case."""
    return any(
        k in ("word", "quoted", "string") and _unquoted(k, t).lower() == name.lower()
        for k, t in _words(sql)
    )


def generated_expression(sql: str, column: str) -> str | None:
    """The expression of generated column ``column`` in ``CREATE TABLE`` statement ``sql``
    (the text inside ``AS (...)`` of its definition), or None."""
    toks, gaps, gap = [], [], False  # gaps: whether space or a comment came before a token
    for k, t in all_tokens(sql):
        if k in ("space", "comment"):
            gap = True
            continue
        toks.append((k, t))
        gaps.append(gap)
        gap = False
    depth, start, i = 0, True, 0
    while i < len(toks):
        k, t = toks[i]
        if t == "(":
            depth += 1
            start = depth == 1
            i += 1
            continue
        if t == ")":
            depth -= 1
        elif t == "," and depth == 1:
            start = True
            i += 1
            continue
        if depth == 1 and start:
            start = False
            if _unquoted(k, t).lower() == column.lower() and k in ("word", "quoted", "string"):
                j = i + 1
                while j < len(toks) and not (toks[j][1] in (",", ")") and depth == 1):
                    if (
                        toks[j][0] == "word"
                        and toks[j][1].upper() == "AS"
                        and (j + 1 < len(toks) and toks[j + 1][1] == "(")
                    ):
                        inner, d, m = [], 0, j + 1
                        while m < len(toks):
                            if toks[m][1] == "(":
                                d += 1
                            elif toks[m][1] == ")":
                                d -= 1
                                if d == 0:  # as written: "a || b" is not "a | | b"
                                    return "".join((" " if g else "") + x for g, x in inner).strip()
                            if m > j + 1:
                                inner.append((gaps[m], toks[m][1]))
                            m += 1
                        return None
                    if toks[j][1] == "(":
                        d2 = 1
                        j += 1
                        while j < len(toks) and d2:
                            d2 += {"(": 1, ")": -1}.get(toks[j][1], 0)
                            j += 1
                        continue
                    j += 1
        i += 1
    return None


def check_schema(objects: list[SchemaObject]) -> None:
    """Refuse (ExportError naming the object) a ``sqlite_master`` entry that is not exactly
    one statement of its type: with ``PRAGMA writable_schema`` any text can be stored there,
    and the ``sqlite3`` format writes each entry as a line of a script for the ``sqlite3``
    shell, where extra statements (an ``ATTACH`` writing a file anywhere) or a line the shell
    reads as a command would run on the machine that restores it. Judged by the shell's
    reading and by SQLite itself (:class:`.checks.sqlite_shell.Scratch`)."""
    scratch = Scratch()
    try:
        for o in objects:
            if o.sql is None:  # automatic indexes
                continue
            why = scratch.problem(o.type, o.name, o.sql)
            if why is not None:
                raise ExportError(
                    f"the {shown(o.type, 20)} {shown(o.name)} in sqlite_master is not one "
                    f"CREATE {shown(o.type.upper(), 20)} statement ({why}): refusing to copy it"
                )
    finally:
        scratch.close()


def _snapshot_copy(
    con: sqlite3.Connection, beside: Path | None, file: Path, children: set[subprocess.Popen]
) -> Path:
    """Copy the database of ``con`` (its file ``file``) into a private temp file beside
    ``beside`` (named after it, so whoever cleans up after a dead worker finds it): byte for
    byte where :func:`_file_copy` can (a rollback-journal database), else with the backup
    API, in one step. The copy is written without a journal and without fsync: nobody else
    knows of the file, and a crash leaves only a ``.part`` file behind."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{beside.name}.snapshot-" if beside else ".snapshot-",
        suffix=".part",
        dir=beside.parent if beside else None,
    )
    os.close(fd)
    try:
        if _file_copy(con, file, Path(tmp), children):
            return Path(tmp)
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            dst.execute("PRAGMA journal_mode=OFF")
            dst.execute("PRAGMA synchronous=OFF")
            con.backup(dst)
        finally:
            dst.close()
        rollback_header(Path(tmp))  # a copy of a WAL database: one self-contained file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


#: the smallest database file copied by a process of its own (:func:`_file_copy`): below it,
#: starting one costs more than the backup API's copy takes
FILE_COPY_MIN = 16 << 20


def _file_copy(
    con: sqlite3.Connection, file: Path, dst: Path, children: set[subprocess.Popen]
) -> bool:
    """Copy ``file``, the database file of ``con`` in rollback-journal mode, byte for byte to
    ``dst`` while ``con`` holds a read lock, under which no connection writes the file (a
    writer needs the exclusive lock): the copy is the snapshot that lock sees, made in the
    kernel's time (``copy_file_range``), a quarter of the backup API's page by page.

    The copy is made by a process of its own (:func:`.child.copy_main`): closing a descriptor
    of the file in this process would drop every POSIX lock the process holds on it, the
    app's own connections' included (SQLite's locks are ``fcntl()`` locks). A cancel kills
    it (``children``). False, and the caller uses the backup API, where this cannot be
    trusted or would not pay: not Linux, no Python to start, a file below
    :data:`FILE_COPY_MIN`, a WAL database (asked under the lock: the app may have turned it to
    WAL since it was opened; the WAL holds part of the snapshot), or a path that no longer
    names the file this process has open (renamed over meanwhile)."""
    if sys.platform != "linux" or not child.python_here():
        return False
    began = not con.in_transaction
    if began:
        con.execute("BEGIN")
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read lock
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return False
        st = os.stat(file)
        if st.st_size < FILE_COPY_MIN or not _open_here(st):
            return False
        cmd = [sys.executable, "-I", str(child.PROGRAM), "--copy", str(file), str(dst)]
        try:
            proc = subprocess.Popen(
                [*cmd, str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError:
            return False
        children.add(proc)
        try:
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:  # interrupted here: it copies no more
                proc.kill()
                proc.wait()
            children.discard(proc)
        if proc.returncode:
            why = " ".join(err.decode(errors="replace").split())[-300:]
            raise ExportError(f"copying the database file failed: exit {proc.returncode}: {why}")
        if out.strip() != str(st.st_size).encode() or os.stat(dst).st_size != st.st_size:
            raise ExportError("copying the database file failed: the copy is incomplete")
        return True
    finally:
        if began:
            con.execute("COMMIT")


def _open_here(st: os.stat_result) -> bool:
    """Whether this process has the file of ``st`` open (our connection has: unless the path
    was renamed over since). Linux's /proc tells without opening the file."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            held = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if (held.st_dev, held.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def rollback_header(path: Path) -> None:
    """Set the file format read/write versions of the database header (bytes 18 and 19) to 1,
    legacy rollback journal, where a WAL database has 2 (what ``journal_mode=DELETE`` writes)."""
    fd = os.open(path, os.O_RDWR)
    try:
        if os.pread(fd, 2, 18) == b"\x02\x02":
            os.pwrite(fd, b"\x01\x01", 18)
    finally:
        os.close(fd)


def rowid_name(con: sqlite3.Connection, table: str, xinfo: list[ColumnInfo]) -> str | None:
    """The name to read and write a rowid table's rowid by, or None when the rowid is already a
    column (``INTEGER PRIMARY KEY``) or every alias is shadowed by a real column."""
    pk = [c for c in xinfo if c.pk]
    if (
        len(pk) == 1
        and (pk[0].type or "").upper() == "INTEGER"
        and _is_rowid(con, table, pk[0].name)
    ):
        return None
    return rowid_alias(xinfo)


def _is_rowid(con: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``column`` is the rowid itself: an ``INTEGER PRIMARY KEY`` is, except one
    declared ``INTEGER PRIMARY KEY DESC``. SQLite's own plan for reading it from the table
    (not from an index, which holds the rowid too) tells."""
    plan = con.execute(f"EXPLAIN SELECT {ident(column)} FROM main.{ident(table)} NOT INDEXED")
    return any(step[1] == "Rowid" for step in plan)


def rowid_alias(xinfo: list[ColumnInfo]) -> str | None:
    """The first of ``rowid``, ``_rowid_``, ``oid`` that no column of a rowid table shadows."""
    names = {c.name.lower() for c in xinfo}
    return next((n for n in ("rowid", "_rowid_", "oid") if n not in names), None)


__all__ = ["SQLiteSource", "SQLiteTable"]


def remove_sidecars(path: Path) -> None:
    """Remove the journal and WAL files SQLite may leave beside a database file ``path``."""
    for suffix in ("-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
