"""``flask backups ...``: the same operations as the web UI, for the server's shell."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click
from flask import current_app, url_for
from flask.cli import AppGroup

from . import links, presenters, service
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
@click.option(
    "--redaction",
    metavar="PROFILE",
    help="A redaction profile of the app's (see `flask backups redaction check`); "
    "none: a full copy.",
)
@click.option(
    "--encrypt/--no-encrypt",
    default=None,
    help="Encrypt the file for the app's BACKUP_MANAGER_RECIPIENTS (the default when it names "
    "a key; the file ends in .age).",
)
@click.option("--wait", is_flag=True, help="Wait until a worker has finished the backup.")
def create(format_: str, redaction: str | None, encrypt: bool | None, wait: bool) -> None:
    """Queue a new backup (a worker makes it)."""
    try:
        backup = service.create_backup(
            format_, created_by=process_actor(), redaction=redaction, encrypt=encrypt
        )
    except ServiceError as e:
        _fail(e)
    try:  # from the first line on, Ctrl-C says what became of the backup
        copy = f", redaction {backup.redaction}" if backup.redaction else ""
        readers = presenters.readers(presenters.encrypted_for(backup))
        copy += f", encrypted for {readers}" if backup.encrypted_for else ""
        _echo(f"Backup {backup.id} queued ({backup.format}{copy}).")
        _warn_without_worker()
        if not wait:
            return
        said = (backup.status, None)
        while backup.status not in FINISHED:
            time.sleep(0.5)
            get_state().db.session.expire_all()
            backup = service.get_backup(backup.id)
            now = (backup.status, backup.phase)
            if now != said:  # "running: waiting for a lock on orders (held by pid ...)"
                said = now
                _echo(f"Backup {backup.id} {backup.status}" + (f": {now[1]}" if now[1] else "."))
    except KeyboardInterrupt:
        if backup.status not in FINISHED:
            _echo(
                f"Stopped waiting: backup {backup.id} is still {backup.status} "
                f"(`flask backups cancel {backup.id}` stops it).",
                err=True,
            )
        raise
    if backup.status != Status.SUCCEEDED:
        raise _error(f"Backup {backup.id} {backup.status}: {backup.error}")
    _echo(f"{backup.filename} {presenters.plural(backup.size, 'byte')} sha256 {backup.sha256}")


def _warn_without_worker() -> None:
    """Say so when a backup queued now would not start: no worker listens (or no queue)."""
    warning = service.worker_warning()
    if warning:
        _echo(f"Warning: {warning}", err=True)


@backups_cli.command("list")
@click.option("--page", default="1", show_default=True, help="A whole number, from 1.")
def list_(page: str) -> None:
    """List backups, newest first."""
    number = whole_number(page)
    if number is None or number < 1:
        raise _error("--page must be a whole number from 1, of at most 18 digits.")
    items, total = service.list_backups(number)
    pages = max(1, -(-total // get_state().per_page))
    if not items:
        _echo(
            f"No backups on page {number} of {pages} ({total} in all)." if total else "No backups."
        )
        return
    _echo(f"{'ID':>5}  {'FORMAT':<10}  {'STATUS':<9}  {'SIZE':>10}  CREATED")
    problems = service.file_problems(items)  # a stat: gone, or not its size
    for b in items:
        created, size = presenters.iso(b.created_at), presenters.human_size(b.size)
        problem = problems[b.id]
        status = f"{b.status}{'!' if problem else ''}"
        _echo(f"{b.id:>5}  {b.format:<10}  {status:<9}  {size:>10}  {created}")
        if problem:
            _echo(f"       ! {problem}")
    _echo(f"{presenters.plural(total, 'backup')}, page {number} of {pages}")
    if any(b.status == Status.QUEUED for b in items):
        _warn_without_worker()


@backups_cli.command("show")
@click.argument("backup_id")
@click.option("--manifest", is_flag=True, help="Print the manifest of its file, as JSON.")
def show(backup_id: str, manifest: bool) -> None:
    """Show one backup and its log (or its manifest)."""
    try:
        b = service.get_backup(backup_id)
        if manifest:
            # ASCII JSON: every character a name may hold is escaped, none drives the terminal
            click.echo(json.dumps(service.manifest(b), indent=2, sort_keys=True, ensure_ascii=True))
            return
    except ServiceError as e:
        _fail(e)
    for key, value in presenters.to_dict(b).items():
        if key == "progress":
            value = (
                f"{value['tables_done']} of {presenters.plural(value['tables_total'], 'table')}, "
                f"{value['rows_done']} of {presenters.plural(value['rows_total'], 'row')}"
                + (f"; {value['phase']}" if value["phase"] else "")
            )
        elif key == "duration" and value is not None:
            value = f"{value:.1f} s"
        elif key == "encrypted_for" and value:  # "Acme support (SHA256:...)", not a repr
            value = ", ".join(f"{r['label'] or 'a key'} ({r['fingerprint']})" for r in value)
        _echo(f"{key}: {'-' if value is None else value}")
    problem = service.file_problem(b, full=True)  # read against its sha256, as the page does
    if problem:
        _echo(f"file: {problem}")
    if b.status == Status.QUEUED:
        _warn_without_worker()
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
                assert stored.file is not None  # direct=False: the file itself, read here
                stored.file.close()
                out.flush()
                if force:
                    os.replace(part, target)
                else:
                    os.link(part, target)
                return None, True

            service.download(
                backup, deliver, actor=process_actor(), detail="cli", copy=out.write, direct=False
            )
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
    _echo(f"Backup {backup_id} deleted.")


@backups_cli.command("cancel")
@click.argument("backup_id")
def cancel(backup_id: str) -> None:
    """Stop a queued or running backup."""
    try:
        b = service.cancel_backup(service.get_backup(backup_id), actor=process_actor())
    except ServiceError as e:
        _fail(e)
    _echo(f"Backup {b.id} {b.status}.")


@backups_cli.command("prune")
def prune() -> None:
    """Apply the retention settings (BACKUP_MANAGER_KEEP_LAST / KEEP_DAYS) now."""
    state = get_state()
    if state.keep_last is None and state.keep_days is None:
        raise _error(
            "No retention is configured: set BACKUP_MANAGER_KEEP_LAST and/or "
            "BACKUP_MANAGER_KEEP_DAYS."
        )
    deleted = service.prune(state, actor=process_actor())
    ids = ", ".join(map(str, deleted))
    _echo(f"Deleted {presenters.plural(len(deleted), 'backup')}" + (f": {ids}." if ids else "."))


@backups_cli.group("redaction")
def redaction() -> None:
    """The app's redaction profiles."""


@redaction.command("check")
@click.argument("profile", required=False)
def redaction_check(profile: str | None) -> None:
    """Check each profile (or PROFILE) against the database as it is now: the rules that
    cannot apply, and the columns whose names look personal or secret that it leaves as they
    are. Exits 1 on a rule that cannot apply, and on such a column when
    BACKUP_MANAGER_REDACTION_STRICT is on."""
    try:
        checks = service.check_redactions(profile)
    except ServiceError as e:
        _fail(e)
    if not checks:
        raise _error(
            "No redaction profile is declared: see BACKUP_MANAGER_REDACTION, or a rule on a "
            "model's column (info={'backup_manager': {'redact': ...}})."
        )
    strict, failed = get_state().redaction_strict, False
    for check in checks:
        _echo(f"{check.name}: {check.summary}")
        for problem in check.problems:
            _echo(f"  problem: {problem}")
        if check.unredacted:
            _echo(f"  not redacted: {', '.join(check.unredacted)}")
        failed = failed or bool(check.problems) or (strict and bool(check.unredacted))
    if failed:
        if strict and any(c.unredacted for c in checks):
            _echo(
                "BACKUP_MANAGER_REDACTION_STRICT is on: give each column listed a rule, or "
                "`keep` to copy it as it is.",
                err=True,
            )
        sys.exit(1)


@backups_cli.command("link")
@click.argument("backup_id")
@click.option(
    "--expires",
    metavar="AGE",
    help="How long the link lives: 72h (the default), 3d, or hours as a number; at most "
    "BACKUP_MANAGER_LINK_MAX_AGE hours.",
)
@click.option("--max-downloads", metavar="N", help="How many downloads it allows (default: any).")
@click.option("--note", metavar="TEXT", help='A note kept with it, e.g. "ticket #4711".')
@click.option(
    "--base-url",
    metavar="URL",
    help="The address people reach the app at (https://shop.example.com, with any path it is "
    "mounted under); default: from SERVER_NAME and PREFERRED_URL_SCHEME.",
)
@click.option("--list", "list_", is_flag=True, help="List the backup's links (never a token).")
@click.option("--revoke", metavar="TOKEN_OR_LINK_ID", help="Revoke one of the backup's links.")
def link(
    backup_id: str,
    expires: str | None,
    max_downloads: str | None,
    note: str | None,
    base_url: str | None,
    list_: bool,
    revoke: str | None,
) -> None:
    """Make a download link to a backup for someone without an account; its address is
    printed this once (only its hash is kept). Or --list or --revoke its links."""
    try:
        b = service.get_backup(backup_id)
        if list_ and revoke:
            raise _error("--list and --revoke go alone: give one of them.")
        if revoke is not None:
            found = links.revoke_link(links.find_link(b, revoke), actor=process_actor())
            _echo(f"Link {found.id} of backup {b.id} revoked.")
            return
        if list_:
            _list_links(b)
            return
        url_of = _link_address(base_url)
        made = links.create_link(
            b,
            created_by=process_actor(),
            expires_in_hours=_hours(expires),
            max_downloads=max_downloads,
            note=note,
            url_of=url_of,
        )
    except ServiceError as e:
        field = e.extra.get("field")
        if field in LINK_OPTIONS:  # said as the option typed, not the API's field
            raise _error(e.message.replace(field, LINK_OPTIONS[field], 1)) from None
        _fail(e)
    entry = links.link_entry(made.link)
    most = made.link.max_downloads
    limit = f", at most {presenters.plural(most, 'download')}" if most else ""
    _echo(made.url)
    _echo(
        f"Link {made.link.id} of backup {b.id}: expires {entry['expires_at']}{limit}. "
        "Shown only now: copy it.",
        err=True,
    )


#: the API's fields of a link, as ``flask backups link`` names them
LINK_OPTIONS = {
    "expires_in_hours": "--expires",
    "max_downloads": "--max-downloads",
    "note": "--note",
}


def _hours(value: str | None) -> str | None:
    """--expires as hours: ``72h``, ``3d`` or a number of hours; the service checks the range."""
    if value is None:
        return None
    text = value.strip().lower()
    number = whole_number(text.rstrip("hd")) if text[-1:] in ("h", "d") else whole_number(text)
    if number is None:
        raise _error(f"--expires must be hours or days such as 72h or 3d, not {value!r}.")
    return str(number * 24 if text.endswith("d") else number)


def _link_address(base_url: str | None) -> Any:
    """How a token becomes the link's address: --base-url, else the app's SERVER_NAME."""
    if base_url is not None:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", base_url):
            raise _error(f"--base-url must be an http:// or https:// address, not {base_url!r}.")
        prefix = current_app.config["BACKUP_MANAGER_URL_PREFIX"].rstrip("/")
        return lambda token: f"{base_url.rstrip('/')}{prefix}/l/{token}"
    if not current_app.config.get("SERVER_NAME"):
        raise _error(
            "The link needs the address people reach the app at: give --base-url "
            "https://your.site, or set SERVER_NAME."
        )
    return lambda token: url_for("backup_manager.link_page", token=token, _external=True)


def _list_links(backup: Any) -> None:
    found = links.list_links(backup)
    if not found:
        _echo(f"Backup {backup.id} has no links.")
        return
    at = links.now()
    _echo(f"{'ID':>5}  {'STATE':<8}  {'DOWNLOADS':<9}  {'EXPIRES':<20}  CREATED BY / NOTE")
    for item in found:
        e = links.link_entry(item, at)
        used = f"{e['downloads']}" + (f"/{e['max_downloads']}" if e["max_downloads"] else "")
        note = f" / {e['note']}" if e["note"] else ""
        _echo(
            f"{e['id']:>5}  {e['state']:<8}  {used:<9}  {e['expires_at'][:19] + 'Z':<20}  "
            f"{e['created_by'] or '-'}{note}"
        )


@backups_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--name", help="Worker name (default: RQ's).")
def worker(burst: bool, name: str | None) -> None:
    """Run an RQ worker for the backup queue (run as many as you like, on any host)."""
    try:  # a bucket that does not exist or refuses writes: said now, not after an export
        service.check_storage()
    except ServiceError as e:
        raise _error(e.message) from None
    service.sweep_work_dir()  # what a worker killed on this host before left behind
    engines = list(get_state().db.engines.values())
    # The work horse is a fork: it must not share the parent's pooled database connections.
    os.register_at_fork(after_in_child=lambda: [e.dispose(close=False) for e in engines])
    w = make_worker(name)
    _echo(f"worker {w.name} on queue {get_state().queue_name}", err=True)
    ok = w.work(burst=burst, logging_level="WARNING")
    sys.exit(0 if ok or burst else 1)


@backups_cli.command("check-storage")
def check_storage() -> None:
    """Store, read and remove a small file where backups are kept: whether backups can be
    stored there now (the worker checks the same when it starts)."""
    try:
        service.check_storage()
    except ServiceError as e:
        raise _error(e.message) from None
    _echo(f"storage {get_state().storage.url}: a file was stored, read and removed")


__all__ = ["backups_cli"]
