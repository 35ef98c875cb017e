from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from . import services

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture(scope="session")
def _pg(tmp_path_factory):
    url, bindir, handle = services.postgres(tmp_path_factory.mktemp("pg"))
    yield url, bindir
    del handle


@pytest.fixture(scope="session")
def pg_admin_url(_pg) -> str:
    """A PostgreSQL URL (database ``postgres``) of a role that may create databases."""
    return _pg[0]


@pytest.fixture(scope="session")
def psql(_pg) -> Path:
    return _pg[1] / "psql"


@pytest.fixture
def make_pg_db(pg_admin_url):
    """Create fresh, empty databases; returns their ``postgresql://`` URLs; drops them after."""
    made = []

    def make() -> str:
        name = f"fbm_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)

    yield make
    with psycopg.connect(pg_admin_url, autocommit=True) as con:
        for name in made:
            con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url(make_pg_db) -> str:
    return make_pg_db()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url, handle = services.redis_url(tmp_path_factory.mktemp("redis"))
    yield url
    del handle


def run_psql(psql: Path, url: str, *args: str, stdin: bytes | None = None) -> str:
    """Run psql against ``url``; raises with psql's stderr when it fails."""
    out = subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, *args],
        input=stdin, capture_output=True, check=False,
    )
    if out.returncode:
        raise AssertionError(f"psql failed: {out.stderr.decode(errors='replace')[-2000:]}")
    return out.stdout.decode()
