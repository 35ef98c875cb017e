"""``export()``: open a source on one snapshot, run a writer into a private temp file, check it,
then move it into place. A failed export leaves nothing at the output path."""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .base import Tracker, one_line, scrub, temp_beside
from .child import open_read_only
from .encryption import STANZAS_MAX, Recipient, Sealer, describe
from .gzipout import Inline, gunzip
from .manifest import comment_lines, complete, head
from .model import (
    FORMATS,
    ExportCancelled,
    ExportError,
    ProgressCallback,
    Source,
    SourceInfo,
    Verification,
)
from .redaction import Profile, Redaction, as_redaction
from .url import URL, parse_url
from .verify import CopyCount, PsqlCheck, SQLiteLoad, compare, count_sqlite, verify_postgres

if TYPE_CHECKING:
    import sqlalchemy as sa

Writer = Callable[[Source, Path, Tracker], None]

#: Every path an export can take: (kind of source, format) -> its writer, "module:function"
#: under this package, imported on first use (so the SQLite paths never load SQLAlchemy or
#: psycopg). Each writer is given the kind of source it was written for. A path of two steps
#: builds a ``sqlite3_db`` file with the first, then writes the format from that file, opened
#: as an SQLite source, with the second: the SQL text loads into exactly that database.
PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("sqlite", "sqlite3_db"): ("writers.sqlite.from_sqlite:write_db",),
    ("sqlite", "sqlite3"): ("writers.sqlite.from_sqlite:write_sql",),
    ("sqlite", "postgres"): ("writers.postgres.from_sqlite:write_postgres",),
    ("postgresql", "postgres"): ("writers.postgres.from_postgres:write_postgres",),
    ("postgresql", "sqlite3_db"): ("writers.sqlite.from_postgres:write_db",),
    ("postgresql", "sqlite3"): (
        "writers.sqlite.from_postgres:write_db",
        "writers.sqlite.from_sqlite:write_sql",
    ),
}

#: Where each path's steps end, in percent of a run: the rows of its first step are copied up
#: to the first number, a second step (the SQL text written from the built file) runs up to
#: the second; verifying the file takes the rest, up to 99. Measured on pgbench tables
#: (500,000 rows, 49 MB) from either database: the percent then moves at about the pace of
#: the clock, and never sits at 99% for the last third of a run.
WEIGHTS: dict[tuple[str, str], tuple[int, ...]] = {
    ("sqlite", "sqlite3_db"): (60,),
    ("sqlite", "sqlite3"): (75,),
    ("sqlite", "postgres"): (88,),
    ("postgresql", "postgres"): (80,),
    ("postgresql", "sqlite3_db"): (88,),
    ("postgresql", "sqlite3"): (40, 90),
}

#: Each kind of source database (the URL's backend name) -> its source class.
SOURCES: dict[str, str] = {
    "sqlite": "sources.sqlite:SQLiteSource",
    "postgresql": "sources.postgres:PostgresSource",
}

#: The formats each kind of source database can be exported to.
SUPPORTED: dict[str, tuple[str, ...]] = {
    kind: tuple(f for k, f in PATHS if k == kind) for kind, _ in PATHS
}

#: The module that reads each SQL format as its client does (``ScriptCheck``): every file is
#: read through it before it counts as done, and a line the client would take as a command the
#: writer did not mean to write refuses the backup.
SCRIPT_CHECKS: dict[str, str] = {"sqlite3": "checks.sqlite_shell", "postgres": "checks.psql"}


class ScriptCheck(Protocol):
    def feed(self, data: bytes) -> None:
        """The next part of the file's (decompressed) text; raises ExportError on a finding."""

    def close(self) -> None:
        """The end of the file; raises ExportError if the text ends inside something."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    size: int
    sha256: str
    tables: int
    rows: int
    #: what the export noticed and a person should know (e.g. a view calling an unknown function)
    warnings: tuple[str, ...] = ()
    #: each table's rows in the file, by key
    table_rows: Mapping[str, int] = field(default_factory=dict)
    #: the database copied (dialect, server version, name, schema revision)
    source: SourceInfo | None = None
    #: what loading the file the way the vendor will showed (None: ``verify=False``)
    verification: Verification | None = None
    #: what the copy is, as JSON (:func:`.manifest.complete`): the head written at the top of
    #: an SQL file, then every table's rows, the file's name, size and sha256, and the
    #: verification
    manifest: Mapping[str, Any] = field(default_factory=dict)
    #: who can read the file, which is then their age encryption (empty: not encrypted)
    recipients: tuple[Recipient, ...] = ()


def source_url(source: str | sa.URL | sa.Engine) -> URL | sa.URL:
    """The URL to open: a string is parsed here, without importing SQLAlchemy (an Engine or
    URL comes from someone who has it loaded already)."""
    # not echoed: a malformed URL may still hold a password
    message = "not a database URL: expected postgresql://... or sqlite:///path"
    if isinstance(source, str):
        try:
            return parse_url(source)
        except ValueError as e:
            raise ExportError(message) from e
    import sqlalchemy as sa

    if isinstance(source, sa.Engine):
        return source.url
    try:
        return sa.engine.make_url(source)
    except sa.exc.ArgumentError as e:
        raise ExportError(message) from e


def open_source(
    url: URL | sa.URL,
    *,
    metadata: sa.MetaData | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    no_rows: Iterable[str] = (),
    copy_beside: Path | None = None,
    lock_timeout: float | None = None,
    cancel: threading.Event | None = None,
    phase: Callable[[str], None] | None = None,
    redaction: Redaction | None = None,
) -> Source:
    """The source ``url`` names, opened on one snapshot. ``copy_beside``: where an SQLite
    source puts its private copy of the snapshot, if it makes one (beside that path, named
    after it; see :class:`.SQLiteSource`). ``phase`` hears what the source waits for
    before it waits (a lock another session holds). ``redaction``'s table rules join
    ``exclude`` (``skip``) and ``no_rows``; the source applies its column rules itself, in
    the query that reads each table, and refuses (ExportError naming the key) a rule that
    cannot apply to the database's own tables."""
    kind = url.get_backend_name()
    if kind not in SOURCES:
        raise ExportError(f"unsupported database {kind!r}: use postgresql or sqlite")
    if redaction is not None:
        exclude = [*(exclude or ()), *redaction.keys_with("skip")]
        no_rows = [*no_rows, *redaction.keys_with("no_rows")]
    return load(SOURCES[kind])(
        url,
        metadata=metadata,
        include=include,
        exclude=exclude,
        no_rows=no_rows,
        redaction=redaction,
        copy_beside=copy_beside,
        lock_timeout=lock_timeout,
        cancel=cancel,
        phase=phase,
    )


def load(target: str) -> Any:
    """The object a ``"module:name"`` of :data:`SOURCES` or :data:`PATHS` names, its module
    (under this package) imported now: each on first use, so that an SQLite export never loads
    psycopg, and one from PostgreSQL to ``postgres`` never SQLAlchemy nor the SQLite source."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(f".{module}", __package__), name)


def writer_for(source_kind: str, format: str) -> Future[list[Writer]]:
    """The steps of the path from ``source_kind`` to ``format`` (:data:`PATHS`), imported by a
    thread of their own while the source opens (SQLAlchemy's modules, for the paths that use
    them, take 0.2-0.4 s; the source meanwhile waits for its snapshot copy or the server's
    answers). The source's module is imported first, here, so that the two threads never
    import the same modules at once while the source opens. Its ImportError is raised by
    ``result()`` as it is."""
    if (source_kind, format) not in PATHS:
        raise ExportError(f"unsupported database {source_kind!r}: use postgresql or sqlite")
    load(SOURCES[source_kind])
    pool = ThreadPoolExecutor(1, thread_name_prefix="export-import")
    try:
        return pool.submit(lambda: [load(target) for target in PATHS[(source_kind, format)]])
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one import


def export(
    source: str | sa.URL | sa.Engine,
    format: str,
    output: str | os.PathLike[str],
    *,
    metadata: sa.MetaData | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    no_rows: Iterable[str] = (),
    progress: ProgressCallback | None = None,
    lock_timeout: float | None = None,
    cancel: threading.Event | None = None,
    redaction: Redaction | Profile | None = None,
    manifest: Mapping[str, Any] | None = None,
    verify: bool = True,
    verify_postgres_url: str | None = None,
    recipients: Sequence[Recipient] = (),
) -> ExportResult:
    """Copy the database at ``source`` (an SQLAlchemy URL or Engine) into ``output`` in ``format``.

    ``metadata`` (the host app's ``db.metadata``) decides column types where it describes a table.
    ``include``/``exclude`` take table keys (``name``, or ``schema.name`` outside the default
    schema). ``no_rows`` takes table keys (or patterns) of tables copied with their schema and
    no rows: their AUTOINCREMENT counter or sequences start afresh, and no freed page of a
    ``sqlite3_db`` file holds their rows (the Backup Manager's own history stays behind).
    ``progress`` receives a :class:`Progress` per table and a few times a second.
    ``lock_timeout`` bounds the wait, in seconds, for a table someone else holds locked.
    Setting ``cancel`` (from another thread) interrupts the export even inside a query; it then
    raises :class:`ExportCancelled`. Any other failure raises :class:`ExportError` with a
    one-line message. Either way nothing is left at ``output``.

    ``redaction`` (a :class:`.redaction.Profile`, or a :class:`.redaction.Redaction` with its
    key) replaces the values and rows its rules name, on every path. ``manifest`` holds what
    the caller knows of the copy (app, version, created, by whom): written, with the format,
    the source and the redaction's rules, at the head of an SQL file (:mod:`.manifest`).
    ``verify``: load the file the way the vendor will, into a scratch target, and compare
    every table's rows with the snapshot's before it counts as done (:mod:`.verify`); a
    ``postgres`` file is restored into a scratch database of the server
    ``verify_postgres_url`` names, where this role may create and drop one.

    ``recipients`` (:func:`.encryption.parse_recipient`): the file at ``output`` is the age
    encryption of the format's file, readable only with one of their secret keys (the caller
    names it: the CLI and the app add ``.age``). The plaintext is checked and verified on its
    way into the encryptor, in the one read-through (:func:`check`), and no copy of it stays
    in storage; ``sha256`` and ``size`` are the encrypted file's, as stored.
    """
    redaction = as_redaction(redaction)
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    url = source_url(source)
    if len(recipients) > STANZAS_MAX:  # the restore refuses a header of more
        raise ExportError(
            f"{len(recipients)} recipients: a backup may be encrypted to at most {STANZAS_MAX}"
        )
    for recipient in recipients:  # pyrage is there and takes each key, before any work
        recipient.native()
    steps = writer_for(url.get_backend_name(), format)
    output = Path(output)
    weights = WEIGHTS[(url.get_backend_name(), format)]
    tracker = Tracker([], progress, rows_until=weights[0])
    try:
        with atomic_output(
            output,
            gzipped=FORMATS[format].gzipped,
            format=format,
            progress=tracker.step,
            cancel=cancel,
            verify=verify,
            recipients=recipients,
        ) as done:
            tracker.inline = done.inline
            src = open_source(
                url,
                metadata=metadata,
                include=include,
                exclude=exclude,
                no_rows=no_rows,
                copy_beside=output,
                lock_timeout=lock_timeout,
                cancel=cancel,
                phase=tracker.phase,
                redaction=redaction,
            )
            try:
                info = src.info()
                top = head(manifest, format, info, described(redaction), describe(recipients))
                tracker.header = comment_lines(top)
                tracker.plan(src.tables())
                if (
                    format == "postgres"
                    and url.get_backend_name() == "postgresql"  # SQLite's writer may go back
                    and not recipients
                    and tracker.p.rows_total >= CHECK_AS_WRITTEN_ROWS
                ):
                    tracker.inline = done.check_as_written(cancel)
                run_steps(steps.result(), src, done.tmp, tracker, weights)
            finally:
                src.close()
            if cancel is not None and cancel.is_set():  # too late to interrupt, not to refuse
                raise ExportCancelled()
            tracker.phase("verifying the file", 99)
            if verify:
                done.expected, done.server = tracker.counts, verify_postgres_url
    except (ExportCancelled, ImportError):  # an ImportError is a broken install, not a failed
        raise  # export (a writer's module, imported while the source opened: writer_for)
    except Exception as e:  # database and OS errors become one line without the password
        if cancel is not None and cancel.is_set():
            raise ExportCancelled() from e
        raise ExportError(scrub(str(e) if isinstance(e, ExportError) else one_line(e), url)) from e
    file = {"name": output.name, "size": done.size, "sha256": done.sha256}
    return ExportResult(
        output,
        done.size,
        done.sha256,
        tracker.p.tables_done,
        tracker.p.rows_done,
        tuple(tracker.warnings),
        dict(tracker.counts),
        info,
        done.verification,
        complete(top, tables=tracker.counts, file=file, verification=done.verification),
        tuple(recipients),
    )


def described(redaction: Redaction | None) -> dict[str, Any] | None:
    """What the manifest says of a redaction: its profile's name and rules, never its key."""
    if redaction is None:
        return None
    return {"profile": redaction.profile.name, "rules": redaction.profile.rules()}


def run_steps(
    steps: list[Writer],
    source: Source,
    path: Path,
    tracker: Tracker,
    weights: tuple[int, ...] = (99, 99),
) -> None:
    """Run a path's writer on ``source`` into ``path``; a second step reads what the first
    built (a private temp file beside ``path``, removed after) as an SQLite source, its rows
    counted as the tracker's phase up to ``weights[1]`` percent."""
    if len(steps) == 1:
        steps[0](source, path, tracker)
        return
    from .sources.sqlite import SQLiteSource, remove_sidecars  # on first use, as above

    build, write = steps
    built = temp_beside(path, "build")
    os.close(os.open(built, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        build(source, built, tracker)
        copy = SQLiteSource(URL("sqlite", database=str(built)), private=True)
        try:
            tracker.phase("writing the SQL text", weights[1])
            rows = Tracker(copy.tables(), lambda p: tracker.step(p.rows_done, p.rows_total))
            rows.header, rows.inline = tracker.header, tracker.inline
            write(copy, path, rows)
        finally:
            copy.close()
    finally:
        built.unlink(missing_ok=True)
        remove_sidecars(built)


#: the rows (as estimated) from which a ``postgres`` file from PostgreSQL is checked by a
#: process as it is written: that process's start takes about 0.3 s of the other core, the
#: reading back it saves 0.4 s per 200 MB of text, on this one
CHECK_AS_WRITTEN_ROWS = 500_000


class _Done:
    tmp: Path
    size: int = 0
    sha256: str = ""
    #: set by the body to have the file verified: each table's rows in the snapshot, and the
    #: server a ``postgres`` file may be restored on
    expected: Mapping[str, int] | None = None
    server: str | None = None
    verification: Verification | None = None
    #: the loading process of a ``sqlite3`` file's verification, started with the export so
    #: that it is ready when the file is
    load: SQLiteLoad | None = None
    #: the check made as the file is written (:class:`.gzipout.Inline`; None: read it back)
    inline: Inline | None = None
    #: the process checking a ``postgres`` file as it is written (the inline check's script)
    check: PsqlCheck | None = None

    def check_as_written(self, cancel: threading.Event | None) -> Inline | None:
        """Have a ``postgres`` file checked as it is written, by a process of its own
        (:class:`.verify.PsqlCheck`); None where none can be started: it is read back."""
        self.check = PsqlCheck(cancel)
        if self.check.proc is not None:
            self.inline = Inline(self.check)
        return self.inline


@contextmanager
def atomic_output(
    output: Path,
    *,
    gzipped: bool,
    format: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    verify: bool = False,
    recipients: Sequence[Recipient] = (),
) -> Iterator[_Done]:
    """Yield a private temp file beside ``output``; on success check it (and verify it, when
    the body set ``expected``: :mod:`.verify`) while a thread fsyncs it (its pages go to disk
    as they are read), then rename it into place and fsync the directory: a file that fails
    its check or its verification never reaches ``output``. On failure, or when ``cancel`` is
    set during the check, remove it. ``progress`` hears the bytes checked of the file's.
    ``verify``: the body will set ``expected``; a ``sqlite3`` file's loading process starts
    now (:attr:`_Done.load`).

    A ``sqlite3`` file is checked as it is written (:attr:`_Done.inline`, which the body
    gives the writer through its tracker): its text is read by the check, or the
    verification's loader, in the compressing thread on its way into the compressor, and
    the file is then read back only to see that its bytes are the ones written (their
    sha256). A ``postgres`` file is too when the body asks (:meth:`_Done.check_as_written`),
    by a process of its own fed the bytes the compressing thread writes
    (:class:`.verify.PsqlCheck`): a check in a thread here, holding the interpreter's lock,
    slowed the thread reading the COPY rows more than reading the file back costs. An
    encrypted file, or one whose writer marked a place to go back to
    (:meth:`.gzipout.GzipOut.mark`), is read back whole.

    With ``recipients`` the check reads the plaintext temp file into the age encryptor,
    which writes a second one (``.<output>.<hex>.age.part``); that one is fsynced and renamed
    into place, the plaintext never synced: its name is gone as soon as the check has it
    open (:func:`check`), so that a process killed from then on leaves no plaintext behind."""
    if output.is_dir():
        raise ExportError(f"output is a directory: {output}")
    if not output.parent.is_dir():
        raise ExportError(f"no such directory: {output.parent}")
    done = _Done()
    done.tmp = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.part")
    os.close(os.open(done.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        done.load = SQLiteLoad(done.tmp) if verify and format == "sqlite3" else None
        if format == "sqlite3" and not recipients:
            done.inline = Inline(done.load or script_check(format))
        yield done
        if done.inline is not None and not done.inline.whole and done.load is not None:
            done.load.discard()  # it read part of the text: a new one reads the file
            done.load = SQLiteLoad(done.tmp)
        checked = partial(
            check,
            done.tmp,
            gzipped=gzipped,
            format=format,
            progress=progress,
            expected=done.expected,
            server=done.server,
            cancel=cancel,
            load=done.load,
            inline=done.inline,
        )
        if recipients:
            sealed = temp_beside(done.tmp, "age")
            os.close(os.open(sealed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            try:  # the Sealer fsyncs what it wrote
                done.size, done.sha256, done.verification = checked(
                    recipients=recipients, sealed=sealed
                )
                os.replace(sealed, output)
            except BaseException:
                sealed.unlink(missing_ok=True)
                raise
            fsync(output.parent)
            return
        with ThreadPoolExecutor(1) as pool:
            synced = pool.submit(fsync, done.tmp)
            done.size, done.sha256, done.verification = checked()
            synced.result()
        os.replace(done.tmp, output)
        fsync(output.parent)
    except BaseException:
        done.tmp.unlink(missing_ok=True)
        raise
    finally:
        if done.load is not None:
            done.load.discard()
        if done.check is not None:
            done.check.discard()


def fsync(path: Path) -> None:
    """Flush a file's (or a directory's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check(
    path: Path,
    *,
    gzipped: bool,
    format: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    expected: Mapping[str, int] | None = None,
    server: str | None = None,
    cancel: threading.Event | None = None,
    load: SQLiteLoad | None = None,
    recipients: Sequence[Recipient] = (),
    sealed: Path | None = None,
    inline: Inline | None = None,
) -> tuple[int, str, Verification | None]:
    """Read the file through once: its size and sha256, and proof that it is whole
    (a gzip stream that ends properly, or a SQLite file that passes integrity_check, which
    runs in a thread beside the hashing: both are C code that lets go of the GIL). The text of
    an SQL format is read as its client reads it (:data:`SCRIPT_CHECKS`), ``progress``
    hearing the bytes read of the file's (the SQLite check says none: it ends with the file).

    With ``expected`` (each table's rows in the snapshot) the file is verified too
    (:mod:`.verify`), in the same pass where it can be: a ``sqlite3`` file's text, decompressed
    once, is checked and loaded statement by statement; a ``postgres`` file's COPY rows are
    counted as it is checked (and it is restored on ``server`` after, if one is named); a
    ``sqlite3_db`` file is counted after its integrity_check, in that thread. A table whose
    rows differ raises ExportError("verification failed: orders: 12 in the file, 13 in the
    snapshot"). Setting ``cancel`` stops the reading (ExportCancelled). ``load``: the
    :class:`.verify.SQLiteLoad` of a ``sqlite3`` file, if one was started (else one is).

    With ``recipients`` every chunk read is also encrypted to them into ``sealed`` (an
    existing private temp file; :class:`.encryption.Sealer`), and the size and sha256 are
    that file's. The plaintext's name is removed as soon as everything that reads it has it
    open (a ``sqlite3_db`` file's integrity_check opens its connection first), so that a
    process killed during the encryption leaves none: the kernel frees the file. A
    ``postgres`` file restored on ``server`` after the read-through is read again through
    ``/proc/self/fd`` (Linux); where that does not exist its name goes only after that.

    With ``inline`` (:class:`.gzipout.Inline`, ``whole``) the text was checked, and fed to
    the verification, as it was written: the file is read for its sha256 only, which must
    be that of the bytes written.
    """
    with open(path, "rb") as f:
        if inline is not None and inline.whole and not recipients:
            checked = _check_inline(f, path, inline, progress, expected, server, cancel)
            if checked is not None:
                return checked
            f.seek(0)  # the process checking it was lost: read it back
        if not recipients:
            return _check(f, path, gzipped, format, progress, expected, server, cancel, load)
        assert sealed is not None
        alias = Path(f"/proc/self/fd/{f.fileno()}")
        reread = alias if alias.exists() else None
        with Sealer(sealed, recipients) as seal:
            _, _, verification = _check(
                f,
                reread or path,
                gzipped,
                format,
                progress,
                expected,
                server,
                cancel,
                load,
                sink=seal.write,
                hide=lambda: _unlink_open(path),
                late=reread is None and format == "postgres" and bool(server),
            )
    path.unlink(missing_ok=True)  # gone already, but where an open file keeps its name
    return seal.size, seal.sha256, verification


def _check_inline(
    f: BinaryIO,
    path: Path,
    inline: Inline,
    progress: Callable[[int, int], None] | None,
    expected: Mapping[str, int] | None,
    server: str | None,
    cancel: threading.Event | None,
) -> tuple[int, str, Verification | None] | None:
    """:func:`check` of a file whose text ``inline`` read as it was written (with
    ``expected``: into a ``sqlite3`` file's loader; a ``postgres`` file's COPY rows counted,
    then the file restored on ``server``, if one is named); None if the process checking a
    ``postgres`` file was lost before its verdict."""
    size, sha = read_through(f, progress=progress, cancel=cancel)
    if (size, sha) != (inline.size, inline.hash.hexdigest()):
        raise ExportError("the file on disk is not the one written: its bytes differ")
    script = inline.script
    if isinstance(script, PsqlCheck):
        if not script.close(cancel):
            return None
        if expected is None:
            return size, sha, None
        verification = verify_postgres(path, expected, script.rows, server)
    else:
        script.close()
        if expected is None:
            return size, sha, None
        try:
            verification = script.result(expected, cancel)
        finally:
            script.discard()
    if not verification.ok:
        raise ExportError(verification.summary())
    return size, sha, verification


def _unlink_open(path: Path) -> None:
    """Remove the name of a file this process has open; where that cannot be (Windows), the
    name goes once it is closed."""
    try:
        path.unlink(missing_ok=True)
    except PermissionError:
        pass


def _check(
    f: BinaryIO,
    path: Path,
    gzipped: bool,
    format: str | None,
    progress: Callable[[int, int], None] | None,
    expected: Mapping[str, int] | None,
    server: str | None,
    cancel: threading.Event | None,
    load: SQLiteLoad | None,
    *,
    sink: Callable[[bytes], None] | None = None,
    hide: Callable[[], None] | None = None,
    late: bool = False,
) -> tuple[int, str, Verification | None]:
    """:func:`check` of the file open as ``f`` (``path`` names it, for what opens it again);
    each chunk read goes to ``sink`` too; ``hide`` removes the file's name, called once
    whatever reads the file has it open (after the verification when ``late``)."""
    hide_now = hide if not late else None
    if not gzipped:
        opened = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            verdict = pool.submit(_integrity_check, path, expected, opened)
            while not opened.wait(0.05) and not verdict.done():
                pass
            if hide_now is not None:
                hide_now()
            size, sha = read_through(f, gzipped=False, cancel=cancel, sink=sink)
            result, verification = verdict.result()
        if result != "ok":
            raise ExportError(f"the SQLite file fails integrity_check: {result}")
    else:
        if hide_now is not None:
            hide_now()
        if expected is None:
            script = script_check(format)
            size, sha = read_through(
                f, gzipped=True, script=script, progress=progress, cancel=cancel, sink=sink
            )
            verification = None
        elif format == "sqlite3":
            load = load or SQLiteLoad(path)
            try:
                size, sha = read_through(
                    f, gzipped=True, script=load, progress=progress, cancel=cancel, sink=sink
                )
                verification = load.result(expected, cancel)
            finally:
                load.discard()
        else:
            count = CopyCount()
            size, sha = read_through(
                f, gzipped=True, script=count, progress=progress, cancel=cancel, sink=sink
            )
            verification = verify_postgres(path, expected, count.rows, server)
    if late and hide is not None:
        hide()
    if verification is not None and not verification.ok:
        raise ExportError(verification.summary())
    return size, sha, verification


def verify(
    path: str | os.PathLike[str],
    format: str,
    expected: Mapping[str, int],
    *,
    verify_postgres_url: str | None = None,
) -> Verification:
    """Verify the file at ``path`` (made in ``format``) against ``expected``, each table's
    rows in the snapshot (:attr:`ExportResult.table_rows`), as :func:`export` does before it
    moves a file into place; raises ExportError naming the tables whose rows differ."""
    _, _, verification = check(
        Path(path),
        gzipped=FORMATS[format].gzipped,
        format=format,
        expected=expected,
        server=verify_postgres_url,
    )
    assert verification is not None
    return verification


def _integrity_check(
    path: Path,
    expected: Mapping[str, int] | None = None,
    opened: threading.Event | None = None,
) -> tuple[str, Verification | None]:
    """``PRAGMA integrity_check``'s verdict, then (when ``ok`` and ``expected`` is given) the
    file's tables counted, on the one connection: ``opened`` is set once it has the file
    open, after which the file's name may go."""
    con = open_read_only(path, frozen=opened is not None)
    try:
        if opened is not None:
            opened.set()
        result = con.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok" or expected is None:
            return result, None
        found, uncounted = count_sqlite(con, expected)
    finally:
        con.close()
    return result, compare(expected, found, loaded=True, how="opened", uncounted=uncounted)


def script_check(format: str | None) -> ScriptCheck | None:
    name = SCRIPT_CHECKS.get(format or "")
    return importlib.import_module(f".{name}", __package__).ScriptCheck() if name else None


def read_through(
    file: str | os.PathLike[str] | BinaryIO,
    *,
    gzipped: bool = False,
    script: ScriptCheck | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> tuple[int, str]:
    """Size and sha256 of the file (a path, or a file open for reading), read in 1 MiB
    chunks (and its gzip stream checked; its text fed to ``script``); each chunk goes to
    ``sink`` too (the encryptor), which then hashes what it writes, not this (the sha256 is
    ""). ``progress`` gets the bytes read so far and the file's size. Setting ``cancel``
    stops it between two chunks (ExportCancelled)."""
    h = hashlib.sha256()
    size = 0

    def raw(f: BinaryIO) -> Iterator[bytes]:
        nonlocal size
        total = os.fstat(f.fileno()).st_size
        while chunk := f.read(1 << 20):
            if cancel is not None and cancel.is_set():
                raise ExportCancelled()
            if sink is None:
                h.update(chunk)
            else:
                sink(chunk)
            size += len(chunk)
            if progress is not None:
                progress(size, total)
            yield chunk

    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return read_through(
                f, gzipped=gzipped, script=script, progress=progress, cancel=cancel, sink=sink
            )
    if not gzipped:
        for _ in raw(file):
            pass
    else:
        for text in gunzip(raw(file)):
            if script is not None:
                script.feed(text)
        if script is not None:
            script.close()
    return size, h.hexdigest() if sink is None else ""


__all__ = ["ExportResult", "export", "verify"]
