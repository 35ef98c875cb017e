"""The column rules as PostgreSQL expressions: what the PostgreSQL source selects instead of a
column whose values a profile replaces, so that the replacing runs in the server, inside the
source's own query (``COPY (SELECT ...) TO STDOUT`` or the ``SELECT`` the SQLite writers read),
and no original value ever reaches this process. Built only from ``sql.Identifier`` (the
column), ``sql.Literal`` (the values) and the type's name as ``format_type()`` printed it.

The key of ``hash``, ``email`` and ``name`` never leaves the server. A query's text reaches
``pg_stat_activity`` and, with ``log_statement = all``, the server's log, and so do its bind
parameters; so the key is neither. :func:`key_query` makes it inside the server session, at
the start of the snapshot's transaction, from two ``gen_random_uuid()`` (built in since
PostgreSQL 13, no pgcrypto), and keeps only HMAC's two padded keys, ``K xor ipad`` and
``K xor opad``, as transaction-local settings (``set_config(..., true)``, allowed in a READ
ONLY transaction, gone at its end). The expressions read them back through uncorrelated scalar
subqueries, which the planner runs once per query (an InitPlan), not once per row; then
HMAC-SHA256 is ``sha256((K xor opad) || sha256((K xor ipad) || msg))`` with PostgreSQL's own
``sha256()`` (RFC 2104, a 32-byte key padded with zeros to SHA-256's 64-byte block). Nothing
here is cryptography of our own: the test checks the result against Python's ``hmac``.

What each rule computes follows :mod:`..redaction` (its docstring): ``msg`` is the value's
text (``value::text``) in UTF-8, and the digest becomes hex cut to the column's length, an
integer in the type's positive range, the bytes, or a UUID. Every result is cast to the
column's own type (its domain included), so a fixed value of the wrong kind, or a domain's
CHECK the result does not pass, fails the export instead of the restore.

Two SHA-256 per row cost more than the rest of a COPY: where a column's values repeat, the
source reads the expression from a LATERAL subquery (:func:`lateral`) that the planner
memoizes, so each value is hashed once (see ``PostgresSource._memoized``); where the
column's statistics say a few values are nearly all its rows, each of those is hashed once in
an InitPlan instead (:func:`common_values`), cheaper still.
"""

from __future__ import annotations

from psycopg import sql

from . import EMAIL_PREFIX, EMAIL_SUFFIX, FIRST_NAMES, LAST_NAMES, ColumnFacts, Rule, email_digits

#: the transaction-local settings holding HMAC's padded keys, as hex
IPAD_SETTING = "fbm.hmac_ipad"
OPAD_SETTING = "fbm.hmac_opad"

#: a random 32-byte key, made in the server: never in a query's text or parameters
RANDOM_KEY = sql.SQL(
    "pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.gen_random_uuid()::text"
    " || pg_catalog.gen_random_uuid()::text, 'UTF8'))"
)

#: each rule's text of the empty value, by kind (:func:`..redaction.blank_value`)
_BLANK = {
    "text": "",
    "integer": "0",
    "float": "0",
    "numeric": "0",
    "boolean": "false",
    "bytes": "",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "json": "{}",
}


def key_query(key: sql.Composable = RANDOM_KEY) -> sql.Composed:
    """The statement that sets this transaction's HMAC keys from ``key`` (an SQL expression
    of 32 bytes or fewer; by default a random one made in the server). It answers the
    settings' lengths, not their values: the padded keys never travel to the client."""
    pad = sql.SQL(
        "pg_catalog.string_agg(pg_catalog.lpad(pg_catalog.to_hex("
        "pg_catalog.get_byte(k.k, i) # {}), 2, '0'), '' ORDER BY i)"
    )
    return sql.SQL(
        "SELECT pg_catalog.length(pg_catalog.set_config({ipad_name}, {ipad}, true))"
        " + pg_catalog.length(pg_catalog.set_config({opad_name}, {opad}, true))"
        " FROM (SELECT pg_catalog.substr({key} || pg_catalog.decode(pg_catalog.repeat('00', 64),"
        " 'hex'), 1, 64) AS k) AS k, pg_catalog.generate_series(0, 63) AS i"
    ).format(
        ipad_name=sql.Literal(IPAD_SETTING),
        opad_name=sql.Literal(OPAD_SETTING),
        ipad=pad.format(sql.Literal(0x36)),
        opad=pad.format(sql.Literal(0x5C)),
        key=key,
    )


def _setting(name: str) -> sql.Composed:
    # a scalar subquery without a reference to the row: an InitPlan, run once per query
    return sql.SQL("(SELECT pg_catalog.decode(pg_catalog.current_setting({}), 'hex'))").format(
        sql.Literal(name)
    )


def digest(column: sql.Composable) -> sql.Composed:
    """HMAC-SHA256 of the column's text under this transaction's key (:func:`key_query`):
    32 bytes, NULL for NULL."""
    return sql.SQL(
        "pg_catalog.sha256({} || pg_catalog.sha256({} || pg_catalog.convert_to(({})::text,"
        " 'UTF8')))"
    ).format(_setting(OPAD_SETTING), _setting(IPAD_SETTING), column)


def hashed(column: sql.Composable, col: ColumnFacts) -> sql.Composable:
    """``hash``: the digest in the form the column's kind holds."""
    d = digest(column)
    if col.kind == "text":
        return sql.SQL("pg_catalog.left(pg_catalog.encode({}, 'hex'), {})").format(
            d, sql.Literal(min(64, col.size or 64))
        )
    if col.kind == "integer":
        size = col.size or 8
        value = sql.SQL(
            "(('x' || pg_catalog.encode(pg_catalog.substr({}, 1, 8), 'hex'))::bit(64)::int8"
            " & 9223372036854775807)"
        ).format(d)
        if size >= 8:
            return value
        return sql.SQL("({} % {})").format(value, sql.Literal(1 << (8 * size - 1)))
    if col.kind == "bytes":
        return d
    if col.kind == "uuid":
        return sql.SQL("pg_catalog.encode(pg_catalog.substr({}, 1, 16), 'hex')::uuid").format(d)
    raise ValueError(f"hash cannot make a {col.kind} value")


def reads_value(rule: Rule) -> bool:
    """Whether ``rule``'s result depends on the value (``hash``, ``email``, ``name``), not
    only on the column's type."""
    return rule.name in ("hash", "email", "name")


def lateral(expr: sql.Composable, alias: str) -> sql.Composed:
    """``expr`` as a LATERAL subquery named ``alias`` of one column ``v``: the planner may
    keep its results by the values it reads (a ``Memoize`` node), so that a value repeated
    on many rows is hashed once. ``OFFSET 0`` keeps the subquery from being flattened."""
    return sql.SQL("LATERAL (SELECT {} OFFSET 0) AS {} (v)").format(expr, sql.Identifier(alias))


#: the statistics' row of one column of a table (by its oid): its most common values
_STATS = sql.SQL(
    "pg_catalog.pg_stats AS s JOIN pg_catalog.pg_class AS c ON c.relname = s.tablename"
    " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace AND n.nspname = s.schemaname"
    " WHERE c.oid = {} AND s.attname = {} AND NOT s.inherited"
)

#: a column whose most common values, by its statistics, hold this share of its rows (NULLs
#: included) is redacted by :func:`common_values`; and how many values that takes at most
COMMON_SHARE = 0.99
COMMON_MOST = 100

#: the number of those values for a column (``%s``: the table's oid, the column's name), if
#: they hold :data:`COMMON_SHARE` of its rows and are no more than :data:`COMMON_MOST`
COMMON_QUERY = sql.SQL(
    "SELECT pg_catalog.array_length(s.most_common_freqs, 1) FROM {} AND s.null_frac +"
    " (SELECT pg_catalog.sum(f) FROM pg_catalog.unnest(s.most_common_freqs) AS f) >= {}"
    " AND pg_catalog.array_length(s.most_common_freqs, 1) <= {}"
).format(
    _STATS.format(sql.Placeholder(), sql.Placeholder()),
    sql.Literal(COMMON_SHARE),
    sql.Literal(COMMON_MOST),
)


def common_values(
    rule: Rule,
    column: sql.Composable,
    col: ColumnFacts,
    type_name: str,
    table_oid: int,
    count: int,
) -> sql.Composed:
    """:func:`rule_expr` for a column (of a built-in type: no domain, whose CHECK a value the
    statistics kept might no longer pass) whose values are nearly all among the ``count``
    most common ones its statistics name (a status, a country, a blank filler): each of those
    is read from ``pg_stats`` and replaced in an uncorrelated subquery (an InitPlan: hashed
    once per query, in the server: no value is in the query's text); a row's value is matched
    to them by the type's own ``=``, under the byte order ``"C"`` for text (a case-insensitive
    collation would match ``A`` to ``a``, whose texts the rule reads differently; ``=`` of
    ``character`` ignores trailing spaces, as its text does); the rest are computed row by
    row. Cheaper than a memoizing LATERAL subquery: one comparison per row."""
    stats = _STATS.format(sql.Literal(table_oid), sql.Literal(col.name))
    whens = []
    for i in range(1, count + 1):
        value = sql.SQL("((s.most_common_vals::text)::{}[])[{}]").format(
            sql.SQL(type_name), sql.Literal(i)
        )
        replaced = sql.SQL("(SELECT {} FROM (SELECT {} AS v FROM {}) AS m)").format(
            rule_expr(rule, sql.SQL("m.v"), col, type_name), value, stats
        )
        whens.append(sql.SQL("WHEN (SELECT {} FROM {}) THEN {}").format(value, stats, replaced))
    matched = sql.SQL('({}) COLLATE "C"' if col.kind == "text" else "({})").format(column)
    return sql.SQL("(CASE {} {} ELSE {} END)").format(
        matched, sql.SQL(" ").join(whens), rule_expr(rule, column, col, type_name)
    )


def _names(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(map(sql.Literal, names)))


def rule_expr(
    rule: Rule, column: sql.Composable, col: ColumnFacts, type_name: str
) -> sql.Composable:
    """The expression replacing ``column`` (described by ``col``, of the type PostgreSQL
    writes ``type_name``, from ``format_type(atttypid, atttypmod)``) under ``rule``,
    parenthesised and cast to that type."""
    if rule.name == "null":
        value: sql.Composable = sql.NULL
    elif rule.name == "blank":
        value = sql.Literal(_BLANK[col.kind])
    elif rule.name == "fixed":
        value = sql.Literal(rule.value or "")
    elif rule.name == "hash":
        value = hashed(column, col)
    elif rule.name == "email":
        value = sql.SQL("({} || pg_catalog.left(pg_catalog.encode({}, 'hex'), {}) || {})").format(
            sql.Literal(EMAIL_PREFIX),
            digest(column),
            sql.Literal(email_digits(col.size)),
            sql.Literal(EMAIL_SUFFIX),
        )
    elif rule.name == "name":
        # the digest once per row (two SHA-256), read twice: PostgreSQL does not share a
        # repeated expression, and writing digest() twice hashed every value twice; never
        # the name it replaces: then the next surname
        first = sql.SQL("({})[pg_catalog.get_byte(h.d, 0) % {} + 1] || ' ' || ").format(
            _names(FIRST_NAMES), sql.Literal(len(FIRST_NAMES))
        )
        last = sql.SQL("({})[(pg_catalog.get_byte(h.d, 1) + {}) % {} + 1]")
        names = [
            first + last.format(_names(LAST_NAMES), sql.Literal(n), sql.Literal(len(LAST_NAMES)))
            for n in (0, 1)
        ]
        if col.size is not None:
            size = sql.Literal(col.size)
            names = [sql.SQL("pg_catalog.left({}, {})").format(n, size) for n in names]
        value = sql.SQL(
            # compared byte for byte, as the SQLite side does: a case-insensitive collation
            # of the column would take "vera holm" for the "Vera Holm" it turns into
            "(SELECT CASE WHEN n.a = n.v THEN n.b ELSE n.a END FROM (SELECT {} AS a, {} AS b,"
            ' ({})::text COLLATE "C" AS v FROM (SELECT {} AS d) AS h) AS n)'
        ).format(names[0], names[1], column, digest(column))
    else:
        raise ValueError(f"{rule} is not a column rule")
    return sql.SQL("(({})::{})").format(value, sql.SQL(type_name))


__all__ = [
    "COMMON_QUERY",
    "IPAD_SETTING",
    "OPAD_SETTING",
    "common_values",
    "digest",
    "hashed",
    "key_query",
    "lateral",
    "reads_value",
    "rule_expr",
]
