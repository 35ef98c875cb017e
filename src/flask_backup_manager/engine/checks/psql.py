"""The ``postgres`` format read as psql 15 reads it: where each statement ends, which lines are
COPY data, and which text psql would take as one of its own backslash commands.

:class:`PsqlReader` follows psql's input rules (``src/bin/psql/mainloop.c`` and
``src/fe_utils/psqlscan.l``): the input is read line by line (a line ends at LF; a CR is a
newline to the lexer only, so it ends a ``--`` comment); ``'...'`` strings (also ``B'' X'' N''
U&''``; ``standard_conforming_strings`` is taken to be on, as the file sets it, and
:attr:`PsqlReader.plain_backslash` notes a plain one holding a backslash), ``E'...'``
strings with backslash escapes (and their continuation after a newline, which inside a line
only a CR makes), ``"..."`` identifiers, ``$tag$`` quotes, nested ``/* */`` comments,
parentheses (a ``;`` inside them does not end a statement) and ``CREATE FUNCTION ... BEGIN ATOMIC
... END`` bodies. A backslash outside all of these starts a psql command, read here to the end
of its line (psql may end one earlier at ``\\\\``; any command is a finding, so what follows
does not matter). After ``COPY ... FROM stdin`` the lines up to one that is exactly ``\\.``
are data, as psql sends them once the server asks for them: the data is found with
``bytes.find``, never looked at byte by byte.

Each item carries its line number. A :class:`Statement`'s text is what psql would send (leading
blank lines and comments dropped, lines joined by LF, ``\\;`` sent as ``;``); psql's
variables (``:name``, ``:'name'``, ``:"name"``, ``:{?name}``) are left as written and listed
in :attr:`Statement.specials`, with any ``\\;`` or ``\\:``.

:class:`ScriptCheck` is the read-through check of every ``postgres`` file (see
:data:`.export.SCRIPT_CHECKS`): it refuses the file when psql would run any command but the
writer's own (``\\restrict KEY`` first, ``\\unrestrict KEY`` last, ``\\.`` after each COPY
block), substitute one of its variables, or end the file inside a string, a comment, a COPY
block or a statement, or hold a byte >= 0x80 anywhere but in COPY data (psql lexes by the
client encoding, which a function run during the restore may change).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..base import shown
from ..model import ExportError


@dataclass(frozen=True)
class Statement:
    """One statement as psql sends it: up to and including the ``;`` that ends it."""

    text: bytes
    line: int
    #: False for the text left at the end of the file without its ``;`` (psql sends it too)
    complete: bool = True
    #: ``COPY ... FROM stdin``: the server asks for data, which follows as :class:`CopyData`
    copy: bool = False
    #: the first word outside parentheses, lower case (``b"create"``), or ``b""``
    command: bytes = b""
    #: what psql itself rewrites in the text: ``\\;``, ``\\:`` and variable references
    specials: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class CopyData:
    """A part of a COPY block's data, whole lines or not (the end marker is not in it)."""

    data: bytes


@dataclass(frozen=True)
class CopyEnd:
    """The ``\\.`` line that ends a COPY block."""

    line: int


@dataclass(frozen=True)
class MetaCommand:
    """A psql backslash command: its text from the backslash to the end of its line."""

    text: bytes
    line: int
    #: offsets in the whole input: the backslash, and just past the command's line
    start: int
    end: int
    #: part of a statement begun before it (psql keeps that statement's text)
    in_statement: bool


Item = Statement | CopyData | CopyEnd | MetaCommand

_INITIAL, _XQ, _XE, _XQS_E, _XD, _XC, _XDOLQ = range(7)
_INSIDE = {
    _XQ: "a quoted string",
    _XE: "an E'' string",
    _XD: "a quoted identifier",
    _XC: "a /* comment",
    _XDOLQ: "a dollar-quoted string",
}

_ID = rb"A-Za-z\x80-\xff_"
_WORD = rb"[" + _ID + rb"][" + _ID + rb"0-9$]*"
#: one token outside quotes and comments, as psqlscan.l cuts them where it matters here
_TOKEN = re.compile(
    rb"(?P<ws>[ \t\r\f]+)"
    rb"|(?P<dash>--[^\r]*)"
    rb"|(?P<c>/\*)"
    rb"|(?P<e>[eE]')"
    rb"|(?P<q>(?:[bBxXnN]|[uU]&)?')"
    rb"|(?P<d>(?:[uU]&)?\")"
    rb"|(?P<dolq>\$(?:[" + _ID + rb"][" + _ID + rb"0-9]*)?\$)"
    rb"|(?P<id>[" + _ID + rb"][" + _ID + rb"0-9$]*)"
    # a number swallows the identifier stuck to it (psql 15's "trailing junk" rules)
    rb"|(?P<num>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    rb"(?:[eE][+-]?[0-9]+(?:" + _WORD + rb")?|[eE][+-]|" + _WORD + rb")?)"
    rb"|(?P<semi>;)|(?P<open>\()|(?P<close>\))"
    rb"|(?P<bs>\\[;:]?)"
    rb"|(?P<cast>::)"
    rb"|(?P<var>:(?:[" + _ID + rb"0-9]+|'[" + _ID + rb"0-9]+'|\"[" + _ID + rb"0-9]+\""
    rb"|\{\?[" + _ID + rb"0-9]+\}))"
    rb"|(?P<op>(?:[,.\[\]+*%^<>=~!@#&|`?]|/(?!\*)|-(?!-))+)"
    rb"|(?P<other>[\s\S])"
)
_XQ_BODY = re.compile(rb"(?:[^']+|'')*")
_XE_BODY = re.compile(rb"(?:[^\\']+|\\[\s\S]?|'')*")
_XD_BODY = re.compile(rb'(?:[^"]+|"")*')
_XC_MARK = re.compile(rb"/\*|\*/")
#: after an E'' string, what continues it: white space and -- comments holding a newline
#: (inside one input line only a CR is one), then a quote
_CONTINUE = re.compile(rb"[ \t\f]*(?:--[^\r]*)?\r(?:[ \t\f\r]|--[^\r]*\r)*'")
_BOM = b"\xef\xbb\xbf"
_HIGH = re.compile(rb"[\x80-\xff]")
#: the quotes that open a string psql reads by ``standard_conforming_strings``
_PLAIN = (b"'", b"n'", b"N'")
_OPENS = {"c": _XC, "e": _XE, "q": _XQ, "d": _XD, "dolq": _XDOLQ}


class PsqlReader:
    """Cut psql input into :data:`Item` s: ``feed(data) -> items``, then ``close() -> items``.

    After :meth:`close`, :attr:`ends_inside` says what the input ended inside (a string, a
    comment, a COPY block, a statement without its ``;``), or is None."""

    def __init__(self) -> None:
        self._buf = b""
        self._offset = 0  # of self._buf[0] in the whole input
        self._line = 1  # of the next line to read
        self._items: list[Item] = []
        self.ends_inside: str | None = None
        #: the first line where a plain ``'...'`` (or ``N''``) string holds a backslash, which
        #: psql reads otherwise once ``standard_conforming_strings`` is off, or None
        self.plain_backslash: int | None = None
        #: the first line outside COPY data holding a byte >= 0x80, or None: psql lexes by the
        #: client encoding, which a function run during the restore may change to one (SJIS,
        #: BIG5, GBK, UHC, GB18030) where such a byte swallows the next (a quote, a backslash)
        self.non_ascii: int | None = None
        # COPY data mode
        self._copy = False
        self._copy_line = 0
        self._at_line_start = True
        self._rest: tuple[bytes, int, int] | None = None  # the COPY line's text after its ;
        # lexer state, as psqlscan.l keeps it across lines
        self._state = _INITIAL
        self._depth = 0
        self._tag = b""
        self._state_line = 0
        self._paren = 0
        self._begin = 0
        self._idents = [0, 0, 0, 0]
        self._ident_count = 0
        # the statement being read (psql's query buffer)
        self._query: list[bytes] = []
        self._qlen = 0
        self._qline = 0
        self._words: list[bytes] = []
        self._specials: list[bytes] = []

    def feed(self, data: bytes) -> list[Item]:
        buf = self._buf + data if self._buf else data
        pos = 0
        while True:
            if self._copy:
                pos = self._copy_data(buf, pos, final=False)
                if self._copy:
                    break
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            self._read_line(buf[pos:nl], self._offset + pos, self._offset + nl + 1)
            pos = nl + 1
        self._buf = buf[pos:]
        self._offset += pos
        items, self._items = self._items, []
        return items

    def close(self) -> list[Item]:
        buf, self._buf = self._buf, b""
        if self._copy:
            self._copy_data(buf, 0, final=True)
        elif buf:
            self._read_line(buf, self._offset, self._offset + len(buf))
        if self._copy:
            self.ends_inside = f"a COPY block (begun on line {self._copy_line})"
        elif self._state in _INSIDE:
            self.ends_inside = f"{_INSIDE[self._state]} (begun on line {self._state_line})"
        elif self._qlen:
            self.ends_inside = f"a statement without its ';' (begun on line {self._qline})"
        if self._qlen:
            self._end_statement(complete=False)
        items, self._items = self._items, []
        return items

    # -- COPY data

    def _copy_data(self, buf: bytes, pos: int, *, final: bool) -> int:
        """Pass on COPY data from ``pos`` up to a ``\\.`` line; return where reading stopped
        (switching back to SQL after the marker)."""
        if self._at_line_start:
            end = _marker(buf, pos)
            if end is not None:
                return self._copy_end(buf, pos, end)
            if not final and len(buf) - pos < 4 and _maybe_marker(buf[pos:]):
                return pos
        search = pos
        while True:
            i = buf.find(b"\n\\.", search)
            if i < 0:
                break
            end = _marker(buf, i + 1)
            if end is not None:
                self._data(buf[pos : i + 1])
                return self._copy_end(buf, i + 1, end)
            if not final and len(buf) - (i + 1) < 4 and _maybe_marker(buf[i + 1 :]):
                self._data(buf[pos : i + 1])
                return i + 1
            search = i + 1
        last = buf.rfind(b"\n", pos)
        line_start = last + 1 if last >= 0 else (pos if self._at_line_start else None)
        if final or line_start is None or not _maybe_marker(buf[line_start:]):
            self._data(buf[pos:])
            return len(buf)
        self._data(buf[pos:line_start])
        return line_start

    def _data(self, data: bytes) -> None:
        if data:
            self._line += data.count(b"\n")
            self._at_line_start = data.endswith(b"\n")
            self._items.append(CopyData(data))

    def _copy_end(self, buf: bytes, at: int, end: int) -> int:
        self._items.append(CopyEnd(self._line))
        self._line += 1
        self._copy = False
        if self._rest is not None:  # psql reads on in the COPY statement's own line
            rest, start, stop = self._rest
            self._rest = None
            line, self._line = self._line, self._copy_line
            self._lex(rest, -1, start, stop)
            self._line = line
        return end

    # -- SQL text

    def _read_line(self, line: bytes, start: int, stop: int) -> None:
        if self._line == 1 and line.startswith(_BOM):
            line = line[3:]
            start += 3
        if self.non_ascii is None and _HIGH.search(line):
            self.non_ascii = self._line
        if not line and self._state in (_INITIAL, _XQS_E):
            self._line += 1
            return
        added_nl = -1
        if self._qlen:
            self._put(b"\n")
            added_nl = self._qlen
        self._lex(line, added_nl, start, stop)
        if not self._copy:
            self._line += 1

    def _put(self, text: bytes) -> None:
        if not self._qlen:
            self._qline = self._line
        self._query.append(text)
        self._qlen += len(text)

    def _lex(self, line: bytes, added_nl: int, start: int, stop: int) -> None:
        """Read one input line (without its LF) from the lexer's current state."""
        pos, n = 0, len(line)
        while pos < n:
            state = self._state
            if state == _INITIAL:
                m = _TOKEN.match(line, pos)
                kind, tok, pos = m.lastgroup, m.group(), m.end()
                if kind == "ws" or kind == "dash":
                    if self._qlen:
                        self._put(tok)
                    continue
                if kind == "bs":
                    if len(tok) == 2:  # \; and \: put the bare character in the query
                        self._put(tok[1:])
                        self._specials.append(tok)
                        if tok == b"\\;":
                            self._ident_count = 0
                        continue
                    if self._qlen and self._qlen == added_nl:
                        self._query[-1] = self._query[-1][:-1]
                        self._qlen -= 1
                    at = pos - 1
                    self._items.append(
                        MetaCommand(line[at:], self._line, start + at, stop, self._qlen > 0)
                    )
                    return
                self._put(tok)
                if kind == "id":
                    self._identifier(tok)
                elif kind == "semi":
                    if not self._paren and not self._begin:
                        self._end_statement(complete=True)
                        if self._copy:
                            self._rest = (line[pos:], start + pos, stop)
                            self._copy_line = self._line
                            self._line += 1
                            return
                elif kind == "open":
                    self._paren += 1
                elif kind == "close":
                    self._paren = max(self._paren - 1, 0)
                elif kind == "var":
                    self._specials.append(tok)
                elif kind in _OPENS:
                    self._state_line = self._line
                    self._state = _OPENS[kind]
                    self._depth = 0
                    self._tag = tok
            elif state == _XQ or state == _XD:
                end = (_XQ_BODY if state == _XQ else _XD_BODY).match(line, pos).end()
                if (
                    state == _XQ
                    and self.plain_backslash is None
                    and self._tag in _PLAIN
                    and line.find(b"\\", pos, end) >= 0
                ):
                    self.plain_backslash = self._line
                if end == n:
                    self._put(line[pos:])
                    return
                self._put(line[pos : end + 1])
                pos = end + 1
                self._state = _INITIAL
            elif state == _XE:
                end = _XE_BODY.match(line, pos).end()
                if end == n:
                    self._put(line[pos:])
                    return
                m = _CONTINUE.match(line, end + 1)
                stop_at = m.end() if m else end + 1
                self._put(line[pos:stop_at])
                pos = stop_at
                if not m:
                    self._state = _XQS_E if pos == n else _INITIAL
            elif state == _XQS_E:  # a new line right after an E'' string's closing quote
                m = _CONTINUE.match(line, pos)
                if m:
                    self._put(line[pos : m.end()])
                    pos = m.end()
                    self._state = _XE
                else:
                    self._state = _INITIAL
            elif state == _XC:
                for m in _XC_MARK.finditer(line, pos):
                    if m.group() == b"/*":
                        self._depth += 1
                    elif self._depth:
                        self._depth -= 1
                    else:
                        self._put(line[pos : m.end()])
                        pos = m.end()
                        self._state = _INITIAL
                        break
                else:
                    self._put(line[pos:])
                    return
            else:  # _XDOLQ
                end = line.find(self._tag, pos)
                if end < 0:
                    self._put(line[pos:])
                    return
                end += len(self._tag)
                self._put(line[pos:end])
                pos = end
                self._state = _INITIAL

    def _identifier(self, word: bytes) -> None:
        """psql's guess at ``CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ... END``,
        inside which a ``;`` does not end the statement; and the words that tell a COPY."""
        lower = word.lower()
        if self._ident_count == 0:
            self._idents = [0, 0, 0, 0]
        if self._ident_count < 4 and lower in (
            b"create",
            b"function",
            b"procedure",
            b"or",
            b"replace",
        ):
            self._idents[self._ident_count] = lower[0]
        self._ident_count += 1
        if not self._paren:
            if len(self._words) < 64:
                self._words.append(lower)
            i = self._idents
            c, f, p, o, r = b"cfpor"
            if i[0] == c and (i[1] in (f, p) or (i[1] == o and i[2] == r and i[3] in (f, p))):
                if lower == b"begin":
                    self._begin += 1
                elif lower == b"case" and self._begin:
                    self._begin += 1
                elif lower == b"end" and self._begin:
                    self._begin -= 1

    def _end_statement(self, *, complete: bool) -> None:
        command = self._words[0] if self._words else b""
        copy = complete and command == b"copy" and _from_stdin(self._words)
        self._items.append(
            Statement(
                b"".join(self._query),
                self._qline,
                complete,
                copy,
                command,
                tuple(self._specials),
            )
        )
        self._query, self._qlen, self._words, self._specials = [], 0, [], []
        self._ident_count = 0
        if copy:
            self._copy = True
            self._at_line_start = True


def _from_stdin(words: list[bytes]) -> bool:
    return any(a == b"from" and b == b"stdin" for a, b in zip(words, words[1:], strict=False))


def _marker(buf: bytes, at: int) -> int | None:
    """Where the line after a ``\\.`` line starting at ``at`` begins, if it is one."""
    if buf.startswith(b"\\.\n", at):
        return at + 3
    if buf.startswith(b"\\.\r\n", at):
        return at + 4
    return None


def _maybe_marker(tail: bytes) -> bool:
    """Whether ``tail`` (a line not yet ended) may still become a ``\\.`` line."""
    return tail in (b"", b"\\", b"\\.", b"\\.\r")


#: the variables psql 15 sets itself (case matters): under ``psql -X`` only these, and
#: ON_ERROR_STOP from the README's command, are replaced in the text; some come from the
#: server (LAST_ERROR_MESSAGE holds an error's text, which the file's functions choose)
PSQL_VARIABLES = frozenset(
    b"AUTOCOMMIT COMP_KEYWORD_CASE DBNAME ECHO ECHO_HIDDEN ENCODING ERROR FETCH_COUNT"
    b" HIDE_TABLEAM HIDE_TOAST_COMPRESSION HISTCONTROL HISTFILE HISTSIZE HOST IGNOREEOF"
    b" LASTOID LAST_ERROR_MESSAGE LAST_ERROR_SQLSTATE ON_ERROR_ROLLBACK ON_ERROR_STOP PORT"
    b" PROMPT1 PROMPT2 PROMPT3 QUIET ROW_COUNT SERVER_VERSION_NAME SERVER_VERSION_NUM"
    b" SHOW_ALL_RESULTS SHOW_CONTEXT SINGLELINE SINGLESTEP SQLSTATE USER VERBOSITY VERSION"
    b" VERSION_NAME VERSION_NUM".split()
)

_RESTRICT = re.compile(rb"\\restrict ([A-Za-z0-9]+)")
_UNRESTRICT = re.compile(rb"\\unrestrict ([A-Za-z0-9]+)")
_VARIABLE = re.compile(rb":['\"]?([^'\"]+)['\"]?")


def finding(item: Item) -> str | None:
    """Why psql would do something with this statement that the restore tool would not (or
    None): a psql variable it replaces, or a ``\\;`` / ``\\:``. Shared by the check and the
    restore tool."""
    if not isinstance(item, Statement):
        return None
    for special in item.specials:
        if special.startswith(b"\\"):
            return f"line {item.line}: psql would read {shown(special)} as its own syntax"
        m = _VARIABLE.fullmatch(special)
        if special.startswith(b":{") or (m and m.group(1) in PSQL_VARIABLES):
            return f"line {item.line}: psql would replace its variable {shown(special)}"
    return None


class ScriptCheck:
    """The read-through check of a ``postgres`` file: ``feed(bytes)`` then ``close()``; raises
    :class:`ExportError` naming the line when psql would run a command the writer did not
    write, or when the text ends inside something."""

    def __init__(self) -> None:
        self._reader = PsqlReader()
        self._first = True
        self._key: bytes | None = None
        self._done_at: int | None = None  # offset past the \unrestrict line
        self._fed = 0

    def feed(self, data: bytes) -> list[Item]:
        """Check the next part of the text; return its items (the restore tool runs them)."""
        start, self._fed = self._fed, self._fed + len(data)
        items = self._reader.feed(data)
        self._check(items)
        if self._done_at is not None:
            self._after_end(data, start)
        return items

    def close(self) -> list[Item]:
        items = self._reader.close()
        self._check(items)
        if self._reader.ends_inside:
            raise ExportError(f"the SQL file ends inside {self._reader.ends_inside}")
        if self._key is not None and self._done_at is None:
            raise ExportError("the SQL file does not end with its \\unrestrict line")
        return items

    def _after_end(self, data: bytes, start: int) -> None:
        tail = data[max(self._done_at - start, 0) :]
        if tail.strip():
            raise ExportError("the SQL file goes on after its \\unrestrict line")

    def _check(self, items: list[Item]) -> None:
        if self._reader.plain_backslash is not None:
            raise ExportError(
                f"the SQL file is not safe for psql: line {self._reader.plain_backslash} has a"
                " plain '...' string holding a backslash, which psql reads otherwise once"
                " standard_conforming_strings is off (write it E'...')"
            )
        if self._reader.non_ascii is not None:
            raise ExportError(
                f"the SQL file is not safe for psql: line {self._reader.non_ascii} holds a"
                " non-ASCII byte outside COPY data, which psql may read as part of a character"
                " swallowing the next byte once a function changes client_encoding"
            )
        for item in items:
            first, self._first = self._first, False
            if self._done_at is not None:
                raise ExportError("the SQL file goes on after its \\unrestrict line")
            if isinstance(item, MetaCommand):
                self._meta(item, first)
            elif isinstance(item, Statement):
                why = finding(item)
                if why:
                    raise ExportError(f"the SQL file is not safe for psql: {why}")
                if item.command == b"copy" and not item.copy and item.complete:
                    raise ExportError(f"line {item.line}: a COPY that is not FROM stdin")

    def _meta(self, item: MetaCommand, first: bool) -> None:
        m = _RESTRICT.fullmatch(item.text)
        if m and first and item.start == 0:
            self._key = m.group(1)
            return
        m = _UNRESTRICT.fullmatch(item.text)
        if m and self._key is not None and m.group(1) == self._key and not item.in_statement:
            self._done_at = item.end
            return
        raise ExportError(
            f"the SQL file is not safe for psql: line {item.line} would run the psql command"
            f" {shown(item.text)}"
        )


__all__ = [
    "CopyData",
    "CopyEnd",
    "Item",
    "MetaCommand",
    "PsqlReader",
    "ScriptCheck",
    "Statement",
    "finding",
]
