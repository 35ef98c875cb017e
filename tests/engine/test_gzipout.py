"""The gzip file the SQL formats are written to: what a writer takes back is gone, and the
rest reads as one stream, appended members included."""

from __future__ import annotations

import gzip
import hashlib
import random
import threading
import time

import pytest

from flask_backup_manager.engine.gzipout import BLOCK, GzipOut, Inline, gunzip


def test_a_rewind_takes_back_everything_since_its_mark_and_compression_goes_on(tmp_path):
    rnd = random.Random(3)
    noise = rnd.randbytes(BLOCK + 10)  # more than one chunk
    member = tmp_path / "member.gz"
    member.write_bytes(gzip.compress(b"[member]"))
    out_path = tmp_path / "out.gz"
    with GzipOut(out_path) as out:
        out.write("head;")
        mark = out.mark()
        out.write(noise)
        out.append(open(member, "rb"))  # a helper's member, taken back too
        out.write("tail")
        out.rewind(mark)
        out.write("again;")
        out.rewind(mark)  # the same mark, twice
        out.write("table;")
        second = out.mark()
        out.append(open(member, "rb"))
        out.write("kept;")
        third = out.mark()
        out.write(noise)
        out.rewind(third)
        out.write("end")
    data = out_path.read_bytes()
    want = b"head;table;[member]kept;end"
    assert gzip.decompress(data) == want
    assert b"".join(gunzip([data])) == want
    assert second.offset < third.offset < len(data)
    assert len(data) < 200  # the noise is gone from the file, not only from its reading


class Recording:
    """A script check that keeps the text it is given."""

    def __init__(self) -> None:
        self.text = bytearray()

    def feed(self, data: bytes) -> None:
        self.text += data


def test_the_inline_check_reads_the_text_and_hashes_the_bytes_as_they_are_written(tmp_path):
    """Written text and appended members' text reach the check in order; the sha256 and size
    it keeps are those of the file as it ends up on disk."""
    member = tmp_path / "member.gz"
    member.write_bytes(gzip.compress(b"[member]") + gzip.compress(b"[second member]"))
    big = random.Random(5).randbytes(BLOCK + 3)
    inline = Inline(Recording())
    out_path = tmp_path / "out.gz"
    with GzipOut(out_path, inline) as out:
        out.write("head;")
        out.write(big)
        out.append(open(member, "rb"))
        out.write("tail")
    data = out_path.read_bytes()
    assert inline.whole
    assert bytes(inline.script.text) == b"head;" + big + b"[member][second member]tail"
    assert gzip.decompress(data) == bytes(inline.script.text)
    assert (inline.size, inline.hash.hexdigest()) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_mark_ends_the_inline_check_and_a_second_writer_gets_none(tmp_path):
    """Text read by the check cannot be taken back: once a writer marks a place the file
    must be read back whole (``whole`` False); and an Inline serves one GzipOut only."""
    inline = Inline(Recording())
    with GzipOut(tmp_path / "a.gz", inline) as out:
        out.write("head;")
        out.mark()
        out.write("rest")
    assert not inline.whole
    again = Inline(Recording())
    with GzipOut(tmp_path / "b.gz", again) as first, GzipOut(tmp_path / "c.gz", again) as second:
        first.write("x")
        second.write("y")
    assert second.inline is None and not again.whole


class Bytes:
    """A script check reading the file's bytes (as :class:`.verify.PsqlCheck` does), whose
    process is lost after ``lives`` feeds."""

    gzipped = True

    def __init__(self, lives: int = 1 << 30) -> None:
        self.data = bytearray()
        self.lives = lives

    def feed(self, data: bytes) -> bool:
        if not self.lives:
            return False
        self.lives -= 1
        self.data += data
        return True

    def abandon(self) -> None:
        pass


@pytest.mark.parametrize("end", ["none", "mark", "lost"])
def test_a_check_of_the_gzip_bytes_reads_the_file_as_written_until_a_mark_or_its_loss(
    tmp_path, end
):
    """A script reading the gzip bytes gets the file's bytes in order; a mark, or its process
    lost, ends it, and the file must then be read back (``whole`` False)."""
    big = random.Random(7).randbytes(3 * BLOCK)
    script = Bytes(lives=1 if end == "lost" else 1 << 30)
    inline = Inline(script)
    with GzipOut(tmp_path / "out.gz", inline) as out:
        out.write(big)
        if end == "mark":
            out.mark()
        out.write(big)
    data = (tmp_path / "out.gz").read_bytes()
    assert gzip.decompress(data) == big + big
    if end == "none":
        assert inline.whole and bytes(script.data) == data
        assert (inline.size, inline.hash.hexdigest()) == (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
    else:
        assert not inline.whole and out.inline is None
        assert data.startswith(bytes(script.data)) and len(script.data) < len(data)


class Refusing:
    """A script check that refuses the first text it reads."""

    def feed(self, data: bytes) -> None:
        raise ValueError("refused")


@pytest.mark.parametrize("more", [True, False], ids=["writer-goes-on", "writer-closes"])
def test_a_check_refusing_in_the_compressing_thread_fails_the_writer_and_ends_the_thread(
    tmp_path, more
):
    """The check's error in the compressing thread reaches the writer, and the thread ends
    (it once waited forever for an end that abort() never queued: the export hung)."""
    out = GzipOut(tmp_path / "out.gz", Inline(Refusing()))
    box: list[BaseException] = []

    def write() -> None:
        try:
            with out:
                out.write(b"x" * BLOCK)
                for _ in range(600):  # the thread fails: its error waits for the writer
                    if out.error is not None:
                        break
                    time.sleep(0.05)
                if more:
                    out.write(b"y" * BLOCK)
        except BaseException as e:
            box.append(e)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(60)
    assert not writer.is_alive(), "the writer hangs"
    assert not out.thread.is_alive()
    assert [str(e) for e in box] == ["refused"]
