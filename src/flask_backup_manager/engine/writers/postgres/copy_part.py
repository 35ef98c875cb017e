"""A helper process of the ``postgres`` format from SQLite: one rowid range of a big table as
COPY lines, encoded exactly as the exporting process encodes the rest (see :mod:`.parallel`).

    python -I -c "...copy_part import main..." < {"db": ..., "table": ..., "label": ...,
        "columns": [...], "kinds": [...], "key": ..., "bulk": ..., "identity": ..., "pk": [...],
        "lo": ..., "hi": ..., "output": ..., "level": ...}

Prints ``{"rows": N, "top": largest identity key or null}``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote as urlquote

from zlib_ng import zlib_ng as zlib

from ...base import ident
from ...model import ExportError
from ..sqlite.render import die_with_parent, one_line
from .copy_text import BATCH, Refusal, RowEncoder


def main() -> int:
    job = json.load(sys.stdin)
    die_with_parent(job["parent"])
    table, key, lo, hi = f"main.{ident(job['table'])}", job["key"], job["lo"], job["hi"]
    cols = ", ".join(map(ident, job["columns"]))
    try:
        con = sqlite3.connect(f"file:{urlquote(job['db'])}?mode=ro&immutable=1", uri=True)

        def batches() -> Iterator[list[Any]]:
            cur = con.execute(
                f"SELECT {cols} FROM {table} WHERE {key} BETWEEN ? AND ? ORDER BY {key}", (lo, hi)
            )
            while batch := cur.fetchmany(BATCH):
                yield batch

        def rowid_of(n: int) -> int | None:
            found = con.execute(
                f"SELECT {key} FROM {table} WHERE {key} BETWEEN ? AND ? ORDER BY {key} "
                "LIMIT 1 OFFSET ?",
                (lo, hi, n - 1),
            ).fetchone()
            return None if found is None else found[0]

        enc = RowEncoder(job["kinds"], bulk=job["bulk"], identity=job["identity"])
        where = Refusal(job["label"], job["columns"], job["kinds"], job["pk"])
        with open(job["output"], "r+b") as f:  # made by the exporting process
            f.truncate()
            z = zlib.compressobj(job["level"], zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            n = enc.copy(
                batches(),
                lambda text: f.write(z.compress(text.encode())),
                lambda _: None,
                lambda encoders, rows, done: where.raise_for(encoders, rows, done, rowid_of),
            )
            f.write(z.flush())
        con.close()
    except (ExportError, sqlite3.Error, OSError) as e:
        print(one_line(e), file=sys.stderr)
        return 1
    print(json.dumps({"rows": n, "top": enc.top}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
