"""SQLite's tokens (``tokenize.c``), for the checks that read schema text as SQLite does:
:mod:`.sqlite_shell` (where literals, quoted names and comments begin and end) and
:mod:`.sqlite_calls` (which names are called)."""

from __future__ import annotations

import re
from collections.abc import Iterator

#: whitespace (SQLite's: a vertical tab is no space to it but an illegal character), comments
#: (an open one runs to the end), strings and blobs, quoted identifiers ("", ``, []), numbers,
#: words (any non-ASCII character is a word character), parameters, and single characters.
#: An unterminated literal or quoted name runs to the end of the text too.
TOKEN = re.compile(
    r"""(?P<space>[\t\n\f\r ]+)
    |(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    |(?P<string>[xX]?'(?:[^']|'')*(?:'|\Z))
    |(?P<quoted>"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)|\[[^\]]*(?:\]|\Z))
    |(?P<number>(?:[0-9]|\.[0-9])[0-9A-Za-z_.$]*)
    |(?P<word>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)
    |(?P<param>[?:@$#][A-Za-z0-9_$\x80-\U0010ffff]*)
    |(?P<other>.)""",
    re.DOTALL | re.VERBOSE,
)


def all_tokens(sql: str) -> Iterator[tuple[str, str]]:
    """``(kind, text)`` of every token, whitespace and comments too: their texts make ``sql``."""
    for m in TOKEN.finditer(sql):
        yield m.lastgroup or "other", m.group()


def tokens(sql: str) -> Iterator[tuple[str, str]]:
    """``(kind, text)`` of every token but whitespace and comments."""
    return ((k, t) for k, t in all_tokens(sql) if k not in ("space", "comment"))


__all__ = ["TOKEN", "all_tokens", "tokens"]
