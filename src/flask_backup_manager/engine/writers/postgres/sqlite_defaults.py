"""A SQLite column's DEFAULT as a PostgreSQL DEFAULT expression, for the ``postgres`` format.

The default's text comes from the customer's schema: it is read with SQLite's tokens and only a
whitelist is carried, rebuilt here, never pasted: a constant (a number, signed or in
parentheses, a 'string', an X'..' blob, TRUE, FALSE), taken as SQLite stores it in the
column (by its affinity: :func:`stored_as`) and written as :func:`.sql.literal` of the text the
column's own encoder makes of it (so a default the column would refuse is not carried), and
SQLite's clock (``CURRENT_TIMESTAMP``, ``CURRENT_DATE``, ``CURRENT_TIME`` and
``datetime('now')``, ``date('now')``, ``time('now')``), which SQLite gives as UTC text: in a
timestamp column ``timezone('UTC', now())``, in a timestamptz one ``now()``, in a text column
the same text through ``to_char``. Anything else raises :class:`NotCarried`, saying why.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from typing import Any

from ...checks.sqlite_tokens import tokens
from .copy_text import NULL, Encoder, copy_unescaped
from .sql import literal


class NotCarried(ValueError):
    """A default without a PostgreSQL equivalent here; the message says why."""


_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,16}")
_BLOB = re.compile(r"[xX]'((?:[0-9a-fA-F]{2})*)'")
_INT64 = 1 << 63

#: SQLite's clock: a sample of its text, and that text's form for PostgreSQL's to_char()
_CLOCK = {
    "CURRENT_TIMESTAMP": ("2000-01-01 00:00:00", "YYYY-MM-DD HH24:MI:SS"),
    "CURRENT_DATE": ("2000-01-01", "YYYY-MM-DD"),
    "CURRENT_TIME": ("00:00:00", "HH24:MI:SS"),
}
#: ``datetime('now')`` and its kin: the same as SQLite's clock keywords
_NOW_CALLS = {"datetime": "CURRENT_TIMESTAMP", "date": "CURRENT_DATE", "time": "CURRENT_TIME"}
_UTC_NOW = "pg_catalog.timezone('UTC'::text, pg_catalog.now())"


def postgres_default(text: str, kind: str, encode: Encoder, affinity: str) -> str | None:
    """The DEFAULT expression for SQLite's default ``text`` of a column of SQLite's
    ``affinity`` (:func:`affinity`) and PostgreSQL type ``kind`` whose values ``encode`` writes
    as COPY text; None for a NULL default. A constant is taken as SQLite stores it in that
    column (``'12'`` an integer in an INTEGER column, ``1e999`` the text ``Inf`` in a TEXT one),
    so a new row gets what the copy of a row SQLite filled by the same default holds."""
    form, value = sqlite_constant(text)
    if form == "null":
        return None
    if form == "clock":
        return _clock(value, kind, encode)
    return constant_default(stored_as(value, affinity), kind, encode)


def affinity(declared: str, strict: bool = False) -> str:
    """SQLite's affinity of a column declared ``declared`` (by the rules of "Datatypes In
    SQLite", 3.1, which know ASCII letters only); a STRICT table's ``ANY`` has none: BLOB."""
    name = declared.encode("ascii", "replace").decode().upper()
    if "INT" in name:
        return "INTEGER"
    if "CHAR" in name or "CLOB" in name or "TEXT" in name:
        return "TEXT"
    if "BLOB" in name or not name or (strict and name == "ANY"):
        return "BLOB"
    if "REAL" in name or "FLOA" in name or "DOUB" in name:
        return "REAL"
    return "NUMERIC"


def stored_as(value: Any, affinity: str) -> Any:
    """The constant ``value`` as SQLite stores it in a column of ``affinity`` (one of
    :func:`affinity`'s words): SQLite itself says, in a scratch database."""
    try:
        with closing(sqlite3.connect(":memory:")) as con:
            con.execute(f"CREATE TABLE a (v {affinity})")
            con.execute("INSERT INTO a VALUES (?)", (value,))
            return con.execute("SELECT v FROM a").fetchone()[0]
    except (sqlite3.Error, ValueError, OverflowError) as e:  # e.g. a lone surrogate
        raise NotCarried(f"SQLite cannot store it: {type(e).__name__}") from None


def constant_default(value: Any, kind: str, encode: Encoder) -> str | None:
    """The DEFAULT expression giving the constant ``value`` (int, float, str, bytes) in a
    column of PostgreSQL type ``kind``, written as ``encode`` writes the column's values: a
    literal of that text; None for NULL. NotCarried if the column refuses it."""
    field = _encoded(value, encode, kind)
    return None if field == NULL else literal(copy_unescaped(field))


def sqlite_constant(text: str) -> tuple[str, Any]:
    """What SQLite's default ``text`` is: ``("value", v)`` for a constant (int, float, str,
    bytes), ``("clock", "CURRENT_...")``, ``("null", None)``; else NotCarried."""
    toks = _joined(list(tokens(text)))
    toks, sign = _unwrapped(toks), 1
    signed = False
    while toks and toks[0][0] == "other" and toks[0][1] in "+-":
        signed = True
        sign = -sign if toks[0][1] == "-" else sign
        toks = _unwrapped(toks[1:])
    if (
        not signed
        and len(toks) == 4
        and toks[0][0] == "word"
        and toks[0][1].lower() in _NOW_CALLS
        and [t for _, t in toks[1:]] in (["(", "'now'", ")"], ["(", "'NOW'", ")"])
    ):
        return "clock", _NOW_CALLS[toks[0][1].lower()]
    if len(toks) != 1:
        raise NotCarried("not a constant")
    kind, t = toks[0]
    if kind == "number":
        return "value", _number(t, sign)
    if signed:
        raise NotCarried("a sign before something that is not a number")
    if kind == "string" and (m := _BLOB.fullmatch(t)):
        return "value", bytes.fromhex(m.group(1))
    if kind == "string" and t[0] == "'" and len(t) >= 2 and t[-1] == "'":
        return "value", t[1:-1].replace("''", "'")
    if kind == "quoted" and t[0] == '"' and len(t) >= 2 and t[-1] == '"':
        return "value", t[1:-1].replace('""', '"')  # SQLite reads it as a string here
    word = t.upper() if kind == "word" else ""
    if word in ("TRUE", "FALSE"):
        return "value", int(word == "TRUE")
    if word == "NULL":
        return "null", None
    if word in _CLOCK:
        return "clock", word
    raise NotCarried("not a constant")


def _joined(toks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """SQLite's tokens as :func:`.tokens` gives them, but ``1.5e-3`` as one number."""
    out: list[tuple[str, str]] = []
    for tok in toks:
        if (
            len(out) >= 2
            and tok[0] == "number"
            and out[-1][1] in ("+", "-")
            and out[-2][0] == "number"
            and out[-2][1][-1] in "eE"
        ):
            sign = out.pop()[1]
            out[-1] = ("number", out[-1][1] + sign + tok[1])
        else:
            out.append(tok)
    return out


def _unwrapped(toks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    while len(toks) >= 2 and toks[0] == ("other", "(") and toks[-1] == ("other", ")"):
        toks = toks[1:-1]
    return toks


def _number(t: str, sign: int) -> int | float:
    if _HEX.fullmatch(t):
        n = int(t, 16)
        return sign * (n - (1 << 64) if n >= _INT64 else n)  # 64 bits, two's complement
    if not _NUMBER.fullmatch(t):
        raise NotCarried("not a number SQLite reads")
    if t.isdigit():
        n = sign * int(t)
        if -_INT64 <= n < _INT64:
            return n
    return sign * float(t)  # SQLite's too large integers are reals


def _encoded(value: Any, encode: Encoder, kind: str) -> str:
    """``value`` as the column's COPY text; a string that reads as a number is tried as one
    too (SQLite's numeric affinity stores it so)."""
    try:
        return encode(value)
    except ValueError as e:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            try:
                return encode(_number(value.strip(), 1))
            except ValueError:
                pass
        raise NotCarried(f"a PostgreSQL {kind} column refuses it: {e}") from None


def _clock(name: str, kind: str, encode: Encoder) -> str:
    sample, text_form = _CLOCK[name]
    try:
        encode(sample)  # the column takes SQLite's text of the clock (a varchar(5) does not)
    except ValueError as e:
        raise NotCarried(f"a PostgreSQL {kind} column refuses SQLite's {name}: {e}") from None
    if name == "CURRENT_TIMESTAMP" and kind == "timestamp with time zone":
        return "pg_catalog.now()"
    if name == "CURRENT_TIMESTAMP" and kind == "timestamp without time zone":
        return _UTC_NOW
    if name in ("CURRENT_TIMESTAMP", "CURRENT_DATE") and kind == "date":
        return f"CAST({_UTC_NOW} AS date)"
    if name == "CURRENT_TIME" and kind == "time without time zone":
        return f"CAST({_UTC_NOW} AS time without time zone)"
    if kind == "text" or kind.startswith("character"):
        return f"pg_catalog.to_char({_UTC_NOW}, {literal(text_form)})"
    raise NotCarried(f"no PostgreSQL {kind} default gives SQLite's {name}")


__all__ = [
    "NotCarried",
    "affinity",
    "constant_default",
    "postgres_default",
    "sqlite_constant",
    "stored_as",
]
