"""The manifest at the head of both SQL formats (issue 13, section 2) says what the file is,
and no name in it (a table's, a profile's, the caller's text) can end its comment: the file
loads with the real ``psql`` and ``sqlite3 -safe`` harmlessly, no marker file appearing where
a payload pointed, and its head reads back as the manifest's JSON."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from flask_backup_manager.engine import export, profile_from_mapping
from flask_backup_manager.engine.manifest import HEAD_TITLE, TAIL_TITLE, comment_lines

from .test_dump_safety_postgres import restored

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"


@pytest.fixture
def marker_dir():
    path = Path(tempfile.mkdtemp(prefix="fbmmarker", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hostile_names(m: Path) -> list[str]:
    """Table names that end a comment line for one client or the other, then run a command:
    LF and psql's ``\\!`` or the shell's ``.shell``, U+2028, ``*/``, backslashes (each under
    PostgreSQL's 63 bytes; a CR, which the sqlite3 format refuses in a name, is in the profile's
    name and the caller's text instead)."""
    return [
        f"a\n\\! touch {m}/p\n",
        f"b\n.shell touch {m}/s\n.system touch x",
        f"c\u2028*/ \\\\ \\! touch {m}/u \\",
    ]


def block(lines: list[str], title: str) -> object:
    """The JSON of the comment block under ``title``."""
    at = lines.index(f"-- {title}")
    body = []
    for line in lines[at + 1 :]:
        if not line.startswith("--   "):
            break
        body.append(line.removeprefix("--   "))
    return json.loads("\n".join(body))


@pytest.fixture
def hostile(tmp_path, marker_dir):
    names = hostile_names(marker_dir)
    db = tmp_path / "src.db"
    with closing(sqlite3.connect(db)) as con:
        for i, name in enumerate(names):
            q = '"' + name.replace('"', '""') + '"'
            con.execute(f"CREATE TABLE {q} (id integer PRIMARY KEY, v text)")
            con.execute(f"INSERT INTO {q} VALUES (?, ?)", (i + 1, f"value {i}"))
        con.commit()
    m = marker_dir
    profile = profile_from_mapping(
        f"vendor\n\\! touch {m}/profile\r.system touch {m}/profile2\u2028*/\\",
        {f"{names[0]}.v": "hash", names[2]: "no_rows"},
    )
    caller = {"created_by": f"eve\n\\! touch {m}/caller\r.shell touch {m}/caller2"}
    return f"sqlite:///{db}", names, profile, caller


def test_comment_lines_are_printable_ascii_behind_two_dashes():
    data = {"x\n\r\u2028\u2029\x1b*/\\!": "\x00\x7f\x85 \u202e"}
    lines = comment_lines(data)
    assert all(line.startswith("-- ") for line in lines)
    assert all(all(0x20 <= ord(c) <= 0x7E for c in line) for line in lines)
    assert json.loads("\n".join(x.removeprefix("--   ") for x in lines[1:])) == data


def test_the_sqlite3_head_with_hostile_names_loads_harmlessly_and_reads_back(
    hostile, tmp_path, marker_dir
):
    url, names, profile, caller = hostile
    out = tmp_path / "o.sql.gz"
    result = export(url, "sqlite3", out, redaction=profile, manifest=caller)
    lines = gzip.decompress(out.read_bytes()).decode().split("\n")
    head = block(lines, HEAD_TITLE)
    assert head == {k: v for k, v in result.manifest.items() if k in head}
    assert head["redaction"]["profile"] == profile.name
    assert head["created_by"] == caller["created_by"]
    assert (
        block(lines, TAIL_TITLE)
        == result.manifest["tables"]
        == {
            names[0]: 1,
            names[1]: 1,
            names[2]: 0,
        }
    )
    for flags in ([], ["-safe"]):
        new = tmp_path / f"shell{len(flags)}.db"
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", 'gunzip -c "$1" | "$2" "${@:3}"', "-"]
            + [str(out), SQLITE3, *flags, str(new)],
            cwd=marker_dir,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, b""), (flags, done.stderr[-2000:])
        with closing(sqlite3.connect(new)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        assert tables == set(names)
    assert list(marker_dir.iterdir()) == []


def test_the_postgres_head_with_hostile_names_loads_harmlessly_with_psql(
    hostile, tmp_path, marker_dir, psql, owner_db
):
    url, names, profile, caller = hostile
    out = tmp_path / "o.sql.gz"
    result = export(url, "postgres", out, redaction=profile, manifest=caller)
    lines = gzip.decompress(out.read_bytes()).decode().split("\n")
    head = block(lines, HEAD_TITLE)
    assert head == {k: v for k, v in result.manifest.items() if k in head}
    assert block(lines, TAIL_TITLE) == result.manifest["tables"]
    restored(psql, owner_db, out)
    assert list(marker_dir.iterdir()) == []
    import psycopg

    with psycopg.connect(owner_db) as con:
        found = {
            r[0]
            for r in con.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace ="
                " 'public'::regnamespace"
            )
        }
    assert found == set(names)


def test_the_head_never_holds_the_sources_host_user_or_password(pg_url, psql, tmp_path):
    from ..conftest import run_psql

    run_psql(psql, pg_url, "-c", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
    out = tmp_path / "o.sql.gz"
    m = export(pg_url, "postgres", out).manifest
    text = gzip.decompress(out.read_bytes()).decode()
    assert m["source"]["dialect"] == "postgresql"
    url = make_url(pg_url)  # a laptop's embedded server is a socket: ?host=/tmp/...
    assert m["source"]["database"] == url.database
    host = url.host or url.query.get("host")
    secrets = [host, f"{url.username}@", f":{url.port or 5432}", url.password]
    for secret in filter(None, secrets):
        assert secret not in json.dumps(m["source"])
        assert secret not in "\n".join(x for x in text.split("\n") if x.startswith("--   "))
