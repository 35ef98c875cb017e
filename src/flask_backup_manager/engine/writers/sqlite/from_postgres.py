"""How a table of another database (PostgreSQL) becomes an SQLite table: the one set of rules.

A column's SQLAlchemy type (from the host app's models where they describe the table, else
reflected from PostgreSQL) picks a row of :data:`RULES`: the declared type written in SQLite's
``CREATE TABLE`` and the converter that turns the Python value the source yields into the value
stored. The aim: an app whose models point at the copy reads back what it wrote, because every
value is stored exactly as SQLAlchemy's SQLite dialect stores it.

==========================  ====================  =============================================
source type (SQLAlchemy)    SQLite declared type  stored value
==========================  ====================  =============================================
Boolean                     BOOLEAN               0 / 1
Integer family, OID         INTEGER/BIGINT/...    int (a one-column integer primary key becomes
                                                  ``INTEGER PRIMARY KEY``, the rowid, so new
                                                  rows get ids as on PostgreSQL)
Float, REAL, DOUBLE         FLOAT/REAL/DOUBLE     float; NaN (SQLite cannot store it) -> NULL
                                                  (a NOT NULL column then loses its NOT NULL)
Numeric(p, s)               NUMERIC(p, s)         float, as SQLAlchemy's SQLite Numeric binds
                                                  it (REAL; it reads it back as
                                                  ``Decimal('%.{s}f' % value)``; TEXT would
                                                  break that reader, and SQLite's NUMERIC
                                                  affinity turns numeric text into REAL anyway);
                                                  a whole number that fits 64 bits as that
                                                  int (exact, as NUMERIC affinity stores an
                                                  integral REAL; ids past 2**53 stay distinct)
DateTime / TIMESTAMP[TZ]    DATETIME              'YYYY-MM-DD HH:MM:SS.ffffff'; aware values
                                                  converted to UTC first
Date                        DATE                  'YYYY-MM-DD'
Time / TIME[TZ]             TIME                  'HH:MM:SS.ffffff' (an offset is dropped, as
                                                  SQLAlchemy does)
Interval                    DATETIME              SQLAlchemy's Interval form: the epoch plus
                                                  the interval, '1970-01-02 00:00:03.000000'
Uuid / UUID                 CHAR(32)              32 hex digits, no dashes (SQLAlchemy's Uuid)
JSON / JSONB                JSON                  JSON text (a JSON ``null`` reads as SQL NULL
                                                  from psycopg and stays NULL)
ARRAY                       JSON                  JSON array text (numbers as JSON numbers,
                                                  dates/times ISO 8601, UUIDs and others text)
LargeBinary / BYTEA         BLOB                  bytes
Enum / ENUM                 VARCHAR(n)            the label, text
String, Text, CHAR          as declared           text
ranges                      TEXT                  PostgreSQL's text form: '[1,5)', 'empty'
anything else (INET, CIDR,  TEXT                  its text form (``str``)
MACADDR, MONEY, TSVECTOR,
BIT, composite, unknown)
==========================  ====================  =============================================

Where the host's models give a column a type, that type's own ``bind_processor`` for the SQLite
dialect does the storing (that is exactly how SQLAlchemy stores it). A ``TypeDecorator`` whose
implementation is the same on PostgreSQL and SQLite (JSON kept in a Text column, an encrypted
string) is stored as its implementation stores the database value, without running
``process_bind_param`` again; one whose implementation differs (the GUID recipe: UUID on
PostgreSQL, CHAR(32) elsewhere) gets its full processor, which is what converts between them.

Tables keep their key as name (``other_schema.t`` is a table named "other_schema.t"); primary
keys, NOT NULL, unique constraints, foreign keys (composite too) and plain column indexes are
kept, and the server defaults SQLite has an equivalent of (:mod:`.writers.sqlite.defaults`:
constants stored as the column's values are, the clock, random UUIDs; the others are listed
in the backup's log); checks and generated-column expressions are not (generated columns keep
their values as plain columns; one computed from a redacted column is NULL, and may be, as
its value would carry the original's).
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain, count
from operator import itemgetter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ...base import Tracker, ident, prefetch, shown
from ...model import ExportError
from ...sources.postgres import PostgresSource
from ...sources.postgres_model import PostgresTable
from ...sources.sqlite import remove_sidecars
from ..host_types import pickles, stored, stored_alike
from .defaults import NotCarried, host_default, postgres_default

Converter = Callable[[Any], Any]

#: rows per executemany (and per progress call)
BATCH_ROWS = 5000
#: rows per INSERT statement, within SQLite's oldest limit of 999 parameters a statement
ROWS_PER_INSERT = 100
MAX_PARAMETERS = 999

_SQLITE = sqlite_dialect.dialect()
_PG = pg.dialect()


def _utc_naive(v: datetime.datetime) -> datetime.datetime:
    if v.tzinfo is not None:
        v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return v


def _float(v: Any) -> Any:
    v = float(v)
    return None if math.isnan(v) else v


def _number(v: Any) -> Any:
    """A numeric value as SQLite's NUMERIC affinity keeps it: a whole number that fits 64
    bits as that integer (exact: a float would make two ids past 2**53 one, and a unique
    key fail), else a float."""
    if type(v) is decimal.Decimal and v.is_finite() and v == v.to_integral_value():
        n = int(v)
        if -(2**63) <= n < 2**63:
            return n
    return _float(v)


def _range_text(r: Any) -> str:
    """PostgreSQL's text form of a range, as ``range_out`` writes it: ``[1,5)``, ``empty``,
    ``["2005-05-24 22:54:33","2005-05-28 19:40:33")``."""
    if r.isempty:
        return "empty"
    lower = "" if r.lower is None else _bound_text(r.lower)
    upper = "" if r.upper is None else _bound_text(r.upper)
    return f"{r.bounds[0]}{lower},{upper}{r.bounds[1]}"


_BOUND_SPECIAL = frozenset('"\\()[],')


def _bound_text(v: Any) -> str:
    """A range bound as PostgreSQL writes it: its text (ISO dates, timestamps with the
    fraction trimmed and the offset as short as it goes), double-quoted when it is empty or
    holds a space or one of ``"\\()[],``."""
    text = _pg_scalar_text(v)
    if text and not any(c in _BOUND_SPECIAL or c.isspace() for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


def _pg_scalar_text(v: Any) -> str:
    if isinstance(v, decimal.Decimal):
        return format(v, "f") if v.is_finite() else str(v)
    if isinstance(v, datetime.datetime):
        text = f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        if v.microsecond:
            text += f".{v.microsecond:06d}".rstrip("0")
        offset = v.utcoffset()
        if offset is not None:
            seconds = int(offset.total_seconds())
            sign, seconds = ("-" if seconds < 0 else "+"), abs(seconds)
            text += f"{sign}{seconds // 3600:02d}"
            if seconds % 3600:
                text += f":{seconds % 3600 // 60:02d}"
                if seconds % 60:
                    text += f":{seconds % 60:02d}"
        return text
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.datetime | datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, bytes | memoryview):
        return bytes(v).hex()
    if hasattr(v, "isempty") and hasattr(v, "bounds"):
        return _range_text(v)
    return str(v)


def _json_text(v: Any) -> str:
    return json.dumps(v, default=_json_default, ensure_ascii=False)


def _processor(t: sa.types.TypeEngine) -> Converter | None:
    return t.dialect_impl(_SQLITE).bind_processor(_SQLITE)


def _keeping_text(convert: Converter | None) -> Converter | None:
    """``convert`` for a date or timestamp column, except that a ``str`` (the source gives
    PostgreSQL's text for ``infinity`` and years Python cannot hold) is stored as that text."""
    if convert is None:
        return None
    return lambda v: v if type(v) is str else convert(v)


def _then(first: Converter, second: Converter | None) -> Converter:
    if second is None:
        return first
    return lambda v: second(first(v))


@dataclass(frozen=True)
class Rule:
    """One row of the table above: which types it takes, what SQLite is told, how to store."""

    types: tuple[type, ...]
    declared: Callable[[sa.types.TypeEngine], str]
    convert: Callable[[sa.types.TypeEngine], Converter | None]


def _compiled(t: sa.types.TypeEngine, fallback: str) -> str:
    try:
        return t.compile(dialect=_SQLITE)
    except sa.exc.CompileError:
        return fallback


RULES: list[Rule] = [
    Rule((sa.Boolean,), lambda t: "BOOLEAN", lambda t: lambda v: 1 if v else 0),
    Rule((sa.Integer,), lambda t: _compiled(t, "INTEGER"), lambda t: None),
    Rule((pg.OID,), lambda t: "INTEGER", lambda t: None),
    Rule((sa.Float,), lambda t: _compiled(t, "REAL"), lambda t: _float),
    Rule((sa.Numeric,), lambda t: _compiled(t, "NUMERIC"), lambda t: _number),
    Rule(
        (sa.DateTime,),
        lambda t: "DATETIME",
        lambda t: _then(_utc_naive, _processor(sa.DateTime())),
    ),
    Rule((sa.Date,), lambda t: "DATE", lambda t: _processor(sa.Date())),
    Rule(
        (sa.Time,),
        lambda t: "TIME",
        lambda t: _then(lambda v: v.replace(tzinfo=None), _processor(sa.Time())),
    ),
    Rule(
        (sa.Interval, pg.INTERVAL),
        lambda t: "DATETIME",
        lambda t: _processor(sa.Interval()),
    ),
    Rule(
        (sa.Uuid,),
        lambda t: "CHAR(32)",
        lambda t: lambda v: (v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))).hex,
    ),
    Rule((sa.JSON,), lambda t: "JSON", lambda t: _json_text),
    Rule((sa.ARRAY,), lambda t: "JSON", lambda t: _json_text),
    Rule((sa.LargeBinary,), lambda t: "BLOB", lambda t: bytes),
    Rule((sa.Enum,), lambda t: _compiled(t, "TEXT"), lambda t: str),
    Rule((pg.ranges.AbstractRange,), lambda t: "TEXT", lambda t: _range_text),
    Rule((sa.String,), lambda t: _compiled(t, "TEXT"), lambda t: None),
]


def rule_for(t: sa.types.TypeEngine) -> Rule | None:
    return next((r for r in RULES if isinstance(t, r.types)), None)


def column_plan(t: sa.types.TypeEngine, *, from_host: bool) -> tuple[str, Converter | None]:
    """The declared SQLite type and the converter (None: store as it comes) of a column."""
    if from_host and isinstance(t, sa.types.TypeDecorator):
        declared = _compiled(t, "TEXT")
        if pickles(t, _SQLITE, _PG) or stored_alike(t, _SQLITE, _PG):
            # the same storage on both (bytes, text, numbers): the value goes as it is stored
            return declared, column_plan(stored(t, _SQLITE), from_host=True)[1]
        return declared, _processor(t)
    rule = rule_for(t)
    if rule is None:  # INET, MONEY, TSVECTOR, BIT, composites, unknown: their text
        return "TEXT", str
    if from_host and isinstance(t, sa.DateTime | sa.Time):  # the host's own storage format
        drop_tz = _utc_naive if isinstance(t, sa.DateTime) else lambda v: v.replace(tzinfo=None)
        return rule.declared(t), _then(drop_tz, _processor(t))
    if from_host and not isinstance(t, sa.Float | sa.Numeric):
        proc = _processor(t)
        if proc is not None or isinstance(t, sa.Integer | sa.String):
            return rule.declared(t), proc
    return rule.declared(t), rule.convert(t)


@dataclass
class TablePlan:
    """How one source table is created and filled in SQLite."""

    name: str
    #: the definitions of the ``CREATE TABLE``: each column's, then the constraints
    lines: list[str]
    indexes: list[str]
    converters: list[Converter | None]
    #: the defaults not carried, one line each for the backup's log
    lost: list[str] = field(default_factory=list)
    #: the NOT NULL float and numeric columns, by index: a NaN in one is NULL in SQLite
    nan_columns: list[int] = field(default_factory=list)
    #: the NOT NULL json and jsonb columns, by index: psycopg loads JSON's ``null`` as None,
    #: which in them can only be that, stored as the text ``null`` (as SQLAlchemy's JSON
    #: stores None), not as NULL
    json_nulls: list[int] = field(default_factory=list)

    def create(self, name: str | None = None) -> str:
        """The ``CREATE TABLE`` of the table (named ``name``, else its own)."""
        return f"CREATE TABLE {ident(name or self.name)} (\n  " + ",\n  ".join(self.lines) + "\n)"

    def allow_nulls(self, con: sqlite3.Connection, rows: list[Sequence[Any]]) -> list[int]:
        """Let the :attr:`nan_columns` that ``rows`` (converted) hold a NULL in (from a NaN)
        be NULL: the table is made anew without their NOT NULL, with the rows inserted so
        far (SQLite cannot drop a NOT NULL in place). Returns their indexes."""
        found = [i for i in self.nan_columns if None in map(itemgetter(i), rows)]
        if not found:
            return []
        for i in found:
            self.nan_columns.remove(i)
            self.lines[i] = self.lines[i].removesuffix(" NOT NULL")
        moved = next(  # a name no table has (SQLite's names ignore ASCII case)
            name
            for name in (f"{self.name}.moved{n}" for n in count())
            if not con.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ? COLLATE NOCASE", (name,)
            ).fetchone()
        )
        con.execute(self.create(moved))
        con.execute(f"INSERT INTO {ident(moved)} SELECT * FROM {ident(self.name)}")
        con.execute(f"DROP TABLE {ident(self.name)}")
        con.execute(f"ALTER TABLE {ident(moved)} RENAME TO {ident(self.name)}")
        return found

    def insert_sql(self, rows: int) -> str:
        """``INSERT INTO t VALUES (?, ?), (?, ?)``: ``rows`` rows of parameters."""
        row = "(" + ", ".join("?" * len(self.converters)) + ")"
        return f"INSERT INTO {ident(self.name)} VALUES " + ", ".join([row] * rows)

    def insert_rows(self, con: sqlite3.Connection, rows: list[Sequence[Any]]) -> None:
        """Insert ``rows`` by statements of up to :data:`ROWS_PER_INSERT` rows each: half
        the time of a statement per row, whose cost is mostly the statement's own."""
        per = max(1, min(ROWS_PER_INSERT, MAX_PARAMETERS // max(1, len(self.converters))))
        full = len(rows) - len(rows) % per
        if full:
            flat = chain.from_iterable
            con.executemany(
                self.insert_sql(per), (list(flat(rows[i : i + per])) for i in range(0, full, per))
            )
        if full < len(rows):
            con.executemany(self.insert_sql(1), rows[full:])

    def row_converter(self) -> Callable[[Sequence[Any]], Sequence[Any]] | None:
        """A function converting one row, or None when every value goes as it comes (the
        common case: integers and text): the rows then go to SQLite untouched."""
        nulls = set(self.json_nulls)
        active = [(i, f) for i, f in enumerate(self.converters) if f is not None or i in nulls]
        if not active:
            return None

        def convert(row: Sequence[Any]) -> list[Any]:
            out = list(row)
            for i, f in active:
                if out[i] is None:
                    if i in nulls:
                        out[i] = "null"
                elif f is not None:
                    out[i] = f(out[i])
            return out

        return convert


def table_plan(source: PostgresSource, spec: PostgresTable, names: dict[str, str]) -> TablePlan:
    """``names`` maps every exported table's SQLAlchemy ``fullname`` to its SQLite name."""
    table = spec.table
    if not table.columns:
        raise ExportError(
            f"table {spec.key} has no columns, which SQLite cannot hold: leave it out (exclude)"
        )
    host_table = _host_table(source.host_metadata, spec)
    pk = list(table.primary_key.columns)
    rowid_pk = len(pk) == 1 and isinstance(pk[0].type, sa.Integer)
    lines, converters, lost, nan_columns, json_nulls = [], [], [], [], []
    for i, col in enumerate(table.columns):
        from_host = host_table is not None and col.name in host_table.c
        declared, conv = column_plan(col.type, from_host=from_host)
        dated = isinstance(stored(col.type, _PG), sa.Date | sa.DateTime)
        converters.append(_keeping_text(conv) if dated else conv)  # a default is not kept so
        rowid = rowid_pk and col is pk[0]
        try:
            default = host_default(host_table.c[col.name]) if from_host else None
            if default is None:
                default = postgres_default(source, spec, i, conv, rowid=rowid)
        except NotCarried as e:
            default = None
            lost.append(str(e))
        line = f"{ident(col.name)} {'INTEGER PRIMARY KEY' if rowid else declared}"
        if default is not None:
            line += f" DEFAULT {default}"
        # a generated column the redaction reads as NULL (computed from a redacted one)
        nullable = col.nullable or col.name in source.nulled.get(spec.key, ())
        lines.append(line + ("" if nullable or rowid else " NOT NULL"))
        if conv in (_float, _number) and not (col.nullable or rowid):
            nan_columns.append(i)
        if source.type_names(spec, i)[-1] in ("json", "jsonb") and not col.nullable:
            json_nulls.append(i)
    if pk and not rowid_pk:
        lines.append(f"PRIMARY KEY ({', '.join(ident(c.name) for c in pk)})")
    for uc in sorted(
        (c for c in table.constraints if isinstance(c, sa.UniqueConstraint)),
        key=lambda c: c.name or "",
    ):
        lines.append(f"UNIQUE ({', '.join(ident(c.name) for c in uc.columns)})")
    for fk in sorted(table.foreign_key_constraints, key=lambda c: c.name or ""):
        target = fk.referred_table.fullname
        if target not in names:
            continue  # the parent table is not exported
        cols = ", ".join(ident(e.parent.name) for e in fk.elements)
        refs = ", ".join(ident(e.column.name) for e in fk.elements)
        clause = f"FOREIGN KEY ({cols}) REFERENCES {ident(names[target])} ({refs})"
        for action, value in (("ON DELETE", fk.ondelete), ("ON UPDATE", fk.onupdate)):
            if value and value.upper() in ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"):
                clause += f" {action} {value.upper()}"
        if fk.deferrable:
            clause += " DEFERRABLE INITIALLY DEFERRED" if fk.initially else " DEFERRABLE"
        lines.append(clause)
    name = names[table.fullname]
    indexes = []
    for ix in sorted(table.indexes, key=lambda i: i.name or ""):
        cols = [c for c in ix.expressions if isinstance(c, sa.Column)]
        if not cols or len(cols) != len(ix.expressions):
            continue  # expression indexes: PostgreSQL SQL that SQLite may not speak
        unique = "UNIQUE " if ix.unique else ""
        ix_name = ident(f"{name}.{ix.name}" if spec.schema not in (None, "public") else ix.name)
        indexes.append(
            f"CREATE {unique}INDEX {ix_name} ON {ident(name)} "
            f"({', '.join(ident(c.name) for c in cols)})"
        )
    return TablePlan(
        name=name,
        lines=lines,
        indexes=indexes,
        converters=converters,
        lost=lost,
        nan_columns=nan_columns,
        json_nulls=json_nulls,
    )


def _host_table(host: sa.MetaData | None, spec: PostgresTable) -> sa.Table | None:
    if host is None:
        return None
    if spec.schema in (None, "public"):
        found = host.tables.get(spec.name)
        return found if found is not None else host.tables.get(f"public.{spec.name}")
    return host.tables.get(f"{spec.schema}.{spec.name}")


def write_db(source: PostgresSource, path: Path, tracker: Tracker) -> None:
    """Write a ready-to-use SQLite database file to ``path`` (an empty private temp file):
    create the SQLite tables from the specs and fill them (one transaction, no journal: the
    file is private until export() renames it). Indexes are made after the rows."""
    specs = source.tables()
    names = {s.table.fullname: s.key for s in specs}
    plans = [table_plan(source, s, names) for s in specs]
    for plan in plans:
        for message in plan.lost:
            tracker.warn(message)
    for message in source.redaction_warnings:
        tracker.warn(message)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("BEGIN")
        for plan in plans:
            con.execute(plan.create())
        for spec, plan in zip(specs, plans, strict=True):
            tracker.start(spec)
            convert = plan.row_converter()
            for batch in prefetch(source.row_batches(spec, BATCH_ROWS)):
                rows = batch if convert is None else list(map(convert, batch))
                for i in plan.allow_nulls(con, rows) if plan.nan_columns else ():
                    tracker.warn(
                        f"column {shown(spec.key, 60)}.{shown(spec.columns[i].attname)} holds "
                        "NaN, which SQLite cannot store: it is NULL there, and the column may "
                        "be NULL in the copy"
                    )
                plan.insert_rows(con, rows)
                tracker.rows(len(batch))
            tracker.finish(spec)
        tracker.phase("creating indexes")
        for plan in plans:
            for sql in plan.indexes:
                con.execute(sql)
        con.execute("COMMIT")
        con.execute("PRAGMA journal_mode=DELETE")
    finally:
        con.close()
    remove_sidecars(path)


__all__ = ["RULES", "Rule", "TablePlan", "column_plan", "table_plan", "write_db"]
