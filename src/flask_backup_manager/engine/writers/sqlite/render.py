"""Rendering a range of an SQLite table's rows as multi-row ``INSERT`` statements.

Used in the exporting process, and by the helper processes that render the other parts of a big
table from a file nobody writes (:func:`.writers.sqlite.from_sqlite._dump`): they import this
file as a top-level module (``render:render_part``, see :mod:`.child`), so it imports nothing but
the standard library and a helper starts in milliseconds. A helper's job is a
:class:`RenderPart`; it prints a :class:`RenderDone`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from typing import TypedDict

#: bytes of row text an INSERT statement aims at (one bigger row makes a bigger statement)
STATEMENT_BYTES = 1 << 18


def render_range(
    con: sqlite3.Connection,
    sql: str,
    safe: str,
    head: bytes,
    lo: int,
    hi: int,
    write: Callable[[bytes], object],
    rows: Callable[[int], object] | None = None,
) -> int:
    """Write the rows whose rowid is in ``lo..hi`` as ``head`` + rows + ``;`` statements.

    ``sql`` (see :func:`statement_sql`) renders the next rows from a rowid on, up to a number
    of them, and gives the last rowid: SQLite renders a whole statement in one step, in C. The
    number of rows per statement follows their size, so statements (and memory) stay near
    :data:`STATEMENT_BYTES` whatever the rows hold and however sparse the rowids are.

    The sqlite3 shell drops a CR before an LF even inside a string, which ``sql`` does not
    guard against (looking at every value costs a tenth of the time): a statement holding a CR
    is rendered again by ``safe``, the same query that writes each CR as ``char(13)``. As CRs
    tend to come together (text from browsers ends its lines with CRLF), the statements after
    it are rendered by ``safe`` at once, until one holds no CR.
    """
    limit, total, query = 64, 0, sql
    while lo <= hi:
        n, text, last = con.execute(query, (lo, hi, limit)).fetchone()
        if not n:
            break
        if query is sql and b"\r" in text:
            query = safe
            n, text, last = con.execute(safe, (lo, hi, limit)).fetchone()
        elif query is safe and b"char(13)" not in text:
            query = sql
        write(head + text + b";\n")
        total += n
        if rows is not None:
            rows(n)
        limit = max(1, min(limit * 4, limit * STATEMENT_BYTES // len(text)))
        lo = last + 1
    return total


def statement_sql(table: str, key: str, row: str) -> str:
    """The query :func:`render_range` runs: ``table``'s rows from rowid ``?`` to ``?``, at
    most ``?`` of them in rowid order (``key`` names the rowid), each rendered by the SQL
    expression ``row``, joined by ``,`` and a newline; with their number and last rowid."""
    return (
        # the separator a literal (a comma and a newline), not char(44, 10): that call would
        # be made for every row
        "SELECT count(*), group_concat(fbm_line, ',\n'), max(fbm_key) FROM ("
        f"SELECT {key} AS fbm_key, {row} AS fbm_line FROM {table} "
        f"WHERE {key} BETWEEN ? AND ? ORDER BY {key} LIMIT ?)"
    )


def real_literal(x: float) -> str:
    """The shortest decimal that a correctly rounding parser reads back as ``x`` (Python's
    ``repr``), ``1e999`` for infinity. SQLite before 3.43 does not round correctly: about 1 in
    200 of these strings (and of its own ``quote()`` output) comes back one ulp off, which is
    why the caller checks with SQLite's own parser and falls back to
    :func:`exact_real_expression`."""
    if math.isinf(x):
        return "1e999" if x > 0 else "-1e999"
    return repr(x)


def exact_real_expression(x: float) -> str:
    """An SQL expression whose value is exactly ``x`` in any SQLite: ``x = m * 2**e`` with an
    integer ``m`` of at most 53 bits, computed as ``m*1.0`` times or divided by powers of two
    of at most 2**62 (integer literals, exact), every step exact."""
    if x == 0 or math.isinf(x):
        return real_literal(x)
    n, d = x.as_integer_ratio()
    if d == 1:
        k = (n & -n).bit_length() - 1
        m, op = n >> k, "*"
    else:
        k = d.bit_length() - 1
        m, op = n, "/"
    parts = [f"{m}*1.0"]
    while k > 0:
        step = min(k, 62)
        parts.append(str(1 << step))
        k -= step
    return "(" + op.join(parts) + ")"


def prepare(con: sqlite3.Connection) -> None:
    """Give ``con`` the functions the row literals call."""
    con.create_function("fbm_real", 1, real_literal, deterministic=True)
    con.create_function("fbm_exact", 1, exact_real_expression, deterministic=True)


class RenderJob(TypedDict):
    """What every part of a table is rendered by (:func:`render_range`'s arguments)."""

    sql: str
    safe: str
    head: str  # the statements' head, as text (JSON has no bytes)


class RenderPart(RenderJob):
    """A helper's job: the rowids ``lo..hi`` (:mod:`.child` reads the rest of its keys)."""

    lo: int
    hi: int


class RenderDone(TypedDict):
    rows: int


def render_part(
    con: sqlite3.Connection, job: RenderPart, write: Callable[[bytes], object]
) -> RenderDone:
    """A helper's work (see :mod:`.child`): the rows ``lo..hi`` of ``job`` rendered by its
    queries, as bytes (SQLite's text as stored, even if it is not UTF-8)."""
    con.text_factory = bytes
    prepare(con)
    n = render_range(
        con, job["sql"], job["safe"], job["head"].encode(), job["lo"], job["hi"], write
    )
    return RenderDone(rows=n)
