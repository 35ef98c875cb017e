"""The manifest: what a copy is (app, version, schema revision, source, redaction, tables and
rows, file, verification), as JSON beside the file and as a comment block at the head of the
SQL formats, so that whoever has only the file knows what it is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .model import SourceInfo, Verification
from .version import __version__

#: the manifest's own version: raised when a field changes meaning or goes away
MANIFEST_VERSION = 1


#: the title of the comment block at the head of an SQL file
HEAD_TITLE = "flask-backup-manager manifest (the file's size, sha256 and check are beside it):"
#: ... and of the one at its end
TAIL_TITLE = "rows written, by table:"


#: the fields the engine fills; the caller's ``manifest=`` may not set them
OWN_FIELDS = (
    "manifest_version",
    "package_version",
    "format",
    "source",
    "schema_revision",
    "redaction",
    "encryption",
    "tables",
    "rows",
    "file",
    "verification",
)


def package_version() -> str:
    """This package's version (what the vendor installs to read the copy), as the running
    code says it: read from the package itself, as importing ``importlib.metadata`` would
    cost every export 30-40 ms of start-up."""
    return __version__


def head(
    caller: Mapping[str, Any] | None,
    format: str,
    info: SourceInfo,
    redaction: Mapping[str, Any] | None,
    encryption: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the head of an SQL file says (:func:`comment_lines`), and the start of the
    manifest: its version and the package's, what the caller knows of the copy (app, version,
    created, by whom), then the format, the source (dialect, server version, database: never
    host, user or password), the schema revision, the redaction (its profile and rules,
    never its key; None for a full copy) and the encryption (``{"format": "age",
    "recipients": [{"label", "fingerprint"}]}``: who can read the copy; None when it is not
    encrypted). The caller's keys cannot replace the engine's own."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "package_version": package_version(),
        **{k: v for k, v in (caller or {}).items() if k not in OWN_FIELDS},
        "format": format,
        "source": {
            "dialect": info.dialect,
            "server_version": info.server_version,
            "database": info.database,
        },
        "schema_revision": info.schema_revision,
        "redaction": None if redaction is None else dict(redaction),
        "encryption": None if encryption is None else dict(encryption),
    }


def complete(
    head: Mapping[str, Any],
    *,
    tables: Mapping[str, int],
    file: Mapping[str, Any],
    verification: Verification | None,
) -> dict[str, Any]:
    """The whole manifest: ``head`` (:func:`head`), then every table with its rows, their
    total, the file (name, size, sha256) and what verifying it showed (None: not verified)."""
    return {
        **head,
        "tables": dict(tables),
        "rows": sum(tables.values()),
        "file": dict(file),
        "verification": None
        if verification is None
        else {
            "loaded": verification.loaded,
            "how": verification.how,
            "tables": verification.tables,
            "rows": verification.rows,
            "summary": verification.summary(),
        },
    }


def comment_lines(data: Mapping[str, Any], title: str = HEAD_TITLE) -> tuple[str, ...]:
    """``data`` under ``title`` as SQL comment lines (``-- `` and JSON), safe for both
    clients: the JSON is ASCII with every control character escaped (``\\n``,
    ``\\u2028``...), so no name or text in it can end a comment line, and each line starts
    with ``--``."""
    text = json.dumps(data, indent=2, ensure_ascii=True, default=str)
    lines = [f"-- {title}"]
    lines += [f"--   {line}" for line in text.splitlines()]
    for line in lines:  # ensure_ascii leaves no byte below 0x20 but the newlines split on
        if any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in line):
            raise ValueError("a manifest line with a control character")
    return tuple(lines)


__all__ = [
    "HEAD_TITLE",
    "MANIFEST_VERSION",
    "TAIL_TITLE",
    "comment_lines",
    "complete",
    "head",
    "package_version",
]
