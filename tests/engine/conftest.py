"""Fixtures of the engine tests: real databases written by others, loaded once a session."""

from __future__ import annotations

import importlib
import re
import uuid
from pathlib import Path

import pytest
from psycopg import sql

from ..conftest import DATASETS, admin_connection, run_psql, url_with


def _load_pagila(psql: Path, url: str) -> None:
    # JSON_TABLE needs PostgreSQL 17: leave that one view out.
    schema = (DATASETS / "pagila" / "pagila-schema.sql").read_text()
    schema = re.sub(
        r"CREATE VIEW public\.films_per_customer_rental AS.*?\) rt;\n", "", schema, flags=re.S
    )
    schema = schema.replace("ALTER VIEW public.films_per_customer_rental OWNER TO postgres;", "")
    data = (DATASETS / "pagila" / "pagila-data.sql").read_text()
    for script in (schema, data):  # a PostgreSQL 17 setting
        run_psql(psql, url, stdin=script.replace("SET transaction_timeout = 0;", "").encode())


@pytest.fixture(scope="session")
def pagila_url(pg_admin_url, psql):
    name = f"fbm_pagila_{uuid.uuid4().hex[:8]}"
    with admin_connection(pg_admin_url) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = url_with(pg_admin_url, database=name)
    try:
        _load_pagila(psql, url)
        yield url
    finally:
        with admin_connection(pg_admin_url) as con:
            con.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def verifier(pg_admin_url):
    """An ordinary LOGIN role with CREATEDB (what BACKUP_MANAGER_VERIFY_POSTGRES_URL should
    name): its URL, and a function listing the databases it owns."""
    role = f"fbm_verifier_{uuid.uuid4().hex[:10]}"
    with admin_connection(pg_admin_url) as con:
        con.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB NOSUPERUSER").format(sql.Identifier(role))
        )

    def owned() -> list[str]:
        with admin_connection(pg_admin_url) as con:
            return sorted(
                r[0]
                for r in con.execute(
                    "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba"
                    " WHERE r.rolname = %s",
                    (role,),
                )
            )

    yield url_with(pg_admin_url, username=role, database="postgres"), owned
    with admin_connection(pg_admin_url) as con:
        for name in owned():
            con.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        con.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def as_written(monkeypatch) -> None:
    """``postgres`` files from PostgreSQL checked by a process as they are written, however
    few the rows (by default only from :data:`.export.CHECK_AS_WRITTEN_ROWS`)."""
    monkeypatch.setattr(
        importlib.import_module("flask_backup_manager.engine.export"), "CHECK_AS_WRITTEN_ROWS", 0
    )
