"""A backup row's life, shared by the service and the job: status moves (each a
compare-and-set), progress updates, log lines and audit entries. Each call commits unless told
not to, so no transaction stays open across a long export."""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from flask import current_app

from .models import Status, utcnow
from .state import State, get_state
from .storage import StorageError


def transition(
    backup_id: int,
    from_: tuple[Status, ...],
    to: Status,
    *,
    logs: Sequence[tuple[str, str]] = (),
    **values: Any,
) -> bool:
    """Compare-and-set the status: True when this call moved the row, False when it was not
    in one of ``from_`` (a job delivered twice, a cancel, a reaper got there first). ``logs``
    (level, message) are written in the same transaction when the row moved, so whoever sees
    the new status sees its log lines too."""
    state = get_state()
    Backup = state.models.Backup
    result = state.db.session.execute(
        sa.update(Backup)
        .where(Backup.id == backup_id, Backup.status.in_(from_))
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    moved = result.rowcount == 1
    if moved:
        for level, message in logs:
            add_log(backup_id, level, message, commit=False)
    state.db.session.commit()
    return moved


def finish(
    backup_id: int,
    from_: tuple[Status, ...],
    to: Status,
    *,
    logs: Sequence[tuple[str, str]] = (),
    **values: Any,
) -> bool:
    """:func:`transition` into a final status, stamping ``finished_at``; a finished backup
    has no phase and no time left."""
    return transition(
        backup_id, from_, to, logs=logs, finished_at=utcnow(), phase=None, eta=None, **values
    )


def remove_parts(filename: str | None, state: State | None = None) -> None:
    """Remove what a backup whose job died left: its partial files, and an object store's
    unfinished upload of it (:meth:`.storage.Storage.remove_parts`). A storage that cannot be
    reached now keeps them: the worker's start and the reaper abort stale uploads later."""
    state = state or get_state()
    if filename:
        try:
            state.storage.remove_parts(filename)
        except StorageError as e:
            current_app.logger.warning("the partial files of %s stay: %s", filename, e)


def update(backup_id: int, **values: Any) -> None:
    state = get_state()
    Backup = state.models.Backup
    state.db.session.execute(sa.update(Backup).where(Backup.id == backup_id).values(**values))
    state.db.session.commit()


def add_log(backup_id: int, level: str, message: str, *, commit: bool = True) -> None:
    state = get_state()
    state.db.session.add(
        state.models.BackupLog(backup_id=backup_id, level=level, message=message, at=utcnow())
    )
    if commit:
        state.db.session.commit()


def audit(
    action: str,
    backup_id: int,
    detail: str | None = None,
    *,
    actor: str | None,
    commit: bool = True,
) -> None:
    """Record who (``actor``: the host's name for the user, or :func:`process_actor`)
    created, downloaded, cancelled or deleted which backup."""
    state = get_state()
    state.db.session.add(
        state.models.BackupAudit(
            at=utcnow(), actor=actor, action=action, backup_id=backup_id, detail=detail
        )
    )
    if commit:
        state.db.session.commit()


def process_actor() -> str:
    """Who acts when no request does (a ``flask backups`` command, a worker's retention):
    the operating-system user of the process."""
    return f"cli:{getpass.getuser()}"
