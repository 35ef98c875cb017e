"""The shop's own pages: a home page and the demo login."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import login_required, login_user, logout_user

from .models import User, db
from .seed import counts

bp = Blueprint("shop", __name__)


@bp.app_context_processor
def _login_csrf() -> dict[str, Any]:
    def login_csrf_token() -> str:
        session.setdefault("login_csrf", secrets.token_urlsafe(32))
        return session["login_csrf"]

    return {"login_csrf_token": login_csrf_token}


def _check_csrf() -> None:
    expected = session.get("login_csrf")
    if not expected or not secrets.compare_digest(expected, request.form.get("csrf_token", "")):
        abort(400, "The form expired: reload the page and try again.")


@bp.get("/", endpoint="home")
@login_required
def home() -> Any:
    return render_template("home.html", counts=counts())


@bp.route("/login", methods=["GET", "POST"], endpoint="login")
def login() -> Any:
    if request.method == "POST":
        _check_csrf()
        user = db.session.scalar(
            sa.select(User).where(User.username == request.form.get("username", ""))
        )
        if user and user.check_password(request.form.get("password", "")):
            login_user(user)
            target = request.args.get("next", "")
            # Only paths on this site: never an absolute or scheme-relative URL, nor one that
            # becomes so once a browser drops control characters ("/\t/evil.example").
            parts = urlsplit(target)
            if (
                not target.startswith("/")
                or target.startswith("//")
                or "\\" in target
                or parts.scheme
                or parts.netloc
                or any(ord(c) < 0x20 for c in target)
            ):
                target = url_for("shop.home")
            return redirect(target, code=303)
        flash("Wrong username or password.")
    return render_template("login.html")


@bp.post("/logout", endpoint="logout")
def logout() -> Any:
    _check_csrf()
    logout_user()
    return redirect(url_for("shop.login"), code=303)
