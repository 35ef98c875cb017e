"""The one exception type behind every error answer: JSON for the API, a page for the HTML UI."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, json, render_template, request
from werkzeug.exceptions import HTTPException

#: A whole number as the routes, pages and commands accept it: ASCII digits only (no sign, no
#: space, no Unicode digit that ``int()`` would take), and few enough to fit a 64-bit integer.
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


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
        return security_headers(response)


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


def whole_number(text: Any) -> int | None:
    """``text`` as an int when it is a whole number by :data:`WHOLE_NUMBER`, else None."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if isinstance(text, str) and WHOLE_NUMBER.fullmatch(text):
        return int(text)
    return None


def int_arg(name: str, default: int) -> int:
    """A whole-number query argument; 400 when it is something else."""
    value = whole_number(request.args.get(name, str(default)))
    if value is None:
        raise bad_request("bad_argument", f"{name} must be a whole number of at most 18 digits.")
    return value


def clip(value: Any, limit: int = 40) -> str:
    """A short, quoted echo of client input for an error message: at most ``limit``
    characters of it (``repr`` escapes every unprintable one), so a 10 kB value gives a
    one-line message; a value that is not text is named by its type only."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    return repr(value[:limit]) + ("..." if len(value) > limit else "")


def security_headers(response: Response) -> Response:
    """Every answer of the blueprint but its static files: never stored by a cache (backups
    are personal data), never framed by another page (clickjacking of the delete button)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    if "frame-ancestors" not in response.headers.get("Content-Security-Policy", ""):
        # one more policy header: browsers enforce every one, so a host's own is not weakened
        response.headers.add("Content-Security-Policy", "frame-ancestors 'none'")
    return response
