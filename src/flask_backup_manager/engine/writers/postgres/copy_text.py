"""Rows encoded for PostgreSQL's ``COPY ... FROM stdin``, by the PostgreSQL type of each column,
and checked on the way: a value the column would refuse raises :class:`Refused`, naming its
table, column and row. The encoders take SQLite's values (int, float, str, bytes) and the
Python values a model's type reads them as (datetime, date, time, timedelta, UUID, Decimal,
dict and list for JSON). Used by the exporting process and by its helper processes
(:mod:`.writers.postgres.copy_part`), which import nothing more (no SQLAlchemy: they start in
milliseconds).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_UP, Context, Decimal
from typing import Any

from ...model import ExportError

Encoder = Callable[[Any], str]

_INT_RANGE = {"smallint": 1 << 15, "integer": 1 << 31, "bigint": 1 << 63}
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError("bytes that are not UTF-8 text in a text column") from e
    elif isinstance(v, float):
        v = repr(v)
    else:
        v = str(v)
    if "\x00" in v:
        raise ValueError("a NUL character, which PostgreSQL text cannot hold")
    return v.translate(_ESCAPES)


def _int(limit: int) -> Encoder:
    def enc(v: Any) -> str:
        shown = v
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{_show(v)} is not an integer")
        if not -limit <= v < limit:
            raise ValueError(f"{_show(shown)} is out of range")
        return str(v)

    return enc


def _float(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        raise ValueError(f"{_show(v)} is not a number")
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


#: PostgreSQL's numeric: digits before the decimal point, and after it, at most
_NUMERIC_DIGITS, _NUMERIC_DECIMALS = 131072, 16383
#: a number as SQLite's text holds one: ASCII digits, a sign, a point, an exponent (Python's
#: Decimal also reads other scripts' digits, ``1_000``, ``inf`` and ``nan``: text, to SQLite)
_DECIMAL_TEXT = re.compile(
    r"[ \t\n\f\r]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\n\f\r]*"
)
#: a decimal context wide enough to round any numeric(p, s) value exactly (p <= 1000)
_WIDE = Context(prec=2100, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _decimal(v: Any) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
        raise ValueError(f"{_show(v)} is not a number")
    if isinstance(v, Decimal):
        return v
    if isinstance(v, str) and not _DECIMAL_TEXT.fullmatch(v):
        raise ValueError(f"{_show(v)} is not a number")
    return Decimal(repr(v) if isinstance(v, float) else str(v).strip())


def _numeric(precision: int | None, scale: int | None, exact: bool = False) -> Encoder:
    """numeric(precision, scale), which PostgreSQL rounds to its scale, half away from zero
    (``exact``: a value it would round is refused instead)."""
    places = Decimal(1).scaleb(-(scale or 0))

    def enc(v: Any) -> str:
        d = _decimal(v)
        if d.is_nan():
            return "NaN"
        if not d.is_finite():
            if precision is not None:
                raise ValueError(f"{v} does not fit numeric({precision}, {scale or 0})")
            return "Infinity" if d > 0 else "-Infinity"
        if d and (d.adjusted() >= _NUMERIC_DIGITS or -d.as_tuple().exponent > _NUMERIC_DECIMALS):
            raise ValueError(f"{_show(v)} does not fit PostgreSQL's numeric")
        if precision is not None and d:
            if d.adjusted() + 1 > precision - (scale or 0):
                raise ValueError(f"{v} does not fit numeric({precision}, {scale or 0})")
            rounded = d.quantize(places, rounding=ROUND_HALF_UP, context=_WIDE)
            if rounded and rounded.adjusted() + 1 > precision - (scale or 0):
                raise ValueError(f"{v} does not fit numeric({precision}, {scale or 0}) rounded")
            if exact and rounded != d:
                raise ValueError(f"{v} has more decimals than numeric({precision}, {scale or 0})")
        return str(d)

    return enc


def _bool(v: Any) -> str:
    if v in (0, 1) and not isinstance(v, float | str):
        return "t" if v else "f"
    if isinstance(v, str) and v.strip().lower() in ("t", "true", "1", "f", "false", "0"):
        return "t" if v.strip().lower() in ("t", "true", "1") else "f"
    raise ValueError(f"{_show(v)} is not a boolean")


def _datetime(v: Any) -> dt.datetime:
    if isinstance(v, str):
        try:
            return dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
    elif isinstance(v, dt.datetime):
        return v
    raise ValueError(f"{_show(v)} is not a date and time")


def _no_offset(v: Any, d: dt.datetime | dt.time) -> None:
    """Refuse a text with a UTC offset other than 0, which a type without time zone drops."""
    if isinstance(v, str) and d.utcoffset():
        raise ValueError(f"{_show(v)} has a UTC offset, which a type without time zone drops")


def _timestamp(exact: bool) -> Encoder:
    def enc(v: Any) -> str:
        d = _datetime(v)
        if exact:
            _no_offset(v, d)
        return d.isoformat(sep=" ")

    return enc


def _timestamptz(v: Any) -> str:
    """A date and time without an offset is UTC's (SQLite's own CURRENT_TIMESTAMP is UTC, and
    SQLAlchemy's SQLite DateTime stores no offset), not the restoring session's time zone."""
    d = _datetime(v)
    return (d if d.tzinfo is not None else d.replace(tzinfo=dt.timezone.utc)).isoformat(sep=" ")


def _date(exact: bool) -> Encoder:
    """``exact``: a text with a time of day other than midnight, or an offset, is refused
    instead of cut to its date."""

    def enc(v: Any) -> str:
        if isinstance(v, str):
            try:
                d = dt.datetime.fromisoformat(v.strip())
            except ValueError:
                pass
            else:
                if exact and (d.time() != dt.time() or d.tzinfo is not None):
                    raise ValueError(f"{_show(v)} is a date and time, not a date")
                return d.date().isoformat()
        elif isinstance(v, dt.date):
            return (v.date() if isinstance(v, dt.datetime) else v).isoformat()
        raise ValueError(f"{_show(v)} is not a date")

    return enc


def _time(exact: bool) -> Encoder:
    def enc(v: Any) -> str:
        if isinstance(v, str):
            try:
                t = dt.time.fromisoformat(v.strip())
            except ValueError:
                pass
            else:
                if exact:
                    _no_offset(v, t)
                return t.isoformat()
        elif isinstance(v, dt.time):
            return v.isoformat()
        raise ValueError(f"{_show(v)} is not a time")

    return enc


def _interval(v: Any) -> str:
    if not isinstance(v, dt.timedelta):
        raise ValueError(f"{_show(v)} is not a time interval")
    return f"{v.days} days {v.seconds} seconds {v.microseconds} microseconds"


def _bytea(v: Any) -> str:
    if isinstance(v, str):
        v = v.encode("utf-8")
    if not isinstance(v, bytes | bytearray | memoryview):
        raise ValueError(f"{_show(v)} is not binary data")
    return "\\\\x" + bytes(v).hex()


def any_bytes(v: Any) -> str:
    """bytea holding any SQLite value: bytes as they are, text as UTF-8, a number as the bytes of
    its text (as SQLite's ``CAST(x AS BLOB)``); where a column without a model's type falls back
    to when nothing narrower holds its values."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = repr(v)
    return _bytea(v)


class _Number(str):
    """A JSON number's text, as :func:`_json` reads it."""


def _no_constant(name: str) -> None:
    raise ValueError(f"{name}, which PostgreSQL's JSON does not have")


def _jsonb_refusal(value: Any) -> str | None:
    """Why jsonb cannot hold the JSON ``value`` (read by :func:`_json`), if it cannot: a
    ``\\u0000`` or a lone surrogate in a string, a number beyond PostgreSQL's numeric."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, _Number):
            try:
                _any_numeric(v)
            except ValueError as e:
                return str(e)
        elif isinstance(v, str) and ("\x00" in v or _SURROGATE.search(v)):
            return "a \\u0000 or a lone surrogate, which jsonb cannot hold"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")
#: PostgreSQL's numeric without a precision: what a jsonb number must fit
_any_numeric = _numeric(None, None)


def _json(binary: bool) -> Encoder:
    """JSON text PostgreSQL reads as json (``binary``: as jsonb); Python's JSON reads more
    (NaN, Infinity), and reads less deep a nesting than PostgreSQL."""

    def enc(v: Any) -> str:
        try:
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            if not isinstance(v, str):
                v = json.dumps(v, allow_nan=False)
            value = json.loads(
                v, parse_constant=_no_constant, parse_int=_Number, parse_float=_Number
            )
        except (TypeError, ValueError, RecursionError):
            raise ValueError(f"{_show(v)} is not JSON PostgreSQL reads") from None
        if binary and (why := _jsonb_refusal(value)) is not None:
            raise ValueError(f"{_show(v)}: {why}")
        return _text(v)

    return enc


def _uuid(v: Any) -> str:
    if isinstance(v, uuid.UUID):
        return str(v)
    try:
        return str(uuid.UUID(bytes=v) if isinstance(v, bytes) else uuid.UUID(str(v)))
    except ValueError:
        raise ValueError(f"{_show(v)} is not a UUID") from None


def _sized(length: int) -> Encoder:
    def enc(v: Any) -> str:
        text = _text(v)
        chars = len(v.decode("utf-8") if isinstance(v, bytes) else str(v))  # not its repr
        if chars > length:
            raise ValueError(f"{chars} characters do not fit in {length}")
        return text

    return enc


def encoder_for(kind: str, exact: bool = False) -> Encoder:
    """The encoder of a column of PostgreSQL type ``kind`` (what :func:`pg_type` gives).
    ``exact``: a value the type would change (a numeric rounded to its scale, a date's time of
    day cut off, a UTC offset dropped) is refused, for a column no model describes, which then
    falls back to text."""
    if kind == "boolean":
        return _bool
    if kind in _INT_RANGE:
        return _int(_INT_RANGE[kind])
    if kind == "double precision":
        return _float
    if kind.startswith("numeric"):
        return _numeric(*_modifiers(kind, None, None), exact)
    if kind == "timestamp with time zone":
        return _timestamptz
    if kind.startswith("timestamp"):
        return _timestamp(exact)
    if kind.startswith("char"):
        return _sized(_modifiers(kind, 0)[0])
    if kind == "date":
        return _date(exact)
    if kind == "time without time zone":
        return _time(exact)
    return {
        "interval": _interval,
        "bytea": _bytea,
        "json": _json(False),
        "jsonb": _json(True),
        "uuid": _uuid,
    }.get(kind, _text)


def _modifiers(kind: str, *default: int | None) -> list[int | None]:
    """The numbers in ``kind``'s parentheses: ``numeric(10, 2)`` -> [10, 2]."""
    inside = kind.partition("(")[2].rstrip(")")
    return [int(x) for x in inside.split(",")] if inside else list(default)


#: rows encoded together
BATCH = 1000
#: COPY's NULL
NULL = "\\N"

_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def copy_unescaped(field: str) -> str:
    """The value a COPY text field (an encoder's output, not NULL) stands for: the text that the
    type's input function reads, e.g. for a string literal."""
    return re.sub(r"\\[\\tnr]", lambda m: _UNESCAPES[m.group()], field)


#: Turns all of a batch's values of one column into text for ``%s`` at C speed, or returns
#: None when some value needs the column's :func:`encoder` (which then accepts or refuses it).
Bulk = Callable[[Sequence[Any]], Sequence[Any] | None]


def _bulk_int(limit: int | None) -> Bulk:
    def bulk(col: Sequence[Any]) -> Sequence[Any] | None:
        try:
            if type(sum(col)) is not int:  # a float, or a TypeError for any other type
                return None
        except TypeError:
            return None
        if limit is not None and not (-limit <= min(col) and max(col) < limit):
            return None
        return col

    return bulk


def _bulk_float(col: Sequence[Any]) -> Sequence[Any] | None:
    if set(map(type, col)) == {float} and math.isfinite(sum(col)):
        return col  # %s of a float is its repr
    return None


def _bulk_bool(col: Sequence[Any]) -> Sequence[Any] | None:
    try:
        if type(sum(col)) is not int or min(col) < 0 or max(col) > 1:
            return None
    except TypeError:
        return None
    return list(map(("f", "t").__getitem__, col))


def _bulk_text(col: Sequence[Any]) -> Sequence[Any] | None:
    try:
        text = "\x00".join(col)
    except TypeError:  # not all strings
        return None
    if text.count("\x00") != len(col) - 1:
        return None  # a NUL character
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES).split("\x00")
    return col


def _bulk_sized(length: int) -> Bulk:
    def bulk(col: Sequence[Any]) -> Sequence[Any] | None:
        done = _bulk_text(col)
        if done is None or max(map(len, col)) > length:
            return None
        return done

    return bulk


def bulk_for(kind: str) -> Bulk | None:
    if kind == "boolean":
        return _bulk_bool
    if kind in _INT_RANGE:
        return _bulk_int(None if kind == "bigint" else _INT_RANGE[kind])  # SQLite's are 64-bit
    if kind == "double precision":
        return _bulk_float
    if kind.startswith("char"):
        return _bulk_sized(_modifiers(kind, 0)[0])
    if kind == "text":
        return _bulk_text
    return None


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def max_key(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


class RowEncoder:
    """A table's rows, batch by batch, as COPY lines; keeps the largest identity key."""

    def __init__(
        self,
        kinds: list[str],
        *,
        bulk: bool,
        identity: int | None,
        encoders: Sequence[Encoder | None] = (),
        exact: Collection[int] = (),
    ) -> None:
        """``encoders``: where one is given (not None), the column's encoder instead of its
        type's, which then has no bulk encoder. ``exact``: the columns whose type's encoder
        refuses a value it would change (:func:`encoder_for`)."""
        given = list(zip(list(encoders) or [None] * len(kinds), kinds, strict=True))
        self.encoders = [e or encoder_for(k, i in exact) for i, (e, k) in enumerate(given)]
        self.bulk = bulk
        self.bulks = [bulk_for(k) if bulk and e is None else None for e, k in given]
        self.identity = identity
        self.line = "\t".join(["%s"] * len(kinds)) + "\n"
        self.top: int | None = None

    def copy(
        self,
        batches: Iterable[list[Sequence[Any]]],
        write: Callable[[str], object],
        progress: Callable[[int], object],
        refuse: Callable[[list[Encoder], list[Sequence[Any]], int], None],
    ) -> int:
        """Write the COPY lines of ``batches``; the number of rows. A value the column's
        encoder refuses makes ``refuse(encoders, rows, rows_before)`` raise (:class:`Refused`)."""
        n = 0
        # closed here, not by the garbage collector after the source has closed its
        # connection (which the source's cursor cleanup would raise about) on a refusal
        with closing(iter(batches)) as it:  # type: ignore[type-var]
            for rows in it:
                cols = list(zip(*rows, strict=True))
                try:
                    fields = [
                        _column(bulk, enc, col)
                        for bulk, enc, col in zip(self.bulks, self.encoders, cols, strict=True)
                    ]
                except ValueError:
                    refuse(self.encoders, rows, n)
                    raise
                if type(rows[0]) is not tuple or fields != cols:  # a changed column is a list
                    rows = list(zip(*fields, strict=True))  # tuples, for %
                write("".join(map(self.line.__mod__, rows)))
                if self.identity is not None and (key := _largest(cols[self.identity])) is not None:
                    self.top = max_key(self.top, int(key))
                n += len(rows)
                progress(len(rows))
        return n


class Refused(ExportError):
    """A value its column's encoder refuses. The message names the first of its batch (table,
    column, row); ``reasons`` says, for each column of the batch that refused a value, by its
    index, which row and why (its first)."""

    def __init__(self, message: str, reasons: dict[int, str]) -> None:
        super().__init__(message)
        self.reasons = reasons

    @property
    def column(self) -> int:
        """The column of the value the message names."""
        return next(iter(self.reasons))


@dataclass
class Refusal:
    """Names the first value of a batch that its column's encoder refuses: its table, column
    and row, by its primary key, else by its rowid, else by its place."""

    key: str
    names: list[str]
    kinds: list[str]
    pk: list[int]

    def naming(
        self, rowid_of: Callable[[int], int | None] | None
    ) -> Callable[[list[Encoder], list[Sequence[Any]], int], None]:
        """:meth:`raise_for` as a RowEncoder's ``refused`` callback; ``rowid_of(n)`` gives
        the rowid of the n-th row of the table, if it has rowids."""
        return lambda encoders, rows, done: self.raise_for(encoders, rows, done, rowid_of)

    def raise_for(
        self,
        encoders: list[Encoder],
        rows: list[Sequence[Any]],
        done: int,
        rowid_of: Callable[[int], int | None] | None,
    ) -> None:
        """Raise :class:`Refused` for ``rows``, which follow ``done`` rows; ``rowid_of(n)``
        gives the rowid of the n-th row."""
        reasons: dict[int, str] = {}
        first = ""
        for n, row in enumerate(rows, done + 1):
            for i, value in enumerate(row):
                if value is None or i in reasons:
                    continue
                try:
                    encoders[i](value)
                except ValueError as e:
                    if self.pk:
                        where = ", ".join(f"{self.names[j]}={_show(row[j])}" for j in self.pk)
                    elif rowid_of is not None and (rowid := rowid_of(n)) is not None:
                        where = f"rowid {rowid}"
                    else:
                        where = f"row {n}"
                    reasons[i] = f"{where}: {e}"
                    first = first or (
                        f"cannot copy {self.key}.{self.names[i]} ({where}) to PostgreSQL"
                        f" {self.kinds[i]}: {e}"
                    )
        if reasons:
            raise Refused(first, reasons)


def _column(bulk: Bulk | None, enc: Encoder, col: tuple) -> Sequence:
    """A batch's values of one column, ready for ``%s``: by the column's bulk encoder where it
    takes them all (NULLs aside), else value by value."""
    if bulk is not None:
        if (done := bulk(col)) is not None:
            return done
        values = [v for v in col if v is not None]
        if not values:
            return [NULL] * len(col)
        if len(values) < len(col) and (done := bulk(values)) is not None:
            it = iter(done)
            return [NULL if v is None else next(it) for v in col]
    return [NULL if v is None else enc(v) for v in col]


def _largest(col: Sequence[Any]) -> Any:
    try:
        return max(col)
    except TypeError:  # NULLs
        keys = [v for v in col if v is not None]
        return max(keys) if keys else None
