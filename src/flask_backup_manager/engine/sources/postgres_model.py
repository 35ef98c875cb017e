"""The typed facts the PostgreSQL source reads from ``pg_catalog`` and hands its writers: one
dataclass per catalog query of :mod:`.sources.postgres` (read with psycopg's ``class_row``, so
each field is named after the column it comes from), and :class:`PostgresTable`, the
:class:`~..model.TableSpec` of a PostgreSQL table. Imports neither SQLAlchemy nor the source,
so both the source and :mod:`.sources.postgres_catalog` build on it."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from ..model import TableSpec
from ..redaction import ColumnFacts


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
    #: the type as PostgreSQL writes it in a cast, typmod included (``format_type``:
    #: ``character(84)``, ``public.mood``): what a redacted value is cast to
    formatted: str
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


#: the redaction kind of a ``pg_catalog`` base type (:data:`..redaction.KINDS`), and the
#: bytes of an integer one
KINDS: dict[str, tuple[str, int | None]] = {
    "text": ("text", None),
    "varchar": ("text", None),
    "bpchar": ("text", None),
    "int2": ("integer", 2),
    "int4": ("integer", 4),
    "int8": ("integer", 8),
    "float4": ("float", None),
    "float8": ("float", None),
    "numeric": ("numeric", None),
    "bool": ("boolean", None),
    "bytea": ("bytes", None),
    "uuid": ("uuid", None),
    "date": ("date", None),
    "timestamp": ("datetime", None),
    "timestamptz": ("datetime", None),
    "time": ("time", None),
    "timetz": ("time", None),
    "json": ("json", None),
    "jsonb": ("json", None),
}


def column_facts(
    spec: PostgresTable, types: dict[int, PgType], key_of: dict[int, str]
) -> list[ColumnFacts]:
    """What a redaction rule is checked against, for each column of ``spec``: the kind of its
    base type (a domain's), its length (``varchar(n)``, ``char(n)``) or bytes (``int2/4/8``),
    NOT NULL, the column its single-column foreign key references (``key_of``: table keys by
    oid), whether it alone is a primary key or unique (a constraint or a plain unique index),
    and whether it is generated."""
    unique = {c.keys[0] for c in spec.constraints if c.contype in "pu" and len(c.keys) == 1}
    unique |= {i.keys[0] for i in spec.indexes if i.indisunique and len(i.keys) == 1}
    refs = {
        c.keys[0]: (key_of[c.confrelid], c.fkeys[0])
        for c in spec.constraints
        if c.contype == "f" and len(c.keys) == 1 and c.confrelid in key_of
    }
    out = []
    for col in spec.columns:
        oid, typmod = base_type(types, col.atttypid, col.atttypmod)
        typ = types[oid]
        kind, size = ("other", None)
        if typ.nspname == "pg_catalog" and not typ.is_array and col.attndims == 0:
            kind, size = KINDS.get(typ.typname, ("other", None))
            if typ.typname in ("varchar", "bpchar") and typmod >= 4:
                size = typmod - 4
            if typ.typname == "bpchar" and typmod < 4:  # a bare bpchar: no length
                size = None
        out.append(
            ColumnFacts(
                spec.key,
                col.attname,
                kind,
                size,
                nullable=not col.attnotnull,
                references=refs.get(col.attname),
                unique=col.attname in unique,
                generated=bool(col.attgenerated),
            )
        )
    return out


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
    "column_facts",
    "table_key",
]
