"""``flask backups ...``: the same operations as the web UI, for the server's shell."""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from . import presenters, service
from .engine import escape_controls
from .lifecycle import process_actor
from .models import FINISHED, Status
from .queue import make_worker
from .service import ServiceError, whole_number
from .state import get_state

backups_cli = AppGroup("backups", help="Create, inspect, download and delete backups.")


def _echo(text: str, err: bool = False) -> None:
    """Print one line. Log lines, errors and names come from the customer's database: their
    control characters are escaped, so none of them can drive the terminal."""
    click.echo(escape_controls(text), err=err)


def _error(message: str) -> click.ClickException:
    return click.ClickException(escape_controls(message))


def _fail(e: ServiceError) -> None:
    raise _error(e.message)


@backups_cli.command("create")
@click.option("--format", "format_", required=True, help="sqlite3, postgres or sqlite3_db")
@click.option("--wait", is_flag=True, help="Wait until a worker has finished the backup.")
def create(format_: str, wait: bool) -> None:
    """Queue a new backup (a worker makes it)."""
    try:
        backup = service.create_backup(format_, created_by=process_actor())
    except ServiceError as e:
        _fail(e)
    _echo(f"backup {backup.id} queued ({backup.format})")
    if not wait:
        return
    status = backup.status
    while status not in FINISHED:
        time.sleep(0.5)
        get_state().db.session.expire_all()
        backup = service.get_backup(backup.id)
        if backup.status != status:
            status = backup.status
            _echo(f"backup {backup.id} {status}")
    if status != Status.SUCCEEDED:
        raise _error(f"backup {backup.id} {status}: {backup.error}")
    _echo(f"{backup.filename} {backup.size} bytes sha256 {backup.sha256}")


@backups_cli.command("list")
@click.option("--page", default="1", show_default=True, help="A whole number, from 1.")
def list_(page: str) -> None:
    """List backups, newest first."""
    number = whole_number(page)
    if number is None:
        raise _error("--page must be a whole number of at most 18 digits")
    try:
        items, total = service.list_backups(number)
    except ServiceError as e:
        _fail(e)
    if not items:
        _echo("no backups")
        return
    _echo(f"{'ID':>5}  {'FORMAT':<10}  {'STATUS':<9}  {'SIZE':>10}  CREATED")
    for b in items:
        created, size = presenters.iso(b.created_at), presenters.human_size(b.size)
        _echo(f"{b.id:>5}  {b.format:<10}  {b.status:<9}  {size:>10}  {created}")
    pages = max(1, -(-total // get_state().per_page))
    _echo(f"{presenters.plural(total, 'backup')}, page {number} of {pages}")


@backups_cli.command("show")
@click.argument("backup_id")
def show(backup_id: str) -> None:
    """Show one backup and its log."""
    try:
        b = service.get_backup(backup_id)
    except ServiceError as e:
        _fail(e)
    for key, value in presenters.to_dict(b).items():
        if key == "progress":
            value = (
                f"{value['tables_done']} of {presenters.plural(value['tables_total'], 'table')}, "
                f"{value['rows_done']} of {presenters.plural(value['rows_total'], 'row')}"
            )
        _echo(f"{key}: {'-' if value is None else value}")
    _echo("log:")
    for line in service.backup_logs(b):
        _echo(f"  {line['at']} {line['level']:<7} {line['message']}")


@backups_cli.command("download")
@click.argument("backup_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="File to write, or a directory to write the backup's file name in (an existing one, "
    "or a path ending in '/'). Default: the backup's file name, here.",
)
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def download(backup_id: str, output: str | None, force: bool) -> None:
    """Copy a finished backup's file out of storage, checked and audited as the API's download."""
    try:
        b = service.get_backup(backup_id)
    except ServiceError as e:
        _fail(e)
    target = Path(output or b.filename)
    if output and (output.endswith(("/", os.sep)) or target.is_dir()):
        if not target.is_dir():
            raise _error(f"cannot copy backup {b.id} to {output}: no such directory")
        target = target / b.filename
    try:
        service.downloadable(b)  # before a part file is made
        if target.exists() and not force:
            raise _error(f"{target} already exists: add --force to overwrite it")
        _copy_out(b, target, force)
    except ServiceError as e:
        message = e.message
        if e.code == "checksum_mismatch":  # the copy is removed: say so
            message = f"The file of backup {b.id} no longer matches its sha256: not copied."
        raise _error(message) from None
    except FileExistsError:  # made between the check and the copy
        raise _error(f"{target} already exists: add --force to overwrite it") from None
    except OSError as e:  # a target that cannot be written
        raise _error(f"cannot copy backup {b.id} to {target}: {e.strerror or e}") from e
    _echo(f"{target} ({b.size} bytes, sha256 {b.sha256})")


def _copy_out(backup: Any, target: Path, force: bool) -> None:
    """Stream the file through :func:`service.download` into a part file beside ``target``,
    moved to it once the whole file has matched its sha256: a refused file leaves nothing.
    Without ``force`` the move is a hard link, which fails on a file that exists."""
    part = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with open(part, "xb") as out:

            def deliver(stored: service.StoredFile) -> tuple[None, bool]:
                stored.file.close()
                out.flush()
                if force:
                    os.replace(part, target)
                else:
                    os.link(part, target)
                return None, True

            service.download(backup, deliver, actor=process_actor(), detail="cli", copy=out.write)
    finally:
        part.unlink(missing_ok=True)


@backups_cli.command("delete")
@click.argument("backup_id")
def delete(backup_id: str) -> None:
    """Delete a backup's row, log and file."""
    try:
        service.delete_backup(service.get_backup(backup_id), actor=process_actor())
    except ServiceError as e:
        _fail(e)
    _echo(f"backup {backup_id} deleted")


@backups_cli.command("cancel")
@click.argument("backup_id")
def cancel(backup_id: str) -> None:
    """Stop a queued or running backup."""
    try:
        b = service.cancel_backup(service.get_backup(backup_id), actor=process_actor())
    except ServiceError as e:
        _fail(e)
    _echo(f"backup {b.id} {b.status}")


@backups_cli.command("prune")
def prune() -> None:
    """Apply the retention settings (BACKUP_MANAGER_KEEP_LAST / KEEP_DAYS) now."""
    state = get_state()
    if state.keep_last is None and state.keep_days is None:
        raise _error(
            "no retention configured: set BACKUP_MANAGER_KEEP_LAST and/or BACKUP_MANAGER_KEEP_DAYS"
        )
    deleted = service.prune(state, actor=process_actor())
    _echo(f"deleted {len(deleted)} backup(s)" + (f": {deleted}" if deleted else ""))


@backups_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--name", help="Worker name (default: RQ's).")
def worker(burst: bool, name: str | None) -> None:
    """Run an RQ worker for the backup queue (run as many as you like, on any host)."""
    engines = list(get_state().db.engines.values())
    # The work horse is a fork: it must not share the parent's pooled database connections.
    os.register_at_fork(after_in_child=lambda: [e.dispose(close=False) for e in engines])
    w = make_worker(name)
    _echo(f"worker {w.name} on queue {get_state().queue_name}", err=True)
    ok = w.work(burst=burst, logging_level="WARNING")
    sys.exit(0 if ok or burst else 1)


__all__ = ["backups_cli"]
