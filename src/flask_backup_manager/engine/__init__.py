"""The export engine: usable without Flask. Two sources (PostgreSQL, SQLite) times three writers."""

from __future__ import annotations

from .base import FORMATS, ExportError, Format, Progress, TableSpec
from .export import ExportResult, export

__all__ = ["FORMATS", "ExportError", "ExportResult", "Format", "Progress", "TableSpec", "export"]
