"""The tables (backups, their logs, the audit trail, the download links), built on the host's
own ``db.Model`` so its migrations see them."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy


class Status(str, Enum):
    """A backup's status, as the ``status`` column stores it and the JSON shows it. It moves
    ``queued -> running -> succeeded | failed``, or to ``cancelled`` (see lifecycle.py)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # "queued", not "Status.QUEUED", in messages and templates
        return self.value


#: a job may still write the file of a backup in one of these
ACTIVE = (Status.QUEUED, Status.RUNNING)
#: a backup in one of these never moves again
FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


class Models(NamedTuple):
    Backup: Any
    BackupLog: Any
    BackupAudit: Any
    BackupLink: Any


# One set of model classes per ``db``: a second extension object on the same ``db`` reuses them.
_models: WeakKeyDictionary[SQLAlchemy, Models] = WeakKeyDictionary()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def db_now(conn: sa.Connection) -> datetime:
    """Now by the database server's clock, the one clock all workers and web processes share,
    so a worker whose clock runs behind is not taken for lost. (SQLite has no server: its file
    lives on one machine, and that machine's clock is the shared one.)"""
    if conn.dialect.name == "sqlite":
        return utcnow()
    return conn.scalar(sa.select(sa.func.now())).astimezone(timezone.utc)


def make_models(db: SQLAlchemy) -> Models:
    """Return the model classes for ``db``, defining them on first use."""
    if db in _models:
        return _models[db]

    class Backup(db.Model):  # type: ignore[name-defined]
        __tablename__ = "backup_manager_backups"
        # never reuse the id of a deleted backup: its audit trail and late jobs refer to it
        __table_args__ = {"sqlite_autoincrement": True}

        id = db.Column(db.Integer, primary_key=True)
        format = db.Column(db.String(20), nullable=False)
        status = db.Column(db.String(20), nullable=False, default=Status.QUEUED, index=True)
        created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
        started_at = db.Column(db.DateTime(timezone=True))
        finished_at = db.Column(db.DateTime(timezone=True))
        heartbeat_at = db.Column(db.DateTime(timezone=True))
        size = db.Column(db.BigInteger)
        sha256 = db.Column(db.String(64))
        filename = db.Column(db.String(255))
        tables_done = db.Column(db.Integer, nullable=False, default=0)
        tables_total = db.Column(db.Integer, nullable=False, default=0)
        rows_done = db.Column(db.BigInteger, nullable=False, default=0)
        rows_total = db.Column(db.BigInteger, nullable=False, default=0)
        # what the job is doing now, in words for people ("copying table orders"); NULL once
        # finished; how far it is (0-99, never going back) and a rough guess of the seconds
        # left (NULL: unknown)
        phase = db.Column(db.String(255))
        percent = db.Column(db.Integer, nullable=False, default=0, server_default="0")
        eta = db.Column(db.Integer)
        error = db.Column(db.Text)
        job_id = db.Column(db.String(64))
        created_by = db.Column(db.String(255))
        # the redaction profile's name (None: a full copy), and the manifest of the finished
        # file as JSON (what it is: app, versions, tables and rows, rules, verification)
        redaction = db.Column(db.String(64))
        manifest = db.Column(db.Text)
        # who can read the file: JSON [{"label", "fingerprint"}] of the public keys it is
        # encrypted for (BACKUP_MANAGER_RECIPIENTS); NULL: not encrypted
        encrypted_for = db.Column(db.Text)
        # what an object store said of the file once it held it (its ETag): a stat that says
        # otherwise is other bytes; NULL for a local file (its check reads it)
        stored_version = db.Column(db.String(255))
        logs = db.relationship(
            "BackupLog",
            order_by="BackupLog.id",
            cascade="all, delete-orphan",
            passive_deletes=True,
            lazy="dynamic",
        )

        def __repr__(self) -> str:
            return f"<Backup {self.id} {self.format} {self.status}>"

    class BackupLog(db.Model):  # type: ignore[name-defined]
        __tablename__ = "backup_manager_logs"

        id = db.Column(db.Integer, primary_key=True)
        backup_id = db.Column(
            db.Integer,
            db.ForeignKey("backup_manager_backups.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
        at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
        level = db.Column(db.String(10), nullable=False, default="info")
        message = db.Column(db.Text, nullable=False)

    class BackupAudit(db.Model):  # type: ignore[name-defined]
        """Who did what to which backup; kept after the backup itself is deleted."""

        __tablename__ = "backup_manager_audit"

        id = db.Column(db.Integer, primary_key=True)
        at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
        actor = db.Column(db.String(255))
        action = db.Column(db.String(20), nullable=False)
        backup_id = db.Column(db.Integer, nullable=False, index=True)
        detail = db.Column(db.String(255))

    class BackupLink(db.Model):  # type: ignore[name-defined]
        """A download link for someone without an account (links.py): only the sha256 of its
        token is kept, so a copy of this table opens no backup. Dies with its backup."""

        __tablename__ = "backup_manager_links"
        __table_args__ = {"sqlite_autoincrement": True}

        id = db.Column(db.Integer, primary_key=True)
        backup_id = db.Column(
            db.Integer,
            db.ForeignKey("backup_manager_backups.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
        token_hash = db.Column(db.String(64), nullable=False, unique=True)
        note = db.Column(db.String(200))
        created_by = db.Column(db.String(255))
        created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
        expires_at = db.Column(db.DateTime(timezone=True), nullable=False)
        # None: no limit; else how many downloads may start (a resumed one is not counted)
        max_downloads = db.Column(db.Integer)
        downloads = db.Column(db.Integer, nullable=False, default=0, server_default="0")
        revoked_at = db.Column(db.DateTime(timezone=True))

    _models[db] = Models(Backup, BackupLog, BackupAudit, BackupLink)
    return _models[db]
