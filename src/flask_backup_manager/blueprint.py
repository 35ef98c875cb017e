"""One blueprint, registered under ``BACKUP_MANAGER_URL_PREFIX``: JSON API and HTML pages."""

from __future__ import annotations

from flask import Blueprint

from .access import csrf_token
from .extension import get_state

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


from . import api, pages  # noqa: E402,F401  (routes attach themselves to the blueprint)
