"""What a helper process runs (:mod:`.parallel` starts them), and the ways the engine opens and
reads an SQLite file read-only, which the exporting process uses too.

Standard library only (and zlib-ng, which compresses, and APSW, which reads stored rows fast;
each imports in milliseconds): a helper runs this file by its path,

    python -I child.py MODULE:FUNCTION [PATH...] < {"db": ..., "output": ..., "level": ...,
                                                    "parent": ..., what FUNCTION needs}

so that it starts in milliseconds without importing the package (``PATH``, prepended to
``sys.path``, says where ``MODULE`` is found). The helper asks to die with its parent, opens
``db`` read-only (a file nobody writes), opens ``output`` (a private temp file the exporting
process made) without O_CREAT, and calls ``FUNCTION(con, job, write)``, where ``write`` takes
bytes of the one gzip member it writes to ``output``. It prints FUNCTION's result (a dict) as
JSON and exits 0; or prints one line to stderr and exits 1.

A job of a redacted backup holds ``"redaction": {"register": "module:function", "key": hex}``:
the functions its rules call are registered on ``con`` with the backup's key before FUNCTION
runs, so a helper redacts exactly as the exporting process does. The key travels only in the
job on stdin: never on the command line (which ``ps`` shows), never in a file.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote

from zlib_ng import zlib_ng as zlib

#: seconds to wait for a writer's lock (rollback-journal databases)
BUSY_TIMEOUT = 30.0
#: characters of an error message a helper prints (a refused value may be long)
MESSAGE = 1000


def open_read_only(
    path: str | os.PathLike[str], *, frozen: bool = False, timeout: float = BUSY_TIMEOUT
) -> sqlite3.Connection:
    """A read-only connection to the SQLite file ``path``, in autocommit mode (transactions are
    begun by hand). ``frozen``: nobody writes the file while it is open, so SQLite may skip its
    locks and change counters (``immutable``)."""
    uri = f"file:{urlquote(str(path))}?mode=ro" + ("&immutable=1" if frozen else "")
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)


def open_stored(path: str | os.PathLike[str]) -> Any:
    """An APSW connection to the SQLite file ``path``, which nobody writes while it is open,
    for :func:`batches`; None where APSW cannot open it."""
    import apsw

    try:
        return apsw.Connection(
            f"file:{urlquote(str(path))}?mode=ro&immutable=1",
            flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
        )
    except apsw.Error:
        return None


def batches(
    con: sqlite3.Connection, stored: Any, sql: str, params: Sequence[Any], size: int, label: str
) -> Iterator[list[Any]]:
    """The rows of ``sql``, ``size`` at a time, read through ``stored`` (:func:`open_stored`)
    where it is given and prepares ``sql``, else through ``con``: APSW builds the rows twice
    as fast as the sqlite3 module (0.6 s against 1.2 s for 2 million rows of 4 columns), the
    same values. Its SQLite is not the one ``con`` runs, so ``stored`` is only for a query
    whose every value is stored as it is in the file: no function, no VIRTUAL generated
    column, no default computed on read (:attr:`.SQLiteTable.as_stored`).

    Text that is not UTF-8 raises a ValueError naming the table ``label``, not the text:
    sqlite3's own message quotes the value, the customer's data, into the export's error and
    the job's log."""
    rows = None
    if stored is not None:
        import apsw

        try:
            rows = stored.execute(sql, params)  # values are made as they are read, below
        except apsw.Error:  # a schema this other SQLite does not read: the sqlite3 module's
            pass
    if rows is not None:
        try:
            while batch := list(itertools.islice(rows, size)):
                yield batch
        except UnicodeDecodeError:
            raise not_utf8(label) from None
        finally:
            rows.close(True)
        return
    cur = con.execute(sql, params)
    try:
        while batch := cur.fetchmany(size):
            yield batch
    except sqlite3.OperationalError as e:
        if str(e).startswith("Could not decode to UTF-8"):
            raise not_utf8(label) from None
        raise
    finally:
        try:
            cur.close()
        except sqlite3.ProgrammingError:  # the connection was closed meanwhile (with it)
            pass


def not_utf8(label: str) -> ValueError:
    return ValueError(f"{label}: text that is not UTF-8, which PostgreSQL's text cannot hold")


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


#: what a Python's own program is named (where an app is embedded in another program, uWSGI
#: say, ``sys.executable`` names that program)
_PYTHON = re.compile(r"(python|pypy)[0-9.]*(\.exe)?")


def python_here() -> bool:
    """Whether ``sys.executable`` is a Python that a helper process can be started with."""
    return bool(_PYTHON.fullmatch(os.path.basename(sys.executable or "")))


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:MESSAGE] or type(e).__name__


def main(argv: list[str]) -> int:
    job = json.load(sys.stdin)
    die_with_parent(job["parent"])
    try:
        sys.path[:0] = argv[2:]
        module, _, function = argv[1].partition(":")
        work = getattr(importlib.import_module(module), function)
        con = open_read_only(job["db"], frozen=True)
        try:
            if (redaction := job.get("redaction")) is not None:
                module, _, function = redaction["register"].partition(":")
                register = getattr(importlib.import_module(module), function)
                register(con, bytes.fromhex(redaction["key"]))
            # O_TRUNC without O_CREAT: if the exporting process gave up and removed the file,
            # there is nothing to write to
            with open(job["output"], "r+b") as f:
                f.truncate()
                z = zlib.compressobj(job["level"], zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                result = work(con, job, lambda data: f.write(z.compress(data)))
                f.write(z.flush())
        finally:
            con.close()
    except Exception as e:
        print(one_line(e), file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def copy_main(argv: list[str]) -> int:
    """``python -I child.py --copy SOURCE COPY PARENT``: copy the file SOURCE byte for byte into
    COPY, a private temp file the exporting process made (opened without O_CREAT: if that
    process gave up and removed it, nothing is made again), in the kernel where it can
    (``copy_file_range``). Prints the bytes copied."""
    source, copy, parent = argv
    die_with_parent(int(parent))
    try:
        with open(source, "rb") as f, open(copy, "r+b") as g:
            g.truncate()
            size, done = os.fstat(f.fileno()).st_size, 0
            try:
                while done < size and (
                    n := os.copy_file_range(f.fileno(), g.fileno(), size - done)
                ):
                    done += n
            except (AttributeError, OSError):  # not Linux, or a kernel that cannot here
                f.seek(done)
                g.seek(done)
                while data := f.read(1 << 20):
                    g.write(data)
                    done += len(data)
    except Exception as e:
        print(one_line(e), file=sys.stderr)
        return 1
    print(done)
    return 0


#: this file, which a helper runs
PROGRAM = Path(__file__)

if __name__ == "__main__":
    sys.exit(copy_main(sys.argv[2:]) if sys.argv[1:2] == ["--copy"] else main(sys.argv))
