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

The customer's database is untrusted input for whoever restores the file, so the file is built
to be harmless to load (issue 9):

- every name and text reaches it quoted, by PostgreSQL's own deparse (``pg_get_*def``,
  ``quote_ident``, ``format_type``, ``regclass`` text) or by :func:`ident` / :func:`literal`;
  comment lines carry no control character (:func:`comment_line`);
- it opens with ``\\restrict KEY`` and ends with ``\\unrestrict KEY`` (as ``pg_dump`` does since
  PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22): between the two psql itself refuses every
  backslash command, should a writer bug let one through;
- its first statement refuses to go on when the restoring role is a superuser or may run
  programs or read and write files on the server (:data:`GUARD`): loading a schema runs the
  customer's functions (CHECK constraints, defaults, generated columns, index expressions,
  materialized views, triggers) as the restoring role.

Compression runs in a second thread (:class:`GzipOut`) so that reading and compressing use two
cores, as ``pg_dump | gzip`` does.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable
from pathlib import Path

from .base import Source, Tracker, ident
from .gzipout import GzipOut

#: the setting that lets a superuser load the file anyway, knowingly
OVERRIDE = "flask_backup_manager.restore_as_superuser"

#: What makes the restoring role unfit to load a customer's schema, as one line of text, or
#: NULL. Loading runs the customer's functions as that role (``session_user`` too: a
#: superuser session that SET ROLE to an ordinary one can RESET it), so it must be a new role
#: that can reach nothing but the new database: not be, belong to, or be able to grant itself
#: a superuser or the roles that run programs and read or write files on the server (before
#: PostgreSQL 16 CREATEROLE could grant itself any of those); own no other database (whose
#: settings and connection limit its functions could change); belong to no other role (whose
#: objects and rights they would share).
RISKY_ROLES = """SELECT NULLIF(pg_catalog.concat_ws('; ',
        'is, or can become, ' || (
            SELECT pg_catalog.string_agg(DISTINCT r.rolname::text, ', ')
            FROM pg_catalog.pg_roles r, (VALUES (SESSION_USER), (CURRENT_USER)) AS u (name)
            WHERE (r.rolsuper
                   OR r.rolname IN ('pg_execute_server_program', 'pg_read_server_files',
                                    'pg_write_server_files')
                   OR r.rolcreaterole
                      AND pg_catalog.current_setting('server_version_num')::integer < 160000)
              AND (pg_catalog.pg_has_role(u.name, r.oid, 'MEMBER')
                   OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m
                              WHERE m.roleid = r.oid AND m.admin_option
                                AND pg_catalog.pg_has_role(u.name, m.member, 'MEMBER')))),
        'owns other databases: ' || (
            SELECT pg_catalog.string_agg(DISTINCT d.datname::text, ', ')
            FROM pg_catalog.pg_database d
            JOIN pg_catalog.pg_roles o ON o.oid = d.datdba
            WHERE o.rolname IN (SESSION_USER, CURRENT_USER)
              AND d.datname <> pg_catalog.current_database()),
        'is a member of other roles: ' || (
            SELECT pg_catalog.string_agg(DISTINCT r.rolname::text, ', ')
            FROM pg_catalog.pg_auth_members m
            JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
            JOIN pg_catalog.pg_roles o ON o.oid = m.member
            WHERE o.rolname IN (SESSION_USER, CURRENT_USER))), '')"""


def literal(value: object) -> str:
    """A PostgreSQL string literal that reads the same whatever ``standard_conforming_strings``
    is when psql lexes it: a customer function run during the restore may turn the setting off,
    and psql then reads backslashes in plain ``'...'`` as escapes. A text holding a backslash
    is written ``E'...'`` (backslashes and quotes doubled); any other stays plain ``'...'``."""
    text = str(value).replace("'", "''")
    if "\\" not in text:
        return f"'{text}'"
    return "E'" + text.replace("\\", "\\\\") + "'"


#: the tokens of deparsed SQL where a quote may start: comments, quoted identifiers,
#: dollar quotes and strings (an E'' one whole), words (so that ``e'`` starts a string only
#: as a token of its own), and a plain string, the one group rewritten
_DEPARSED = re.compile(
    r"--[^\n\r]*|/\*[\s\S]*?\*/|\"(?:[^\"]|\"\")*\"|(\$(?:[A-Za-z_\x80-\uffff]\w*)?\$)[\s\S]*?\1"
    r"|[eE]'(?:[^\\']|\\[\s\S]|'')*'|(?:[bBxX]|[uU]&)'[^']*(?:''[^']*)*'"
    r"|[A-Za-z_\x80-\uffff][\w$]*|'((?:[^']|'')*)'"
)


def standard_literals(text: str) -> str:
    """SQL deparsed by PostgreSQL with standard strings (``pg_get_*def``), its plain string
    literals that hold a backslash rewritten as :func:`literal` writes them: PostgreSQL's
    deparse never writes ``E''`` itself, whatever the session's settings."""
    if "\\" not in text:
        return text

    def one(m: re.Match) -> str:
        body = m.group(2)
        if body is None or "\\" not in body:
            return m.group()
        glued = m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "_$")
        return (" " if glued else "") + literal(body.replace("''", "'"))

    return _DEPARSED.sub(one, text)


_NOT_OVERRIDDEN = f"pg_catalog.current_setting({literal(OVERRIDE)}, true) IS DISTINCT FROM 'on'"

_REFUSED = "refusing to restore this flask-backup-manager dump as this role, which %"
_WHY = (
    "Loading a schema runs its functions (CHECK constraints, defaults, generated columns,"
    " index expressions, materialized views, triggers) as the restoring role, and this schema"
    " comes from someone else's database: the role must reach nothing but the new database."
)
_HOW = (
    "Restore as a new role that owns only an empty database and belongs to no role:"
    " createuser restorer; createdb -O restorer newdb; gunzip -c FILE | psql -X -v"
    " ON_ERROR_STOP=1 --single-transaction -U restorer -d newdb (then, if you like,"
    " ALTER DATABASE newdb OWNER TO you; DROP ROLE restorer). To restore as this role anyway,"
    f" knowingly: PGOPTIONS='-c {OVERRIDE}=on' psql ..., or the restore tool's --as-superuser."
)

#: The superuser guard: the file's first statement. With the README's command
#: (``ON_ERROR_STOP=1 --single-transaction``) its error stops the load before anything else
#: runs; the second statement ends the session for a client that goes on after an error.
GUARD = f"""DO $fbm_guard$
DECLARE
    risky text;
BEGIN
    IF {_NOT_OVERRIDDEN} THEN
        {RISKY_ROLES}
        INTO risky;
        IF risky IS NOT NULL THEN
            RAISE EXCEPTION {literal(_REFUSED)}, risky
            USING DETAIL = {literal(_WHY)},
                  HINT = {literal(_HOW)};
        END IF;
    END IF;
END
$fbm_guard$;

DO $fbm_guard$
BEGIN
    IF {_NOT_OVERRIDDEN} AND ({RISKY_ROLES}) IS NOT NULL THEN
        PERFORM pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid());
    END IF;
END
$fbm_guard$;

"""

HEADER = """--
-- PostgreSQL database dump made by flask-backup-manager
--
-- Restore into an empty database owned by an ordinary role (not a superuser):
--   gunzip -c FILE | psql -X -v ON_ERROR_STOP=1 --single-transaction -d NEWDB
-- or: python -m flask_backup_manager restore FILE --target postgresql:///NEWDB
-- Loading a schema runs its functions (CHECK constraints, defaults, index expressions,
-- materialized views, triggers) as the restoring role: this file refuses a superuser.
--

"""

SETTINGS = """SET statement_timeout = 0;
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


def restrict_key() -> str:
    """A key for psql's ``\\restrict``: 63 random letters and digits, as ``pg_dump`` makes."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(63))


def write_postgres_sql(source: Source, path: Path, tracker: Tracker) -> None:
    key = restrict_key()
    with GzipOut(path) as out:
        out.write(f"\\restrict {key}\n\n")
        out.write(HEADER)
        out.write(GUARD)
        out.write(SETTINGS)
        if source.dialect == "postgresql" and hasattr(source, "copy_out"):
            from .postgres_native import write_native

            write_native(source, out, tracker)
        else:
            from .postgres_generic import write_generic

            write_generic(source, out, tracker)
        out.write(f"--\n-- dump complete\n--\n\n\\unrestrict {key}\n")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every control character (CR and LF among them) and Unicode line break
    replaced by a space: fit for a comment line, a log line or a terminal."""
    return _CONTROL.sub(" ", text)


def comment_line(text: str) -> str:
    """An SQL comment line, safe whatever ``text`` holds (names from the source may hold any
    character). psql ends a ``--`` comment at a CR as well as at an LF and reads what follows as
    SQL, where a backslash starts a psql command (``\\! cmd`` runs a shell command): so every
    control character becomes a space, as ``pg_dump`` does with CR and LF in its own comments."""
    return "-- " + one_line(text)


def statements(items: Iterable[str]) -> str:
    """The statements, each ending in ``;`` and a blank line, their plain literals holding a
    backslash rewritten (:func:`standard_literals`)."""
    return "".join(f"{standard_literals(s.rstrip().rstrip(';'))};\n\n" for s in items if s)


__all__ = [
    "GUARD",
    "OVERRIDE",
    "GzipOut",
    "comment_line",
    "ident",
    "literal",
    "one_line",
    "restrict_key",
    "standard_literals",
    "statements",
    "write_postgres_sql",
]
