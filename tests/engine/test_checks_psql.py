"""The ``postgres`` format's reader against psql itself, and the read-through check built on it."""

from __future__ import annotations

import gzip
import random
import subprocess
from pathlib import Path

import psycopg
import pytest

from flask_backup_manager.engine import ExportError, export
from flask_backup_manager.engine.base import shown
from flask_backup_manager.engine.checks.psql import (
    CopyData,
    CopyEnd,
    MetaCommand,
    PsqlReader,
    ScriptCheck,
    Statement,
)
from flask_backup_manager.engine.verify import PsqlCheck

from ..conftest import checking_pids


def read_all(data: bytes, size: int = 0) -> tuple[list, PsqlReader]:
    """Every item of ``data``, fed whole or in pieces of ``size`` bytes."""
    reader = PsqlReader()
    items = []
    step = size or len(data) or 1
    for i in range(0, len(data), step):
        items += reader.feed(data[i : i + step])
    items += reader.close()
    return items, reader


# -- generated scripts against psql

WORDS = [b"SELECT", b"1", b"x", b"begin", b"end", b"case", b"create", b"function", b"or"]
WORDS += [b"replace", b"procedure", b"atomic", b"e", b"n", b"1e", b"$1", b"a$b", b"::int"]
WORDS += [b":foo", b":'foo'", b':"foo"', b"+", b"-", b"*", b"/", b"=", b",", b".", b"U&"]
TEXT = [b"a", b";", b"\\", b"'", b"''", b'"', b"$", b"$a$", b"$$", b"*/", b"/*", b"--"]
TEXT += [b"\n", b"\r", b"\r\n", b" ", b"(", b")", b"e'", b"\\'"]
SPACE = [b" ", b"\n", b"\r", b"\r\n", b"\t", b"\n\n", b"  \n"]


def chars(rng: random.Random, n: int = 5) -> bytes:
    return b"".join(rng.choice(TEXT) for _ in range(rng.randint(0, n)))


def fragment(rng: random.Random, marks: list[int], kind: int | None = None) -> bytes:
    kind = rng.randrange(16) if kind is None else kind
    if kind == 0:
        return b"'" + chars(rng).replace(b"'", b"''") + b"'"
    if kind == 1:
        body = chars(rng).replace(b"\\", b"\\\\").replace(b"'", b"\\'")
        return b"E'" + body + rng.choice([b"", b"\\", b"\\\\"]) + b"'"
    if kind == 2:
        tag = rng.choice([b"", b"a", b"b_1", b"\xc3\xa9"])
        body = chars(rng).replace(b"$" + tag + b"$", b"")
        return b"$" + tag + b"$" + body + b"$" + tag + b"$"
    if kind == 3:
        return b'"' + chars(rng).replace(b'"', b'""') + b'"'
    if kind == 4:
        return b"--" + chars(rng).replace(b"\n", b"").replace(b"\r", b"") + rng.choice(SPACE[1:4])
    if kind == 5:
        inner = chars(rng).replace(b"/*", b"").replace(b"*/", b"")
        if rng.random() < 0.3:
            inner += b"/* nested " + inner + b" */"
        return b"/*" + inner + b"*/"
    if kind in (6, 7):
        return b";"
    if kind == 8:
        return rng.choice([b"(", b")"])
    if kind == 9:
        marks.append(len(marks))
        return b"\n\\echo M%d\n" % marks[-1]
    if kind == 10:
        return rng.choice(SPACE)
    if kind == 16:
        rows = b"".join(
            rng.choice([b"row\n", b"a b;\n", b"a\\\\b\n", b"\\\\.x\n", b"\\\\.\n", b"-- c\n"])
            for _ in range(rng.randint(0, 3))
        )
        return b"\nCOPY t (a) FROM stdin;\n" + rows + b"\\.\n"
    if kind == 11:
        return rng.choice([b"E'a'\r'b\\'c'", b"E'x'\n\r'y'", b"e'\\\\'", b"1e'"])
    if kind == 12:
        return rng.choice(SPACE)
    return rng.choice(WORDS)


COPY = b"COPY t (a) FROM stdin;"


def script(rng: random.Random) -> bytes:
    """A random script whose COPY statement, if any, comes last and succeeds, and whose only
    psql commands are the ``\\echo`` ones: psql 15.20 loses lines of its input after a COPY
    that fails, after an invalid command, and at times after a COPY (a bug of its own; the reader
    reads on as psql means to, which the unit tests below pin)."""
    while True:
        text = _script(rng)
        items, _ = read_all(text)
        if all(_tame(i) for i in items):
            return text


def _tame(item) -> bool:
    if isinstance(item, Statement) and item.command == b"copy":
        return item.text == COPY
    return not isinstance(item, MetaCommand) or item.text.startswith(b"\\echo M")


def _script(rng: random.Random) -> bytes:
    marks: list[int] = []
    parts = []
    for _ in range(rng.randint(5, 40)):
        parts.append(fragment(rng, marks))
        parts.append(rng.choice([b" ", b"\n", b""]))
    if rng.random() < 0.3:
        parts.append(fragment(rng, marks, 16))
    if rng.random() < 0.1:  # left open at the end
        parts.append(rng.choice([b"'open", b"/* open", b"$q$ open", b'"open', b"E'open\\"]))
    return b"".join(parts)


def expected_output(items: list) -> bytes:
    """What ``psql -q -o /dev/null -v ECHO=queries`` prints: each query it sends, then a
    line per ``\\echo``."""
    out = []
    for item in items:
        if isinstance(item, Statement):
            out.append(item.text + b"\n")
        elif isinstance(item, MetaCommand) and item.text.startswith(b"\\echo "):
            out.append(item.text.split(b" ", 1)[1] + b"\n")
    return b"".join(out)


@pytest.fixture
def scratch_db(make_pg_db) -> str:
    url = make_pg_db()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE t (a text)")
    return url


def test_reader_agrees_with_psql_on_generated_scripts(psql, scratch_db):
    rng = random.Random(20250909)
    checked = 0
    for _ in range(100):
        text = script(rng) + b"\n;\n"
        items, _ = read_all(text)
        pieces, _ = read_all(text, size=7)  # the same items whatever the chunking
        assert _joined(pieces) == _joined(items)
        out = subprocess.run(
            [str(psql), "-X", "-q", "-o", "/dev/null", "-v", "ECHO=queries", "-d", scratch_db],
            input=text,
            capture_output=True,
            check=False,
        ).stdout
        want = expected_output(items)
        assert out == want, _first_difference(out, want)
        checked += sum(isinstance(i, (Statement, MetaCommand)) for i in items)
    assert checked > 300


def _joined(items: list) -> list:
    """Items with adjacent COPY data joined (chunking splits data anywhere)."""
    out: list = []
    for item in items:
        if isinstance(item, CopyData) and out and isinstance(out[-1], CopyData):
            out[-1] = CopyData(out[-1].data + item.data)
        else:
            out.append(item)
    return out


def _first_difference(got: bytes, want: bytes) -> str:
    i = next(
        (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
        min(len(got), len(want)),
    )
    return f"psql printed {got[i - 80 : i + 80]!r}, reader expects {want[i - 80 : i + 80]!r}"


# -- the reader's items


def test_copy_block_is_data_up_to_its_end_line_whatever_the_chunks():
    data = b"COPY t (a) FROM stdin;\n\\\\! x\n\\.x\n;'\n\\.\nSELECT 1;\n"
    for size in (0, 1, 2, 3, 5):
        items, reader = read_all(data, size)
        assert reader.ends_inside is None
        assert items[0] == Statement(b"COPY t (a) FROM stdin;", 1, copy=True, command=b"copy")
        assert b"".join(i.data for i in items if isinstance(i, CopyData)) == b"\\\\! x\n\\.x\n;'\n"
        assert CopyEnd(5) in items
        assert items[-1] == Statement(b"SELECT 1;", 6, command=b"select")


def test_text_after_copy_statement_on_its_line_is_read_after_the_data():
    items, _ = read_all(b"COPY t FROM stdin; SELECT 2;\nrow\n\\.\n")
    assert [type(i) for i in items] == [Statement, CopyData, CopyEnd, Statement]
    assert items[-1].text == b"SELECT 2;"


def test_variables_and_psql_escapes_are_listed():
    (item,), _ = read_all(b"SELECT :x, :'y', :\"z\", a::int, 1\\; SELECT 2;")
    assert item.specials == (b":x", b":'y'", b':"z"', b"\\;")
    assert item.text == b"SELECT :x, :'y', :\"z\", a::int, 1; SELECT 2;"


def test_begin_atomic_body_is_one_statement():
    text = b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;"
    items, _ = read_all(text + b"\nSELECT 3;")
    assert [i.text for i in items] == [text, b"SELECT 3;"]


@pytest.mark.parametrize(
    "text, inside",
    [
        (b"SELECT 'abc", "a quoted string"),
        (b"SELECT E'abc\\'", "an E'' string"),
        (b'SELECT "abc', "a quoted identifier"),
        (b"SELECT /* /* */", "a /* comment"),
        (b"SELECT $a$ $b$", "a dollar-quoted string"),
        (b"COPY t FROM stdin;\nrow\n", "a COPY block"),
        (b"SELECT (1;", "a statement without its ';'"),
        (b"SELECT 1", "a statement without its ';'"),
    ],
)
def test_what_the_text_ends_inside(text, inside):
    _, reader = read_all(text)
    assert reader.ends_inside.startswith(inside)


# -- the check


def check(data: bytes) -> None:
    c = ScriptCheck()
    for i in range(0, len(data), 3):
        c.feed(data[i : i + 3])
    c.close()


KEY = b"AbC123"
GOOD = (
    b"\\restrict " + KEY + b"\n\n-- a comment \\! not a command\nSET x = E'a\\\\';\n"
    b"COPY public.t (a) FROM stdin;\n\\\\! id\n\\.\n\n\\unrestrict " + KEY + b"\n"
)


def test_check_passes_a_file_with_only_the_writers_commands():
    check(GOOD)
    check(GOOD.replace(b"\\restrict " + KEY + b"\n", b"").replace(b"\\unrestrict " + KEY, b""))


def test_check_refuses_the_cluster_on_injection():
    text = GOOD.replace(
        b"SET x", b"ALTER TABLE public.t CLUSTER ON i;\n\\! id > /tmp/pwned\n--\nSET x"
    )
    with pytest.raises(ExportError, match=r"line 5 would run the psql command \\! id > /tmp/pwn"):
        check(text)


@pytest.mark.parametrize(
    "bad",
    [
        b"SELECT 1; \\! id\n",  # mid-line
        b"SELECT 1 -- c\r\\! id\n",  # a CR ends the comment
        b"SELECT E'a\\'b' \\! id\n",
        b"SELECT $a$ $b$ $a$ \\! id\n",
        b"SELECT /* /* */ */ \\! id\n",
        b"\\restrict " + KEY + b"\n",  # a second one
        b"\\unrestrict OTHER\n",
        b"\\unrestrict " + KEY + b" \\! id\n",
        b"SELECT 1 \\unrestrict " + KEY + b"\n",
        b"SELECT :LAST_ERROR_MESSAGE;\n",
        b"SELECT :'DBNAME';\n",
        b"SELECT :{?x};\n",
        b"SELECT 1\\; SELECT 2;\n",
        b"COPY t TO stdout;\n",
        b"SELECT 'open\n",
        b"SELECT $$ open\n",
    ],
)
def test_check_refuses_any_other_command_or_an_open_end(bad):
    with pytest.raises(ExportError):
        check(GOOD.replace(b"\n\n-- a comment", b"\n" + bad + b"-- a comment"))


@pytest.mark.parametrize("tail", [b"SELECT 1;\n", b"-- c\n", b"\\echo x\n", b"x"])
def test_check_refuses_text_after_unrestrict(tail):
    with pytest.raises(ExportError, match="after its \\\\unrestrict"):
        check(GOOD + tail)


@pytest.mark.parametrize(
    "text",
    [
        b"SELECT 'a\\b';\n",
        b"SELECT n'x\\';\n",
        b"SELECT 'first line\nsecond \\ line';\n",
        b"COMMENT ON TABLE t IS 'x\\'';\n\\! id\n';\n",
    ],
)
def test_check_refuses_a_plain_string_holding_a_backslash(text):
    """psql reads it otherwise once a function run by the restore turns
    ``standard_conforming_strings`` off: no writer may leave one."""
    with pytest.raises(ExportError, match=r"line \d+ has a plain '...' string holding a backsl"):
        check(text)


def test_check_passes_strings_that_read_the_same_either_way():
    check(b"SELECT E'a\\\\b', 'it''s', B'01', X'ff', U&'d\\0061t\\+000061', \"a\\b\";\n")
    check(b"SELECT $q$ 'a\\' $q$, 'x' -- 'a\\'\n;\n")


def test_check_allows_slices_and_undefined_variables():
    check(b"CREATE VIEW v AS SELECT (a)[1:n], b::text FROM t;\n")


def test_finding_shows_at_most_40_characters_with_controls_escaped():
    assert shown(b"\\! \x1b[31m" + b"x" * 100) == "\\! \\x1b[31m" + "x" * 32 + "..."


# -- every postgres export is checked


def test_export_runs_the_check_on_postgres_files(tmp_path, make_pg_db, monkeypatch, as_written):
    url = make_pg_db()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE t (a text); INSERT INTO t VALUES (E'\\\\! id'), (E'x\\n\\\\.')")
    out = tmp_path / "d.sql.gz"
    export(url, "postgres", out)
    check(gzip.decompress(out.read_bytes()))
    counted = []  # by the process checking the file as it is written
    close = PsqlCheck.close
    monkeypatch.setattr(
        PsqlCheck,
        "close",
        lambda self, cancel: counted.append((close(self, cancel), self.rows)) or counted[-1][0],
    )
    export(url, "postgres", tmp_path / "e.sql.gz")
    assert counted == [(True, {"t": 2})]


@pytest.mark.parametrize("how", ["as written", "read back"])
def test_export_refuses_a_file_the_check_refuses(
    tmp_path, make_pg_db, monkeypatch, as_written, how
):
    """The check refuses the file whether a process reads it as it is written (it stops the
    writing: the table is many times what the pipe holds) or, with no Python to start one,
    it is read back after."""
    from flask_backup_manager.engine import verify
    from flask_backup_manager.engine.writers.postgres import sql

    url = make_pg_db()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(
            "CREATE TABLE big AS SELECT i, md5(i::text) || md5((-i)::text) AS t"
            " FROM generate_series(1, 300000) i"
        )
    monkeypatch.setattr(sql, "SETTINGS", sql.SETTINGS + "\\! id\n")
    if how == "read back":
        monkeypatch.setattr(verify, "python_here", lambda: False)
    seen, phases = [], []

    def progress(p) -> None:
        seen.extend(checking_pids())
        phases.append(p.phase)

    with pytest.raises(ExportError, match="would run the psql command"):
        export(url, "postgres", tmp_path / "d.sql.gz", progress=progress)
    assert bool(seen) is (how == "as written") and checking_pids() == []
    assert ("verifying the file" in phases) is (how == "read back")
    assert not list(Path(tmp_path).iterdir())


def test_check_refuses_a_file_that_ends_inside_a_statement():
    with pytest.raises(ExportError, match="ends inside a statement"):
        check(b"SELECT 1;\nSELECT 2\n")


@pytest.mark.parametrize(
    "text, line",
    [
        (b"SELECT 'x\xc4\x81';\n", 2),  # in a string
        (b'SELECT 1 AS "\xc4\x81";\n', 2),  # in an identifier
        (b"SELECT $$ \xe6\x97\xa5 $$;\n", 2),  # in a dollar quote
        (b"SELECT 1; -- \xf0\x9f\x98\x80\n", 2),  # in a comment
        (b"SELECT 1;\n-- ok\n/* \xc3\xa9 */ SELECT 2;\n", 4),
        (b"COPY public.t (a) FROM stdin; SELECT '\xc3\xa9';\nx\n\\.\n", 2),  # the COPY line
        (b'COPY public.t ("\xc3\xa9") FROM stdin;\nx\n\\.\n', 2),
        (b"COPY public.t (a) FROM stdin;\n\xc3\xa9\n\\.\nSELECT '\xc3\xa9';\n", 5),  # after
    ],
)
def test_check_refuses_a_non_ascii_byte_outside_copy_data(text, line):
    """psql lexes by the client encoding, which a function run by the restore may switch to
    SJIS, BIG5, GBK, UHC or GB18030, where a UTF-8 character's last byte takes the next byte
    (a quote, a backslash, an LF) with it: no writer may leave such a byte outside COPY data."""
    with pytest.raises(ExportError, match=rf"^[^\n]*: line {line} holds a non-ASCII byte"):
        check(GOOD.replace(b"\n\n-- a comment", b"\n" + text + b"-- a comment"))


def test_check_passes_non_ascii_copy_data():
    """psql sends COPY data lines as they are: they stay UTF-8."""
    check(GOOD.replace(b"\\\\! id\n", b"\xc3\xa9\t\xf0\x9f\x98\x80\n\\\\u00e9 \xe6\x97\xa5\n"))
