"""The manifest: what a copy is (app, version, schema revision, source, redaction, tables and
rows, file, verification), as JSON beside the file and as a comment block at the head of the
SQL formats, so that whoever has only the file knows what it is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: the manifest's own version: raised when a field changes meaning or goes away
MANIFEST_VERSION = 1


#: the title of the comment block at the head of an SQL file
HEAD_TITLE = "flask-backup-manager manifest (the file's size, sha256 and check are beside it):"
#: ... and of the one at its end
TAIL_TITLE = "rows written, by table:"


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


__all__ = ["HEAD_TITLE", "MANIFEST_VERSION", "TAIL_TITLE", "comment_lines"]
