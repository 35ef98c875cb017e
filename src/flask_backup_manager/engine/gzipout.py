"""A gzip file written by a second thread, shared by the SQL writers of both dialects."""

from __future__ import annotations

import hashlib
import queue
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from zlib_ng import zlib_ng as zlib

from .base import COMPRESSLEVEL
from .model import ExportError

#: bytes gathered before a chunk goes to the compressing thread
BLOCK = 1 << 20


def gunzip(chunks: Iterable[bytes], most: int = 1 << 22) -> Iterator[bytes]:
    """The text of a gzip stream given in ``chunks``, in pieces of at most ``most`` bytes,
    across the members a gzip file may be a series of. Raises ExportError if it is cut."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        while chunk:
            text = d.decompress(chunk, most)
            if text:
                yield text
            chunk = d.unconsumed_tail or (d.unused_data if d.eof else b"")
            if d.eof and chunk:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    if not d.eof:
        raise ExportError("the gzip file is truncated")


class Inline:
    """The check of a file made as it is written (:class:`GzipOut`), instead of reading it
    back: ``script`` (a :class:`.export.ScriptCheck`, or a verification's loader) reads
    each part of the text before it is compressed, and an appended member's text as its
    bytes are copied; ``sha256`` and ``size`` are of every byte written, in order, which
    :func:`.export.check` then compares with the file on disk. Once the writer marks a place
    to go back to (:meth:`GzipOut.mark`), text already read cannot be taken back: ``whole``
    is False, and the file is checked by reading it back, as without this. A ``script`` whose
    ``gzipped`` is true (:class:`.verify.PsqlCheck`) reads the file's bytes instead of its
    text, as they are written."""

    def __init__(self, script: Any) -> None:
        self.script = script
        #: the script reads the gzip bytes written, not the text
        self.gzipped = bool(getattr(script, "gzipped", False))
        self.hash = hashlib.sha256()
        self.size = 0
        #: every byte of the file went through: False until a GzipOut takes it
        self.whole = False
        self._taken = False

    def take(self) -> Inline | None:
        """This, for the one GzipOut writing the file; None for any other."""
        if self._taken:
            self.whole = False
            return None
        self._taken = self.whole = True
        return self


class Mark:
    """A place in a :class:`GzipOut` to go back to (:meth:`GzipOut.rewind`), set by the
    compressing thread once it has got that far: where in the file (``offset``), and a copy of
    the compressor there (``state``), which goes on from there as if nothing had followed."""

    offset: int = 0
    state: object = None


class _Rewind:
    def __init__(self, mark: Mark) -> None:
        self.mark = mark


class GzipOut:
    """A gzip file written by a second thread (zlib releases the GIL), fed by a bounded queue
    of big chunks, so reading the database and compressing run on two cores. Gzip members
    compressed elsewhere can be appended in between (:meth:`append`): a gzip file may be a
    series of members, which every reader reads as one stream. A writer may mark a place
    (:meth:`mark`) and later take back all it wrote after it (:meth:`rewind`: the file is cut
    there and the compression goes on from there)."""

    def __init__(self, path: Path, inline: Inline | None = None) -> None:
        self.path = path
        #: the check made as the file is written (None: none, or no more)
        self.inline = inline.take() if inline is not None else None
        self.f = open(path, "wb")  # closed in close()
        self.q: queue.Queue[bytes | bytearray | BinaryIO | Mark | _Rewind | None] = queue.Queue(
            maxsize=8
        )
        self.error: BaseException | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.thread = threading.Thread(target=self._run, name="fbm-gzip", daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        self.f.write(data)
        if (inline := self.inline) is not None:
            inline.hash.update(data)
            inline.size += len(data)
            if inline.gzipped and not inline.script.feed(data):
                self.inline = None  # its process is lost: the file is read back after
                inline.whole = False

    def _member(self, member: BinaryIO) -> None:
        """Copy the gzip member(s) in ``member``, their text (or bytes) read by the inline
        check."""
        inline = self.inline
        if inline is None:
            shutil.copyfileobj(member, self.f, 1 << 20)
            return

        def copied() -> Iterator[bytes]:
            while data := member.read(1 << 20):
                self._write(data)
                yield data

        if inline.gzipped:
            for _ in copied():
                pass
            return
        for text in gunzip(copied()):
            inline.script.feed(text)

    def _run(self) -> None:
        try:
            z = zlib.compressobj(COMPRESSLEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            while (chunk := self.q.get()) is not None:
                if isinstance(chunk, (bytes, bytearray)):
                    if (inline := self.inline) is not None and not inline.gzipped:
                        chunk = bytes(chunk)  # what is read is what is compressed
                        inline.script.feed(chunk)
                    self._write(z.compress(chunk))
                elif isinstance(chunk, Mark):
                    # all of it so far in the file, on a byte boundary; the window is kept
                    self.f.write(z.flush(zlib.Z_SYNC_FLUSH))
                    chunk.offset, chunk.state = self.f.tell(), z.copy()
                elif isinstance(chunk, _Rewind):
                    self.f.truncate(chunk.mark.offset)
                    self.f.seek(chunk.mark.offset)
                    z = chunk.mark.state.copy()  # the mark's own stays as it was: rewind again
                else:
                    with chunk:  # a member: end ours, copy it, start a new one
                        self._write(z.flush())
                        self._member(chunk)
                    z = zlib.compressobj(COMPRESSLEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            self._write(z.flush())
        except BaseException as e:  # reported by put()/close() in the main thread
            self.error = e
            while (item := self.q.get()) is not None:  # drain: the producer never blocks
                if not isinstance(item, (bytes, bytearray, Mark, _Rewind)):
                    item.close()

    def _put(self, item: bytes | bytearray | BinaryIO | Mark | _Rewind | None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    raise ExportError("the compressing thread stopped") from self.error

    def line(self, text: str) -> None:
        self.write(text.encode() + b"\n")

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        if len(data) >= BLOCK:
            self.flush()
            self._put(data)
            return
        self.parts.append(data)
        self.size += len(data)
        if self.size >= BLOCK:
            self.flush()

    def append(self, member: BinaryIO) -> None:
        """Append the gzip member(s) in the open file ``member`` (closed once copied)."""
        self.flush()
        try:
            self._put(member)
        except BaseException:
            member.close()
            raise

    def mark(self) -> Mark:
        """A place to :meth:`rewind` to: here (a few bytes of the file: a sync flush)."""
        self.flush()
        if self.inline is not None:  # what it read cannot be taken back: read the file after
            self.inline.whole = False
            self.inline = None
        mark = Mark()
        self._put(mark)
        return mark

    def rewind(self, mark: Mark) -> None:
        """Take back everything written since ``mark`` (appended members too): the file is
        cut there, and what is written next begins a new member."""
        self.parts, self.size = [], 0
        self._put(_Rewind(mark))

    def flush(self) -> None:
        if self.parts:
            self._put(b"".join(self.parts))
            self.parts, self.size = [], 0

    def close(self) -> None:
        """Finish the gzip stream and close the file; raises what the thread hit."""
        try:
            self.flush()
            self._put(None)
            self.thread.join()
            if self.error is not None:
                raise self.error
        except BaseException:
            self._stop()
            raise
        finally:
            self.f.close()

    def abort(self) -> None:
        self.parts = []
        self._stop()
        self.f.close()

    def _stop(self) -> None:
        """End the thread, failed or not: what is queued is only compressed now (the check
        reads no more), and the end goes in even after the thread's error, which ``_put``
        would raise instead (the thread drains the queue until it comes)."""
        inline, self.inline = self.inline, None
        if inline is not None and inline.gzipped:
            inline.script.abandon()  # a feed waiting for the script's process stops
        while self.thread.is_alive():
            try:
                self.q.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self.thread.join()

    def __enter__(self) -> GzipOut:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
