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
    userinfo, at, after = rest.partition("@")
    # credentials end at the first @, if the user name before it holds no / (a path's @)
    if at and "/" not in userinfo.partition(":")[0]:
        username, colon, secret = userinfo.partition(":")
        password = secret if colon else None
        rest = after
    rest, question, query = rest.partition("?")
    location, slash, database = rest.partition("/")
    if location.startswith("["):  # an IPv6 address
        host, _, port = location[1:].partition("]")
        colon, port = port[:1], port[1:]
    else:
        host, colon, port = location.partition(":")
    if colon and not (colon == ":" and port.isdigit()):
        raise ValueError("the port is not a number")
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(query):
        values.setdefault(key, []).append(value)
    return URL(
        drivername=name,
        username=None if username is None else unquote(username),
        password=None if password is None else unquote(password),
        host=host or None,
        port=int(port) if colon else None,
        database=unquote(database) if slash else None,
        query={k: v[0] if len(v) == 1 else tuple(v) for k, v in values.items()},
    )


__all__ = ["URL", "parse_url"]
