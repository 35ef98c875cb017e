"""One blueprint, registered under ``BACKUP_MANAGER_URL_PREFIX``: JSON API and HTML pages."""

from __future__ import annotations

from flask import Blueprint, Response, request

from .access import csrf_token
from .errors import security_headers
from .state import get_state

blueprint = Blueprint(
    "backup_manager",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@blueprint.context_processor
def _template_globals() -> dict:
    return {"csrf_token": csrf_token, "backup_manager": get_state()}


@blueprint.after_request
def _security_headers(response: Response) -> Response:
    """Pages, JSON, downloads and error answers alike; the static files may be cached."""
    if request.endpoint != "backup_manager.static":
        security_headers(response)
    return response


from . import api, pages  # noqa: E402,F401  (routes attach themselves to the blueprint)
