"""The JSON API under ``<prefix>/api/``: the same service calls as the HTML pages."""

from __future__ import annotations

import json
from typing import Any

from flask import jsonify, request

from . import presenters, service
from .access import current_user_name, requires
from .blueprint import blueprint
from .errors import BackupManagerError, bad_request, int_arg

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
        raise bad_request("bad_request", 'Send a JSON object such as {"format": "sqlite3_db"}.')
    return body


def _too_large() -> BackupManagerError:
    return BackupManagerError(
        413, "body_too_large", f"The request body is larger than {MAX_BODY} bytes."
    )


@blueprint.get("/api/formats", endpoint="api_formats")
@requires("view")
def api_formats() -> Any:
    return {"formats": service.formats()}


@blueprint.get("/api/backups", endpoint="api_list")
@requires("view")
def api_list() -> Any:
    page = int_arg("page", 1)
    per_page = min(int_arg("per_page", service.get_state().per_page), 100)
    items, total = service.list_backups(page, per_page)
    return {
        "backups": [presenters.to_dict(b) for b in items],
        "page": page,
        "per_page": per_page,
        "total": total,
    }


@blueprint.post("/api/backups", endpoint="api_create")
@requires("create")
def api_create() -> Any:
    body = json_object()
    if "format" not in body:
        raise bad_request("bad_request", 'Send a JSON object such as {"format": "sqlite3_db"}.')
    backup = service.create_backup(body["format"], created_by=current_user_name())
    return jsonify(presenters.to_dict(backup)), 202


@blueprint.get("/api/backups/<backup_id>", endpoint="api_get")
@requires("view")
def api_get(backup_id: str) -> Any:
    return presenters.to_dict(service.get_backup(backup_id))


@blueprint.get("/api/backups/<backup_id>/logs", endpoint="api_logs")
@requires("view")
def api_logs(backup_id: str) -> Any:
    return {"logs": service.backup_logs(service.get_backup(backup_id))}


@blueprint.get("/api/backups/<backup_id>/audit", endpoint="api_audit")
@requires("view")
def api_audit(backup_id: str) -> Any:
    return {"audit": service.audit_trail(service.get_backup(backup_id).id)}


@blueprint.get("/api/backups/<backup_id>/download", endpoint="api_download")
@requires("download")
def api_download(backup_id: str) -> Any:
    return service.download(service.get_backup(backup_id))


@blueprint.delete("/api/backups/<backup_id>", endpoint="api_delete")
@requires("delete")
def api_delete(backup_id: str) -> Any:
    service.delete_backup(service.get_backup(backup_id))
    return "", 204


@blueprint.post("/api/backups/<backup_id>/cancel", endpoint="api_cancel")
@requires("create")
def api_cancel(backup_id: str) -> Any:
    return presenters.to_dict(service.cancel_backup(service.get_backup(backup_id)))
