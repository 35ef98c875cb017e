"""The JSON API under ``<prefix>/api/``: the same service calls as the HTML pages."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from . import service
from .access import current_user_name, requires
from .blueprint import blueprint
from .errors import bad_request, int_arg, is_api


@blueprint.after_request
def _no_store(response: Response) -> Response:
    if is_api():
        response.headers["Cache-Control"] = "no-store"
    return response


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
        "backups": [service.to_dict(b) for b in items],
        "page": page,
        "per_page": per_page,
        "total": total,
    }


@blueprint.post("/api/backups", endpoint="api_create")
@requires("create")
def api_create() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "format" not in body:
        raise bad_request("bad_request", 'Send a JSON object such as {"format": "sqlite3_db"}.')
    backup = service.create_backup(body["format"], created_by=current_user_name())
    return jsonify(service.to_dict(backup)), 202


@blueprint.get("/api/backups/<backup_id>", endpoint="api_get")
@requires("view")
def api_get(backup_id: str) -> Any:
    return service.to_dict(service.get_backup(backup_id))


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
    return service.to_dict(service.cancel_backup(service.get_backup(backup_id)))
