"""PostgreSQL -> ``postgres`` format: definitions straight from the source's catalog.

Every query runs in the source's snapshot with ``search_path = ''``, so ``regclass``/``regtype``
text and the ``pg_get_*def`` functions give schema-qualified, quoted names as ``pg_dump`` does.
Objects that belong to an extension are left to ``CREATE EXTENSION``. Not copied: owners,
privileges, row-level security policies, publications, foreign tables, large objects (a database
owner can't recreate some of them, and a support copy doesn't need them).
"""

from __future__ import annotations

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


def write_postgres(source: PostgresSource, path: Path, tracker: Tracker) -> None:
    """Write the ``postgres`` format (gzipped SQL for psql) to ``path``."""
    with dump_file(path) as out:
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
        self.domain_later: list[str] = []

    def named(self, query: str, params: list | None = None) -> list[Any]:
        """The rows of ``query`` as named tuples, a field per column (by its name or alias)."""
        return self.src.fetch(query, params, row_factory=namedtuple_row)

    # -- pre-data --------------------------------------------------------------------------

    def pre_data(self) -> Iterable[str]:
        yield from self.schemas()
        yield from self.extensions()
        yield from self.types()
        late: list[str] = []
        yield from self.functions(late)
        yield from self.domain_later
        yield from self.sequences()
        yield from self.create_tables()
        yield from late  # functions using a table's row type
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

    def types(self) -> Iterable[str]:
        rows = self.fetch(
            f"""
            SELECT t.oid, t.oid::pg_catalog.regtype::text, t.typtype,
                   pg_catalog.obj_description(t.oid, 'pg_type'),
                   CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            WHERE {USER_NS} AND {not_ext("t", "pg_type")}
              AND (t.typtype IN ('e', 'd', 'r') OR t.typtype = 'c' AND
                   (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
            ORDER BY t.typtype <> 'e', t.oid"""
        )
        for oid, name, typtype, text, kind in rows:
            if typtype == "e":
                labels = self.fetch(
                    "SELECT enumlabel FROM pg_catalog.pg_enum WHERE enumtypid = %s"
                    " ORDER BY enumsortorder",
                    [oid],
                )
                yield (
                    f"CREATE TYPE {name} AS ENUM (" + ", ".join(literal(r[0]) for r in labels) + ")"
                )
            elif typtype == "d":
                yield self._domain(oid, name)
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
                yield (
                    f"CREATE TYPE {name} AS (\n"
                    + ",\n".join(f"    {a} {t}{c}" for a, t, c in attrs)
                    + "\n)"
                )
            else:
                yield self._range(oid, name)
            yield comment(kind, name, text)

    def _domain(self, oid: int, name: str) -> str:
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
        text = f"CREATE DOMAIN {name} AS {base}{coll}"
        # its default and checks may call functions, created after the types: they follow
        # those (see pre_data)
        if default is not None:
            self.domain_later.append(f"ALTER DOMAIN {name} SET DEFAULT {default}")
        constraints = self.fetch(
            """SELECT pg_catalog.quote_ident(conname), pg_catalog.pg_get_constraintdef(oid),
                      contype
               FROM pg_catalog.pg_constraint WHERE contypid = %s ORDER BY conname""",
            [oid],
        )
        # PostgreSQL 17 and later list NOT NULL with its name among the constraints
        if notnull and not any(kind == "n" for _, _, kind in constraints):
            text += " NOT NULL"
        for cname, cdef, kind in constraints:
            if kind == "c":
                self.domain_later.append(f"ALTER DOMAIN {name} ADD CONSTRAINT {cname} {cdef}")
            else:
                text += f"\n\tCONSTRAINT {cname} {cdef}"
        return text

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

    def functions(self, late: list[str]) -> Iterable[str]:
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
                   EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                           JOIN pg_catalog.pg_type t ON t.oid = d.refobjid
                           JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
                           WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                             AND d.objid = p.oid AND c.relkind <> 'c'
                             AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass)
                     AS uses_rowtype,  -- of a table: created after the tables
                   p.prokind = 'a' OR l.lanpltrusted AS trusted,
                   pg_catalog.quote_ident(l.lanname) AS language
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            JOIN pg_catalog.pg_language l ON l.oid = p.prolang
            WHERE {USER_NS} AND {not_ext("p", "pg_proc")}
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i  -- range constructors
                              WHERE i.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                                AND i.objid = p.oid AND i.deptype = 'i')
            ORDER BY p.prokind = 'a', p.oid"""
        )
        operators_done = False
        for fn in rows:
            kind, sig, language = fn.prokind, fn.signature, fn.language
            if kind == "a" and not operators_done:  # after their functions, before SORTOP
                operators_done = True
                yield from self.operators()
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
                yield comment_line(f"left out (untrusted language {language}): {what} {sig}")
                continue
            stmt = self._aggregate(fn.oid, sig) if kind == "a" else fn.definition
            if not stmt:
                continue
            target = late if fn.uses_rowtype else None
            for s in (stmt, comment(what, sig, fn.comment)):
                if target is not None:
                    target.append(s)
                else:
                    yield s
        if not operators_done:
            yield from self.operators()

    def operators(self) -> Iterable[str]:
        rows = self.named(
            f"""
            SELECT o.oprname, pg_catalog.quote_ident(n.nspname) || '.' || o.oprname AS name,
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
            yield f"CREATE OPERATOR {op.name} (\n    " + ",\n    ".join(opts) + "\n)"
            yield comment(
                "OPERATOR", f"{op.name} ({left or 'NONE'}, {right or 'NONE'})", op.comment
            )

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

    def create_tables(self) -> Iterable[str]:
        cols = self._columns()
        checks: dict[int, list] = {o: [] for o in self.table_oids}
        check_comments: dict[int, list[str]] = {o: [] for o in self.table_oids}
        for check in self.named(
            """SELECT conrelid, pg_catalog.quote_ident(conname) AS name,
                      pg_catalog.pg_get_constraintdef(oid) AS definition, convalidated,
                      conislocal, coninhcount,
                      pg_catalog.obj_description(oid, 'pg_constraint') AS comment
               FROM pg_catalog.pg_constraint WHERE contype = 'c' AND conrelid = ANY(%s)
               ORDER BY conrelid, conname""",
            [self.table_oids],
        ):
            rel, name, cdef = check.conrelid, check.name, check.definition
            remark = comment("CONSTRAINT", f"{name} ON {self.names[rel]}", check.comment)
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
        parent_defaults: dict[int, dict[str, Any]] = {
            o: {c.name: (c.default, c.attnotnull, nn_names.get((o, c.attnum))) for c in cols[o]}
            for o in self.table_oids
        }
        for rel in self._parents_before_children():
            oid, name, ispart, parents = rel.oid, rel.name, rel.relispartition, rel.parents
            head = "CREATE UNLOGGED TABLE" if rel.relpersistence == "u" else "CREATE TABLE"
            items, after = [], []
            for c in cols[oid]:
                col, default, generated, notnull = c.name, c.default, c.attgenerated, c.attnotnull
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
        for con in cons:
            if con.contype == "f" and not con.conparentid and con.confrelid in names:
                on = ("" if con.relkind == "p" else "ONLY ") + names[con.conrelid]
                yield f"ALTER TABLE {on}\n    ADD CONSTRAINT {con.name} {con.definition}"
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

    def _create_views(self, matview_indexes: list[str]) -> Iterable[str]:
        cols = self._columns()
        refresh = []
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
                if view.relispopulated:
                    refresh.append(f"REFRESH MATERIALIZED VIEW {name}")
            yield comment(what, name, view.comment)
            for c in cols[view.oid]:
                if c.default is not None and kind == "v":
                    yield f"ALTER VIEW {name} ALTER COLUMN {c.name} SET DEFAULT {c.default}"
                yield comment("COLUMN", f"{name}.{c.name}", c.comment)
        yield from matview_indexes
        yield from refresh


__all__ = ["write_native", "Catalog"]
