"""Redaction: a named profile of rules that replace a column's values, or a table's rows, in
the copy. This module holds what every dialect shares: the rules and their parsing, the facts
about a column they are checked against, the checks (a rule that cannot apply is refused
before anything is written), the guard against personal-looking columns nobody covered, and
the one per-backup key. How a rule becomes an SQL expression is each source's:
:mod:`.postgres` and :mod:`.sqlite` beside this file.

What every dialect's ``hash`` means (so that a value and the foreign keys naming it meet in
the copy): ``HMAC-SHA256(key, text)`` where ``text`` is the value's text (PostgreSQL: its
type's output, ``value::text``; SQLite: the TEXT as is, an INTEGER or REAL in decimal, a BLOB's
bytes), UTF-8; then, by the column's kind, the digest as lowercase hex cut to the column's
length (``text``), its first 8 bytes big-endian with the top bit cleared, reduced modulo the
type's positive range (``integer``), its 32 bytes (``bytes``), or its first 16 bytes
(``uuid``). ``email`` is ``u-`` + the first 16 hex digits + ``@example.invalid``; ``name`` is
``FIRST_NAMES[digest[0] % 64] + " " + LAST_NAMES[digest[1] % 64]`` (cut to the column's
length), unless that is the value itself: then the next surname,
``LAST_NAMES[(digest[1] + 1) % 64]``. NULL stays NULL under
``hash``, ``email`` and ``name``; ``null``, ``blank`` and ``fixed`` replace every value.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

#: the column rules, in the order the docs give them
COLUMN_RULES = ("null", "blank", "fixed", "hash", "email", "name", "keep")
#: the table rules: schema kept and rows dropped, or the table left out
TABLE_RULES = ("no_rows", "skip")

#: the kinds of column a rule is checked against (:attr:`ColumnFacts.kind`)
KINDS = (
    "text",
    "integer",
    "float",
    "numeric",
    "boolean",
    "bytes",
    "uuid",
    "date",
    "datetime",
    "time",
    "json",
    "other",
)

#: ``email`` output: the hex digits it holds, and the shortest column it fits
EMAIL_DIGITS = 16
EMAIL_SUFFIX = "@example.invalid"
EMAIL_PREFIX = "u-"
EMAIL_MIN_LENGTH = len(EMAIL_PREFIX) + 8 + len(EMAIL_SUFFIX)


def email_digits(size: int | None) -> int:
    """The hex digits an ``email`` holds in a column of ``size`` characters (None: no limit)."""
    if size is None:
        return EMAIL_DIGITS
    return min(EMAIL_DIGITS, size - len(EMAIL_PREFIX) - len(EMAIL_SUFFIX))


# fmt: off
FIRST_NAMES = (
    "Ada", "Alan", "Alice", "Amara", "Anna", "Arjun", "Bea", "Ben", "Carla", "Chen", "Clara",
    "Dan", "Dara", "Eli", "Emma", "Eva", "Felix", "Fern", "Gil", "Hana", "Ivan", "Ida", "Jon",
    "June", "Kai", "Kira", "Lars", "Lena", "Leo", "Lina", "Mara", "Max", "Mei", "Mila", "Nia",
    "Noah", "Nora", "Olaf", "Omar", "Pia", "Quinn", "Rafa", "Rosa", "Sam", "Sara", "Sven",
    "Tara", "Teo", "Uma", "Vera", "Vik", "Wen", "Xena", "Yara", "Yuri", "Zoe", "Ana", "Bo",
    "Cleo", "Dev", "Ezra", "Finn", "Gaia", "Hugo",
)
LAST_NAMES = (
    "Abbott", "Baker", "Castro", "Dahl", "Ebert", "Fischer", "Garcia", "Hale", "Ibsen",
    "Jansen", "Kovac", "Lind", "Moreau", "Nagy", "Okafor", "Petrov", "Quist", "Rossi", "Sato",
    "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zeller", "Adler", "Berg", "Costa",
    "Diaz", "Engel", "Falk", "Gray", "Horn", "Ito", "Jung", "Klein", "Lopez", "Mohr", "Nolan",
    "Ortiz", "Park", "Quinn", "Ruiz", "Stone", "Torres", "Unger", "Voss", "Wolf", "Young",
    "Zhou", "Arnold", "Brandt", "Cole", "Dietz", "Eriksen", "Frost", "Gomez", "Holm", "Imai",
    "Juarez", "Kaya", "Lang", "Marsh",
)
# fmt: on

#: the shortest column ``name`` fits: a pseudonym cut to it keeps its surname's first letter,
#: which the next surname never shares, so "never the name it replaces" holds when cut too
NAME_MIN_LENGTH = max(map(len, FIRST_NAMES)) + 2


class RedactionError(ValueError):
    """A profile that cannot be applied; the message names the key and says why."""


@dataclass(frozen=True)
class Rule:
    """One rule: a column rule of :data:`COLUMN_RULES` or a table rule of :data:`TABLE_RULES`;
    ``value`` is the text after ``fixed:``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return f"fixed:{self.value}" if self.name == "fixed" else self.name

    @property
    def for_table(self) -> bool:
        return self.name in TABLE_RULES


def parse_rule(text: object, key: str) -> Rule:
    """The rule ``text`` says (``"hash"``, ``"fixed:0"``...) for ``key``; RedactionError if
    it is none."""
    if not isinstance(text, str):
        raise RedactionError(f"redaction {key!r}: a rule is a string, not {text!r}")
    name, colon, value = text.partition(":")
    if name == "fixed" and colon:
        return Rule("fixed", value)
    if colon or name not in COLUMN_RULES + TABLE_RULES or name == "fixed":
        rules = ", ".join(r if r != "fixed" else "fixed:<value>" for r in COLUMN_RULES)
        raise RedactionError(
            f"redaction {key!r}: unknown rule {text!r}: use one of {rules}, "
            f"or for a table {', '.join(TABLE_RULES)}"
        )
    return Rule(name)


@dataclass(frozen=True)
class ColumnFacts:
    """What a rule is checked against, from the database's catalog or the host's models."""

    table: str  #: the table's key (``name``, or ``schema.name`` outside the default schema)
    name: str
    kind: str  #: one of :data:`KINDS`
    #: text: the most characters; integer: its bytes (2, 4, 8); None: no limit
    size: int | None = None
    nullable: bool = True
    #: the (table key, column) this column's single-column foreign key references
    references: tuple[str, str] | None = None
    #: the column alone is a primary key or unique
    unique: bool = False
    #: computed by the database from other columns (a generated column)
    generated: bool = False


@dataclass(frozen=True)
class Profile:
    """A named set of rules: ``columns`` by (table key, column), ``tables`` by table key."""

    name: str
    columns: Mapping[tuple[str, str], Rule] = field(default_factory=dict)
    tables: Mapping[str, Rule] = field(default_factory=dict)

    def rules(self) -> dict[str, str]:
        """The rules as the manifest and the pages show them: ``{"users.email": "email",
        "sessions": "no_rows"}``, sorted."""
        out = {f"{t}.{c}": str(r) for (t, c), r in self.columns.items()}
        out.update({t: str(r) for t, r in self.tables.items()})
        return dict(sorted(out.items()))

    def summary(self) -> str:
        """One line on what the profile does, for the create page and the CLI."""
        redacted = [k for k, r in self.columns.items() if r.name != "keep"]
        tables = {k for k, _ in redacted}
        parts = []
        if redacted:
            parts.append(
                f"{len(redacted)} column{'s' * (len(redacted) != 1)} redacted "
                f"in {len(tables)} table{'s' * (len(tables) != 1)}"
            )
        for what in TABLE_RULES:
            named = sorted(t for t, r in self.tables.items() if r.name == what)
            if named:
                verb = "copied without rows" if what == "no_rows" else "left out"
                parts.append(f"{', '.join(named)} {verb}")
        return "; ".join(parts) or "nothing redacted"

    def column_rule(self, table: str, column: str) -> Rule | None:
        """The rule replacing ``table.column``'s values; None when they are copied as they are."""
        rule = self.columns.get((table, column))
        return None if rule is None or rule.name == "keep" else rule

    def redacted_tables(self) -> set[str]:
        """The keys of the tables with a column whose values are replaced."""
        return {t for (t, c) in self.columns if self.column_rule(t, c) is not None}


def table_key(schema: str | None, name: str) -> str:
    """A table's key from its schema and name (``public`` and ``main`` are the default)."""
    return name if schema in (None, "", "public", "main") else f"{schema}.{name}"


def split_key(key: str, rule: Rule) -> tuple[str, str | None]:
    """(table key, column) of a profile's key: a table rule's key names a table (``name`` or
    ``schema.name``), a column rule's its column last (``table.column`` or
    ``schema.table.column``)."""
    parts = key.split(".")
    if rule.for_table:
        if len(parts) > 2 or not all(parts):
            raise RedactionError(f"redaction {key!r}: {rule} names a table: table or schema.table")
        return table_key(parts[0] if len(parts) == 2 else None, parts[-1]), None
    if len(parts) not in (2, 3) or not all(parts):
        raise RedactionError(
            f"redaction {key!r}: {rule} names a column: table.column or schema.table.column"
        )
    return table_key(parts[0] if len(parts) == 3 else None, parts[-2]), parts[-1]


def profile_from_mapping(name: str, rules: Mapping[str, object]) -> Profile:
    """A profile from the config's form ``{"users.email": "email", "sessions": "no_rows"}``."""
    if not isinstance(rules, Mapping):
        raise RedactionError(f"redaction profile {name!r}: a mapping of keys to rules")
    columns: dict[tuple[str, str], Rule] = {}
    tables: dict[str, Rule] = {}
    for key, text in rules.items():
        if not isinstance(key, str):
            raise RedactionError(f"redaction profile {name!r}: key {key!r} is not a string")
        rule = parse_rule(text, key)
        table, column = split_key(key, rule)
        if column is None:
            tables[table] = rule
        else:
            columns[(table, column)] = rule
    return Profile(name, columns, tables)


def merged(base: Profile, extra: Mapping[tuple[str, str], Rule]) -> Profile:
    """``base`` with the column rules ``extra`` declares where ``base`` says nothing (a
    profile's own rule wins over one declared on the model's column)."""
    columns = {**extra, **base.columns}
    return Profile(base.name, columns, dict(base.tables))


# -- checks ------------------------------------------------------------------------------


def problems(profile: Profile, facts: Mapping[str, list[ColumnFacts]]) -> list[str]:
    """Every reason ``profile`` cannot be applied to the tables ``facts`` describes (by table
    key), each a sentence naming the key; empty when it can. ``facts`` holds every table of
    the database, so that a foreign key from a table the profile does not name is seen."""
    out: list[str] = []
    by_key = {(f.table, f.name): f for cols in facts.values() for f in cols}
    for table in profile.tables:
        if table not in facts:
            out.append(f"redaction {table!r}: no such table")
    for (table, column), rule in profile.columns.items():
        key = f"{table}.{column}"
        if table not in facts:
            out.append(f"redaction {key!r}: no such table {table!r}")
            continue
        col = by_key.get((table, column))
        if col is None:
            out.append(f"redaction {key!r}: table {table!r} has no column {column!r}")
            continue
        if table in profile.tables and rule.name != "keep":
            out.append(f"redaction {key!r}: its table is {profile.tables[table]} already")
            continue
        reason = rule_problem(rule, col)
        if reason:
            out.append(f"redaction {key!r}: {reason}")
    out.extend(_key_problems(profile, facts))
    return out


def rule_problem(rule: Rule, col: ColumnFacts) -> str | None:
    """Why ``rule`` cannot apply to ``col`` (a sentence without the key), or None."""
    if rule.name == "keep":
        return None
    if col.generated:
        return "a generated column is computed from others: redact those"
    if rule.name == "null":
        return None if col.nullable else "null into a NOT NULL column: use blank or fixed:<value>"
    if col.unique and rule.name in ("blank", "fixed", "name"):
        # one value (or a few hundred pseudonyms) on every row: the copy's unique index fails
        # to build, in the export or only in the vendor's restore
        return f"{rule.name} repeats its values, and this column is unique: use hash or null"
    if rule.name == "blank":
        return (
            None
            if blank_value(col.kind) is not None
            else (f"a {col.kind} column has no empty value: use null or fixed:<value>")
        )
    if rule.name == "fixed":
        return fixed_problem(rule.value or "", col)
    if rule.name == "hash":
        if col.kind not in ("text", "integer", "bytes", "uuid"):
            return f"hash cannot make a {col.kind} value: use null, blank or fixed:<value>"
        if col.unique or col.references:
            if col.kind == "text" and col.size is not None and col.size < 16:
                return (
                    f"hash into {col.size} characters would collide in a unique column: "
                    "it needs at least 16"
                )
            if col.kind == "integer" and (col.size or 8) < 8:
                return (
                    f"hash into a {col.size}-byte integer would collide in a unique column: "
                    "use a bigint column, or keep"
                )
        return None
    if rule.name in ("email", "name"):
        if col.kind != "text":
            return f"{rule.name} makes text, and this is a {col.kind} column"
        if rule.name == "email" and col.size is not None and col.size < EMAIL_MIN_LENGTH:
            return f"email needs a column of at least {EMAIL_MIN_LENGTH} characters"
        if rule.name == "name" and col.size is not None and col.size < NAME_MIN_LENGTH:
            return (
                f"name needs a column of at least {NAME_MIN_LENGTH} characters: cut shorter, "
                "a pseudonym can be the value itself (use hash or fixed:<value>)"
            )
        return None
    return f"{rule} is a table rule: name the table, not a column"


def blank_value(kind: str) -> object | None:
    """The empty value of a column of ``kind``, or None where it has none."""
    return {
        "text": "",
        "integer": 0,
        "float": 0.0,
        "numeric": Decimal(0),
        "boolean": False,
        "bytes": b"",
        "uuid": uuid.UUID(int=0),
        "json": {},
    }.get(kind)


_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def fixed_value(value: str, kind: str) -> object:
    """``value`` (the text after ``fixed:``) as a value of ``kind``; ValueError if it is not one."""
    parse = {
        "text": str,
        "integer": int,
        "float": float,
        "numeric": Decimal,
        "boolean": lambda v: _BOOLEANS[v.lower()],
        "uuid": uuid.UUID,
        "date": dt.date.fromisoformat,
        "datetime": dt.datetime.fromisoformat,
        "time": dt.time.fromisoformat,
        "json": json.loads,
        "bytes": lambda v: v.encode(),
    }.get(kind)
    if parse is None:
        raise ValueError(f"a fixed value for a {kind} column")
    try:
        return parse(value)
    except (ValueError, KeyError, InvalidOperation, json.JSONDecodeError) as e:
        raise ValueError(str(e)) from e


def fixed_problem(value: str, col: ColumnFacts) -> str | None:
    try:
        fixed_value(value, col.kind)
    except ValueError:
        article = "an" if col.kind[0] in "aeiou" else "a"
        return f"fixed value {value!r} is not {article} {col.kind} value"
    if col.kind == "text" and col.size is not None and len(value) > col.size:
        return f"fixed value {value!r} is longer than the column's {col.size} characters"
    if col.kind == "integer" and col.size and abs(int(value)) >= 1 << (8 * col.size - 1):
        return f"fixed value {value!r} does not fit a {col.size}-byte integer"
    return None


def _key_problems(profile: Profile, facts: Mapping[str, list[ColumnFacts]]) -> list[str]:
    """Foreign keys stay whole: a column that references another may only be redacted with
    ``hash``, and then the one it references must be hashed too; a hashed column that others
    reference must have them hashed with it."""
    out = []
    by_key = {(f.table, f.name): f for cols in facts.values() for f in cols}
    for cols in facts.values():
        for col in cols:
            if col.references is None or col.table in profile.tables:
                continue
            child = profile.column_rule(col.table, col.name)
            parent_table, parent_col = col.references
            parent = profile.column_rule(parent_table, parent_col)
            if parent_table in profile.tables:  # no rows or left out: the key goes with it
                continue
            pair = f"{col.table}.{col.name} -> {parent_table}.{parent_col}"
            if child is not None and child.name != "hash":
                out.append(
                    f"redaction {col.table}.{col.name!s}: a foreign key column may only be "
                    f"hashed ({pair})"
                )
            elif child is not None and (parent is None or parent.name != "hash"):
                out.append(
                    f"redaction {col.table}.{col.name}: hashed, but the column it references "
                    f"is not: hash {parent_table}.{parent_col} too ({pair})"
                )
            elif child is not None and _hash_form(col) != _hash_form(
                by_key.get((parent_table, parent_col), col)
            ):  # e.g. varchar(20) -> text: 20 hex digits never equal 64
                out.append(
                    f"redaction {col.table}.{col.name}: hashed into another form than the "
                    f"column it references (its type or length differs), so the keys would "
                    f"not meet ({pair})"
                )
            elif child is None and parent is not None:
                out.append(
                    f"redaction {parent_table}.{parent_col}: {parent} breaks the foreign key "
                    f"{pair}: hash both, or neither"
                    if parent.name == "hash"
                    else f"redaction {parent_table}.{parent_col}: a referenced column may only "
                    f"be hashed, with its foreign keys ({pair})"
                )
    return out


def _hash_form(col: ColumnFacts) -> tuple[str, int | None]:
    """What ``hash`` makes of a column's values: a hashed key meets the key it names only
    where both have one form (the same kind, the hex cut to the same length, the same
    integer range)."""
    if col.kind == "text":
        return col.kind, min(col.size or 64, 64)
    if col.kind == "integer":
        return col.kind, col.size or 8
    return col.kind, None


def check(profile: Profile, facts: Mapping[str, list[ColumnFacts]]) -> None:
    """Raise RedactionError with every problem of :func:`problems`, one per line."""
    found = problems(profile, facts)
    if found:
        raise RedactionError(f"profile {profile.name!r}: " + "; ".join(found))


# -- the guard ---------------------------------------------------------------------------

#: words of a column's name that say it holds personal or secret data (whole words)
PERSONAL_WORDS = frozenset(
    "ip ssn pwd dob zip tel iban bic salt otp pin phone mobile fax vat".split()
)
#: ... beginnings of its words
PERSONAL_STARTS = (
    "email", "mail", "phone", "passw", "passphrase", "token", "secret", "apikey",
    "credential", "address", "street", "postcode", "postal", "zipcode", "birth", "firstname",
    "lastname", "surname", "fullname", "username", "passport", "salary", "ipaddr", "session",
    "cookie", "signature",
)  # fmt: skip
#: ... and runs of its words, joined (``api_key``, ``date_of_birth``, ``private_key``)
PERSONAL_RUNS = (
    "apikey", "accesskey", "privatekey", "secretkey", "dateofbirth", "firstname", "lastname",
    "fullname", "ipaddress", "creditcard", "cardnumber", "accountnumber",
)  # fmt: skip


def words(name: str) -> list[str]:
    """The words of a column name: ``userEmail2`` and ``user_email_2`` give user, email."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-z]+", spaced.lower()) if w]


def looks_personal(column: str) -> bool:
    """Whether a column's name looks like personal or secret data (e-mail, phone, password,
    token, secret, API key, salt, IBAN, SSN, address, street, zip, IP, birth date...)."""
    ws = words(column)
    joined = "".join(ws)
    return any(w in PERSONAL_WORDS or w.startswith(PERSONAL_STARTS) for w in ws) or any(
        run in joined for run in PERSONAL_RUNS
    )


def unredacted(profile: Profile | None, facts: Mapping[str, list[ColumnFacts]]) -> list[str]:
    """``table.column`` of every column whose name :func:`looks_personal` and that ``profile``
    does not cover (no rule of its own, ``keep`` included, and no table rule on its table),
    in table order. With no profile (a full copy): every such column."""
    out = []
    for table, cols in facts.items():
        if profile is not None and table in profile.tables:
            continue
        for col in cols:
            if profile is not None and (table, col.name) in profile.columns:
                continue
            if not col.generated and looks_personal(col.name):
                out.append(f"{table}.{col.name}")
    return out


# -- one backup's redaction --------------------------------------------------------------


@dataclass(frozen=True)
class Redaction:
    """A profile applied to one backup, with that backup's key: random, held in memory only
    (never logged, stored nor written), so that a hashed value cannot be traced back."""

    profile: Profile
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def column_rule(self, table: str, column: str) -> Rule | None:
        return self.profile.column_rule(table, column)

    def table_rule(self, table: str) -> str | None:
        """``"no_rows"``, ``"skip"`` or None for the table ``table``."""
        rule = self.profile.tables.get(table)
        return rule.name if rule is not None else None

    def keys_with(self, rule: str) -> list[str]:
        """The table keys whose table rule is ``rule``."""
        return sorted(t for t, r in self.profile.tables.items() if r.name == rule)


def as_redaction(redaction: Redaction | Profile | None) -> Redaction | None:
    if isinstance(redaction, Profile):
        return Redaction(redaction)
    return redaction


def facts_of(tables: Iterable[object]) -> dict[str, list[ColumnFacts]]:
    """:class:`ColumnFacts` of SQLAlchemy ``Table`` objects (the host's models, or tables
    reflected from a database), by table key."""
    import sqlalchemy as sa

    out: dict[str, list[ColumnFacts]] = {}
    for table in tables:
        assert isinstance(table, sa.Table)
        key = table_key(table.schema, table.name)
        uniques = {
            next(iter(c.columns)).name
            for c in table.constraints
            if isinstance(c, sa.PrimaryKeyConstraint | sa.UniqueConstraint) and len(c.columns) == 1
        }
        uniques |= {
            next(iter(i.columns)).name for i in table.indexes if i.unique and len(i.columns) == 1
        }
        refs: dict[str, tuple[str, str]] = {}
        for fk in table.foreign_key_constraints:
            if len(fk.elements) == 1:
                el = fk.elements[0]
                try:
                    target = el.column
                except sa.exc.NoReferencedTableError:
                    continue
                refs[el.parent.name] = (
                    table_key(target.table.schema, target.table.name),
                    target.name,
                )
        out[key] = [
            ColumnFacts(
                key,
                c.name,
                *kind_of_sqlalchemy(c.type),
                nullable=bool(c.nullable) and not c.primary_key,
                references=refs.get(c.name),
                unique=c.name in uniques,
                generated=c.computed is not None,
            )
            for c in table.columns
        ]
    return out


def kind_of_sqlalchemy(type_: object) -> tuple[str, int | None]:
    """(kind, size) of a SQLAlchemy column type."""
    import sqlalchemy as sa

    t = type_
    if isinstance(t, sa.TypeDecorator):
        t = t.impl_instance if hasattr(t, "impl_instance") else t.impl
    if isinstance(t, sa.Boolean):
        return "boolean", None
    if isinstance(t, sa.BigInteger):
        return "integer", 8
    if isinstance(t, sa.SmallInteger):
        return "integer", 2
    if isinstance(t, sa.Integer):
        # SQLite's INTEGER holds 8 bytes; elsewhere INTEGER is 4
        return "integer", 4
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float):
        return "numeric", None
    if isinstance(t, sa.Float):
        return "float", None
    if isinstance(t, sa.DateTime):
        return "datetime", None
    if isinstance(t, sa.Date):
        return "date", None
    if isinstance(t, sa.Time):
        return "time", None
    if isinstance(t, sa.JSON):
        return "json", None
    if isinstance(t, sa.Uuid):
        return "uuid", None
    if isinstance(t, sa.LargeBinary | sa.types._Binary):
        return "bytes", None
    if isinstance(t, sa.Enum):
        return "other", None
    if isinstance(t, sa.String):
        return "text", t.length
    return "other", None


__all__ = [
    "COLUMN_RULES",
    "TABLE_RULES",
    "ColumnFacts",
    "Profile",
    "Redaction",
    "RedactionError",
    "Rule",
    "check",
    "facts_of",
    "looks_personal",
    "parse_rule",
    "problems",
    "profile_from_mapping",
    "unredacted",
]
