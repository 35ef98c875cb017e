"""The RQ job. It takes only the backup id and runs inside the app context of the worker."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
import threading
import time
from typing import Any

import sqlalchemy as sa
from flask import current_app
from rq.job import Job
from rq.timeouts import JobTimeoutException

from .engine import (
    ExportCancelled,
    ExportError,
    Progress,
    Recipient,
    escape_controls,
    export,
    one_line,
    scrub,
)
from .lifecycle import add_log, finish, process_actor, remove_parts, transition, update
from .models import ACTIVE, Status, db_now
from .presenters import as_utc, encrypted_for, iso, plural, readers
from .queue import JOB_FUNCTION
from .service import (
    abort_stale_uploads,
    describe_recipients,
    prune,
    reap,
    recipients_json,
    sweep_work_dir,
)
from .state import State, get_state, redactions
from .storage import LocalStorage, StorageError


def run_backup(backup_id: int) -> str:
    """Make the file of backup ``backup_id``; returns the status it ended in.

    Every status change is a compare-and-set on the row, so a job delivered twice, or one whose
    backup was cancelled, reaped or deleted meanwhile, changes nothing and leaves no file behind.
    """
    state = get_state()
    reap(state)
    with contextlib.suppress(StorageError):  # unfinished uploads no job can still be making
        abort_stale_uploads(state)
    sweep_work_dir(state)  # what a job killed on this host left (its backup reaped since)
    now = db_now(state.db.session.connection())
    if not transition(
        backup_id,
        (Status.QUEUED,),
        Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        phase="opening the database",
    ):
        return "skipped"
    backup = state.db.session.get(state.models.Backup, backup_id)
    fmt, name = backup.format, backup.filename
    profile_name, head = backup.redaction, about(state, backup)
    add_log(backup_id, "info", f"started: format {fmt}")  # commits: no transaction stays open
    try:
        profile = redactions(state).get(profile_name) if profile_name else None
        message = f"redaction profile {profile_name!r} is no longer configured"
    except ValueError as e:  # a model imported late declares a rule that cannot apply
        profile, message = None, one_line(e)
    if not profile_name and state.require_redaction:  # queued before it was required
        profile, profile_name = None, "(full copy)"
        message = (
            "a full copy is not allowed: BACKUP_MANAGER_REQUIRE_REDACTION was turned on "
            "after this backup was queued; make a new one with a redaction profile"
        )
    if profile_name and profile is None:  # the config changed since the backup was queued
        fail(backup_id, message)
        return Status.FAILED
    recipients, refusal = recipients_now(state, backup_id, encrypted_for(backup))
    if refusal:
        fail(backup_id, refusal)
        return Status.FAILED
    heart = Heartbeat(state, backup_id)
    last_phase: str | None = None
    copying_since: float | None = None  # when the first table began, by the monotonic clock

    def progress(p: Progress) -> None:
        nonlocal last_phase, copying_since
        if p.finished:
            name, rows = p.finished
            # the name escaped as in the phase: a control character (a bidi override) in a
            # customer's table name must not rearrange the line on the page
            line = f"table {escape_controls(name)}: {plural(rows, 'row')}"
            add_log(backup_id, "info", line, commit=False)
        if p.phase and p.phase != last_phase and p.table is None:
            # one line per phase but the tables' (each has its line when done): written as
            # the phase begins, so a wait is in the log while it lasts
            add_log(backup_id, "info", p.phase, commit=False)
        last_phase = p.phase
        if p.table is not None and copying_since is None:
            copying_since = time.monotonic()
        values = dict(
            tables_done=p.tables_done,
            tables_total=p.tables_total,
            rows_done=p.rows_done,
            rows_total=p.rows_total,
            # the column holds 255 characters; a name of control characters (each shown as
            # four, \x01) makes a longer phase, which must not fail the backup
            phase=p.phase if p.phase is None or len(p.phase) <= 255 else p.phase[:252] + "...",
            percent=p.percent,
            eta=None if copying_since is None else eta(time.monotonic() - copying_since, p.percent),
        )
        if heart.lost.is_set() or not transition(
            backup_id, (Status.RUNNING,), Status.RUNNING, **values
        ):
            raise ExportCancelled()

    storage = state.storage
    try:
        path = storage.export_path(name)
    except (OSError, StorageError) as e:
        where = "the storage" if isinstance(storage, LocalStorage) else "the work directory"
        fail(backup_id, f"{where} cannot be used: {one_line(e)}")
        return Status.FAILED
    try:
        with heart:
            result = export(
                state.engine,
                fmt,
                path,
                metadata=state.db.metadata,
                # the Backup Manager's own tables: their schema, not the customer's history
                no_rows=own_tables(state),
                progress=progress,
                lock_timeout=state.lock_timeout,
                cancel=heart.lost,
                redaction=profile,
                manifest=head,
                verify_postgres_url=state.verify_postgres_url,
                recipients=recipients,
            )
            version = None
            if not isinstance(storage, LocalStorage):  # the file is in place already there
                if result.verification is not None:  # in the log before the upload's line
                    add_log(backup_id, "info", result.verification.summary())
                version = upload(state, backup_id, storage, path, name, result, heart)
    except ExportCancelled:
        state.db.session.rollback()
        path.unlink(missing_ok=True)
        remove_parts(name, state)
        add_log(backup_id, "warning", "stopped: the backup was cancelled")
        return Status.CANCELLED
    except StorageError as e:
        state.db.session.rollback()
        path.unlink(missing_ok=True)
        fail(backup_id, f"storing the file in {storage.url} failed: {one_line(e)}")
        return Status.FAILED
    except (ExportError, JobTimeoutException) as e:
        state.db.session.rollback()
        message = str(e)
        if isinstance(e, JobTimeoutException) or isinstance(e.__cause__, JobTimeoutException):
            message = f"timed out after {state.job_timeout} s"
        fail(backup_id, message)
        return Status.FAILED
    except Exception as e:  # a bug or the host database gone: never leave the row running
        state.db.session.rollback()
        with contextlib.suppress(OSError):  # the storage itself may be what failed
            path.unlink(missing_ok=True)
        message = scrub(f"internal error: {type(e).__name__}: {one_line(e)}", state.engine.url)
        fail(backup_id, message)
        raise
    manifest = dict(result.manifest) or None  # the whole manifest, file and verification too
    logs = [("warning", warning) for warning in result.warnings]
    if result.verification is not None and isinstance(storage, LocalStorage):
        logs.append(("info", result.verification.summary()))
    logs.append(
        (
            "info",
            f"finished: {plural(result.tables, 'table')}, {plural(result.rows, 'row')}, "
            f"{plural(result.size, 'byte')}, sha256 {result.sha256}",
        )
    )
    if not finish(  # with its log lines: whoever sees succeeded sees the whole log
        backup_id,
        (Status.RUNNING,),
        Status.SUCCEEDED,
        logs=logs,
        size=result.size,
        sha256=result.sha256,
        tables_done=result.tables,
        rows_done=result.rows,
        rows_total=result.rows,
        tables_total=result.tables,
        manifest=None if manifest is None else json.dumps(manifest, default=str),
        encrypted_for=recipients_json(result.recipients),
        stored_version=version,
    ):
        # cancelled (or reaped) while the file was being checked or stored
        with contextlib.suppress(OSError, StorageError):
            path.unlink(missing_ok=True)
            storage.delete(name)
        return Status.CANCELLED
    prune(state, actor=process_actor())  # as a `flask backups prune` would
    return Status.SUCCEEDED


def upload(
    state: State,
    backup_id: int,
    storage: Any,
    path: Any,
    name: str,
    result: Any,
    heart: Heartbeat,
) -> str | None:
    """Store the finished, checked file in an object store (:meth:`.storage.Storage.put`),
    its progress as the phase's; the backup succeeds only after the store has the whole of it.
    A cancel or a lost heartbeat stops it between parts (ExportCancelled)."""
    phase = f"uploading the file to {storage.url}"
    add_log(backup_id, "info", phase)

    def uploaded(done: int, total: int) -> None:
        percent = 99 if not total else min(99, 99 * done // total)
        if heart.lost.is_set() or not transition(
            backup_id, (Status.RUNNING,), Status.RUNNING, phase=phase[:255], percent=percent
        ):
            raise ExportCancelled()

    uploaded(0, result.size)  # the phase from the first part on
    return storage.put(
        path, name, sha256=result.sha256, size=result.size, cancel=heart.lost, progress=uploaded
    )


def recipients_now(
    state: State, backup_id: int, asked: list[dict[str, Any]] | None
) -> tuple[tuple[Recipient, ...], str | None]:
    """The keys to encrypt a backup for when it runs, and why it must fail instead (None:
    it may run). ``asked``: whom it was queued to be encrypted for (None: not encrypted).
    The config is the host's word on who may read a copy, so a backup queued before the keys
    changed (the vendor replaced its key) is encrypted for the current ones, the log saying
    so; one queued encrypted when no key is left now fails (never a plaintext copy in place of
    an encrypted one), as does an unencrypted one once encryption is required."""
    if asked is None:
        if state.require_encryption:
            return (), (
                "an unencrypted copy is not allowed: BACKUP_MANAGER_REQUIRE_ENCRYPTION was "
                "turned on after this backup was queued; make a new one"
            )
        return (), None
    if not state.recipients:
        return (), (
            "this backup was to be encrypted, but BACKUP_MANAGER_RECIPIENTS names no public "
            "key any more; make a new one"
        )
    now = describe_recipients(state.recipients)
    if [r["fingerprint"] for r in asked] != [r["fingerprint"] for r in now]:
        add_log(
            backup_id,
            "warning",
            "the public keys changed since this backup was queued (it was for "
            f"{readers(asked)}): encrypting for the current ones, {readers(now)}",
            commit=False,
        )
        update(backup_id, encrypted_for=recipients_json(state.recipients))
    return state.recipients, None


def fail(backup_id: int, message: str) -> None:
    """A running backup fails with ``message``, its log line in the same commit."""
    finish(
        backup_id,
        (Status.RUNNING,),
        Status.FAILED,
        logs=[("error", f"failed: {message}")],
        error=message,
    )


def about(state: State, backup: Any) -> dict[str, Any]:
    """What the job knows of the copy for its manifest (the engine adds the rest): when it
    was asked for and by whom, and the app it comes from."""
    return {
        "created_at": iso(backup.created_at),
        "created_by": backup.created_by,
        "app": {"name": state.app_name, "version": app_version(state)},
    }


def app_version(state: State) -> str | None:
    """BACKUP_MANAGER_APP_VERSION, else the version of the installed distribution that holds
    the app's top-level package (None when none does: an app run from its folder)."""
    return state.app_version or distribution_version(state.app_package)


@functools.lru_cache(maxsize=16)
def distribution_version(package: str) -> str | None:
    """The version of the distribution holding top-level ``package``: looked up once per
    process (the scan of every installed distribution takes most of a second). An editable
    install (``pip install -e .``) lists no package of its own, only a path: then the
    distribution named as the package (``my_shop`` is ``my-shop``), if there is one."""
    names = importlib.metadata.packages_distributions().get(package) or [package]
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def own_tables(state: State) -> list[str]:
    """The export's keys of the Backup Manager's own tables in the database backed up: none
    when they live in another one (``BACKUP_MANAGER_BIND``). On PostgreSQL a table of no
    schema is where the app's own queries find it, by its search_path: not always public."""
    keys = []
    with state.engine.connect() as conn:
        for table in (m.__table__ for m in state.models):
            if conn.dialect.name != "postgresql":
                if sa.inspect(conn).has_table(table.name, schema=table.schema):
                    keys.append(table.name)
                continue
            schema = conn.scalar(
                sa.text(
                    "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass(:table)"
                ),
                {"table": conn.dialect.identifier_preparer.format_table(table)},
            )
            if schema is not None:
                keys.append(table.name if schema == "public" else f"{schema}.{table.name}")
    return keys


def eta(elapsed: float, percent: int) -> int | None:
    """Seconds left, roughly, when ``percent`` of the run took ``elapsed`` seconds (the
    percent weighs the phases by their share of a run: see the engine's ``WEIGHTS``); None
    until there is something to go on."""
    if percent < 1 or elapsed < 1:
        return None
    return round(elapsed * (100 - percent) / percent)


def work_horse_killed(job: Job, pid: int | None, status: int | None, rusage: Any) -> None:
    """RQ's ``work_horse_killed_handler`` (:func:`.queue.make_worker`): the worker process
    calls it, in its app context, as soon as the work horse running ``job`` has died without
    finishing it (SIGKILL, the OOM killer, a crash in C). The backup fails at once, with why,
    and its partial file goes; the worker lives on for the next job. (RQ 2's ``on_failure``
    callback runs in the horse only, so it cannot tell of the horse's own death; the
    heartbeat's reaper still fails a backup whose whole machine is gone.)"""
    if job.func_name != JOB_FUNCTION or not job.args:
        return
    backup_id, state = job.args[0], get_state()
    for attempt in (1, 2):  # a database that restarted fails the first: its pool's links died
        try:
            _fail_killed(state, backup_id, status)
            return
        except Exception:  # RQ's worker quits on it, skipping its own failure handling too
            if attempt == 2:
                current_app.logger.exception(
                    "backup %s: its work horse died and the backup could not be marked failed "
                    "(the heartbeat's reaper will)",
                    backup_id,
                )
        finally:
            state.db.session.remove()


def _fail_killed(state: State, backup_id: int, status: int | None) -> None:
    """Fail the backup whose work horse ended with wait ``status``, unless it has finished."""
    backup = state.db.session.get(state.models.Backup, backup_id)
    if backup is None or backup.status not in ACTIVE:
        return
    if status is not None and os.WIFSIGNALED(status):
        how = f"died (signal {os.WTERMSIG(status)})"
    elif status is not None:
        how = f"exited with code {os.waitstatus_to_exitcode(status)}"
    else:
        how = "ended"
    message = f"the worker's process {how} while making the backup"
    started = as_utc(backup.started_at)
    now = db_now(state.db.session.connection())
    if started and (now - started).total_seconds() >= state.job_timeout:
        message = f"timed out after {state.job_timeout} s"  # RQ killed it past the timeout
    if finish(
        backup_id, ACTIVE, Status.FAILED, logs=[("error", f"failed: {message}")], error=message
    ):
        remove_parts(backup.filename, state)


class Heartbeat:
    """A thread that stamps ``heartbeat_at`` every ``BACKUP_MANAGER_HEARTBEAT`` seconds while
    the export runs, so a reaper can tell a live job from one whose worker died. ``lost`` is set
    when the row is no longer ``running`` (cancelled or reaped): the export then stops."""

    def __init__(self, state: State, backup_id: int) -> None:
        Backup = state.models.Backup
        self.engine, self.interval = state.engine, state.heartbeat
        self.stamp = (
            sa.update(Backup)
            .where(Backup.id == backup_id, Backup.status == Status.RUNNING)
            .values(heartbeat_at=sa.bindparam("now"))
        )
        self.lost = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{backup_id}", daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                with self.engine.begin() as conn:
                    if conn.execute(self.stamp, {"now": db_now(conn)}).rowcount == 0:
                        self.lost.set()
            except sa.exc.SQLAlchemyError:
                continue  # a busy or unreachable database: try again at the next beat

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
