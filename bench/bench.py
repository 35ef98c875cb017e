"""Time and peak memory of our exports against the usual tools, on the same data, in one run.

    make bench BENCH_ARGS="--scale 20"

Builds `pgbench -i -s N` in PostgreSQL (database fbm_bench_sN, kept between runs) and the same
four tables in SQLite, then runs each job as a separate process and prints a table of seconds,
peak RSS and our time as a ratio of the anchor's. Below the usual tools come our own rows:
each path redacted (`pgbench_accounts.filler` hashed, `abalance` fixed) against the same path
unredacted, each path encrypted (`--encrypt-to` a new age key) against the same path
unencrypted, and each SQLite format verified (the default) against `--no-verify`. The rows
against the usual tools, the redacted and the encrypted ones measure the export's own time
(`--no-verify`: the tools verify nothing); the verification rows add what verifying costs.
Each job and its anchor run in turn `--repeat` times and the fastest run of each counts: on a
shared machine the slower runs measure the neighbours (a command slower than a minute, as
db-to-sqlite at scale 100, runs once; above scale 20 the default is 2 runs: the whole bench
at `--scale 100` took 35 minutes with 3, on 2 cores). The anchors `db-to-sqlite` (and the
psycopg2 it needs), DuckDB 1.4.4 and its postgres and sqlite extensions live in their own
venv, .venv-bench, made by `make bench`: never a dependency of ours; `make bench` installs
Debian's pigz and pgloader where they are missing. Below the usual tools come the strongest
ones a user could pick instead (issue 16): `pg_dump -Fc`, `pg_dump | pigz`, DuckDB filling our
own schema (taken once, before timing, from our own output's sqlite_master) and DuckDB's
`CREATE TABLE AS`, `sqlite3 .dump | pigz`, `VACUUM INTO` against our export with its
verification, and pgloader against our export and restore (each run into a new database,
created and dropped outside the timing). Each row prints the min and the median of its runs;
the ratio is of the mins. "busy" is the share of the machine's cores (all of them, the
database server's work included) busy during the fastest run: near 100% on both sides, the
job is bound by the machine's cores, and only doing less work makes it faster. The restore
row loads our `postgres` file and pg_dump's plain file of the same snapshot, both made once
before timing, through psql into a new database.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flask_backup_manager.engine.encryption import keygen
from flask_backup_manager.engine.writers.postgres.sql import OVERRIDE

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".venv-bench"
DUCKDB = ROOT / "bench" / "duckdb_anchor.py"
#: seconds past which a command runs once: a slow tool's minimum would not move by more than
#: its neighbours' noise, and repeating db-to-sqlite at --scale 100 took a quarter of an hour
ONCE = 60.0
RESTORE_DB = "fbm_bench_restore"  # the restore rows' target, new for each run


def cpu_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every core since boot, from Linux's /proc/stat; (0, 0)
    elsewhere. Busy is all but idle and I/O wait: the database server's work counts too."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def run(cmd: str, env: dict | None = None) -> tuple[float, float, float | None]:
    """Run a shell command; (wall seconds, peak RSS in MiB of its largest process, the share
    of the machine's cores busy meanwhile, None where unknown)."""
    before = cpu_ticks()
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", cmd],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    after = cpu_ticks()
    busy = (after[0] - before[0]) / (after[1] - before[1]) if after[1] > before[1] else None
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd}: exit {proc.returncode}: {stderr.strip()[-300:]}")
    return elapsed, usage.ru_maxrss / 1024, busy


def psql(url: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-X", "-qAt", "-d", url, "-c", sql], check=True, capture_output=True, text=True
    ).stdout.strip()


def build_postgres(admin_url: str, scale: int) -> str:
    name = f"fbm_bench_s{scale}"
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    if psql(admin_url, f"select count(*) from pg_database where datname = '{name}'") == "0":
        psql(admin_url, f"create database {name}")
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(scale), "-d", url], check=True, capture_output=True
        )
    return url


def build_sqlite(path: Path, scale: int) -> None:
    """pgbench's four tables and row counts, filled by SQLite itself."""
    if path.exists():
        return
    con = sqlite3.connect(path)
    con.executescript(f"""
        create table pgbench_branches (bid integer primary key, bbalance integer, filler text);
        create table pgbench_tellers (tid integer primary key, bid integer, tbalance integer,
                                      filler text);
        create table pgbench_accounts (aid integer primary key, bid integer, abalance integer,
                                       filler text);
        create table pgbench_history (tid integer, bid integer, aid integer, delta integer,
                                      mtime timestamp, filler text);
        with recursive n(i) as (select 1 union all select i + 1 from n where i < {scale})
        insert into pgbench_branches select i, 0, null from n;
        with recursive n(i) as (select 1 union all select i + 1 from n where i < {10 * scale})
        insert into pgbench_tellers select i, (i - 1) / 10 + 1, 0, null from n;
        with recursive n(i) as (select 1 union all select i + 1 from n where i < {100000 * scale})
        insert into pgbench_accounts select i, (i - 1) / 100000 + 1, 0, printf('%84s', '') from n;
    """)
    con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=20, help="pgbench scale (100,000 rows each)")
    ap.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"),
    )
    ap.add_argument(
        "--only",
        help="run only the rows where this regular expression is found in 'job | anchor'"
        " (a plain word: the rows whose job or anchor holds it)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        help="runs of each command (fastest counts); default 3, and 2 above scale 20, so that"
        " --scale 100 ends within half an hour",
    )
    args = ap.parse_args()
    if args.repeat is None:
        args.repeat = 3 if args.scale <= 20 else 2
    # the package's bytecode, as installing it writes it: this tree is installed editable, and
    # where PYTHONDONTWRITEBYTECODE is set every export would compile it again (0.26 s a run)
    compileall.compile_dir(ROOT / "src", quiet=1)

    work = Path(tempfile.mkdtemp(prefix="fbm-bench-"))
    pg = build_postgres(args.admin_url, args.scale)
    data_dir = ROOT / "bench" / "out"
    data_dir.mkdir(exist_ok=True)
    lite = data_dir / f"pgbench_s{args.scale}.sqlite3"
    build_sqlite(lite, args.scale)
    ours = f"{shlex.quote(sys.executable)} -m flask_backup_manager export --no-verify"
    d2s = BENCH_VENV / "bin" / "db-to-sqlite"
    pg2 = pg.replace("postgresql://", "postgresql+psycopg2://", 1)  # the anchor's own driver
    q = shlex.quote
    out = lambda name: q(str(work / name))  # noqa: E731
    prep = Path(tempfile.mkdtemp(prefix="fbm-bench-prep-"))  # kept across the runs' clean-ups
    schema = prep / "schema.sql"
    duck = f"{q(str(BENCH_VENV / 'bin' / 'python'))} {q(str(DUCKDB))}"
    restore_url = pg.rsplit("/", 1)[0] + f"/{RESTORE_DB}"
    jobs = [
        (
            "PostgreSQL -> postgres",
            f"{ours} --source {q(pg)} --format postgres --output {out('a.sql.gz')}",
            "pg_dump | gzip",
            f"pg_dump -d {q(pg)} | gzip -6 > {out('b.sql.gz')}",
            1.3,
        ),
        (
            "PostgreSQL -> sqlite3_db",
            f"{ours} --source {q(pg)} --format sqlite3_db --output {out('c.db')}",
            "db-to-sqlite --all",
            f"{d2s} {q(pg2)} {out('d.db')} --all",
            0.1,
        ),
        (
            "PostgreSQL -> sqlite3",
            f"{ours} --source {q(pg)} --format sqlite3 --output {out('e.sql.gz')}",
            "db-to-sqlite + .dump | gzip",
            f"{d2s} {q(pg2)} {out('f.db')} --all && "
            f"sqlite3 {out('f.db')} .dump | gzip -6 > {out('f.sql.gz')}",
            0.15,
        ),
        (
            "SQLite -> sqlite3",
            f"{ours} --source sqlite:///{lite} --format sqlite3 --output {out('g.sql.gz')}",
            "sqlite3 .dump | gzip",
            f"sqlite3 {q(str(lite))} .dump | gzip -6 > {out('h.sql.gz')}",
            1.5,
        ),
        (
            "SQLite -> sqlite3_db",
            f"{ours} --source sqlite:///{lite} --format sqlite3_db --output {out('i.db')}",
            "VACUUM INTO",
            f"sqlite3 {q(str(lite))} \"VACUUM INTO '{work / 'j.db'}'\"",
            1.5,
        ),
        (
            "SQLite -> postgres",
            f"{ours} --source sqlite:///{lite} --format postgres --output {out('k.sql.gz')}",
            "sqlite3 .dump | gzip",
            f"sqlite3 {q(str(lite))} .dump | gzip -6 > {out('l.sql.gz')}",
            2.0,
        ),
    ]
    ours_of = {name: mine for name, mine, *_ in jobs}
    verified = ours_of["SQLite -> sqlite3_db"].replace(" --no-verify", "", 1)
    jobs += [
        (
            "PostgreSQL -> postgres",
            ours_of["PostgreSQL -> postgres"],
            "pg_dump -Fc",
            f"pg_dump -Fc -d {q(pg)} -f {out('m.dump')}",
            1.0,
        ),
        (
            "PostgreSQL -> postgres",
            ours_of["PostgreSQL -> postgres"],
            "pg_dump | pigz -6",
            f"pg_dump -d {q(pg)} | pigz -6 > {out('n.sql.gz')}",
            0.8,
        ),
        (
            "PostgreSQL -> sqlite3_db",
            ours_of["PostgreSQL -> sqlite3_db"],
            "DuckDB, same schema",
            f"{duck} same-schema {q(pg)} {out('o.db')} {q(str(schema))}",
            0.5,
        ),
        (
            "PostgreSQL -> sqlite3_db",
            ours_of["PostgreSQL -> sqlite3_db"],
            "DuckDB CREATE TABLE AS",
            f"{duck} ctas {q(pg)} {out('p.db')}",
            1.0,
        ),
        (
            "PostgreSQL -> sqlite3",
            ours_of["PostgreSQL -> sqlite3"],
            "DuckDB + .dump | pigz",
            f"{duck} same-schema {q(pg)} {out('q.db')} {q(str(schema))} && "
            f"sqlite3 {out('q.db')} .dump | pigz -6 > {out('q.sql.gz')}",
            0.5,
        ),
        (
            "SQLite -> sqlite3",
            ours_of["SQLite -> sqlite3"],
            "sqlite3 .dump | pigz -6",
            f"sqlite3 {q(str(lite))} .dump | pigz -6 > {out('s.sql.gz')}",
            0.8,
        ),
        (
            "SQLite -> sqlite3_db, verified",
            verified,
            "VACUUM INTO",
            f"sqlite3 {q(str(lite))} \"VACUUM INTO '{work / 'u.db'}'\"",
            1.1,
        ),
        (
            "SQLite -> postgres, export + restore",
            f"{_renamed(ours_of['SQLite -> postgres'], 'w')} && {q(sys.executable)} -m"
            f" flask_backup_manager restore --as-superuser --target {q(restore_url)}"
            f" {q(str(work / 'w-k.sql.gz'))}",
            "pgloader",
            f"pgloader --on-error-stop sqlite://{q(str(lite))} {q(restore_url)}",
            0.4,
        ),
    ]
    # the restores: the same snapshot's files, made once before any timing (:func:`_prepare`)
    ours_file, pg_dump_file = prep / "ours.sql.gz", prep / "pg_dump.sql.gz"
    into = f"psql -X -q -v ON_ERROR_STOP=1 -d {q(restore_url)} > /dev/null"
    jobs.append(
        (
            "restore of our postgres file, psql",
            f"gunzip -c {q(str(ours_file))} | PGOPTIONS='-c {OVERRIDE}=on' {into}",
            "pg_dump's plain file, psql",
            f"gunzip -c {q(str(pg_dump_file))} | {into}",
            0.8,
        )
    )
    prepare = {
        ours_file: f"{ours} --source {q(pg)} --format postgres --output {q(str(ours_file))}",
        pg_dump_file: f"pg_dump -d {q(pg)} | gzip -6 > {q(str(pg_dump_file))}",
    }
    redact = " --redact pgbench_accounts.filler=hash --redact pgbench_accounts.abalance=fixed:0"
    for name, mine in ours_of.items():
        jobs.append(
            (f"{name}, redacted", _renamed(mine, "r") + redact, "ours unredacted", mine, 1.3)
        )
    recipient = keygen()[1]
    for name, mine in ours_of.items():
        encrypted = f"{_renamed(mine, 'x')} --encrypt-to {recipient}"
        jobs.append((f"{name}, encrypted", encrypted, "ours unencrypted", mine, 1.2))
    for name, mine in ours_of.items():
        if name.endswith(("sqlite3", "sqlite3_db")):
            verified = _renamed(mine, "v").replace(" --no-verify", "", 1)
            jobs.append((f"{name}, verification", verified, "ours --no-verify", mine, 1.5))
    s3 = start_s3(data_dir) if not args.only or "S3" in args.only else None
    if s3 is not None:
        name, mine = "PostgreSQL -> postgres", ours_of["PostgreSQL -> postgres"]
        to_s3 = (
            f"{q(sys.executable)} {q(str(ROOT / 'bench' / 'to_s3.py'))} --no-verify"
            f" --source {q(pg)} --format postgres --url s3://{s3[1]}/bench/a.sql.gz"
            f" --endpoint {q(s3[0].endpoint_url)}"
        )
        jobs.append((f"{name}, to S3", to_s3, "ours to local disk", mine, 1.5))
    print(f"scale {args.scale}: {100000 * args.scale:,} accounts rows; work dir {work}\n")
    print(
        "| job | ours s | ours median | ours MiB | ours busy | anchor | anchor s | anchor median"
        " | anchor MiB | anchor busy | ratio | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    worst_mem = 0.0
    for name, mine, anchor_name, anchor, goal in jobs:
        if args.only and not re.search(args.only, f"{name} | {anchor_name}"):
            continue
        anchor_name = anchor_name.replace("|", "\\|")  # a pipe inside a Markdown cell
        if _missing(anchor, d2s):
            print(
                f"| {name} | | | | | {anchor_name} | (not installed: make bench) | | | | |"
                f" <= {goal}x |"
            )
            continue
        ours_runs, anchor_runs = [], []
        try:
            if str(schema) in anchor and not schema.exists():
                _take_schema(ours_of["PostgreSQL -> sqlite3_db"], work, schema)
            for made, cmd in prepare.items():
                if str(made) in mine + anchor and not made.exists():
                    run(cmd)
            for i in range(args.repeat):  # in turn, so both meet the same neighbours
                for cmd, runs in ((mine, ours_runs), (anchor, anchor_runs)):
                    if i and min(t for t, *_ in runs) > ONCE:
                        continue
                    if restore_url in cmd:
                        _new_database(args.admin_url, RESTORE_DB)
                    try:
                        runs.append(run(cmd))
                    finally:
                        if restore_url in cmd:
                            psql(args.admin_url, f"drop database if exists {RESTORE_DB}")
                for f in work.iterdir():  # each run starts from an empty directory
                    f.unlink()
        except RuntimeError as e:
            print(f"| {name} | failed: {e} | | | | | | | | | | <= {goal}x |")
            continue
        (t_ours, _, b_ours), (t_anchor, _, b_anchor) = (
            min(ours_runs, key=lambda r: r[0]),
            min(anchor_runs, key=lambda r: r[0]),
        )
        med_ours = statistics.median(t for t, *_ in ours_runs)
        med_anchor = statistics.median(t for t, *_ in anchor_runs)
        m_ours, m_anchor = max(m for _, m, _ in ours_runs), max(m for _, m, _ in anchor_runs)
        worst_mem = max(worst_mem, m_ours)
        ratio = t_ours / t_anchor
        mark = "ok" if ratio <= goal else "SLOW"
        print(
            f"| {name} | {t_ours:.2f} | {med_ours:.2f} | {m_ours:.0f} | {_share(b_ours)} |"
            f" {anchor_name} | {t_anchor:.2f} | {med_anchor:.2f} | {m_anchor:.0f} |"
            f" {_share(b_anchor)} | {ratio:.2f}x {mark} | <= {goal}x |"
        )
    print(f"\npeak memory of our exports: {worst_mem:.0f} MiB (goal: under 100 MiB at -s 100)")
    if s3 is not None:
        s3[0].stop()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(prep, ignore_errors=True)
    return 0


def _share(busy: float | None) -> str:
    """The share of the machine's cores busy during a run, as a percentage ("" unknown)."""
    return "" if busy is None else f"{100 * busy:.0f}%"


def _missing(anchor: str, d2s: Path) -> bool:
    """Whether the tool ``anchor`` runs is absent (``make bench`` installs them all)."""
    words = shlex.split(anchor.replace("&&", " ").replace("|", " "))
    if str(d2s) in words and not d2s.exists():
        return True
    if str(DUCKDB) in words:
        probe = [str(BENCH_VENV / "bin" / "python"), "-c", "import duckdb, duckdb_ext"]
        try:
            return subprocess.run(probe, capture_output=True).returncode != 0
        except FileNotFoundError:
            return True
    return any(tool in words and shutil.which(tool) is None for tool in ("pigz", "pgloader"))


def _take_schema(ours: str, work: Path, schema: Path) -> None:
    """The DuckDB anchors' schema: our own output's, written once before any timing."""
    run(_renamed(ours, "schema"))
    (made,) = (f for f in work.iterdir() if f.name.startswith("schema-"))
    con = sqlite3.connect(made)
    sql = [s for (s,) in con.execute("select sql from sqlite_master where sql is not null")]
    con.close()
    made.unlink()
    schema.write_text("".join(f"{s};\n" for s in sql))


def _new_database(admin_url: str, name: str) -> None:
    psql(admin_url, f"drop database if exists {name}")
    psql(admin_url, f"create database {name}")


def start_s3(log_dir: Path):  # noqa: ANN201
    """An S3 API server for the "to S3" row (moto's, from the dev extras, as the tests use),
    and a bucket on it; the server's credentials in this process's environment, which the
    jobs inherit. None, said, where moto is not installed."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.s3server import TEST_CREDENTIALS, S3Server
    except ImportError as e:
        print(f"(no S3 row: {e}; make bench installs the dev extras)")
        return None
    os.environ.update(TEST_CREDENTIALS)
    server = S3Server(log_dir).start()
    return server, server.create_bucket()


def _renamed(cmd: str, tag: str) -> str:
    """``cmd`` writing its ``--output`` under another name (a job and its anchor both run)."""
    head, sep, rest = cmd.partition(" --output ")
    path, _, tail = rest.partition(" ")
    new = str(Path(shlex.split(path)[0]).with_name(f"{tag}-{Path(shlex.split(path)[0]).name}"))
    return f"{head}{sep}{shlex.quote(new)}{' ' + tail if tail else ''}"


if __name__ == "__main__":
    sys.exit(main())
