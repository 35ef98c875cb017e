"""The PostgreSQL source: one ``REPEATABLE READ READ ONLY`` transaction, read with psycopg 3.

Everything (catalog and data) is read inside that one transaction, so the tables, the rows and
the schema all come from the same snapshot. The SQLAlchemy ``Table`` objects that describe the
tables are built from the catalog facts read here (:mod:`.sources.postgres_model`), by
:mod:`.sources.postgres_catalog`, when a writer first asks for one: the ``postgres`` format never
does, and never imports SQLAlchemy. Columns whose type psycopg cannot load by itself (enums,
composite and unknown types, ...) are read as text.

A redaction's rules are checked against the catalog when the source opens (ExportError naming
the key); its column rules are applied in the queries that read the rows, by the server
(:meth:`PostgresSource.select_list`), with a key made in the server for the snapshot's
transaction only (:mod:`..redaction.postgres`). ``pg_statistic`` is never read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql
from psycopg.adapt import Transformer
from psycopg.rows import RowFactory, class_row
from psycopg.types import datetime as pdt

from ..base import parents_first, select_keys, shown, watch
from ..model import ExportCancelled, ExportError, SourceInfo
from ..redaction import ColumnFacts, Redaction, RedactionError, Rule, check
from ..redaction.postgres import (
    COMMON_QUERY,
    common_values,
    key_query,
    lateral,
    reads_value,
    rule_expr,
)
from . import keys_without_rows
from .postgres_model import (
    PgColumn,
    PgConstraint,
    PgIndex,
    PgRelation,
    PgType,
    PostgresTable,
    base_type,
    column_facts,
    table_key,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..url import URL

#: rows per batch of :meth:`PostgresSource.row_batches` (and per chunk the server sends)
ITERSIZE = 5000
#: bytes of COPY text gathered before :meth:`PostgresSource.copy_out` yields a chunk
CHUNK = 1 << 20
#: an un-analysed table (``reltuples = -1``) smaller than this is counted exactly
COUNT_LIMIT = 64 << 20

#: ``pg_catalog`` types psycopg loads by itself (those of
#: :data:`.sources.postgres_catalog.BASE_TYPES`
#: but money, name, citext, bit and varbit); columns of any other type are selected as text
_LOADABLE = set(
    "int2 int4 int8 oid float4 float8 numeric bool text varchar bpchar date timestamp timestamptz"
    " time timetz interval bytea json jsonb uuid tsvector inet cidr macaddr macaddr8 int4range"
    " int8range numrange daterange tsrange tstzrange".split()
)

#: the stored generated columns (by table oid, its name) and each column they are computed
#: from: a generated column whose input is redacted cannot keep its value
#: (child, parent) of table inheritance (a partition is read through its parent's query)
_INHERITS = """
SELECT i.inhrelid, i.inhparent FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
WHERE NOT c.relispartition
"""

_GENERATED_FROM = """
SELECT ad.adrelid, g.attname, a.attname
FROM pg_catalog.pg_attrdef ad
JOIN pg_catalog.pg_attribute g ON g.attrelid = ad.adrelid AND g.attnum = ad.adnum
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
     AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.refobjid = ad.adrelid AND d.refobjsubid > 0 AND d.refobjsubid <> ad.adnum
JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = d.refobjsubid
WHERE ad.adrelid = ANY(%s) AND g.attgenerated <> ''
"""

#: types whose binary form psycopg loads into the very value it loads from their text (dates
#: and times are not among them: their text loaders are ours, see :func:`_lenient_loaders`)
BINARY_SAFE = set("int2 int4 int8 oid float8 bool text varchar bpchar bytea uuid".split())

_TYPES = """
SELECT t.oid, t.typname, n.nspname, t.typtype, t.typelem, t.typbasetype, t.typtypmod,
       t.typcategory, pg_catalog.format_type(t.oid, NULL) AS formatted,
       CASE WHEN t.typtype = 'e' THEN ARRAY(
           SELECT e.enumlabel FROM pg_catalog.pg_enum e
           WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END AS labels
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
"""

_TABLES = """
SELECT c.oid, n.nspname, c.relname, c.relkind,
       (SELECT CASE WHEN bool_or(p.reltuples < 0) THEN -1
                    ELSE sum(p.reltuples)::bigint END
        FROM pg_catalog.pg_class p WHERE p.relkind = 'r' AND (p.oid = c.oid
             -- its partitions, from pg_inherits: pg_partition_tree() waits for their locks
             OR p.oid IN (WITH RECURSIVE t (relid) AS (
                 SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                 WHERE i.inhparent = c.oid AND c.relkind = 'p'
                 UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                 JOIN t ON i.inhparent = t.relid) SELECT t.relid FROM t)))
       AS reltuples
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""

#: t: the tables (%s: their oids), their partitions and children, whose locks LOCK TABLE takes
_TREE = """
WITH RECURSIVE t (relid) AS (
    SELECT pg_catalog.unnest(%s::pg_catalog.oid[])
    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN t ON i.inhparent = t.relid)
"""

#: those of :data:`_TREE` given a new file since the snapshot (pg_relation_filenode() reads
#: the catalog as it is now): by a rewrite or a TRUNCATE, after which their rows look gone
#: to the snapshot
_REWRITTEN = (
    _TREE
    + """SELECT n.nspname, c.relname
FROM t JOIN pg_catalog.pg_class c ON c.oid = t.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relfilenode <> pg_catalog.pg_relation_filenode(c.oid)
"""
)

#: a column's default is its own, else its domain's (``typdefaultbin``: a domain over a domain
#: holds the default it took from that one), as PostgreSQL applies them to a new row; read only
#: for the tables locked (the second parameter): pg_get_expr waits for a table's lock
_COLUMNS = """
SELECT a.attrelid, a.attname, a.attnotnull, a.atttypid, a.atttypmod, a.attndims, a.attgenerated,
       a.attidentity, pg_catalog.format_type(a.atttypid, a.atttypmod) AS formatted,
       CASE WHEN NOT a.attrelid = ANY(%s) THEN NULL
            WHEN d.adbin IS NOT NULL THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid)
            WHEN a.attgenerated = '' AND a.attidentity = ''
            THEN pg_catalog.pg_get_expr(t.typdefaultbin, 0) END AS default_expr
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS = """
SELECT con.conrelid, con.conname, con.contype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
             ORDER BY k.i) AS keys,
       con.confrelid,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
             ORDER BY k.i) AS fkeys,
       con.confupdtype, con.confdeltype, con.condeferrable, con.condeferred
FROM pg_catalog.pg_constraint con
WHERE con.conrelid = ANY(%s) AND con.contype IN ('p', 'u', 'f')
ORDER BY con.conrelid, con.conname
"""

_INDEXES = """
SELECT i.indrelid, c.relname, i.indisunique,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
             WHERE o <= i.indnkeyatts ORDER BY o) AS keys
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = ANY(%s) AND i.indexprs IS NULL AND i.indpred IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con WHERE con.conindid = i.indexrelid
                  AND con.conrelid = i.indrelid)
  AND 0 <> ALL (i.indkey::int2[])
ORDER BY i.indrelid, c.relname
"""


def conninfo(url: URL | sa.URL) -> dict[str, Any]:
    """psycopg connection keywords for an SQLAlchemy URL (the driver part is ignored)."""
    kw: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    for k, v in url.query.items():
        kw[k] = v[-1] if isinstance(v, tuple) else v
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("application_name", "flask-backup-manager")
    return {k: v for k, v in kw.items() if v is not None}


class _Lenient:
    """Dates and timestamps Python cannot hold (``infinity``, years before 1 or after 9999)
    are given as PostgreSQL's text instead of failing the export."""

    def load(self, data):  # type: ignore[no-untyped-def]
        try:
            return super().load(data)  # type: ignore[misc]
        except psycopg.DataError:
            return bytes(data).decode()


def _lenient_loaders(conn: psycopg.Connection) -> None:
    for name, base in (
        ("date", pdt.DateLoader),
        ("timestamp", pdt.TimestampLoader),
        ("timestamptz", pdt.TimestamptzLoader),
    ):
        conn.adapters.register_loader(name, type(f"Lenient{base.__name__}", (_Lenient, base), {}))


class PostgresSource:
    """A PostgreSQL database opened on one consistent snapshot until :meth:`close`.

    The tables ``no_rows`` names (:attr:`no_rows`) are listed with no rows: :meth:`row_batches`
    and :meth:`copy_out` give none, and the values of the sequences they own are not read, so
    the copy's sequences start afresh."""

    def __init__(
        self,
        url: URL | sa.URL,
        *,
        metadata: sa.MetaData | None = None,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        no_rows: Iterable[str] = (),
        lock_timeout: float | None = None,
        cancel: threading.Event | None = None,
        copy_beside: Path | None = None,  # unused: the snapshot is a transaction, no copy
        phase: Callable[[str], None] | None = None,
        redaction: Redaction | None = None,
    ) -> None:
        self.url = url
        self.host_metadata = metadata
        #: the column rules applied to the values read (:meth:`select_list`); None: none
        self.redaction = redaction
        self.include, self.exclude = include, exclude
        self.conn = psycopg.connect(**conninfo(url))
        self.phase = phase
        self.cancelled = False
        self._unwatch = watch(cancel, self.interrupt) if cancel is not None else None
        try:
            _lenient_loaders(self.conn)
            # Session settings first (outside the snapshot), then the one transaction, begun
            # by hand: in autocommit mode psycopg sends no BEGIN of its own before ours.
            self.conn.autocommit = True
            self.conn.execute(
                "SET search_path = ''; SET DateStyle = ISO; SET IntervalStyle = postgres;"
                " SET standard_conforming_strings = on;"
                " SET extra_float_digits = 3; SET client_encoding = 'UTF8';"
                " SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0"
            )
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if lock_timeout is not None:
                self.conn.execute(f"SET LOCAL lock_timeout = {max(1, round(lock_timeout * 1000))}")
            # The first query takes the snapshot; sequences are read right after it
            # (they are not transactional: this is the closest we get to the snapshot).
            self.server_version = self.conn.info.server_version
            self.sequences = self.fetch(
                """SELECT s.seqrelid, s.seqrelid::regclass::text
                   FROM pg_catalog.pg_sequence s
                   JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
                   ORDER BY 2"""
            )
            self.sequence_values: dict[int, tuple[int, bool]] = {}
            for oid, name in self.sequences:
                value, called = self.fetch(f"SELECT last_value, is_called FROM {name}")[0]
                self.sequence_values[oid] = (value, called)
            self._types: dict[int, PgType] | None = None
            self._tables: dict[str, sa.Table] | None = None
            self._in_catalog_order: list[PostgresTable] = []
            # the tables' names, then their locks, then the rest of their catalog: reading a
            # default (pg_get_expr) waits for a lock like any reader of the table
            rels = self.fetch(_TABLES, row_factory=class_row(PgRelation))
            keys = [table_key(r.nspname, r.relname) for r in rels]
            wanted = set(select_keys(keys, include, exclude))
            # an inheritance child's rows are its parent's too (SELECT * FROM parent reads
            # them), and its CREATE names the parent: it follows a parent left out (skip,
            # --exclude) or copied without rows, as a partition does
            heirs = self._heirs(rels)
            wanted -= heirs(set(keys) - set(select_keys(keys, None, exclude)))
            #: the keys of the tables copied with their schema and no rows
            self.no_rows = frozenset(heirs(keys_without_rows(keys, no_rows)))
            self._forget_sequences_of(
                [r.oid for r in rels if table_key(r.nspname, r.relname) in self.no_rows]
            )
            self._lock_tables(
                [r for r in rels if table_key(r.nspname, r.relname) in wanted], lock_timeout
            )
            self._specs = self._read_tables(rels, wanted)
            self._selected = [s for s in self._specs if s.key in wanted]
            #: per table key, how its column rules read it
            self._redacted: dict[str, _Redacted] = {}
            #: what the redaction changed that a person should know (a writer logs it)
            self.redaction_warnings: list[str] = []
            #: per table key, its generated columns read as NULL: computed from a redacted
            #: column, their values would carry the original
            self.nulled: dict[str, set[str]] = {}
            if redaction is not None:
                self._redact(redaction)
            for spec in self._specs:
                if spec.estimated_rows < 0:
                    spec.estimated_rows = self._estimate(spec) if spec.key in wanted else 0
        except BaseException:
            self.close()
            raise

    def _heirs(self, rels: list[PgRelation]) -> Callable[[Iterable[str]], set[str]]:
        """A function giving the table keys it is given with their inheritance descendants."""
        key_of = {r.oid: table_key(r.nspname, r.relname) for r in rels}
        children: dict[str, list[str]] = {}
        for child, parent in self.fetch(_INHERITS):
            if child in key_of and parent in key_of:
                children.setdefault(key_of[parent], []).append(key_of[child])

        def heirs(named: Iterable[str]) -> set[str]:
            out, todo = set(), list(named)
            while todo:
                if (key := todo.pop()) not in out:
                    out.add(key)
                    todo.extend(children.get(key, ()))
            return out

        return heirs

    # -- redaction ------------------------------------------------------------------------

    def facts(self) -> dict[str, list[ColumnFacts]]:
        """What each column of every table (not only those copied) is, for the redaction's
        checks, by table key."""
        types = self._type_rows()
        key_of = {s.oid: s.key for s in self._specs}
        return {s.key: column_facts(s, types, key_of) for s in self._specs}

    @property
    def redacted(self) -> frozenset[str]:
        """The keys of the tables whose values a column rule replaces (their rows are read
        through a ``SELECT`` of the rules' expressions)."""
        return frozenset(self._redacted)

    def _redact(self, redaction: Redaction) -> None:
        """Check ``redaction``'s rules against the catalog (ExportError naming the key), make
        the transaction's key in the server, where it stays, then choose each redacted
        column's expression (:mod:`..redaction.postgres`)."""
        facts = self.facts()
        try:
            check(redaction.profile, facts)
        except RedactionError as e:
            raise ExportError(str(e)) from None
        parents: dict[int, list[int]] = {}
        for child, parent in self.fetch(_INHERITS):
            parents.setdefault(child, []).append(parent)
        by_oid = {s.oid: s for s in self._specs}

        def rule_of(spec: PostgresTable, column: str) -> Rule | None:
            """The column's own rule (``keep`` too), else the one of a table it inherits
            the column from: an inheritance child is a table of its own, whose rows a rule
            on the parent would otherwise leave as they are."""
            if (spec.key, column) in redaction.profile.columns:
                return redaction.column_rule(spec.key, column)
            for oid in parents.get(spec.oid, ()):
                parent = by_oid.get(oid)
                if parent is not None and any(c.attname == column for c in parent.columns):
                    if (rule := rule_of(parent, column)) is not None:
                        return rule
            return None

        rules = {
            spec.key: {
                i: rule
                for i, col in enumerate(spec.columns)
                if (rule := rule_of(spec, col.attname)) is not None
            }
            for spec in self._selected
            if spec.key not in self.no_rows
        }
        rules = {k: v for k, v in rules.items() if v}
        if not rules:
            return
        self.conn.execute(key_query())
        by_key = {s.key: s for s in self._selected}
        for key, by_index in rules.items():
            spec = by_key[key]
            self._redacted[key] = table = _Redacted()
            for i, rule in by_index.items():
                col = spec.columns[i]
                expr = rule_expr(rule, _column(col.attname), facts[key][i], col.formatted)
                plain = reads_value(rule) and not spec.casts[i]  # a built-in type
                common = self._common(spec, col.attname) if plain else None
                if common:
                    expr = common_values(
                        rule, _column(col.attname), facts[key][i], col.formatted, spec.oid, common
                    )
                elif reads_value(rule) and self._memoized(spec, expr):
                    alias = f"fbm_r{i}"
                    table.laterals.append(lateral(expr, alias))
                    expr = sql.Identifier(alias, "v")
                table.exprs[i] = expr
        self._null_generated(by_key, rules, facts)

    def _common(self, spec: PostgresTable, column: str) -> int | None:
        """How many most common values hold nearly all of ``column``'s rows, by its statistics
        (:func:`.redaction.postgres.common_values`); None where they do not, or there are none."""
        row = self.fetch(COMMON_QUERY, [spec.oid, column])
        return row[0][0] if row else None

    def _memoized(self, spec: PostgresTable, expr: sql.Composable) -> bool:
        """Whether the planner would keep ``expr``'s results by the column's value (a
        ``Memoize`` node, PostgreSQL 14 and later) were it computed in a LATERAL subquery:
        it does where the column's statistics say its values repeat (a status, a country, a
        blank filler), and the keyed hash is then computed once per value, not per row.
        Where they are all different it does not, and the plain expression is cheaper."""
        if self.server_version < 140000:
            return False
        query = sql.SQL("EXPLAIN (FORMAT JSON) SELECT fbm_r.v FROM {} AS fbm_t, {}").format(
            self._from(spec), lateral(expr, "fbm_r")
        )
        plan = self.fetch(query)[0][0]

        def memoize(node: dict[str, Any]) -> bool:
            return node.get("Node Type") == "Memoize" or any(map(memoize, node.get("Plans", ())))

        return memoize(plan[0]["Plan"])

    def _null_generated(
        self,
        by_key: dict[str, PostgresTable],
        rules: dict[str, dict[int, Rule]],
        facts: dict[str, list[ColumnFacts]],
    ) -> None:
        """Read as NULL (:attr:`nulled`) each stored generated column computed from a
        redacted one: the SQLite copies keep a generated column's value as it is."""
        by_oid = {by_key[k].oid: by_key[k] for k in rules}
        for rel, generated, input_ in self.fetch(_GENERATED_FROM, [list(by_oid)]):
            spec = by_oid[rel]
            redacted = {spec.columns[i].attname for i in rules[spec.key]}
            nulled = self.nulled.setdefault(spec.key, set())
            if input_ not in redacted or generated in nulled:
                continue
            i = next(n for n, c in enumerate(spec.columns) if c.attname == generated)
            self._redacted[spec.key].exprs[i] = rule_expr(
                Rule("null"), _column(generated), facts[spec.key][i], spec.columns[i].formatted
            )
            nulled.add(generated)
            self.redaction_warnings.append(
                f"generated column {shown(spec.key, 60)}.{shown(generated)} is computed from "
                f"the redacted column {shown(input_)}: the SQLite copy holds NULL in it, as it "
                "does not compute generated columns (a PostgreSQL restore does)"
            )
        self.nulled = {k: v for k, v in self.nulled.items() if v}

    # -- plumbing -------------------------------------------------------------------------

    def fetch(
        self,
        query: str | sql.Composable,
        params: Sequence[Any] | None = None,
        *,
        row_factory: RowFactory[Any] | None = None,
    ) -> list:
        """Rows of a query run inside the snapshot: tuples, or what ``row_factory`` (one of
        :mod:`psycopg.rows`) makes of them."""
        with self.conn.cursor(row_factory=row_factory) as cur:  # type: ignore[call-overload]
            cur.execute(query, params)
            return cur.fetchall()

    def _forget_sequences_of(self, oids: list[int]) -> None:
        """Leave the values of the sequences the tables ``oids`` own (serial, identity) out of
        :attr:`sequence_values`: the copy's start afresh."""
        for (seq,) in self.fetch(
            """SELECT d.objid FROM pg_catalog.pg_depend d
               WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                 AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                 AND d.deptype IN ('a', 'i') AND d.refobjid = ANY(%s)
                 -- but one a default of another table draws from: its rows keep their numbers
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend u
                     JOIN pg_catalog.pg_attrdef ad ON ad.oid = u.objid
                     WHERE u.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                       AND u.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                       AND u.refobjid = d.objid AND ad.adrelid <> ALL(%s))""",
            [oids, oids],
        ):
            self.sequence_values.pop(seq, None)

    def _lock_tables(self, rels: list[PgRelation], timeout: float | None) -> None:
        """Take ACCESS SHARE on every table to copy, as pg_dump does, so nobody can drop or
        alter one before its rows are read; wait at most ``timeout`` seconds for each. A
        table someone holds is first tried without waiting (in a savepoint: the failure must
        not end the snapshot's transaction), so :attr:`phase` hears who holds it before the
        wait begins. A table rewritten or emptied meanwhile (by whoever held it) looks empty
        to the snapshot: refused (but one copied without rows)."""
        self._lock_each(rels, timeout)
        copied = [r.oid for r in rels if table_key(r.nspname, r.relname) not in self.no_rows]
        for schema, name in self.fetch(_REWRITTEN, [copied]):
            raise ExportError(
                f"table {shown(table_key(schema, name), 100)} was rewritten (ALTER TABLE, "
                "CLUSTER, VACUUM FULL) or emptied (TRUNCATE) by another session after the "
                "backup began, so its rows "
                "are not in the backup's snapshot: make the backup again"
            )

    def _lock_each(self, rels: list[PgRelation], timeout: float | None) -> None:
        for rel in rels:
            lock = sql.SQL("LOCK TABLE {}.{} IN ACCESS SHARE MODE").format(
                sql.Identifier(rel.nspname), sql.Identifier(rel.relname)
            )
            try:
                if self.phase is not None:
                    self.conn.execute("SAVEPOINT fbm_lock")
                    try:
                        self.conn.execute(lock + sql.SQL(" NOWAIT"))
                    except psycopg.errors.LockNotAvailable:
                        self.conn.execute("ROLLBACK TO SAVEPOINT fbm_lock")
                        self.phase(self._waiting_for(rel))
                        self.conn.execute(lock)
                    self.conn.execute("RELEASE SAVEPOINT fbm_lock")
                else:
                    self.conn.execute(lock)
            except psycopg.errors.LockNotAvailable:
                raise ExportError(
                    f"table {shown(table_key(rel.nspname, rel.relname), 100)} is locked by "
                    f"another session: gave up waiting after {timeout:g} s"
                ) from None

    def _waiting_for(self, rel: PgRelation) -> str:
        """What the wait for ``rel``'s lock is, in words: "waiting for a lock on orders (held by
        pid 1234, 'idle in transaction' for 12 s)", naming the session that holds (or first
        asked for) the lock that stops ours. Its state is NULL where the role may not see
        other sessions' (without pg_read_all_stats): then the pid only."""
        self.conn.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")  # now, not at BEGIN
        holder = self.fetch(
            _TREE
            + """SELECT a.pid, a.state,
                      extract(epoch FROM clock_timestamp() - a.state_change)::int
               FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
                 AND l.relation IN (SELECT t.relid FROM t)
                 AND l.pid <> pg_catalog.pg_backend_pid()
               ORDER BY l.granted DESC, a.state_change LIMIT 1""",
            [[rel.oid]],
        )
        text = f"waiting for a lock on {shown(table_key(rel.nspname, rel.relname), 100)}"
        if holder:
            pid, state, seconds = holder[0]
            what = f", {shown(state)!r} for {seconds} s" if state and seconds is not None else ""
            text += f" (held by pid {pid}{what})"
        return text

    def info(self) -> SourceInfo:
        version = self.fetch("SELECT pg_catalog.current_setting('server_version')")[0][0]
        revision = None
        if self.fetch(  # Alembic's table, with its column: a failed query would end the snapshot
            """SELECT count(*) FROM pg_catalog.pg_attribute
               WHERE attrelid = pg_catalog.to_regclass('public.alembic_version')
               AND attname = 'version_num' AND NOT attisdropped"""
        )[0][0]:
            found = self.fetch("SELECT version_num::text FROM public.alembic_version ORDER BY 1")
            revision = ",".join(v for (v,) in found) or None
        return SourceInfo("postgresql", version, self.conn.info.dbname, revision)

    def interrupt(self) -> None:
        """Stop the query under way (from another thread: a cancel), and the reading of rows
        the server sent already (a small table's rows are all sent before the cancel comes,
        so it would stop nothing)."""
        self.cancelled = True
        self.conn.cancel_safe()

    def _go_on(self) -> None:
        if self.cancelled:
            raise ExportCancelled()

    def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if not self.conn.closed:
            try:
                if self.conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
                    self.conn.rollback()
            finally:
                self.conn.close()

    # -- tables ---------------------------------------------------------------------------

    def tables(self) -> list[PostgresTable]:
        return list(self._selected)

    def _read_tables(self, rels: list[PgRelation], wanted: set[str]) -> list[PostgresTable]:
        oids = [r.oid for r in rels]
        locked = [r.oid for r in rels if table_key(r.nspname, r.relname) in wanted]
        cols: dict[int, list[PgColumn]] = {o: [] for o in oids}
        for col in self.fetch(_COLUMNS, [locked, oids], row_factory=class_row(PgColumn)):
            cols[col.attrelid].append(col)
        cons: dict[int, list[PgConstraint]] = {o: [] for o in oids}
        for con in self.fetch(_CONSTRAINTS, [oids], row_factory=class_row(PgConstraint)):
            cons[con.conrelid].append(con)
        idx: dict[int, list[PgIndex]] = {o: [] for o in oids}
        for index in self.fetch(_INDEXES, [oids], row_factory=class_row(PgIndex)):
            idx[index.indrelid].append(index)
        key_of = {r.oid: table_key(r.nspname, r.relname) for r in rels}
        specs = []
        parents: dict[str, list[str]] = {}
        for rel in rels:
            casts = [self._select_expr(c.atttypid, c.atttypmod) for c in cols[rel.oid]]
            key = table_key(rel.nspname, rel.relname)
            parents[key] = [
                key_of[c.confrelid]
                for c in cons[rel.oid]
                if c.contype == "f" and c.confrelid in key_of
            ]
            # never analysed (None): estimated once locked (see _estimate)
            reltuples = -1 if rel.reltuples is None else rel.reltuples
            if key in self.no_rows:
                reltuples = 0
            specs.append(
                PostgresTable(
                    key=key,
                    name=rel.relname,
                    schema=rel.nspname,
                    load_tables=self._load_tables,
                    estimated_rows=int(reltuples),
                    oid=rel.oid,
                    relkind=rel.relkind,
                    qualified=sql.SQL(".").join(
                        [sql.Identifier(rel.nspname), sql.Identifier(rel.relname)]
                    ),
                    columns=cols[rel.oid],
                    constraints=cons[rel.oid],
                    indexes=idx[rel.oid],
                    casts=casts,
                    binary=all(
                        self._loaded_as(c.atttypid, cast) in BINARY_SAFE
                        for c, cast in zip(cols[rel.oid], casts, strict=True)
                    ),
                )
            )
        self._in_catalog_order = specs  # for the Tables, should a writer want them
        return parents_first(specs, parents)

    def _load_tables(self) -> dict[str, sa.Table]:
        """The ``Table`` of every table, by key, built on first use from the catalog facts
        read when the source opened."""
        if self._tables is None:
            # imported here, not at the top: it imports SQLAlchemy, which the exports that
            # never ask for a Table (the ``postgres`` format) must not load (0.2 s)
            from .postgres_catalog import build_tables

            self._tables = build_tables(
                self._in_catalog_order, self._type_rows(), self.host_metadata
            )
        return self._tables

    def _estimate(self, spec: PostgresTable) -> int:
        """Rows of a never-analysed table: counted when small, else guessed from its size.
        Both take the table's lock, so they run after :meth:`_lock_tables`."""
        size = self.fetch(
            """SELECT coalesce(sum(pg_catalog.pg_relation_size(t.relid)), 0)::bigint
               FROM pg_catalog.pg_partition_tree(%s) t""",
            [spec.oid],
        )[0][0]
        if size > COUNT_LIMIT:
            return int(size / 8192 * 50)
        return self.fetch(sql.SQL("SELECT count(*) FROM {}").format(self._from(spec)))[0][0]

    def _type_rows(self) -> dict[int, PgType]:
        if self._types is None:
            self._types = {t.oid: t for t in self.fetch(_TYPES, row_factory=class_row(PgType))}
        return self._types

    def _select_expr(self, typid: int, typmod: int) -> str:
        """How to select a column of this type so that psycopg can load it: ``""`` for the
        column itself, or ``"{}"`` plus a cast (domains to their base type, types psycopg does
        not know to text)."""
        types = self._type_rows()
        oid, _ = base_type(types, typid, typmod)
        typ = types[oid]
        if typ.is_array:
            eoid, _ = base_type(types, typ.typelem, typmod)
            elem = types[eoid]
            loadable = elem.nspname == "pg_catalog" and elem.typname in _LOADABLE
            if loadable and oid == typid and eoid == typ.typelem:
                return ""
            return "{}::" + (elem.formatted if loadable else "text") + "[]"
        if typ.typtype == "e" or typ.nspname != "pg_catalog" or typ.typname not in _LOADABLE:
            return "{}::text"
        return "" if oid == typid else "{}::" + typ.formatted

    def _loaded_as(self, typid: int, expr: str) -> str | None:
        """The ``pg_catalog`` type psycopg loads for a column of type ``typid`` selected by
        ``expr`` (:meth:`_select_expr`): its own, or text; None for other casts."""
        if not expr:
            return self._type_rows()[typid].typname
        return "text" if expr == "{}::text" else None

    # -- one value of a column, from its text ----------------------------------------------

    def type_names(self, spec: PostgresTable, index: int) -> list[str]:
        """The type of column ``index`` of ``spec`` as PostgreSQL writes it in a cast
        (``format_type``: ``integer``, ``character varying``, ``public.mood``), then, for a
        domain, each type under it down to the base type."""
        types = self._type_rows()
        oid = spec.columns[index].atttypid
        names = [types[oid].formatted]
        while types[oid].typtype == "d":
            oid = types[oid].typbasetype
            names.append(types[oid].formatted)
        return names

    def load_text(self, spec: PostgresTable, index: int, text: str) -> Any:
        """The value :meth:`row_batches` yields for column ``index`` of ``spec`` when it holds
        the value whose PostgreSQL text form (its type's output) is ``text``: parsed by the
        loader the column's rows are read with (an enum's label stays text), padded or rounded
        as the column's length or scale makes PostgreSQL store it. Runs no SQL. Raises
        ValueError when the loader refuses ``text``."""
        types = self._type_rows()
        col = spec.columns[index]
        cast = spec.casts[index]
        if not cast:
            oid = col.atttypid
        else:
            oid = next(t.oid for t in types.values() if t.formatted == cast[len("{}::") :])
        try:
            value = Transformer(self.conn).get_loader(oid, pq.Format.TEXT).load(text.encode())
            base, typmod = base_type(types, col.atttypid, col.atttypmod)
            name = types[base].typname
            if name == "bpchar" and typmod >= 4 and isinstance(value, str):
                value = value.ljust(typmod - 4)
            if name == "numeric" and typmod >= 4 and isinstance(value, Decimal):
                exponent = Decimal(1).scaleb(-((typmod - 4) & 0xFFFF))
                value = value.quantize(exponent, ROUND_HALF_UP) if value.is_finite() else value
        except (psycopg.Error, ValueError, ArithmeticError) as e:
            raise ValueError(str(e)) from e
        return value

    # -- data -----------------------------------------------------------------------------

    def select_list(self, spec: PostgresTable, *, copy: bool = False) -> list[sql.Composable]:
        """The SQL expression each column of ``spec`` is read by, in column order: the one
        place where the rows a writer asks for (:meth:`rows`, :meth:`row_batches`,
        :meth:`copy_out`) are chosen.

        ``copy``: for ``COPY ... TO STDOUT`` (the server writes each value's text itself):
        the columns a restore loads (generated ones left out), as they are. Else every
        column, cast where psycopg cannot load its type (:attr:`PostgresTable.casts`).

        The redaction's column rules are applied here (:mod:`..redaction.postgres`): a
        redacted column is read by its rule's expression, so the replacing runs in the
        server, inside the source's own query, and no original value reaches this process;
        :meth:`copy_query` then reads through ``COPY (SELECT ...) TO STDOUT``. A generated
        column computed from a redacted one (:attr:`nulled`) is read as NULL: the SQLite
        copies keep a generated column's values as they are.
        """
        redacted = self._redacted.get(spec.key)
        if redacted is None:
            if copy:
                return list(spec.copy_columns)
            return [
                sql.SQL(cast).format(sql.Identifier(c.attname))
                if cast
                else sql.Identifier(c.attname)
                for c, cast in zip(spec.columns, spec.casts, strict=True)
            ]
        # the table is read as fbm_t beside the LATERAL subqueries (:meth:`_read_from`)
        exprs = [redacted.exprs.get(i, _column(c.attname)) for i, c in enumerate(spec.columns)]
        if copy:
            return [e for e, c in zip(exprs, spec.columns, strict=True) if not c.attgenerated]
        return [
            sql.SQL(cast).format(e) if cast else e
            for e, cast in zip(exprs, spec.casts, strict=True)
        ]

    def _from(self, spec: PostgresTable) -> sql.Composable:
        only = sql.SQL("" if spec.relkind == "p" else "ONLY ")
        return only + spec.qualified

    def _read_from(self, spec: PostgresTable) -> sql.Composable:
        """The FROM of the query reading the rows :meth:`select_list` chooses: the table,
        and for a redacted one, named ``fbm_t``, its rules' LATERAL subqueries."""
        redacted = self._redacted.get(spec.key)
        if redacted is None:
            return self._from(spec)
        return sql.SQL(", ").join(
            [sql.SQL("{} AS fbm_t").format(self._from(spec)), *redacted.laterals]
        )

    def rows(self, spec: PostgresTable) -> Iterator[Sequence[Any]]:
        """The rows, streamed (see :meth:`row_batches`), values as psycopg loads them."""
        for batch in self.row_batches(spec):
            yield from batch

    def row_batches(
        self, spec: PostgresTable, size: int = ITERSIZE
    ) -> Iterator[list[Sequence[Any]]]:
        """The rows in lists of ``size``. The server sends them without waiting to be asked,
        in chunks (libpq 17 and later): half the time of a server-side cursor's FETCH per
        batch, which waits for the server and leaves it idle meanwhile. Closing this
        before the end cancels the query, which ends the snapshot's transaction in error:
        only a failed export stops early. Nothing for a table of :attr:`no_rows`."""
        if spec.key in self.no_rows:
            return
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(self.select_list(spec)), self._read_from(spec)
        )
        if pq.version() < 170000:  # no chunked rows: a server-side cursor, FETCH by FETCH
            with self.conn.cursor(name=f"fbm_rows_{spec.oid}") as cur:
                cur.execute(query)
                while batch := cur.fetchmany(size):
                    self._go_on()
                    yield batch
            return
        with self.conn.cursor() as cur:
            rows = cur.stream(query, size=size, binary=spec.binary)
            try:
                while batch := list(islice(rows, size)):
                    self._go_on()
                    yield batch
            finally:
                rows.close()

    def copy_query(self, spec: PostgresTable) -> sql.Composable:
        """``COPY ... TO STDOUT`` of the columns :meth:`select_list` gives for COPY: of the
        table's own columns where it can (the fastest), of a ``SELECT`` for a partitioned
        table (its partitions' rows) and for a table with a column rule (its expressions)."""
        columns = self.select_list(spec, copy=True)
        cols = sql.SQL(", ").join(columns)
        if spec.relkind == "p" or spec.key in self._redacted:
            return sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(cols, self._read_from(spec))
        if not columns:  # no columns, or only generated ones
            return sql.SQL("COPY {} TO STDOUT").format(spec.qualified)
        return sql.SQL("COPY {} ({}) TO STDOUT").format(spec.qualified, cols)

    def copy_out(self, spec: PostgresTable) -> Iterator[bytes | bytearray]:
        """The table's rows as ``COPY ... TO STDOUT`` text, in chunks of about :data:`CHUNK`
        bytes, each ending at a row boundary.

        This reads libpq directly (blocking ``PQgetCopyData``): twice as fast as iterating
        psycopg's ``Copy``, whose per-row cost dominates on narrow tables. The query runs in
        the snapshot's transaction like any other; a COPY left unfinished (the consumer gave
        up: close the generator) closes the connection, as the export has failed anyway.
        Nothing for a table of :attr:`no_rows`.
        """
        if spec.key in self.no_rows:
            return
        query = self.copy_query(spec).as_bytes(self.conn)
        pgconn = self.conn.pgconn
        done = False
        try:
            pgconn.send_query(query)  # raises psycopg.OperationalError itself
            result = pgconn.get_result()
            if result is None or result.status != pq.ExecStatus.COPY_OUT:
                message = result.error_message if result is not None else b""
                while pgconn.get_result() is not None:
                    pass
                raise _pq_error(message or pgconn.error_message)
            get = pgconn.get_copy_data
            buf = bytearray()
            while True:
                n, data = get(0)
                if n < 0:
                    break
                buf += data
                if len(buf) >= CHUNK:
                    self._go_on()
                    yield buf
                    buf = bytearray()
            if n == -2:
                raise _pq_error(pgconn.error_message)
            error = b""
            while (result := pgconn.get_result()) is not None:
                if result.status != pq.ExecStatus.COMMAND_OK:
                    error = result.error_message
            if error:
                raise _pq_error(error)
            done = True
            self._go_on()
            if buf:
                yield buf
        finally:
            if not done:
                self.conn.close()


@dataclass
class _Redacted:
    """How a table with column rules is read: each redacted column's expression, by index,
    and the LATERAL subqueries some of them read from (see :meth:`PostgresSource._memoized`)."""

    exprs: dict[int, sql.Composable] = field(default_factory=dict)
    laterals: list[sql.Composable] = field(default_factory=list)


def _column(name: str) -> sql.Identifier:
    """A column of a redacted table, as its query names the table: ``fbm_t``."""
    return sql.Identifier("fbm_t", name)


def _pq_error(message: bytes) -> psycopg.OperationalError:
    text = " ".join(message.decode("utf-8", "replace").split()) or "COPY failed"
    return psycopg.OperationalError(text)


__all__ = ["PostgresSource", "conninfo"]
