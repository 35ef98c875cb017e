"""The HTML pages: list, create, detail, delete, cancel, try again. Each is one service call and
a template (their URLs: blueprint.py). A form posts, flashes what happened and redirects (303),
so a reload never posts again."""

from __future__ import annotations

import re
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from markupsafe import Markup, escape

from . import links, presenters, service
from .access import current_user_name, requires
from .delivery import send_from
from .errors import http_error, int_arg
from .models import FINISHED, Status, utcnow
from .state import get_state

#: Our flash messages' categories start with this, so our pages show ours and never the
#: host's (a host layout that shows every flash shows ours too).
FLASH = "backup_manager-"


def may(permission: str) -> bool:
    """``backup_manager.may("delete")`` in a template: show only the buttons the host's check
    would allow."""
    check = get_state().ext._access
    return bool(check and check(permission))


def code_filter(text: str) -> Markup:
    """Template filter: escape ``text`` and show its `backquoted` parts (commands, in
    descriptions) as code."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def render(template: str, **values: Any) -> str:
    """Render one of our pages with the app's whole context (its context processors and
    globals) and this page's ``values`` under the one name ``bm``: a name of the host's layout
    (``page``, ``error``, ...) is never shadowed by ours."""
    return render_template(f"backup_manager/{template}", bm=values)


def done(message: str | Markup, endpoint: str, **values: Any) -> Any:
    """Flash what was done and redirect (303) to ``endpoint``."""
    return _flash_redirect(message, "success", endpoint, **values)


def refused(e: service.ServiceError, endpoint: str, **values: Any) -> Any:
    """A refused operation: its reason flashed, then the page to try from (a 404 or a
    server error stays an error page)."""
    if e.status not in (400, 409, 429, 503) and e.code not in (
        "redaction_required",
        "encryption_required",
    ):
        raise e
    return _flash_redirect(refusal(e), "error", endpoint, **values)


def _flash_redirect(message: str | Markup, category: str, endpoint: str, **values: Any) -> Any:
    flash(message, FLASH + category)
    return redirect(url_for(endpoint, **values), code=303)


def refusal(e: service.ServiceError) -> str | Markup:
    """What a person reads of a refusal: for too many active backups, a link to the one
    that is queued or running."""
    active = (getattr(e, "extra", None) or {}).get("active") or []
    if e.status != 429 or not active:
        return e.message
    links = Markup(", ").join(
        Markup('<a href="{}">backup {}</a>').format(url_for(".detail", backup_id=i), i)
        for i in active
    )
    if len(active) == 1:
        return Markup(
            "Another backup is already queued or running: {}. Try again when it has finished."
        ).format(links)
    return Markup(
        "Other backups are already queued or running: {}. Try again when one of them has finished."
    ).format(links)


@requires("view")
def index() -> Any:
    page = int_arg("page", 1)
    items, total = service.list_backups(page)
    per_page = get_state().per_page
    return render(
        "list.html",
        backups=[presenters.to_dict(b) for b in items],
        problems=service.file_problems(items),
        warning=service.worker_warning(),
        page=page,
        pages=max(1, -(-total // per_page)),
        total=total,
    )


@requires("view")
def activity() -> Any:
    """The audit trail of all backups, deleted ones too, newest first."""
    page = int_arg("page", 1)
    entries, total = service.audit_log(page)
    return render(
        "activity.html",
        entries=entries,
        existing=service.existing_backups(e["backup_id"] for e in entries),
        page=page,
        pages=max(1, -(-total // get_state().per_page)),
        total=total,
    )


@requires("create")
def new() -> Any:
    return render(
        "new.html",
        formats=service.formats(),
        choices=service.redaction_choices(),
        recipients=service.describe_recipients(get_state().recipients),
        require_encryption=get_state().require_encryption,
        warning=service.worker_warning(),
    )


@requires("create")
def create() -> Any:
    try:
        backup = service.create_backup(
            request.form.get("format"),
            created_by=current_user_name(),
            redaction=request.form.get("redaction"),
            encrypt=encrypt_field(),
        )
    except service.ServiceError as e:
        return refused(e, ".new")
    return done(f"Backup {backup.id} queued.", ".detail", backup_id=backup.id)


def encrypt_field() -> Any:
    """The create form's "Encrypt for ..." box: a hidden ``encrypt=0`` before the checkbox's
    ``encrypt=1``, so the last value says whether it was ticked; absent (a form without the
    box: no keys, or encryption required): None, the default. Another value goes to the
    service as it came, which refuses it."""
    values = request.form.getlist("encrypt")
    if not values:
        return None
    return {"1": True, "0": False}.get(values[-1], values[-1])


@requires("view")
def detail(backup_id: str) -> Any:
    return detail_page(service.get_backup(backup_id))


def detail_page(backup: Any, new_link: links.NewLink | None = None) -> str:
    """The detail page; ``new_link``: a link just made, whose address it shows this once."""
    at = links.now()
    return render(
        "detail.html",
        links=[links.link_entry(link, at) for link in links.list_links(backup)],
        new_link=new_link and {"id": new_link.link.id, "url": new_link.url},
        max_hours=get_state().link_max_age,
        default_hours=min(links.DEFAULT_HOURS, get_state().link_max_age),
        note_max=links.NOTE_MAX,
        backup=presenters.to_dict(backup),
        logs=service.backup_logs(backup),
        audit=service.audit_trail(backup.id),
        manifest=presenters.manifest_of(backup),
        finished=backup.status in FINISHED,
        problem=service.file_problem(backup, full=True),
        warning=service.worker_warning() if backup.status == Status.QUEUED else None,
        elapsed=elapsed(backup),
    )


def elapsed(backup: Any) -> float | None:
    """Seconds since a running backup started (None for any other)."""
    started = presenters.as_utc(backup.started_at)
    if backup.status != Status.RUNNING or started is None:
        return None
    return max(0.0, (utcnow() - started).total_seconds())


@requires("delete")
def delete(backup_id: str) -> Any:
    backup = service.get_backup(backup_id)
    try:
        service.delete_backup(backup, actor=current_user_name())
    except service.ServiceError as e:
        return refused(e, ".detail", backup_id=backup.id)
    return done(f"Backup {backup.id} deleted.", ".index")


@requires("create")
def cancel(backup_id: str) -> Any:
    backup = service.get_backup(backup_id)
    try:
        service.cancel_backup(backup, actor=current_user_name())
    except service.ServiceError as e:
        return refused(e, ".detail", backup_id=backup.id)
    return done(f"Backup {backup.id} cancelled.", ".detail", backup_id=backup.id)


@requires("create")
def retry(backup_id: str) -> Any:
    """Try a failed or cancelled backup again: a new backup of the same format and the same
    redaction profile (never a full copy in place of a redacted one), encrypted if it was
    (never a plaintext copy in place of an encrypted one; else the default)."""
    backup = service.get_backup(backup_id)
    if backup.status not in (Status.FAILED, Status.CANCELLED):
        return _flash_redirect(
            f"Only a failed or cancelled backup can be tried again (backup {backup.id}: "
            f"{backup.status}).",
            "error",
            ".detail",
            backup_id=backup.id,
        )
    try:
        again = service.create_backup(
            backup.format,
            created_by=current_user_name(),
            redaction=backup.redaction,
            encrypt=True if backup.encrypted_for else None,
        )
    except service.ServiceError as e:
        return refused(e, ".detail", backup_id=backup.id)
    return done(
        f"Backup {again.id} queued (backup {backup.id} tried again).", ".detail", backup_id=again.id
    )


@requires("share")
def create_link(backup_id: str) -> Any:
    """Make a link and show the detail page with its address, this once: no redirect, so
    the token is never kept in a flash message (the session cookie) or the history's URL."""
    backup = service.get_backup(backup_id)
    try:
        made = links.create_link(
            backup,
            created_by=current_user_name(),
            expires_in_hours=request.form.get("expires_in_hours"),
            max_downloads=request.form.get("max_downloads"),
            note=request.form.get("note"),
            url_of=lambda token: url_for(".link_page", token=token, _external=True),
        )
    except service.ServiceError as e:
        return refused(e, ".detail", backup_id=backup.id)
    return detail_page(backup, made), 201


@requires("share")
def revoke_link(backup_id: str, link_id: str) -> Any:
    backup = service.get_backup(backup_id)
    link = links.revoke_link(links.get_link(backup, link_id), actor=current_user_name())
    return done(f"Link {link.id} revoked.", ".detail", backup_id=backup.id)


# -- the link page: outside the host's login, for whoever holds the link ----------------


def client() -> links.Client:
    return links.Client(request.remote_addr, request.user_agent.string or None)


def link_page(token: str) -> Any:
    """What a link opens: the backup's facts, how to restore it, a Download button; with
    ``?download=1`` the file itself (Range and resume as the API's download). Every unusable
    link answers :func:`link_gone`. No access check: the token is the permission."""
    try:
        if request.args.get("download") == "1":
            return links.download_through(token, send_from, client())
        link, backup = links.open_link(token, client())
    except links.LinkGone:
        return link_gone()
    except service.ServiceError as e:  # a file damaged in storage: said, never sent
        raise http_error(e) from None
    values = presenters.to_dict(backup)
    return render(
        "link.html",
        backup=values,
        manifest=presenters.manifest_of(backup),
        link=links.link_entry(link),
        download_url=url_for(".link_page", token=token, download=1),
        curl_url=url_for(".link_page", token=token, download=1, _external=True),
        restore=presenters.restore_commands(backup.format, backup.filename),
        key_file=presenters.KEY_FILE,
    )


def link_gone() -> Any:
    """The one answer of every unusable link, whatever the reason: the same 404 page."""
    return render("link_gone.html", message=links.GONE_MESSAGE), 404
