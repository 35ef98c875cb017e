"""The SQLAlchemy ``Table`` objects of a PostgreSQL source, built from the ``pg_catalog`` rows the
source read in its snapshot (SQLAlchemy's own reflection would open transactions of its own).
Only the writers that need them load this module, and SQLAlchemy with it.

PostgreSQL types are mapped as in :data:`BASE_TYPES`, domains become their base type, enums
``ENUM`` (read as ``str``), composite and unknown types ``TEXT`` (read as their text form). Where
the host app's ``metadata`` has the table, its column types win.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from .postgres import base_type, table_key

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
    rels: list[tuple],
    cols: dict[int, list],
    cons: dict[int, list],
    idx: dict[int, list],
    types: dict[int, tuple],
    metadata: sa.MetaData | None,
) -> dict[str, sa.Table]:
    """A ``Table`` per row of ``rels``, by table key. ``cols``, ``cons`` and ``idx`` hold the
    rows of the source's column, constraint and index queries by table oid, ``types`` its
    ``pg_type`` rows by oid."""
    md = sa.MetaData()
    by_oid: dict[int, tuple[str | None, str]] = {
        r[0]: (None if r[1] == "public" else r[1], r[2]) for r in rels
    }
    tables = {}
    for oid, schema, name, _, _ in rels:
        host = _host_table(metadata, schema, name)
        columns = []
        for _, attname, notnull, typid, typmod, ndims, _ in cols[oid]:
            if host is not None and attname in host.c:
                t = host.c[attname].type.copy()
            else:
                t = _column_type(types, typid, typmod, ndims)
            columns.append(sa.Column(attname, t, nullable=not notnull))
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
        tables[table_key(schema, name)] = sa.Table(
            name, md, *columns, *constraints, schema=None if schema == "public" else schema
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
    types: dict[int, tuple], typid: int, typmod: int, ndims: int
) -> sa.types.TypeEngine:
    oid, mod = base_type(types, typid, typmod)
    row = types[oid]
    if row[7] == "A" and row[4]:  # arrays
        eoid, emod = base_type(types, row[4], mod)
        return pg.ARRAY(_scalar_type(types[eoid], emod), dimensions=ndims or None)
    return _scalar_type(row, mod)


def _scalar_type(row: tuple, mod: int) -> sa.types.TypeEngine:
    _, typname, nspname, typtype, *_ = row
    if typtype == "e":
        return pg.ENUM(
            *row[9],
            name=typname,
            create_type=False,
            schema=None if nspname == "public" else nspname,
        )
    if nspname == "pg_catalog" and typname in BASE_TYPES:
        return BASE_TYPES[typname](mod)
    return pg.TEXT()


__all__ = ["BASE_TYPES", "build_tables"]
