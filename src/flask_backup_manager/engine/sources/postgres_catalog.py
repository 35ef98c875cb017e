"""The SQLAlchemy ``Table`` objects of a PostgreSQL source, built from the ``pg_catalog`` facts
the source read in its snapshot (:mod:`.sources.postgres_model`; SQLAlchemy's own reflection
would open transactions of its own). Only the writers that need them load this module, and
SQLAlchemy with it.

PostgreSQL types are mapped as in :data:`BASE_TYPES`, domains become their base type, enums
``ENUM`` (read as ``str``), composite and unknown types ``TEXT`` (read as their text form). Where
the host app's ``metadata`` has the table, its column types win.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from .postgres_model import PgType, PostgresTable, base_type

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

_FK_ACTIONS = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def build_tables(
    specs: list[PostgresTable], types: dict[int, PgType], metadata: sa.MetaData | None
) -> dict[str, sa.Table]:
    """A ``Table`` per table of ``specs`` (from its columns, constraints and indexes), by table
    key; ``types``: the source's ``pg_type`` rows by oid."""
    md = sa.MetaData()
    by_oid = {s.oid: s for s in specs}
    tables = {}
    for spec in specs:
        host = _host_table(metadata, spec.schema, spec.name)
        columns = []
        for col in spec.columns:
            if host is not None and col.attname in host.c:
                t = host.c[col.attname].type.copy()
            else:
                t = _column_type(types, col.atttypid, col.atttypmod, col.attndims)
            columns.append(sa.Column(col.attname, t, nullable=not col.attnotnull))
        constraints: list[sa.schema.SchemaItem] = []
        for con in spec.constraints:
            if con.contype == "p":
                constraints.append(sa.PrimaryKeyConstraint(*con.keys, name=con.conname))
            elif con.contype == "u":
                constraints.append(sa.UniqueConstraint(*con.keys, name=con.conname))
            elif con.confrelid in by_oid:
                ref = by_oid[con.confrelid]
                prefix = ref.name if ref.schema == "public" else f"{ref.schema}.{ref.name}"
                constraints.append(
                    sa.ForeignKeyConstraint(
                        con.keys,
                        [f"{prefix}.{c}" for c in con.fkeys],
                        name=con.conname,
                        onupdate=_FK_ACTIONS.get(con.confupdtype),
                        ondelete=_FK_ACTIONS.get(con.confdeltype),
                        deferrable=con.condeferrable or None,
                        initially=(
                            ("DEFERRED" if con.condeferred else None) if con.condeferrable else None
                        ),
                    )
                )
        for index in spec.indexes:
            constraints.append(sa.Index(index.relname, *index.keys, unique=index.indisunique))
        tables[spec.key] = sa.Table(
            spec.name,
            md,
            *columns,
            *constraints,
            schema=None if spec.schema == "public" else spec.schema,
        )
    return tables


def _host_table(metadata: sa.MetaData | None, schema: str, name: str) -> sa.Table | None:
    if metadata is None:
        return None
    tables = metadata.tables
    if schema == "public":
        table = tables.get(name)
        return table if table is not None else tables.get(f"public.{name}")
    return tables.get(f"{schema}.{name}")


def _column_type(
    types: dict[int, PgType], typid: int, typmod: int, ndims: int
) -> sa.types.TypeEngine:
    oid, mod = base_type(types, typid, typmod)
    typ = types[oid]
    if typ.is_array:
        eoid, emod = base_type(types, typ.typelem, mod)
        return pg.ARRAY(_scalar_type(types[eoid], emod), dimensions=ndims or None)
    return _scalar_type(typ, mod)


def _scalar_type(typ: PgType, mod: int) -> sa.types.TypeEngine:
    if typ.typtype == "e":
        return pg.ENUM(
            *(typ.labels or ()),
            name=typ.typname,
            create_type=False,
            schema=None if typ.nspname == "public" else typ.nspname,
        )
    if typ.nspname == "pg_catalog" and typ.typname in BASE_TYPES:
        return BASE_TYPES[typ.typname](mod)
    return pg.TEXT()


__all__ = ["BASE_TYPES", "build_tables"]
