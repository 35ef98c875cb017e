"""The one exception type behind every error answer of the blueprint: JSON for the API, a page
for the HTML UI. A :class:`~.service.ServiceError` becomes one with the same status, code,
message and facts (:func:`http_error`); the views raise it themselves for what only HTTP knows
(a body too large, a Range the file does not have, an API path that does not exist)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, json, render_template, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .service import ServiceError, clip, whole_number
from .state import get_state


class BackupManagerError(HTTPException):
    """An HTTP error with a machine-readable ``error_code``, a message meant for a person,
    ``extra`` facts for the JSON error object and ``headers`` for the answer."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description=message)
        self.code = status
        self.error_code = error_code
        self.extra = extra or {}
        self.headers = headers or {}

    def get_response(self, environ=None, scope=None):  # type: ignore[override]
        if wants_json():
            error = {"code": self.error_code, "message": self.description, **self.extra}
            body, mimetype = json.dumps({"error": error}), "application/json"
        else:
            body, mimetype = self.page(), "text/html"
        response = super().get_response(environ, scope)
        response.set_data(body)
        response.mimetype = mimetype
        response.headers.update(self.headers)
        return security_headers(response)

    def page(self) -> str:
        """The error page, inside the host's layout as every page; when that layout itself
        fails (say it needs what only the host's views give it), the standalone page, so the
        visitor still learns what went wrong and the failure is in the app's log."""
        values = {"error": self, "advice": advice(self), "links": way_back(self)}
        try:
            return render_template("backup_manager/error.html", bm=values)
        except Exception:
            current_app.logger.exception("the layout failed on a Backup Manager error page")
            return render_template("backup_manager/error.html", bm={**values, "standalone": True})


#: What to do about an error, by its code (then by its status): the sentence under the
#: message on an error page. ``{permission}`` is the one the access check refused.
ADVICE = {
    "forbidden": "Ask an administrator of this site to give your account the "
    "\u201c{permission}\u201d permission of the Backup Manager.",
    "access_not_configured": "This is for the site's developers: the app has to register an "
    "access check (see the Backup Manager's README, Quickstart).",
    "not_found": "The backup may have been deleted (the Activity page still lists what "
    "happened to it), or the address is mistyped.",
    "not_finished": "Wait until the backup has finished (its page shows its progress), or "
    "cancel it first.",
    "already_finished": "Nothing is left to do: the backup has finished.",
    "file_missing": "The file was removed from storage outside the Backup Manager, so it "
    "cannot be downloaded: delete this backup and create a new one.",
    "checksum_mismatch": "The file was changed or damaged in storage, so it is not sent: "
    "delete this backup and create a new one, and have the storage checked if it happens "
    "again.",
    "queue_unavailable": "The backup is listed as failed: create it again once the queue is back.",
    "too_many_active": "Wait until it has finished, or cancel it on its page.",
    "csrf_failed": "Reload the page and try again: the form was older than your session, or "
    "came from another site.",
    400: "Check the address or the form, and try again.",
    404: "Check the address.",
    500: "This is a fault on the server: its log says more.",
    503: "Try again in a few minutes; if it lasts, tell the site's administrators.",
}


def advice(error: BackupManagerError) -> str | None:
    text = ADVICE.get(error.error_code) or ADVICE.get(error.code or 0)
    return text.format(permission=error.extra.get("permission", "")) if text else None


def way_back(error: BackupManagerError) -> list[tuple[str, str]]:
    """The links under an error: the list of backups to a visitor who may view it, else the
    site's home page (a "Backups" link on a 403 would lead back to the 403)."""
    if not may_view():
        return [(request.script_root + "/", "The site's home page")]
    links = [(url_for("backup_manager.index"), "All backups")]
    if error.code == 404:
        links.append((url_for("backup_manager.activity"), "Activity"))
    return links


def may_view() -> bool:
    """Whether the host's check grants "view"; a check that fails or aborts (a redirect to
    its login) on an error page counts as no."""
    check = get_state().ext._access
    try:
        return bool(check and check("view"))
    except Exception:
        return False


def http_error(e: ServiceError) -> BackupManagerError:
    headers = {}
    if e.status == 429:
        # when to ask again: a running backup reports to its row once a heartbeat, so a
        # client asking sooner only hears the same refusal
        headers["Retry-After"] = str(get_state().heartbeat)
    return BackupManagerError(e.status, e.code, e.message, extra=e.extra, headers=headers)


def api_root() -> str:
    """Where the JSON API's paths start: ``/backups/api/``."""
    return current_app.config["BACKUP_MANAGER_URL_PREFIX"].rstrip("/") + "/api/"


def is_api() -> bool:
    """A request to the JSON API: one of its routes, or a path under it that none matched."""
    if request.url_rule is None:
        return request.path.startswith(api_root())
    return (request.endpoint or "").startswith("backup_manager.api_")


def unknown_api_path() -> None:
    """App-wide before-request hook: a path under the API that no route matches (or a method
    its route does not take) answers our JSON error. Flask gives unmatched URLs to no
    blueprint, so a blueprint's error handler never sees them; the host's own 404s and 405s,
    outside the API's paths, are left as they are."""
    e = request.routing_exception
    if not isinstance(e, (NotFound, MethodNotAllowed)) or not is_api():
        return
    if isinstance(e, MethodNotAllowed):
        if not our_route(e):
            return  # a host's own route under our prefix: its 405 is the host's
        allowed = sorted(e.valid_methods or ())
        uses = ", ".join(m for m in allowed if m not in ("HEAD", "OPTIONS"))
        raise BackupManagerError(
            405,
            "method_not_allowed",
            f"{clip(request.method)} is not allowed on {clip(request.path, 80)}: use {uses}.",
            headers={"Allow": ", ".join(allowed)},
        )
    raise BackupManagerError(404, "not_found", f"The API has no path {clip(request.path, 80)}.")


def our_route(e: MethodNotAllowed) -> bool:
    """Whether the path a method was refused on is one of our routes: the rule it matches
    with a method that is allowed there."""
    adapter = current_app.create_url_adapter(request)
    for method in e.valid_methods or ():
        try:
            rule, _ = adapter.match(method=method, return_rule=True)
        except HTTPException:
            continue
        return rule.endpoint.startswith("backup_manager.")
    return False


def wants_json() -> bool:
    """JSON for the API and for clients that take no HTML; a page for a browser, also when
    it follows a Download link (the file's URL is the API's): a file gone from storage is
    then explained on a page, not shown as raw JSON."""
    if request.endpoint == "backup_manager.api_download" and prefers_html():
        return False
    return is_api() or not request.accept_mimetypes.accept_html


def prefers_html() -> bool:
    """The client asks for HTML before JSON (a browser's navigation; not ``*/*``)."""
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"


def int_arg(name: str, default: int) -> int:
    """A whole-number query argument; 400 when it is something else."""
    value = whole_number(request.args.get(name, str(default)))
    if value is None:
        raise BackupManagerError(
            400, "bad_argument", f"{name} must be a whole number of at most 18 digits."
        )
    return value


def security_headers(response: Response) -> Response:
    """Every answer of the blueprint but its static files: never stored by a cache (backups
    are personal data), never framed by another page (clickjacking of the delete button)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    if "frame-ancestors" not in response.headers.get("Content-Security-Policy", ""):
        # one more policy header: browsers enforce every one, so a host's own is not weakened
        response.headers.add("Content-Security-Policy", "frame-ancestors 'none'")
    return response
