"""The ``postgres`` format: gzipped plain SQL that ``psql --single-transaction`` restores as an
ordinary database owner (no superuser: no OWNER TO, GRANT, ``session_replication_role``).

Layout, like ``pg_dump``: pre-data (schemas, extensions, types, functions, sequences, tables and
partitions), data (``COPY ... FROM stdin``), sequence positions, post-data (primary keys, unique
and exclusion constraints, indexes, views, foreign keys, triggers, rules). Constraints come after
the data, so circular and self-referencing foreign keys load without disabling triggers.

From a PostgreSQL source every definition comes from the catalog's own ``pg_get_*def`` functions,
read in the source's snapshot (:mod:`.writers.postgres.from_postgres`), and the rows are the
source's own COPY
text. From any other source (SQLite) the tables are built from each spec's SQLAlchemy ``Table``
and the rows are encoded and checked one by one (:mod:`.writers.postgres.from_sqlite`).

The customer's database is untrusted input for whoever restores the file, so the file is built
to be harmless to load (issue 9):

- every name and text reaches it quoted, by PostgreSQL's own deparse (``pg_get_*def``,
  ``quote_ident``, ``format_type``, ``regclass`` text) or by :func:`quoted_ident` /
  :func:`literal`, and all of it outside COPY data is ASCII (:func:`portable`), so that it
  reads the same under any client encoding and ``standard_conforming_strings`` setting a
  customer function may switch to during the restore; comment lines carry no control
  character (:func:`comment_line`);
- it opens with ``\\restrict KEY`` and ends with ``\\unrestrict KEY`` (as ``pg_dump`` does since
  PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22): between the two psql itself refuses every
  backslash command, should a writer bug let one through;
- its first statement refuses to go on unless the restoring role reaches nothing but the new
  database (:data:`GUARD`, :data:`RISKY_ROLES`: no superuser, no role that may run programs or
  read and write files on the server, none that owns another database or belongs to a role):
  loading a schema runs the customer's functions (CHECK constraints, defaults, generated
  columns, index expressions, materialized views, triggers) as the restoring role.

Compression runs in a second thread (:class:`GzipOut`) so that reading and compressing use two
cores, as ``pg_dump | gzip`` does.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ...base import CONTROL, Tracker, escape_controls, ident
from ...gzipout import GzipOut
from ...manifest import TAIL_TITLE, comment_lines
from ...model import PSQL_RESTORE, ExportError

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


#: how an E'' string (and :func:`ascii_text`) writes a character beyond ASCII: in the BMP,
#: beyond it
_E_ESCAPES = ("\\u%04X", "\\U%08X")


def _escape(text: str, doubled: str, short: str, long: str) -> str:
    """``text`` in ASCII: the characters in ``doubled`` doubled, every non-ASCII character
    written ``short % code`` (in the BMP) or ``long % code``."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in doubled:
            out.append(ch * 2)
        elif code < 0x80:
            out.append(ch)
        else:
            out.append((short if code <= 0xFFFF else long) % code)
    return "".join(out)


def literal(value: object) -> str:
    """A PostgreSQL string literal in ASCII that reads the same whatever the client encoding
    and ``standard_conforming_strings`` are when psql lexes it: a customer function run during
    the restore may change either (issue 9). psql lexes by the client encoding, and in SJIS,
    BIG5, GBK, UHC or GB18030 the byte after a lead byte is part of the character, so a UTF-8
    character could swallow a closing quote or backslash; with standard strings off, psql reads
    backslashes in plain ``'...'`` as escapes. An ASCII text without a backslash stays plain
    ``'...'``; any other is written ``E'...'``, backslashes and quotes doubled and non-ASCII as
    ``\\uXXXX`` / ``\\UXXXXXXXX``. The server turns those escapes into the character in its own
    encoding: in a UTF8 database (what the README and the restore tool create) always, in
    another one only when the character exists in it (else the load stops with an error, as
    it would when converting the character from the client encoding); a SQL_ASCII database
    refuses every such escape, so the load stops there at the first non-ASCII text (checked
    on PostgreSQL 15)."""
    text = str(value)
    if text.isascii() and "\\" not in text:
        return "'" + text.replace("'", "''") + "'"
    return "E'" + _escape(text, "\\'", *_E_ESCAPES) + "'"


def quoted_ident(name: str) -> str:
    """A quoted identifier in ASCII (see :func:`literal` for why): ``"..."`` when ``name`` is
    ASCII, else ``U&"..." UESCAPE '!'`` with ``!XXXX`` / ``!+XXXXXX`` escapes. psql lexes
    ``U&"`` as a quoted identifier, and the server reads it whatever
    ``standard_conforming_strings`` is (only ``U&'...'`` string literals are refused with
    standard strings off). The escape character is said, and is not a backslash: a word
    ``uescape`` after the identifier (an alias) would otherwise be read as the start of that
    clause, and ``UESCAPE '\\'`` would be a plain string holding a backslash."""
    if name.isascii():
        return ident(name)
    return 'U&"' + _escape(name, '!"', "!%04X", "!+%06X") + "\" UESCAPE '!'"


def ascii_text(text: str) -> str:
    """``text`` with every non-ASCII character written ``\\uXXXX`` / ``\\UXXXXXXXX``: for
    comments, which need only be readable."""
    return text if text.isascii() else _escape(text, "", *_E_ESCAPES)


_NONASCII = "\x80-\U0010ffff"
#: the tokens of deparsed SQL that may hold customer text: comments, quoted identifiers (a
#: ``U&`` one whole), dollar quotes, strings (an E'' or N'' one whole), words (so that ``e'``
#: starts a string only as a token of its own), and plain strings
_DEPARSED = re.compile(
    r"(?P<comment>--[^\n\r]*|/\*[\s\S]*?\*/)"
    r"|(?P<unicode>[uU]&(?:\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'))"
    r"|\"(?P<ident>(?:[^\"]|\"\")*)\""
    rf"|(?P<tag>\$(?:[A-Za-z_{_NONASCII}][\w{_NONASCII}]*)?\$)(?P<dollar>[\s\S]*?)(?P=tag)"
    r"|[eE]'(?P<estring>(?:[^\\']|\\[\s\S]|'')*)'"
    r"|[nN]'(?P<nstring>(?:[^']|'')*)'"
    r"|[bBxX]'[^']*(?:''[^']*)*'"
    rf"|(?P<word>[A-Za-z_{_NONASCII}][\w${_NONASCII}]*)"
    r"|'(?P<string>(?:[^']|'')*)'"
)
#: one character of an E'' string's body, or a backslash escape
_E_PART = re.compile(r"\\[\s\S]|[\s\S]")


def _e_body(body: str) -> str:
    """An E'' string's body (as written) in ASCII, meaning the same: a non-ASCII character,
    alone or after a backslash (which then stands for the character itself), as ``\\uXXXX``."""
    out = []
    for part in _E_PART.findall(body):
        ch = part[-1]
        out.append(part if ch.isascii() else _escape(ch, "", *_E_ESCAPES))
    return "".join(out)


def portable(text: str) -> str:
    """SQL deparsed by PostgreSQL with standard strings (``pg_get_*def``), rewritten token by
    token so that psql and the server read it the same whatever the client encoding and
    ``standard_conforming_strings`` become during the restore (see :func:`literal`): plain
    strings holding a backslash or non-ASCII, and non-ASCII strings, identifiers, words and
    dollar-quoted bodies (a function's body becomes an ``E'...'`` string: the same string
    constant, so ``prosrc`` is unchanged) in the ASCII forms of :func:`literal` and
    :func:`quoted_ident`; non-ASCII in comments escaped as text. PostgreSQL's deparse never
    writes ``E''`` itself, whatever the session's settings. Raises :class:`ExportError` if any
    non-ASCII is left (in a token the deparse does not write)."""
    if text.isascii() and "\\" not in text and ":'" not in text and ':"' not in text:
        return text

    def one(m: re.Match) -> str:
        new = rewrite(m)
        if m.start() and text[m.start() - 1] == ":" and new[:1] in "'\"":
            return " " + new  # psql would read :'x' or :"x" as its variable (an array slice)
        return new

    def rewrite(m: re.Match) -> str:
        token = m.group()
        kind = m.lastgroup
        if kind == "string":
            if token.isascii() and "\\" not in token:
                return token
            new = literal(m.group(kind).replace("''", "'"))
        elif token.isascii() or kind == "unicode":
            return token
        elif kind == "comment":
            return ascii_text(token)
        elif kind == "ident":
            new = quoted_ident(m.group(kind).replace('""', '"'))
        elif kind in ("tag", "dollar"):
            new = literal(m.group("dollar"))
        elif kind == "estring":
            new = "E'" + _e_body(m.group(kind)) + "'"
        elif kind == "nstring":
            new = "NCHAR " + literal(m.group(kind).replace("''", "'"))
        elif kind == "word":  # unquoted: PostgreSQL folds its ASCII letters only
            new = quoted_ident(token.translate(_LOWER))
        else:
            return token
        before = text[m.start() - 1] if m.start() else " "
        return (" " if before.isalnum() or before in "_$" else "") + new

    out = _DEPARSED.sub(one, text)
    if not out.isascii():
        at = next(i for i, ch in enumerate(out) if not ch.isascii())
        near = escape_controls(out[max(at - 30, 0) : at + 10])
        raise ExportError(f"cannot write this SQL in ASCII for psql, near: {near}")
    return out


_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


_NOT_OVERRIDDEN = f"pg_catalog.current_setting({literal(OVERRIDE)}, true) IS DISTINCT FROM 'on'"

_REFUSED = "refusing to restore this flask-backup-manager dump as this role, which %"
_WHY = (
    "Loading a schema runs its functions (CHECK constraints, defaults, generated columns,"
    " index expressions, materialized views, triggers) as the restoring role, and this schema"
    " comes from someone else's database: the role must reach nothing but the new database."
)
_HOW = (
    "Restore as a new role that owns only an empty database and belongs to no role:"
    f" createuser restorer; createdb -O restorer newdb; gunzip -c FILE | {PSQL_RESTORE}"
    " -U restorer -d newdb (then, if you like,"
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

HEADER = f"""--
-- PostgreSQL database dump made by flask-backup-manager
--
-- Restore into an empty database owned by an ordinary role (not a superuser):
--   gunzip -c FILE | {PSQL_RESTORE} -d NEWDB
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


@contextmanager
def dump_file(path: Path, tracker: Tracker) -> Iterator[GzipOut]:
    """The frame of every ``postgres`` file around what a writer writes into it: psql's
    ``\\restrict`` with a fresh key, the header and the manifest's head
    (:attr:`.Tracker.header`), the role guard and the settings first; the rows written of
    each table, the closing comment and ``\\unrestrict`` last (a file cut short has no end,
    and the check refuses it)."""
    key = restrict_key()
    with GzipOut(path, tracker.inline) as out:
        out.write(f"\\restrict {key}\n\n")
        out.write(HEADER)
        if tracker.header:
            out.write("\n".join(tracker.header) + "\n\n")
        out.write(GUARD)
        out.write(SETTINGS)
        yield out
        out.write("\n".join(comment_lines(tracker.counts, TAIL_TITLE)) + "\n")
        out.write(f"--\n-- dump complete\n--\n\n\\unrestrict {key}\n")


def spaces_for_controls(text: str) -> str:
    """``text`` with every control character (CR and LF among them) and Unicode line break
    replaced by a space: fit for a comment line, a log line or a terminal."""
    return CONTROL.sub(" ", text)


def comment_line(text: str) -> str:
    """An SQL comment line, safe whatever ``text`` holds (names from the source may hold any
    character). psql ends a ``--`` comment at a CR as well as at an LF and reads what follows as
    SQL, where a backslash starts a psql command (``\\! cmd`` runs a shell command): so every
    control character becomes a space, as ``pg_dump`` does with CR and LF in its own comments;
    and non-ASCII is escaped as text (:func:`ascii_text`), as psql may lex by another client
    encoding by then, where a UTF-8 character can swallow the LF that ends the comment."""
    return "-- " + ascii_text(spaces_for_controls(text))


def copy_from_stdin(target: str) -> str:
    """The lines that start a COPY block of ``target`` (a table and its columns, as SQL): the
    COPY statement in ASCII (:func:`portable`), after a ``SET client_encoding`` back to UTF8.
    The server reads COPY data in the client encoding of the moment the COPY starts, and a
    function run by the restore (a CHECK constraint while the rows before were loaded) may have
    changed it: the rows, UTF-8, would then fail to load or load as other characters."""
    return "SET client_encoding = 'UTF8';\n" + portable(f"COPY {target} FROM stdin") + ";\n"


def statements(items: Iterable[str]) -> str:
    """The statements, each ending in ``;`` and a blank line, in ASCII that reads the same
    under any client encoding and standard strings setting (:func:`portable`)."""
    return "".join(f"{portable(s.rstrip().rstrip(';'))};\n\n" for s in items if s)


__all__ = [
    "GUARD",
    "OVERRIDE",
    "GzipOut",
    "ascii_text",
    "comment_line",
    "copy_from_stdin",
    "ident",
    "literal",
    "spaces_for_controls",
    "portable",
    "quoted_ident",
    "restrict_key",
    "statements",
    "dump_file",
]
