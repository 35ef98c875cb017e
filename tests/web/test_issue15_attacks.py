"""Issue 15 attacked as a hostile party would (helper R3): the Backup Manager on moto's real S3
server, with the inputs of a customer's admin who has create and download rights but no AWS
access, someone holding an old link or presigned URL, another tenant of the bucket, a local
user of a shared work directory, an operator's slip, and a row edited in the database. Each
test builds the hostile input and looks for its effect, as a user (or the attacker) would see
it; each pins a way the product resists, so it fails if that resistance goes."""

from __future__ import annotations

import os
import tempfile
import time
import urllib.error
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from flask_backup_manager import service
from flask_backup_manager.state import storage_from_url

from .s3_helpers import API, PREFIX, fetch, keys, on_s3, sha256, uploads

HTML = {"Accept": "text/html"}
SHARE = {"X-Test-Permissions": "view,create,download,delete,share"}
#: a secret key no answer, page, log or audit line may ever show
SECRET = "R3-s3cr3t-Never-Shown-0123456789abcdef"


def create(client, fmt: str = "sqlite3") -> dict:
    answer = client.post(f"{API}/backups", json={"format": fmt})
    assert answer.status_code == 202, answer.json
    return answer.json


def succeeded(client, backup_id: int) -> dict:
    done = client.get(f"{API}/backups/{backup_id}").json
    assert done["status"] == "succeeded", done
    return done


def link(client, backup_id: int, **fields) -> str:
    """A new share link's path (as a visitor opens it)."""
    made = client.post(f"{API}/backups/{backup_id}/links", json=fields, headers=SHARE)
    assert made.status_code == 201, made.json
    return made.json["url"].removeprefix("http://localhost")


def actions(client, backup_id: int) -> list[str]:
    return [a["action"] for a in client.get(f"{API}/backups/{backup_id}/audit").json["audit"]]


def fetch_status(url: str) -> int:
    """The status a client fetching ``url`` gets."""
    try:
        return fetch(url)[0]
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def set_filename(app, backup_id: int, filename: str) -> None:
    """What someone who can write the host's database does to a row."""
    with app.app_context():
        state = app.extensions["backup_manager"]
        Backup = state.models.Backup
        state.db.session.execute(
            sa.update(Backup).where(Backup.id == backup_id).values(filename=filename)
        )
        state.db.session.commit()


@pytest.fixture
def s3_host(make_app, host_env, monkeypatch, tmp_path, s3_server, s3_bucket):
    """``s3_host(options, **config)``: the host app on the session server's fresh bucket
    (``s3://BUCKET/backups``), its work dir ``tmp_path/work``; (app, client, boto3 client)."""

    def make(options: dict | None = None, **config):
        conf = on_s3(
            host_env, monkeypatch, s3_server, s3_bucket, tmp_path / "work", **(options or {})
        )
        app = make_app(**{**conf, **config})
        return app, app.test_client(), s3_server.client()

    return make


@pytest.fixture
def made(s3_host, run_worker):
    """A succeeded backup on S3: (app, client, boto3 client, its row)."""

    def make(options: dict | None = None, **config):
        app, client, s3 = s3_host(options, **config)
        backup_id = create(client)["id"]
        run_worker()
        return app, client, s3, succeeded(client, backup_id)

    return make


# -- a row edited in the database: no key outside the prefix ----------------------------------


@pytest.mark.parametrize(
    "filename", ["../secret.bin", "../../secret.bin", "/secret.bin", "backups/../secret.bin"]
)
def test_a_filename_edited_in_the_database_reaches_no_key_outside_the_prefix(
    made, s3_bucket, filename
):
    app, client, s3, done = made()
    own = f"{PREFIX}/{done['filename']}"
    s3.put_object(Bucket=s3_bucket, Key="secret.bin", Body=b"another app's secret")
    s3.put_object(Bucket=s3_bucket, Key="other/secret.bin", Body=b"another tenant's secret")
    set_filename(app, done["id"], filename)

    # the download, the presigned URL (a browser would resolve a dot segment in its path)
    # and the proxied read all look for backups/secret.bin, which is not there
    answer = client.get(f"{API}/backups/{done['id']}/download")
    assert answer.status_code == 410 and answer.json["error"]["code"] == "file_missing"
    assert "Location" not in answer.headers
    with app.app_context():
        storage = app.extensions["backup_manager"].storage
        assert storage.key(filename) == f"{PREFIX}/secret.bin"
        url = storage.download_url(filename, filename=filename)
        with pytest.raises(FileNotFoundError):  # the proxied read
            storage.open(filename)
    assert urlsplit(url).path == f"/{s3_bucket}/{PREFIX}/secret.bin"
    page = app.test_client().get(f"/backups/{done['id']}", headers=HTML).get_data(as_text=True)
    assert "The file is missing from storage." in page

    assert client.delete(f"{API}/backups/{done['id']}").status_code == 204
    assert sorted(keys(s3, s3_bucket)) == sorted([own, "other/secret.bin", "secret.bin"])
    assert s3.get_object(Bucket=s3_bucket, Key="secret.bin")["Body"].read() == (
        b"another app's secret"
    )


def test_an_object_at_a_running_backups_key_is_not_handed_out(s3_host, s3_bucket):
    """An object that is not (yet) a succeeded backup's, say one a bucket writer put at the
    key of a queued backup, is neither downloadable nor shareable."""
    app, client, s3 = s3_host()
    queued = create(client)  # no worker: it stays queued
    s3.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{queued['filename']}", Body=b"planted")
    answer = client.get(f"{API}/backups/{queued['id']}/download")
    assert answer.status_code == 409 and answer.json["error"]["code"] == "not_finished"
    assert "Location" not in answer.headers
    shared = client.post(f"{API}/backups/{queued['id']}/links", json={}, headers=SHARE)
    assert shared.status_code == 409


# -- old links, old URLs ----------------------------------------------------------------------


def test_a_dead_link_gets_no_presigned_url(made, s3_bucket):
    app, client, s3, done = made()
    visitor = app.test_client()
    revoked = link(client, done["id"])
    listed = client.get(f"{API}/backups/{done['id']}/links").json["links"]
    revoke = client.post(
        f"{API}/backups/{done['id']}/links/{listed[0]['id']}/revoke", headers=SHARE
    )
    assert revoke.status_code == 200, revoke.json
    used_up = link(client, done["id"], max_downloads=1)
    first = visitor.get(used_up + "?download=1")
    assert first.status_code == 302
    expiring = link(client, done["id"], expires_in_hours=1)
    state = app.extensions["backup_manager"]
    state.clock = lambda: datetime.now(timezone.utc) + timedelta(hours=1, seconds=5)
    other = {"User-Agent": "curl/8.5.0"}  # someone else who got hold of the old link
    for path in (revoked, used_up, expiring):
        for headers in ({}, {"Range": "bytes=0-"}, {"Range": "bytes=1-"}):
            answer = app.test_client().get(path + "?download=1", headers={**other, **headers})
            assert answer.status_code == 404, (path, headers)
            assert "Location" not in answer.headers
            assert "X-Amz" not in answer.get_data(as_text=True)
            head = app.test_client().head(path + "?download=1", headers=other)
            assert head.status_code == 404 and "Location" not in head.headers
    state.clock = None

    gone = link(client, done["id"])  # a link whose backup is then deleted
    old_url = visitor.get(gone + "?download=1").headers["Location"]
    assert client.delete(f"{API}/backups/{done['id']}").status_code == 204
    answer = visitor.get(gone + "?download=1")
    assert answer.status_code == 404 and "Location" not in answer.headers
    assert fetch_status(old_url) in (403, 404)  # the old presigned URL: nothing left to fetch


def test_a_head_on_a_one_download_link_hands_out_no_uncounted_presigned_url(made):
    """A HEAD is answered without a body and counts nothing, so it must not carry the
    presigned URL either: else a link of one download gives the file out any number of times,
    none of them counted or audited (it did before helper N2's fix)."""
    app, client, s3, done = made()
    path = link(client, done["id"], max_downloads=1)
    visitor = app.test_client()
    for _ in range(3):
        head = visitor.head(path + "?download=1")
        assert head.status_code == 200 and "Location" not in head.headers
        assert "X-Amz" not in str(head.headers)
    entry = client.get(f"{API}/backups/{done['id']}/links").json["links"][0]
    assert entry["downloads"] == 0 and entry["state"] == "active"
    first = visitor.get(path + "?download=1")  # the one download, counted and audited
    assert first.status_code == 302
    assert sha256(fetch(first.headers["Location"])[2]) == done["sha256"]
    assert visitor.get(path + "?download=1").status_code == 404
    assert actions(client, done["id"]).count("link_download") == 1


def test_a_head_on_the_api_download_hands_out_no_unaudited_presigned_url(made):
    app, client, s3, done = made()
    head = client.head(f"{API}/backups/{done['id']}/download")
    assert head.status_code == 200 and "Location" not in head.headers
    assert head.headers["X-Backup-SHA256"] == done["sha256"]
    assert "download" not in actions(client, done["id"])  # nothing was handed out


def test_a_presigned_download_refuses_an_object_of_another_size(made, s3_bucket):
    """Another writer of the bucket replaced the object: the store's own size says so, and
    neither the API nor a link redirects to it."""
    app, client, s3, done = made()
    path = link(client, done["id"])
    s3.put_object(
        Bucket=s3_bucket, Key=f"{PREFIX}/{done['filename']}", Body=b"another tenant's bytes"
    )
    answer = client.get(f"{API}/backups/{done['id']}/download")
    assert answer.status_code == 500 and answer.json["error"]["code"] == "checksum_mismatch"
    assert "Location" not in answer.headers
    through = app.test_client().get(path + "?download=1")
    assert through.status_code != 302 and "Location" not in through.headers


def test_a_presigned_url_is_signed_for_this_key_for_five_minutes_at_most(made, s3_bucket):
    app, client, s3, done = made()
    url = client.get(f"{API}/backups/{done['id']}/download").headers["Location"]
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert 0 < int(query["X-Amz-Expires"][0]) <= 300
    assert urlsplit(url).path == f"/{s3_bucket}/{PREFIX}/{done['filename']}"
    # what the client may not change is signed: the key (the path) and the attachment name
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["response-content-disposition"] == [f'attachment; filename="{done["filename"]}"']


# -- secrets and signed URLs: never in pages, API answers, logs or the audit trail -------------


def test_no_secret_key_or_signed_url_in_pages_api_logs_or_audit(
    made, s3_bucket, monkeypatch, run_worker
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # moto takes any; the worker's too
    app, client, s3, done = made()
    url = client.get(f"{API}/backups/{done['id']}/download").headers["Location"]
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    path = link(client, done["id"])
    visitor = app.test_client()
    link_page = visitor.get(path, headers=HTML)
    assert link_page.status_code == 200
    assert visitor.get(path + "?download=1").status_code == 302

    seen = [
        link_page.get_data(as_text=True),
        client.get(f"/backups/{done['id']}", headers=HTML).get_data(as_text=True),
        client.get("/backups/", headers=HTML).get_data(as_text=True),
        client.get("/backups/activity", headers=HTML).get_data(as_text=True),
        client.get(f"{API}/backups/{done['id']}").get_data(as_text=True),
        client.get(f"{API}/backups/{done['id']}/logs").get_data(as_text=True),
        client.get(f"{API}/backups/{done['id']}/audit").get_data(as_text=True),
        client.get(f"{API}/backups/{done['id']}/links").get_data(as_text=True),
        client.get(f"{API}/audit").get_data(as_text=True),
    ]
    for text in seen:
        assert SECRET not in text
        assert signature not in text and "X-Amz-Signature" not in text


def test_wrong_credentials_are_reported_in_the_stores_words_without_the_secret(
    make_s3_server, host_env, monkeypatch, tmp_path, make_app
):
    server = make_s3_server({"INITIAL_NO_AUTH_ACTION_COUNT": "1"})  # the bucket, then IAM
    bucket = server.create_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAR3WRONGKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    app = make_app(**on_s3(host_env, monkeypatch, server, bucket, tmp_path / "work"))
    out = app.test_cli_runner().invoke(args=["backups", "check-storage"])
    assert out.exit_code != 0
    said = out.output
    assert "InvalidAccessKeyId" in said and f"s3://{bucket}/{PREFIX}" in said
    assert SECRET not in said and len(said.strip().splitlines()) == 1


def test_a_store_that_cannot_delete_keeps_the_row_and_says_why_without_secrets(
    make_s3_server, host_env, monkeypatch, tmp_path, make_app, run_worker
):
    server = make_s3_server()
    bucket = server.create_bucket()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    app = make_app(**on_s3(host_env, monkeypatch, server, bucket, tmp_path / "work"))
    client = app.test_client()
    backup_id = create(client)["id"]
    run_worker()
    succeeded(client, backup_id)
    server.kill()  # the store gone when the admin deletes

    answer = client.delete(f"{API}/backups/{backup_id}")
    assert answer.status_code == 500 and answer.json["error"]["code"] == "storage_error"
    assert SECRET not in answer.get_data(as_text=True)
    assert "X-Amz" not in answer.get_data(as_text=True)
    assert client.get(f"{API}/backups/{backup_id}").json["status"] == "succeeded"  # kept
    download = client.get(f"{API}/backups/{backup_id}/download")
    assert download.status_code == 503 and "Location" not in download.headers
    assert SECRET not in download.get_data(as_text=True)


# -- other tenants of the bucket, other users of the work dir ---------------------------------


def test_the_stale_upload_check_spares_a_sibling_prefixs_uploads(s3_host, s3_bucket):
    app, client, s3 = s3_host()
    # moto dates every upload in 2010: stale for any job timeout
    s3.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}-other/tenant-b.bin")
    s3.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}x/tenant-c.bin")
    s3.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/hostapp-20200101-000000-1.sql.gz")
    out = app.test_cli_runner().invoke(args=["backups", "check-storage"])
    assert out.exit_code == 0, out.output
    assert sorted(uploads(s3, s3_bucket)) == [
        f"{PREFIX}-other/tenant-b.bin",
        f"{PREFIX}x/tenant-c.bin",
    ]


def test_the_work_dir_sweep_removes_only_this_apps_stale_files(s3_host, tmp_path):
    app, client, s3 = s3_host()
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        name = app.extensions["backup_manager"].app_name
    old = time.time() - 3600
    others = [
        "otherapp-20200101-000000-1.sql.gz",  # another app sharing the work dir
        ".otherapp-20200101-000000-1.sql.gz.1a2b3c4d.part",
        f"{name}x-20200101-000000-1.sql.gz",  # a longer name that starts like ours
        "notes.txt",
    ]
    mine = [f"{name}-20200101-000000-77.sql.gz", f".{name}-20200101-000000-77.sql.gz.9f8e7d6c.part"]
    for file in [*others, *mine]:
        (work / file).write_bytes(b"x")
        os.utime(work / file, (old, old))
    (work / f"{name}-dir").mkdir()
    fresh = work / f"{name}-20991231-000000-78.sql.gz"  # written just now: maybe in use
    fresh.write_bytes(b"x")
    with app.app_context():
        removed = service.sweep_work_dir()
    assert sorted(removed) == sorted(mine)
    assert sorted(p.name for p in work.iterdir()) == sorted([*others, f"{name}-dir", fresh.name])


# -- the object's own edge cases --------------------------------------------------------------


def test_an_empty_file_round_trips_through_the_store(s3_server, s3_bucket, tmp_path):
    storage = storage_from_url(
        f"s3://{s3_bucket}/{PREFIX}", {"endpoint_url": s3_server.endpoint_url}, tmp_path / "w"
    )
    path = storage.export_path("hostapp-empty.bin")
    path.write_bytes(b"")
    storage.put(path, "hostapp-empty.bin", sha256=sha256(b""), size=0)
    assert not path.exists()
    found = storage.stat("hostapp-empty.bin")
    assert found is not None and found.size == 0 and found.sha256 == sha256(b"")
    with storage.open("hostapp-empty.bin") as f:
        assert f.read() == b""
    status, _, data = fetch(storage.download_url("hostapp-empty.bin", filename="e.bin"))
    assert status == 200 and data == b""
    assert uploads(s3_server.client(), s3_bucket) == []


def test_a_file_shorter_than_it_claims_is_never_stored(s3_server, s3_bucket, tmp_path):
    """A file truncated (or grown) between its check and its upload, say by another user of
    a shared work dir: the upload fails and leaves no object and no unfinished upload."""
    from flask_backup_manager.storage import StorageError

    storage = storage_from_url(
        f"s3://{s3_bucket}/{PREFIX}", {"endpoint_url": s3_server.endpoint_url}, tmp_path / "w"
    )
    for data, claimed in ((b"abc", b"abcdef"), (b"abcdefgh", b"abcdef")):
        path = storage.export_path("hostapp-short.bin")
        path.write_bytes(data)
        with pytest.raises(StorageError):
            storage.put(path, "hostapp-short.bin", sha256=sha256(claimed), size=len(claimed))
        assert storage.stat("hostapp-short.bin") is None
        assert uploads(s3_server.client(), s3_bucket) == [] and not path.exists()
    assert keys(s3_server.client(), s3_bucket) == []
    assert Path(tmp_path / "w").is_dir()


# -- found by R3 and fixed after: each failed before its fix


def test_the_detail_page_does_not_trust_sha256_metadata_copied_onto_other_bytes(made, s3_bucket):
    app, client, s3, done = made()
    key = f"{PREFIX}/{done['filename']}"
    original = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    forged = bytes(b ^ 0xFF for b in original)  # same size, other bytes
    s3.put_object(Bucket=s3_bucket, Key=key, Body=forged, Metadata={"sha256": done["sha256"]})
    page = app.test_client().get(f"/backups/{done['id']}", headers=HTML).get_data(as_text=True)
    assert "The file no longer matches its checksum." in page


def test_delete_on_a_versioned_bucket_leaves_no_copy_of_the_file(s3_host, s3_bucket, run_worker):
    app, client, s3 = s3_host()
    s3.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    done = create(client)
    run_worker()
    succeeded(client, done["id"])
    key = f"{PREFIX}/{done['filename']}"
    assert client.delete(f"{API}/backups/{done['id']}").status_code == 204
    listed = s3.list_object_versions(Bucket=s3_bucket, Prefix=key)
    left = listed.get("Versions", []) + listed.get("DeleteMarkers", [])
    assert left == [], f"{len(left)} version(s) of the customer's data still readable"


def test_the_stale_upload_check_spares_a_nested_tenants_uploads(s3_host, s3_bucket):
    app, client, s3 = s3_host()
    s3.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/tenant-b/big-export.bin")
    out = app.test_cli_runner().invoke(args=["backups", "check-storage"])
    assert out.exit_code == 0, out.output
    assert uploads(s3, s3_bucket) == [f"{PREFIX}/tenant-b/big-export.bin"]


def test_the_stale_upload_check_of_a_whole_bucket_spares_other_apps_uploads(
    s3_server, s3_bucket, tmp_path
):
    storage = storage_from_url(
        f"s3://{s3_bucket}", {"endpoint_url": s3_server.endpoint_url}, tmp_path
    )
    s3 = s3_server.client()
    s3.create_multipart_upload(Bucket=s3_bucket, Key="media/video.mp4")
    storage.abort_stale_uploads(3600, app_name="hostapp")
    assert uploads(s3, s3_bucket) == ["media/video.mp4"]


def test_the_default_work_dir_is_private(s3_host):
    app, client, s3 = s3_host(BACKUP_MANAGER_WORK_DIR=None)
    storage = app.extensions["backup_manager"].storage
    work = storage.work_dir
    assert work != Path(tempfile.gettempdir()).resolve()
    storage.export_path("hostapp-20260101-000000-1.sql.gz")  # made on first use
    assert not work.stat().st_mode & 0o022


@pytest.mark.parametrize("prefix", ["../x", "a/./b", "a//b", "x/.."])
def test_a_prefix_with_dot_segments_is_refused_at_start_up(prefix, s3_server, s3_bucket, tmp_path):
    # keys are literal to S3, but a browser or curl resolves the dot segments of a presigned
    # URL: it would ask for another path than the one signed, and every download would fail
    with pytest.raises(ValueError, match=r"no empty, \. or \.\. part"):
        storage_from_url(
            f"s3://{s3_bucket}/{prefix}", {"endpoint_url": s3_server.endpoint_url}, tmp_path
        )


def test_a_links_presigned_url_does_not_outlive_the_link(made):
    app, client, s3, done = made()
    path = link(client, done["id"], expires_in_hours=1)
    app.extensions["backup_manager"].clock = lambda: (
        datetime.now(timezone.utc) + timedelta(minutes=59, seconds=50)
    )
    answer = app.test_client().get(path + "?download=1")
    assert answer.status_code == 302
    expires = int(parse_qs(urlsplit(answer.headers["Location"]).query)["X-Amz-Expires"][0])
    assert expires <= 10 + 5, expires  # the link has 10 s left


def test_a_presigned_download_refuses_same_size_bytes_put_without_metadata(made, s3_bucket):
    app, client, s3, done = made()
    key = f"{PREFIX}/{done['filename']}"
    original = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=s3_bucket, Key=key, Body=bytes(b ^ 0xFF for b in original))
    answer = client.get(f"{API}/backups/{done['id']}/download")
    assert answer.status_code != 302, sha256(fetch(answer.headers["Location"])[2])


def test_a_presigned_download_refuses_other_bytes_under_copied_metadata(made, s3_bucket):
    app, client, s3, done = made()
    key = f"{PREFIX}/{done['filename']}"
    original = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    forged = bytes(b ^ 0xFF for b in original)
    s3.put_object(Bucket=s3_bucket, Key=key, Body=forged, Metadata={"sha256": done["sha256"]})
    answer = client.get(f"{API}/backups/{done['id']}/download")
    assert answer.status_code != 302, sha256(fetch(answer.headers["Location"])[2])
