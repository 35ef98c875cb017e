"""The sqlite3 shell's reading of a script (engine/checks/sqlite_shell.py), checked against the
shell.

The reader must agree with ``sqlite3`` 3.40 itself on where every statement ends and which lines
are dot-commands: ``sqlite3 -echo`` prints each unit of input as it takes it (a statement group
it hands to SQLite, a dot-command line, a line it swallows), which the reader predicts exactly.
The generated statements produce no output of their own (INSERT, UPDATE, CREATE TRIGGER heads),
the only dot-commands are ``.print MARK<n>``, and the shell runs with ``-safe``.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess

import pytest

from flask_backup_manager.engine import ExportError
from flask_backup_manager.engine.checks.sqlite_shell import (
    Command,
    Scratch,
    ScriptCheck,
    ShellReader,
    Statement,
    Terminator,
    normalise,
    one_statement,
    problem,
    schema_line,
)

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"

#: pieces of hostile text: quotes, doubled quotes, brackets, comments, line breaks, terminators
ATOMS = [
    "'", "''", '"', "`", "[", "]", "--", "/*", "*/", "*", "/", "-", "\n", "\r\n", "\r", ";",
    " ", "\t", "\v", "\f", "x", "go", "GO", ".", "(", ")", ",", "1", "'a'", "X'00'", "$",
    "BEGIN", "END", "CREATE", "TRIGGER", "TEMP", "TEMPORARY", "EXPLAIN x", "end;",
    "\ngo\n", "\nGo\r\n", "\n/\n", "\n  go  \n", "\ngo -- c\n", "\n/ /* c */\n", "\ngo /*\n",
    "\n.print MARK\n", "\n#c\n", "\n;\n", "\n \n", "\n\n", "\nCREATE TRIGGER t BEGIN\n",
    "\n.print MARK\n", "EXPLAIN\n", "\ngox\n", "\n\tgo\n", "\n//\n",
]  # fmt: skip
HEADS = [
    "INSERT INTO log VALUES({i}, ",
    "UPDATE log SET a={i} ",
    "CREATE TRIGGER tr{i} AFTER INSERT ON log BEGIN ",
    "CREATE TEMP TRIGGER tt{i} AFTER INSERT ON log BEGIN UPDATE log SET a=1; ",
    "",
]
ENDS = [");\n", ";\n", "\n", " END;\n", "; END;\n", "", ";", ";  \r\n", "; -- c\n", ";\v\n"]


def soup(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        atom = rng.choice(ATOMS)
        out.append(atom.replace("MARK", f"MARK{rng.randrange(1000)}"))
    return "".join(out)


def rows(rng: random.Random, i: int) -> str:
    """A multi-row INSERT like the writer's (the reader's fast path), with hostile values and,
    now and then, a line that stops the fast path."""
    lines = []
    for n in range(rng.randrange(1, 30)):
        values = [str(n)]
        for _ in range(rng.randrange(1, 4)):
            text = soup(rng, rng.randrange(0, 6)).replace("'", "''")
            values.append(rng.choice([f"'{text}'", "NULL", "-1.5e-3", "X'0a'", "2/3"]))
        lines.append("(" + ",".join(values) + ")")
        if rng.random() < 0.1:
            lines[-1] += rng.choice(["\ngo", "\n/", "\n  ", " -- c", "\n.print MARK1"])
    head = f"INSERT INTO log VALUES{rng.choice(['', ' '])}\n"
    return head + ",\n".join(lines) + rng.choice([";\n", ";\r\n", "\n;\n", ";", ";x\n"])


def generate(seed: int) -> bytes:
    rng = random.Random(seed)
    parts = []
    for i in range(rng.randrange(1, 12)):
        if rng.random() < 0.3:
            parts.append(rows(rng, i))
        else:
            head = rng.choice(HEADS).format(i=i)
            parts.append(head + soup(rng, rng.randrange(0, 15)) + rng.choice(ENDS))
    return "".join(parts).encode()


def read(data: bytes, chunk: int) -> tuple[list, list[bytes], ShellReader]:
    echo: list[bytes] = []
    reader = ShellReader(echo=echo)
    items = []
    for i in range(0, len(data), chunk):
        items += reader.feed(data[i : i + chunk])
    items += reader.close()
    return items, echo, reader


def shell_run(data: bytes, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SQLITE3, "-echo", "-safe", "-cmd", "CREATE TABLE log(a, b)", ":memory:"],
        input=data,
        capture_output=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )


def predicted(echo: list[bytes]) -> bytes:
    """What ``sqlite3 -echo`` prints for these units: each, then a .print's own output."""
    out = []
    for unit in echo:
        out.append(unit + b"\n")
        if unit.startswith(b".print "):
            out.append(unit[len(b".print ") :] + b"\n")
    return b"".join(out)


def test_reader_agrees_with_the_sqlite3_shell_on_generated_scripts(tmp_path):
    for seed in range(250):
        data = generate(seed)
        items, echo, _ = read(data, random.Random(seed).randrange(1, 64))
        done = shell_run(data, tmp_path)
        assert predicted(echo) == done.stdout, (seed, data)
        # every other dot-command the reader sees is one the shell does not know (the only
        # ones generated), and nothing else was taken as such: a line of SQL is not. (Quotes
        # in a command's name are the shell's to parse: a name like 'a' is .auth's prefix.)
        unknown = [
            i
            for i in items
            if isinstance(i, Command)
            and i.text[1:].strip()
            and not i.text.startswith(b".print ")
            and not any(q in i.text for q in b"'\"")
        ]
        quoted = sum(isinstance(i, Command) and any(q in i.text for q in b"'\"") for i in items)
        errors = done.stderr.count(b"Error: unknown command")
        assert len(unknown) <= errors <= len(unknown) + quoted, (seed, data)
    assert list(tmp_path.iterdir()) == []


def test_reader_gives_the_same_items_whatever_the_chunks(tmp_path):
    for seed in range(250, 400):
        data = generate(seed)
        whole = read(data, len(data) + 1)[0]
        for chunk in (1, 2, 7, 100):
            assert read(data, chunk)[0] == whole, (seed, chunk)


def test_each_complete_statement_is_complete_to_sqlite():
    for seed in range(400, 500):
        for item in read(generate(seed), 4096)[0]:
            if isinstance(item, Statement) and item.complete:
                assert sqlite3.complete_statement(item.sql.decode("utf-8", "replace")), item


def test_reader_items_name_lines_and_kinds():
    data = (
        b"-- a comment\n"
        b"SELECT 1;\n"
        b".print hi\n"
        b"# a comment line\n"
        b"SELECT 'a\n"
        b".not a command\n"
        b"go';\n"
        b"SELECT 2\n"
        b"go\n"
        b"CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1\n"
        b"go\n"
        b";END;\r\n"
        b"SELECT 3; SELECT 4;\n"
        b"SELECT 5"
    )
    reader = ShellReader()
    items = reader.feed(data) + reader.close()
    assert items == [
        Statement(b"SELECT 1;", 2),
        Command(b".print hi", 3),
        Statement(b"SELECT 'a\n.not a command\ngo';", 5),
        Terminator(b"go", 9),
        Statement(b"SELECT 2\n;", 8),
        Statement(b"CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1\ngo\n;END;", 10),
        Statement(b"SELECT 3;", 13),
        Statement(b"SELECT 4;", 13),
        Statement(b"SELECT 5", 14, complete=False),
    ]
    assert reader.unfinished == "a statement"


def test_reader_refuses_a_nul_byte():
    with pytest.raises(ValueError, match="line 2"):
        ShellReader().feed(b"SELECT 1;\nSELECT '\0';\n")


def test_normalise_drops_comments_and_line_breaks_outside_literals():
    sql = "CREATE\tVIEW v -- c\r\nAS SELECT/**/'a\n-- b' AS \"x\ny\", [p\nq]\n\nFROM t /* open"
    assert normalise(sql) == "CREATE VIEW v AS SELECT 'a\n-- b' AS \"x\ny\", [p\nq] FROM t"
    assert normalise("a/*x*/b--c") == "a b"
    assert normalise("'it''s'  x") == "'it''s' x"


@pytest.mark.parametrize(
    ("sql", "kind", "ok"),
    [
        ("CREATE TABLE t(a)", "table", True),
        ("CREATE VIRTUAL TABLE f USING fts5(a)", "table", True),
        ("CREATE UNIQUE INDEX i ON t(a)", "index", True),
        ("CREATE VIEW v AS SELECT 1", "view", True),
        ("CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END", "trigger", True),
        ("CREATE TABLE t(a); ATTACH 'x' AS y", "table", False),
        ("CREATE TABLE t(a);", "table", False),
        ("CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT 1; END; SELECT 2", "trigger", False),
        ("CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT 1;", "trigger", False),
        ("CREATE VIEW v AS SELECT 1", "table", False),
        ("CREATE TABLE t(a DEFAULT 'x", "table", False),
        ('CREATE TABLE "t\r\n"(a)', "table", True),  # one statement; see schema_line()
        ("CREATE VIEW v AS SELECT\ngo\n.shell 'touch x'\nFROM t AS go", "view", True),
        ("CREATE VIEW v AS SELECT $a('x) ; ATTACH 'f' AS g; --'", "view", False),
        ("CREATE VIEW v AS SELECT a$b, \"$\", '?' FROM t", "view", True),
        ("CREATE TABLE t(a CHECK(a <> :x))", "table", False),
    ],
)
def test_one_statement_of_its_kind(sql, kind, ok):
    assert one_statement(sql, kind) is ok, problem(sql, kind)


def test_scratch_is_sqlites_word_and_bounded():
    scratch = Scratch()
    try:
        assert scratch.problem("table", "t", "CREATE TABLE t(a)") is None
        assert scratch.problem("index", "i", "CREATE INDEX i ON t(a)") is None
        assert scratch.problem("view", "v", "CREATE VIEW w AS SELECT 1") is not None
        assert scratch.problem("table", "u", "CREATE TABLE u(a b c d e (") is not None
        assert scratch.problem("table", "n", "CREATE TABLE n(a) WITH (x)") is not None
        forever = "CREATE TABLE f AS WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n FROM c)"
        assert scratch.problem("table", "f", forever + " SELECT n FROM c") == (
            "SQLite does not finish running it"
        )
    finally:
        scratch.close()


def test_schema_line_is_one_line_and_refuses_a_cr_naming_the_object():
    assert (
        schema_line("view", "v", "CREATE VIEW v AS\nSELECT 1 -- c") == "CREATE VIEW v AS SELECT 1;"
    )
    for text in ('CREATE TABLE "a\r\nb"(x)', "CREATE TABLE t(x DEFAULT 'a\rb')"):
        with pytest.raises(ExportError, match=r"^the table a\\r\\nb in sqlite_master holds a CR"):
            schema_line("table", "a\r\nb", text)


def test_script_check_passes_a_clean_script_and_names_the_first_finding():
    check = ScriptCheck()
    check.feed(b"-- header\nBEGIN;\nINSERT INTO t VALUES\n(1,'a\n.x'),\n(2,'b');\n")
    check.feed(b"COMMIT;\n")
    check.close()
    for text, line, what in (
        (b"SELECT 1;\n.shell touch \x1b[31mx\n", 2, r"a command: \.shell touch \\x1b\[31mx"),
        (b"SELECT 1\ngo\n", 2, "the end of a statement: go"),
        (b"SELECT 1;\n/\n", 2, "the end of a statement: /"),
        (b"SELECT 1;\n" + b"." + b"x" * 100 + b"\n", 2, r"a command: \.x{39}\.\.\.$"),
    ):
        with pytest.raises(ExportError, match=f"line {line} as {what}"):
            check = ScriptCheck()
            check.feed(text)
            check.close()
    for text, what in (
        (b"SELECT 1", "a statement"),
        (b"SELECT 1; /* x\n", "a comment"),
        (b"SELECT 'x;\n", "a quoted string"),
    ):
        check = ScriptCheck()
        check.feed(text)
        with pytest.raises(ExportError, match=f"ends inside {what}"):
            check.close()
