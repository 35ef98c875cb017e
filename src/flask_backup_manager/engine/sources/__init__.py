"""Where rows and definitions come from: one module per kind of database."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from ..model import ExportError


def keys_without_rows(keys: list[str], patterns: Iterable[str]) -> frozenset[str]:
    """The table keys ``patterns`` names (names or shell patterns, as include/exclude take):
    tables copied with their schema and no rows. A pattern that matches no table is an error:
    a typo would otherwise copy the very rows someone meant to leave behind."""
    patterns = list(patterns)
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for k in keys)]
    if unknown:
        raise ExportError(f"no such table to copy without rows: {', '.join(unknown)}")
    return frozenset(k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns))
