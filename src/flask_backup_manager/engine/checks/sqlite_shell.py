"""SQL text for SQLite as SQLite and the ``sqlite3`` shell read it.

The ``sqlite3`` format is a script for the ``sqlite3`` shell, which does not hand its input to
SQLite whole: it reads it line by line, and a line that starts with ``.`` between statements
is one of its own commands (``.shell`` runs a program), a line holding only ``go`` or ``/``
ends the statement under way. Schema text copied from ``sqlite_master`` could thus end a
statement early and slip in a command. So:

- :func:`normalise` re-tokenises schema text (SQLite's tokenizer rules, ``tokenize.c``):
  comments dropped, whitespace outside literals and quoted identifiers made one space, so an
  entry is one line but for newlines inside its literals and quoted names;
- :func:`problem` / :func:`one_statement` say whether it is exactly one statement of the kind
  ``sqlite_master.type`` says, by the shell's reading and by SQLite itself (:class:`Scratch`);
- :class:`ShellReader` reads a script as the shell 3.40 does (``process_input``,
  ``quickscan``, ``line_is_command_terminator`` in ``shell.c.in``; ``sqlite3_complete`` in
  ``complete.c`` for where a statement ends, triggers included). It yields the statements and
  the dot-commands the shell would run; the restore tool loads files with it;
- :class:`ScriptCheck` fails a backup whose file the shell would read other than as the
  writer meant (a command, a ``go`` line, text left open at the end).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from ..base import shown
from ..model import ExportError
from .sqlite_tokens import all_tokens

# -- tokens -------------------------------------------------------------------------------


def _runs(text: str) -> Iterator[str]:
    """The runs of characters outside literals, quoted names, comments and whitespace (a
    ``/`` or a ``-`` a run of its own; a blob's ``X`` ends the run it is in): the words and
    the rest, as a statement's first keywords are found."""
    run: list[str] = []
    for kind, token in all_tokens(text):
        if kind == "string" and token[0] in "xX":
            run.append(token[0])
        elif kind == "other" and token in "/-":
            if run:
                yield "".join(run)
            run = [token]
        elif kind not in ("space", "comment", "string", "quoted"):
            run.append(token)
            continue
        if run:
            yield "".join(run)
        run = []
    if run:
        yield "".join(run)


def normalise(sql: str) -> str:
    """``sql`` with comments dropped and every run of whitespace and comments outside
    literals and quoted identifiers made one space (none at the ends): one line, but for the
    newlines inside literals and quoted names, which the shell reads as part of them. A
    character SQLite does not take (a vertical tab, a control character) stays: SQLite
    refuses the text then, and :func:`problem` says so."""
    out: list[str] = []
    space = False
    for kind, token in all_tokens(sql):
        if kind in ("comment", "space"):
            space = True
            continue
        if space and out:
            out.append(" ")
        space = False
        out.append(token)
    return "".join(out)


#: the keywords a ``sqlite_master`` entry of each type starts with
_KINDS = {
    "table": (("CREATE", "TABLE"), ("CREATE", "VIRTUAL", "TABLE")),
    "index": (("CREATE", "INDEX"), ("CREATE", "UNIQUE", "INDEX")),
    "view": (("CREATE", "VIEW"),),
    "trigger": (("CREATE", "TRIGGER"),),
}


def problem(sql: str, kind: str) -> str | None:
    """Why ``sql`` (a ``sqlite_master`` entry, normalised or not) is not exactly one
    statement of the ``kind`` its ``type`` column says, as the shell reads it from the dump
    (one line ending in ``;``), or None when it is."""
    text = normalise(sql)
    words = [run.upper() for run in _runs(text[:200])]
    starts = _KINDS.get(kind)
    if starts is None:
        return f"unknown object type {shown(kind)}"
    if not any(tuple(words[: len(s)]) == s for s in starts):
        return f"it does not start with {' or '.join(' '.join(s) for s in starts)}"
    if any(_PARAMETER.search(run) for run in _runs(text)):
        # SQLite reads $name(...) (and @, :, #) as one token whatever it holds, quotes
        # included, where the shell sees a string begin: they would disagree on where it ends
        return "it holds a parameter ($, @, :, # or ?), which SQLite and the shell read apart"
    reader = ShellReader()
    try:
        items = reader.feed((text + ";\n").encode("utf-8", "surrogateescape"))
        items += reader.close()
    except ScriptError as e:
        return str(e)
    if any(not isinstance(i, Statement) for i in items):
        return "the sqlite3 shell would read part of it as a command"
    if len(items) != 1:
        return "it holds more than one statement"
    if not items[0].complete:
        return "it does not end"
    # the shell drops a CR before an LF (see schema_line() for what the format does about it)
    if items[0].sql != (text + ";").replace("\r\n", "\n").encode("utf-8", "surrogateescape"):
        return "it does not end where the text ends"
    return None


#: where SQLite's tokenizer starts a parameter (no schema text may hold one)
_PARAMETER = re.compile("(?<![0-9A-Za-z_$\x80-\U0010ffff])[$@:#?]")


def one_statement(sql: str, kind: str) -> bool:
    """Whether ``sql`` is exactly one complete statement of ``kind`` (see :func:`problem`)."""
    return problem(sql, kind) is None


def schema_line(kind: str, name: str, sql: str) -> str:
    """A ``sqlite_master`` entry (one statement of its type: see :func:`problem`) as the
    ``sqlite3`` format writes it: normalised, ending in ``;``. Raises ExportError, naming the
    object, when a quoted name or literal of it holds a CR: the shell drops one before an LF,
    Python's text mode reads any as an LF, so the restores would differ from the source and
    from each other (a CR in a value is written as ``char(13)``; schema text has no such
    way)."""
    text = normalise(sql)
    if "\r" in text:
        raise ExportError(
            f"the {shown(kind, 20)} {shown(name)} in sqlite_master holds a CR in a quoted name "
            "or literal, which the sqlite3 shell would not restore as it is: refusing to write "
            "it to the sqlite3 format"
        )
    return text + ";"


class Scratch:
    """SQLite's own word on schema entries: each, normalised, is run in turn on a scratch
    in-memory database (Python's ``sqlite3`` refuses text holding more than one statement
    before it runs any), and must create the object ``sqlite_master`` names. An entry that
    SQLite cannot run there for want of something (a module, a function, a table an earlier
    entry failed to make) is judged by :func:`problem` alone. Running one is bounded (a
    ``CREATE TABLE ... AS`` with a query that never ends, written with ``writable_schema``,
    would hold the export forever)."""

    #: SQLite VM steps an entry may take, in thousands (creating a table takes a few hundred)
    MAX_STEPS = 1000

    def __init__(self) -> None:
        self.con = sqlite3.connect(":memory:", isolation_level=None)
        self.steps = 0
        self.con.set_progress_handler(self._step, 1000)

    def _step(self) -> int:
        self.steps += 1
        return self.steps > self.MAX_STEPS

    def problem(self, kind: str, name: str, sql: str) -> str | None:
        why = problem(sql, kind)
        if why is not None:
            return why
        had = self._has(kind, name)
        self.steps = 0
        try:
            self.con.execute(normalise(sql))
        except (sqlite3.ProgrammingError, sqlite3.Warning):
            return "SQLite reads more than one statement in it"
        except sqlite3.DatabaseError as e:
            text = str(e)
            if "interrupted" in text:
                return "SQLite does not finish running it"
            if "syntax error" in text or "incomplete input" in text or "unrecognized" in text:
                return "SQLite cannot parse it"
            return None  # wants something the scratch database lacks: judged by problem()
        if had or not self._has(kind, name):
            return "it does not create that object"
        return None

    def _has(self, kind: str, name: str) -> bool:
        found = "SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?"
        return self.con.execute(found, (kind, name)).fetchone() is not None

    def close(self) -> None:
        self.con.close()


# -- the shell's reading --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL the shell would hand to SQLite: one statement (by ``sqlite3_complete``'s rules),
    CR before LF dropped as the shell drops it, starting at input line ``line``. Not
    ``complete`` when the input ended first (the shell runs it anyway)."""

    sql: bytes
    line: int
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Command:
    """A line the shell would run as one of its dot-commands (``text`` without the LF)."""

    text: bytes
    line: int


@dataclass(frozen=True, slots=True)
class Terminator:
    """A ``go`` or ``/`` line the shell took as the end of a statement (it runs what is
    pending as if the line were ``;``)."""

    text: bytes
    line: int


Item = Statement | Command | Terminator


class ScriptError(ValueError):
    """Input the shell reads in a way this reader does not follow (a NUL byte)."""


#: SQLite's keywords that steer ``sqlite3_complete`` (its tokens tkEXPLAIN .. tkEND)
_KEYWORDS = {b"explain": 3, b"create": 4, b"temp": 5, b"temporary": 5, b"trigger": 6, b"end": 7}
_SEMI, _WS, _OTHER = 0, 1, 2
#: complete.c's state machine: _TRANS[state][token]; complete when it ends in state 1
_TRANS = (
    (1, 0, 2, 3, 4, 2, 2, 2),  # 0 INVALID
    (1, 1, 2, 3, 4, 2, 2, 2),  # 1 START
    (1, 2, 2, 2, 2, 2, 2, 2),  # 2 NORMAL
    (1, 3, 3, 2, 4, 2, 2, 2),  # 3 EXPLAIN
    (1, 4, 2, 2, 2, 4, 5, 2),  # 4 CREATE
    (6, 5, 5, 5, 5, 5, 5, 5),  # 5 TRIGGER
    (6, 6, 5, 5, 5, 5, 5, 7),  # 6 SEMI
    (1, 7, 5, 5, 5, 5, 5, 5),  # 7 END
)

#: one token of a line in plain state (outside quotes and block comments)
_PLAIN = re.compile(
    rb"""
    (?P<ws>[ \t\f\r]++)
    |(?P<vt>\v)
    |(?P<word>[0-9A-Za-z_$\x80-\xff]++)
    |(?P<line>--)
    |(?P<block>/\*)
    |(?P<quote>['"`\[])
    |(?P<semi>;)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
#: the rest of a quoted token, by its closing character (a doubled quote stays inside)
_CLOSE = {
    b"'"[0]: re.compile(rb"(?:[^']++|'')*+'"),
    b'"'[0]: re.compile(rb'(?:[^"]++|"")*+"'),
    b"`"[0]: re.compile(rb"(?:[^`]++|``)*+`"),
    b"["[0]: re.compile(rb"[^\]]*+\]"),
    b"*"[0]: re.compile(rb".*?\*/", re.DOTALL),
}
_SPACE = b" \t\n\v\f\r"  # C's isspace(), what the shell strips and skips
#: line_is_command_terminator(): "go" or "/" alone, but for whitespace and comments
_TERMINATOR = re.compile(
    rb"[ \t\n\v\f\r]*+(?:[gG][oO]|/)(?:[ \t\n\v\f\r]++|/\*.*?\*/|--.*+)*+", re.DOTALL
)

#: A whole statement in one match, for the common case: it starts a line with a word other
#: than CREATE or EXPLAIN (so ``sqlite3_complete`` is in its NORMAL state until a ``;``), and
#: holds no ``;``, no comment, and no line break outside quotes before a line that could be a
#: ``go`` or ``/`` line. None of its lines ends a statement or is a command then.
_FAST_HEAD = re.compile(
    rb"(?=[A-Za-z_])(?![gG][oO])(?!(?:create|explain)(?![0-9A-Za-z_$\x80-\xff]))",
    re.IGNORECASE,
)
_FAST_BODY = re.compile(
    rb"""(?:[^'"`\[\-/;\n\r]*+  # a run of plain bytes, then one of these:
        (?:'[^']*+'|"[^"]*+"|`[^`]*+`|\[[^\]]*+\]
        |\r?\n(?=[ \t\v\f]*+[^ \t\v\f\r\n/gG])
        |-(?!-)|/(?!\*)|\r(?!\n))
    )*+[^'"`\[\-/;\n\r]*+""",
    re.VERBOSE,
)
#: what ends such a statement: ``;`` and nothing but spaces to the end of the line
_FAST_TAIL = re.compile(rb";[ \t\f\r]*+\n")


class ShellReader:
    """Reads a script as the ``sqlite3`` shell 3.40 reads its standard input.

    ``feed(bytes)`` and, at the end, ``close()`` return the items the input has completed, in
    order: :class:`Statement` (SQL the shell would run), :class:`Command` (a dot-command line
    it would run), :class:`Terminator` (a ``go`` or ``/`` line it took for a ``;``). ``#``
    lines between statements are comments and give nothing. After ``close()``,
    ``unfinished`` names what the input left open (``"a statement"``, ``"a comment"``,
    ``"a quoted string"``), or is None. Raises :class:`ScriptError` on a NUL byte.

    Lines are taken one at a time as the shell takes them, except that a statement which
    plainly cannot stop early (:data:`_FAST_BODY`) is taken in one regex match: the
    ``sqlite3`` format is mostly such multi-row ``INSERT`` statements.
    """

    def __init__(self, echo: list[bytes] | None = None) -> None:
        #: if given, receives each unit of input as ``sqlite3 -echo`` prints it (for tests)
        self.echo = echo
        self.lineno = 0
        self.unfinished: str | None = None
        self._buf = b""
        self._fast: tuple[int, int] | None = None  # (start, scanned up to) of a fast statement
        self._items: list[Item] = []
        self._reset()

    def _reset(self) -> None:
        """Nothing pending: the shell's ``nSql == 0`` and ``qss == QSS_Start``."""
        self._parts: list[bytes] = []  # the pending text (the shell's zSql)
        self._size = 0
        self._start = 0  # the line it starts on
        self._wait: int | None = None  # inside a quote or comment: the byte that ends it
        self._dark = False  # QSS_HasDark
        self._semi = False  # QSS_EndingSemi
        self._state = 0  # sqlite3_complete's state over the pending text
        self._in_line_comment = False  # the pending text ends inside a -- comment
        self._pieces: list[tuple[int, int, int]] = []  # (start, end, line) of statements
        self._piece = 0  # where the statement under way starts in the pending text
        self._piece_line = 0  # the line of its first token (0: none yet)

    # -- input ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Item]:
        if b"\0" in data:
            line = self.lineno + self._buf.count(b"\n") + data[: data.index(b"\0")].count(b"\n")
            raise ScriptError(f"line {line + 1} holds a NUL byte, which the shell cuts lines at")
        buf = self._buf + data if self._buf else data
        end = buf.rfind(b"\n") + 1
        pos = self._lines(buf, end) if end else 0
        self._buf = buf[pos:]
        if self._fast is not None:
            self._fast = (self._fast[0] - pos, self._fast[1] - pos)
        return self._take()

    def close(self) -> list[Item]:
        buf, self._buf = self._buf, b""
        if buf:  # lines left waiting for more, and a last line without its LF
            self._fast = None
            end = buf.rfind(b"\n") + 1
            if end:
                self._lines(buf, end, final=True)
            if end < len(buf):
                self._line(buf[end:])  # its CR stays: the shell drops only a CR before an LF
        if self._size or self._parts:
            self.unfinished = (
                "a comment"
                if self._wait == b"*"[0]
                else "a quoted string"
                if self._wait is not None
                else "a statement"
            )
            self._emit(complete=False)
        return self._take()

    def _take(self) -> list[Item]:
        items, self._items = self._items, []
        return items

    def _lines(self, buf: bytes, end: int, final: bool = False) -> int:
        """Read the whole lines of ``buf[:end]`` (``end`` just past an LF); return where the
        unread rest starts (at a statement taken whole that goes on past ``end``)."""
        pos = 0
        while pos < end:
            if not self._parts:
                start, at = self._fast or (pos, pos)
                if self._fast or _FAST_HEAD.match(buf, pos):
                    stop = _FAST_BODY.match(buf, at, end).end()
                    tail = _FAST_TAIL.match(buf, stop, end)
                    if tail:
                        self.lineno += 1
                        sql = buf[start : stop + 1]
                        self._items.append(Statement(sql.replace(b"\r\n", b"\n"), self.lineno))
                        self.lineno += buf.count(b"\n", start, stop)
                        self._fast = None
                        pos = tail.end()
                        if self.echo is not None:
                            self.echo.append(_joined(buf[start : pos - 1]))
                        continue
                    if not final and _open_at_end(buf, stop, end):
                        self._fast = (start, stop)
                        return start
                    self._fast = None  # taken line by line
            nl = buf.index(b"\n", pos, end)
            line = buf[pos : nl - 1] if nl > pos and buf[nl - 1] == 13 else buf[pos:nl]
            self._line(line)
            pos = nl + 1
        return pos

    # -- one line, as process_input() takes it --------------------------------------------

    def _line(self, line: bytes) -> None:
        self.lineno += 1
        if self._wait is None and _TERMINATOR.fullmatch(line) and self._complete_with_semi():
            self._items.append(Terminator(line, self.lineno))
            line = b";"
        if not self._parts:
            whole, line = line, line.lstrip(_SPACE)
            self._scan(line)
            if self._wait is None and not self._dark:  # only whitespace (and ;) swallowed
                self._echo(whole)
                self._reset()
                return
            if whole[:1] in (b".", b"#"):  # only in the first column
                self._echo(whole)
                if whole[:1] == b".":
                    self._items.append(Command(whole, self.lineno))
                self._reset()
                return
            self._start = self.lineno
            self._parts.append(line)
            self._size = len(line)
        else:
            self._in_line_comment = False  # the LF joining the lines ends it
            self._parts.append(b"\n")
            self._size += 1
            self._scan(line)
            self._parts.append(line)
            self._size += len(line)
        if self._wait is None and self._semi and self._state == 1:
            self._emit(complete=True)
        elif self._wait is None and not self._dark:
            self._echo(b"".join(self._parts))
            self._reset()

    def _echo(self, text: bytes) -> None:
        if self.echo is not None:
            self.echo.append(text)

    def _complete_with_semi(self) -> bool:
        """line_is_complete(zSql + ";"): whether a ``;`` appended would end the pending text."""
        if not self._parts:
            return True
        if self._in_line_comment:  # the ; lands in the comment
            return self._state == 1
        return _TRANS[self._state][_SEMI] == 1

    def _scan(self, line: bytes) -> None:
        """Run quickscan() and sqlite3_complete()'s machine over ``line``, which follows the
        pending text (after an LF if any is pending), noting where statements end."""
        pos, n, base = 0, len(line), self._size
        while pos < n:
            if self._wait is not None:
                m = _CLOSE[self._wait].match(line, pos)
                if m is None:
                    return
                pos = m.end()
                self._wait = None
                continue
            m = _PLAIN.match(line, pos)
            kind = m.lastgroup
            pos = m.end()
            if kind == "ws":
                continue
            if kind == "line":
                self._in_line_comment = True
                return
            if kind == "block":
                self._wait = b"*"[0]
                continue
            if kind == "semi":
                self._semi = True
                self._state = _TRANS[self._state][_SEMI]
                if self._state == 1:
                    if self._piece_line:
                        self._pieces.append((self._piece, base + pos, self._piece_line))
                    self._piece, self._piece_line = base + pos, 0
                continue
            if kind == "vt":  # whitespace to quickscan(), a token to sqlite3_complete()
                token = _OTHER
            else:
                self._dark, self._semi = True, False
                token = _KEYWORDS.get(m.group().lower(), _OTHER) if kind == "word" else _OTHER
                if kind == "quote":
                    self._wait = line[pos - 1]  # _CLOSE is keyed by the opening byte
            self._state = _TRANS[self._state][token]
            if not self._piece_line:
                self._piece_line = self.lineno

    def _emit(self, *, complete: bool) -> None:
        """Hand the pending text over as statements, and start afresh."""
        text = b"".join(self._parts)
        self._echo(text)
        pieces = list(self._pieces)
        if self._piece_line:  # the text left after the last end (the input ended first)
            pieces.append((self._piece, len(text), self._piece_line))
        for i, (a, b, line) in enumerate(pieces):
            last = i == len(pieces) - 1
            done = complete or not last or not self._piece_line
            # not stripped of a \v: sqlite3_complete() and SQLite take it for a token
            self._items.append(Statement(text[a:b].strip(b" \t\n\f\r"), line, done))
        self._reset()


def _joined(lines: bytes) -> bytes:
    """Lines as the shell joins them: the CR before each LF dropped."""
    return (lines[:-1] if lines.endswith(b"\r") else lines).replace(b"\r\n", b"\n")


def _open_at_end(buf: bytes, stop: int, end: int) -> bool:
    """Whether a fast statement stopped at ``stop`` only for want of the next lines: at the
    last LF, or in a quoted token that goes on past ``end``."""
    if buf.startswith(b"\n", stop) or buf.startswith(b"\r\n", stop):
        return buf.find(b"\n", stop) == end - 1
    c = buf[stop : stop + 1]
    close = {b"'": b"'", b'"': b'"', b"`": b"`", b"[": b"]"}.get(c)
    return close is not None and buf.find(close, stop + 1, end) == -1


# -- the check of every sqlite3 file ---------------------------------------------------------


class ScriptCheck:
    """Reads a ``sqlite3`` file as the shell will (:class:`ShellReader`) and raises
    :class:`ExportError` at the first line the writer did not mean as the shell reads it: a
    dot-command (the writer writes none), a ``go`` or ``/`` line ending a statement, or the
    file ending inside a statement, a comment or a quoted string."""

    def __init__(self) -> None:
        self.reader = ShellReader()
        self._last = b""

    def feed(self, data: bytes) -> None:
        try:
            self._judge(self.reader.feed(data))
        except ScriptError as e:
            raise ExportError(f"the sqlite3 file is not safe to restore: {e}") from None

    def close(self) -> None:
        self._judge(self.reader.close())
        if self.reader.unfinished:
            raise ExportError(
                f"the sqlite3 file is not safe to restore: it ends inside "
                f"{self.reader.unfinished} (line {self.reader.lineno})"
            )

    @staticmethod
    def _judge(items: list[Item]) -> None:
        for item in items:
            if isinstance(item, Statement):
                continue
            what = "a command" if isinstance(item, Command) else "the end of a statement"
            raise ExportError(
                f"the sqlite3 file is not safe to restore: the sqlite3 shell would take line "
                f"{item.line} as {what}: {shown(item.text)}"
            )


__all__ = [
    "Command",
    "Scratch",
    "ScriptCheck",
    "ScriptError",
    "ShellReader",
    "Statement",
    "Terminator",
    "normalise",
    "one_statement",
    "problem",
    "schema_line",
]
