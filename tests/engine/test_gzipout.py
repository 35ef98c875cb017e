"""The gzip file the SQL formats are written to: what a writer takes back is gone, and the
rest reads as one stream, appended members included."""

from __future__ import annotations

import gzip
import random

from flask_backup_manager.engine.gzipout import BLOCK, GzipOut, gunzip


def test_a_rewind_takes_back_everything_since_its_mark_and_compression_goes_on(tmp_path):
    rnd = random.Random(3)
    noise = bytes(rnd.getrandbits(8) for _ in range(BLOCK + 10))  # more than one chunk
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
