"""The RQ job. It takes only the backup id and runs inside the app context of the worker."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from rq.timeouts import JobTimeoutException

from .engine import ExportCancelled, ExportError, Progress, export, one_line, scrub
from .lifecycle import add_log, finish, process_actor, transition, update
from .models import Status, db_now
from .service import file_path, prune, reap, storage_dir
from .state import State, get_state


def run_backup(backup_id: int) -> str:
    """Make the file of backup ``backup_id``; returns the status it ended in.

    Every status change is a compare-and-set on the row, so a job delivered twice, or one whose
    backup was cancelled, reaped or deleted meanwhile, changes nothing and leaves no file behind.
    """
    state = get_state()
    reap(state)
    now = db_now(state.db.session.connection())
    if not transition(
        backup_id, (Status.QUEUED,), Status.RUNNING, started_at=now, heartbeat_at=now
    ):
        return "skipped"
    backup = state.db.session.get(state.models.Backup, backup_id)
    fmt, path = backup.format, file_path(backup, state)
    add_log(backup_id, "info", f"started: format {fmt}")  # commits: no transaction stays open
    heart = Heartbeat(state, backup_id)

    def progress(p: Progress) -> None:
        if p.finished:
            name, rows = p.finished
            plural = "" if rows == 1 else "s"
            add_log(backup_id, "info", f"table {name}: {rows} row{plural}", commit=False)
        values = dict(
            tables_done=p.tables_done,
            tables_total=p.tables_total,
            rows_done=p.rows_done,
            rows_total=p.rows_total,
        )
        if heart.lost.is_set() or not transition(
            backup_id, (Status.RUNNING,), Status.RUNNING, **values
        ):
            raise ExportCancelled()

    try:
        storage_dir(state)
        with heart:
            result = export(
                state.engine,
                fmt,
                path,
                metadata=state.db.metadata,
                # the Backup Manager's own tables: their schema, not the customer's history
                no_rows=[
                    t.name if t.schema in (None, "public") else t.fullname
                    for t in (m.__table__ for m in state.models)
                ],
                progress=progress,
                lock_timeout=state.lock_timeout,
                cancel=heart.lost,
            )
    except ExportCancelled:
        state.db.session.rollback()
        path.unlink(missing_ok=True)
        add_log(backup_id, "warning", "stopped: the backup was cancelled")
        return Status.CANCELLED
    except (ExportError, JobTimeoutException) as e:
        state.db.session.rollback()
        message = str(e)
        if isinstance(e, JobTimeoutException) or isinstance(e.__cause__, JobTimeoutException):
            message = f"timed out after {state.job_timeout} s"
        if finish(backup_id, (Status.RUNNING,), Status.FAILED, error=message):
            add_log(backup_id, "error", f"failed: {message}")
        return Status.FAILED
    except Exception as e:  # a bug or the host database gone: never leave the row running
        state.db.session.rollback()
        path.unlink(missing_ok=True)
        message = scrub(f"internal error: {type(e).__name__}: {one_line(e)}", state.engine.url)
        if finish(backup_id, (Status.RUNNING,), Status.FAILED, error=message):
            add_log(backup_id, "error", f"failed: {message}")
        raise
    if not finish(
        backup_id,
        (Status.RUNNING,),
        Status.SUCCEEDED,
        size=result.size,
        sha256=result.sha256,
        tables_done=result.tables,
        rows_done=result.rows,
    ):
        path.unlink(missing_ok=True)  # cancelled (or reaped) while the file was being checked
        return Status.CANCELLED
    update(backup_id, rows_total=result.rows, tables_total=result.tables)
    for warning in result.warnings:
        add_log(backup_id, "warning", warning)
    add_log(
        backup_id,
        "info",
        f"finished: {result.tables} tables, {result.rows} rows, {result.size} bytes, "
        f"sha256 {result.sha256}",
    )
    prune(state, actor=process_actor())  # as a `flask backups prune` would
    return Status.SUCCEEDED


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
