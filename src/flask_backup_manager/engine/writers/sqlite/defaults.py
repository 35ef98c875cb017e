"""A PostgreSQL column's server default as SQLite's ``DEFAULT``: what is carried, and how.

The default's text is the customer's (``pg_get_expr``): it is read by a small tokeniser and a
strict grammar (:func:`parse`), and only the forms below are rebuilt, from the parsed value,
never from the text itself:

- a constant (a number, ``'...'``, ``true``/``false``, ``NULL``, each maybe cast with ``::``,
  every cast to a type the column's type takes constants in: :data:`TAKES`): its text is
  loaded as the column's rows are (:meth:`.PostgresSource.load_text`), converted by the
  column's converter (so it is stored in the form its values are), and written as a literal;
- ``now()``, ``CURRENT_TIMESTAMP``, ``statement_timestamp()``, ``transaction_timestamp()``,
  ``clock_timestamp()``, ``LOCALTIMESTAMP``, ``CURRENT_DATE``, ``CURRENT_TIME``,
  ``LOCALTIME`` (``timezone('utc', now())`` and ``now() AT TIME ZONE 'utc'`` too): SQLite's
  clock, in UTC, in the form SQLAlchemy's SQLite DateTime, Date and Time store
  (``YYYY-MM-DD HH:MM:SS.ffffff``, ``YYYY-MM-DD``, ``HH:MM:SS.ffffff``), to the precision
  the call or the column gives;
- ``gen_random_uuid()``, ``uuid_generate_v4()``: a random version-4 UUID as the 32 hex digits
  SQLAlchemy's Uuid stores;
- ``nextval(...)`` or an identity on the one-column integer primary key: nothing to write, as
  that column is the rowid, which numbers new rows.

Each of the last three only where the column's converter stores a sample value in that very
form. Anything else is not carried: :class:`NotCarried`, which the writer puts in the
backup's log. Where the host app's models give the column a ``server_default``, theirs is
used instead, compiled for SQLite as SQLAlchemy writes it in ``CREATE TABLE``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ...base import literal, shown
from ...sources.postgres import PostgresSource
from ...sources.postgres_model import PostgresTable

Converter = Callable[[Any], Any]

_SQLITE = sqlite_dialect.dialect()


class NotCarried(Exception):
    """A default SQLite gets no equivalent of; the message says which, for the log."""


# -- reading pg_get_expr's text ------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<quoted>"(?:[^"]|"")+")
    | (?P<other>::|\[\]|[(),.\-])
    )""",
    re.VERBOSE,
)


def tokens(text: str) -> list[tuple[str, str]] | None:
    """``(kind, text)`` of each token, or None when ``text`` holds anything else (an
    ``E'...'`` string, an operator, a parameter, a dollar quote...)."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return None if text[pos:].strip() else out
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Parsed:
    """A default of one of the forms carried. ``kind``: ``constant``, ``null``,
    ``timestamp``, ``date``, ``time`` (a clock) or ``uuid`` (a random one)."""

    kind: str
    #: a constant's text form (its type's output: ``'-1'``, ``'t'``, ``'2020-01-01'``)
    text: str | None = None
    #: the types it is written in: a constant's own type, then every cast, in order
    types: tuple[str, ...] = ()
    #: a clock's precision: ``CURRENT_TIMESTAMP(3)``
    precision: int | None = None


#: calls of no argument -> the kind of value they give
CALLS = {
    "now": "timestamp",
    "statement_timestamp": "timestamp",
    "transaction_timestamp": "timestamp",
    "clock_timestamp": "timestamp",
    "gen_random_uuid": "uuid",
}
#: SQL's clock keywords (maybe with a precision) -> the kind of value they give
KEYWORDS = {
    "CURRENT_TIMESTAMP": "timestamp",
    "LOCALTIMESTAMP": "timestamp",
    "CURRENT_DATE": "date",
    "CURRENT_TIME": "time",
    "LOCALTIME": "time",
}
#: a function of an extension, found in whatever schema the extension was put in
EXTENSION_CALLS = {"uuid_generate_v4": "uuid"}


#: how deep a default's expressions may nest (pg_get_expr writes a parenthesis a cast): the
#: forms carried need a few; a hostile default nested by the thousand must not exhaust
#: Python's stack and fail the backup
MAX_DEPTH = 16


class _Parser:
    """Recursive descent over :func:`tokens`; every method raises ValueError on a form that is
    not carried."""

    def __init__(self, toks: list[tuple[str, str]]) -> None:
        self.toks, self.i, self.depth = toks, 0, 0

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        i = self.i + ahead
        return self.toks[i] if i < len(self.toks) else ("end", "")

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        k, t = self.peek()
        if (text is not None and t.upper() != text.upper()) or (kind is not None and k != kind):
            raise ValueError(f"expected {text or kind}")
        if k == "end":
            raise ValueError("unexpected end")
        self.i += 1
        return t

    def at(self, text: str) -> bool:
        return self.peek()[1].upper() == text.upper() and self.peek()[0] != "string"

    def whole(self) -> Parsed:
        parsed = self.expression()
        if self.peek()[0] != "end":
            raise ValueError("text after the default")
        return parsed

    def expression(self) -> Parsed:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ValueError("nested too deep")
        parsed = self.atom()
        casts = []
        while self.at("::"):
            self.take("::")
            casts.append(self.type_name())
        self.depth -= 1
        if not casts:
            return parsed
        return Parsed(parsed.kind, parsed.text, parsed.types + tuple(casts), parsed.precision)

    def atom(self) -> Parsed:
        kind, text = self.peek()
        if text == "(":
            self.take("(")
            inner = self.expression()
            if self.at("AT"):  # (now() AT TIME ZONE 'utc'): the clock in UTC
                for word in ("AT", "TIME", "ZONE"):
                    self.take(word, "word")
                self.utc(inner)
            self.take(")")
            return inner
        if kind == "string":
            self.take()
            return Parsed("constant", text[1:-1].replace("''", "'"))
        if text == "-" or kind == "number":
            sign = self.take("-") if text == "-" else ""
            number = self.take(kind="number")
            exact = re.fullmatch(r"\d+", number) is not None
            return Parsed("constant", sign + number, ("integer" if exact else "numeric",))
        if kind in ("word", "quoted") and self.peek(1)[1] == ".":
            self.take()  # the schema an extension's function is in
            self.take(".")
            if self.peek()[1] not in EXTENSION_CALLS or self.peek(1)[1] != "(":
                raise ValueError("not a function that is carried")
            return self.atom()
        if kind != "word":
            raise ValueError("not a constant or a call")
        upper = text.upper()
        if upper in ("TRUE", "FALSE"):
            self.take()
            return Parsed("constant", upper[0].lower(), ("boolean",))
        if upper == "NULL":
            self.take()
            return Parsed("null")
        if upper in KEYWORDS:
            self.take()
            precision = None
            if self.at("(") and upper != "CURRENT_DATE":
                self.take("(")
                precision = int(self.take(kind="number"))
                self.take(")")
            return Parsed(KEYWORDS[upper], precision=precision)
        if text == "timezone" and self.peek(1)[1] == "(":  # timezone('utc', now())
            self.take()
            self.take("(")
            zone = self.expression()
            self.take(",")
            inner = self.expression()
            self.take(")")
            self.utc(inner, zone)
            return inner
        if text in CALLS:
            self.take()
            self.take("(")
            self.take(")")
            return Parsed(CALLS[text])
        if text in EXTENSION_CALLS and self.peek(1)[1] == "(":
            self.take()
            self.take("(")
            self.take(")")
            return Parsed(EXTENSION_CALLS[text])
        raise ValueError("not a call that is carried")

    def utc(self, clock: Parsed, zone: Parsed | None = None) -> None:
        """``clock`` is now() or the like, ``zone`` (else the next token) the constant 'utc'."""
        if zone is None:
            zone = self.expression()
        if clock.kind != "timestamp" or clock.types:
            raise ValueError("AT TIME ZONE of something else than the clock")
        if zone.kind != "constant" or zone.text is None or zone.text.upper() != "UTC":
            raise ValueError("a time zone other than UTC")
        if zone.types not in ((), ("text",)):
            raise ValueError("a time zone of another type")

    def type_name(self) -> str:
        """A type as ``format_type`` writes it: ``integer``, ``character varying``,
        ``timestamp with time zone``, ``public.mood``, ``other."Mo od"``, ``integer[]``.
        No type modifier (``varchar(3)`` cuts the value: not carried)."""
        parts = [self.name()]
        while True:
            kind, text = self.peek()
            if text == ".":
                parts.append(self.take("."))
                parts.append(self.name())
            elif kind == "word" and text.upper() != "AT":
                parts.append(" ")
                parts.append(self.take(kind="word"))
            elif text == "[]":
                parts.append(self.take("[]"))
            else:
                return "".join(parts)

    def name(self) -> str:
        """A word or a quoted name, as written."""
        return self.take(kind="quoted" if self.peek()[0] == "quoted" else "word")


def parse(text: str) -> Parsed | None:
    """The default ``text`` (``pg_get_expr``'s) if it is of a form that is carried, else None."""
    toks = tokens(text)
    if not toks:
        return None
    try:
        parsed = _Parser(toks).whole()
    except (ValueError, IndexError):
        return None
    if parsed.kind == "constant" and not parsed.types:
        return None  # a string PostgreSQL wrote without a type: not one it writes
    return parsed


# -- writing SQLite's DEFAULT ----------------------------------------------------------------

_INTEGERS = ("smallint", "integer", "bigint")
_NUMBERS = (*_INTEGERS, "numeric", "real", "double precision")
_TEXTS = ("text", "character varying")
#: a column's base type (``format_type``) -> the types its constants may be written in
#: besides its own; a cast between others may change the value (``bpchar`` to ``text`` drops
#: trailing spaces, ``timestamptz`` to ``timestamp`` depends on the server's time zone)
TAKES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(_INTEGERS, _INTEGERS),
    **dict.fromkeys(("numeric", "real", "double precision"), _NUMBERS),
    **dict.fromkeys(_TEXTS, _TEXTS),
    "character": (*_TEXTS, "bpchar"),
    "json": ("json", "jsonb"),
    "jsonb": ("json", "jsonb"),
}

#: a clock's kind, the column's base type -> what that column holds then, and a sample of it
#: (a PostgreSQL text) with the form SQLAlchemy's SQLite type stores it in
CLOCK_TARGETS: dict[tuple[str, str], str] = {
    **{(k, "timestamp without time zone"): "timestamp" for k in ("timestamp", "date")},
    **{(k, "timestamp with time zone"): "timestamp" for k in ("timestamp", "date")},
    **{(k, "date"): "date" for k in ("timestamp", "date")},
    **{(k, "time without time zone"): "time" for k in ("timestamp", "time")},
    **{(k, "time with time zone"): "time" for k in ("timestamp", "time")},
    ("uuid", "uuid"): "uuid",
}
SAMPLES: dict[str, tuple[str, str]] = {  # base type -> (its text, the form stored)
    "timestamp without time zone": ("2001-02-03 04:05:06.789012", "2001-02-03 04:05:06.789012"),
    "timestamp with time zone": ("2001-02-03 04:05:06.789012+00", "2001-02-03 04:05:06.789012"),
    "date": ("2001-02-03", "2001-02-03"),
    "time without time zone": ("04:05:06.789012", "04:05:06.789012"),
    "time with time zone": ("04:05:06.789012+00", "04:05:06.789012"),
    "uuid": ("0e1c2d3f-4a5b-4c6d-8e7f-8091a2b3c4d5", "0e1c2d3f4a5b4c6d8e7f8091a2b3c4d5"),
}

#: a random version-4 UUID in 32 lower-case hex digits: 12 random, the version 4, 3 random,
#: the variant (8, 9, a or b), 15 random
RANDOM_UUID = (
    "(lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2) || "
    "substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(8)), 2)))"
)


def clock_sql(target: str, kind: str, precision: int | None) -> str:
    """SQLite's clock (UTC) as a ``target`` column holds it, to ``precision`` digits of the
    second (SQLite's clock has 3; the rest are zeros), rounded as PostgreSQL rounds."""
    if target == "date":
        return "CURRENT_DATE"
    if kind == "date":  # CURRENT_DATE in a timestamp column: its midnight
        return "(date('now') || ' 00:00:00.000000')"
    fmt, width = ("%Y-%m-%d %H:%M:%f", 19) if target == "timestamp" else ("%H:%M:%f", 8)
    if precision is None or precision >= 3:
        return f"(strftime('{fmt}', 'now') || '000')"
    half = f"{0.5 / 10**precision:.{precision + 1}f}"
    keep = width + (precision + 1 if precision else 0)
    pad = ("." if precision == 0 else "") + "0" * (6 - precision)
    return f"(substr(strftime('{fmt}', 'now', '+{half} seconds'), 1, {keep}) || '{pad}')"


#: what a CR inside a text literal becomes: the literal closed, a char(13) added, reopened
_CR = "'||char(13)||'"


def value_sql(value: Any) -> str:
    """A stored value as an SQLite literal (a CR in a text as ``char(13)``, which the
    ``sqlite3`` format needs: its schema lines may hold no CR)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"X'{bytes(value).hex()}'"
    if isinstance(value, str) and "\x00" not in value:
        text = literal(value)
        return f"({text.replace(chr(13), _CR)})" if "\r" in text else text
    raise ValueError("a value SQLite's DEFAULT cannot hold")


def postgres_default(
    source: PostgresSource,
    spec: PostgresTable,
    index: int,
    convert: Converter | None,
    *,
    rowid: bool,
) -> str | None:
    """The SQLite ``DEFAULT`` expression of column ``index`` of ``spec`` (None: none to
    write); raises :class:`NotCarried`. ``convert``: the column's converter; ``rowid``:
    whether it is the table's rowid."""
    col = spec.columns[index]
    if col.attgenerated:
        return None  # a generated column: its values are copied, its expression is not
    if col.attidentity:
        if rowid:
            return None
        raise _not_carried(spec, col.attname, "GENERATED AS IDENTITY")
    expr = col.default_expr
    if expr is None:
        return None
    if rowid and re.fullmatch(r"nextval\('(?:[^']|'')*'::regclass\)", expr):
        return None
    parsed = parse(expr)
    names = source.type_names(spec, index)
    takes = {*names, *TAKES.get(names[-1], ())}
    if parsed is None or not set(parsed.types) <= takes:
        raise _not_carried(spec, col.attname, expr)
    try:
        if parsed.kind == "null":
            return "NULL"
        if parsed.kind == "constant":
            value = source.load_text(spec, index, parsed.text or "")
            stored = value if convert is None else convert(value)
            if stored is None:  # a NaN, which SQLite stores as NULL: not the same default
                raise ValueError("a constant SQLite cannot store")
            return value_sql(stored)
        target = CLOCK_TARGETS.get((parsed.kind, names[-1]))
        if target is None:
            raise ValueError("not a value of this column's type")
        text, stored = SAMPLES[names[-1]]
        sample = source.load_text(spec, index, text)
        if (sample if convert is None else convert(sample)) != stored:
            raise ValueError("the column stores another form than SQLite's expression")
        if target == "uuid":
            return RANDOM_UUID
        precisions = [p for p in (parsed.precision, col.atttypmod) if p is not None and p >= 0]
        return clock_sql(target, parsed.kind, min(precisions, default=None))
    except Exception as e:  # the column's loader or converter (a host type's too) refuses it
        raise _not_carried(spec, col.attname, expr) from e


def host_default(column: sa.Column) -> str | None:
    """The host model's ``server_default`` of ``column`` as SQLAlchemy's SQLite dialect writes
    it in ``CREATE TABLE`` (a string as a literal, ``func.now()`` as ``CURRENT_TIMESTAMP``, a
    ``text()`` as written: the app's own SQL); None without one."""
    if not isinstance(column.server_default, sa.DefaultClause):
        return None
    ddl = _SQLITE.ddl_compiler(_SQLITE, None)
    try:
        text = ddl.get_column_default_string(column)
    except sa.exc.CompileError as e:
        raise NotCarried(
            f"column {shown(column.table.fullname, 60)}.{shown(column.name)}: the models' "
            f"server_default does not compile for SQLite ({shown(str(e), 80)}): not carried"
        ) from e
    if text is None:
        return None
    if not re.match(r"""^\s*['"(]""", text) and re.match(r".*\W.*", text):
        text = f"({text})"  # as SQLAlchemy's SQLite dialect does
    return text


def _not_carried(spec: PostgresTable, column: str, expr: str) -> NotCarried:
    return NotCarried(
        f"column {shown(spec.key, 60)}.{shown(column)}: its default {shown(expr, 80)} has no "
        "SQLite equivalent and is not carried (a new row must give the value)"
    )


__all__ = ["NotCarried", "Parsed", "host_default", "parse", "postgres_default", "value_sql"]
