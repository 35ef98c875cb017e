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
shared machine the slower runs measure the neighbours. The anchors `db-to-sqlite` (and the
psycopg2 it needs) live in their own venv, .venv-bench, made by `make bench`: never a
dependency of ours.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flask_backup_manager.engine.encryption import keygen

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".venv-bench"


def run(cmd: str, env: dict | None = None) -> tuple[float, float]:
    """Run a shell command; (wall seconds, peak RSS in MiB of its largest process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", cmd],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd}: exit {proc.returncode}: {stderr.strip()[-300:]}")
    return elapsed, usage.ru_maxrss / 1024


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
    ap.add_argument("--only", help="run only jobs whose name contains this")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command (fastest counts)")
    args = ap.parse_args()

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
    print("| job | ours s | ours MiB | anchor | anchor s | anchor MiB | ratio | goal |")
    print("|---|---|---|---|---|---|---|---|")
    worst_mem = 0.0
    for name, mine, anchor_name, anchor, goal in jobs:
        if args.only and args.only not in name:
            continue
        anchor_name = anchor_name.replace("|", "\\|")  # a pipe inside a Markdown cell
        if anchor.startswith(str(d2s)) and not d2s.exists():
            print(f"| {name} | | | {anchor_name} | (not installed: make bench) | | | <= {goal}x |")
            continue
        ours_runs, anchor_runs = [], []
        try:
            for _ in range(args.repeat):  # in turn, so both meet the same neighbours
                ours_runs.append(run(mine))
                anchor_runs.append(run(anchor))
                for f in work.iterdir():  # each run starts from an empty directory
                    f.unlink()
        except RuntimeError as e:
            print(f"| {name} | failed: {e} | | | | | | <= {goal}x |")
            continue
        t_ours, t_anchor = min(t for t, _ in ours_runs), min(t for t, _ in anchor_runs)
        m_ours, m_anchor = max(m for _, m in ours_runs), max(m for _, m in anchor_runs)
        worst_mem = max(worst_mem, m_ours)
        ratio = t_ours / t_anchor
        mark = "ok" if ratio <= goal else "SLOW"
        print(
            f"| {name} | {t_ours:.2f} | {m_ours:.0f} | {anchor_name} | {t_anchor:.2f} | "
            f"{m_anchor:.0f} | {ratio:.2f}x {mark} | <= {goal}x |"
        )
    print(f"\npeak memory of our exports: {worst_mem:.0f} MiB (goal: under 150 MiB at -s 20)")
    if s3 is not None:
        s3[0].stop()
    shutil.rmtree(work, ignore_errors=True)
    return 0


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
