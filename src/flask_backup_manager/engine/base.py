"""Helpers every source and writer shares: progress counting, cancel watching, prefetching,
table selection and ordering, SQLite quoting, and the one escape for customer text."""

from __future__ import annotations

import fnmatch
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import ExportError, Progress, ProgressCallback, TableSpec

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .url import URL

#: gzip level of the SQL formats (written by zlib-ng): gzip's own default, as `pg_dump | gzip`
COMPRESSLEVEL = 6


def temp_beside(path: Path, tag: str) -> Path:
    """The name of a private temp file beside ``path``. export() writes to
    ``.<output>.<hex>.part``; this gives ``.<output>.<hex>.<tag>.part``, which the cleaner that
    removes ``.<output>.*.part`` after a dead worker removes too."""
    stem = path.name.removesuffix(".part") if path.name.endswith(".part") else f".{path.name}"
    return path.with_name(f"{stem}.{tag}.part")


class Tracker:
    """Counts tables and rows for a writer and calls the progress callback, throttled; says
    the phase under way (:attr:`.Progress.phase`) and a percent that never goes back.

    The rows copied count for the first ``rows_until`` percent of the run; each later phase
    (:meth:`phase`, e.g. "verifying the file" up to 99) for the share up to its ``until``,
    filled by :meth:`step`. A tracker made before the tables are known (a source waiting for a
    lock reports that through :meth:`phase`) learns them from :meth:`plan`."""

    interval = 0.25

    def __init__(
        self,
        specs: list[TableSpec],
        callback: ProgressCallback | None,
        *,
        rows_until: int = 99,
    ) -> None:
        self.callback = callback
        self.warnings: list[str] = []
        #: each table's exact rows, by key, once it is finished
        self.counts: dict[str, int] = {}
        #: comment lines an SQL writer puts after its own header (the manifest's head; each
        #: line starts with ``--`` and holds no line break: :func:`.manifest.comment_lines`)
        self.header: tuple[str, ...] = ()
        #: the check an SQL writer's GzipOut makes of the file as it writes it
        #: (:class:`.gzipout.Inline`; None: the file is read back after)
        self.inline: Any = None
        self.p = Progress(0, 0, 0, 0)
        self.rows_until = rows_until
        self._table_rows = 0
        self._last = 0.0
        self._from = self._until = 0  # the percent the phase under way runs from and to
        self.plan(specs)

    def plan(self, specs: list[TableSpec]) -> None:
        """The tables to copy, once known."""
        self.p.tables_total = len(specs)
        self.p.rows_total = sum(s.estimated_rows for s in specs)

    def phase(self, text: str, until: int | None = None) -> None:
        """A phase other than copying a table begins (:attr:`.Progress.table` is then None):
        ``text`` says it to people; it ends at ``until`` percent of the run (None: it does not
        move the percent)."""
        self.p.phase, self.p.table = text, None
        self._from = self.p.percent
        self._until = self.p.percent if until is None else until
        self._emit(force=True)

    def step(self, done: int, total: int) -> None:
        """``done`` of ``total`` of the phase under way are done (bytes, rows...)."""
        if total > 0:
            self._reach(self._from + (self._until - self._from) * min(done, total) / total)
            self._emit()

    def start(self, spec: TableSpec) -> None:
        self.p.table, self.p.finished, self._table_rows = spec.key, None, 0
        self.p.phase = f"copying table {shown(spec.key, 100)}"
        self._emit(force=True)

    def rows(self, n: int) -> None:
        self._table_rows += n
        self.p.rows_done += n
        self.p.rows_total = max(self.p.rows_total, self.p.rows_done)
        self._copied()
        self._emit()

    def restart(self, spec: TableSpec) -> None:
        """:meth:`start` ``spec`` again: it is copied anew, its rows so far no longer count
        (the percent stays where it was)."""
        self.p.rows_done -= self._table_rows
        self.start(spec)

    def finish(self, spec: TableSpec) -> None:
        self.p.tables_done += 1
        self.p.finished = (spec.key, self._table_rows)
        self.counts[spec.key] = self._table_rows
        self._copied()
        self._emit(force=True)
        self.p.finished = None

    def _copied(self) -> None:
        p = self.p
        if p.rows_total:
            self._reach(self.rows_until * p.rows_done / p.rows_total)
        elif p.tables_total:
            self._reach(self.rows_until * p.tables_done / p.tables_total)

    def _reach(self, percent: float) -> None:
        self.p.percent = max(self.p.percent, min(99, int(percent)))

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


def one_line(e: BaseException) -> str:
    """``e`` as one line for a person: white space folded, control characters escaped (a
    database's message quotes names, which may hold any character: an ESC)."""
    text = escape_controls(" ".join(str(e).split())) or type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror if not e.filename else f"{e.strerror}: {e.filename}"
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:  # SQLite's word for ENOSPC
        text = "No space left on device"
    return text


def scrub(text: str, url: URL | sa.URL) -> str:
    """``text`` without the password of ``url`` in it."""
    if url.password:
        text = text.replace(str(url.password), "***")
    return text
