"""A helper process's work for the ``postgres`` format from SQLite: one rowid range of a big table
as COPY lines, encoded exactly as the exporting process encodes the rest (see :mod:`.child`).

The writer gives every part a :class:`CopyJob`; a helper's job is a :class:`CopyPart` (that and
its range); the result is a :class:`CopyDone`, which says which columns refused a value, if one
did (:class:`.Refused`): the writer may then write the table again with other types.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

from ...child import batches as child_batches
from ...child import open_stored
from .copy_text import BATCH, Refusal, Refused, RowEncoder, any_bytes


class CopyJob(TypedDict):
    """What every part of a table is encoded by (the same in the exporting process)."""

    table: str  # SQLite's SQL for the table
    select: str  # the source's column list (:meth:`.SQLiteSource.select_list`)
    key: str  # the rowid's name
    label: str  # the table as an error names it
    columns: list[str]
    kinds: list[str]
    as_bytes: list[int]  # the columns encoded by :func:`.any_bytes` instead of their type's
    exact: list[int]  # the columns refusing a value their type would change (no model's)
    bulk: bool
    identity: int | None
    pk: list[int]
    stored: bool  # read through APSW (:meth:`.SQLiteSource.stored_reader`)


class CopyPart(CopyJob):
    """A helper's job: the rowids ``lo..hi`` (:mod:`.child` reads the rest of its keys)."""

    lo: int
    hi: int


class CopyDone(TypedDict):
    rows: int
    top: int | None  # the largest identity key, if any
    refused: list[tuple[int, str]]  # :attr:`.Refused.reasons`, if a value was refused
    message: str  # then its message


def copy_part(con: sqlite3.Connection, job: CopyPart, write: Callable[[bytes], object]) -> CopyDone:
    table, key, lo, hi = job["table"], job["key"], job["lo"], job["hi"]

    def batches() -> Iterator[list[Any]]:
        stored = open_stored(job["db"]) if job["stored"] else None
        try:
            yield from child_batches(
                con,
                stored,
                f"SELECT {job['select']} FROM {table} WHERE {key} BETWEEN ? AND ? ORDER BY {key}",
                (lo, hi),
                BATCH,
                job["label"],
            )
        finally:
            if stored is not None:
                stored.close(True)

    def rowid_of(n: int) -> int | None:
        found = con.execute(
            f"SELECT {key} FROM {table} WHERE {key} BETWEEN ? AND ? ORDER BY {key} "
            "LIMIT 1 OFFSET ?",
            (lo, hi, n - 1),
        ).fetchone()
        return None if found is None else found[0]

    kinds = job["kinds"]
    encoders = [any_bytes if i in job["as_bytes"] else None for i in range(len(kinds))]
    enc = RowEncoder(
        kinds, bulk=job["bulk"], identity=job["identity"], encoders=encoders, exact=job["exact"]
    )
    where = Refusal(job["label"], job["columns"], kinds, job["pk"])
    try:
        n = enc.copy(
            batches(),
            lambda text: write(text.encode()),
            lambda _: None,
            lambda encoders, rows, done: where.raise_for(encoders, rows, done, rowid_of),
        )
    except Refused as e:
        return CopyDone(rows=0, top=None, refused=list(e.reasons.items()), message=str(e))
    return CopyDone(rows=n, top=enc.top, refused=[], message="")
