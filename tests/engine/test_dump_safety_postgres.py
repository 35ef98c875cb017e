"""The ``postgres`` format can't be turned against whoever restores it (issue 9).

Each test builds a hostile database for real (as the superuser), exports it and restores the
file with the README's command, ``gunzip -c F | psql -X -v ON_ERROR_STOP=1
--single-transaction -d DB``: as an ordinary database owner, as a superuser (refused by the
file's guard: nothing created), and as a superuser who overrides the guard knowingly. No
marker file may appear: neither from a psql command smuggled in through a name (``\\! touch``)
nor from the customer's functions running ``COPY ... TO PROGRAM`` on the server during the load.
Markers live in a fresh world-writable directory under /tmp, as the server runs as another OS
user than the tests.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from flask_backup_manager.engine import ExportError, export

from ..conftest import run_psql
from .test_postgres_to_postgres import (
    assert_same_database,
    load_hard_schema,
    schema_dump,
    table_checksums,
)

OVERRIDE = {"PGOPTIONS": "-c flask_backup_manager.restore_as_superuser=on"}


@pytest.fixture
def marker_dir():
    """An empty directory every OS user may write to (the server's COPY TO PROGRAM runs as
    the ``postgres`` user, psql's ``\\!`` as the tests' user)."""
    path = Path(tempfile.mkdtemp(prefix="fbm-marker-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def readme_restore(
    psql: Path, url: str, dump: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The README's restore command, as a person types it into a shell."""
    command = (
        f"gunzip -c {shlex.quote(str(dump))} | {shlex.quote(str(psql))}"
        f" -X -v ON_ERROR_STOP=1 --single-transaction -d {shlex.quote(url)}"
    )
    return subprocess.run(
        command, shell=True, capture_output=True, env={**os.environ, **(env or {})}, check=False
    )


def restored(psql: Path, url: str, dump: Path, env: dict[str, str] | None = None) -> str:
    """Restore with the README's command, which must succeed; psql's stderr."""
    out = readme_restore(psql, url, dump, env)
    stderr = out.stderr.decode(errors="replace")
    assert out.returncode == 0, stderr[-3000:]
    return stderr


def without_restrict(dump: Path, tmp_path: Path) -> Path:
    """The file without its ``\\restrict`` / ``\\unrestrict`` lines: the quoting alone must
    keep every name and text out of psql's reach, as an older psql reads the rest."""
    text = gzip.decompress(dump.read_bytes())
    lines = text.split(b"\n")
    assert lines[0].startswith(b"\\restrict ") and lines[-2].startswith(b"\\unrestrict ")
    bare = tmp_path / f"bare-{dump.name}"
    bare.write_bytes(gzip.compress(b"\n".join(lines[1:-2]) + b"\n"))
    return bare


def user_objects(url: str) -> list[tuple[str, str]]:
    """What a restore left in a database: schemas, relations, functions, types, extensions."""
    with psycopg.connect(url) as con:
        con.execute("SET search_path = ''")  # names schema-qualified
        return con.execute(
            """SELECT 'schema', nspname FROM pg_namespace
               WHERE nspname NOT IN ('public', 'information_schema') AND nspname !~ '^pg_'
               UNION ALL SELECT 'relation', oid::regclass::text FROM pg_class
               WHERE relnamespace NOT IN ('pg_catalog'::regnamespace,
                                          'information_schema'::regnamespace)
                 AND relnamespace::regnamespace::text !~ '^pg_toast'
               UNION ALL SELECT 'function', oid::regprocedure::text FROM pg_proc
               WHERE pronamespace NOT IN ('pg_catalog'::regnamespace,
                                          'information_schema'::regnamespace)
               UNION ALL SELECT 'extension', extname FROM pg_extension WHERE extname <> 'plpgsql'
               ORDER BY 1, 2"""
        ).fetchall()


def run(url: str, *statements: sql.Composable | str) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        for statement in statements:
            con.execute(statement)


def database_name(url: str) -> str:
    with psycopg.connect(url) as con:
        return con.execute("SELECT current_database()").fetchone()[0]


@pytest.fixture
def role_db(pg_admin_url):
    """``make(*grants)``: a fresh database owned by a fresh LOGIN role that is not a
    superuser but holds ``grants`` (e.g. ``pg_execute_server_program``); its URL."""
    from sqlalchemy.engine import make_url

    made = []

    def make(*grants: str) -> str:
        role = f"fbm_role_{uuid.uuid4().hex[:10]}"
        run(
            pg_admin_url,
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)),
            *(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(g), sql.Identifier(role))
                for g in grants
            ),
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(role), sql.Identifier(role)
            ),
        )
        made.append(role)
        url = make_url(pg_admin_url).set(username=role, database=role)
        return url.render_as_string(hide_password=False)

    yield make
    for role in made:
        run(
            pg_admin_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(role)),
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)),
        )


# -- restore-time code ------------------------------------------------------------------------

PAYLOAD = """
CREATE FUNCTION public.payload(v integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $body$
BEGIN
    IF pg_catalog.current_database() <> {source} THEN  -- not while the source is built
        RAISE WARNING 'payload ran as %', current_user;
        BEGIN
            EXECUTE 'COPY (SELECT 1) TO PROGRAM ' || quote_literal('touch ' || {marker});
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            EXECUTE 'CREATE EXTENSION IF NOT EXISTS dblink';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END IF;
    RETURN v;
END
$body$;
CREATE DOMAIN public.checked_int AS integer CHECK (public.payload(VALUE) IS NOT NULL);
CREATE TABLE public.t (
    id integer PRIMARY KEY,
    v integer CHECK (public.payload(v) > 0),
    d integer DEFAULT public.payload(7),
    g integer GENERATED ALWAYS AS (public.payload(v) * 2) STORED,
    c public.checked_int
);
INSERT INTO public.t (id, v, c) VALUES (1, 1, 1), (2, 5, 2);
CREATE INDEX t_expr ON public.t (public.payload(v));
CREATE INDEX t_partial ON public.t (id) WHERE public.payload(v) > 1;
CREATE MATERIALIZED VIEW public.mv AS SELECT public.payload(v) AS p FROM public.t;
CREATE VIEW public.vw AS SELECT public.payload(id) AS p FROM public.t;
CREATE TABLE public.u (id integer, CONSTRAINT u_x EXCLUDE USING btree (public.payload(id) WITH =));
INSERT INTO public.u VALUES (1);
"""


@pytest.fixture
def payload_db(pg_url, marker_dir) -> str:
    """A database whose CHECK constraints, domain, generated column, index expressions,
    exclusion constraint and materialized view call a function that, anywhere but in this
    database, tries ``COPY ... TO PROGRAM 'touch MARKER'`` and to create ``dblink``."""
    script = PAYLOAD.format(
        source=psycopg.sql.Literal(database_name(pg_url)).as_string(None),
        marker=psycopg.sql.Literal(str(marker_dir / "copy-to-program")).as_string(None),
    )
    run(pg_url, script)
    return pg_url


def test_restore_as_an_owner_runs_the_functions_harmlessly(
    payload_db, owner_db, psql, tmp_path, marker_dir
):
    out = tmp_path / "payload.postgres.sql.gz"
    export(payload_db, "postgres", out)
    stderr = restored(psql, owner_db, out)
    assert "payload ran as fbm_owner_" in stderr  # the functions did run during the load...
    assert list(marker_dir.iterdir()) == []  # ...and could not reach the server's shell
    assert_same_database(psql, payload_db, owner_db)
    assert ("extension", "dblink") not in user_objects(owner_db)


def test_restore_as_a_superuser_is_refused_before_anything_runs(
    payload_db, make_pg_db, psql, tmp_path, marker_dir
):
    out = tmp_path / "payload.postgres.sql.gz"
    export(payload_db, "postgres", out)
    target = make_pg_db()  # the superuser's own database
    result = readme_restore(psql, target, out)
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert "refusing to restore this flask-backup-manager dump as this role, which is, or" in stderr
    assert "createdb -O restorer newdb" in stderr
    assert "PGOPTIONS='-c flask_backup_manager.restore_as_superuser=on'" in stderr
    assert "payload ran" not in stderr
    assert list(marker_dir.iterdir()) == []
    assert user_objects(target) == []


def test_the_guard_also_refuses_roles_that_can_reach_the_servers_shell_or_files(
    payload_db, role_db, owner_db, psql, tmp_path, marker_dir
):
    """Members of pg_execute_server_program, pg_read/write_server_files, and a superuser's
    session that SET ROLE to an ordinary one (it can RESET ROLE): all refused."""
    out = tmp_path / "payload.postgres.sql.gz"
    export(payload_db, "postgres", out)
    targets = [
        (role_db("pg_execute_server_program"), None),
        (role_db("pg_read_server_files"), None),
        (role_db("pg_write_server_files"), None),
    ]
    owner = re.search(r"//([^@:/]+)", owner_db).group(1)
    as_superuser = re.sub(r"//[^@:/]+", "//postgres", owner_db, count=1)
    targets.append((as_superuser, {"PGOPTIONS": f"-c role={owner}"}))
    for target, env in targets:
        result = readme_restore(psql, target, out, env)
        stderr = result.stderr.decode()
        assert result.returncode != 0, target
        assert "refusing to restore" in stderr, stderr
        assert "payload ran" not in stderr
        assert user_objects(target) == [], target
    assert list(marker_dir.iterdir()) == []


def test_the_guard_refuses_a_role_that_owns_another_database_or_belongs_to_a_role(
    payload_db, role_db, pg_admin_url, psql, tmp_path, marker_dir
):
    """The customer's functions run as the restoring role: one that owns another database
    could change that database's settings and connection limit, one that belongs to a role
    shares its objects and rights. Only a new role that reaches nothing else may load it."""
    out = tmp_path / "payload.postgres.sql.gz"
    export(payload_db, "postgres", out)
    member = role_db("pg_monitor")
    owner = role_db()
    role = database_name(owner)
    other = f"{role}_other"
    run(
        pg_admin_url,
        sql.SQL("CREATE DATABASE {} OWNER {}").format(*map(sql.Identifier, (other, role))),
    )
    try:
        for target, why in (
            (member, "is a member of other roles: pg_monitor"),
            (owner, f"owns other databases: {other}"),
        ):
            result = readme_restore(psql, target, out)
            stderr = result.stderr.decode()
            assert result.returncode != 0, target
            assert why in stderr, stderr
            assert "payload ran" not in stderr
            assert user_objects(target) == [], target
            tool = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "flask_backup_manager",
                    "restore",
                    str(out),
                    "--target",
                    target,
                ],
                capture_output=True,
                text=True,
            )
            assert tool.returncode == 1 and why in tool.stderr, tool.stderr
            assert user_objects(target) == [], target
    finally:
        run(pg_admin_url, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other)))
    assert list(marker_dir.iterdir()) == []


def test_a_client_that_goes_on_after_errors_is_disconnected_by_the_guard(
    payload_db, make_pg_db, psql, tmp_path, marker_dir
):
    """``psql -f FILE`` without ON_ERROR_STOP nor --single-transaction, as a superuser."""
    out = tmp_path / "payload.postgres.sql.gz"
    export(payload_db, "postgres", out)
    target = make_pg_db()
    result = subprocess.run(
        [str(psql), "-X", "-d", target],
        input=gzip.decompress(out.read_bytes()),
        capture_output=True,
    )
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert "refusing to restore" in stderr and "payload ran" not in stderr
    assert list(marker_dir.iterdir()) == []
    assert user_objects(target) == []


def test_a_superuser_may_restore_a_harmless_dump_knowingly(pg_url, make_pg_db, psql, tmp_path):
    load_hard_schema(psql, pg_url)
    out = tmp_path / "hard.postgres.sql.gz"
    export(pg_url, "postgres", out)
    target = make_pg_db()
    restored(psql, target, out, OVERRIDE)
    assert_same_database(psql, pg_url, target)


def test_untrusted_extensions_and_languages_are_left_to_a_superuser(
    pg_url, owner_db, make_pg_db, psql, tmp_path
):
    run(
        pg_url,
        "CREATE EXTENSION dblink",
        "CREATE EXTENSION hstore",
        "CREATE TABLE public.h (id integer PRIMARY KEY, h public.hstore)",
        "INSERT INTO public.h VALUES (1, 'a=>1')",
        # C and internal functions (libc's system() is the classic way from SQL to a shell)
        "CREATE FUNCTION public.sys(integer, integer) RETURNS integer"
        " AS 'int4pl' LANGUAGE internal STRICT",
    )
    out = tmp_path / "ext.postgres.sql.gz"
    result = export(pg_url, "postgres", out)
    warned = " ".join(result.warnings)
    assert "extension dblink is not trusted" in warned
    assert "CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public" in warned
    assert "public.sys(integer,integer) is left out: its language internal is not trusted" in warned
    assert "hstore" not in warned
    restored(psql, owner_db, out)
    made = user_objects(owner_db)
    assert [name for kind, name in made if kind == "extension"] == ["hstore"]
    assert [name for kind, name in made if kind == "relation"] == ["public.h", "public.h_pkey"]
    assert "public.sys(integer,integer)" not in {name for _, name in made}
    assert table_checksums(owner_db) == table_checksums(pg_url)
    # and not even a superuser who overrides the guard gets them from the file
    target = make_pg_db()
    restored(psql, target, out, OVERRIDE)
    names = {name for _, name in user_objects(target)}
    assert (
        "dblink" not in names and "public.sys(integer,integer)" not in names and "hstore" in names
    )


# -- names that psql would read as commands -----------------------------------------------------


def test_cluster_on_an_index_named_like_a_psql_command(
    pg_url, owner_db, psql, tmp_path, marker_dir
):
    index = f"x.i;\n\\! touch {marker_dir}/cluster\n--"
    run(
        pg_url,
        "CREATE TABLE public.t (i integer)",
        "INSERT INTO public.t VALUES (1)",
        sql.SQL("CREATE INDEX {} ON public.t (i)").format(sql.Identifier(index)),
        sql.SQL("ALTER TABLE public.t CLUSTER ON {}").format(sql.Identifier(index)),
    )
    out = tmp_path / "cluster.postgres.sql.gz"
    export(pg_url, "postgres", out)
    restored(psql, owner_db, out)
    assert list(marker_dir.iterdir()) == []
    assert_same_database(psql, pg_url, owner_db)


def test_a_sort_operator_in_a_schema_named_a_paren_b(
    pg_url, owner_db, make_pg_db, psql, tmp_path, marker_dir
):
    command = f"\\! touch {marker_dir}/sortop"
    run(
        pg_url,
        'CREATE SCHEMA "a(b"',
        'CREATE OPERATOR "a(b".< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = int4lt)',
        "CREATE AGGREGATE public.smallest(integer)"
        ' (SFUNC = int4smaller, STYPE = integer, SORTOP = OPERATOR("a(b".<))',
        # names after it that hold quotes and a command, should a quote be left open
        sql.SQL("CREATE TABLE public.{} ({} integer)").format(
            sql.Identifier(f'q"\n{command}\n"'), sql.Identifier(f"'\n{command}\n'")
        ),
        sql.SQL("COMMENT ON TABLE public.{} IS {}").format(
            sql.Identifier(f'q"\n{command}\n"'), sql.Literal(f"\"'\n{command}\n")
        ),
        sql.SQL("INSERT INTO public.{} VALUES (1)").format(sql.Identifier(f'q"\n{command}\n"')),
    )
    out = tmp_path / "sortop.postgres.sql.gz"
    export(pg_url, "postgres", out)
    restored(psql, owner_db, out)
    assert_same_database(psql, pg_url, owner_db)
    bare = make_pg_db()  # the quoting alone holds, without psql's \restrict
    restored(psql, bare, without_restrict(out, tmp_path), OVERRIDE)
    assert schema_dump(psql, bare) == schema_dump(psql, pg_url)
    assert list(marker_dir.iterdir()) == []
    with psycopg.connect(owner_db) as con:
        assert con.execute(
            "SELECT aggsortop::regoperator::text FROM pg_aggregate"
            " WHERE aggfnoid = 'public.smallest'::regproc"
        ).fetchone() == ('"a(b".<(integer,integer)',)


def hostile_names(seed: int, marker: Path, crlf: bool = True):
    """Endless distinct names mixing quotes, backslashes, newlines, CR, psql commands, dollar
    quotes, comment marks and the like, at most 63 bytes (PostgreSQL's limit). Without
    ``crlf``, none holds CR LF (which the sqlite3 shell reads as LF: an SQLite source refuses
    a schema holding one, see test_a_sqlite_name_holding_crlf_...)."""
    rng = random.Random(seed)
    pieces = [
        "'", '"', "\\", "\n", "\r", "\r\n", "go", "/", ".", "\\!", f"\\! touch {marker}/n ",
        "$$", "$fbm_guard$", "$function$", "$body$", "*/", "/*", "--", ";", "(", ")", " ",
        "\t", "\x0b", "\x1b[2J", "é", "\\.", "\\unrestrict", "\\restrict x", "x", "A", "\u2028",
        "ā", "😀", "日",
    ]  # fmt: skip
    n = 0
    while True:
        n += 1
        name = "".join(rng.choice(pieces) for _ in range(rng.randint(2, 6))) + f"_{n}"
        if len(name.encode()) <= 63 and (crlf or "\r\n" not in name):
            yield name


def build_hostile(url: str, seed: int, marker: Path) -> None:
    """One object of every kind the native writer emits, each named, labelled and commented
    with hostile text."""
    names = hostile_names(seed, marker)
    N = lambda: sql.Identifier(next(names))  # noqa: E731
    L = lambda: sql.Literal(next(names))  # noqa: E731
    s = N()
    q = lambda: sql.SQL("{}.{}").format(s, N())  # noqa: E731
    enum, dom, comp, rng_, seq = q(), q(), q(), q(), q()
    fn, agg, agg0, t, parent, part1, part2 = q(), q(), q(), q(), q(), q(), q()
    child, view, mview, trg_fn, mv_col = q(), q(), q(), q(), N()
    c_id, c_txt, c_enum, c_dom, c_gen, c_comp = N(), N(), N(), N(), N(), N()
    ix, uq, ck, pk, fk, stat, trg, trg2, rule, partkey = (
        N(),
        N(),
        N(),
        N(),
        N(),
        q(),
        N(),
        N(),
        N(),
        N(),
    )
    ix2 = N()
    labels = [L(), L(), L()]
    bound1 = L()
    statements = [
        sql.SQL("CREATE SCHEMA {}").format(s),
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(s, L()),
        sql.SQL("CREATE TYPE {} AS ENUM ({})").format(enum, sql.SQL(", ").join(labels)),
        sql.SQL("COMMENT ON TYPE {} IS {}").format(enum, L()),
        sql.SQL("CREATE DOMAIN {} AS text DEFAULT {} CONSTRAINT {} CHECK (VALUE <> {})").format(
            dom, L(), N(), L()
        ),
        sql.SQL('CREATE TYPE {} AS ({} integer, {} text COLLATE "C")').format(comp, N(), N()),
        sql.SQL("CREATE TYPE {} AS RANGE (subtype = float8, subtype_diff = float8mi)").format(rng_),
        sql.SQL(
            "CREATE FUNCTION {}({} integer, {} text DEFAULT {}) RETURNS integer LANGUAGE sql"
            " IMMUTABLE AS {}"
        ).format(
            fn,
            N(),
            N(),
            L(),
            sql.Literal(f"SELECT $1 + length($2 || {sql.Literal(next(names)).as_string(None)})"),
        ),
        sql.SQL("COMMENT ON FUNCTION {}(integer, text) IS {}").format(fn, L()),
        sql.SQL(
            "CREATE AGGREGATE {}(integer) (SFUNC = int4smaller, STYPE = integer,"
            " SORTOP = OPERATOR(pg_catalog.<), INITCOND = {})"
        ).format(agg, sql.Literal("2147483647")),
        sql.SQL("COMMENT ON AGGREGATE {}(integer) IS {}").format(agg, L()),
        sql.SQL("CREATE AGGREGATE {}(*) (SFUNC = int8inc, STYPE = int8, INITCOND = '0')").format(
            agg0
        ),
        sql.SQL("CREATE SEQUENCE {} START 7").format(seq),
        sql.SQL("COMMENT ON SEQUENCE {} IS {}").format(seq, L()),
        sql.SQL("SELECT nextval({})").format(sql.Literal(seq.as_string(None))),
        sql.SQL(
            "CREATE TABLE {} ({} integer GENERATED BY DEFAULT AS IDENTITY,"
            " {} text NOT NULL DEFAULT {},"
            " {} {} DEFAULT {}, {} {}, {} integer GENERATED ALWAYS AS ({} * 2) STORED, {} {},"
            " CONSTRAINT {} PRIMARY KEY ({}), CONSTRAINT {} UNIQUE ({}),"
            " CONSTRAINT {} CHECK ({} <> {})) WITH (fillfactor = 70)"
        ).format(
            t,
            c_id,
            c_txt,
            L(),
            c_enum,
            enum,
            labels[1],
            c_dom,
            dom,
            c_gen,
            c_id,
            c_comp,
            comp,
            pk,
            c_id,
            uq,
            c_txt,
            ck,
            c_txt,
            L(),
        ),  # fmt: skip
        sql.SQL("COMMENT ON TABLE {} IS {}").format(t, L()),
        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(t, c_txt, L()),
        sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(ck, t, L()),
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS 300").format(t, c_txt),
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET (n_distinct = 5)").format(t, c_txt),
        sql.SQL("CREATE INDEX {} ON {} (lower({}), {}) WHERE {} IS NOT NULL").format(
            ix, t, c_txt, c_id, c_txt
        ),
        sql.SQL("COMMENT ON INDEX {}.{} IS {}").format(s, ix, L()),
        sql.SQL("CREATE INDEX {} ON {} ({}, {})").format(ix2, t, c_txt, c_id),
        sql.SQL("ALTER TABLE {} CLUSTER ON {}").format(t, ix2),
        sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(t, uq),
        sql.SQL("CREATE STATISTICS {} ON {}, {} FROM {}").format(stat, c_id, c_txt, t),
        sql.SQL("COMMENT ON STATISTICS {} IS {}").format(stat, L()),
        sql.SQL(
            "INSERT INTO {} ({}, {}, {}, {}) VALUES ({}, {}, {}, ROW(1, {})), ({}, {}, {}, NULL)"
        ).format(t, c_txt, c_enum, c_dom, c_comp, bound1, labels[0], L(), L(), L(), labels[2], L()),
        sql.SQL(
            "CREATE TABLE {} ({} text NOT NULL, {} integer REFERENCES {} ({}),"
            " CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})) PARTITION BY LIST ({})"
        ).format(parent, partkey, N(), t, c_id, fk, partkey, t, c_txt, partkey),
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({}, {})").format(
            part1, parent, bound1, sql.Literal("x")
        ),
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(part2, parent),
        sql.SQL("COMMENT ON TABLE {} IS {}").format(part1, L()),
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(parent, partkey, c_txt, t),
        sql.SQL("CREATE TABLE {} ({} text) INHERITS ({})").format(child, N(), t),
        sql.SQL(
            "CREATE VIEW {} WITH (security_barrier = true)"
            " AS SELECT {} AS {}, {} AS {}, {}(1) AS {} FROM {}"
        ).format(view, c_txt, N(), L(), N(), fn, N(), t),
        sql.SQL("COMMENT ON VIEW {} IS {}").format(view, L()),
        sql.SQL(
            "CREATE MATERIALIZED VIEW {} AS SELECT {} AS {}, count(*) AS n FROM {} GROUP BY 1"
        ).format(mview, c_txt, mv_col, t),
        sql.SQL("CREATE UNIQUE INDEX {} ON {} (n, {})").format(N(), mview, mv_col),
        sql.SQL("COMMENT ON MATERIALIZED VIEW {} IS {}").format(mview, L()),
        sql.SQL(
            "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $x$BEGIN RETURN NEW; END$x$"
        ).format(trg_fn),
        sql.SQL("CREATE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            trg, t, trg_fn
        ),
        sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(t, trg),
        sql.SQL("CREATE TRIGGER {} AFTER UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            trg2, t, trg_fn
        ),
        sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(t, trg2),
        sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(trg, t, L()),
        sql.SQL("CREATE RULE {} AS ON DELETE TO {} DO INSTEAD NOTHING").format(rule, child),
        sql.SQL("COMMENT ON RULE {} ON {} IS {}").format(rule, child, L()),
    ]
    run(url, *statements)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hostile_names_in_every_object_kind_restore_as_they_were(
    pg_url, owner_db, make_pg_db, psql, tmp_path, marker_dir, seed
):
    build_hostile(pg_url, seed, marker_dir)
    out = tmp_path / "names.postgres.sql.gz"
    export(pg_url, "postgres", out)
    assert sql_outside_copy(out).isascii()
    restored(psql, owner_db, out)
    assert_same_database(psql, pg_url, owner_db)
    # the quoting alone holds, without psql's \restrict
    bare = make_pg_db()
    restored(psql, bare, without_restrict(out, tmp_path), OVERRIDE)
    assert schema_dump(psql, bare) == schema_dump(psql, pg_url)
    assert list(marker_dir.iterdir()) == []


def test_an_operator_whose_catalog_name_was_edited_stops_the_export(pg_url, tmp_path):
    """A superuser can write anything into the catalog; an operator's name is written
    unquoted (it can't be quoted), so one that isn't made of operator characters is refused."""
    run(
        pg_url,
        "CREATE OPERATOR public.<<< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = int4lt)",
        "UPDATE pg_operator SET oprname = E'<\\n\\\\! id' WHERE oprname = '<<<'",
    )
    out = tmp_path / "op.postgres.sql.gz"
    with pytest.raises(ExportError, match="operator '<.*' has a name PostgreSQL cannot read"):
        export(pg_url, "postgres", out)
    assert not out.exists()


# -- SQLite sources -----------------------------------------------------------------------------


def build_hostile_sqlite(path: Path, seed: int, marker: Path) -> list[str]:
    """Tables, columns, declared types, keys and indexes named with hostile text, and
    hostile values; the names of its tables."""
    names = hostile_names(seed, marker, crlf=False)

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    parent, child = next(names), next(names)
    pid, pname, cid, cref, ctext, ctyped = (next(names) for _ in range(6))
    typ = q(next(names))  # a declared type that is a quoted name
    values = [next(names) for _ in range(4)] + ["\\.", "a\n\\.\nb", f"\\! touch {marker}/v"]
    con = sqlite3.connect(path)
    try:
        con.executescript(
            f"""
            CREATE TABLE {q(parent)} ({q(pid)} INTEGER PRIMARY KEY, {q(pname)} TEXT,
                CONSTRAINT {q(next(names))} UNIQUE ({q(pname)}));
            CREATE TABLE {q(child)} ({q(cid)} INTEGER, {q(cref)} INTEGER,
                {q(ctext)} VARCHAR(200) DEFAULT 'x''y', {q(ctyped)} {typ},
                CONSTRAINT {q(next(names))} PRIMARY KEY ({q(cid)}),
                CONSTRAINT {q(next(names))} FOREIGN KEY ({q(cref)})
                    REFERENCES {q(parent)} ({q(pid)}) ON DELETE CASCADE ON UPDATE SET NULL
                    DEFERRABLE INITIALLY DEFERRED);
            CREATE INDEX {q(next(names))} ON {q(child)} ({q(ctext)});
            CREATE UNIQUE INDEX {q(next(names))} ON {q(child)} ({q(cref)}, {q(cid)});
            """
        )
        for i, v in enumerate(values):
            con.execute(f"INSERT INTO {q(parent)} VALUES (?, ?)", (i + 1, v))
            con.execute(f"INSERT INTO {q(child)} VALUES (?, ?, ?, ?)", (i, i + 1, v, v))
        con.commit()
    finally:
        con.close()
    return [parent, child]


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_sqlite_with_hostile_names_restores_into_postgres_as_it_was(
    owner_db, make_pg_db, psql, tmp_path, marker_dir, seed
):
    db = tmp_path / "hostile.db"
    tables = build_hostile_sqlite(db, seed, marker_dir)
    out = tmp_path / "hostile.postgres.sql.gz"
    export(f"sqlite:///{db}", "postgres", out)
    bare = make_pg_db()
    for target, dump, env in (
        (owner_db, out, None),
        (bare, without_restrict(out, tmp_path), OVERRIDE),
    ):
        restored(psql, target, dump, env)
        lite = sqlite3.connect(db)
        try:
            with psycopg.connect(target) as pg:
                got_tables = pg.execute(
                    "SELECT relname FROM pg_class WHERE relkind = 'r'"
                    " AND relnamespace = 'public'::regnamespace ORDER BY 1"
                ).fetchall()
                assert sorted(got_tables) == sorted((t,) for t in tables)
                for table in tables:
                    ident = '"' + table.replace('"', '""') + '"'
                    want = lite.execute(f"SELECT * FROM {ident} ORDER BY 1").fetchall()
                    got = pg.execute(
                        sql.SQL("SELECT * FROM public.{} ORDER BY 1").format(sql.Identifier(table))
                    ).fetchall()
                    assert got == want
                assert pg.execute(
                    "SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
                    " AND contype <> 'n'"  # PostgreSQL 18 lists NOT NULL among them
                ).fetchone() == (4,)
        finally:
            lite.close()
    assert list(marker_dir.iterdir()) == []


def test_a_sqlite_foreign_key_action_that_is_not_sql_stops_the_export(tmp_path, monkeypatch):
    """SQLAlchemy reads a foreign key's actions out of the table's SQL with regular
    expressions; what it finds is written unquoted, so anything but the SQL words is refused."""
    db = tmp_path / "fk.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE p (id INTEGER PRIMARY KEY);"
        "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p (id) ON DELETE CASCADE);"
    )
    con.close()
    from sqlalchemy.dialects.sqlite.base import SQLiteDialect

    real = SQLiteDialect.get_foreign_keys

    def hostile(self, *args, **kw):
        fks = real(self, *args, **kw)
        for fk in fks:
            fk["options"]["ondelete"] = "CASCADE;\n\\! id"
        return fks

    monkeypatch.setattr(SQLiteDialect, "get_foreign_keys", hostile)
    out = tmp_path / "fk.postgres.sql.gz"
    with pytest.raises(ExportError, match="a foreign key says .*which is not SQL"):
        export(f"sqlite:///{db}", "postgres", out)
    assert not out.exists()


def test_a_sqlite_name_holding_crlf_restores_or_is_refused_clearly(owner_db, psql, tmp_path):
    db = tmp_path / "crlf.db"
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE "a\r\nb" ("c\r\nd" TEXT)')
    con.execute("INSERT INTO \"a\r\nb\" VALUES ('x')")
    con.commit()
    con.close()
    out = tmp_path / "crlf.postgres.sql.gz"
    try:
        export(f"sqlite:///{db}", "postgres", out)
    except ExportError as e:
        assert "a\\r\\nb" in str(e) or "a\r\nb" in str(e)
        assert "\n" not in str(e)
        return
    restored(psql, owner_db, out)
    with psycopg.connect(owner_db) as pg:
        assert pg.execute('SELECT "c\r\nd" FROM public."a\r\nb"').fetchall() == [("x",)]


#: texts that end where a writer for standard strings meant only while backslashes are plain,
#: each followed by a psql command: read with backslash escapes, the command runs
def flip_payloads(marker: Path) -> list[str]:
    touch = f"\\! touch {marker}"
    return [
        f"x\\';\n{touch}-a\n",
        f"x\\'';\n{touch}-b\n--",
        f"x\\\\\\';\n{touch}-c\n",
        f"a\\b\\'\\\\' ; {touch}-d\n",
    ]


def build_flipping(url: str, marker: Path) -> None:
    """A table whose CHECK constraint turns ``standard_conforming_strings`` off for the rest
    of the session (as the rows are loaded), then objects whose texts hold the payloads."""
    texts = flip_payloads(marker)
    lit = [sql.Literal(t) for t in texts]
    run(
        url,
        """CREATE FUNCTION public.flip(v integer) RETURNS boolean LANGUAGE sql AS
           $$ SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false)
                     IS NOT NULL AND v > 0 $$""",
        "CREATE TABLE public.flipped (v integer CHECK (public.flip(v)))",
        "INSERT INTO public.flipped VALUES (1), (2)",
        sql.SQL("CREATE TYPE public.mood AS ENUM ({})").format(sql.SQL(", ").join(lit)),
        sql.SQL("CREATE TABLE public.later (id integer PRIMARY KEY, c text DEFAULT {})").format(
            lit[0]
        ),
        sql.SQL("INSERT INTO public.later VALUES (1, {})").format(lit[1]),
        sql.SQL("COMMENT ON TABLE public.later IS {}").format(lit[2]),
        sql.SQL("COMMENT ON COLUMN public.later.c IS {}").format(lit[3]),
        sql.SQL("CREATE VIEW public.v AS SELECT {} AS a, {} AS b, {} AS c, {} AS d").format(
            *[sql.SQL("{}::text").format(x) for x in lit]
        ),
        sql.SQL("CREATE INDEX later_c ON public.later (c) WHERE c <> {} AND c <> {}").format(
            lit[0], lit[1]
        ),
        sql.SQL("ALTER TABLE public.later ADD CONSTRAINT c_not CHECK (c <> {}) NOT VALID").format(
            lit[3]
        ),
        sql.SQL("COMMENT ON VIEW public.v IS {}").format(lit[1]),
    )


def test_a_function_turning_standard_strings_off_mid_restore_reaches_no_psql_command(
    pg_url, owner_db, psql, tmp_path, marker_dir
):
    marker = marker_dir / "flip"
    build_flipping(pg_url, marker)
    out = tmp_path / "flip.postgres.sql.gz"
    export(pg_url, "postgres", out)
    result = readme_restore(psql, owner_db, without_restrict(out, tmp_path))
    assert list(marker_dir.iterdir()) == []
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert_same_database(psql, pg_url, owner_db)
    with psycopg.connect(owner_db) as con:  # the texts came back as they were
        got = con.execute("SELECT a, b, c, d FROM public.v").fetchone()
        assert list(got) == flip_payloads(marker)


def test_literals_read_the_same_with_standard_strings_on_and_off(pg_url):
    """Both kinds of literal the ``postgres`` format holds, the writer's own and PostgreSQL's
    deparse made standard-independent, give back their text under either setting."""
    from flask_backup_manager.engine.writers.postgres.sql import literal, portable

    rng = random.Random(7)
    texts = ["", "plain", "a\\b", "x\\", "x\\'", "\\\\'';\n\\! id\n", "é\\\t"]
    texts += ["".join(rng.choice("\\'a;\n\"$-") for _ in range(12)) for _ in range(40)]
    with psycopg.connect(pg_url, autocommit=True) as con:
        for text in texts:
            con.execute("SET standard_conforming_strings = on")
            con.execute(
                sql.SQL("CREATE OR REPLACE TEMP VIEW fbm_lit AS SELECT {}::text AS a").format(
                    sql.Literal(text)
                )
            )
            view = con.execute("SELECT pg_catalog.pg_get_viewdef('fbm_lit'::regclass)")
            deparsed = portable(view.fetchone()[0].rstrip().rstrip(";"))
            for setting in ("on", "off"):
                con.execute(f"SET standard_conforming_strings = {setting}")
                assert con.execute(f"SELECT {literal(text)}").fetchone()[0] == text
                assert con.execute(f"SELECT a FROM ({deparsed}) s").fetchone()[0] == text


#: a UTF-8 character whose last byte (0x81) is a lead byte in SJIS: psql lexing by SJIS takes
#: it and the next byte (a quote, a backslash, a ``"``, an LF) as one character
SWALLOWS = "ā"


def build_encoding_flip(url: str, marker: Path) -> None:
    """A table whose CHECK constraint switches the session to SJIS (and ``backslash_quote``
    on) as its rows are loaded; then, restored after it, a constraint, an index, views and
    comments whose texts and names put :data:`SWALLOWS` right before a backslash, a quote, a
    ``"`` and an LF. Written in UTF-8, the first comment's string would run on to the index's
    literal (so ``injected`` is created and the load committed half way) and the first view's
    identifier to the next one, whose text psql would run as ``\\! touch``."""
    s = SWALLOWS
    texts = [
        f"{s}\\",
        f"x{s}",
        f"{s}'",
        f'{s}"; CREATE TABLE public.injected (a int); COMMIT; --',
        f"{s}\n\\! touch {marker}-c\n",
        f"\\! touch {marker}-d",
    ]
    lit = [sql.Literal(t) for t in texts]
    inject = sql.Literal("; CREATE TABLE public.injected (a int); COMMIT; --")
    run(
        url,
        """CREATE FUNCTION public.sw(v integer) RETURNS boolean LANGUAGE plpgsql AS $$
           BEGIN
               PERFORM pg_catalog.set_config('backslash_quote', 'on', false);
               PERFORM pg_catalog.set_config('client_encoding', 'SJIS', false);
               RETURN v > 0;
           END $$""",
        "CREATE TABLE public.sw_t (v integer CHECK (public.sw(v)))",
        "CREATE TABLE public.later (id integer PRIMARY KEY, c text)",
        "INSERT INTO public.later VALUES (1, 'plain')",
        "ALTER TABLE public.later ADD CONSTRAINT k CHECK (c <> 'plain') NOT VALID",
        sql.SQL("COMMENT ON CONSTRAINT k ON public.later IS {}").format(lit[0]),
        sql.SQL("CREATE INDEX i ON public.later (id) WHERE c <> {}").format(inject),
        sql.SQL("CREATE VIEW public.v AS SELECT 1 AS {}, 2 AS {}").format(
            sql.Identifier(f"a{s}"), sql.Identifier(f"\n\\! touch {marker}-b\n")
        ),
        sql.SQL("CREATE VIEW public.{} AS SELECT {} AS {}, {}, {}, {}, {}").format(
            sql.Identifier(f"w{s}"),
            *[sql.SQL("{}::text").format(x) for x in lit[:1]],
            sql.Identifier(f"a{s}"),
            *[
                sql.SQL("{}::text AS {}").format(x, sql.Identifier(n))
                for x, n in zip(lit[1:5], "bcde", strict=True)
            ],
        ),
        *[
            sql.SQL("COMMENT ON {} IS {}").format(sql.SQL(target), text)
            for target, text in zip(
                [
                    f'VIEW public."w{s}"',
                    f'COLUMN public."w{s}"."a{s}"',
                    "TABLE public.sw_t",
                    "VIEW public.v",
                    "COLUMN public.sw_t.v",
                    "FUNCTION public.sw(integer)",
                ],
                lit,
                strict=True,
            )
        ],
    )
    run(  # rows loaded after the switch: COPY data stays UTF-8
        url,
        "CREATE TABLE public.z_after (t text)",
        f"INSERT INTO public.z_after VALUES ('{s}\\'), ('日本😀 ソ表'), ('\\x81\\')",
    )
    run(url, "INSERT INTO public.sw_t VALUES (1), (2)")  # its own session: it goes SJIS


@pytest.mark.parametrize("how", ["readme", "bare", "tool"])
def test_a_function_switching_client_encoding_mid_restore_changes_nothing(
    pg_url, owner_db, psql, tmp_path, marker_dir, how
):
    """psql lexes by the client encoding, which the restore's own functions may change: every
    byte outside COPY data is ASCII, so the file reads the same in any encoding, and each COPY
    sets it back to UTF8 for its rows. Restored with the README's command, without the
    ``\\restrict`` lines (as an older psql reads the rest), and with the restore tool."""
    marker = marker_dir / "enc"
    build_encoding_flip(pg_url, marker)
    out = tmp_path / "enc.postgres.sql.gz"
    export(pg_url, "postgres", out)
    if how == "tool":
        command = [sys.executable, "-m", "flask_backup_manager", "restore", str(out)]
        result = subprocess.run([*command, "--target", owner_db], capture_output=True)
    else:
        result = readme_restore(
            psql, owner_db, out if how == "readme" else without_restrict(out, tmp_path)
        )
    assert list(marker_dir.iterdir()) == []
    with psycopg.connect(owner_db) as con:
        assert con.execute("SELECT to_regclass('public.injected')").fetchone()[0] is None
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert_same_database(psql, pg_url, owner_db)


def sql_outside_copy(dump: Path) -> bytes:
    """The file without its COPY data lines (what psql lexes). A COPY statement may span
    lines (a quoted name may hold an LF); none of these tests' names holds ``FROM stdin;``."""
    text = gzip.decompress(dump.read_bytes())
    copy = rb"(?ms)^(SET client_encoding = 'UTF8';\nCOPY .*? FROM stdin;\n).*?^\\\.\n"
    return re.sub(copy, rb"\1", text)


def build_non_ascii(url: str) -> None:
    """Non-ASCII (Latin, CJK, an astral-plane emoji) in every kind of name and text."""
    run(
        url,
        'CREATE SCHEMA "schéma_日本"',
        """CREATE TYPE "schéma_日本"."hümör😀" AS ENUM ('glücklich', '😀', '日本\\', 'a''b')""",
        """CREATE DOMAIN "schéma_日本"."dömäin" AS text CHECK (VALUE <> 'verbötén😀')""",
        """CREATE TABLE "schéma_日本"."täble😀" (
               "ïd" integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
               "cölumn" text DEFAULT 'défaut 😀 "q" \\ ''x''' CHECK ("cölumn" <> 'nö'),
               "mood" "schéma_日本"."hümör😀" DEFAULT '😀',
               "d" "schéma_日本"."dömäin",
               "中文" varchar(10) DEFAULT '中文'
           )""",
        """INSERT INTO "schéma_日本"."täble😀" ("cölumn", mood, d, "中文")
           VALUES ('wért😀', 'glücklich', 'ðata', '汉字'), (DEFAULT, DEFAULT, NULL, DEFAULT)""",
        """CREATE FUNCTION "schéma_日本"."fünc😀"("ärg" text) RETURNS text LANGUAGE plpgsql AS
           $bödy$
           -- a cömment 😀
           DECLARE "värs" text := 'ä\\''' || $x$ dollär 日本 $x$;
           BEGIN /* blöck 😀 */ RETURN "ärg" || "värs" || E'\\u00e9'; END
           $bödy$""",
        """CREATE FUNCTION "schéma_日本"."sqlfünc"(a text) RETURNS text LANGUAGE sql AS
           $$ SELECT a || 'ßql 😀' -- tráiling
           $$""",
        """CREATE FUNCTION "schéma_日本"."atömic"(a text) RETURNS text LANGUAGE sql
           BEGIN ATOMIC SELECT a || 'atömic 😀 \\' || "schéma_日本"."sqlfünc"('日本'); END""",
        """CREATE VIEW "schéma_日本"."vïew😀" AS
           SELECT "cölumn" AS "ä😀", 'vüe😀'::text AS lit, "schéma_日本"."fünc😀"('x') AS f,
                  "schéma_日本"."atömic"('ü') AS g
           FROM "schéma_日本"."täble😀" WHERE "中文" <> 'nïcht'""",
        """CREATE INDEX "ïndex😀" ON "schéma_日本"."täble😀" ("cölumn") WHERE "cölumn" <> 'ü'""",
        """COMMENT ON SCHEMA "schéma_日本" IS 'schéma 😀'""",
        """COMMENT ON TABLE "schéma_日本"."täble😀" IS 'täble 日本 😀 \\ "'""",
        """COMMENT ON COLUMN "schéma_日本"."täble😀"."cölumn" IS 'cölumn'""",
        """COMMENT ON FUNCTION "schéma_日本"."fünc😀"(text) IS 'fünc 😀'""",
        """COMMENT ON TYPE "schéma_日本"."hümör😀" IS 'hümör'""",
    )


def test_non_ascii_everywhere_round_trips_and_the_file_is_ascii_outside_copy(
    pg_url, owner_db, psql, tmp_path
):
    build_non_ascii(pg_url)
    out = tmp_path / "unicode.postgres.sql.gz"
    export(pg_url, "postgres", out)
    assert not gzip.decompress(out.read_bytes()).isascii()  # the rows are UTF-8
    assert sql_outside_copy(out).isascii()
    restored(psql, owner_db, out)
    assert_same_database(psql, pg_url, owner_db)
    query = """SELECT p.proname::text, p.prosrc FROM pg_proc p
               WHERE p.pronamespace = 'schéma_日本'::regnamespace ORDER BY 1"""
    with psycopg.connect(pg_url) as src, psycopg.connect(owner_db) as copy:
        assert copy.execute(query).fetchall() == src.execute(query).fetchall()
        got = copy.execute('SELECT * FROM "schéma_日本"."vïew😀" ORDER BY 1').fetchall()
        assert got == src.execute('SELECT * FROM "schéma_日本"."vïew😀" ORDER BY 1').fetchall()


def test_sqlite_non_ascii_names_give_an_ascii_file_outside_copy(owner_db, psql, tmp_path):
    """The generic writer's own lines (CREATE TABLE, COPY, comments) are ASCII too."""
    db = tmp_path / "u.db"
    with sqlite3.connect(db) as con:
        con.executescript(
            """CREATE TABLE "täble😀" ("ïd" INTEGER PRIMARY KEY, "cölumn" TEXT DEFAULT 'dé\\');
               CREATE TABLE "kïd" (id INTEGER PRIMARY KEY,
                                   "p日" INTEGER REFERENCES "täble😀" ("ïd"));
               INSERT INTO "täble😀" VALUES (1, 'wért😀');
               INSERT INTO "täble😀" ("ïd") VALUES (2);
               INSERT INTO "kïd" VALUES (1, 1);"""
        )
    con.close()
    out = tmp_path / "u.postgres.sql.gz"
    export(f"sqlite:///{db}", "postgres", out)
    assert sql_outside_copy(out).isascii()
    restored(psql, owner_db, out)
    with psycopg.connect(owner_db) as con:
        rows = con.execute('SELECT "ïd", "cölumn" FROM public."täble😀" ORDER BY 1').fetchall()
        assert rows == [(1, "wért😀"), (2, "dé\\")]
        assert con.execute('SELECT "p日" FROM public."kïd"').fetchall() == [(1,)]


@pytest.mark.parametrize("encoding", ["SJIS", "BIG5", "GBK", "UHC", "GB18030"])
def test_ascii_forms_read_the_same_in_every_client_encoding(make_pg_db, psql, encoding):
    """The writer's literals, deparsed literals, dollar-quoted bodies and quoted identifiers,
    read by psql itself after a switch to a client encoding whose characters take an ASCII
    byte as their second, with standard strings on and off, give back their UTF-8 text."""
    from flask_backup_manager.engine.writers.postgres.sql import literal, portable, quoted_ident

    rng = random.Random(encoding)
    alphabet = ["ā", "日", "😀", "é", "\\", "'", '"', "\n", "\r", "\t", "$", "-", "a", ";"]
    texts = ["ā\\", "xā", "ā'", 'ā"', "ā\n", "😀", "\\u00e9"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))) for _ in range(40)]
    url = make_pg_db()
    script, want = [], []
    for n, text in enumerate(texts):
        hexed = "encode(convert_to({}, 'UTF8'), 'hex')"
        forms = [literal(text), portable("'" + text.replace("'", "''") + "'")]
        forms.append(portable(f"$q${text}$q$"))  # no text holds a q
        script += [f"SELECT {hexed.format(form)};" for form in forms]
        script += [
            f"CREATE TEMP TABLE t{n} ({quoted_ident(text)} int);",
            f"SELECT {hexed.format('attname::text')} FROM pg_attribute"
            f" WHERE attrelid = 't{n}'::regclass AND attnum = 1;",
        ]
        want += [text.encode().hex()] * (len(forms) + 1)
    for setting in ("on", "off"):
        head = [
            f"SET client_encoding = '{encoding}';",
            f"SET standard_conforming_strings = {setting};",
            "SET backslash_quote = on;",
            "SET client_min_messages = error;",
        ]
        text = "\n".join(head + script) + "\n"
        assert text.isascii()
        got = run_psql(psql, url, "-At", stdin=text.encode()).split()
        assert got == want, setting


def test_every_token_kind_is_rewritten_in_ascii_meaning_the_same(pg_url):
    """:func:`portable` on each kind of token that may hold non-ASCII: the rewrite is ASCII
    and the server reads it as it read the original, with standard strings on and off."""
    from flask_backup_manager.engine.writers.postgres.sql import comment_line, portable

    query = (
        "SELECT 'ā\\' AS \"ä\"\"😀\", E'\\é\\\\''日' AS Äb, N'é' AS n, $é$ ā'\\ $x$ $é$ AS d,"
        " 'x'::text AS \"x\" -- cömment 😀\n, /* blöck */ 2 AS z"
    )
    rewritten = portable(query)
    assert rewritten.isascii(), rewritten
    assert comment_line("ā\n😀\\").isascii()
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("SET standard_conforming_strings = on")
        cur = con.execute(query)
        want = (cur.fetchone(), [c.name for c in cur.description])
        for setting in ("on", "off"):
            con.execute(f"SET standard_conforming_strings = {setting}")
            cur = con.execute(rewritten)
            assert (cur.fetchone(), [c.name for c in cur.description]) == want, setting


# -- deparsed text the ASCII rewrite must read the same ---------------------------------------


def test_a_source_database_with_standard_strings_off_keeps_its_backslashes(
    pg_url, owner_db, psql, tmp_path
):
    """The export reads definitions with standard strings on, whatever the source database
    sets: PostgreSQL deparses ``back\\slash`` as ``'back\\\\slash'`` with them off."""
    run_psql(
        psql,
        pg_url,
        "-c",
        f"ALTER DATABASE {database_name(pg_url)} SET standard_conforming_strings = off",
    )
    run_psql(
        psql,
        pg_url,
        "-c",
        r"""CREATE TABLE t (id int, b text DEFAULT E'back\\slash' CHECK (b <> E'x\\\\y'));
            CREATE VIEW v AS SELECT b = E'back\\slash' AS same, E'a\\b' AS lit FROM t;
            INSERT INTO t (id) VALUES (1);""",
    )
    out = tmp_path / "scs.postgres.sql.gz"
    export(pg_url, "postgres", out)
    restored(psql, owner_db, out)
    for url in (pg_url, owner_db):  # the default, the CHECK and the view's literals alike
        with psycopg.connect(url) as con:
            con.execute("INSERT INTO t (id) VALUES (2)")
            got = con.execute("SELECT t.id, t.b, v.same, v.lit FROM t, v ORDER BY 1").fetchall()
            con.rollback()
        assert {r[1:] for r in got} == {("back\\slash", True, "a\\b")}, url


def test_an_alias_named_uescape_or_like_a_psql_variable_round_trips(
    pg_url, owner_db, psql, tmp_path
):
    """A non-ASCII name followed by an alias ``uescape`` (the U& clause's keyword), and an
    array slice over an alias psql has a variable of (``:"USER"``): legitimate schemas."""
    run_psql(
        psql,
        pg_url,
        "-c",
        """CREATE TABLE "ā" (x int, arr int[], a int);
           INSERT INTO "ā" VALUES (1, '{1,2,3}', 2);
           CREATE VIEW v_uesc AS SELECT uescape.x FROM "ā" AS uescape;
           CREATE VIEW v_slice AS SELECT "USER".arr[1: "USER".a] AS s FROM "ā" AS "USER";""",
    )
    out = tmp_path / "alias.postgres.sql.gz"
    export(pg_url, "postgres", out)
    restored(psql, owner_db, out)
    assert_same_database(psql, pg_url, owner_db)
    with psycopg.connect(owner_db) as con:
        assert con.execute("SELECT * FROM v_uesc").fetchall() == [(1,)]
        assert con.execute("SELECT * FROM v_slice").fetchall() == [([1, 2],)]
