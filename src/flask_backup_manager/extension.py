"""The extension object: reads ``BACKUP_MANAGER_*`` config once and mounts everything (the
blueprint, the ``flask backups`` commands). The top of the package: nothing imports it but
``flask_backup_manager.BackupManager``."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from .blueprint import blueprint, exempt_from_flask_wtf
from .cli import backups_cli
from .models import make_models
from .state import AccessCheck, Identity, OnDenied, read_config


class BackupManager:
    """Gives a Flask + Flask-SQLAlchemy app a Backup Manager.

    ``BackupManager(app, db=db)`` or ``backups = BackupManager(db=db)`` then
    ``backups.init_app(app)``. Access is denied until the host supplies a check, either
    ``BackupManager(..., access=check)`` or the ``@backups.access_check`` decorator; the check
    is called with ``"view"``, ``"create"``, ``"download"``, ``"delete"`` or ``"share"`` (make
    and revoke download links for someone without an account).

    ``backups.cli`` is the ``backups`` command group, for a host's own console script:
    ``cli.add_command(backups.cli)``.
    """

    #: the ``flask backups ...`` group, also for a host's own click group or FlaskGroup
    cli = backups_cli

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        access: AccessCheck | None = None,
        identity: Identity | None = None,
        on_denied: OnDenied | None = None,
    ) -> None:
        self.db = db
        self._access = access
        self._identity = identity
        self._on_denied = on_denied
        if db is not None:
            self.models = make_models(db)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, db: SQLAlchemy | None = None) -> None:
        if "backup_manager" in app.extensions:
            raise RuntimeError("BackupManager is already initialised on this app.")
        db = db or self.db
        if db is None:
            raise RuntimeError("BackupManager needs the app's Flask-SQLAlchemy object: db=db.")
        if "sqlalchemy" not in app.extensions:
            raise RuntimeError("Initialise Flask-SQLAlchemy (db.init_app) before BackupManager.")
        if not app.config.get("SECRET_KEY"):
            raise RuntimeError(
                "BackupManager needs the app's SECRET_KEY (its pages keep a CSRF token and "
                "flash messages in the session): set app.config['SECRET_KEY'] to a long random "
                "string, the same in every web process, before init_app."
            )
        self.db = db
        self.models = make_models(db)
        app.extensions["backup_manager"] = read_config(app, ext=self, db=db, models=self.models)

        app.register_blueprint(blueprint, url_prefix=app.config["BACKUP_MANAGER_URL_PREFIX"])
        app.before_request_funcs.setdefault(None, []).insert(0, exempt_from_flask_wtf)
        app.cli.add_command(backups_cli)

    def access_check(self, check: AccessCheck) -> AccessCheck:
        """Decorator: register the function that grants or denies each permission."""
        self._access = check
        return check

    def identity(self, func: Identity) -> Identity:
        """Decorator: register the function naming the current user (kept with each backup)."""
        self._identity = func
        return func

    def on_denied(self, func: OnDenied) -> OnDenied:
        """Decorator: register what a browser the access check turned away gets (called with
        the permission): a response, e.g. a redirect to the login page, or ``None`` for the 403
        page. Without it, an app with Flask-Login sends a visitor who is not logged in to
        ``login_manager.unauthorized()``. The JSON API always answers 403 in JSON."""
        self._on_denied = func
        return func
