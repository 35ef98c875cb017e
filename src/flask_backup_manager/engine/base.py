"""What every source and writer shares: formats, errors, table descriptions, progress."""

from __future__ import annotations

import fnmatch
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlalchemy as sa

#: gzip level of the SQL formats (written by zlib-ng): gzip's own default, as `pg_dump | gzip`
COMPRESSLEVEL = 6


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
            "or `gunzip -c FILE | sqlite3 -safe new.db`.",
            ".sqlite3.sql.gz",
            True,
        ),
        Format(
            "postgres",
            "SQL text for PostgreSQL, gzipped: restore as an ordinary role with "
            "`python -m flask_backup_manager restore FILE --target postgresql:///newdb` "
            "or `gunzip -c FILE | psql -X -v ON_ERROR_STOP=1 --single-transaction -d newdb`.",
            ".postgres.sql.gz",
            True,
        ),
        Format(
            "sqlite3_db",
            "A ready-to-use SQLite database file: start the app on it, "
            "or open it with `sqlite3 -safe FILE`.",
            ".sqlite3",
            False,
        ),
    )
}


class ExportError(Exception):
    """An export failed; the message is one line meant for a person (no secrets in it)."""


class ExportCancelled(Exception):
    """Raised by a progress callback to stop an export; passes through ``export()`` unchanged."""


#: The formats each kind of source database can be exported to, as the engine's paths land.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "sqlite": ("sqlite3_db", "sqlite3", "postgres"),
    "postgresql": ("postgres", "sqlite3_db", "sqlite3"),
}


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> sa.Table:
        return self.load_tables()[self.key]


class Source(Protocol):
    """A database opened on one consistent snapshot for the life of the object."""

    dialect: str  # "sqlite" or "postgresql"

    def tables(self) -> list[TableSpec]:
        """The tables to copy (include/exclude applied), parents before children where possible."""

    def rows(self, spec: TableSpec) -> Iterator[Sequence[Any]]:
        """The table's rows as Python values, in column order, streamed."""

    def row_batches(self, spec: TableSpec, size: int = 5000) -> Iterator[list[Sequence[Any]]]:
        """The same rows in lists of at most ``size``: no Python call per row."""

    def close(self) -> None: ...


@dataclass
class Progress:
    """What a progress callback receives.

    ``finished`` is set (to the table's key and its exact row count) exactly once per table,
    when the table is done; the other calls come at most ``Tracker.interval`` seconds apart.
    """

    tables_done: int
    tables_total: int
    rows_done: int
    rows_total: int
    table: str | None = None
    finished: tuple[str, int] | None = None


ProgressCallback = Callable[[Progress], None]


class Tracker:
    """Counts tables and rows for a writer and calls the progress callback, throttled."""

    interval = 0.25

    def __init__(self, specs: list[TableSpec], callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.warnings: list[str] = []
        self.p = Progress(0, len(specs), 0, sum(s.estimated_rows for s in specs))
        self._table_rows = 0
        self._last = 0.0

    def start(self, spec: TableSpec) -> None:
        self.p.table, self.p.finished, self._table_rows = spec.key, None, 0
        self._emit(force=True)

    def rows(self, n: int) -> None:
        self._table_rows += n
        self.p.rows_done += n
        self.p.rows_total = max(self.p.rows_total, self.p.rows_done)
        self._emit()

    def finish(self, spec: TableSpec) -> None:
        self.p.tables_done += 1
        self.p.finished = (spec.key, self._table_rows)
        self._emit(force=True)
        self.p.finished = None

    def warn(self, message: str) -> None:
        """Something a person should know about the copy (it goes to the backup's log)."""
        self.warnings.append(message)

    def _emit(self, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.callback(Progress(**vars(self.p)))


def watch(event: threading.Event, interrupt: Callable[[], object]) -> Callable[[], None]:
    """Call ``interrupt`` (a thread-safe "stop what you are doing" of a database connection)
    from a thread of its own as soon as ``event`` is set, and every 0.1 s after, until the
    watch ends; returns the function that ends it. Lets a cancel reach an export blocked
    inside a query. Again and again, as an interrupt stops only the query under way: one
    that comes between two queries would be lost."""
    done = threading.Event()

    def run() -> None:
        while not done.wait(0.1):
            if event.is_set():
                try:
                    interrupt()
                except Exception:  # e.g. no cancel connection to the server: try again
                    pass

    thread = threading.Thread(target=run, name="export-cancel-watch", daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join()

    return stop


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items`` read ahead by a thread of its own, at most ``depth`` in hand: reading the
    next batch of rows from a server overlaps with writing the last one (both are C code that
    lets go of the GIL while it waits or works). ``items`` must be usable from another thread
    (a psycopg connection is; an sqlite3 one is not). Its errors are raised here; closing this
    generator stops the thread and closes ``items`` there."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def offer(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def run() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    break
        except BaseException as e:  # raised in the consumer
            offer(("error", e))
        else:
            offer(("end", None))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="export-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def select_keys(
    keys: list[str], include: Iterable[str] | None, exclude: Iterable[str] | None
) -> list[str]:
    """The table keys kept by ``include`` / ``exclude`` (names or shell patterns: ``audit_*``).
    A pattern that matches no table is an error, on either side: a typo in an exclude would
    otherwise copy the very table someone meant to leave out."""
    inc, exc = list(include or ()), list(exclude or ())
    for side, patterns in (("include", inc), ("exclude", exc)):
        unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for k in keys)]
        if unknown:
            raise ExportError(f"no such table to {side}: {', '.join(unknown)}")
    return [
        k
        for k in keys
        if (not inc or any(fnmatch.fnmatchcase(k, p) for p in inc))
        and not any(fnmatch.fnmatchcase(k, p) for p in exc)
    ]


def parents_first(specs: list[TableSpec], parents: Mapping[str, Iterable[str]]) -> list[TableSpec]:
    """``specs`` with the tables a table references (``parents``: keys by key) before it.
    Otherwise, and where references make a cycle, the tables keep their order: the same
    database gives the same order on every run."""
    by_key = {s.key: s for s in specs}
    position = {s.key: i for i, s in enumerate(specs)}
    done: set[str] = set()
    out: list[TableSpec] = []

    def visit(s: TableSpec, path: set[str]) -> None:
        if s.key in done or s.key in path:
            return
        path.add(s.key)
        for key in sorted(set(parents.get(s.key, ())) & by_key.keys(), key=position.__getitem__):
            visit(by_key[key], path)
        path.discard(s.key)
        done.add(s.key)
        out.append(s)

    for s in specs:
        visit(s, set())
    return out


def ident(name: str) -> str:
    """A double-quoted identifier, the same for SQLite and PostgreSQL."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """An SQL string literal as SQLite reads it (the SQLite writers'). The ``postgres`` writers
    have their own, :func:`.writers.postgres.sql.literal`, which must read the same under any client
    encoding and either ``standard_conforming_strings`` setting."""
    return "'" + str(value).replace("'", "''") + "'"


#: Control characters (C0, DEL, C1) and the Unicode line separators and bidi controls that
#: could rewrite a terminal or reorder a line: escaped wherever customer text is echoed.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """``text`` with every :data:`CONTROL` character written as ``\\xNN`` / ``\\uNNNN``:
    what a terminal or a log viewer shows can then never move the cursor, retitle the
    window or hide the rest of the line. Ordinary Unicode is kept."""

    def escape(m: re.Match[str]) -> str:
        n = ord(m.group())
        return _SHORT.get(m.group()) or (f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}")

    return CONTROL.sub(escape, text)


def shown(text: str | bytes, limit: int = 40) -> str:
    """At most ``limit`` characters of ``text`` (customer text: a name, a line of a file),
    control characters escaped: fit for a one-line message whatever it holds."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "backslashreplace")
    return escape_controls(text[:limit]) + ("..." if len(text) > limit else "")
