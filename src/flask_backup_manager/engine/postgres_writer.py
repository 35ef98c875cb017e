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

from collections.abc import Iterable
from pathlib import Path

from .base import Source, Tracker, ident, literal
from .gzipout import GzipOut

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


def write_postgres_sql(source: Source, path: Path, tracker: Tracker) -> None:
    with GzipOut(path) as out:
        out.write(HEADER)
        if source.dialect == "postgresql" and hasattr(source, "copy_out"):
            from .postgres_native import write_native

            write_native(source, out, tracker)
        else:
            from .postgres_generic import write_generic

            write_generic(source, out, tracker)
        out.write("--\n-- dump complete\n--\n")


def comment_line(text: str) -> str:
    """An SQL comment line, safe whatever ``text`` holds (names from the source may hold any
    character). psql ends a ``--`` comment at a CR as well as at an LF and reads what follows as
    SQL, where a backslash starts a psql command (``\\! cmd`` runs a shell command): so CR and LF
    become spaces, as ``pg_dump`` does in its own comments."""
    return "-- " + text.replace("\r", " ").replace("\n", " ")


def statements(items: Iterable[str]) -> str:
    return "".join(f"{s.rstrip().rstrip(';')};\n\n" for s in items if s)


__all__ = ["GzipOut", "comment_line", "ident", "literal", "statements", "write_postgres_sql"]
