"""What a host model's TypeDecorator stores on each database, for the writers of both
directions: whether its stored values can be copied as they are, and whether they are pickles
(never read: reading one unpickles it)."""

from __future__ import annotations

import sqlalchemy as sa

#: SQLAlchemy's binary types, whose values are bytes on every dialect
BINARY = (sa.LargeBinary, sa.BINARY, sa.VARBINARY)
#: the kinds of stored value that are the same Python value on SQLite and on PostgreSQL
SAME_STORAGE = (BINARY, sa.String, sa.Integer, sa.Float)


def stored(t: sa.types.TypeEngine, dialect: sa.Dialect) -> sa.types.TypeEngine:
    """The type ``t`` stores its values as on ``dialect``: a TypeDecorator's dialect
    implementation, unwrapped."""
    impl = t.dialect_impl(dialect)
    while isinstance(impl, sa.TypeDecorator):
        impl = impl.impl_instance
    return impl


def stored_alike(t: sa.types.TypeEngine, one: sa.Dialect, other: sa.Dialect) -> bool:
    """Whether ``t`` stores the same kind of value on both dialects (bytes, text, integers,
    floats), each dialect's own class of it aside (PostgreSQL's ``_PGInteger`` is an Integer)."""
    here, there = stored(t, one), stored(t, other)
    return any(isinstance(here, kind) and isinstance(there, kind) for kind in SAME_STORAGE)


def pickles(t: sa.types.TypeEngine, *dialects: sa.Dialect) -> bool:
    """Whether ``t`` is, or decorates, a PickleType, as declared or as it loads on any of
    ``dialects`` (``load_dialect_impl``, ``with_variant``)."""
    for found in (t, *(t.dialect_impl(d) for d in dialects)):
        while isinstance(found, sa.TypeDecorator):
            if isinstance(found, sa.PickleType):
                return True
            found = found.impl_instance
        if isinstance(found, sa.PickleType):
            return True
    return False
