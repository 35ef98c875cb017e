"""The RQ job. It takes only the backup id and runs inside the app context of the worker."""

from __future__ import annotations

from .engine import ExportCancelled, ExportError, Progress, export
from .extension import get_state
from .models import utcnow
from .service import add_log, file_path, finish, storage_dir, transition, update


def run_backup(backup_id: int) -> str:
    """Make the file of backup ``backup_id``; returns the status it ended in.

    Every status change is a compare-and-set on the row, so a job delivered twice, or one whose
    backup was cancelled or deleted meanwhile, changes nothing and leaves no file behind.
    """
    state = get_state()
    now = utcnow()
    if not transition(backup_id, ("queued",), "running", started_at=now, heartbeat_at=now):
        return "skipped"
    backup = state.db.session.get(state.models[0], backup_id)
    add_log(backup_id, "info", f"started: format {backup.format}")
    path = file_path(backup, state)
    storage_dir(state)

    def progress(p: Progress) -> None:
        if p.finished:
            name, rows = p.finished
            add_log(backup_id, "info", f"table {name}: {rows} rows", commit=False)
        still_running = transition(
            backup_id,
            ("running",),
            "running",
            heartbeat_at=utcnow(),
            tables_done=p.tables_done,
            tables_total=p.tables_total,
            rows_done=p.rows_done,
            rows_total=p.rows_total,
        )
        if not still_running:
            raise ExportCancelled()

    try:
        result = export(
            state.engine, backup.format, path, metadata=state.db.metadata, progress=progress
        )
    except ExportCancelled:
        state.db.session.rollback()
        path.unlink(missing_ok=True)
        add_log(backup_id, "warning", "stopped: the backup was cancelled")
        return "cancelled"
    except ExportError as e:
        state.db.session.rollback()
        if finish(backup_id, ("running",), "failed", error=str(e)):
            add_log(backup_id, "error", f"failed: {e}")
        return "failed"
    except Exception as e:  # a bug or the host database gone: never leave the row running
        state.db.session.rollback()
        path.unlink(missing_ok=True)
        message = f"internal error: {type(e).__name__}: {e}"
        if finish(backup_id, ("running",), "failed", error=message):
            add_log(backup_id, "error", f"failed: {message}")
        raise
    if not finish(
        backup_id,
        ("running",),
        "succeeded",
        size=result.size,
        sha256=result.sha256,
        tables_done=result.tables,
        rows_done=result.rows,
    ):
        path.unlink(missing_ok=True)  # cancelled (or reaped) while the file was being checked
        return "cancelled"
    update(backup_id, rows_total=result.rows, tables_total=result.tables)
    add_log(
        backup_id,
        "info",
        f"finished: {result.tables} tables, {result.rows} rows, {result.size} bytes, "
        f"sha256 {result.sha256}",
    )
    return "succeeded"
