"""``restore()``: load a ``postgres`` or ``sqlite3`` backup file without psql or the sqlite3
shell, so that no line of it can ever be taken as a client command (issue 9).

The file is read as its client would read it (:mod:`.checks.psql`, :mod:`.checks.sqlite_shell`),
but nothing is interpreted but SQL: a ``postgres`` file's only backslash lines may be the
writer's ``\\restrict KEY`` / ``\\unrestrict KEY`` (ignored) and the ``\\.`` ending each COPY
block; a ``sqlite3`` file may hold no dot-command at all. Anything else refuses the file before
anything is committed. Statements run one by one (one statement per call: the server or SQLite
refuses a second one hidden in it) in one transaction, and COPY data streams through
``cursor.copy()`` in the chunks it is read in, so memory stays flat whatever the file's size.

The tool does not trust the file: it was served by the customer, who may have edited it after
the export, so the checks the file makes itself are made again here. Only the kinds of
statement the writers emit run (:data:`PG_STATEMENTS`, :data:`SQLITE_STATEMENTS`: no COMMIT
that would keep half a load, no ATTACH or VACUUM INTO that would write a file), and a
PostgreSQL role that is or can become a superuser, or may run programs or reach files on the
server, is refused unless ``as_superuser`` says otherwise.

An encrypted backup (age, :mod:`.encryption`) is decrypted on the fly with the ``identity``
given: its plaintext is never written anywhere but into the target, and a cut or changed file
fails when its damaged part is reached, before anything is committed. A ``sqlite3_db`` file
(encrypted or not) is restored too: copied into a new SQLite file, which must pass
``integrity_check``.
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlib_ng import zlib_ng as zlib

from .base import ident, one_line, scrub, shown
from .checks import psql, sqlite_shell
from .child import open_read_only
from .encryption import decrypted_chunks, is_encrypted, read_identities
from .gzipout import gunzip
from .model import ExportError
from .url import URL, parse_url
from .writers.postgres.sql import OVERRIDE, RISKY_ROLES

CHUNK = 1 << 20

#: the first words of the statements the ``postgres`` writers emit (their header, the guard,
#: pg_get_*def's CREATE ..., COMMENT ON, COPY, setval(), REFRESH MATERIALIZED VIEW)
PG_STATEMENTS = frozenset(
    {b"SET", b"SELECT", b"DO", b"CREATE", b"ALTER", b"COMMENT", b"COPY", b"REFRESH"}
)
#: the same for the ``sqlite3`` writer (its BEGIN TRANSACTION / COMMIT are left out: the load
#: is one transaction of the tool's own)
SQLITE_STATEMENTS = frozenset({b"CREATE", b"INSERT", b"DELETE", b"ANALYZE", b"PRAGMA"})
#: the pragmas a ``sqlite3`` file may set, and ``data_version`` (read-only), which FTS5 reads
#: itself when the file creates one of its tables
SQLITE_PRAGMAS = frozenset(
    {
        "foreign_keys",
        "encoding",
        "user_version",
        "application_id",
        "ignore_check_constraints",
        "data_version",
    }
)


class RestoreError(ExportError):
    """A restore failed; the message is one line, without secrets. Nothing was committed."""


@dataclass(frozen=True)
class RestoreResult:
    format: str
    tables: int
    rows: int


def restore(
    path: str | os.PathLike[str],
    target: str,
    *,
    as_superuser: bool = False,
    identity: str | os.PathLike[str] | None = None,
) -> RestoreResult:
    """Load the backup at ``path`` into ``target`` (``postgresql://...`` naming an empty
    database, or ``sqlite:///new.db`` naming a file that does not exist yet). The file's format
    is told from its content. ``as_superuser`` sets ``flask_backup_manager.restore_as_superuser``
    so that the file's own guard lets a superuser load it. ``identity``: the key file (age's,
    or an SSH private key) that decrypts an encrypted backup."""
    try:
        url = parse_url(target)
    except ValueError:
        raise RestoreError(
            "not a database URL: expected postgresql://... or sqlite:///path"
        ) from None
    path = Path(path)
    try:
        identities = None if identity is None else read_identities(identity)
        chunks = read_chunks(path, identities)
        head = next(chunks, b"")
        if head.startswith(SQLITE_MAGIC):
            if url.get_backend_name() != "sqlite":
                raise RestoreError("a sqlite3_db file loads into a sqlite database")
            return _restore_sqlite_file(_chain(head, chunks), url)
        fmt = sniff(head)
        backend = url.get_backend_name()
        want = {"postgres": "postgresql", "sqlite3": "sqlite"}[fmt]
        if backend != want:
            raise RestoreError(f"a {fmt} file loads into a {want} database, not {backend!r}")
        data = _chain(head, chunks)
        if fmt == "postgres":
            return restore_postgres(data, url, as_superuser)
        return _restore_sqlite(data, url)
    except RestoreError:
        raise
    except ExportError as e:
        raise RestoreError(scrub(str(e), url)) from e
    except (OSError, ValueError, zlib.error, sqlite3.Error, sqlite3.Warning) as e:
        raise RestoreError(scrub(one_line(e), url)) from e
    except Exception as e:  # psycopg errors: one line, without the password
        if type(e).__module__.startswith("psycopg"):
            raise RestoreError(scrub(one_line(e), url)) from e
        raise


def read_chunks(path: Path, identities: Sequence[Any] | None = None) -> Iterator[bytes]:
    """The file's text in chunks of about 1 MiB, decrypted if it is an age file (by its
    magic: ``identities`` then decrypt it) and gunzipped if it is gzip (by its magic)."""
    with open(path, "rb") as f:
        first = f.read(CHUNK)
        plain: Iterator[bytes] = iter(lambda: f.read(CHUNK), b"")
        if is_encrypted(first):
            if identities is None:
                raise RestoreError(
                    "the file is encrypted (age): give the key that decrypts it with"
                    " --identity KEYFILE"
                )
            f.seek(0)
            plain = decrypted_chunks(f, identities)
            first = next(plain, b"")
        try:
            chunks = itertools.chain([first], plain)
            if first.startswith(b"\x1f\x8b"):
                yield from gunzip(chunks, 4 * CHUNK)
            else:
                yield from filter(None, chunks)
        finally:
            close = getattr(plain, "close", None)
            if close is not None:
                close()  # stops a decrypting thread


def sniff(head: bytes) -> str:
    """``postgres`` or ``sqlite3``, from the first bytes of the text."""
    text = head.lstrip()
    if text.startswith(b"\\restrict ") or b"PostgreSQL database dump" in head[:4096]:
        return "postgres"
    if text.startswith((b"PRAGMA", b"BEGIN TRANSACTION")) or b"SQLite database dump" in head[:4096]:
        return "sqlite3"
    raise RestoreError("not a flask-backup-manager postgres or sqlite3 file")


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


# -- PostgreSQL

_NOT_EMPTY = """
SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n
               WHERE n.nspname NOT IN ('public', 'information_schema')
                 AND n.nspname NOT LIKE 'pg\\_%')
    OR EXISTS (SELECT FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public')
    OR EXISTS (SELECT FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'public')
    OR EXISTS (SELECT FROM pg_catalog.pg_type t
               JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
               WHERE n.nspname = 'public')
"""


def connect(url: URL):
    import psycopg

    kw = {
        k: v
        for k, v in dict(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
        ).items()
        if v is not None
    }
    kw.update({k: v for k, v in url.query.items() if isinstance(v, str)})
    return psycopg.connect(**kw)


def restore_postgres(data: Iterator[bytes], url: URL, as_superuser: bool) -> RestoreResult:

    check = psql.ScriptCheck()
    tables = rows = 0
    con = connect(url)
    try:
        cur = con.cursor()
        if cur.execute(_NOT_EMPTY).fetchone()[0]:
            raise RestoreError(
                "the target database is not empty (it has tables, views, functions, types or"
                " schemas of its own): restore into a new, empty database"
            )
        if as_superuser:
            cur.execute(f"SET {OVERRIDE} = on")
        else:  # the file's own guard says the same, unless the file was edited
            risky = cur.execute(RISKY_ROLES).fetchone()[0]
            if risky:
                raise RestoreError(
                    f"refusing to restore as this role, which {shown(risky, 120)}: loading a"
                    " schema runs its functions as the restoring role. Restore as a new role"
                    " that owns only the empty target database and belongs to no role, or"
                    " pass --as-superuser knowingly"
                )
        items = _read(check, data)
        for item in items:
            if isinstance(item, psql.Statement) and item.copy:
                tables += 1
                with cur.copy(item.text) as copy:
                    for part in items:  # the COPY's data, up to its end
                        if isinstance(part, psql.CopyEnd):
                            break
                        copy.write(part.data)
                        rows += part.data.count(b"\n")
            elif isinstance(item, psql.Statement) and item.text.strip(b" \t\r\n\f;"):
                _allowed(item.command.upper() or item.text, item.line, PG_STATEMENTS)
                cur.execute(item.text)
            # MetaCommand: the check let through only \restrict and \unrestrict
        con.commit()
    finally:
        con.close()  # without a commit: everything rolled back
    return RestoreResult("postgres", tables, rows)


# -- SQLite


def _restore_sqlite(data: Iterator[bytes], url: URL) -> RestoreResult:

    target = _new_sqlite_target(url)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    reader = sqlite_shell.ShellReader()
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.execute("BEGIN")
            con.set_authorizer(sqlite_authorizer)
            for item in _read(reader, data):
                if isinstance(item, (sqlite_shell.Command, sqlite_shell.Terminator)):
                    raise RestoreError(
                        f"line {item.line}: the file holds a line the sqlite3 shell would"
                        f" run as a command ({shown(item.text)}): refusing it"
                    )
                if isinstance(item, sqlite_shell.Statement):
                    run_sqlite(con, item.sql, item.line)
            if reader.unfinished:
                raise RestoreError(f"the file ends inside {reader.unfinished}")
            tables = con.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            ).fetchone()[0]
            rows = con.total_changes
            con.set_authorizer(None)
            con.execute("COMMIT")
        finally:
            con.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RestoreResult("sqlite3", tables, rows)


#: the first bytes of an SQLite database file (a ``sqlite3_db`` backup)
SQLITE_MAGIC = b"SQLite format 3\x00"


def _restore_sqlite_file(data: Iterator[bytes], url: URL) -> RestoreResult:
    """A ``sqlite3_db`` file copied into the new file ``url`` names (through a private temp
    file, renamed once it passes ``integrity_check``)."""
    target = _new_sqlite_target(url)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "xb") as out:
            for chunk in data:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        con = open_read_only(tmp, frozen=True)
        try:
            verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
            names = _real_tables(con)
            rows = 0
            if verdict == "ok":
                for name in names:
                    rows += con.execute(f"SELECT count(*) FROM main.{ident(name)}").fetchone()[0]
        finally:
            con.close()
        if verdict != "ok":
            raise RestoreError(f"the SQLite file fails integrity_check: {shown(verdict, 100)}")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RestoreResult("sqlite3_db", len(names), rows)


def _real_tables(con: sqlite3.Connection) -> list[str]:
    """The tables of the file that hold rows in its own pages (a virtual table's shadow tables
    among them), by SQLite's own reading of its schema: never a virtual table, whose module's
    code would run on the file's content to count it. The text of ``sqlite_master.sql`` does
    not tell (``CREATE  VIRTUAL TABLE``, written with writable_schema, is one too)."""
    try:
        found = con.execute(
            "SELECT name FROM pragma_table_list WHERE schema = 'main'"
            " AND type IN ('table', 'shadow') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).fetchall()
    except sqlite3.OperationalError:  # SQLite before 3.37: no table_list
        found = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND rootpage > 0"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            " AND sql NOT LIKE 'CREATE%VIRTUAL%'"
        ).fetchall()
    return [name for (name,) in found]


def _new_sqlite_target(url: URL) -> Path:
    """The new file an SQLite target names, refused if it holds anything already."""
    if not url.database or url.database == ":memory:":
        raise RestoreError("the sqlite target must name a new file: sqlite:///new.db")
    target = Path(url.database)
    if target.exists() and target.stat().st_size:
        raise RestoreError(f"the target file exists and is not empty: {target}")
    if not target.parent.is_dir():
        raise RestoreError(f"no such directory: {target.parent}")
    return target


_TRANSACTION = {b"BEGIN TRANSACTION", b"BEGIN", b"COMMIT", b"END", b"END TRANSACTION"}


def run_sqlite(con: sqlite3.Connection, sql: bytes, line: int, *, lossy: bool = False) -> None:
    """One statement; the file's own BEGIN / COMMIT are left out (the whole load is one
    transaction, committed at the end). Text that is not UTF-8 (SQLite keeps any bytes as
    TEXT, and only the sqlite3 shell loads them as they are) is refused, unless ``lossy``
    (the verification, which counts rows): each byte that is not UTF-8 then loads as U+FFFD,
    which never takes or gives a quote (Python's decoder replaces a byte, never the ASCII
    byte after it), so every statement keeps its rows."""
    if len(sql) < 64:  # only a short one may be BEGIN or COMMIT: a long INSERT is not split
        bare = b" ".join(sql.strip().rstrip(b";").split()).upper()
        if not bare or bare in _TRANSACTION:
            return
    _allowed(first_word(sql), line, SQLITE_STATEMENTS)
    try:
        text = sql.decode(errors="replace" if lossy else "strict")
    except UnicodeDecodeError:
        raise RestoreError(
            "the file holds text that is not UTF-8, which only the sqlite3 shell can load"
        ) from None
    con.execute(text).fetchall()  # APSW runs a statement that gives rows as they are read


def sqlite_authorizer(action: int, arg1: str | None, arg2: str | None = None, *_: object) -> int:
    """SQLite's own word on what a statement does, past any trick of its text: no ATTACH or
    DETACH (a file written anywhere), no transaction control, only the writer's pragmas, and
    the page size read (not set): R*Tree's CREATE VIRTUAL TABLE reads it to size its nodes."""
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() == "page_size" and arg2 is None:
        return sqlite3.SQLITE_OK
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_TRANSACTION):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_SAVEPOINT:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() not in SQLITE_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _read(reader: psql.ScriptCheck | sqlite_shell.ShellReader, data: Iterator[bytes]) -> Iterator:
    """What ``reader`` makes of the file's chunks, item by item, its end included."""
    for chunk in data:
        yield from reader.feed(chunk)
    yield from reader.close()


def _allowed(word: bytes, line: int, kinds: frozenset[bytes]) -> None:
    """Refuse a statement (its first ``word``, or its text) of a kind the writer never emits."""
    if word not in kinds:
        raise RestoreError(
            f"line {line}: a {shown(word, 20)} statement is not one a backup holds:"
            " refusing the file"
        )


_WORD = re.compile(rb"[A-Za-z_]+")


def first_word(sql: bytes) -> bytes:
    """The statement's first keyword, upper-cased, past white space and comments as SQLite
    reads them (``--`` ends at LF, ``/* */`` do not nest), or the text when it starts with
    anything else or a comment never ends: no list allows that. (A PostgreSQL statement's
    first word is psql's reader's own: :attr:`.checks.psql.Statement.command`.)"""
    i, n = 0, len(sql)
    while i < n:
        if sql[i] in b" \t\r\n\f":
            i += 1
        elif sql.startswith(b"--", i):
            i = sql.find(b"\n", i)
            i = n if i < 0 else i
        elif sql.startswith(b"/*", i):
            end = sql.find(b"*/", i + 2)
            if end < 0:
                return sql
            i = end + 2
        else:
            break
    m = _WORD.match(sql, i)
    return m.group().upper() if m else sql
