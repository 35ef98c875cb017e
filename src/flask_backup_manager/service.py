"""The operations behind every route and command. Views only translate HTTP to these calls."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Response, send_file
from redis.exceptions import RedisError

from .engine import FORMATS, SUPPORTED
from .errors import BackupManagerError, bad_request, conflict, not_found
from .extension import State, get_state
from .models import FINISHED, utcnow


def formats(state: State | None = None) -> list[dict[str, str]]:
    """The formats the host's database can be exported to."""
    state = state or get_state()
    names = SUPPORTED.get(state.engine.url.get_backend_name(), ())
    return [
        {"name": n, "description": FORMATS[n].description, "extension": FORMATS[n].extension}
        for n in names
    ]


def create_backup(format: Any, created_by: str | None = None) -> Any:
    """Insert a queued backup and enqueue its job. 400 for an unknown format, 503 when the
    queue cannot be reached (the row is then ``failed``, never left ``queued``)."""
    state = get_state()
    names = [f["name"] for f in formats(state)]
    if format not in names:
        raise bad_request(
            "unknown_format", f"Unknown format {format!r}: choose one of {', '.join(names)}."
        )
    db, (Backup, _) = state.db, state.models
    backup = Backup(format=format, status="queued", created_at=utcnow(), created_by=created_by)
    db.session.add(backup)
    db.session.flush()
    stamp = as_utc(backup.created_at).strftime("%Y%m%d-%H%M%S")
    backup.filename = f"{state.app_name}-{stamp}-{backup.id}{FORMATS[format].extension}"
    add_log(backup.id, "info", f"queued: format {format}", commit=False)
    db.session.commit()
    from .queue import enqueue

    try:
        job_id = enqueue(backup.id)
    except (RedisError, OSError) as e:
        message = f"queue unavailable: {e}"
        finish(backup.id, ("queued",), "failed", error=message)
        add_log(backup.id, "error", message)
        raise BackupManagerError(
            503, "queue_unavailable", f"The job queue is unavailable: {e}"
        ) from None
    update(backup.id, job_id=job_id)
    return db.session.get(Backup, backup.id)


def reap(state: State | None = None) -> list[int]:
    """Fail the running backups whose worker stopped beating (killed, machine gone) and remove
    their partial files. Any worker or web request may run it; each row moves once."""
    state = state or get_state()
    Backup = state.models[0]
    cutoff = utcnow() - timedelta(seconds=state.worker_lost_after)
    stale = state.db.session.execute(
        sa.select(Backup.id, Backup.filename).where(
            Backup.status == "running", Backup.heartbeat_at < cutoff
        )
    ).all()
    reaped = []
    for backup_id, filename in stale:
        message = f"worker lost: no heartbeat for {state.worker_lost_after} s"
        if transition(backup_id, ("running",), "failed", finished_at=utcnow(), error=message):
            add_log(backup_id, "error", f"failed: {message}")
            for part in state.storage_dir.glob(f".{filename}.*.part"):
                part.unlink(missing_ok=True)
            reaped.append(backup_id)
    return reaped


def list_backups(page: int = 1, per_page: int | None = None) -> tuple[list[Any], int]:
    state = get_state()
    reap(state)
    Backup = state.models[0]
    per_page = min(per_page or state.per_page, 100)
    if page < 1 or per_page < 1:
        raise bad_request("bad_page", "page and per_page must be positive whole numbers.")
    total = state.db.session.scalar(sa.select(sa.func.count()).select_from(Backup))
    items = state.db.session.scalars(
        sa.select(Backup).order_by(Backup.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(items), total or 0


def get_backup(backup_id: Any) -> Any:
    state = get_state()
    try:
        backup_id = int(backup_id)
    except (TypeError, ValueError):
        raise not_found() from None
    reap(state)
    backup = state.db.session.get(state.models[0], backup_id)
    if backup is None:
        raise not_found()
    return backup


def backup_logs(backup: Any) -> list[dict[str, Any]]:
    return [
        {"at": iso(line.at), "level": line.level, "message": line.message} for line in backup.logs
    ]


def file_path(backup: Any, state: State | None = None) -> Path:
    """Where a backup's file lives: the storage directory and a name the server made."""
    state = state or get_state()
    return state.storage_dir / os.path.basename(backup.filename)


def storage_dir(state: State | None = None) -> Path:
    state = state or get_state()
    state.storage_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state.storage_dir


def download(backup: Any) -> Response:
    """The file as an attachment, streamed; 409 until the backup has succeeded."""
    if backup.status != "succeeded":
        raise conflict(
            "not_finished", f"Backup {backup.id} is {backup.status}: nothing to download."
        )
    path = file_path(backup)
    if not path.is_file():
        raise BackupManagerError(410, "file_missing", f"The file of backup {backup.id} is gone.")
    response = send_file(
        path,
        as_attachment=True,
        download_name=backup.filename,
        mimetype=FORMATS[backup.format].mimetype,
        conditional=True,
        etag=backup.sha256,
        max_age=0,
    )
    response.headers["X-Backup-SHA256"] = backup.sha256
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def delete_backup(backup: Any) -> None:
    """Remove the row, its log and its file. 409 while a job may still write the file."""
    if backup.status not in FINISHED:
        raise conflict(
            "not_finished", f"Backup {backup.id} is {backup.status}: cancel it before deleting it."
        )
    state = get_state()
    path = file_path(backup, state)
    state.db.session.delete(backup)
    state.db.session.commit()
    path.unlink(missing_ok=True)


def cancel_backup(backup: Any) -> Any:
    """Ask a queued or running backup to stop; the worker removes its partial file."""
    if backup.status in FINISHED:
        raise conflict("already_finished", f"Backup {backup.id} is already {backup.status}.")
    if finish(backup.id, ("queued", "running"), "cancelled", error="cancelled"):
        add_log(backup.id, "warning", "cancelled")
    state = get_state()
    state.db.session.refresh(backup)
    return backup


def update(backup_id: int, **values: Any) -> None:
    state = get_state()
    Backup = state.models[0]
    state.db.session.execute(sa.update(Backup).where(Backup.id == backup_id).values(**values))
    state.db.session.commit()


def transition(backup_id: int, from_: tuple[str, ...], to: str, **values: Any) -> bool:
    """Compare-and-set the status: True when this call moved the row, False when it was not
    in one of ``from_`` (a job delivered twice, a cancel, a reaper got there first)."""
    state = get_state()
    Backup = state.models[0]
    result = state.db.session.execute(
        sa.update(Backup)
        .where(Backup.id == backup_id, Backup.status.in_(from_))
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    state.db.session.commit()
    return result.rowcount == 1


def finish(backup_id: int, from_: tuple[str, ...], to: str, **values: Any) -> bool:
    return transition(backup_id, from_, to, finished_at=utcnow(), **values)


def add_log(backup_id: int, level: str, message: str, *, commit: bool = True) -> None:
    state = get_state()
    state.db.session.add(
        state.models[1](backup_id=backup_id, level=level, message=message, at=utcnow())
    )
    if commit:
        state.db.session.commit()


def as_utc(value: datetime | None) -> datetime | None:
    """Timestamps are stored in UTC; SQLite hands them back without a zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def to_dict(backup: Any) -> dict[str, Any]:
    started, finished = as_utc(backup.started_at), as_utc(backup.finished_at)
    total = backup.rows_total or 0
    percent = (
        100
        if backup.status == "succeeded"
        else (min(99, int(100 * backup.rows_done / total)) if total else 0)
    )
    return {
        "id": backup.id,
        "format": backup.format,
        "status": backup.status,
        "created_at": iso(backup.created_at),
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration": (finished - started).total_seconds() if started and finished else None,
        "size": backup.size,
        "sha256": backup.sha256,
        "filename": backup.filename,
        "progress": {
            "tables_done": backup.tables_done,
            "tables_total": backup.tables_total,
            "rows_done": backup.rows_done,
            "rows_total": backup.rows_total,
            "percent": percent,
        },
        "error": backup.error,
        "created_by": backup.created_by,
    }
