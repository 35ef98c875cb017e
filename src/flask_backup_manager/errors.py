"""The one exception type behind every error answer: JSON for the API, a page for the HTML UI."""

from __future__ import annotations

from flask import json, render_template, request
from werkzeug.exceptions import HTTPException


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
            body = render_template("backup_manager/error.html", error=self)
            mimetype = "text/html"
        response = super().get_response(environ, scope)
        response.set_data(body)
        response.mimetype = mimetype
        response.headers["Cache-Control"] = "no-store"
        return response


def is_api() -> bool:
    return (request.endpoint or "").startswith("backup_manager.api_")


def wants_json() -> bool:
    return is_api() or not request.accept_mimetypes.accept_html


def bad_request(code: str, message: str) -> BackupManagerError:
    return BackupManagerError(400, code, message)


def not_found(what: str = "backup") -> BackupManagerError:
    return BackupManagerError(404, "not_found", f"No such {what}.")


def conflict(code: str, message: str) -> BackupManagerError:
    return BackupManagerError(409, code, message)


def int_arg(name: str, default: int) -> int:
    """A whole-number query argument; 400 when it is something else."""
    try:
        return int(request.args.get(name, default))
    except (TypeError, ValueError):
        raise bad_request("bad_argument", f"{name} must be a whole number.") from None
