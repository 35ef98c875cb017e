"""flask-backup-manager: a Backup Manager for Flask + Flask-SQLAlchemy apps."""

from __future__ import annotations

from .engine import FORMATS, ExportError, ExportResult, export
from .extension import BackupManager

__all__ = ["FORMATS", "BackupManager", "ExportError", "ExportResult", "export"]
