"""Helper processes: a big table of an SQLite file nobody writes (the snapshot copy, or a file
the engine built) cut into rowid ranges, one rendered here while helper processes render the
others side by side, each into a gzip member that is appended to the output in order.

A helper is a Python program (``cmd``) that reads a JSON job on stdin (``db``, ``lo``, ``hi``,
``output``, ``level`` and what it needs besides), writes one gzip member to ``output`` (a
private temp file the exporting process made, opened without O_CREAT), prints a JSON result
and exits 0; or prints one line to stderr and exits 1. Threads would not do: the work is
Python or SQLite code that holds the GIL or SQLite's global allocator lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import COMPRESSLEVEL, ExportError
from .gzipout import GzipOut
from .sqlite_source import SQLiteSource

#: rows a table needs before it is cut into ranges rendered side by side, and how many
PARALLEL_ROWS = 200_000
PARTS = min(
    4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
)


def ranges(source: SQLiteSource, table: str, key: str | None, rows: int) -> list[tuple[int, int]]:
    """``table``'s rowids (``key`` names them) as ranges of equal width: one range per part
    when the table is big and its file frozen, else one range; none for an empty table."""
    if key is None:
        raise ValueError("a table without rowids cannot be cut into ranges")
    lo, hi = source.con.execute(f"SELECT min({key}), max({key}) FROM {table}").fetchone()
    if lo is None:
        return []
    # an embedding program (no Python to start helpers with) renders everything itself
    many = source.frozen is not None and rows >= PARALLEL_ROWS and bool(sys.executable)
    parts = PARTS if many else 1
    width = -(-(hi - lo + 1) // parts)
    return [(a, min(hi, a + width - 1)) for a in range(lo, hi + 1, width)]


def in_parts(
    source: SQLiteSource,
    parts: list[tuple[int, int]],
    cmd: list[str],
    job: dict[str, Any],
    out: GzipOut,
    first: Callable[[int, int], object],
) -> list[dict[str, Any]]:
    """Render ``parts[0]`` here with ``first(lo, hi)`` (into ``out``), the other parts in helper
    processes running ``cmd``; append their members to ``out`` in order. Their results, in
    order. Any failure (or a cancel, which kills the helpers through ``source.interrupt``)
    stops them all and removes their files."""
    helpers: list[_Helper] = []
    try:
        for lo, hi in parts[1:]:
            helpers.append(_Helper(source, cmd, {**job, "lo": lo, "hi": hi}, out.path))
        if parts:
            first(*parts[0])
        return [h.finish(out) for h in helpers]
    finally:
        for h in helpers:
            h.abandon()


def temp_beside(path: Path, tag: str) -> Path:
    """The name of a private temp file beside ``path``. export() writes to
    ``.<output>.<hex>.part``; this gives ``.<output>.<hex>.<tag>.part``, which the cleaner that
    removes ``.<output>.*.part`` after a dead worker removes too."""
    stem = path.name.removesuffix(".part") if path.name.endswith(".part") else f".{path.name}"
    return path.with_name(f"{stem}.{tag}.part")


def python(*args: str) -> list[str]:
    """The command line running this Python, isolated from the environment (no PYTHON*
    variables, no user site, no current directory on the path)."""
    return [sys.executable, "-I", *args]


class _Helper:
    def __init__(self, source: SQLiteSource, cmd: list[str], job: dict, beside: Path) -> None:
        self.source = source
        self.path = temp_beside(beside, str(job["lo"]))
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        job = {**job, "db": str(source.frozen), "output": str(self.path), "level": COMPRESSLEVEL}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        source.children.add(self.proc)
        self.proc.stdin.write(json.dumps(job).encode())
        self.proc.stdin.close()

    def finish(self, out: GzipOut) -> dict[str, Any]:
        """Wait for the helper, append its member to ``out``; its result."""
        # what it prints is a result or one line (a traceback at worst): no pipe fills up
        stdout, stderr = self.proc.stdout.read(), self.proc.stderr.read()
        code = self.proc.wait()
        message = " ".join(stderr.decode(errors="replace").split())
        if code == 1 and message:
            raise ExportError(message)
        if code:
            raise ExportError(f"a helper process failed: exit {code}: {message}".rstrip(": "))
        out.append(open(self.path, "rb"))  # the open file outlives its name
        self.path.unlink()
        return json.loads(stdout)

    def abandon(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.source.children.discard(self.proc)
        self.path.unlink(missing_ok=True)
