"""The PostgreSQL source: one ``REPEATABLE READ READ ONLY`` transaction, read with psycopg 3.

Everything (catalog and data) is read inside that one transaction, so the tables, the rows and
the schema all come from the same snapshot. The tables are described by SQLAlchemy ``Table``
objects built from ``pg_catalog`` directly (SQLAlchemy's own reflection would open its own
transactions): PostgreSQL types are mapped as in :data:`BASE_TYPES`, domains become their base
type, enums ``ENUM`` (read as ``str``), composite and unknown types ``TEXT`` (read as their text
form). Where the host app's ``metadata`` has the table, its column types win.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import pq, sql
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import URL

from .base import ExportError, TableSpec, select_keys, watch

#: rows fetched per round trip by :meth:`PostgresSource.rows`
ITERSIZE = 5000
#: bytes of COPY text gathered before :meth:`PostgresSource.copy_out` yields a chunk
CHUNK = 1 << 20
#: an un-analysed table (``reltuples = -1``) smaller than this is counted exactly
COUNT_LIMIT = 64 << 20

#: ``pg_catalog`` type name -> SQLAlchemy type (called with the column's typmod)
BASE_TYPES: dict[str, Any] = {
    "int2": lambda m: pg.SMALLINT(),
    "int4": lambda m: pg.INTEGER(),
    "int8": lambda m: pg.BIGINT(),
    "oid": lambda m: pg.OID(),
    "float4": lambda m: pg.REAL(),
    "float8": lambda m: pg.DOUBLE_PRECISION(),
    "numeric": lambda m: (
        pg.NUMERIC(((m - 4) >> 16) & 0xFFFF, (m - 4) & 0xFFFF) if m >= 4 else pg.NUMERIC()
    ),
    "money": lambda m: pg.MONEY(),
    "bool": lambda m: pg.BOOLEAN(),
    "text": lambda m: pg.TEXT(),
    "name": lambda m: pg.TEXT(),
    "citext": lambda m: pg.TEXT(),
    "varchar": lambda m: pg.VARCHAR(m - 4 if m >= 4 else None),
    "bpchar": lambda m: pg.CHAR(m - 4 if m >= 4 else None),
    "date": lambda m: pg.DATE(),
    "timestamp": lambda m: pg.TIMESTAMP(precision=m if m >= 0 else None),
    "timestamptz": lambda m: pg.TIMESTAMP(timezone=True, precision=m if m >= 0 else None),
    "time": lambda m: pg.TIME(precision=m if m >= 0 else None),
    "timetz": lambda m: pg.TIME(timezone=True, precision=m if m >= 0 else None),
    "interval": lambda m: pg.INTERVAL(),
    "bytea": lambda m: pg.BYTEA(),
    "json": lambda m: pg.JSON(),
    "jsonb": lambda m: pg.JSONB(),
    "uuid": lambda m: pg.UUID(),
    "tsvector": lambda m: pg.TSVECTOR(),
    "inet": lambda m: pg.INET(),
    "cidr": lambda m: pg.CIDR(),
    "macaddr": lambda m: pg.MACADDR(),
    "macaddr8": lambda m: pg.MACADDR8(),
    "bit": lambda m: pg.BIT(m if m > 0 else None),
    "varbit": lambda m: pg.BIT(m if m > 0 else None, varying=True),
    "int4range": lambda m: pg.INT4RANGE(),
    "int8range": lambda m: pg.INT8RANGE(),
    "numrange": lambda m: pg.NUMRANGE(),
    "daterange": lambda m: pg.DATERANGE(),
    "tsrange": lambda m: pg.TSRANGE(),
    "tstzrange": lambda m: pg.TSTZRANGE(),
}

#: types psycopg loads by itself; columns of any other type are selected as text
_LOADABLE = set(BASE_TYPES) - {"money", "name", "citext", "bit", "varbit"}

_TYPES = """
SELECT t.oid, t.typname, n.nspname, t.typtype, t.typelem, t.typbasetype, t.typtypmod,
       t.typcategory, pg_catalog.format_type(t.oid, NULL),
       CASE WHEN t.typtype = 'e' THEN ARRAY(
           SELECT e.enumlabel FROM pg_catalog.pg_enum e
           WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
"""

_TABLES = """
SELECT c.oid, n.nspname, c.relname, c.relkind,
       (SELECT CASE WHEN bool_or(p.reltuples < 0) THEN -1
                    ELSE sum(p.reltuples)::bigint END
        FROM pg_catalog.pg_class p WHERE p.relkind = 'r' AND (p.oid = c.oid
             OR p.oid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(c.oid) t)))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""

_COLUMNS = """
SELECT a.attrelid, a.attname, a.attnotnull, a.atttypid, a.atttypmod, a.attndims, a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS = """
SELECT con.conrelid, con.conname, con.contype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
             ORDER BY k.i),
       con.confrelid,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
             ORDER BY k.i),
       con.confupdtype, con.confdeltype, con.condeferrable, con.condeferred
FROM pg_catalog.pg_constraint con
WHERE con.conrelid = ANY(%s) AND con.contype IN ('p', 'u', 'f')
ORDER BY con.conrelid, con.conname
"""

_INDEXES = """
SELECT i.indrelid, c.relname, i.indisunique,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
             WHERE o <= i.indnkeyatts ORDER BY o)
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = ANY(%s) AND i.indexprs IS NULL AND i.indpred IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con WHERE con.conindid = i.indexrelid
                  AND con.conrelid = i.indrelid)
  AND 0 <> ALL (i.indkey::int2[])
ORDER BY i.indrelid, c.relname
"""

_FK_ACTIONS = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def conninfo(url: URL) -> dict[str, Any]:
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


def table_key(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


class _Lenient:
    """Dates and timestamps Python cannot hold (``infinity``, years before 1 or after 9999)
    are given as PostgreSQL's text instead of failing the export."""

    def load(self, data):  # type: ignore[no-untyped-def]
        try:
            return super().load(data)  # type: ignore[misc]
        except psycopg.DataError:
            return bytes(data).decode()


def _lenient_loaders(conn: psycopg.Connection) -> None:
    from psycopg.types import datetime as pdt

    for name, base in (
        ("date", pdt.DateLoader),
        ("timestamp", pdt.TimestampLoader),
        ("timestamptz", pdt.TimestamptzLoader),
    ):
        conn.adapters.register_loader(name, type(f"Lenient{base.__name__}", (_Lenient, base), {}))


class PostgresSource:
    """A PostgreSQL database opened on one consistent snapshot until :meth:`close`."""

    dialect = "postgresql"

    def __init__(
        self,
        url: URL,
        *,
        metadata: sa.MetaData | None = None,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        lock_timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.url = url
        self.host_metadata = metadata
        self.include, self.exclude = include, exclude
        self.conn = psycopg.connect(**conninfo(url))
        self._unwatch = watch(cancel, self.conn.cancel_safe) if cancel is not None else None
        try:
            _lenient_loaders(self.conn)
            # Session settings first (outside the snapshot), then the one transaction, begun
            # by hand: in autocommit mode psycopg sends no BEGIN of its own before ours.
            self.conn.autocommit = True
            self.conn.execute(
                "SET search_path = ''; SET DateStyle = ISO; SET IntervalStyle = postgres;"
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
                row = self.fetch(f"SELECT last_value, is_called FROM {name}")[0]
                self.sequence_values[oid] = (row[0], row[1])
            self._types: dict[int, tuple] | None = None
            self._specs = self._read_tables()
            wanted = set(select_keys([s.key for s in self._specs], include, exclude))
            self._selected = [s for s in self._specs if s.key in wanted]
            self._lock_tables(lock_timeout)
            for spec in self._specs:
                if spec.estimated_rows < 0:
                    spec.estimated_rows = self._estimate(spec) if spec.key in wanted else 0
        except BaseException:
            self.close()
            raise

    # -- plumbing -------------------------------------------------------------------------

    def fetch(self, query: str | sql.Composable, params: Sequence[Any] | None = None) -> list:
        """Rows of a query run inside the snapshot."""
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def _lock_tables(self, timeout: float | None) -> None:
        """Take ACCESS SHARE on every table to copy, as pg_dump does, so nobody can drop or
        alter one before its rows are read; wait at most ``timeout`` seconds for each."""
        for spec in self._selected:
            try:
                self.conn.execute(
                    sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(spec.extra["qualified"])
                )
            except psycopg.errors.LockNotAvailable:
                raise ExportError(
                    f"table {spec.key} is locked by another session: gave up waiting after "
                    f"{timeout:g} s"
                ) from None

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

    def tables(self) -> list[TableSpec]:
        return list(self._selected)

    def _read_tables(self) -> list[TableSpec]:
        rels = self.fetch(_TABLES)
        oids = [r[0] for r in rels]
        md = sa.MetaData()
        cols: dict[int, list] = {o: [] for o in oids}
        for row in self.fetch(_COLUMNS, [oids]):
            cols[row[0]].append(row)
        cons: dict[int, list] = {o: [] for o in oids}
        for row in self.fetch(_CONSTRAINTS, [oids]):
            cons[row[0]].append(row)
        idx: dict[int, list] = {o: [] for o in oids}
        for row in self.fetch(_INDEXES, [oids]):
            idx[row[0]].append(row)
        by_oid: dict[int, tuple[str | None, str]] = {
            r[0]: (None if r[1] == "public" else r[1], r[2]) for r in rels
        }
        specs = []
        for oid, schema, name, relkind, reltuples in rels:
            host = self._host_table(schema, name)
            columns, selects, copy_cols = [], [], []
            for _, attname, notnull, typid, typmod, ndims, generated in cols[oid]:
                t, expr = self._column_type(typid, typmod, ndims)
                if host is not None and attname in host.c:
                    t = host.c[attname].type.copy()
                columns.append(sa.Column(attname, t, nullable=not notnull))
                ident = sql.Identifier(attname)
                selects.append(sql.SQL(expr).format(ident) if expr else ident)
                if not generated:
                    copy_cols.append(ident)
            constraints: list[sa.schema.SchemaItem] = []
            for _, conname, contype, keys, fref, fkeys, upd, dele, defer, initdef in cons[oid]:
                if contype == "p":
                    constraints.append(sa.PrimaryKeyConstraint(*keys, name=conname))
                elif contype == "u":
                    constraints.append(sa.UniqueConstraint(*keys, name=conname))
                elif fref in by_oid:
                    rschema, rname = by_oid[fref]
                    prefix = f"{rschema}.{rname}" if rschema else rname
                    constraints.append(
                        sa.ForeignKeyConstraint(
                            keys,
                            [f"{prefix}.{c}" for c in fkeys],
                            name=conname,
                            onupdate=_FK_ACTIONS.get(upd),
                            ondelete=_FK_ACTIONS.get(dele),
                            deferrable=defer or None,
                            initially=("DEFERRED" if initdef else None) if defer else None,
                        )
                    )
            for _, iname, unique, keys in idx[oid]:
                constraints.append(sa.Index(iname, *keys, unique=unique))
            table = sa.Table(
                name, md, *columns, *constraints, schema=None if schema == "public" else schema
            )
            if reltuples is None:
                reltuples = -1  # never analysed: estimated once locked (see _estimate)
            specs.append(
                TableSpec(
                    key=table_key(schema, name),
                    name=name,
                    schema=schema,
                    table=table,
                    estimated_rows=int(reltuples),
                    extra={
                        "oid": oid,
                        "relkind": relkind,
                        "qualified": sql.SQL(".").join(
                            [sql.Identifier(schema), sql.Identifier(name)]
                        ),
                        "select": selects,
                        "copy_columns": copy_cols,
                    },
                )
            )
        return _parents_first(specs)

    def _estimate(self, spec: TableSpec) -> int:
        """Rows of a never-analysed table: counted when small, else guessed from its size.
        Both take the table's lock, so they run after :meth:`_lock_tables`."""
        size = self.fetch(
            """SELECT coalesce(sum(pg_catalog.pg_relation_size(t.relid)), 0)::bigint
               FROM pg_catalog.pg_partition_tree(%s) t""",
            [spec.extra["oid"]],
        )[0][0]
        if size > COUNT_LIMIT:
            return int(size / 8192 * 50)
        return self.fetch(sql.SQL("SELECT count(*) FROM {}").format(self._from(spec)))[0][0]

    def _host_table(self, schema: str, name: str) -> sa.Table | None:
        if self.host_metadata is None:
            return None
        tables = self.host_metadata.tables
        if schema == "public":
            table = tables.get(name)
            return table if table is not None else tables.get(f"public.{name}")
        return tables.get(f"{schema}.{name}")

    def _type_rows(self) -> dict[int, tuple]:
        if self._types is None:
            self._types = {r[0]: r for r in self.fetch(_TYPES)}
        return self._types

    def _column_type(self, typid: int, typmod: int, ndims: int) -> tuple[sa.types.TypeEngine, str]:
        """The SQLAlchemy type of a column and the select expression psycopg can load
        (``"{}"`` plus a cast, or ``""`` for the column itself)."""
        types = self._type_rows()
        oid, mod = typid, typmod
        while types[oid][3] == "d":  # domains: their base type
            oid, mod = types[oid][5], types[oid][6]
        row = types[oid]
        if row[7] == "A" and row[4]:  # arrays
            eoid, emod = row[4], mod
            while types[eoid][3] == "d":
                eoid, emod = types[eoid][5], types[eoid][6]
            item, _ = self._scalar_type(types[eoid], emod)
            erow = types[eoid]
            loadable = erow[2] == "pg_catalog" and erow[1] in _LOADABLE
            cast = (
                ""
                if (loadable and oid == typid and eoid == row[4])
                else ("{}::" + (erow[8] if loadable else "text") + "[]")
            )
            return pg.ARRAY(item, dimensions=ndims or None), cast
        t, loadable = self._scalar_type(row, mod)
        if not loadable:
            return t, "{}::text"
        return t, "" if oid == typid else "{}::" + row[8]

    @staticmethod
    def _scalar_type(row: tuple, mod: int) -> tuple[sa.types.TypeEngine, bool]:
        _, typname, nspname, typtype, *_ = row
        if typtype == "e":
            return pg.ENUM(
                *row[9],
                name=typname,
                create_type=False,
                schema=None if nspname == "public" else nspname,
            ), False
        if nspname == "pg_catalog" and typname in BASE_TYPES:
            return BASE_TYPES[typname](mod), typname in _LOADABLE
        if typname == "citext":
            return pg.TEXT(), False
        return pg.TEXT(), False

    # -- data -----------------------------------------------------------------------------

    def _from(self, spec: TableSpec) -> sql.Composable:
        only = sql.SQL("" if spec.extra["relkind"] == "p" else "ONLY ")
        return only + spec.extra["qualified"]

    def rows(self, spec: TableSpec) -> Iterator[Sequence[Any]]:
        """The rows, streamed from a server-side cursor, values as psycopg loads them."""
        for batch in self.row_batches(spec):
            yield from batch

    def row_batches(self, spec: TableSpec, size: int = ITERSIZE) -> Iterator[list[Sequence[Any]]]:
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(spec.extra["select"]), self._from(spec)
        )
        with self.conn.cursor(name=f"fbm_rows_{spec.extra['oid']}") as cur:
            cur.execute(query)
            while batch := cur.fetchmany(size):
                yield batch

    def copy_query(self, spec: TableSpec) -> sql.Composable:
        cols = sql.SQL(", ").join(spec.extra["copy_columns"])
        if spec.extra["relkind"] == "p":
            return sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(cols, self._from(spec))
        if not spec.extra["copy_columns"]:  # no columns, or only generated ones
            return sql.SQL("COPY {} TO STDOUT").format(spec.extra["qualified"])
        return sql.SQL("COPY {} ({}) TO STDOUT").format(spec.extra["qualified"], cols)

    def copy_out(self, spec: TableSpec) -> Iterator[bytes | bytearray]:
        """The table's rows as ``COPY ... TO STDOUT`` text, in chunks of about :data:`CHUNK`
        bytes, each ending at a row boundary.

        This reads libpq directly (blocking ``PQgetCopyData``): twice as fast as iterating
        psycopg's ``Copy``, whose per-row cost dominates on narrow tables. The query runs in
        the snapshot's transaction like any other; a COPY left unfinished (the consumer gave
        up: close the generator) closes the connection, as the export has failed anyway.
        """
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
            if buf:
                yield buf
        finally:
            if not done:
                self.conn.close()


def _pq_error(message: bytes) -> psycopg.OperationalError:
    text = " ".join(message.decode("utf-8", "replace").split()) or "COPY failed"
    return psycopg.OperationalError(text)


def _parents_first(specs: list[TableSpec]) -> list[TableSpec]:
    """Order specs so that referenced tables come before the tables referencing them
    (cycles are broken by key order)."""
    by_table = {s.table: s for s in specs}
    done: set[str] = set()
    out: list[TableSpec] = []
    visiting: set[str] = set()

    def visit(s: TableSpec) -> None:
        if s.key in done or s.key in visiting:
            return
        visiting.add(s.key)
        for fk in s.table.foreign_key_constraints:
            ref = fk.referred_table
            if ref is not s.table and ref in by_table:
                visit(by_table[ref])
        visiting.discard(s.key)
        done.add(s.key)
        out.append(s)

    for s in specs:
        visit(s)
    return out


__all__ = ["PostgresSource", "conninfo"]
