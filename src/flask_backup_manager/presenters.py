"""What the API, the pages and the CLI all show of a backup: its JSON object, its log and audit
entries, timestamps in UTC ISO form, sizes for people."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .models import Status


def as_utc(value: datetime | None) -> datetime | None:
    """Timestamps are stored in UTC; SQLite hands them back without a zone, PostgreSQL in its
    session's zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def plural(n: int, word: str) -> str:
    """``1 table``, ``2 tables``, ``0 rows``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def human_size(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; ``None`` (not made yet) -> an em dash."""
    if n is None:
        return "\u2014"
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return plural(n, "byte") if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return plural(n, "byte")  # unreachable


def to_dict(backup: Any) -> dict[str, Any]:
    """The backup object of the API (DESIGN.md), also what the pages and ``show`` print."""
    started, finished = as_utc(backup.started_at), as_utc(backup.finished_at)
    queued = backup.status == Status.QUEUED
    return {
        "id": backup.id,
        "format": backup.format,
        "status": backup.status,
        "created_at": iso(backup.created_at),
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration": (finished - started).total_seconds() if started and finished else None,
        "size": backup.size,
        "sha256": backup.sha256,
        "filename": backup.filename,
        "progress": {
            "tables_done": backup.tables_done,
            "tables_total": backup.tables_total,
            "rows_done": backup.rows_done,
            "rows_total": backup.rows_total,
            # weighed by the phases' shares of a run, never going back (see jobs.py)
            "percent": 100 if backup.status == Status.SUCCEEDED else backup.percent or 0,
            "phase": "waiting for a worker" if queued and not backup.phase else backup.phase,
            # seconds left, a rough estimate; None when unknown
            "eta": backup.eta if backup.status == Status.RUNNING else None,
        },
        "error": backup.error,
        "created_by": backup.created_by,
        # the profile's name; None: a full copy
        "redaction": backup.redaction,
        # [{"label", "fingerprint"}] of the keys that can read the file; None: not encrypted
        "encrypted_for": encrypted_for(backup),
        # "verified: 15 tables, 46,221 rows match" once the file is checked; None until then
        "verification": verification_line(manifest_of(backup)),
    }


def encrypted_for(backup: Any) -> list[dict[str, Any]] | None:
    """The public keys a backup's file is encrypted for, as stored with it (None: not
    encrypted; a row edited by hand into something else reads as encrypted for unknown keys,
    never as not encrypted)."""
    if not backup.encrypted_for:
        return None
    try:
        value = json.loads(backup.encrypted_for)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        return [{"label": None, "fingerprint": None}]
    return [{"label": r.get("label"), "fingerprint": r.get("fingerprint")} for r in value]


def readers(recipients: list[dict[str, Any]] | None) -> str:
    """Who can read a file, for people: "Acme support and SHA256:x9..." (a label, else the
    key's fingerprint)."""
    names = [r.get("label") or r.get("fingerprint") or "an unknown key" for r in recipients or []]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def manifest_of(backup: Any) -> dict[str, Any] | None:
    """The manifest stored with a backup (None until its file is made and checked)."""
    if not backup.manifest:
        return None
    try:
        value = json.loads(backup.manifest)
    except ValueError:  # not ours: a row edited by hand
        return None
    return value if isinstance(value, dict) else None


def verification_line(manifest: dict[str, Any] | None) -> str | None:
    verification = (manifest or {}).get("verification")
    if isinstance(verification, dict) and isinstance(verification.get("summary"), str):
        return verification["summary"]
    return None


def log_entry(line: Any) -> dict[str, Any]:
    return {"at": iso(line.at), "level": line.level, "message": line.message}


def audit_entry(row: Any) -> dict[str, Any]:
    return {"at": iso(row.at), "actor": row.actor, "action": row.action, "detail": row.detail}


#: the vendor's secret key file in the restore commands shown for an encrypted file
KEY_FILE = "vendor.key"
#: how psql loads a postgres file (README, "Restoring a backup")
PSQL = "psql -X -v ON_ERROR_STOP=1 --single-transaction"


def restore_commands(format: str, filename: str) -> list[str]:
    """How to restore a file of ``format`` (README, "Restoring a backup"), for the link page;
    a file encrypted for the vendor (``.age``) with the vendor's secret key file
    (:data:`KEY_FILE`, as the README's ``keygen`` writes it), by the restore tool, then by
    Debian's ``age``."""
    tool = "python -m flask_backup_manager restore"
    if filename.endswith(".age"):
        plain = filename.removesuffix(".age")
        decrypt = f"age -d -i {KEY_FILE}"
        if format == "sqlite3_db":
            target, by_age = f"sqlite:///{plain}", f"{decrypt} -o {plain} {filename}"
        elif format == "sqlite3":
            target, by_age = (
                "sqlite:///new.db",
                f"{decrypt} {filename} | gunzip | sqlite3 -safe new.db",
            )
        else:
            target = "postgresql:///newdb"
            by_age = f"{decrypt} {filename} | gunzip | {PSQL} -d newdb"
        return [f"{tool} {filename} --identity {KEY_FILE} --target {target}", by_age]
    if format == "sqlite3":
        return [
            f"{tool} {filename} --target sqlite:///new.db",
            f"gunzip -c {filename} | sqlite3 -safe new.db",
        ]
    if format == "postgres":
        return [
            f"{tool} {filename} --target postgresql:///newdb",
            f"gunzip -c {filename} | {PSQL} -d newdb",
        ]
    return [
        f"SQLALCHEMY_DATABASE_URI=sqlite:////abs/path/{filename}  (start the app on it)",
        f"sqlite3 -safe {filename}",
    ]
