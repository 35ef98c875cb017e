"""Rendering a range of an SQLite table's rows as multi-row ``INSERT`` statements.

Used in the exporting process, and run as a script (by file path, so that it imports nothing
but the standard library and starts in milliseconds) by the helper processes that render the
other parts of a big table from a file nobody writes (:func:`.writers.sqlite.from_sqlite._dump`):

    python -I render.py < {"db": ..., "sql": ..., "safe": ..., "head": ..., "lo": ...,
                                  "hi": ..., "output": ..., "level": ...}

A helper writes one gzip member to ``output`` (a file the exporting process created) and prints
``{"rows": N}``; on failure it prints one line to stderr and exits 1 (see :mod:`.parallel`).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
from collections.abc import Callable
from urllib.parse import quote as urlquote

from zlib_ng import zlib_ng as zlib

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


def connect(path: str, *, frozen: bool = False) -> sqlite3.Connection:
    """A read-only connection that renders: returns bytes (SQLite's text as stored, even if it
    is not UTF-8) and knows the functions the row literals call. ``frozen``: nobody writes the
    file while it is open, so SQLite may skip its locks."""
    uri = f"file:{urlquote(path)}?mode=ro" + ("&immutable=1" if frozen else "")
    con = sqlite3.connect(uri, uri=True, isolation_level=None)
    con.text_factory = bytes
    prepare(con)
    return con


def prepare(con: sqlite3.Connection) -> None:
    """Give ``con`` the functions the row literals call."""
    con.create_function("fbm_real", 1, real_literal, deterministic=True)
    con.create_function("fbm_exact", 1, exact_real_expression, deterministic=True)


def die_with_parent(parent: int) -> None:
    """Ask Linux to kill this helper when the process that started it dies (a worker killed
    with SIGKILL leaves no helper rendering on); elsewhere nothing is asked."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:1000] or type(e).__name__


def main() -> int:
    job = json.load(sys.stdin)
    die_with_parent(job["parent"])
    try:
        con = connect(job["db"], frozen=True)
        # O_TRUNC without O_CREAT: if the exporting process gave up and removed the file,
        # there is nothing to write to
        with open(job["output"], "r+b") as f:
            f.truncate()
            z = zlib.compressobj(job["level"], zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            n = render_range(
                con,
                job["sql"],
                job["safe"],
                job["head"].encode(),
                job["lo"],
                job["hi"],
                lambda data: f.write(z.compress(data)),
            )
            f.write(z.flush())
        con.close()
    except Exception as e:
        print(one_line(e), file=sys.stderr)
        return 1
    print(json.dumps({"rows": n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
