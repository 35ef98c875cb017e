"""The facts that cross the engine's module boundaries: formats, errors, the table descriptions a
source hands its writers, and the progress a writer reports. Imports nothing of the engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlalchemy as sa


#: The one psql command a ``postgres`` file is made and checked for: the README, the format's
#: description, the file's header and its superuser guard's hint all say it from here.
PSQL_RESTORE = "psql -X -v ON_ERROR_STOP=1 --single-transaction"
#: The sqlite3 shell's, for the ``sqlite3`` format.
SQLITE_RESTORE = "sqlite3 -safe"


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    extension: str
    gzipped: bool

    @property
    def mimetype(self) -> str:
        return "application/gzip" if self.gzipped else "application/vnd.sqlite3"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "sqlite3",
            "SQL text for SQLite, gzipped: restore with "
            "`python -m flask_backup_manager restore FILE --target sqlite:///new.db` "
            f"or `gunzip -c FILE | {SQLITE_RESTORE} new.db`.",
            ".sqlite3.sql.gz",
            True,
        ),
        Format(
            "postgres",
            "SQL text for PostgreSQL, gzipped: restore as an ordinary role with "
            "`python -m flask_backup_manager restore FILE --target postgresql:///newdb` "
            f"or `gunzip -c FILE | {PSQL_RESTORE} -d newdb`.",
            ".postgres.sql.gz",
            True,
        ),
        Format(
            "sqlite3_db",
            "A ready-to-use SQLite database file: start the app on it, "
            f"or open it with `{SQLITE_RESTORE} FILE`.",
            ".sqlite3",
            False,
        ),
    )
}


class ExportError(Exception):
    """An export failed; the message is one line meant for a person (no secrets in it)."""


class ExportCancelled(Exception):
    """Raised by a progress callback to stop an export; passes through ``export()`` unchanged."""


@dataclass
class TableSpec:
    """One table of the source, as the writers see it.

    ``key`` is the name users pass to include/exclude: ``name`` for SQLite's ``main`` and
    PostgreSQL's ``public`` schema, ``schema.name`` elsewhere. ``table`` is a SQLAlchemy
    ``Table`` (columns, primary key, foreign keys, unique constraints, indexes) reflected from
    the source, with column types taken from the host's models where they describe the table.
    It is built on first use, by ``load_tables`` (the source's: it builds them all, by key), so
    that the exports that never ask for it (SQLite to SQLite, PostgreSQL to ``postgres``) never
    import SQLAlchemy, a good part of their run on small databases.
    """

    key: str
    name: str
    schema: str | None
    load_tables: Callable[[], Mapping[str, sa.Table]] = field(repr=False)
    estimated_rows: int = 0

    @property
    def table(self) -> sa.Table:
        return self.load_tables()[self.key]


@dataclass(frozen=True)
class SourceInfo:
    """What the manifest says of the database a copy was made from (never its host, user or
    password)."""

    dialect: str  #: ``postgresql`` or ``sqlite``
    server_version: str  #: PostgreSQL's ``server_version`` (``16.4``), or SQLite's library's
    database: str  #: the database's name (PostgreSQL), or the file's name without its folder
    #: Alembic's ``alembic_version.version_num`` (joined by ``,`` when several), if it has one
    schema_revision: str | None = None


@dataclass(frozen=True)
class Verification:
    """What loading the file the way the vendor will showed (:mod:`.verify`)."""

    #: the file was loaded into a scratch target (False: only read through, see ``how``)
    loaded: bool
    #: how, in words: "opened", "loaded into a temporary SQLite database", "restored into a
    #: scratch PostgreSQL database", or "not loaded: <why>"
    how: str
    tables: int
    rows: int
    #: the tables whose rows differ: "orders: 12 in the file, 13 in the snapshot"
    mismatches: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        """The log's line: "verified: 15 tables, 46,221 rows match" (or why not)."""
        s = "s" * (self.tables != 1)
        if not self.ok:
            return f"verification failed: {'; '.join(self.mismatches)}"
        if not self.loaded:
            return f"checked, {self.how}: {self.tables} table{s}, {self.rows:,} rows written"
        return f"verified: {self.tables} table{s}, {self.rows:,} rows match"


class Source(Protocol):
    """A database opened on one consistent snapshot for the life of the object. Each kind
    (``sources/``) says more of its tables in a subclass of :class:`TableSpec` of its own, which
    the writers written for that kind read (:data:`.export.PATHS`)."""

    def tables(self) -> list[TableSpec]:
        """The tables to copy (include/exclude applied), parents before children where possible."""

    def rows(self, spec: TableSpec) -> Iterator[Sequence[Any]]:
        """The table's rows as Python values, in column order, streamed."""

    def row_batches(self, spec: TableSpec, size: int = 5000) -> Iterator[list[Sequence[Any]]]:
        """The same rows in lists of at most ``size``: no Python call per row."""

    def info(self) -> SourceInfo:
        """The database's dialect, server version, name and schema revision."""

    def close(self) -> None: ...


@dataclass
class Progress:
    """What a progress callback receives.

    ``finished`` is set (to the table's key and its exact row count) exactly once per table,
    when the table is done; the other calls come at most ``Tracker.interval`` seconds apart.
    ``phase`` says what the export is doing, in words for people ("waiting for a lock on
    orders (held by pid 1234, 'idle in transaction' for 12 s)", "copying table orders",
    "verifying the file"); a call comes at once when it changes. ``percent`` (0-99, never
    going back) weighs each phase by its measured share of a run (:data:`.export.WEIGHTS`).
    """

    tables_done: int
    tables_total: int
    rows_done: int
    rows_total: int
    table: str | None = None
    finished: tuple[str, int] | None = None
    phase: str | None = None
    percent: int = 0


ProgressCallback = Callable[[Progress], None]
