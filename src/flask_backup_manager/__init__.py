"""flask-backup-manager: a Backup Manager for Flask + Flask-SQLAlchemy apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine import FORMATS, ExportError, ExportResult, export

if TYPE_CHECKING:
    from .extension import BackupManager

__all__ = ["FORMATS", "BackupManager", "ExportError", "ExportResult", "export"]


def __getattr__(name: str) -> Any:
    # Flask is imported only by those who mount the extension: the standalone
    # `python -m flask_backup_manager export` starts without it.
    if name == "BackupManager":
        from .extension import BackupManager

        return BackupManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
