"""PostgreSQL -> ``postgres`` format: objects that depend on each other across kinds (domains
whose CHECK calls a function, functions taking a domain or reading a table in a SQL-standard
body) and custom collations (issue 11). Each source is built for real, exported, restored with
the real psql as an ordinary database owner, and used as the app would use it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_backup_manager.engine import export

from ..conftest import run_psql
from ..services import REQUIRE
from .test_dump_safety_postgres import OVERRIDE, restored, sql_outside_copy, without_restrict
from .test_postgres_to_postgres import assert_same_database, restore, schema_dump

DOMAIN_CALLING_A_FUNCTION = r"""
CREATE SCHEMA app;
CREATE FUNCTION app.is_valid(code text) RETURNS boolean LANGUAGE sql IMMUTABLE
    AS $$ SELECT code ~ '^[A-Z]{3}$' $$;
CREATE FUNCTION app.is_short(code text) RETURNS boolean LANGUAGE sql IMMUTABLE
    RETURN length(code) <= 3;
CREATE FUNCTION app.default_code() RETURNS text LANGUAGE sql IMMUTABLE RETURN 'AAA';
CREATE DOMAIN app.code AS text DEFAULT app.default_code()
    CHECK (app.is_valid(VALUE)) CHECK (app.is_short(VALUE));
CREATE TABLE app.items (id integer PRIMARY KEY, code app.code NOT NULL);
INSERT INTO app.items VALUES (1, 'ABC'), (2, 'XYZ');
INSERT INTO app.items (id) VALUES (3);
CREATE FUNCTION app.describe(c app.code) RETURNS text LANGUAGE sql IMMUTABLE
    RETURN 'code ' || c;
CREATE FUNCTION app.codes() RETURNS SETOF app.code LANGUAGE sql STABLE
    BEGIN ATOMIC SELECT code FROM app.items ORDER BY id; END;
-- a domain made before the function its CHECK calls, which takes another domain
CREATE DOMAIN app.word AS text;
CREATE FUNCTION app.is_word(w app.code) RETURNS boolean LANGUAGE sql IMMUTABLE
    RETURN w::text <> 'ZZZ';
ALTER DOMAIN app.word ADD CONSTRAINT word_is_word CHECK (app.is_word(VALUE::app.code));
CREATE TABLE app.words (w app.word);
INSERT INTO app.words VALUES ('ABC');
"""


def export_and_restore(source: str, target: str, psql: Path, tmp_path: Path) -> Path:
    out = tmp_path / "objects.postgres.sql.gz"
    export(source, "postgres", out)
    restore(psql, target, out)
    return out


class Base(DeclarativeBase):
    pass


class Item(Base):
    """The app's model of ``app.items``: ``code`` is filled by the domain's default."""

    __tablename__ = "items"
    __table_args__ = {"schema": "app"}
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.Text, server_default=sa.FetchedValue())


class User(Base):
    __tablename__ = "users"
    __table_args__ = {"schema": "app"}
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.Text)
    nick: Mapped[str | None] = mapped_column(sa.Text)
    surname: Mapped[str | None] = mapped_column(sa.Text)


@contextmanager
def app_session(url: str) -> Iterator[Session]:
    """A session of the app's models on the database at ``url``."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def test_a_domain_whose_check_calls_a_function_restores_and_is_enforced(
    pg_url, owner_db, psql, tmp_path
):
    run_psql(psql, pg_url, stdin=DOMAIN_CALLING_A_FUNCTION.encode())
    export_and_restore(pg_url, owner_db, psql, tmp_path)
    assert_same_database(psql, pg_url, owner_db)
    with app_session(owner_db) as session:
        items = session.scalars(sa.select(Item).order_by(Item.id))
        assert [(i.id, i.code) for i in items] == [(1, "ABC"), (2, "XYZ"), (3, "AAA")]
        session.add(Item(id=4))  # the domain's default, which calls a function
        session.commit()
        assert session.get(Item, 4).code == "AAA"
        for bad in ("abc", "ABCD"):  # each CHECK calls a function
            session.add(Item(id=5, code=bad))
            with pytest.raises(sa.exc.IntegrityError) as refused:
                session.commit()
            assert isinstance(refused.value.orig, psycopg.errors.CheckViolation)
            session.rollback()
    with psycopg.connect(owner_db, autocommit=True) as con:
        assert con.execute(
            "SELECT app.describe('ABC'), array(SELECT c::text FROM app.codes() c)"
        ).fetchone() == ("code ABC", ["ABC", "XYZ", "AAA", "AAA"])
        with pytest.raises(psycopg.errors.CheckViolation, match="word_is_word"):
            con.execute("INSERT INTO app.words VALUES ('ZZZ')")


def test_a_not_valid_domain_check_comes_after_the_rows_it_was_never_checked_against(
    pg_url, owner_db, psql, tmp_path
):
    run_psql(
        psql,
        pg_url,
        stdin=b"""
        CREATE DOMAIN public.positive AS integer;
        CREATE TABLE public.t (n public.positive);
        INSERT INTO public.t VALUES (5), (-1);
        ALTER DOMAIN public.positive ADD CONSTRAINT positive_n CHECK (VALUE > 0) NOT VALID;
        """,
    )
    export_and_restore(pg_url, owner_db, psql, tmp_path)
    assert_same_database(psql, pg_url, owner_db)
    with psycopg.connect(owner_db, autocommit=True) as con:
        assert con.execute("SELECT n FROM public.t ORDER BY n").fetchall() == [(-1,), (5,)]
        assert con.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'positive_n'"
        ).fetchone() == (False,)
        with pytest.raises(psycopg.errors.CheckViolation):
            con.execute("INSERT INTO public.t VALUES (-2)")


def test_functions_whose_sql_bodies_read_tables_sequences_and_views_come_after_them(
    pg_url, owner_db, psql, tmp_path
):
    """A SQL-standard body (``BEGIN ATOMIC``, ``RETURN``) is parsed when the function is
    made, so what it reads must exist by then; a view may call one of them in turn."""
    run_psql(
        psql,
        pg_url,
        stdin=b"""
        CREATE SEQUENCE public.ticket_no START 100;
        CREATE DOMAIN public.ticket AS bigint DEFAULT nextval('public.ticket_no');
        CREATE TABLE public.orders (id integer PRIMARY KEY, t public.ticket);
        INSERT INTO public.orders (id) VALUES (1), (2);
        CREATE FUNCTION public.order_count() RETURNS bigint LANGUAGE sql STABLE
            BEGIN ATOMIC SELECT count(*) FROM public.orders; END;
        CREATE FUNCTION public.next_ticket() RETURNS bigint LANGUAGE sql
            RETURN nextval('public.ticket_no');
        CREATE VIEW public.summary AS SELECT public.order_count() AS n;
        CREATE FUNCTION public.summary_n() RETURNS bigint LANGUAGE sql STABLE
            BEGIN ATOMIC SELECT n FROM public.summary; END;
        """,
    )
    export_and_restore(pg_url, owner_db, psql, tmp_path)
    assert_same_database(psql, pg_url, owner_db)
    with psycopg.connect(owner_db, autocommit=True) as con:
        assert con.execute("SELECT public.summary_n(), public.next_ticket()").fetchone() == (
            2,
            102,
        )
        con.execute("INSERT INTO public.orders (id) VALUES (3)")
        assert con.execute("SELECT t FROM public.orders WHERE id = 3").fetchone() == (103,)


#: ICU's collations; a server built without ICU (the embedded one on a laptop) gets libc's
#: in their place, which the checks below tell apart
ICU = """
CREATE COLLATION app.ci (provider = icu, deterministic = false, locale = 'und-u-ks-level2');
CREATE COLLATION app.german (provider = icu, locale = 'de-u-co-phonebk');
"""
NO_ICU = """
CREATE COLLATION app.ci (provider = libc, locale = 'C');
CREATE COLLATION app.german (provider = libc, locale = 'POSIX');
"""

COLLATIONS = r"""
CREATE SCHEMA app;
{providers}
COMMENT ON COLLATION app.ci IS 'case-insensitive';
CREATE COLLATION public.c_utf8_ctype (provider = libc, lc_collate = 'C', lc_ctype = 'C.utf8');
CREATE COLLATION app.c_utf8 (provider = libc, locale = 'C.utf8');
CREATE DOMAIN app.nick AS text COLLATE app.ci;
CREATE TABLE app.users (
    id integer PRIMARY KEY,
    email text COLLATE app.ci NOT NULL,
    nick app.nick,
    surname text COLLATE app.german,
    code text COLLATE public.c_utf8_ctype,
    tag text COLLATE app.c_utf8
);
CREATE UNIQUE INDEX users_email ON app.users (email);
INSERT INTO app.users VALUES
    (1, 'Ann@Example.org', 'Annie', 'Müller', 'b', 'x'),
    (2, 'bob@example.org', 'BOB', 'Mufti', 'A', 'y'),
    (3, 'carl@example.org', 'carl', 'Mahler', 'a', 'z');
"""

#: a collation's properties as the catalog of PostgreSQL 15 to 18 holds them
COLLATION_PROPERTIES = """
    SELECT c.collnamespace::regnamespace::text, c.collname,
           to_jsonb(c) - 'oid' - 'collowner' - 'collnamespace' - 'collversion',
           obj_description(c.oid, 'pg_collation')
    FROM pg_collation c WHERE c.collnamespace NOT IN ('pg_catalog'::regnamespace)
    ORDER BY 1, 2"""


def collations(url: str) -> list[tuple]:
    with psycopg.connect(url) as con:
        return con.execute(COLLATION_PROPERTIES).fetchall()


@pytest.fixture
def icu(pg_url) -> bool:
    """Whether the server has ICU. Debian's has (CI requires it); the embedded server a laptop
    falls back to may be built without it: then libc's collations take ICU's places."""
    with psycopg.connect(pg_url) as con:  # its catalog may list ICU's even so: try one
        try:
            con.execute("CREATE COLLATION public.fbm_probe (provider = icu, locale = 'und')")
            found = True
        except psycopg.errors.FeatureNotSupported:
            found = False
        con.rollback()
    assert found or not REQUIRE, "the PostgreSQL of CI must have ICU"
    return found


def test_custom_collations_are_made_before_what_uses_them_with_the_same_properties(
    pg_url, owner_db, psql, tmp_path, icu
):
    run_psql(psql, pg_url, stdin=COLLATIONS.format(providers=ICU if icu else NO_ICU).encode())
    out = export_and_restore(pg_url, owner_db, psql, tmp_path)
    assert sql_outside_copy(out).isascii()
    assert_same_database(psql, pg_url, owner_db)
    made = collations(owner_db)
    assert made == collations(pg_url)
    assert [(schema, name) for schema, name, *_ in made] == [
        ("app", "c_utf8"),
        ("app", "ci"),
        ("app", "german"),
        ("public", "c_utf8_ctype"),
    ]
    checks = """
        SELECT (SELECT array_agg(id ORDER BY id) FROM app.users
                WHERE email = 'ANN@EXAMPLE.ORG' OR nick = 'annie' OR nick = 'Bob'),
               (SELECT array_agg(surname ORDER BY surname) FROM app.users),
               (SELECT array_agg(code ORDER BY code) FROM app.users),
               'a' = 'A' COLLATE app.ci, 'a' < 'B' COLLATE app.c_utf8"""
    with psycopg.connect(pg_url) as a, psycopg.connect(owner_db, autocommit=True) as b:
        assert b.execute(checks).fetchone() == a.execute(checks).fetchone()
        if icu:
            assert b.execute(checks).fetchone() == (
                [1, 2],
                ["Mahler", "Müller", "Mufti"],  # phone-book German: ü sorts as ue
                ["A", "a", "b"],
                True,
                False,
            )
    if not icu:
        return  # what follows is the case-insensitive index of ICU's app.ci
    with app_session(owner_db) as session:
        found = session.scalars(sa.select(User).where(User.email == "ANN@EXAMPLE.ORG")).all()
        assert [(u.id, u.nick, u.surname) for u in found] == [(1, "Annie", "Müller")]
        session.add(User(id=4, email="dora@example.org"))
        session.commit()
        session.add(User(id=5, email="BOB@example.ORG"))  # the index is case-insensitive
        with pytest.raises(sa.exc.IntegrityError) as refused:
            session.commit()
        assert isinstance(refused.value.orig, psycopg.errors.UniqueViolation)


@pytest.fixture
def marker_dir():
    """An empty directory every OS user may write to (psql's ``\\!`` runs as the tests'
    user)."""
    path = Path(tempfile.mkdtemp(prefix="fbm-marker-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_collation_named_and_located_like_psql_commands_restores_as_it_was(
    pg_url, owner_db, make_pg_db, psql, tmp_path, marker_dir, icu
):
    """ICU keeps any text after ``-x-`` (a private-use tag) in the locale, newlines, quotes
    and backslashes included: the locale is as hostile as the name and the comment (without
    ICU, libc takes only real locales: the name and the comment are)."""
    touch = f"\\! touch {marker_dir}"
    name = f"c'\"\n{touch}/n\n-- \\restrict é"
    locale = f"und-u-ks-level2-x-';\n{touch}/locale\n\"--\\unrestrict \r\n$$ é"
    with psycopg.connect(pg_url, autocommit=True) as con:
        coll = sql.SQL("public.{}").format(sql.Identifier(name))
        con.execute(
            sql.SQL(
                "CREATE COLLATION {} (provider = icu, deterministic = false, locale = {})"
                if icu
                else "CREATE COLLATION {} (provider = libc, locale = 'C')"
            ).format(coll, sql.Literal(locale))
        )
        con.execute(
            sql.SQL("COMMENT ON COLLATION {} IS {}").format(coll, sql.Literal(f"\n{touch}/c\n"))
        )
        con.execute(sql.SQL("CREATE TABLE public.t (s text COLLATE {} UNIQUE)").format(coll))
        con.execute("INSERT INTO public.t VALUES ('Ab'), ('c')")
    out = tmp_path / "coll.postgres.sql.gz"
    export(pg_url, "postgres", out)
    assert sql_outside_copy(out).isascii()
    restored(psql, owner_db, out)
    assert_same_database(psql, pg_url, owner_db)
    assert collations(owner_db) == collations(pg_url)
    with psycopg.connect(owner_db) as con:
        found = con.execute("SELECT count(*) FROM public.t WHERE s = 'AB'").fetchone()
        assert found == ((1,) if icu else (0,))  # case-insensitive with ICU, not in libc's C
    # the quoting alone holds, without psql's \restrict
    bare = make_pg_db()
    restored(psql, bare, without_restrict(out, tmp_path), OVERRIDE)
    assert schema_dump(psql, bare) == schema_dump(psql, owner_db)
    assert list(marker_dir.iterdir()) == []
