from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_backup_manager import BackupManager
from flask_backup_manager.state import DEFAULTS


def make_flask(tmp_path: Path, **config) -> tuple[Flask, SQLAlchemy]:
    app = Flask("hostapp", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="test-secret", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite'}"
    )
    app.config.update(config)
    db = SQLAlchemy(app)
    return app, db


def dispose(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_init_twice_on_one_app_raises(tmp_path):
    app, db = make_flask(tmp_path)
    backups = BackupManager(app, db=db)
    with pytest.raises(RuntimeError, match="already initialised"):
        backups.init_app(app)
    dispose(app, db)


def test_config_defaults_are_set_and_derived(tmp_path):
    app, db = make_flask(tmp_path)
    BackupManager(app, db=db)
    for key in DEFAULTS:
        assert key in app.config
    state = app.extensions["backup_manager"]
    assert state.storage_dir == (tmp_path / "instance" / "backups").resolve()
    assert state.queue_name == "backup_manager"
    assert state.redis_url is None
    assert state.job_timeout == 3600
    assert app.url_map.bind("localhost").match("/backups/api/formats")[0] == (
        "backup_manager.api_formats"
    )
    dispose(app, db)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BACKUP_MANAGER_JOB_TIMEOUT", "soon"),
        ("BACKUP_MANAGER_PER_PAGE", 0),
        ("BACKUP_MANAGER_URL_PREFIX", "backups"),
        ("BACKUP_MANAGER_REDIS_URL", "localhost:6379"),
        ("BACKUP_MANAGER_BIND", "reports"),
    ],
)
def test_bad_config_value_fails_at_start_naming_the_key(tmp_path, key, value):
    app, db = make_flask(tmp_path, **{key: value})
    with pytest.raises(ValueError, match=key):
        BackupManager(app, db=db)
    dispose(app, db)


def test_tables_live_in_the_host_metadata_and_create_all_makes_them(tmp_path):
    app, db = make_flask(tmp_path)
    backups = BackupManager(app, db=db)
    assert set(db.metadata.tables) >= {
        "backup_manager_backups",
        "backup_manager_logs",
        "backup_manager_audit",
    }
    with app.app_context():
        db.create_all()
        names = set(db.inspect(db.engine).get_table_names())
        assert {"backup_manager_backups", "backup_manager_logs"} <= names
        assert backups.models.Backup.query.count() == 0
    dispose(app, db)


def test_app_factory_pattern_serves_two_apps_with_one_extension(tmp_path):
    db = SQLAlchemy()
    backups = BackupManager(db=db, access=lambda permission: True)
    apps = []
    for name in ("one", "two"):
        app = Flask(name, instance_path=str(tmp_path / name))
        app.config.update(
            SECRET_KEY="test-secret",
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / name}.db",
            BACKUP_MANAGER_URL_PREFIX=f"/{name}/backups",
        )
        db.init_app(app)
        backups.init_app(app)
        apps.append(app)
    for app, name in zip(apps, ("one", "two"), strict=True):
        with app.app_context():
            db.create_all()
        response = app.test_client().get(f"/{name}/backups/api/backups")
        assert response.status_code == 200
        assert response.json["total"] == 0
        assert app.extensions["backup_manager"].app_name == name
        dispose(app, db)


def test_without_an_access_check_every_route_is_403_with_a_hint(tmp_path):
    app, db = make_flask(tmp_path)
    BackupManager(app, db=db)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    for method, path in [
        ("get", "/backups/api/formats"),
        ("get", "/backups/api/backups"),
        ("post", "/backups/api/backups"),
        ("get", "/backups/api/backups/1"),
        ("get", "/backups/api/backups/1/download"),
        ("delete", "/backups/api/backups/1"),
        ("get", "/backups/"),
    ]:
        response = getattr(client, method)(path, headers={"Accept": "application/json"})
        assert response.status_code == 403, path
        assert response.json["error"]["code"] == "access_not_configured"
        assert "access_check" in response.json["error"]["message"]
    dispose(app, db)


def test_init_app_without_flask_sqlalchemy_says_so(tmp_path):
    app = Flask("bare", instance_path=str(tmp_path))
    with pytest.raises(RuntimeError, match="Flask-SQLAlchemy"):
        BackupManager(app, db=SQLAlchemy())


def test_a_heartbeat_as_long_as_the_lost_delay_is_refused_at_start(tmp_path):
    app, db = make_flask(tmp_path, BACKUP_MANAGER_HEARTBEAT=60)
    with pytest.raises(ValueError, match="BACKUP_MANAGER_WORKER_LOST_AFTER"):
        BackupManager(app, db=db)
    dispose(app, db)


@pytest.mark.parametrize("key", [None, ""])
def test_an_app_without_a_secret_key_fails_at_start_naming_it(tmp_path, key):
    app, db = make_flask(tmp_path, SECRET_KEY=key)
    with pytest.raises(RuntimeError, match="SECRET_KEY") as raised:
        BackupManager(app, db=db)
    assert "session" in str(raised.value)
    assert "backup_manager" not in app.extensions and "backup_manager" not in app.blueprints
    dispose(app, db)
