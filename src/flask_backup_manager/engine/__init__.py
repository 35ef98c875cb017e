"""The export engine: usable without Flask. Two sources (PostgreSQL, SQLite) times three writers.

What the web layer uses of it is named here; nothing of the web layer imports its modules
(the command line's ``restore``, in ``__main__``, imports :mod:`.restore`)."""

from __future__ import annotations

from .base import escape_controls
from .encryption import STANZAS_MAX, Recipient, parse_recipient
from .export import SUPPORTED, ExportResult, export, one_line, read_through, scrub
from .model import (
    FORMATS,
    PSQL_RESTORE,
    SQLITE_RESTORE,
    ExportCancelled,
    ExportError,
    Format,
    Progress,
    SourceInfo,
    TableSpec,
    Verification,
)
from .redaction import (
    ColumnFacts,
    Profile,
    Redaction,
    RedactionError,
    facts_of,
    problems,
    profile_from_mapping,
    unredacted,
)

__all__ = [
    "FORMATS",
    "PSQL_RESTORE",
    "SQLITE_RESTORE",
    "SUPPORTED",
    "ExportCancelled",
    "ExportError",
    "ExportResult",
    "Recipient",
    "STANZAS_MAX",
    "Format",
    "ColumnFacts",
    "Profile",
    "Progress",
    "Redaction",
    "RedactionError",
    "SourceInfo",
    "TableSpec",
    "Verification",
    "escape_controls",
    "export",
    "facts_of",
    "one_line",
    "parse_recipient",
    "problems",
    "profile_from_mapping",
    "read_through",
    "scrub",
    "unredacted",
]
