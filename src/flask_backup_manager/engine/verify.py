"""Verification: before a backup counts, its file is loaded the way the vendor will load it,
into a scratch target, and every table's rows there are compared with the snapshot's (the
rows each writer wrote: :attr:`.base.Tracker.counts`; 0 for a table copied without rows).

- ``sqlite3_db``: the file is opened read-only and each table counted (after the
  ``integrity_check`` of :func:`.export.check`).
- ``sqlite3``: the text the read-through decompresses once anyway is fed, statement by
  statement as the sqlite3 shell cuts it, into a temporary SQLite database in a private temp
  file beside the output (``.<output>.<hex>.verify.part``, which the cleaner of a dead
  worker's files removes too), with the journal and syncing off: nothing of it is kept. Each
  statement runs as :func:`.restore.run_sqlite` runs it, under the restore's authorizer, so
  the file loads here as ``python -m flask_backup_manager restore`` loads it (but for text
  that is not UTF-8, which only the shell loads as it is: it is counted here with each such
  byte as U+FFFD, see :func:`.restore.run_sqlite`). The statements run in a process of
  their own (:class:`SQLiteLoad`), on APSW's current SQLite, overlapping with the reading.
- ``postgres``: the read-through counts the data lines of each COPY block, so even a file
  that is not loaded is compared. With a server to load it on (``verify_postgres_url``, where
  the role may create databases) the file is restored by :func:`.restore.restore_postgres`
  into a new database ``fbm_verify_<hex>``, counted there and dropped, always. A role that
  the file's own guard refuses (a superuser, a role that may run programs or reach the
  server's files) is never used: the customer's schema runs its functions as the loading
  role. The file is then not loaded, and the manifest says why. Verifications on one server
  take turns (an advisory lock), as the guard also refuses a role that owns another database:
  a second scratch database. A worker killed during one leaves its ``fbm_verify_`` database
  behind, and the next verification says so ("owns other databases: ...") until it is dropped.

Virtual tables (SQLite FTS5, ...): the writer copies their shadow tables' rows and the
snapshot's count is the module's own ``count(*)``, which the same module gives in the copy:
they are compared as any table. Where the module cannot count (one only the app defines) the
source says 0 and the copy cannot say anything: such a table is left out of the comparison.
Their shadow tables are not tables of the snapshot's list and are not compared one by one: the
virtual table's count reads them.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import select
import sqlite3
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Waited  # not the builtin before Python 3.11
from pathlib import Path
from typing import Any

import apsw

from .base import ident, one_line, scrub, shown, temp_beside
from .checks import psql, sqlite_shell
from .child import die_with_parent, open_read_only, python_here
from .gzipout import gunzip
from .model import ExportCancelled, ExportError, Verification
from .parallel import package_path
from .restore import (
    RestoreError,
    connect,
    read_chunks,
    restore_postgres,
    run_sqlite,
    sqlite_authorizer,
)
from .url import URL, parse_url
from .writers.postgres.sql import RISKY_ROLES

#: what SQLite raises, through Python's module (the export) or APSW (the loading process)
SQLITE_ERRORS = (sqlite3.Error, apsw.Error)

#: the advisory lock (in the database of ``verify_postgres_url``) that verifications on one
#: server take in turn
LOCK_KEY = 0x66626D76  # "fbmv"
#: what a ``postgres`` file's verification says when no server to load it on is configured
NO_SERVER = "not loaded: no BACKUP_MANAGER_VERIFY_POSTGRES_URL"


def compare(
    expected: Mapping[str, int],
    found: Mapping[str, int],
    *,
    loaded: bool,
    how: str,
    uncounted: frozenset[str] = frozenset(),
) -> Verification:
    """Each table of ``expected`` (the snapshot's rows) against ``found`` (the file's); a
    table missing from ``found`` has no rows in the file; those of ``uncounted`` are left out
    (a virtual table whose module cannot count)."""
    mismatches = []
    tables = rows = 0
    for key, want in expected.items():
        if key in uncounted:
            continue
        got = found.get(key, 0)
        tables += 1
        rows += got
        if got != want:
            mismatches.append(f"{shown(key, 100)}: {got} in the file, {want} in the snapshot")
    return Verification(loaded, how, tables, rows, tuple(mismatches))


def count_sqlite(
    con: sqlite3.Connection, keys: Mapping[str, int]
) -> tuple[dict[str, int], frozenset[str]]:
    """``count(*)`` of each table of ``keys`` in ``con``'s main database (absent: not in the
    result), and the virtual tables that cannot be counted there."""
    kinds = dict(
        con.execute(
            "SELECT name, CASE WHEN sql LIKE 'CREATE VIRTUAL%' THEN 'virtual' ELSE type END"
            " FROM main.sqlite_master WHERE type = 'table'"
        ).fetchall()
    )
    found: dict[str, int] = {}
    uncounted: set[str] = set()
    for key in keys:
        if key not in kinds:
            continue
        try:
            found[key] = con.execute(f"SELECT count(*) FROM main.{ident(key)}").fetchone()[0]
        except SQLITE_ERRORS:
            if kinds[key] != "virtual":
                raise
            uncounted.add(key)
    return found, frozenset(uncounted)


def verify_sqlite_db(path: Path, expected: Mapping[str, int]) -> Verification:
    """Open the ``sqlite3_db`` file ``path`` and count its tables."""
    con = open_read_only(path, frozen=True)
    try:
        found, uncounted = count_sqlite(con, expected)
    finally:
        con.close()
    return compare(expected, found, loaded=True, how="opened", uncounted=uncounted)


class SQLiteLoad(sqlite_shell.ScriptCheck):
    """The read-through check of a ``sqlite3`` file (:class:`.checks.sqlite_shell.ScriptCheck`)
    that also loads each statement it lets through into a scratch SQLite database beside
    ``beside`` (:class:`ScratchLoad`): the file is decompressed and cut into statements once,
    for both. The loading runs in a process of its own (:func:`load_main`), fed the statements
    through a pipe, so that it overlaps with the reading on another core: a thread would not,
    as each statement hands the GIL back and forth with the reader. Where no process can be
    started (an app embedded in a program that is not Python) each statement loads here, in
    turn. Call :meth:`result` after ``close()``, and :meth:`discard` always."""

    def __init__(self, beside: Path) -> None:
        super().__init__()
        self.path = temp_beside(beside, f"{uuid.uuid4().hex[:8]}.verify")
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.here: ScratchLoad | None = None
        code = f"import sys; sys.path[:0] = sys.argv[1:]; import {__name__} as m; m.load_main()"
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-I", "-c", code, *package_path()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=1 << 16,
            )
        except OSError:
            self.proc, self.here = None, ScratchLoad(self.path)
            return
        try:  # Linux: room for a few statements, so that the reader seldom waits
            fcntl.fcntl(self.proc.stdin.fileno(), _F_SETPIPE_SZ, 1 << 20)  # type: ignore[union-attr]
        except OSError:
            pass
        self._send(json.dumps({"path": str(self.path), "parent": os.getpid()}).encode() + b"\n")
        self.proc.stdin.flush()  # type: ignore[union-attr]  # it gets ready while the export runs

    def _judge(self, items: list[sqlite_shell.Item]) -> None:  # type: ignore[override]
        """The check's own judgement of each item, then its statements loaded, in order."""
        super()._judge(items)
        for item in items:
            if not isinstance(item, sqlite_shell.Statement):
                continue
            if self.here is None:
                self._send(_FRAME.pack(len(item.sql), item.line), item.sql)
                continue
            try:
                self.here.run(item.sql, item.line)
            except Exception as e:
                raise ExportError(said(e)) from e

    def _send(self, *data: bytes) -> None:
        """Write to the loading process; one that stopped (a statement failed) says why."""
        try:
            for part in data:
                self.proc.stdin.write(part)  # type: ignore[union-attr]
        except BrokenPipeError:
            self._reply()
            raise ExportError("verification failed: the loading process stopped") from None

    def _reply(self) -> dict[str, Any]:
        """The loading process's answer once it ends: raises its error, if it had one."""
        assert self.proc is not None
        return answer(self.proc, "verification failed: the loading process")

    def result(
        self, expected: Mapping[str, int], cancel: threading.Event | None = None
    ) -> Verification:
        """The tables counted once the loading ends. Setting ``cancel`` stops the loading
        process at once (ExportCancelled): the last statements (a file's CREATE INDEX over
        millions of rows) may run for minutes after the read-through is done."""
        if self.here is not None:
            found, uncounted = self.here.count(expected)
        else:
            assert self.proc is not None
            reply = awaited(lambda: self._finish(list(expected)), cancel, self.proc)
            found, uncounted = reply["found"], frozenset(reply["uncounted"])
        return compare(
            expected,
            found,
            loaded=True,
            how="loaded into a temporary SQLite database",
            uncounted=uncounted,
        )

    def _finish(self, keys: list[str]) -> dict[str, Any]:
        """End the statements, name the tables to count, and wait for the answer."""
        self._send(_FRAME.pack(0, 0), json.dumps(keys).encode() + b"\n")
        return self._reply()

    def discard(self) -> None:
        """Stop the loading and remove the scratch database."""
        if self.here is not None:
            self.here.close()
        if self.proc is not None:
            end(self.proc)
        self.path.unlink(missing_ok=True)


class ScratchLoad:
    """The scratch database at ``path`` that a ``sqlite3`` file's statements load into, each
    run as :func:`.restore.run_sqlite` runs it, under the restore's authorizer, in one
    transaction, on APSW's SQLite (current: it parses a dump's INSERTs twice as fast as an
    older system library does). Nothing of it is kept: no journal to roll back with, no
    fsync, no lock to share; big pages, 32 MB of them cached (fewer writes); and the shell's
    default for triggers (APSW's SQLite is built with recursive ones on). Its name is removed
    once it is open (no journal, no second connection: SQLite needs it no more), so that a
    process killed during the load, an encrypted backup's above all, leaves no copy of the
    customer's rows: the kernel frees the file."""

    PRAGMAS = (
        "page_size=65536",
        "cache_size=-32000",
        "journal_mode=OFF",
        "synchronous=OFF",
        "locking_mode=EXCLUSIVE",
        "recursive_triggers=OFF",
    )

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.con = apsw.Connection(str(path))
        for pragma in self.PRAGMAS:
            self.con.execute(f"PRAGMA {pragma}").fetchall()
        self.con.execute("BEGIN")
        Path(path).unlink(missing_ok=True)
        self.con.authorizer = sqlite_authorizer
        self.con.exec_trace = self._one_statement
        self._statements = 0
        self._stubs: set[tuple[str, str]] = set()

    def _one_statement(self, *_: object) -> bool:
        """APSW runs every statement of a text; the shell's cut gave one: a second is refused
        (Python's sqlite3 refuses it itself)."""
        self._statements += 1
        return self._statements == 1

    def run(self, sql: bytes, line: int) -> None:
        """Run one statement; a function or collation only the app defines (which the export
        warned of) is defined as a stub that refuses to run, as the ``sqlite3_db`` writer does:
        the file's CHECKs are off while its rows load, so a CHECK calling one loads, and an
        index or a stored generated column needing one fails as it does there."""
        while True:
            self._statements = 0
            try:
                run_sqlite(self.con, sql, line, lossy=True)
                return
            except apsw.SQLError as e:
                m = _UNDEFINED.fullmatch(str(e).removeprefix("SQLError: "))
                if m is None or (m[1], m[2]) in self._stubs:
                    raise
            self._stubs.add((m[1], m[2]))
            if m[1] == "function":
                self.con.create_scalar_function(m[2], _refuse(m[1], m[2]), deterministic=True)
            else:
                self.con.create_collation(m[2], _refuse(m[1], m[2]))

    def count(self, keys: Mapping[str, int] | list[str]) -> tuple[dict[str, int], frozenset[str]]:
        """:func:`count_sqlite` of the loaded database."""
        self.con.authorizer = self.con.exec_trace = None
        return count_sqlite(self.con, dict.fromkeys(keys, 0))

    def close(self) -> None:
        self.con.close()


#: a statement's frame on the pipe: its length and its first line (a length of 0 ends them)
_FRAME = struct.Struct(">II")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def load_main() -> None:
    """The loading process of :class:`SQLiteLoad`: a JSON line (the scratch database's path,
    the parent's pid), then framed statements on stdin, loaded by :class:`ScratchLoad`; then a
    JSON line of the tables to count. Prints ``{"found": ..., "uncounted": ...}`` and exits 0,
    or ``{"error": ...}`` and exits 1 at the first statement that fails."""
    stdin = sys.stdin.buffer
    job = json.loads(stdin.readline())
    die_with_parent(job["parent"])
    try:
        scratch = ScratchLoad(job["path"])
        while (frame := _FRAME.unpack(stdin.read(_FRAME.size)))[0]:
            scratch.run(stdin.read(frame[0]), frame[1])
        found, uncounted = scratch.count(json.loads(stdin.readline()))
        scratch.close()
        reply: dict[str, Any] = {"found": found, "uncounted": sorted(uncounted)}
    except Exception as e:
        reply = {"error": said(e)}
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    os._exit(1 if "error" in reply else 0)


def said(e: Exception) -> str:
    """``e`` as the exporting process says it: one line, without APSW's class name."""
    if isinstance(e, apsw.FullError):
        return "No space left on device"
    text = one_line(e)
    return text.removeprefix(f"{type(e).__name__}: ") if isinstance(e, apsw.Error) else text


#: what SQLite says when the schema names a function or collation only the app defines
_UNDEFINED = re.compile(r"no such (function|collation sequence): (.+)", re.DOTALL)


def _refuse(kind: str, name: str) -> Callable[..., Any]:
    def refuse(*args: object) -> Any:
        raise ExportError(
            f"verification failed: loading the file needs the app's {kind} {shown(name)},"
            " which SQLite does not define"
        )

    return refuse


#: one name of a COPY statement's target as the ``postgres`` writers write it: a quoted
#: identifier (``"a""b"``), a Unicode one (``U&"!00E9" UESCAPE '!'``), or a plain word
_NAME = re.compile(
    rb"""\s*(?:[uU]&"(?P<u>(?:[^"]|"")*)"\s+UESCAPE\s+'!'|"(?P<q>(?:[^"]|"")*)"|(?P<w>[A-Za-z_][A-Za-z0-9_$]*))\s*""",
)
_COPY = re.compile(rb"\s*COPY\s", re.IGNORECASE)
_UESCAPE = re.compile(r"!(?:!|\+([0-9A-Fa-f]{6})|([0-9A-Fa-f]{4}))")


def copy_target(text: bytes) -> str:
    """The table key (``name`` in ``public``, else ``schema.name``) a ``COPY`` statement
    loads, read back from the writer's quoting (:func:`.writers.postgres.sql.quoted_ident`)."""
    m = _COPY.match(text)
    if m is None:
        raise ExportError(f"not a COPY statement: {shown(text)}")
    names, pos = [], m.end()
    while True:
        m = _NAME.match(text, pos)
        if m is None:
            raise ExportError(f"a COPY statement whose table cannot be read: {shown(text)}")
        if m.group("w") is not None:
            names.append(m.group("w").decode().lower())
        else:
            raw = (m.group("u") if m.group("u") is not None else m.group("q")).decode()
            raw = raw.replace('""', '"')
            if m.group("u") is not None:
                raw = _UESCAPE.sub(_unescape, raw)
            names.append(raw)
        pos = m.end()
        if text[pos : pos + 1] != b".":
            break
        pos += 1
    if len(names) == 1 or names[0] == "public":
        return names[-1]
    return f"{names[0]}.{names[1]}"


def _unescape(m: re.Match[str]) -> str:
    code = m.group(1) or m.group(2)
    return chr(int(code, 16)) if code else "!"


class CopyCount(psql.ScriptCheck):
    """The read-through check of a ``postgres`` file (:class:`.checks.psql.ScriptCheck`) that
    also counts the data lines of each COPY block, by the table it loads."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self._table: str | None = None

    def feed(self, data: bytes) -> list[psql.Item]:
        items = super().feed(data)
        self._count(items)
        return items

    def close(self) -> list[psql.Item]:
        items = super().close()
        self._count(items)
        return items

    def _count(self, items: list[psql.Item]) -> None:
        for item in items:
            if isinstance(item, psql.CopyData) and self._table is not None:
                self.rows[self._table] += item.data.count(b"\n")
            elif isinstance(item, psql.Statement) and item.copy:
                self._table = copy_target(item.text)
                self.rows.setdefault(self._table, 0)
            elif isinstance(item, psql.CopyEnd):
                self._table = None


def writable(fd: int) -> None:
    """Wait until the pipe ``fd`` takes more bytes, 0.1 s at most (poll: select refuses
    descriptors from 1024 up, which a busy server process may well have)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll(100)


class PsqlCheck:
    """The check of a ``postgres`` file as it is written (:class:`.gzipout.Inline`), in a
    process of its own (:func:`check_main`) fed the file's gzip bytes through a pipe: it
    reads them as psql would (:class:`CopyCount`, which counts each table's COPY rows for the
    verification) while this process reads the rows from the server. A thread would not do:
    the check holds the GIL for milliseconds at a time (``bytes.find`` over the COPY data),
    which stalls the thread reading the rows; and reading the file back after writing costs
    0.4 s per 200 MB of text, on one core.

    ``proc`` is None where no process can be started (no Python, or not POSIX); :attr:`lost`
    is set once it ends without a verdict (a Python that cannot import this package, the OOM
    killer): either way the file is read back after, as without this. The gzip thread calls
    :meth:`feed`; then call :meth:`close` (it raises what the check refused), and
    :meth:`discard` always. Setting ``cancel``, or :meth:`abandon`, stops a feed waiting for
    the process to read (one that has stopped reading would block it forever)."""

    #: :class:`.gzipout.Inline` feeds it the file's bytes, not its text
    gzipped = True

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.rows: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        #: the process ended without a verdict: the file is to be read back
        self.lost = False
        self._cancel = cancel
        self._abandoned = threading.Event()
        if os.name != "posix" or not python_here():
            return
        code = f"import sys; sys.path[:0] = sys.argv[1:]; import {__name__} as m; m.check_main()"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", code, *package_path()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
            )
        except OSError:
            return
        fd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        try:  # Linux: room for a megabyte of the file, so that the writer seldom waits
            fcntl.fcntl(fd, _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        os.set_blocking(fd, False)  # feed() waits itself, and can stop waiting
        try:
            self.feed(json.dumps({"parent": os.getpid()}).encode() + b"\n")
        except BaseException:  # cancelled already: no one would discard it
            end(self.proc)
            raise

    def feed(self, data: bytes) -> bool:
        """Send ``data`` to the check, all of it; False once the process is lost (then feed
        no more). Raises what it refused, or ExportCancelled once cancelled or abandoned."""
        assert self.proc is not None and self.proc.stdin is not None
        if self.lost:
            return False
        fd, view = self.proc.stdin.fileno(), memoryview(data)
        while view:
            if self._abandoned.is_set() or (self._cancel is not None and self._cancel.is_set()):
                raise ExportCancelled()
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # the pipe is full: wait until it takes more
                writable(fd)
            except BrokenPipeError:  # it ended: at something it refuses, or lost
                return self._verdict(None) is not None
        return True

    def abandon(self) -> None:
        """Stop feeding (the writing failed): a feed under way raises ExportCancelled."""
        self._abandoned.set()

    def close(self, cancel: threading.Event | None = None) -> bool:
        """Wait for the check to read the rest (the pipe may hold a megabyte of the file, many
        more of text) and take its verdict: True, with :attr:`rows`; False if the process was
        lost (read the file back). Raises what the check refused; setting ``cancel`` stops it
        at once (ExportCancelled)."""
        if self.lost:
            return False
        reply = self._verdict(cancel)
        if reply is None:
            return False
        self.rows = reply["rows"]
        return True

    def _verdict(self, cancel: threading.Event | None) -> dict[str, Any] | None:
        proc = self.proc
        assert proc is not None
        try:
            return awaited(lambda: answer(proc, "the check's process"), cancel, proc)
        except Unanswered:
            self.lost = True
            return None

    def discard(self) -> None:
        if self.proc is not None:
            end(self.proc)


def check_main() -> None:
    """The process of :class:`PsqlCheck`: a JSON line (the parent's pid), then the bytes of
    a gzipped ``postgres`` file on stdin, to its end. Prints ``{"rows": ...}`` (the COPY rows
    of each table) and exits 0, or ``{"error": ...}`` and exits 1 at the first thing the check
    refuses."""
    stdin = sys.stdin.buffer
    job = json.loads(stdin.readline())
    die_with_parent(job["parent"])
    try:
        count = CopyCount()
        for text in gunzip(iter(lambda: stdin.read1(1 << 20), b"")):
            count.feed(text)
        count.close()
        reply: dict[str, Any] = {"rows": count.rows}
    except Exception as e:
        reply = {"error": said(e)}
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    os._exit(1 if "error" in reply else 0)


def awaited(
    talk: Callable[[], dict[str, Any]],
    cancel: threading.Event | None,
    proc: subprocess.Popen[bytes],
) -> dict[str, Any]:
    """``talk()`` (the last words with ``proc``) run in a thread and waited for here: setting
    ``cancel`` kills ``proc``, which ends the talk at once, and raises ExportCancelled (so
    does any other interruption of the wait, KeyboardInterrupt say, before it raises)."""
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(talk)
        try:
            while True:
                try:
                    return reply.result(timeout=0.1)
                except Waited:
                    if cancel is not None and cancel.is_set():
                        raise ExportCancelled() from None
        except BaseException:
            if not reply.done():
                proc.kill()
                reply.exception()  # its pipes closed: it ends at once
            raise


class Unanswered(ExportError):
    """A process of ours ended without its answer."""


def answer(proc: subprocess.Popen[bytes], who: str) -> dict[str, Any]:
    """The JSON answer of a process of ours once it ends (its stdin closed first): raises
    the error it gives, or, where it gives none, Unanswered saying that ``who`` ended and
    its last line."""
    out, err = proc.communicate()  # a broken pipe to its stdin is ignored there
    try:
        reply = json.loads(out)
    except ValueError:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["nothing said"]
        raise Unanswered(
            f"{who} ended (exit {proc.returncode}): {one_line(ValueError(last[0]))}"
        ) from None
    if "error" in reply:
        raise ExportError(reply["error"])
    return reply


def end(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process of ours, if it still runs, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        try:
            pipe.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass


def verify_postgres(
    path: Path,
    expected: Mapping[str, int],
    copied: Mapping[str, int],
    server: str | None,
) -> Verification:
    """A ``postgres`` file, read through already (``copied``: the rows of its COPY blocks),
    restored into a scratch database of ``server`` when one is named and its role may load a
    customer's schema; else compared by ``copied``, saying why it was not loaded."""
    if not server:
        return compare(expected, copied, loaded=False, how=NO_SERVER)
    try:
        url = parse_url(server)
    except ValueError:
        raise ExportError(
            "BACKUP_MANAGER_VERIFY_POSTGRES_URL is not a database URL: expected postgresql://..."
        ) from None
    if url.get_backend_name() != "postgresql":
        raise ExportError("BACKUP_MANAGER_VERIFY_POSTGRES_URL must name a PostgreSQL server")
    try:
        return _verify_on(path, expected, copied, url)
    except ExportError as e:
        raise ExportError(_hidden(str(e), url)) from e
    except Exception as e:  # psycopg's errors: one line, without the server's password
        if type(e).__module__.startswith("psycopg"):
            raise ExportError(f"verification failed: {_hidden(one_line(e), url)}") from e
        raise


def _hidden(text: str, url: URL) -> str:
    """``text`` without the scratch server's password, nor its host and role as libpq quotes
    them (``at "db.internal"``, ``role "backup"``): the failure is shown on the pages, to
    anyone who may view backups, and the host's configuration is not theirs to read."""
    text = scrub(text, url)
    for value in (url.host, url.username):
        if value:
            text = text.replace(f'"{value}"', '"***"')
    return text


def _verify_on(
    path: Path, expected: Mapping[str, int], copied: Mapping[str, int], url: URL
) -> Verification:
    admin = connect(url)
    try:
        admin.autocommit = True
        # one verification at a time per server: the file's guard refuses a role that owns
        # another database, which a second scratch database made meanwhile would be
        admin.execute("SELECT pg_catalog.pg_advisory_lock(%s)", (LOCK_KEY,))
        # a scratch database of ours that outlived its worker (killed while loading): with
        # the lock held, none is in use; left, it would make every later check "not loaded"
        for (stale,) in admin.execute(_STALE).fetchall():
            admin.execute(f"DROP DATABASE IF EXISTS {stale} WITH (FORCE)")
        risky = admin.execute(RISKY_ROLES).fetchone()[0]
        if risky:
            why = (
                f"not loaded: the role of BACKUP_MANAGER_VERIFY_POSTGRES_URL {shown(risky, 80)}"
                " (a customer's schema is never loaded as such a role: its functions would run"
                " as it): name an ordinary role with CREATEDB, owning no other database and"
                " a member of no role"
            )
            return compare(expected, copied, loaded=False, how=why)
        name = f"fbm_verify_{uuid.uuid4().hex[:16]}"  # ours alone: no quoting needed
        admin.execute(f"CREATE DATABASE {name}")
        try:
            return _load(path, expected, url, name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


#: the scratch databases this role owns, by the names :func:`_verify_on` gives them alone
_STALE = r"""
SELECT d.datname FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles o ON o.oid = d.datdba
WHERE o.rolname = CURRENT_USER AND d.datname ~ '^fbm_verify_[0-9a-f]{16}$'
"""

_TABLES = """
SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text
            ELSE n.nspname::text || '.' || c.relname::text END,
       pg_catalog.format('SELECT count(*) FROM ONLY %I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
"""


def _load(path: Path, expected: Mapping[str, int], url: URL, name: str) -> Verification:
    target = dataclasses.replace(url, database=name)
    try:
        restore_postgres(read_chunks(path), target, False)
    except RestoreError as e:
        raise ExportError(f"verification failed: the file does not restore: {e}") from e
    except Exception as e:  # the server refused a statement or a COPY row of it
        if not type(e).__module__.startswith("psycopg"):
            raise
        raise ExportError(f"verification failed: the file does not restore: {one_line(e)}") from e
    con = connect(target)
    try:
        found = {}
        for key, count in con.execute(_TABLES).fetchall():
            if key in expected:
                found[key] = con.execute(count).fetchone()[0]
    finally:
        con.close()
    return compare(expected, found, loaded=True, how="restored into a scratch PostgreSQL database")


__all__ = [
    "NO_SERVER",
    "CopyCount",
    "SQLiteLoad",
    "compare",
    "copy_target",
    "verify_postgres",
    "verify_sqlite_db",
]
