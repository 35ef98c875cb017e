"""The export engine: usable without Flask. Two sources (PostgreSQL, SQLite) times three writers.

What the web layer uses of it is named here; nothing outside the engine imports its modules."""

from __future__ import annotations

from .base import (
    FORMATS,
    SUPPORTED,
    ExportCancelled,
    ExportError,
    Format,
    Progress,
    TableSpec,
    escape_controls,
)
from .export import ExportResult, export, one_line, read_through, scrub

__all__ = [
    "FORMATS",
    "SUPPORTED",
    "ExportCancelled",
    "ExportError",
    "ExportResult",
    "Format",
    "Progress",
    "TableSpec",
    "escape_controls",
    "export",
    "one_line",
    "read_through",
    "scrub",
]
