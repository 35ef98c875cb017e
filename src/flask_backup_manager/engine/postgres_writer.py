"""The ``postgres`` format: gzipped plain SQL that ``psql --single-transaction`` restores as an
ordinary database owner (no superuser: no OWNER TO, GRANT, ``session_replication_role``).

Layout, like ``pg_dump``: pre-data (schemas, extensions, types, functions, sequences, tables and
partitions), data (``COPY ... FROM stdin``), sequence positions, post-data (primary keys, unique
and exclusion constraints, indexes, views, foreign keys, triggers, rules). Constraints come after
the data, so circular and self-referencing foreign keys load without disabling triggers.

From a PostgreSQL source every definition comes from the catalog's own ``pg_get_*def`` functions,
read in the source's snapshot (:mod:`.postgres_native`), and the rows are the source's own COPY
text. From any other source (SQLite) the tables are built from each spec's SQLAlchemy ``Table``
and the rows are encoded and checked one by one (:mod:`.postgres_generic`).

Compression runs in a second thread (:class:`GzipOut`) so that reading and compressing use two
cores, as ``pg_dump | gzip`` does.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path

from .base import COMPRESSLEVEL, ExportError, Source, Tracker, ident, literal

HEADER = """--
-- PostgreSQL database dump made by flask-backup-manager
-- Restore: gunzip -c FILE | psql -X -v ON_ERROR_STOP=1 --single-transaction -d NEWDB
--

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
SET DateStyle = ISO;
SET IntervalStyle = postgres;

"""

#: bytes gathered before a chunk goes to the compressing thread
BLOCK = 1 << 20


class GzipOut:
    """A gzip file written by a second thread (zlib releases the GIL), fed by a bounded queue
    of big chunks, so reading the database and compressing run on two cores."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")  # closed in close()
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.thread = threading.Thread(target=self._run, name="fbm-gzip", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            z = zlib.compressobj(COMPRESSLEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            while (chunk := self.q.get()) is not None:
                self.f.write(z.compress(chunk))
            self.f.write(z.flush())
        except BaseException as e:  # reported by put()/close() in the main thread
            self.error = e
            while self.q.get() is not None:  # drain so the producer never blocks
                pass

    def _put(self, item: bytes | None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    raise ExportError("the compressing thread stopped") from self.error

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        if len(data) >= BLOCK:
            self.flush()
            self._put(data)
            return
        self.parts.append(data)
        self.size += len(data)
        if self.size >= BLOCK:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self._put(b"".join(self.parts))
            self.parts, self.size = [], 0

    def close(self) -> None:
        """Finish the gzip stream and close the file; raises what the thread hit."""
        try:
            self.flush()
            self._put(None)
            self.thread.join()
            if self.error is not None:
                raise self.error
        finally:
            self.f.close()

    def abort(self) -> None:
        self.parts = []
        if self.thread.is_alive():
            try:
                self._put(None)
            except BaseException:  # already failing: keep the first error
                pass
            self.thread.join()
        self.f.close()


def write_postgres_sql(source: Source, path: Path, tracker: Tracker) -> None:
    out = GzipOut(path)
    try:
        out.write(HEADER)
        if source.dialect == "postgresql" and hasattr(source, "copy_out"):
            from .postgres_native import write_native

            write_native(source, out, tracker)
        else:
            from .postgres_generic import write_generic

            write_generic(source, out, tracker)
        out.write("--\n-- dump complete\n--\n")
    except BaseException:
        out.abort()
        raise
    out.close()


def comment_line(text: str) -> str:
    """An SQL comment line, safe whatever ``text`` holds (names from the source may hold any
    character). psql ends a ``--`` comment at a CR as well as at an LF and reads what follows as
    SQL, where a backslash starts a psql command (``\\! cmd`` runs a shell command): so CR and LF
    become spaces, as ``pg_dump`` does in its own comments."""
    return "-- " + text.replace("\r", " ").replace("\n", " ")


def statements(items: Iterable[str]) -> str:
    return "".join(f"{s.rstrip().rstrip(';')};\n\n" for s in items if s)


__all__ = ["GzipOut", "comment_line", "ident", "literal", "statements", "write_postgres_sql"]
