"""Deny by default: every route asks the host's check for a permission; state changes made
with a cookie need a CSRF token (Flask-WTF's when the host uses it, else our own). The one
decorator every view wears, :func:`requires`, also turns a refused operation into its answer."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, abort, current_app, request, session

from .errors import BackupManagerError, http_error, wants_json
from .service import ServiceError
from .state import PERMISSIONS, get_state

try:  # the host's to install; its login manager sends logged-out visitors to the login page
    from flask_login import current_user
except ImportError:
    current_user = None

F = TypeVar("F", bound=Callable[..., Any])
SESSION_KEY = "_backup_manager_csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def requires(permission: str) -> Callable[[F], F]:
    """View decorator: the host's access check for ``permission``, then CSRF on state changes,
    then the view; a :class:`~.service.ServiceError` it raises is answered as an HTTP error
    (:class:`~.errors.BackupManagerError`) with the same status, code and message."""
    assert permission in PERMISSIONS

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            check_access(permission)
            check_csrf()
            try:
                return view(*args, **kwargs)
            except ServiceError as e:
                raise http_error(e) from None

        return wrapped  # type: ignore[return-value]

    return decorate


def check_access(permission: str) -> None:
    check = get_state().ext._access
    if check is None:
        raise BackupManagerError(
            403,
            "access_not_configured",
            "The Backup Manager denies all access until the app registers an access check: "
            "BackupManager(app, db=db, access=check) or @backups.access_check.",
        )
    if check(permission):
        return
    if not wants_json():
        answer = denied_answer(permission)
        if answer is not None:
            abort(answer)
    raise BackupManagerError(
        403,
        "forbidden",
        f"You are not allowed to {permission} backups.",
        extra={"permission": permission},
    )


def denied_answer(permission: str) -> Response | None:
    """What a browser the check turned away gets instead of the 403 page: the host's
    ``on_denied`` hook's response; without a hook, when nobody is logged in to an app with
    Flask-Login, its ``login_manager.unauthorized()`` (a redirect to ``login_view`` with
    ``next``, or 401). ``None``: the 403 page (a logged-in user without the permission)."""
    hook = get_state().ext._on_denied
    if hook is not None:
        answer = hook(permission)
        return None if answer is None else current_app.make_response(answer)
    manager = getattr(current_app, "login_manager", None)
    if manager is None or current_user is None or current_user.is_authenticated:
        return None
    return current_app.make_response(manager.unauthorized())


def current_user_name() -> str | None:
    """The host's name for who is asking (its identity callable), kept as the actor of what
    the request does; the ``flask backups`` commands act as :func:`~.lifecycle.process_actor`."""
    identity = get_state().ext._identity
    name = identity() if identity else None
    # kept in 255-character columns (created_by, the audit's actor): a longer name is cut,
    # never a database error
    return None if name is None else str(name)[:255]


def csrf_token() -> str:
    """The token a page puts in its forms (``csrf_token``) and scripts send as ``X-CSRFToken``."""
    if "csrf" in current_app.extensions:
        from flask_wtf.csrf import generate_csrf

        return generate_csrf()
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_urlsafe(32)
    return session[SESSION_KEY]


#: Authorization schemes a browser sends by itself, so another site can ride on them
AMBIENT_SCHEMES = ("basic", "digest", "negotiate", "ntlm")


def needs_csrf_token() -> bool:
    """A state change needs a token when a browser could have been tricked into sending it:
    it carries cookies or credentials the browser adds by itself, or it says it comes from a
    page (``Origin`` / ``Sec-Fetch-Site``: hosts that trust an address or a client certificate
    get no cookie). A script with its own bearer token sends none of these."""
    if request.method in SAFE_METHODS:
        return False
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    return bool(
        request.cookies
        or scheme in AMBIENT_SCHEMES
        or "Origin" in request.headers
        or "Sec-Fetch-Site" in request.headers
    )


def check_csrf() -> None:
    """Refuse a state change that a browser may have been made to send without a valid token."""
    if not needs_csrf_token():
        return
    token = (
        request.headers.get("X-CSRFToken")
        or request.headers.get("X-CSRF-Token")
        or request.form.get("csrf_token")
        or ""
    )
    if "csrf" in current_app.extensions:
        from flask_wtf.csrf import ValidationError, validate_csrf

        try:
            validate_csrf(token)
            return
        except ValidationError as e:
            raise BackupManagerError(400, "csrf_failed", f"CSRF check failed: {e}") from None
    expected = session.get(SESSION_KEY)
    # as bytes: compare_digest refuses a str with a character past ASCII (a forged token)
    sent = token.encode("utf-8", "replace")
    if not expected or not hmac.compare_digest(str(expected).encode(), sent):
        raise BackupManagerError(
            400,
            "csrf_failed",
            "CSRF check failed: send the page's csrf_token (form field or X-CSRFToken header).",
        )
