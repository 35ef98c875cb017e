"""A helper process's work for the ``postgres`` format from SQLite: one rowid range of a big table
as COPY lines, encoded exactly as the exporting process encodes the rest (see :mod:`.child`).

The job holds ``table`` (SQLite's SQL for it), ``select`` (the source's column list,
:meth:`.SQLiteSource.select_list`), ``key``, ``label``, ``columns``, ``kinds``, ``bulk``,
``identity``, ``pk``, ``lo`` and ``hi``; the result is ``{"rows": N, "top": largest identity
key or null}``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from .copy_text import BATCH, Refusal, RowEncoder


def copy_part(
    con: sqlite3.Connection, job: dict[str, Any], write: Callable[[bytes], object]
) -> dict[str, Any]:
    table, key, lo, hi = job["table"], job["key"], job["lo"], job["hi"]

    def batches() -> Iterator[list[Any]]:
        cur = con.execute(
            f"SELECT {job['select']} FROM {table} WHERE {key} BETWEEN ? AND ? ORDER BY {key}",
            (lo, hi),
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
    n = enc.copy(
        batches(),
        lambda text: write(text.encode()),
        lambda _: None,
        lambda encoders, rows, done: where.raise_for(encoders, rows, done, rowid_of),
    )
    return {"rows": n, "top": enc.top}
