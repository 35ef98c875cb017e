"""The redaction rules as a host declares them: parsed, checked against a table's columns (every
refusal names the key), and the guard that lists personal-looking columns nobody covered."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_backup_manager.engine.redaction import (
    ColumnFacts,
    Profile,
    RedactionError,
    facts_of,
    looks_personal,
    problems,
    profile_from_mapping,
    unredacted,
)


def shop() -> dict[str, list[ColumnFacts]]:
    md = sa.MetaData()
    sa.Table(
        "users",
        md,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("code", sa.String(8), unique=True),
        sa.Column("nick", sa.String(20)),
        sa.Column("initials", sa.String(6)),
        sa.Column("phone", sa.String(30)),
        sa.Column("born", sa.Date),
        sa.Column("small", sa.Integer, unique=True),
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_email", sa.String(255), sa.ForeignKey("users.email")),
        sa.Column("total", sa.Numeric(10, 2), nullable=False),
        sa.Column("shipToStreet", sa.Text),
    )
    sa.Table("sessions", md, sa.Column("token", sa.String(64), primary_key=True))
    sa.Table(
        "events", md, sa.Column("id", sa.Integer, primary_key=True), schema="audit"
    ).append_column(sa.Column("ip", sa.String(45)))
    return facts_of(md.tables.values())


def found(rules: dict[str, str]) -> list[str]:
    return problems(profile_from_mapping("vendor", rules), shop())


def test_a_profile_parses_column_and_table_rules_and_schema_keys():
    p = profile_from_mapping(
        "vendor",
        {
            "users.email": "email",
            "orders.total": "fixed:0",
            "sessions": "no_rows",
            "audit.events.ip": "null",
            "public.users.nick": "name",
        },
    )
    assert p.columns[("users", "email")].name == "email"
    assert str(p.columns[("orders", "total")]) == "fixed:0"
    assert p.tables["sessions"].name == "no_rows"
    assert ("audit.events", "ip") in p.columns
    assert ("users", "nick") in p.columns  # public. is the default schema's key
    assert found({"users.nick": "name", "sessions": "no_rows", "audit.events.ip": "null"}) == []
    assert p.rules()["sessions"] == "no_rows"
    assert "1 table" in p.summary() or "tables" in p.summary()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("rot13", "unknown rule 'rot13'"),
        ("fixed", "unknown rule 'fixed'"),
        (3, "a rule is a string"),
    ],
)
def test_an_unknown_rule_is_refused_naming_the_key(rule, message):
    with pytest.raises(RedactionError, match="users.email") as e:
        profile_from_mapping("vendor", {"users.email": rule})
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"customers.email": "email"}, "'customers.email': no such table 'customers'"),
        ({"users.mail": "email"}, "'users.mail': table 'users' has no column 'mail'"),
        ({"nothing": "no_rows"}, "'nothing': no such table"),
        ({"users.email": "null"}, "'users.email': null into a NOT NULL column"),
        ({"orders.total": "fixed:lots"}, "fixed value 'lots' is not a numeric value"),
        ({"users.nick": "fixed:" + "x" * 21}, "longer than the column's 20 characters"),
        ({"users.born": "blank"}, "a date column has no empty value"),
        ({"users.born": "hash"}, "hash cannot make a date value"),
        ({"users.code": "hash"}, "hash into 8 characters would collide"),
        ({"users.small": "hash"}, "4-byte integer would collide"),
        ({"users.nick": "email"}, "email needs a column of at least"),
        ({"orders.total": "name"}, "name makes text"),
        ({"users.initials": "name"}, "name needs a column of at least 7 characters"),
        ({"users.email": "no_rows"}, "'users.email': no such table"),  # schema users
        ({"sessions.token": "hash", "sessions": "no_rows"}, "its table is no_rows already"),
    ],
)
def test_a_rule_that_cannot_apply_is_refused_naming_the_key(rules, message):
    try:
        out = found(rules)
    except RedactionError as e:
        out = [str(e)]
    assert any(message in p for p in out), out


def test_foreign_keys_stay_whole_or_the_pair_is_named():
    # the child hashed alone, the parent hashed alone, the child given another rule
    assert any("hash users.email too" in p for p in found({"orders.user_email": "hash"}))
    assert any(
        "orders.user_email -> users.email" in p and "hash both" in p
        for p in found({"users.email": "hash"})
    )
    assert any(
        "may only be hashed" in p
        for p in found({"orders.user_email": "null", "users.email": "hash"})
    )
    assert found({"orders.user_email": "hash", "users.email": "hash"}) == []
    # a parent replaced by another rule breaks the key: refused
    assert any("referenced column may only be hashed" in p for p in found({"users.email": "email"}))
    # the child's table copied without rows: nothing to break
    assert found({"users.email": "email", "orders": "no_rows"}) == []


@pytest.mark.parametrize(
    "name",
    ["email", "user_email", "contactEmail", "phone", "mobile", "password_hash", "passwd",
     "pwd", "api_key", "apiKey", "auth_token", "client_secret", "salt", "iban", "ssn",
     "address", "shipToStreet", "zip", "zipcode", "ip", "last_login_ip", "ip_address",
     "birth_date", "date_of_birth", "dob", "first_name", "surname"],
)  # fmt: skip
def test_personal_looking_names_are_seen(name):
    assert looks_personal(name)


@pytest.mark.parametrize(
    "name",
    ["id", "description", "zipper_count", "shipping", "total", "status", "recipe", "created_at",
     "skip", "tip", "equipment", "ship_to"],
)  # fmt: skip
def test_ordinary_names_are_not_flagged(name):
    assert not looks_personal(name)


def test_the_guard_lists_uncovered_personal_columns_and_keep_silences_one():
    facts = shop()
    full = unredacted(None, facts)
    assert "users.phone" in full and "users.email" in full and "sessions.token" in full
    p = profile_from_mapping(
        "vendor", {"users.email": "email", "users.phone": "keep", "sessions": "skip"}
    )
    listed = unredacted(p, facts)
    assert "users.email" not in listed and "users.phone" not in listed
    assert "sessions.token" not in listed
    assert "orders.shipToStreet" in listed and "audit.events.ip" in listed


def test_a_profile_without_rules_says_so():
    assert Profile("empty").summary() == "nothing redacted"


def test_a_name_cut_to_the_shortest_column_allowed_still_differs_from_the_one_it_replaces():
    """``name`` gives the next surname where the pseudonym is the value itself; cut to a column
    of NAME_MIN_LENGTH characters or more, the two still differ (the next surname never starts
    with the same letter), so the rule never gives a value back. Shorter columns are refused."""
    from flask_backup_manager.engine.redaction import FIRST_NAMES, LAST_NAMES, NAME_MIN_LENGTH

    for size in range(NAME_MIN_LENGTH, NAME_MIN_LENGTH + 12):
        for first in FIRST_NAMES:
            for i, last in enumerate(LAST_NAMES):
                following = LAST_NAMES[(i + 1) % len(LAST_NAMES)]
                assert f"{first} {last}"[:size] != f"{first} {following}"[:size]
    assert found({"users.nick": "name"}) == []  # 20 characters: allowed
