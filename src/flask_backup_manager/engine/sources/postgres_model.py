"""The typed facts the PostgreSQL source reads from ``pg_catalog`` and hands its writers: one
dataclass per catalog query of :mod:`.sources.postgres` (read with psycopg's ``class_row``, so
each field is named after the column it comes from), and :class:`PostgresTable`, the
:class:`~..model.TableSpec` of a PostgreSQL table. Imports neither SQLAlchemy nor the source,
so both the source and :mod:`.sources.postgres_catalog` build on it."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from ..model import TableSpec


@dataclass(frozen=True)
class PgType:
    """A row of ``pg_type``."""

    oid: int
    typname: str
    nspname: str
    typtype: str  # b base, c composite, d domain, e enum, r range, m multirange, p pseudo
    typelem: int  # an array's element type (0 for others)
    typbasetype: int  # a domain's base type
    typtypmod: int  # a domain's typmod
    typcategory: str  # "A" for arrays
    formatted: str  # format_type(oid, NULL)
    labels: list[str] | None  # an enum's labels, in order

    @property
    def is_array(self) -> bool:
        return self.typcategory == "A" and bool(self.typelem)


@dataclass(frozen=True)
class PgColumn:
    """A column (``pg_attribute``) of a table."""

    attrelid: int
    attname: str
    attnotnull: bool
    atttypid: int
    atttypmod: int
    attndims: int
    attgenerated: str  # "" or "s" (stored)
    attidentity: str  # "" or "a" (ALWAYS) / "d" (BY DEFAULT)
    #: the default expression as PostgreSQL prints it (``pg_get_expr``; search_path empty,
    #: so names outside pg_catalog are schema-qualified), None without one (customer text)
    default_expr: str | None


@dataclass(frozen=True)
class PgConstraint:
    """A primary key, unique or foreign key constraint of a table (``pg_constraint``)."""

    conrelid: int
    conname: str
    contype: str  # p, u or f
    keys: list[str]
    confrelid: int  # the table a foreign key references
    fkeys: list[str]
    confupdtype: str
    confdeltype: str
    condeferrable: bool
    condeferred: bool


@dataclass(frozen=True)
class PgIndex:
    """A plain index on columns (not one backing a constraint) of a table."""

    indrelid: int
    relname: str
    indisunique: bool
    keys: list[str]


@dataclass(frozen=True)
class PgRelation:
    """A table (``r``) or partitioned table (``p``) of the source."""

    oid: int
    nspname: str
    relname: str
    relkind: str
    reltuples: int | None  # None: never analysed


@dataclass(kw_only=True)
class PostgresTable(TableSpec):
    """A PostgreSQL table as its writers see it: the catalog facts read in the source's
    snapshot. How its rows are read is the source's (``PostgresSource.select_list``)."""

    oid: int
    relkind: str
    #: ``schema.name``, quoted
    qualified: sql.Composable
    columns: list[PgColumn] = field(default_factory=list)
    constraints: list[PgConstraint] = field(default_factory=list)
    indexes: list[PgIndex] = field(default_factory=list)
    #: per column, ``""`` to select it as it is or ``"{}::type"`` to cast it so that psycopg
    #: can load it (domains to their base type, types psycopg does not know to text)
    casts: list[str] = field(default_factory=list)
    #: rows read in binary: less for psycopg to parse (every column loads the same value)
    binary: bool = False

    @property
    def copy_columns(self) -> list[sql.Identifier]:
        """The columns a restore loads, in order: all but the generated ones."""
        return [sql.Identifier(c.attname) for c in self.columns if not c.attgenerated]


def table_key(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


def base_type(types: dict[int, PgType], oid: int, typmod: int) -> tuple[int, int]:
    """The type and typmod a column of type ``oid`` holds: a domain's base type, else ``oid``."""
    while types[oid].typtype == "d":
        oid, typmod = types[oid].typbasetype, types[oid].typtypmod
    return oid, typmod


__all__ = [
    "PgColumn",
    "PgConstraint",
    "PgIndex",
    "PgRelation",
    "PgType",
    "PostgresTable",
    "base_type",
    "table_key",
]
