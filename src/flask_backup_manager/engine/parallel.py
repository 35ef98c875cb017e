"""Helper processes: a big table of an SQLite file nobody writes (the snapshot copy, or a file
the engine built) cut into rowid ranges, one rendered here while helper processes render the
others side by side, each into a gzip member that is appended to the output in order.

This is the exporting process's side. A helper runs :mod:`.child` (the other side, standard
library only) on a JSON job (``db``, ``lo``, ``hi``, ``output``, ``level``, ``parent`` and what
the work function needs besides): it asks to die with its parent, writes one gzip member to
``output`` (a private temp file made here, opened without O_CREAT), prints a JSON result and
exits 0; or prints one line to stderr and exits 1. Threads would not do: the work is Python or
SQLite code that holds the GIL or SQLite's global allocator lock.

Nothing here knows a source: the caller passes the connection to read the rowids by, the file
the helpers read (a file nobody writes), and the set of running helpers its cancel kills.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import child
from .base import COMPRESSLEVEL, escape_controls, temp_beside
from .gzipout import GzipOut
from .model import ExportError
from .redaction import sqlite

#: rows a table needs before it is cut into ranges rendered side by side, and how many
PARALLEL_ROWS = 200_000
PARTS = min(
    4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
)


def ranges(
    con: sqlite3.Connection, table: str, key: str | None, rows: int, *, frozen: bool
) -> list[tuple[int, int]]:
    """``table``'s rowids (``key`` names them) as ranges of equal width: one range per part
    when the table is big and its file ``frozen`` (nobody writes it: helpers may read it),
    else one range; none for an empty table."""
    if key is None:
        raise ValueError("a table without rowids cannot be cut into ranges")
    # two subqueries: SQLite finds a min() or a max() by one seek, but both at once by a scan
    lo, hi = con.execute(
        f"SELECT (SELECT min({key}) FROM {table}), (SELECT max({key}) FROM {table})"
    ).fetchone()
    if lo is None:
        return []
    parts = PARTS if frozen and rows >= PARALLEL_ROWS else 1
    width = -(-(hi - lo + 1) // parts)
    return [(a, min(hi, a + width - 1)) for a in range(lo, hi + 1, width)]


def in_parts(
    db: Path | None,
    children: set[subprocess.Popen],
    parts: list[tuple[int, int]],
    cmd: list[str],
    job: Mapping[str, Any],
    out: GzipOut,
    first: Callable[[int, int], object],
) -> list[dict[str, Any]]:
    """Render ``parts[0]`` here with ``first(lo, hi)`` (into ``out``), the other parts in helper
    processes running ``cmd`` (:func:`command`) on the file ``db``, each on ``job`` (its work's
    typed job, e.g. :class:`.copy_part.CopyJob`) with its ``lo`` and ``hi``; append their members to
    ``out`` in order. The helpers' results, in order. A part whose helper cannot be started
    (no usable Python) is rendered here too, in its turn. Each running helper is in
    ``children`` (the caller's cancel kills them). Any failure stops them all and removes
    their files."""
    if not parts:  # an empty table
        return []
    helpers: list[_Helper | None] = []
    try:
        for lo, hi in parts[1:]:
            helper = _Helper(db, children, out.path, lo)
            helpers.append(helper)
            if not helper.start(cmd, {**job, "lo": lo, "hi": hi}):
                helpers[-1] = None
                helper.abandon()
        results = []
        for (lo, hi), helper in zip(parts, [None, *helpers], strict=True):
            if helper is None:
                first(lo, hi)
            else:
                results.append(helper.finish(out))
        return results
    finally:
        for h in helpers:
            if h is not None:
                h.abandon()


def command(work: str, path: list[str]) -> list[str]:
    """The command line of a helper running ``work`` (``"module:function"``, see
    :mod:`.child`), found on ``path``, with this Python isolated from the environment (no
    PYTHON* variables, no user site, no current directory on the path)."""
    return [sys.executable, "-I", str(child.PROGRAM), work, *path]


def redaction_job(key: bytes | None) -> dict[str, Any]:
    """What a helper's job holds to redact as this process does (see :mod:`.child`): the
    backup's key and the function registering the rules' SQLite functions; ``{}`` without
    a redaction. The job goes to the helper on its stdin only."""
    if key is None:
        return {}
    return {"redaction": {"register": f"{sqlite.__name__}:register", "key": key.hex()}}


def package_path() -> list[str]:
    """Where this process finds the package, for a helper whose work imports it (an app may be
    run with PYTHONPATH, which ``-I`` ignores): the folder this very package was loaded from
    first, so that a helper never runs another copy of it found earlier on the path."""
    return [str(Path(__file__).parents[2]), *(p for p in sys.path if p)]


class _Helper:
    def __init__(
        self, db: Path | None, children: set[subprocess.Popen], beside: Path, lo: int
    ) -> None:
        self.db, self.children, self.proc = db, children, None
        self.path = temp_beside(beside, str(lo))
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def start(self, cmd: list[str], job: Mapping[str, Any]) -> bool:
        """Start the helper on ``job``; False when no process can be started."""
        job = {
            **job,
            "db": str(self.db),
            "output": str(self.path),
            "level": COMPRESSLEVEL,
            "parent": os.getpid(),
        }
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError:
            return False
        self.children.add(self.proc)
        try:
            self.proc.stdin.write(json.dumps(job).encode())
            self.proc.stdin.close()
        except BrokenPipeError:  # it died at once: finish() says how
            pass
        self.proc.stdin = None  # closed: communicate() must not flush it
        return True

    def finish(self, out: GzipOut) -> dict[str, Any]:
        """Wait for the helper, append its member to ``out``; its result."""
        stdout, stderr = self.proc.communicate()
        # escaped as every message is (base.one_line): it may quote the customer's names
        message = escape_controls(
            " ".join(stderr.decode(errors="replace").split())[: child.MESSAGE]
        )
        code = self.proc.returncode
        if code == 1 and message:
            raise ExportError(message)
        if code:
            raise ExportError(f"a helper process failed: exit {code}: {message}".rstrip(": "))
        out.append(open(self.path, "rb"))  # the open file outlives its name
        self.path.unlink()
        return json.loads(stdout)

    def abandon(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()
            self.children.discard(self.proc)
        self.path.unlink(missing_ok=True)
