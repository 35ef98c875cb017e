"""The one exception type behind every error answer of the blueprint: JSON for the API, a page
for the HTML UI. A :class:`~.service.ServiceError` becomes one with the same status, code and
message (:func:`http_error`); the views raise it themselves for what only HTTP knows (a body too
large, a Range the file does not have)."""

from __future__ import annotations

from flask import Response, current_app, json, render_template, request
from werkzeug.exceptions import HTTPException

from .service import ServiceError, whole_number


class BackupManagerError(HTTPException):
    """An HTTP error with a machine-readable ``error_code`` and a message meant for a person."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(description=message)
        self.code = status
        self.error_code = error_code

    def get_response(self, environ=None, scope=None):  # type: ignore[override]
        if wants_json():
            body = json.dumps({"error": {"code": self.error_code, "message": self.description}})
            mimetype = "application/json"
        else:
            body, mimetype = self.page(), "text/html"
        response = super().get_response(environ, scope)
        response.set_data(body)
        response.mimetype = mimetype
        return security_headers(response)

    def page(self) -> str:
        """The error page, inside the host's layout as every page; when that layout itself
        fails (say it needs what only the host's views give it), the standalone page, so the
        visitor still learns what went wrong and the failure is in the app's log."""
        try:
            return render_template("backup_manager/error.html", bm={"error": self})
        except Exception:
            current_app.logger.exception("the layout failed on a Backup Manager error page")
            return render_template(
                "backup_manager/error.html", bm={"error": self, "standalone": True}
            )


def http_error(e: ServiceError) -> BackupManagerError:
    return BackupManagerError(e.status, e.code, e.message)


def is_api() -> bool:
    return (request.endpoint or "").startswith("backup_manager.api_")


def wants_json() -> bool:
    return is_api() or not request.accept_mimetypes.accept_html


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
