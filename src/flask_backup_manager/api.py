"""The JSON API under ``<prefix>/api/``: the same service calls as the HTML pages (their URLs:
blueprint.py)."""

from __future__ import annotations

import json
from typing import Any

from flask import jsonify, request, url_for

from . import links, presenters, service
from .access import current_user_name, requires
from .delivery import not_modified, send_stored
from .errors import BackupManagerError, int_arg
from .models import Status
from .state import get_state

#: The most a request body may hold: ``{"format": "sqlite3_db"}`` needs a few dozen bytes,
#: and a request never holds more than this in memory. Checked here, not with the host's
#: MAX_CONTENT_LENGTH, which is the host's to set.
MAX_BODY = 1 << 20


def json_object() -> dict[str, Any]:
    """The request's JSON object, read with a bound: 413 past :data:`MAX_BODY`, 400 for
    anything but a JSON object (other content types, bad UTF-8, nesting deeper than Python's
    recursion limit)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    raw = request.stream.read(MAX_BODY + 1)  # also bounds a body sent without Content-Length
    if len(raw) > MAX_BODY:
        raise _too_large()
    try:
        body = json.loads(raw) if request.is_json else None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        body = None
    if not isinstance(body, dict):
        raise _not_an_object()
    return body


def _not_an_object() -> BackupManagerError:
    return BackupManagerError(
        400, "bad_request", 'Send a JSON object such as {"format": "sqlite3_db"}.'
    )


def _too_large() -> BackupManagerError:
    return BackupManagerError(
        413, "body_too_large", f"The request body is larger than {MAX_BODY} bytes."
    )


@requires("view")
def api_formats() -> Any:
    """The formats, and the ways to make a copy (``redactions``: the full copy unless a
    profile is required, then each profile, with what the guard finds it leaves;
    ``encryption``: the keys a backup is encrypted for unless it asks not to be, and whether
    it may ask)."""
    state = get_state()
    return {
        "formats": service.formats(),
        "redactions": [c.as_dict() for c in service.redaction_choices()],
        "encryption": {
            "recipients": service.describe_recipients(state.recipients),
            "required": state.require_encryption,
        },
    }


def backup_object(backup: Any, warning: str | None = None) -> dict[str, Any]:
    """The backup as the API answers it: :func:`presenters.to_dict` and ``warning``, why it
    would not start now (:func:`service.worker_warning`) while it is queued, else null."""
    queued = backup.status == Status.QUEUED
    return {**presenters.to_dict(backup), "warning": warning if queued else None}


def page_args() -> tuple[int, int]:
    """``page`` and ``per_page`` (capped at 100) of a paginated answer; 400 unless whole."""
    return int_arg("page", 1), min(int_arg("per_page", get_state().per_page), 100)


@requires("view")
def api_list() -> Any:
    page, per_page = page_args()
    items, total = service.list_backups(page, per_page)
    warning = service.worker_warning()
    return {
        "backups": [backup_object(b, warning) for b in items],
        "page": page,
        "per_page": per_page,
        "total": total,
        "warning": warning,
    }


@requires("create")
def api_create() -> Any:
    body = json_object()
    if "format" not in body:
        raise _not_an_object()
    backup = service.create_backup(
        body["format"],
        created_by=current_user_name(),
        redaction=body.get("redaction"),
        encrypt=body.get("encrypt"),
    )
    return jsonify(backup_object(backup, service.worker_warning())), 202


@requires("view")
def api_get(backup_id: str) -> Any:
    backup = service.get_backup(backup_id)
    queued = backup.status == Status.QUEUED
    return backup_object(backup, service.worker_warning() if queued else None)


@requires("view")
def api_logs(backup_id: str) -> Any:
    return {"logs": service.backup_logs(service.get_backup(backup_id))}


@requires("view")
def api_manifest(backup_id: str) -> Any:
    """The manifest of a backup's file, as the engine made it (404 ``no_manifest`` before)."""
    return service.manifest(service.get_backup(backup_id))


@requires("view")
def api_audit(backup_id: str) -> Any:
    return {"audit": service.audit_trail(backup_id)}


@requires("view")
def api_audit_log() -> Any:
    page, per_page = page_args()
    entries, total = service.audit_log(page, per_page)
    return {"audit": entries, "page": page, "per_page": per_page, "total": total}


@requires("download")
def api_download(backup_id: str) -> Any:
    """The file as an attachment, streamed, through :func:`service.download`.

    Every answer with content (200 or 206, whatever the Range header says and however
    werkzeug reads it) is preceded by a check of the whole file against its sha256, so a file
    changed in storage is never sent, not even a range of it; and each such GET is audited once.
    The check costs one read of the file per request: a download resumed in N ranges reads it
    N times. A 304 (the client has it) sends nothing and is not audited; nor is a HEAD, which
    sends no body but is checked like the GET it describes."""
    backup = service.get_backup(backup_id)
    service.downloadable(backup)  # 409 or 410 before anything else
    if request.if_none_match.contains(backup.sha256):  # the client has it: no need to read it
        return not_modified(backup)
    return service.download(backup, send_stored, actor=current_user_name())


@requires("delete")
def api_delete(backup_id: str) -> Any:
    service.delete_backup(service.get_backup(backup_id), actor=current_user_name())
    return "", 204


@requires("create")
def api_cancel(backup_id: str) -> Any:
    return backup_object(
        service.cancel_backup(service.get_backup(backup_id), actor=current_user_name())
    )


def link_url(token: str) -> str:
    """A link's address, as the request reached us (behind a proxy: with ProxyFix)."""
    return url_for("backup_manager.link_page", token=token, _external=True)


@requires("view")
def api_links(backup_id: str) -> Any:
    """A backup's links, newest first, without their tokens (only their hashes are kept)."""
    backup = service.get_backup(backup_id)
    at = links.now()
    return {"links": [links.link_entry(link, at) for link in links.list_links(backup)]}


@requires("share")
def api_link_create(backup_id: str) -> Any:
    """A new link: 201 with its ``url`` and ``token``, given this once."""
    backup = service.get_backup(backup_id)
    body = json_object() if request.content_length else {}  # no body: every default
    unknown = sorted(set(body) - {"expires_in_hours", "max_downloads", "note"})
    if unknown:
        raise links.invalid(
            unknown[0],
            f"Unknown field {service.clip(unknown[0])}: send expires_in_hours, max_downloads "
            "and note, each optional.",
        )
    made = links.create_link(
        backup,
        created_by=current_user_name(),
        expires_in_hours=body.get("expires_in_hours"),
        max_downloads=body.get("max_downloads"),
        note=body.get("note"),
        url_of=link_url,
    )
    return jsonify({**links.link_entry(made.link), "url": made.url, "token": made.token}), 201


@requires("share")
def api_link_revoke(backup_id: str, link_id: str) -> Any:
    link = links.get_link(service.get_backup(backup_id), link_id)
    return links.link_entry(links.revoke_link(link, actor=current_user_name()))
