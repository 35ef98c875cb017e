"""The export engine: usable without Flask. Two sources (PostgreSQL, SQLite) times three writers."""

from __future__ import annotations

from .base import FORMATS, SUPPORTED, ExportCancelled, ExportError, Format, Progress, TableSpec
from .export import ExportResult, export

__all__ = [
    "FORMATS",
    "SUPPORTED",
    "ExportCancelled",
    "ExportError",
    "ExportResult",
    "Format",
    "Progress",
    "TableSpec",
    "export",
]
