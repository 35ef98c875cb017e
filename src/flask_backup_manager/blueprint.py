"""One blueprint, registered under ``BACKUP_MANAGER_URL_PREFIX``: the URL map of the JSON API
(api.py) and the HTML pages (pages.py), their template helpers, and the headers every answer
carries."""

from __future__ import annotations

from types import SimpleNamespace

from flask import Blueprint, Response, current_app, request

from . import api, pages
from .access import csrf_token
from .errors import BackupManagerError, security_headers, unknown_api_path
from .presenters import human_size, readers
from .state import get_state

blueprint = Blueprint(
    "backup_manager",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

#: method, rule and view of every route; a view's name is its endpoint (``url_for`` targets
#: such as ``backup_manager.api_list`` or ``backup_manager.detail``)
ROUTES = [
    ("GET", "/api/formats", api.api_formats),
    ("GET", "/api/backups", api.api_list),
    ("POST", "/api/backups", api.api_create),
    ("GET", "/api/backups/<backup_id>", api.api_get),
    ("GET", "/api/backups/<backup_id>/logs", api.api_logs),
    ("GET", "/api/backups/<backup_id>/manifest", api.api_manifest),
    ("GET", "/api/backups/<backup_id>/audit", api.api_audit),
    ("GET", "/api/audit", api.api_audit_log),
    ("GET", "/api/backups/<backup_id>/download", api.api_download),
    ("DELETE", "/api/backups/<backup_id>", api.api_delete),
    ("POST", "/api/backups/<backup_id>/cancel", api.api_cancel),
    ("GET", "/api/backups/<backup_id>/links", api.api_links),
    ("POST", "/api/backups/<backup_id>/links", api.api_link_create),
    ("POST", "/api/backups/<backup_id>/links/<link_id>/revoke", api.api_link_revoke),
    ("GET", "/", pages.index),
    ("GET", "/new", pages.new),
    ("GET", "/activity", pages.activity),
    ("POST", "/", pages.create),
    ("GET", "/<backup_id>", pages.detail),
    ("POST", "/<backup_id>/delete", pages.delete),
    ("POST", "/<backup_id>/cancel", pages.cancel),
    ("POST", "/<backup_id>/retry", pages.retry),
    ("POST", "/<backup_id>/links", pages.create_link),
    ("POST", "/<backup_id>/links/<link_id>/revoke", pages.revoke_link),
    ("GET", "/l/<path:token>", pages.link_page),  # every path under it: never the host's 404
]
#: the pages a link opens: whoever holds it may not be signed in, and its token is in the URL
LINK_ENDPOINTS = ("backup_manager.link_page",)
for method, rule, view in ROUTES:
    blueprint.add_url_rule(rule, view_func=view, methods=[method])


@blueprint.context_processor
def _template_globals() -> dict:
    """The one name our pages add beside their values (``bm``), so none of the host's context
    processors or globals is shadowed on them: ``backup_manager.base_template``,
    ``backup_manager.may("delete")``, ``backup_manager.csrf_token()``."""
    helpers = SimpleNamespace(
        base_template=get_state().base_template, may=pages.may, csrf_token=csrf_token
    )
    return {"backup_manager": helpers}


blueprint.before_app_request(unknown_api_path)


@blueprint.app_errorhandler(BackupManagerError)
def _our_errors(e: BackupManagerError) -> Response:
    """Our errors answer as themselves (JSON for the API, our page for the UI), also in a host
    whose own handler takes every HTTPException (Flask's "generic exception handler"): Flask
    picks the handler of the closest class, and this one is closer."""
    return e.get_response()


blueprint.add_app_template_filter(human_size, "backup_manager_size")
blueprint.add_app_template_filter(pages.code_filter, "backup_manager_code")
blueprint.add_app_template_filter(readers, "backup_manager_readers")


@blueprint.after_request
def _security_headers(response: Response) -> Response:
    """Pages, JSON, downloads and error answers alike; the static files may be cached."""
    if request.endpoint != "backup_manager.static":
        security_headers(response)
    if request.endpoint in LINK_ENDPOINTS:
        # the token is in the page's URL: no request from the page may carry it away
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def exempt_from_flask_wtf() -> None:
    """Our routes check CSRF themselves (and let cookie-less bearer requests through), so
    Flask-WTF's CSRFProtect, when the host uses it, must leave them alone (a before-request
    function the extension puts first, ahead of CSRFProtect's own)."""
    csrf = current_app.extensions.get("csrf")
    if csrf is not None and request.blueprint == "backup_manager":
        csrf.exempt(blueprint)
