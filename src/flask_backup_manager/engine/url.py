"""Database URLs read without SQLAlchemy, which costs 0.2 s to import: the exports that need no
SQLAlchemy ``Table`` (SQLite to SQLite, PostgreSQL to ``postgres``) never load it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

_SCHEME = re.compile(r"[\w+]+")


@dataclass(frozen=True)
class URL:
    """The parts of a database URL, named as on SQLAlchemy's ``URL``, which the sources accept
    in its place. The password is left out of the repr, as SQLAlchemy does."""

    drivername: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    #: a parameter given more than once maps to a tuple of its values
    query: dict[str, str | tuple[str, ...]] = field(default_factory=dict)

    def get_backend_name(self) -> str:
        """``postgresql`` for ``postgresql+psycopg``."""
        return self.drivername.split("+")[0]


def parse_url(text: str) -> URL:
    """``text`` read as SQLAlchemy's ``make_url`` reads it: ``name://user:password@host:port/
    database?query``, every part but the name optional; %-escapes undone in the user name,
    password and database; a query parameter without a value left out. ValueError where it
    cannot be read (a bad scheme, or a port that is not a number)."""
    name, sep, rest = text.partition("://")
    if not sep or not _SCHEME.fullmatch(name):
        raise ValueError("not a database URL")
    username = password = None
    # the user name runs to the first : or / and may hold @ (user@server); the password
    # runs from that : to the next @ and may hold : and /. Without a password, the user
    # name ends at the last @ before that first : or /
    end = min((i for i in (rest.find(":"), rest.find("/")) if i >= 0), default=len(rest))
    if rest[end : end + 1] == ":" and "@" in rest[end:]:
        at = rest.index("@", end)
        username, password, rest = rest[:end], rest[end + 1 : at], rest[at + 1 :]
    elif "@" in rest[:end]:
        at = rest.rindex("@", 0, end)
        username, rest = rest[:at], rest[at + 1 :]
    rest, _, query = rest.partition("?")
    location, slash, database = rest.partition("/")
    if location.startswith("[") and "]" in location[2:]:  # an IPv6 address
        host, _, after = location[1:].rpartition("]")
        colon, port = after[:1], after[1:]
        if after and colon != ":":
            raise ValueError("not a database URL")
    else:
        host, colon, port = location.partition(":")
    try:
        port_number = int(port) if colon else None
    except ValueError:
        raise ValueError("the port is not a number") from None
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(query):
        values.setdefault(key, []).append(value)
    return URL(
        drivername=name,
        username=None if username is None else unquote(username),
        password=None if password is None else unquote(password),
        host=host or None,
        port=port_number,
        database=unquote(database) if slash else None,
        query={k: v[0] if len(v) == 1 else tuple(v) for k, v in values.items()},
    )


__all__ = ["URL", "parse_url"]
