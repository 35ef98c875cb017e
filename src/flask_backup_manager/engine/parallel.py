"""Helper processes: a big table of an SQLite file nobody writes (the snapshot copy, or a file
the engine built) cut into rowid ranges, one rendered here while helper processes render the
others side by side, each into a gzip member that is appended to the output in order.

A helper is a Python program (``cmd``) that reads a JSON job on stdin (``db``, ``lo``, ``hi``,
``output``, ``level``, ``parent`` and what it needs besides), asks to die with its parent,
writes one gzip member to ``output`` (a
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

from .base import COMPRESSLEVEL, temp_beside
from .gzipout import GzipOut
from .model import ExportError
from .sources.sqlite import SQLiteSource

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
    # two subqueries: SQLite finds a min() or a max() by one seek, but both at once by a scan
    lo, hi = source.con.execute(
        f"SELECT (SELECT min({key}) FROM {table}), (SELECT max({key}) FROM {table})"
    ).fetchone()
    if lo is None:
        return []
    parts = PARTS if source.frozen is not None and rows >= PARALLEL_ROWS else 1
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
    processes running ``cmd``; append their members to ``out`` in order. The helpers'
    results, in order. A part whose helper cannot be started (no usable Python) is rendered
    here too, in its turn. Any failure (or a cancel, which kills the helpers through
    ``source.interrupt``) stops them all and removes their files."""
    if not parts:  # an empty table
        return []
    helpers: list[_Helper | None] = []
    try:
        for lo, hi in parts[1:]:
            helper = _Helper(source, out.path, lo)
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


def python(script: Path) -> list[str]:
    """The command line running ``script`` with this Python, isolated from the environment
    (no PYTHON* variables, no user site, no current directory on the path)."""
    return [sys.executable, "-I", str(script)]


def python_module(module: str) -> list[str]:
    """The command line running ``module``'s ``main()`` with this Python, isolated as
    :func:`python`, finding the package where this process finds it (``sys.path`` is passed
    on: an app may be run with PYTHONPATH, which ``-I`` ignores)."""
    code = f"import sys; sys.path[:0] = sys.argv[1:]; from {module} import main; sys.exit(main())"
    return [sys.executable, "-I", "-c", code, *[p for p in sys.path if p]]


#: characters of a helper's error message kept (a refused value may be long)
MESSAGE = 1000


class _Helper:
    def __init__(self, source: SQLiteSource, beside: Path, lo: int) -> None:
        self.source, self.proc = source, None
        self.path = temp_beside(beside, str(lo))
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def start(self, cmd: list[str], job: dict) -> bool:
        """Start the helper on ``job``; False when no process can be started."""
        job = {
            **job,
            "db": str(self.source.frozen),
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
        self.source.children.add(self.proc)
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
        message = " ".join(stderr.decode(errors="replace").split())[:MESSAGE]
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
            self.source.children.discard(self.proc)
        self.path.unlink(missing_ok=True)
