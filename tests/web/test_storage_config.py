"""Where the files are kept, as configured (issue 15): BACKUP_MANAGER_STORAGE_URL read at
start-up, a bad one stopping the app with a line that names the key (never a password of the
URL), and the storage checked by ``flask backups check-storage`` and by a worker before it takes
a job. The S3 side of both: tests/storage/ and tests/web/test_s3_web.py."""

from __future__ import annotations

import sys

import pytest

from flask_backup_manager import BackupManager
from flask_backup_manager.storage import LocalStorage

from .s3_helpers import flask_cli
from .test_extension import dispose, make_flask


def test_a_file_url_is_the_directory_and_storage_dir_still_says_the_same(tmp_path):
    for config in (
        {"BACKUP_MANAGER_STORAGE_URL": (tmp_path / "kept").as_uri()},
        {"BACKUP_MANAGER_STORAGE_DIR": str(tmp_path / "kept")},
    ):
        app, db = make_flask(tmp_path, **config)
        BackupManager(app, db=db)
        state = app.extensions["backup_manager"]
        assert isinstance(state.storage, LocalStorage)
        assert state.storage_dir == (tmp_path / "kept").resolve()
        assert state.storage.url == (tmp_path / "kept").resolve().as_uri()
        dispose(app, db)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (
            {"BACKUP_MANAGER_STORAGE_URL": "file:///x", "BACKUP_MANAGER_STORAGE_DIR": "/x"},
            "BACKUP_MANAGER_STORAGE_URL and BACKUP_MANAGER_STORAGE_DIR are both set",
        ),
        ({"BACKUP_MANAGER_STORAGE_URL": "file://host/x"}, "absolute path on this host"),
        ({"BACKUP_MANAGER_STORAGE_URL": "backups"}, "not a scheme-less URL"),
        ({"BACKUP_MANAGER_STORAGE_URL": "gs://bucket/x"}, "not a gs: URL"),
        ({"BACKUP_MANAGER_STORAGE_URL": "s3://"}, "names a bucket"),
        ({"BACKUP_MANAGER_STORAGE_URL": 7}, "must be a string"),
        (
            {"BACKUP_MANAGER_STORAGE_URL": "s3://AKIAEXAMPLE:s3cr3t-Pa55@bucket/x"},
            "credentials do not go into the URL",
        ),
        ({"BACKUP_MANAGER_S3_OPTIONS": "endpoint"}, "BACKUP_MANAGER_S3_OPTIONS must be a dict"),
        ({"BACKUP_MANAGER_WORK_DIR": "tmp"}, "BACKUP_MANAGER_WORK_DIR must be an absolute path"),
        ({"BACKUP_MANAGER_S3_PROXY_DOWNLOADS": "yes"}, "BACKUP_MANAGER_S3_PROXY_DOWNLOADS must be"),
    ],
)
def test_a_bad_storage_setting_stops_start_up_naming_it(tmp_path, config, says):
    app, db = make_flask(tmp_path, **config)
    with pytest.raises(ValueError) as raised:
        BackupManager(app, db=db)
    assert says in str(raised.value) and "\n" not in str(raised.value)
    assert "s3cr3t" not in str(raised.value)
    dispose(app, db)


def test_check_storage_and_the_worker_say_a_directory_that_cannot_be_made(
    app, host_env, monkeypatch, tmp_path
):
    ok = flask_cli(host_env, "check-storage")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == (
        f"storage {(tmp_path / 'storage').resolve().as_uri()}: a file was stored, read and removed"
    )
    assert list((tmp_path / "storage").iterdir()) == []  # the probe removed

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    host_env["HOSTAPP_STORAGE_DIR"] = str(blocker / "backups")  # under a file: cannot be made
    for args in (["check-storage"], ["worker", "--burst"]):
        bad = flask_cli(host_env, *args)
        assert bad.returncode == 1, (args, bad.stdout, bad.stderr)
        last = bad.stderr.strip().splitlines()[-1]
        assert last == f"Error: the storage cannot be used: {blocker / 'backups'}: Not a directory"


def test_an_s3_url_without_boto3_says_which_extra_brings_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # as in an install without the s3 extra
    monkeypatch.delitem(sys.modules, "flask_backup_manager.storage_s3", raising=False)
    app, db = make_flask(tmp_path, BACKUP_MANAGER_STORAGE_URL="s3://bucket/prefix")
    with pytest.raises(ValueError) as raised:
        BackupManager(app, db=db)
    assert "pip install 'flask-backup-manager[s3]'" in str(raised.value)
    dispose(app, db)
    app, db = make_flask(tmp_path, BACKUP_MANAGER_STORAGE_URL=(tmp_path / "x").as_uri())
    BackupManager(app, db=db)  # a directory needs no boto3
    dispose(app, db)
