"""PostgreSQL -> SQLite with the host's TypeDecorators (issue 11, the other direction): the app's
models, pointed at the copy, read back every value they wrote on PostgreSQL, PickleType's bytes
go over unchanged and are never unpickled, and a new row relies on the server defaults."""

from __future__ import annotations

import datetime as dt
import pickle
import sqlite3
import uuid
from contextlib import closing

import pytest
import sqlalchemy as sa

from flask_backup_manager.engine import export

from .test_sqlite_to_postgres_types import UTC, Bomb, _pg_engine, app_models, app_rows
from .test_sqlite_to_sqlite import restore_with_cli


@pytest.mark.parametrize("fmt", ["sqlite3_db", "sqlite3"])
def test_the_models_typedecorators_read_and_write_on_the_sqlite_copy(pg_url, tmp_path, fmt):
    md, thing, store = app_models()
    rows = app_rows()
    marker = tmp_path / "unpickled"
    bomb = pickle.dumps(Bomb(marker))
    engine = _pg_engine(pg_url)
    try:
        md.create_all(engine)
        with engine.begin() as con:
            con.execute(thing.insert(), rows)
            con.execute(store.insert(), [{"id": 1, "value": "harmless"}])
            # a value whose unpickling runs code, written straight to the table
            con.execute(sa.text("INSERT INTO store (id, value) VALUES (2, :b)"), {"b": bomb})
    finally:
        engine.dispose()

    out = tmp_path / f"app.{fmt}"
    result = export(pg_url, fmt, out, metadata=md)
    assert result.warnings == ()
    assert not marker.exists()
    db = out
    if fmt == "sqlite3":
        db = tmp_path / "restored.db"
        restore_with_cli(out, db)
    assert not marker.exists()
    with closing(sqlite3.connect(db)) as lite:  # the pickle's bytes, unchanged
        assert lite.execute("SELECT value FROM store WHERE id = 2").fetchone() == (bomb,)
        # the UUID type's SQLite form: 16 bytes
        assert lite.execute("SELECT token FROM thing WHERE id = 1").fetchone() == (
            uuid.UUID(int=2**100 + 255).bytes,
        )

    lite_engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with lite_engine.begin() as con:
            got = [dict(r._mapping) for r in con.execute(thing.select().order_by(thing.c.id))]
            assert got == rows
            assert got[0]["at"].tzinfo is not None  # aware in, aware out
            assert con.execute(store.select().where(store.c.id == 1)).one().value == "harmless"
            before = dt.datetime.now(UTC)
            new_id = con.execute(
                thing.insert().values(settings={"new": True}, token=uuid.UUID(int=7)),
            ).inserted_primary_key[0]
            after = dt.datetime.now(UTC)
            new = con.execute(thing.select().where(thing.c.id == new_id)).one()._mapping
    finally:
        lite_engine.dispose()
    assert new_id == 6  # the rowid goes on after the largest id
    assert new["settings"] == {"new": True} and new["token"] == uuid.UUID(int=7)
    assert (new["name"], new["tries"], new["done"]) == ("anon", 42, False)
    assert before - dt.timedelta(seconds=5) <= new["at"] <= after + dt.timedelta(seconds=5)
    assert new["stamped"] is not None
    assert not marker.exists()
