"""Redaction from an SQLite source: each column rule as an SQLite expression over the column, and
the deterministic functions the expressions call, registered on a connection with the backup's
key (:func:`register`: the exporting process's, and each helper process's, which gets the key
in its JSON job on stdin).

The functions compute what the package's docstring defines (``hash``, ``email``, ``name``):
the HMAC of the value's text, by Python's :mod:`hmac`. They are deterministic, so each keeps a
small memo of its last results (cleared at :data:`MEMO` entries): a column with few distinct
values (a status, a blank filler) costs one dictionary look-up per row; values longer than
:data:`MEMO_LENGTH` are not kept. ``null``, ``blank`` and ``fixed`` need no function: they
are SQL literals, which SQLite evaluates once per statement.
"""

from __future__ import annotations

import hmac
import math
import sqlite3
import uuid
from collections.abc import Callable

from ..base import literal
from . import (
    EMAIL_PREFIX,
    EMAIL_SUFFIX,
    FIRST_NAMES,
    LAST_NAMES,
    ColumnFacts,
    Rule,
    blank_value,
    email_digits,
    fixed_value,
)

#: results a function keeps before it forgets them all, and the longest value it keeps one
#: for (memory stays flat: at most about 16 MB per function and size)
MEMO = 65536
MEMO_LENGTH = 256
#: the digest's hex digits a text hash holds at most
HEX_DIGITS = 64


def expression(rule: Rule, col: ColumnFacts, value: str) -> str:
    """The SQLite expression that gives ``rule``'s replacement of the value of expression
    ``value`` (the column), for a column described by ``col``."""
    if rule.name == "null":
        return "NULL"
    if rule.name == "blank":
        return constant(blank_value(col.kind), col.kind)
    if rule.name == "fixed":
        return constant(fixed_value(rule.value or "", col.kind), col.kind)
    size = "NULL" if col.size is None else str(int(col.size))
    if rule.name == "hash":
        kind = col.kind if col.kind in ("integer", "bytes", "uuid") else "text"
        return f"fbm_hash_{kind}({value}, {size})"
    if rule.name == "email":
        return f"fbm_email({value}, {size})"
    if rule.name == "name":
        return f"fbm_name({value}, {size})"
    raise ValueError(f"no SQLite expression for the rule {rule}")


def output(rule: Rule, col: ColumnFacts) -> str:
    """What the expression of ``rule`` gives, for a writer that renders it without testing
    each value: ``"constant"`` (one value for every row), ``"text"`` (ASCII text without a
    quote, CR or NUL, or NULL), ``"integer"`` (an integer or NULL), ``"bytes"`` (a BLOB or
    NULL), ``"any"`` (text or a BLOB, as the original is stored)."""
    if rule.name in ("null", "blank", "fixed"):
        return "constant"
    if rule.name == "hash" and col.kind == "integer":
        return "integer"
    if rule.name == "hash" and col.kind == "bytes":
        return "bytes"
    if rule.name == "hash" and col.kind == "uuid":
        return "any"
    return "text"


def constant(value: object, kind: str) -> str:
    """``value`` (of :func:`.blank_value` or :func:`.fixed_value`) as an SQLite literal in the
    form SQLite and SQLAlchemy store a value of ``kind``."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"
        if math.isinf(value):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if kind == "numeric":
        return literal(str(value))  # NUMERIC affinity makes it a number again
    if kind == "datetime":
        return literal(value.isoformat(sep=" "))  # type: ignore[attr-defined]
    if kind in ("date", "time"):
        return literal(value.isoformat())  # type: ignore[attr-defined]
    if kind == "json":
        import json

        return literal(json.dumps(value))
    return literal(str(value))


def _data(value: object) -> bytes:
    """The bytes a value is hashed by: a TEXT's UTF-8, an INTEGER or REAL in decimal, a
    BLOB's bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return repr(value).encode() if isinstance(value, float) else str(value).encode()


def functions(key: bytes) -> dict[str, tuple[int, Callable[..., object]]]:
    """The functions the expressions call, by name: (number of arguments, function). Each
    takes the value and the column's size (NULL: none), and keeps a memo per size."""

    def memo(compute: Callable[[bytes, object, int | None], object]) -> Callable[..., object]:
        by_size: dict[int | None, dict[object, object]] = {}

        def call(value: object, size: int | None) -> object:
            if value is None:
                return None
            seen = by_size.get(size)
            if seen is None:
                seen = by_size[size] = {}
            # 1 and 1.0 are one key to a dict, and two texts to hash ("1", "1.0")
            k = ("real", value) if type(value) is float else value
            try:
                return seen[k]
            except KeyError:
                pass
            out = compute(hmac.digest(key, _data(value), "sha256"), value, size)
            if not isinstance(value, str | bytes) or len(value) <= MEMO_LENGTH:
                if len(seen) >= MEMO:
                    seen.clear()
                seen[k] = out
            return out

        return call

    def text(d: bytes, value: object, size: int | None) -> str:
        return d.hex()[: min(size or HEX_DIGITS, HEX_DIGITS)]

    def integer(d: bytes, value: object, size: int | None) -> int:
        n = int.from_bytes(d[:8], "big") & ((1 << 63) - 1)
        return n % (1 << (8 * (size or 8) - 1))

    def blob(d: bytes, value: object, size: int | None) -> bytes:
        return d

    def uuid_(d: bytes, value: object, size: int | None) -> object:
        if isinstance(value, bytes):
            return d[:16]
        u = uuid.UUID(bytes=d[:16])
        return u.hex if isinstance(value, str) and len(value) == 32 else str(u)

    def email(d: bytes, value: object, size: int | None) -> str:
        return f"{EMAIL_PREFIX}{d.hex()[: email_digits(size)]}{EMAIL_SUFFIX}"

    def name(d: bytes, value: object, size: int | None) -> str:
        first = FIRST_NAMES[d[0] % len(FIRST_NAMES)]
        text = f"{first} {LAST_NAMES[d[1] % len(LAST_NAMES)]}"[:size]
        if text.encode() == _data(value):  # never the name it replaces: the next surname
            text = f"{first} {LAST_NAMES[(d[1] + 1) % len(LAST_NAMES)]}"[:size]
        return text

    made = {
        "fbm_hash_text": text,
        "fbm_hash_integer": integer,
        "fbm_hash_bytes": blob,
        "fbm_hash_uuid": uuid_,
        "fbm_email": email,
        "fbm_name": name,
    }
    return {fname: (2, memo(f)) for fname, f in made.items()}


def register(con: sqlite3.Connection, key: bytes) -> None:
    """Give ``con`` the functions the expressions call, keyed by the backup's ``key``."""
    for fname, (n, f) in functions(key).items():
        con.create_function(fname, n, f, deterministic=True)


__all__ = ["constant", "expression", "functions", "output", "register"]
