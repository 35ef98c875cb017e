"""PostgreSQL -> ``postgres`` format: definitions straight from the source's catalog.

Every query runs in the source's snapshot with ``search_path = ''``, so ``regclass``/``regtype``
text and the ``pg_get_*def`` functions give schema-qualified, quoted names as ``pg_dump`` does.
Objects that belong to an extension are left to ``CREATE EXTENSION``. Collations come first;
types, functions and operators follow the dependencies ``pg_depend`` records between them and
on tables and views (:meth:`Catalog.types_and_functions`). Not copied: owners,
privileges, row-level security policies, publications, foreign tables, large objects (a database
owner can't recreate some of them, and a support copy doesn't need them).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.rows import namedtuple_row

from ...base import Tracker, shown
from ...model import ExportError
from .sql import (
    GzipOut,
    comment_line,
    copy_from_stdin,
    dump_file,
    literal,
    spaces_for_controls,
    statements,
)

if TYPE_CHECKING:
    from ...sources.postgres import PostgresSource

USER_NS = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"


def not_ext(alias: str, catalog: str) -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.objid = {alias}.oid"
        f" AND e.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass AND e.deptype = 'e')"
    )


def comment(kind: str, name: str, text: str | None) -> str:
    return f"COMMENT ON {kind} {name} IS {literal(text)}" if text is not None else ""


def options(column: str) -> str:
    """The SQL of an array of ``name=value`` option texts (``reloptions``, ``attoptions``)
    as ``WITH (...)`` / ``SET (...)`` items, split and quoted by the server itself: the
    values are stored as they were written, and some options take free text."""
    return (
        "ARRAY(SELECT pg_catalog.quote_ident(o.option_name) || '='"
        " || pg_catalog.quote_literal(o.option_value)"
        f" FROM pg_catalog.pg_options_to_table({column}) o)"
    )


def _operator(column: str) -> str:
    """The SQL of the operator whose oid is in ``column`` as ``OPERATOR(schema.name)``, as
    ``pg_dump`` writes it (NULL for 0): schema and name from the catalog, not from splitting
    its ``regoperator`` text. The name is checked by :func:`_check_operator_name`."""
    return (
        "(SELECT 'OPERATOR(' || pg_catalog.quote_ident(opn.nspname) || '.' || op.oprname || ')'"
        " FROM pg_catalog.pg_operator op"
        " JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace"
        f" WHERE op.oid = {column})"
    )


#: what an operator's name is made of (PostgreSQL's lexer allows no other character in one)
_OPERATOR_NAME = re.compile(r"[-+*/<>=~!@#%^&|`?]{1,63}")


def _check_operator_name(name: str | None) -> None:
    """Operator names can't be quoted, so one is written as it is: it must be made of
    operator characters only, as PostgreSQL creates them (a hand-edited catalog may say
    otherwise), and hold no comment start."""
    if name is None:
        return
    if not _OPERATOR_NAME.fullmatch(name) or "--" in name or "/*" in name:
        raise ExportError(f"operator {shown(name)!r} has a name PostgreSQL cannot read")


#: objects made after ``initdb`` have oids from here on (``FirstNormalObjectId``)
FIRST_USER_OID = 16384

#: the provider of a collation as ``CREATE COLLATION`` names it
_COLLATION_PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}

#: the group of :meth:`Catalog.types_and_functions` an object needing a relation goes to
_GROUP = {"table": 1, "view": 2}


def _in_dependency_order(
    objects: Iterable[tuple[str, int]], deps: dict[tuple[str, int], set[tuple[str, int]]]
) -> list[tuple[str, int]]:
    """``objects`` (catalog, oid) each after those of them it depends on, else by oid (the
    order they were made in); a dependency loop is broken at its oldest object."""
    keys = set(objects)
    waiting = {k: {d for d in deps[k] if d in keys} for k in keys}
    users: dict[tuple[str, int], list[tuple[str, int]]] = {k: [] for k in keys}
    for k, ds in waiting.items():
        for d in ds:
            users[d].append(k)

    def rank(k: tuple[str, int]) -> tuple[int, bool, tuple[str, int]]:
        return (k[1], k[0] == "checks", k)  # a domain's checks right after it

    ready = [rank(k) for k, ds in waiting.items() if not ds]
    heapq.heapify(ready)
    out: list[tuple[str, int]] = []
    done: set[tuple[str, int]] = set()
    while len(out) < len(keys):
        if not ready:  # a loop: take its oldest object
            heapq.heappush(ready, min(rank(k) for k in keys - done))
        k = heapq.heappop(ready)[2]
        if k in done:
            continue
        done.add(k)
        out.append(k)
        for u in users[k]:
            waiting[u].discard(k)
            if not waiting[u] and u not in done:
                heapq.heappush(ready, rank(u))
    return out


def write_postgres(source: PostgresSource, path: Path, tracker: Tracker) -> None:
    """Write the ``postgres`` format (gzipped SQL for psql) to ``path``."""
    with dump_file(path, tracker) as out:
        write_native(source, out, tracker)


def write_native(src: PostgresSource, out: GzipOut, tracker: Tracker) -> None:
    specs = src.tables()
    cat = Catalog(src, [s.oid for s in specs], tracker)
    out.write(statements(cat.pre_data()))
    for spec in specs:
        tracker.start(spec)
        cols = ", ".join(c.as_string(src.conn) for c in spec.copy_columns)
        name = spec.qualified.as_string(src.conn)
        out.write(copy_from_stdin(f"{name} ({cols})" if cols else name))
        chunks = src.copy_out(spec)
        try:
            for chunk in chunks:
                out.write(chunk)
                tracker.rows(chunk.count(b"\n"))
        finally:
            chunks.close()
        out.write("\\.\n\n")
        tracker.finish(spec)
    out.write(statements(cat.sequence_values()))
    out.write(statements(cat.post_data()))


class Catalog:
    """The definitions of the objects to dump, read from ``pg_catalog``.

    A query whose rows are kept, or read away from it, is read with named fields
    (:meth:`named`); the others are unpacked right beside their column list."""

    def __init__(self, src: PostgresSource, selected: list[int], tracker: Tracker) -> None:
        self.src = src
        self.tracker = tracker
        self.fetch = src.fetch
        # Relations to dump: the selected tables and all their partitions.
        self.tables = self.named(
            f"""
            SELECT c.oid, c.oid::pg_catalog.regclass::text AS name, c.relkind,
                   c.relpersistence, c.relispartition,
                   CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END
                     AS partkey,
                   CASE WHEN c.relispartition
                        THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END AS bound,
                   ARRAY(SELECT i.inhparent FROM pg_catalog.pg_inherits i
                         WHERE i.inhrelid = c.oid ORDER BY i.inhseqno) AS parents,
                   {options("c.reloptions")} AS options,
                   pg_catalog.obj_description(c.oid, 'pg_class') AS comment
            FROM pg_catalog.pg_class c
            WHERE c.oid = ANY(%s)
               OR c.oid IN (SELECT t.relid FROM unnest(%s::pg_catalog.oid[]) s(oid),
                            pg_catalog.pg_partition_tree(s.oid) t)
            ORDER BY c.oid""",
            [selected, selected],
        )
        self.table_oids = [t.oid for t in self.tables]
        self.names = {t.oid: t.name for t in self.tables}
        self.views = self._views()
        self.rel_oids = self.table_oids + [v.oid for v in self.views]
        self._seqs: list | None = None
        self._cols: dict[int, list] | None = None
        self.late_checks: list[str] = []
        self.after_views: list[str] = []
        self._domain_inline: dict[int, list[str]] = {}
        #: the functions made after the tables (1) or the views (2), by oid
        self.late_functions: dict[int, int] = {}
        #: a table's defaults and CHECKs calling those: statements run after the tables
        self.late_table_parts: list[str] = []

    def named(self, query: str, params: list | None = None) -> list[Any]:
        """The rows of ``query`` as named tuples, a field per column (by its name or alias)."""
        return self.src.fetch(query, params, row_factory=namedtuple_row)

    # -- pre-data --------------------------------------------------------------------------

    def pre_data(self) -> Iterable[str]:
        yield from self.schemas()
        yield from self.extensions()
        yield from self.collations()
        before_tables, after_tables, self.after_views = self.types_and_functions()
        yield from before_tables
        yield from self.sequences()
        yield from self.create_tables()
        yield from after_tables
        yield from self.late_table_parts
        yield from self.owned_sequences()

    def schemas(self) -> Iterable[str]:
        for name, text in self.fetch(
            f"""SELECT pg_catalog.quote_ident(n.nspname),
                       pg_catalog.obj_description(n.oid, 'pg_namespace')
                FROM pg_catalog.pg_namespace n
                WHERE {USER_NS} AND n.nspname <> 'public' AND {not_ext("n", "pg_namespace")}
                ORDER BY 1"""
        ):
            yield f"CREATE SCHEMA {name}"
            yield comment("SCHEMA", name, text)

    def extensions(self) -> Iterable[str]:
        """``CREATE EXTENSION`` for the trusted extensions only (those a database owner may
        create, by the source server's ``pg_available_extension_versions`` for the installed
        version). The others would need a superuser: they are named in a comment line and in
        the backup's log, for a superuser to create first (IF NOT EXISTS then lets the
        restore go on)."""
        for name, schema, trusted in self.fetch(
            """SELECT pg_catalog.quote_ident(x.extname), pg_catalog.quote_ident(n.nspname),
                      coalesce((SELECT v.trusted OR NOT v.superuser
                                FROM pg_catalog.pg_available_extension_versions v
                                WHERE v.name = x.extname AND v.version = x.extversion), false)
               FROM pg_catalog.pg_extension x
               JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
               WHERE x.extname <> 'plpgsql' ORDER BY 1"""
        ):
            create = f"CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema}"
            if trusted:
                yield create
                continue
            self.tracker.warn(
                spaces_for_controls(
                    f"extension {name} is not trusted, so the file does not create it: a "
                    f"superuser must run {create} in the new database before the restore, "
                    "or the objects that use it fail to restore"
                )
            )
            yield comment_line(f"not created (untrusted extension, needs a superuser): {create}")

    def collations(self) -> Iterable[str]:
        """``CREATE COLLATION`` for the source's own collations, as ``pg_dump`` writes them:
        provider, locale (or ``lc_collate`` and ``lc_ctype`` when they differ), determinism
        and ICU rules, each string a literal. The row is read whole as JSON, so that the
        columns each version has (``colliculocale`` in 15 and 16, ``colllocale`` from 17,
        ``collicurules`` from 16) are found by name. Before the types and tables, which
        only use them."""
        for name, row, text in self.fetch(
            f"""SELECT pg_catalog.quote_ident(n.nspname) || '.'
                         || pg_catalog.quote_ident(c.collname),
                       pg_catalog.to_jsonb(c), pg_catalog.obj_description(c.oid, 'pg_collation')
                FROM pg_catalog.pg_collation c
                JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
                WHERE {USER_NS} AND {not_ext("c", "pg_collation")}
                ORDER BY c.oid"""
        ):
            provider = _COLLATION_PROVIDERS.get(row["collprovider"])
            if provider is None:
                raise ExportError(
                    f"collation {shown(name)} has a provider PostgreSQL cannot create"
                )
            opts = [f"provider = {provider}"]
            if not row["collisdeterministic"]:
                opts.append("deterministic = false")
            collate, ctype = row["collcollate"], row["collctype"]
            locale = row.get("colllocale") or row.get("colliculocale")
            if locale is None and (provider == "icu" or collate == ctype):
                locale = collate  # before 15 an ICU collation's locale was its collcollate
            if locale is not None:
                opts.append(f"locale = {literal(locale)}")
            else:
                opts += [f"lc_collate = {literal(collate)}", f"lc_ctype = {literal(ctype)}"]
            if row.get("collicurules") is not None:
                opts.append(f"rules = {literal(row['collicurules'])}")
            yield f"CREATE COLLATION {name} (" + ", ".join(opts) + ")"
            yield comment("COLLATION", name, text)

    def types_and_functions(self) -> tuple[list[str], list[str], list[str]]:
        """The types, functions, operators and aggregates, each after the objects it depends
        on by ``pg_depend`` (so a domain whose CHECK calls a function follows the function,
        and a function taking the domain follows the domain), else in the order they were
        made; in three groups: before the tables, after them (what uses a table's row type,
        or reads a table or sequence in a SQL-standard body), after the views (what reads a
        view). A domain's default and CHECK constraints are part of its ``CREATE DOMAIN``
        when what they call is there by then, else ``ALTER DOMAIN`` statements once it is
        (a function taking the domain, called by its CHECK)."""
        objects = {**self.types(), **self.functions(), **self.operators()}
        deps = self._dependencies(objects)
        order = _in_dependency_order(objects, deps)
        group: dict[tuple[str, int], int] = {}
        for key in order:
            group[key] = max((_GROUP.get(d[0]) or group.get(d, 0) for d in deps[key]), default=0)
        self.late_functions = {k[1]: g for k, g in group.items() if k[0] == "pg_proc" and g}
        out: tuple[list[str], list[str], list[str]] = ([], [], [])
        done: set[tuple[str, int]] = set()
        for key in order:
            if key in done:
                continue  # a domain's checks, made with it
            done.add(key)
            statements = objects[key]
            checks = ("checks", key[1])
            if (
                key[0] == "pg_type"
                and checks in objects
                and all(d in done and group[d] <= group[key] for d in deps[checks] - {key})
            ):
                done.add(checks)
                statements = self._domain_inline[key[1]] + statements[1:]
            out[group[key]].extend(statements)
        return out

    def _dependencies(
        self, objects: dict[tuple[str, int], list[str]]
    ) -> dict[tuple[str, int], set[tuple[str, int]]]:
        """For each of ``objects`` (keyed by catalog and oid), what it needs made first: others
        of them, or ``("table", oid)`` / ``("view", oid)``. A reference to an array or
        multirange type stands for its element or range type, one to a composite type's
        relation for the type, to a table's row type for the table; what a domain's default
        and CHECK constraints use is needed by its ``("checks", oid)``."""
        alias: dict[tuple[str, int], tuple[str, int]] = {}
        for cls, oid, to_cls, to_oid in self.fetch(
            f"""SELECT 'pg_type', t.typarray, 'pg_type', t.oid FROM pg_catalog.pg_type t
                WHERE t.typarray <> 0 AND t.oid >= {FIRST_USER_OID}
                UNION ALL SELECT 'pg_type', r.rngmultitypid, 'pg_type', r.rngtypid
                FROM pg_catalog.pg_range r WHERE r.rngtypid >= {FIRST_USER_OID}
                UNION ALL SELECT x.cls, x.oid,
                       CASE WHEN c.relkind = 'c' THEN 'pg_type'
                            WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END,
                       CASE WHEN c.relkind = 'c' THEN c.reltype ELSE c.oid END
                FROM pg_catalog.pg_class c,
                     LATERAL (VALUES ('pg_class', c.oid), ('pg_type', c.reltype)) x (cls, oid)
                WHERE c.oid >= {FIRST_USER_OID}
                  AND NOT (x.cls = 'pg_type' AND (c.relkind = 'c' OR c.reltype = 0))
                UNION ALL SELECT 'pg_constraint', con.oid, 'checks', con.contypid
                FROM pg_catalog.pg_constraint con WHERE con.contypid <> 0"""
        ):
            alias[(cls, oid)] = (to_cls, to_oid)

        def resolve(key: tuple[str, int]) -> tuple[str, int]:
            while key in alias:
                key = alias[key]
            return key

        deps: dict[tuple[str, int], set[tuple[str, int]]] = {key: set() for key in objects}
        for cls, oid, ref_cls, ref_oid in self.fetch(
            f"""SELECT c.relname::text, d.objid, r.relname::text, d.refobjid
                FROM pg_catalog.pg_depend d
                JOIN pg_catalog.pg_class c ON c.oid = d.classid
                JOIN pg_catalog.pg_class r ON r.oid = d.refclassid
                WHERE d.deptype IN ('n', 'a') AND d.objid >= {FIRST_USER_OID}
                  AND d.refobjid >= {FIRST_USER_OID}"""
        ):
            key, ref = resolve((cls, oid)), resolve((ref_cls, ref_oid))
            if key[0] == "pg_type" and ("checks", key[1]) in objects and ref[0] != "pg_type":
                key = ("checks", key[1])  # the domain's default uses it
            if key in deps and ref != key and (ref in objects or ref[0] in _GROUP):
                deps[key].add(ref)
        return deps

    def types(self) -> dict[tuple[str, int], list[str]]:
        """The statements that make each type, by ``("pg_type", oid)``, and a domain's
        default and CHECK constraints as ``ALTER DOMAIN`` statements by ``("checks", oid)``
        (and the statements making a domain with them in :attr:`_domain_inline`)."""
        out: dict[tuple[str, int], list[str]] = {}
        rows = self.fetch(
            f"""
            SELECT t.oid, t.oid::pg_catalog.regtype::text, t.typtype,
                   pg_catalog.obj_description(t.oid, 'pg_type'),
                   CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            WHERE {USER_NS} AND {not_ext("t", "pg_type")}
              AND (t.typtype IN ('e', 'd', 'r') OR t.typtype = 'c' AND
                   (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
            ORDER BY t.oid"""
        )
        for oid, name, typtype, text, kind in rows:
            if typtype == "e":
                labels = self.fetch(
                    "SELECT enumlabel FROM pg_catalog.pg_enum WHERE enumtypid = %s"
                    " ORDER BY enumsortorder",
                    [oid],
                )
                stmt = (
                    f"CREATE TYPE {name} AS ENUM (" + ", ".join(literal(r[0]) for r in labels) + ")"
                )
            elif typtype == "d":
                stmt, self._domain_inline[oid], checks = self._domain(oid, name)
                if checks:
                    out[("checks", oid)] = checks
            elif typtype == "c":
                attrs = self.fetch(
                    """SELECT pg_catalog.quote_ident(a.attname),
                              pg_catalog.format_type(a.atttypid, a.atttypmod),
                              CASE WHEN a.attcollation <> t.typcollation
                                   THEN ' COLLATE ' || a.attcollation::pg_catalog.regcollation
                                   ELSE '' END
                       FROM pg_catalog.pg_type ct
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = ct.typrelid
                       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                       WHERE ct.oid = %s AND a.attnum > 0 AND NOT a.attisdropped
                       ORDER BY a.attnum""",
                    [oid],
                )
                stmt = (
                    f"CREATE TYPE {name} AS (\n"
                    + ",\n".join(f"    {a} {t}{c}" for a, t, c in attrs)
                    + "\n)"
                )
            else:
                stmt = self._range(oid, name)
            out[("pg_type", oid)] = [stmt, comment(kind, name, text)]
        return out

    def _domain(self, oid: int, name: str) -> tuple[str, list[str], list[str]]:
        """A domain as ``CREATE DOMAIN`` without its default and CHECK constraints; the
        statements making it with them (and their comments); and them as ``ALTER DOMAIN``
        statements (and the comments). A CHECK that is NOT VALID is added after the data,
        as ``pg_dump`` does: the source may hold rows against it."""
        base, coll, default, notnull = self.fetch(
            """SELECT pg_catalog.format_type(t.typbasetype, t.typtypmod),
                      CASE WHEN t.typcollation <> b.typcollation
                           THEN ' COLLATE ' || t.typcollation::pg_catalog.regcollation
                           ELSE '' END,
                      pg_catalog.pg_get_expr(t.typdefaultbin, 'pg_catalog.pg_type'::regclass),
                      t.typnotnull
               FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype
               WHERE t.oid = %s""",
            [oid],
        )[0]
        constraints = self.named(
            """SELECT pg_catalog.quote_ident(conname) AS name,
                      pg_catalog.pg_get_constraintdef(oid) AS definition, contype,
                      convalidated, pg_catalog.obj_description(oid, 'pg_constraint') AS comment
               FROM pg_catalog.pg_constraint WHERE contypid = %s ORDER BY conname""",
            [oid],
        )
        bare = f"CREATE DOMAIN {name} AS {base}{coll}"
        inline = bare + (f" DEFAULT {default}" if default is not None else "")
        alter = [f"ALTER DOMAIN {name} SET DEFAULT {default}"] if default is not None else []
        # PostgreSQL 17 and later list NOT NULL with its name among the constraints
        not_null = " NOT NULL" if notnull and all(c.contype != "n" for c in constraints) else ""
        bare, inline = bare + not_null, inline + not_null
        remarks = []
        for con in constraints:
            remark = comment("CONSTRAINT", f"{con.name} ON DOMAIN {name}", con.comment)
            add = f"ALTER DOMAIN {name} ADD CONSTRAINT {con.name} {con.definition}"
            if con.contype != "c":
                bare += f"\n\tCONSTRAINT {con.name} {con.definition}"
                inline += f"\n\tCONSTRAINT {con.name} {con.definition}"
                remarks.append(remark)
            elif not con.convalidated:
                self.late_checks += [add, remark]
            else:
                inline += f"\n\tCONSTRAINT {con.name} {con.definition}"
                alter.append(add)
                remarks.append(remark)
        return bare, [inline, *remarks], alter + remarks

    def _range(self, oid: int, name: str) -> str:
        sub, multi, opc, coll, diff = self.fetch(
            """SELECT r.rngsubtype::pg_catalog.regtype::text,
                      r.rngmultitypid::pg_catalog.regtype::text,
                      CASE WHEN NOT o.opcdefault THEN pg_catalog.quote_ident(on_.nspname) || '.'
                           || pg_catalog.quote_ident(o.opcname) END,
                      CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> st.typcollation
                           THEN r.rngcollation::pg_catalog.regcollation::text END,
                      CASE WHEN r.rngsubdiff <> 0
                           THEN r.rngsubdiff::pg_catalog.regproc::text END
               FROM pg_catalog.pg_range r
               JOIN pg_catalog.pg_type st ON st.oid = r.rngsubtype
               JOIN pg_catalog.pg_opclass o ON o.oid = r.rngsubopc
               JOIN pg_catalog.pg_namespace on_ ON on_.oid = o.opcnamespace
               WHERE r.rngtypid = %s""",
            [oid],
        )[0]
        opts = [f"subtype = {sub}", f"multirange_type_name = {multi}"]
        if opc:
            opts.append(f"subtype_opclass = {opc}")
        if coll:
            opts.append(f"collation = {coll}")
        if diff:
            opts.append(f"subtype_diff = {diff}")
        return f"CREATE TYPE {name} AS RANGE (\n    " + ",\n    ".join(opts) + "\n)"

    def functions(self) -> dict[tuple[str, int], list[str]]:
        """The statements that make each function, procedure and aggregate, by
        ``("pg_proc", oid)``; one in an untrusted language is a comment line."""
        out: dict[tuple[str, int], list[str]] = {}
        rows = self.named(
            f"""
            SELECT p.oid, p.prokind,
                   CASE WHEN p.prokind = 'a' AND p.pronargs = 0
                        THEN pg_catalog.quote_ident(n.nspname) || '.'
                             || pg_catalog.quote_ident(p.proname) || '(*)'
                        ELSE p.oid::pg_catalog.regprocedure::text END AS signature,
                   CASE WHEN p.prokind <> 'a' THEN pg_catalog.pg_get_functiondef(p.oid) END
                     AS definition,
                   pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
                   p.prokind = 'a' OR l.lanpltrusted AS trusted,
                   pg_catalog.quote_ident(l.lanname) AS language
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            JOIN pg_catalog.pg_language l ON l.oid = p.prolang
            WHERE {USER_NS} AND {not_ext("p", "pg_proc")}
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i  -- range constructors
                              WHERE i.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                                AND i.objid = p.oid AND i.deptype = 'i')
            ORDER BY p.oid"""
        )
        for fn in rows:
            kind, sig, language = fn.prokind, fn.signature, fn.language
            what = {"a": "AGGREGATE", "p": "PROCEDURE"}.get(kind, "FUNCTION")
            if not fn.trusted:
                # C, internal, plpython3u...: only a superuser may create it, and it can do
                # anything on the server that loads it
                self.tracker.warn(
                    spaces_for_controls(
                        f"{what.lower()} {sig} is left out: its language {language} is not "
                        "trusted (only a superuser may create it); objects that use it fail "
                        "to restore"
                    )
                )
                out[("pg_proc", fn.oid)] = [
                    comment_line(f"left out (untrusted language {language}): {what} {sig}")
                ]
                continue
            stmt = self._aggregate(fn.oid, sig) if kind == "a" else fn.definition
            if stmt:
                out[("pg_proc", fn.oid)] = [stmt, comment(what, sig, fn.comment)]
        return out

    def operators(self) -> dict[tuple[str, int], list[str]]:
        """The statements that make each operator, by ``("pg_operator", oid)``."""
        out: dict[tuple[str, int], list[str]] = {}
        rows = self.named(
            f"""
            SELECT o.oid, o.oprname, pg_catalog.quote_ident(n.nspname) || '.' || o.oprname AS name,
                   o.oprcode::pg_catalog.regproc::text AS code,
                   CASE WHEN o.oprleft <> 0 THEN pg_catalog.format_type(o.oprleft, NULL) END
                     AS left_type,
                   CASE WHEN o.oprright <> 0 THEN pg_catalog.format_type(o.oprright, NULL) END
                     AS right_type,
                   {_operator("o.oprcom")} AS commutator, {_operator("o.oprnegate")} AS negator,
                   NULLIF(o.oprrest, 0)::pg_catalog.regproc::text AS restrict_fn,
                   NULLIF(o.oprjoin, 0)::pg_catalog.regproc::text AS join_fn,
                   o.oprcanhash, o.oprcanmerge,
                   pg_catalog.obj_description(o.oid, 'pg_operator') AS comment
            FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n
              ON n.oid = o.oprnamespace
            WHERE {USER_NS} AND {not_ext("o", "pg_operator")} AND o.oprcode <> 0
            ORDER BY o.oid"""
        )
        for op in rows:
            _check_operator_name(op.oprname)
            left, right = op.left_type, op.right_type
            opts = [f"FUNCTION = {op.code}"]
            opts += [f"LEFTARG = {left}"] if left else []
            opts += [f"RIGHTARG = {right}"] if right else []
            opts += [f"COMMUTATOR = {op.commutator}"] if op.commutator else []
            opts += [f"NEGATOR = {op.negator}"] if op.negator else []
            opts += [f"RESTRICT = {op.restrict_fn}"] if op.restrict_fn else []
            opts += [f"JOIN = {op.join_fn}"] if op.join_fn else []
            opts += ["HASHES"] if op.oprcanhash else []
            opts += ["MERGES"] if op.oprcanmerge else []
            out[("pg_operator", op.oid)] = [
                f"CREATE OPERATOR {op.name} (\n    " + ",\n    ".join(opts) + "\n)",
                comment("OPERATOR", f"{op.name} ({left or 'NONE'}, {right or 'NONE'})", op.comment),
            ]
        return out

    def _aggregate(self, oid: int, sig: str) -> str:
        agg = self.named(
            f"""SELECT a.aggkind, a.aggtransfn::pg_catalog.regproc::text AS sfunc,
                      pg_catalog.format_type(a.aggtranstype, NULL) AS stype,
                      NULLIF(a.aggfinalfn, 0)::pg_catalog.regproc::text AS ffunc,
                      a.aggfinalextra,
                      NULLIF(a.aggcombinefn, 0)::pg_catalog.regproc::text AS cfunc,
                      NULLIF(a.aggserialfn, 0)::pg_catalog.regproc::text AS serfunc,
                      NULLIF(a.aggdeserialfn, 0)::pg_catalog.regproc::text AS deserfunc,
                      a.agginitval,
                      {_operator("a.aggsortop")} AS sortop, (SELECT o.oprname
                       FROM pg_catalog.pg_operator o WHERE o.oid = a.aggsortop) AS sortop_name,
                      a.aggtransspace, p.proparallel, a.aggfinalmodify
               FROM pg_catalog.pg_aggregate a JOIN pg_catalog.pg_proc p ON p.oid = a.aggfnoid
               WHERE a.aggfnoid = %s""",
            [oid],
        )[0]
        if agg.aggkind != "n":
            return ""  # ordered-set and hypothetical-set aggregates: not supported
        opts = [f"SFUNC = {agg.sfunc}", f"STYPE = {agg.stype}"]
        if agg.aggtransspace:
            opts.append(f"SSPACE = {agg.aggtransspace}")
        if agg.ffunc:
            opts.append(f"FINALFUNC = {agg.ffunc}")
            if agg.aggfinalextra:
                opts.append("FINALFUNC_EXTRA")
            if agg.aggfinalmodify != "r":
                modify = {"s": "SHAREABLE", "w": "READ_WRITE"}[agg.aggfinalmodify]
                opts.append(f"FINALFUNC_MODIFY = {modify}")
        if agg.cfunc:
            opts.append(f"COMBINEFUNC = {agg.cfunc}")
        if agg.serfunc:
            opts.append(f"SERIALFUNC = {agg.serfunc}")
        if agg.deserfunc:
            opts.append(f"DESERIALFUNC = {agg.deserfunc}")
        if agg.agginitval is not None:
            opts.append(f"INITCOND = {literal(agg.agginitval)}")
        if agg.sortop:
            _check_operator_name(agg.sortop_name)
            opts.append(f"SORTOP = {agg.sortop}")
        if agg.proparallel != "u":
            opts.append("PARALLEL = " + {"s": "SAFE", "r": "RESTRICTED"}[agg.proparallel])
        return f"CREATE AGGREGATE {sig} (\n    " + ",\n    ".join(opts) + "\n)"

    def _sequence_rows(self) -> list:
        if self._seqs is None:
            self._seqs = self._read_sequences()
        return self._seqs

    def _read_sequences(self) -> list:
        return self.named(
            f"""
            SELECT s.seqrelid, s.seqrelid::pg_catalog.regclass::text AS name,
                   pg_catalog.format_type(s.seqtypid, NULL) AS type, s.seqstart, s.seqincrement,
                   s.seqmin, s.seqmax, s.seqcache, s.seqcycle, d.deptype,
                   d.refobjid AS owner, pg_catalog.quote_ident(a.attname) AS col,
                   a.attidentity, pg_catalog.obj_description(s.seqrelid, 'pg_class') AS comment
            FROM pg_catalog.pg_sequence s
            JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_catalog.pg_depend d
              ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = s.seqrelid
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
             AND d.deptype IN ('a', 'i')
            LEFT JOIN pg_catalog.pg_attribute a
              ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE {USER_NS} AND {not_ext("c", "pg_class")}
            ORDER BY 2"""
        )

    def _wanted_sequence(self, deptype: str | None, owner: int | None) -> bool:
        return deptype is None or owner in self.names

    @staticmethod
    def _seq_options(seq: Any) -> str:
        return (
            f"START WITH {seq.seqstart} INCREMENT BY {seq.seqincrement}"
            f" MINVALUE {seq.seqmin} MAXVALUE {seq.seqmax}"
            f" CACHE {seq.seqcache}{' CYCLE' if seq.seqcycle else ' NO CYCLE'}"
        )

    def sequences(self) -> Iterable[str]:
        for seq in self._sequence_rows():
            if seq.deptype == "i" or not self._wanted_sequence(seq.deptype, seq.owner):
                continue
            yield f"CREATE SEQUENCE {seq.name} AS {seq.type} " + self._seq_options(seq)
            yield comment("SEQUENCE", seq.name, seq.comment)

    def owned_sequences(self) -> Iterable[str]:
        for seq in self._sequence_rows():
            if seq.owner not in self.names:
                continue
            owner = self.names[seq.owner]
            if seq.deptype == "a":
                yield f"ALTER SEQUENCE {seq.name} OWNED BY {owner}.{seq.col}"
            elif seq.deptype == "i":
                how = "ALWAYS" if seq.attidentity == "a" else "BY DEFAULT"
                yield (
                    f"ALTER TABLE {owner} ALTER COLUMN {seq.col} ADD GENERATED {how}"
                    f" AS IDENTITY (SEQUENCE NAME {seq.name} " + self._seq_options(seq) + ")"
                )
                yield comment("SEQUENCE", seq.name, seq.comment)

    def sequence_values(self) -> Iterable[str]:
        for seq in self._sequence_rows():
            if seq.seqrelid in self.src.sequence_values and self._wanted_sequence(
                seq.deptype, seq.owner
            ):
                value, called = self.src.sequence_values[seq.seqrelid]
                yield (
                    f"SELECT pg_catalog.setval({literal(seq.name)}, {value}, "
                    f"{'true' if called else 'false'})"
                )

    def _columns(self) -> dict[int, list]:
        if self._cols is None:
            self._cols = self._read_columns()
        return self._cols

    def _read_columns(self) -> dict[int, list]:
        cols: dict[int, list] = {o: [] for o in self.rel_oids}
        for col in self.named(
            """SELECT a.attrelid, pg_catalog.quote_ident(a.attname) AS name,
                      pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                      a.attislocal, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default,
                      a.attgenerated,
                      CASE WHEN a.attcollation <> t.typcollation
                           THEN ' COLLATE ' || a.attcollation::pg_catalog.regcollation
                           ELSE '' END AS collate,
                      pg_catalog.col_description(a.attrelid, a.attnum) AS comment, a.attnum
               FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_catalog.pg_attrdef d
                 ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
               ORDER BY a.attrelid, a.attnum""",
            [self.rel_oids],
        ):
            cols[col.attrelid].append(col)
        return cols

    def _calling_late_functions(self) -> tuple[dict[tuple[int, int], int], dict[int, int]]:
        """The tables' column defaults (by table and column number) and CHECK constraints (by
        oid) that call a function made after the tables (:attr:`late_functions`: one reading
        a table or view in a SQL-standard body), each with that function's group: they are
        set once it exists, by ``ALTER TABLE``, as ``pg_dump`` breaks such a loop; a CHECK
        after the data too, as what its function reads may be loaded after its table."""
        defaults: dict[tuple[int, int], int] = {}
        checks: dict[int, int] = {}
        for kind, rel, key, fn in self.fetch(
            """SELECT 'default', ad.adrelid, ad.adnum::pg_catalog.oid, d.refobjid
               FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_depend d
                 ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
               WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                 AND ad.adrelid = ANY(%s)
               UNION ALL
               SELECT 'check', con.conrelid, con.oid, d.refobjid
               FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_depend d
                 ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
                AND d.objid = con.oid
               WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                 AND con.contype = 'c' AND con.conrelid = ANY(%s)""",
            [self.table_oids, self.table_oids],
        ):
            group = self.late_functions.get(fn)
            if group is None:
                continue
            if kind == "default":
                defaults[(rel, key)] = max(defaults.get((rel, key), 0), group)
            else:
                checks[key] = max(checks.get(key, 0), group)
        return defaults, checks

    def create_tables(self) -> Iterable[str]:
        cols = self._columns()
        late_defaults, late_checks = self._calling_late_functions()
        #: where the statements of each group go: after the tables' or the views' functions
        later = {1: self.late_table_parts, 2: self.after_views}
        checks_later = {1: self.late_checks, 2: self.after_views}  # after the data
        late_remarks: dict[int, list[str]] = {1: [], 2: []}
        checks: dict[int, list] = {o: [] for o in self.table_oids}
        check_comments: dict[int, list[str]] = {o: [] for o in self.table_oids}
        for check in self.named(
            """SELECT oid, conrelid, pg_catalog.quote_ident(conname) AS name,
                      pg_catalog.pg_get_constraintdef(oid) AS definition, convalidated,
                      conislocal, coninhcount,
                      pg_catalog.obj_description(oid, 'pg_constraint') AS comment
               FROM pg_catalog.pg_constraint WHERE contype = 'c' AND conrelid = ANY(%s)
               ORDER BY conrelid, conname""",
            [self.table_oids],
        ):
            rel, name, cdef = check.conrelid, check.name, check.definition
            remark = comment("CONSTRAINT", f"{name} ON {self.names[rel]}", check.comment)
            group = late_checks.get(check.oid)
            if group is not None:
                if check.conislocal and not check.coninhcount:  # else its parent's makes it
                    checks_later[group].append(
                        f"ALTER TABLE {self.names[rel]} ADD CONSTRAINT {name} {cdef}"
                    )
                late_remarks[group].append(remark)
                continue
            if not check.convalidated:
                self.late_checks.append(
                    f"ALTER TABLE {self.names[rel]} ADD CONSTRAINT {name} {cdef}"
                )
                self.late_checks.append(remark)
                continue
            if check.conislocal:
                checks[rel].append((name, cdef, check.coninhcount))
            check_comments[rel].append(remark)
        settings: dict[int, list[str]] = {}
        storage = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}
        for rel, col, stats, store, opts in self.fetch(
            f"""SELECT a.attrelid, pg_catalog.quote_ident(a.attname), a.attstattarget,
                      CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END,
                      {options("a.attoptions")}
               FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
               WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
                 AND (a.attstattarget >= 0 OR a.attstorage <> t.typstorage
                      OR a.attoptions IS NOT NULL)
               ORDER BY a.attrelid, a.attnum""",
            [self.table_oids],
        ):
            alter = f"ALTER TABLE ONLY {self.names[rel]} ALTER COLUMN {col}"
            out = settings.setdefault(rel, [])
            if stats is not None and stats >= 0:
                out.append(f"{alter} SET STATISTICS {stats}")
            if store:
                out.append(f"{alter} SET STORAGE {storage[store]}")
            if opts:
                out.append(f"{alter} SET (" + ", ".join(opts) + ")")
        # PostgreSQL 18 names NOT NULL constraints (a partition keeps its own name when it was
        # attached, its parent's when created as PARTITION OF): keep each name as it is.
        nn_names = {
            (rel, attnum): name
            for rel, attnum, name in self.fetch(
                """SELECT conrelid, conkey[1], pg_catalog.quote_ident(conname)
                   FROM pg_catalog.pg_constraint WHERE contype = 'n' AND conrelid = ANY(%s)""",
                [self.table_oids],
            )
        }
        for (rel, attnum), group in late_defaults.items():
            c = next(c for c in cols[rel] if c.attnum == attnum)
            if not c.attgenerated:  # a generated column's expression cannot be set later
                later[group].append(
                    f"ALTER TABLE ONLY {self.names[rel]} ALTER COLUMN {c.name}"
                    f" SET DEFAULT {c.default}"
                )

        def default_of(rel: int, c: Any) -> str | None:
            """A column's default as ``CREATE TABLE`` gives it (a late one is set after)."""
            late = (rel, c.attnum) in late_defaults and not c.attgenerated
            return None if late else c.default

        parent_defaults: dict[int, dict[str, Any]] = {
            o: {
                c.name: (default_of(o, c), c.attnotnull, nn_names.get((o, c.attnum)))
                for c in cols[o]
            }
            for o in self.table_oids
        }
        for rel in self._parents_before_children():
            oid, name, ispart, parents = rel.oid, rel.name, rel.relispartition, rel.parents
            head = "CREATE UNLOGGED TABLE" if rel.relpersistence == "u" else "CREATE TABLE"
            items, after = [], []
            for c in cols[oid]:
                col, generated, notnull = c.name, c.attgenerated, c.attnotnull
                default = default_of(oid, c)
                nn = nn_names.get((oid, c.attnum))
                if ispart:
                    pdefault, pnotnull, pnn = parent_defaults[parents[0]].get(
                        col, (None, False, None)
                    )
                    if default != pdefault and not generated:
                        after.append(
                            f"ALTER TABLE ONLY {name} ALTER COLUMN {col} "
                            + (f"SET DEFAULT {default}" if default else "DROP DEFAULT")
                        )
                    if notnull and nn and nn != pnn:
                        items.append(f"    {col} WITH OPTIONS CONSTRAINT {nn} NOT NULL")
                    elif notnull and not pnotnull:
                        after.append(f"ALTER TABLE ONLY {name} ALTER COLUMN {col} SET NOT NULL")
                    continue
                if not c.attislocal:
                    continue  # inherited (INHERITS below)
                item = f"    {col} {c.type}{c.collate}"
                if generated:
                    item += f" GENERATED ALWAYS AS ({default}) STORED"
                elif default is not None:
                    item += f" DEFAULT {default}"
                if notnull:
                    item += f" CONSTRAINT {nn} NOT NULL" if nn else " NOT NULL"
                items.append(item)
            for cname, cdef, inh in checks[oid]:
                if not (ispart and inh):
                    items.append(f"    CONSTRAINT {cname} {cdef}")
            body = " (\n" + ",\n".join(items) + "\n)" if items or not ispart else ""
            if ispart:
                stmt = f"{head} {name} PARTITION OF {self.names[parents[0]]}{body}\n{rel.bound}"
            else:
                stmt = f"{head} {name}{body}"
                if parents:
                    stmt += "\nINHERITS (" + ", ".join(self.names[p] for p in parents) + ")"
            if rel.partkey:
                stmt += f"\nPARTITION BY {rel.partkey}"
            if rel.options:
                stmt += "\nWITH (" + ", ".join(rel.options) + ")"
            yield stmt
            yield from after
            yield from settings.get(oid, ())
            yield comment("TABLE", name, rel.comment)
            for c in cols[oid]:
                yield comment("COLUMN", f"{name}.{c.name}", c.comment)
            yield from check_comments[oid]
        for group, remarks in late_remarks.items():
            checks_later[group].extend(remarks)

    def _parents_before_children(self) -> list:
        by_oid = {t.oid: t for t in self.tables}
        done: set[int] = set()
        out = []

        def visit(oid: int) -> None:
            if oid in done:
                return
            done.add(oid)
            for p in by_oid[oid].parents:
                if p in by_oid:
                    visit(p)
            out.append(by_oid[oid])

        for t in self.tables:
            visit(t.oid)
        return out

    # -- post-data -------------------------------------------------------------------------

    def _views(self) -> list:
        views = self.named(
            f"""SELECT c.oid, c.oid::pg_catalog.regclass::text AS name, c.relkind,
                       pg_catalog.pg_get_viewdef(c.oid) AS definition,
                       {options("c.reloptions")} AS options, c.relispopulated,
                       pg_catalog.obj_description(c.oid, 'pg_class') AS comment
                FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                  ON n.oid = c.relnamespace
                WHERE c.relkind IN ('v', 'm') AND {USER_NS} AND {not_ext("c", "pg_class")}
                ORDER BY c.oid"""
        )
        oids = [v.oid for v in views]
        deps: dict[int, set[int]] = {o: set() for o in oids}
        for view, ref in self.fetch(
            """SELECT DISTINCT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r
               JOIN pg_catalog.pg_depend d
                 ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
               WHERE r.ev_class = ANY(%s) AND d.refobjid <> r.ev_class""",
            [oids],
        ):
            deps[view].add(ref)
        # Leave out views reading a relation that is not dumped (an excluded table).
        relations = {
            oid
            for (oid,) in self.fetch(
                f"""SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                    ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'f') AND {USER_NS}"""
            )
        }
        by_oid = {v.oid: v for v in views}
        out, state = [], {}

        def visit(oid: int) -> bool:
            if oid in state:
                return state[oid]
            state[oid] = True
            ok = all(
                visit(r) if r in by_oid else (r in self.names or r not in relations)
                for r in deps[oid]
            )
            state[oid] = ok
            if ok:
                out.append(by_oid[oid])
            return ok

        for v in views:
            visit(v.oid)
        return out

    def post_data(self) -> Iterable[str]:
        yield from self.late_checks
        rels = self.rel_oids
        cons = self.named(
            """SELECT con.conrelid, pg_catalog.quote_ident(con.conname) AS name, con.contype,
                      pg_catalog.pg_get_constraintdef(con.oid) AS definition, c.relkind,
                      con.conparentid,
                      pg_catalog.obj_description(con.oid, 'pg_constraint') AS comment,
                      con.confrelid
               FROM pg_catalog.pg_constraint con
               JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
               WHERE con.conrelid = ANY(%s) AND con.contype IN ('p', 'u', 'x', 'f')
               ORDER BY con.conrelid::pg_catalog.regclass::text, con.conname""",
            [rels],
        )
        names = {**self.names, **{v.oid: v.name for v in self.views}}
        comments = []
        for con in cons:
            if con.contype != "f":
                on = names[con.conrelid]
                yield f"ALTER TABLE ONLY {on}\n    ADD CONSTRAINT {con.name} {con.definition}"
                comments.append(comment("CONSTRAINT", f"{con.name} ON {on}", con.comment))
        indexes = self.named(
            """SELECT i.indexrelid, i.indrelid,
                      pg_catalog.pg_get_indexdef(i.indexrelid) AS definition,
                      i.indexrelid::pg_catalog.regclass::text AS name,
                      CASE WHEN i.indisclustered THEN pg_catalog.quote_ident(ic.relname) END
                        AS clustered,
                      pg_catalog.obj_description(i.indexrelid, 'pg_class') AS comment,
                      EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con
                              WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                                AND con.contype IN ('p', 'u', 'x')) AS backs_constraint
               FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
               WHERE i.indrelid = ANY(%s)
               ORDER BY i.indexrelid::pg_catalog.regclass::text""",
            [rels],
        )
        view_oids = {v.oid for v in self.views}
        matview_later = []
        for index in indexes:
            if not index.backs_constraint:
                if index.indrelid in view_oids:
                    matview_later.append(index.definition)
                else:
                    yield index.definition
                comments.append(comment("INDEX", index.name, index.comment))
            # CLUSTER ON takes the index's bare name: the table's schema is its own
            if index.clustered:
                comments.append(f"ALTER TABLE {names[index.indrelid]} CLUSTER ON {index.clustered}")
        for parent, child in self.fetch(
            """SELECT i.inhparent::pg_catalog.regclass::text, i.inhrelid::pg_catalog.regclass::text
               FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
               WHERE c.relkind IN ('i', 'I') AND i.inhrelid = ANY(%s)
               ORDER BY 2""",
            [[index.indexrelid for index in indexes]],
        ):
            yield f"ALTER INDEX {parent} ATTACH PARTITION {child}"
        for rel, ident, idx in self.fetch(
            """SELECT c.oid, c.relreplident, (SELECT pg_catalog.quote_ident(ic.relname)
                   FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                   WHERE i.indrelid = c.oid AND i.indisreplident)
               FROM pg_catalog.pg_class c WHERE c.oid = ANY(%s) AND c.relreplident <> 'd'
               ORDER BY c.oid""",
            [self.table_oids],
        ):
            how = {"n": "NOTHING", "f": "FULL", "i": f"USING INDEX {idx}"}[ident]
            comments.append(f"ALTER TABLE ONLY {names[rel]} REPLICA IDENTITY {how}")
        yield from self._create_views(matview_later)
        # a table's key to one copied without rows, which its rows may name: not checked
        empty = {s.oid for s in self.src.tables() if s.key in self.src.no_rows}
        for con in cons:
            if con.contype == "f" and not con.conparentid and con.confrelid in names:
                on = ("" if con.relkind == "p" else "ONLY ") + names[con.conrelid]
                unchecked = con.confrelid in empty and con.conrelid not in empty
                if unchecked and con.relkind == "p":  # PostgreSQL 17 and older: no NOT VALID
                    self.tracker.warn(
                        spaces_for_controls(
                            f"foreign key {con.name} of {names[con.conrelid]} is left out: it "
                            f"names {names[con.confrelid]}, copied without rows, and a key of a "
                            "partitioned table cannot be added unchecked"
                        )
                    )
                    yield comment_line(f"left out (names a table copied without rows): {on}")
                    continue
                yield f"ALTER TABLE {on}\n    ADD CONSTRAINT {con.name} {con.definition}" + (
                    " NOT VALID" if unchecked else ""
                )
                comments.append(
                    comment("CONSTRAINT", f"{con.name} ON {names[con.conrelid]}", con.comment)
                )
        for tdef, tname, rel, enabled, text in self.fetch(
            """SELECT pg_catalog.pg_get_triggerdef(t.oid), pg_catalog.quote_ident(t.tgname),
                      t.tgrelid, t.tgenabled, pg_catalog.obj_description(t.oid, 'pg_trigger')
               FROM pg_catalog.pg_trigger t
               WHERE t.tgrelid = ANY(%s) AND NOT t.tgisinternal AND t.tgparentid = 0
               ORDER BY t.tgrelid::pg_catalog.regclass::text, t.tgname""",
            [rels],
        ):
            yield tdef
            if enabled == "D":
                yield f"ALTER TABLE {names[rel]} DISABLE TRIGGER {tname}"
            elif enabled in ("R", "A"):
                how = "REPLICA" if enabled == "R" else "ALWAYS"
                yield f"ALTER TABLE {names[rel]} ENABLE {how} TRIGGER {tname}"
            comments.append(comment("TRIGGER", f"{tname} ON {names[rel]}", text))
        for rdef, rname, rel, text in self.fetch(
            """SELECT pg_catalog.pg_get_ruledef(r.oid), pg_catalog.quote_ident(r.rulename),
                      r.ev_class, pg_catalog.obj_description(r.oid, 'pg_rewrite')
               FROM pg_catalog.pg_rewrite r
               WHERE r.ev_class = ANY(%s) AND r.rulename <> '_RETURN'
               ORDER BY r.ev_class::pg_catalog.regclass::text, r.rulename""",
            [rels],
        ):
            yield rdef
            comments.append(comment("RULE", f"{rname} ON {names[rel]}", text))
        for sdef, sname, target, text in self.fetch(
            """SELECT pg_catalog.pg_get_statisticsobjdef(s.oid),
                      pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(s.stxname),
                      s.stxstattarget, pg_catalog.obj_description(s.oid, 'pg_statistic_ext')
               FROM pg_catalog.pg_statistic_ext s
               JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
               WHERE s.stxrelid = ANY(%s) ORDER BY 2""",
            [rels],
        ):
            yield sdef
            if target is not None and target >= 0:
                yield f"ALTER STATISTICS {sname} SET STATISTICS {int(target)}"
            comments.append(comment("STATISTICS", sname, text))
        yield from comments

    def _readers(self, oids: list[int], *, partitions: bool = False) -> set[int]:
        """``oids`` and the views and materialized views reading them, through views too;
        ``partitions``: reading their partitions too."""
        start = "SELECT pg_catalog.unnest(%s::pg_catalog.oid[])"
        if partitions:  # a plain table has no tree: pg_partition_tree() gives no row
            start += (
                " UNION SELECT t.relid FROM pg_catalog.unnest(%s::pg_catalog.oid[]) s(oid),"
                " pg_catalog.pg_partition_tree(s.oid) t"
            )
        return {
            oid
            for (oid,) in self.fetch(
                f"""WITH RECURSIVE r (oid) AS ({start}
                   UNION SELECT w.ev_class FROM pg_catalog.pg_depend d
                   JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid JOIN r ON d.refobjid = r.oid
                   WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass)
                   SELECT oid FROM r""",
                [oids, oids] if partitions else [oids],
            )
        }

    def _create_views(self, matview_indexes: list[str]) -> Iterable[str]:
        cols = self._columns()
        refresh = []
        # a view reading (through views too) a table copied without rows: its rows came from
        # that table's, and a query fine on them may fail on none (count(*) as a divisor);
        # one reading a redacted table (or a partition of one) is left unfilled too, as
        # the profile's rules did not foresee what it computes from the redacted values
        emptied = [s.oid for s in self.src.tables() if s.key in self.src.no_rows]
        readers = self._readers(emptied)
        redacted = self._readers(
            [s.oid for s in self.src.tables() if s.key in self.src.redacted], partitions=True
        )
        for view in self.views:
            name, kind = view.name, view.relkind
            with_ = " WITH (" + ", ".join(view.options) + ")" if view.options else ""
            body = view.definition.rstrip().rstrip(";")
            if kind == "v":
                yield f"CREATE VIEW {name}{with_} AS\n{body}"
                what = "VIEW"
            else:
                yield f"CREATE MATERIALIZED VIEW {name}{with_} AS\n{body}\n  WITH NO DATA"
                what = "MATERIALIZED VIEW"
                if view.relispopulated and view.oid in readers | redacted:
                    what = (
                        "a table copied without rows" if view.oid in readers else "a redacted table"
                    )
                    self.tracker.warn(
                        spaces_for_controls(
                            f"materialized view {name} reads {what}: it "
                            f"is left unfilled (REFRESH MATERIALIZED VIEW {name} fills it)"
                        )
                    )
                elif view.relispopulated:
                    refresh.append(f"REFRESH MATERIALIZED VIEW {name}")
            yield comment(what, name, view.comment)
            for c in cols[view.oid]:
                if c.default is not None and kind == "v":
                    yield f"ALTER VIEW {name} ALTER COLUMN {c.name} SET DEFAULT {c.default}"
                yield comment("COLUMN", f"{name}.{c.name}", c.comment)
        yield from self.after_views  # functions reading a view
        yield from matview_indexes
        yield from refresh


__all__ = ["write_native", "Catalog"]
