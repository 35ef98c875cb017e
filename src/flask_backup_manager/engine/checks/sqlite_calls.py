"""Which functions an SQLite schema calls that SQLite does not define itself.

A ``sqlite3_db`` file is opened by the vendor, usually in the sqlite3 shell, which defines
functions of its own: ``edit()`` runs an editor program (any command), ``readfile()`` and
``writefile()`` reach the file system, and it turns ``load_extension()`` on. A view or trigger
of the customer's schema that calls one runs it when the vendor merely queries the view. The
export cannot tell an app's own function from the shell's by name, so every call of a
function that this Python's SQLite library does not define is reported (as a warning in the
backup's log), and so are the built-ins that load code.

"Defined by SQLite" is what ``PRAGMA function_list`` and ``PRAGMA module_list`` list on a
plain in-memory connection of the library that opens the file. The calls are found by
tokenising the schema SQL as SQLite does (strings, quoted identifiers and comments are
skipped; a quoted name before ``(`` is a call too: ``"edit"('x')`` runs edit).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable

from ..base import shown
from .sqlite_tokens import tokens

#: built-ins that load or reach outside the database: reported although SQLite defines them
LOADS_CODE = frozenset({"load_extension", "fts3_tokenizer"})

#: SQLite's keywords (https://sqlite.org/lang_keywords.html). A keyword before ``(`` is syntax
#: (``IN (``, ``OVER (``, ``CAST(``), except those below.
KEYWORDS = frozenset(
    """ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE
    BEGIN BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE
    CROSS CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE
    DEFERRED DELETE DESC DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE
    EXISTS EXPLAIN FAIL FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS
    HAVING IF IGNORE IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS
    ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL
    NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY
    RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING
    RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION
    TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW
    WITH WITHOUT""".split()
)
#: keywords SQLite also takes as a function's name before ``(`` (``left(x)`` calls left())
CALLABLE_KEYWORDS = frozenset({"LEFT", "RIGHT", "FULL", "INNER", "OUTER", "CROSS", "NATURAL"})
#: operators that call the function of their name: ``a REGEXP b`` is ``regexp(b, a)``
OPERATORS = frozenset({"REGEXP", "MATCH", "LIKE", "GLOB"})
#: after these (and an optional ``schema.``) a name before ``(`` names a table or view
_NAMES_A_TABLE = frozenset({"INTO", "TABLE", "VIEW", "EXISTS"})


@functools.cache
def defined() -> frozenset[str]:
    """The functions and table-valued modules SQLite itself defines, lower case."""
    con = sqlite3.connect(":memory:")
    try:
        names = {r[0] for r in con.execute("SELECT name FROM pragma_function_list")}
        names |= {r[0] for r in con.execute("SELECT name FROM pragma_module_list")}
    finally:
        con.close()
    return frozenset(n.lower() for n in names) - LOADS_CODE


def _name(kind: str, text: str) -> str:
    """A word or quoted identifier as SQLite reads it."""
    if kind == "word":
        return text
    close = {"[": "]"}.get(text[0], text[0])
    body = text[1:-1] if len(text) > 1 and text.endswith(close) else text[1:]
    return body if text[0] == "[" else body.replace(close * 2, close)


def calls(sql: str, type: str) -> list[str]:
    """The names of the functions (and table-valued functions) ``sql`` calls, in order, each
    once, as written. ``type`` is the ``sqlite_master`` type: in a table only expressions
    nested in parentheses (CHECK, DEFAULT, generated columns) are looked at, as a name before
    ``(`` in a column definition is its type (``VARCHAR(10)``)."""
    toks = list(tokens(sql))
    found: dict[str, str] = {}
    depth = 0
    first_paren = True
    for i, (kind, text) in enumerate(toks):
        if text == "(":
            depth += 1
            first_paren = False
            continue
        if text == ")":
            depth -= 1
            continue
        upper = text.upper() if kind == "word" else ""
        if upper in OPERATORS:
            found.setdefault(upper.lower(), upper.lower())
            continue
        if kind not in ("word", "quoted") or i + 1 >= len(toks) or toks[i + 1][1] != "(":
            continue
        if upper in KEYWORDS and upper not in CALLABLE_KEYWORDS:
            continue
        if type == "table" and depth < 2:
            continue
        if type == "index" and first_paren:  # CREATE INDEX i ON t(...): t is the table
            continue
        if _names_a_table(toks, i) or _is_a_type(toks, i) or _is_a_cte(toks, i):
            continue
        name = _name(kind, text)
        found.setdefault(name.lower(), name)
    return list(found.values())


def _names_a_table(toks: list[tuple[str, str]], i: int) -> bool:
    """``INSERT INTO t(``, ``CREATE VIEW [IF NOT EXISTS] [s.]v(``."""
    j = i - 2 if i >= 2 and toks[i - 1][1] == "." else i  # past a schema qualifier
    return j >= 1 and toks[j - 1][0] == "word" and toks[j - 1][1].upper() in _NAMES_A_TABLE


def _is_a_type(toks: list[tuple[str, str]], i: int) -> bool:
    """The type of a CAST: ``AS VARCHAR(10)``, ``AS UNSIGNED BIG INT(8)``."""
    j = i - 1
    while j >= 0 and toks[j][0] == "word" and toks[j][1].upper() not in KEYWORDS:
        j -= 1
    return j >= 0 and j < i and toks[j][1].upper() == "AS" and toks[j][0] == "word"


def _is_a_cte(toks: list[tuple[str, str]], i: int) -> bool:
    """``WITH c(x) AS (...)``: a common table expression's name and columns."""
    depth, j = 0, i + 1
    while j < len(toks):
        depth += {"(": 1, ")": -1}.get(toks[j][1], 0)
        if depth == 0:
            break
        j += 1
    after = [t[1].upper() for t in toks[j + 1 : j + 4]]
    return (
        bool(after)
        and after[0] == "AS"
        and (after[1:2] == ["("] or after[1:2] == ["MATERIALIZED"] or after[1:2] == ["NOT"])
    )


def undefined_calls(sql: str, type: str) -> list[str]:
    """The functions ``sql`` calls that SQLite does not define (or that load code)."""
    known = defined()
    return [
        n
        for n in calls(sql, type)
        if n.lower() not in known and not n.lower().startswith("pragma_")
    ]


def module(sql: str) -> str | None:
    """The module of a ``CREATE VIRTUAL TABLE ... USING module(...)``."""
    toks = list(tokens(sql))
    for i, (kind, text) in enumerate(toks[:-1]):
        if kind == "word" and text.upper() == "USING" and toks[i + 1][0] in ("word", "quoted"):
            return _name(*toks[i + 1])
    return None


def warnings(objects: Iterable[tuple[str, str, str | None]]) -> list[str]:
    """One warning per ``(type, name, sql)`` schema object that calls functions SQLite does
    not define, or is a virtual table of a module it does not define."""
    out = []
    known = defined()
    for type, name, sql in objects:
        if not sql:
            continue
        names = undefined_calls(sql, type)
        if names:
            listed = ", ".join(f"'{shown(n)}'()" for n in names[:10])
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            out.append(
                f"{type} '{shown(name, 60)}' calls functions SQLite does not define: "
                f"{listed}{more}; they run as whatever defines them (the sqlite3 shell's "
                "edit() runs a command): open the file with sqlite3 -safe"
            )
        mod = module(sql) if type == "table" else None
        if mod is not None and mod.lower() not in known:
            out.append(
                f"virtual table '{shown(name, 60)}' uses module '{shown(mod)}', "
                "which SQLite does not define: open the file with sqlite3 -safe"
            )
    return out


__all__ = ["calls", "defined", "undefined_calls", "warnings"]
