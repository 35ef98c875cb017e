"""Issue 15's newest S3 changes attacked (helper R4), on moto's real S3 server: the list's one
listing of the store (``stat_many``) against a crowded bucket, a neighbour's prefix and more
keys than a page; delete against more versions than a page; the ETag kept with a backup
against a multipart upload, SSE-KMS and the listing's quoting; the private work dir against a
world-writable dir of ours and another user's dir; the stale-upload abort
against neighbours' names; a link with under a second left.
Each test pins a way the product resists, so it fails if that resistance goes."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from flask_backup_manager.state import storage_from_url
from flask_backup_manager.storage import StorageError, private_dir

from . import test_issue15_attacks as r3
from .s3_helpers import API, PREFIX, MiB

made, s3_host = r3.made, r3.s3_host  # R3's fixtures: the host app on moto, a backup made there

HTML = {"Accept": "text/html"}
DAMAGED = "The file no longer matches its checksum."
SHARE = {"X-Test-Permissions": "view,create,download,delete,share"}


def s3_storage(server, bucket: str, work: Path, prefix: str = PREFIX, **options):
    url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    return storage_from_url(url, {"endpoint_url": server.endpoint_url, **options}, work)


def put_file(storage, name: str, data: bytes) -> str | None:
    """Store ``data`` as ``name`` the way a job does (export_path, then put); the version."""
    path = storage.export_path(name)
    path.write_bytes(data)
    return storage.put(path, name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def put_many(s3, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))


# -- stat_many: the list's one listing ---------------------------------------------------------


def test_stat_many_finds_every_object_past_a_page_among_neighbours(s3_server, s3_bucket, tmp_path):
    s3 = s3_server.client()
    storage = s3_storage(s3_server, s3_bucket, tmp_path / "w")
    ours = [f"hostapp-20260101-{i:06d}-{i}.sqlite3" for i in range(1200)]
    neighbours = (
        [f"{PREFIX}2/{n}" for n in ours[::50]]  # a prefix that starts with ours
        + [f"{PREFIX}/tenant/{n}" for n in ours[::50]]  # a deeper one
        + [f"{PREFIX}/other-20260101-{i}.bin" for i in range(30)]  # another app's names
        + [PREFIX, f"{PREFIX}-old/x", "a-first-key"]
    )
    put_many(s3, s3_bucket, [f"{PREFIX}/{n}" for n in ours] + neighbours)
    asked = ours[5:7] + ours[998:1003] + ours[-3:] + ["hostapp-20260101-999999-9.sqlite3"]
    found = storage.stat_many(asked)
    assert sorted(found) == sorted(asked)
    assert found["hostapp-20260101-999999-9.sqlite3"] is None
    for name in asked[:-1]:
        one = storage.stat(name)
        assert found[name] is not None, f"{name} exists but the list would call it missing"
        assert (found[name].size, found[name].version) == (one.size, one.version)


def test_stat_many_of_a_whole_bucket_sees_only_top_level_names(s3_server, s3_bucket, tmp_path):
    s3 = s3_server.client()
    storage = s3_storage(s3_server, s3_bucket, tmp_path / "w", prefix="")
    put_many(s3, s3_bucket, ["hostapp-1.sqlite3", "media/hostapp-2.sqlite3"])
    found = storage.stat_many(["hostapp-1.sqlite3", "hostapp-2.sqlite3"])
    assert found["hostapp-1.sqlite3"] is not None and found["hostapp-1.sqlite3"].size == 1
    assert found["hostapp-2.sqlite3"] is None  # media/... is not ours


# -- the ETag kept with a backup ---------------------------------------------------------------


@pytest.mark.parametrize("encryption", [None, "AES256", "aws:kms"])
def test_the_version_put_answers_is_the_one_head_and_the_listing_answer(
    s3_server, s3_bucket, tmp_path, encryption
):
    options = {"part_size": 5 * MiB}
    if encryption:
        options["server_side_encryption"] = encryption
    if encryption == "aws:kms":
        key_id = (
            boto3.session.Session(region_name="us-east-1")
            .client("kms", endpoint_url=s3_server.endpoint_url)
            .create_key()["KeyMetadata"]["KeyId"]
        )
        options["sse_kms_key_id"] = key_id
    storage = s3_storage(s3_server, s3_bucket, tmp_path / "w", **options)
    data = os.urandom(11 * MiB)  # three parts
    version = put_file(storage, "hostapp-20260101-000000-1.sqlite3", data)
    head = storage.stat("hostapp-20260101-000000-1.sqlite3")
    listed = storage.stat_many(["hostapp-20260101-000000-1.sqlite3"])
    assert version and version.endswith("-3") and '"' not in version, version  # one form
    assert head.version == version == listed["hostapp-20260101-000000-1.sqlite3"].version


def test_a_good_backup_on_a_kms_bucket_shows_no_problem_and_is_handed_out(made):
    app, client, s3, done = made({"server_side_encryption": "aws:kms"})
    assert client.get(f"/backups/api/backups/{done['id']}/download").status_code == 302
    page = app.test_client().get(f"/backups/{done['id']}", headers=HTML).get_data(as_text=True)
    assert "The file no longer matches its checksum." not in page
    assert "The file is missing from storage." not in page
    listing = app.test_client().get("/backups/", headers=HTML).get_data(as_text=True)
    assert "The file no longer matches its checksum." not in listing


# -- delete of every version -------------------------------------------------------------------


def test_delete_removes_more_versions_than_a_page(s3_server, s3_bucket, tmp_path):
    s3 = s3_server.client()
    s3.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    storage = s3_storage(s3_server, s3_bucket, tmp_path / "w")
    key = f"{PREFIX}/hostapp-20260101-000000-1.sqlite3"
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=s3_bucket, Key=key, Body=b"%d" % i), range(1010)
            )
        )
    s3.delete_object(Bucket=s3_bucket, Key=key)  # a delete marker among them
    s3.put_object(Bucket=s3_bucket, Key=key + ".age", Body=b"a neighbour")  # same start
    storage.delete("hostapp-20260101-000000-1.sqlite3")
    left, pages = [], s3.get_paginator("list_object_versions").paginate(Bucket=s3_bucket)
    for page in pages:
        left += [v["Key"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    assert left == [key + ".age"], f"{len(left)} versions left"


# -- the private work dir ----------------------------------------------------------------------


def test_a_world_writable_dir_of_ours_is_refused_as_the_work_dir(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o1777)
    with pytest.raises(StorageError, match="not a private directory"):
        private_dir(work)


def test_a_dir_another_user_owns_is_refused_as_the_work_dir(tmp_path):
    if os.getuid() == 0:  # CI: root makes one for nobody
        work = tmp_path / "work"
        work.mkdir(mode=0o700)
        os.chown(work, 65534, 65534)
    else:  # an ordinary user: a system folder is root's, and not writable to others
        work = next(
            (Path(d) for d in ("/", "/usr", "/etc") if Path(d).stat().st_uid != os.getuid()),
            None,
        )
        if work is None:  # a user namespace that maps every owner to this user
            pytest.skip("every folder here belongs to this user: no other owner to refuse")
    with pytest.raises(StorageError, match="not a private directory"):
        private_dir(work)


# -- the stale-upload abort and another app's names --------------------------------------------


def test_the_stale_upload_abort_spares_other_names_than_this_apps(s3_server, s3_bucket, tmp_path):
    s3 = s3_server.client()
    storage = s3_storage(s3_server, s3_bucket, tmp_path / "w")
    ours = f"{PREFIX}/shop-20260101-000000-1.sqlite3"
    others = [f"{PREFIX}/shopping-20260101-000000-1.bin", f"{PREFIX}/x-shop-1.bin", "shop-1.bin"]
    for key in [ours, *others]:
        s3.create_multipart_upload(Bucket=s3_bucket, Key=key)
    # (moto dates every upload 2010-11-10: an age cannot be tested on it, only the names)
    assert storage.abort_stale_uploads(-1, app_name="shop") == [ours.split("/")[1]]
    left = [u["Key"] for u in s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])]
    assert sorted(left) == sorted(others)


# -- a link with under a second left -----------------------------------------------------------


def test_a_link_with_under_a_second_left_gives_a_url_of_at_most_a_second(made, s3_bucket):
    app, client, s3, done = made()
    made_link = client.post(
        f"/backups/api/backups/{done['id']}/links", json={"expires_in_hours": 1}, headers=SHARE
    )
    assert made_link.status_code == 201, made_link.json
    ends = datetime.fromisoformat(made_link.json["expires_at"].replace("Z", "+00:00"))
    app.extensions["backup_manager"].clock = lambda: ends - timedelta(milliseconds=500)
    path = made_link.json["url"].removeprefix("http://localhost")
    answer = app.test_client().get(path + "?download=1")
    assert answer.status_code == 302, answer.status_code
    location = urlsplit(answer.headers["Location"])
    assert int(parse_qs(location.query)["X-Amz-Expires"][0]) == 1
    assert location.path == f"/{s3_bucket}/{PREFIX}/{done['filename']}"
    # and once it has ended, no URL at all
    app.extensions["backup_manager"].clock = lambda: ends + timedelta(milliseconds=1)
    assert "Location" not in app.test_client().get(path + "?download=1").headers


# -- R4's attacks that succeeded, each fixed after and guarded here


class Unquoting:
    """A proxy in front of moto that answers ETags in the XML of the requests ``which``
    picks without their quotes, as MinIO did in CompleteMultipartUploadResult (minio#3224,
    #9517) and NetApp ONTAP does in ListObjectsV2 (duckdb-httpfs#291)."""

    def __init__(self, upstream, which):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _body(self):
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    raw = b""
                    while True:
                        line = self.rfile.readline()
                        raw += line
                        size = int(line.split(b";")[0].strip(), 16)
                        if size == 0:
                            while True:  # the trailer, to its blank line
                                line = self.rfile.readline()
                                raw += line
                                if line in (b"\r\n", b"\n", b""):
                                    return raw
                        raw += self.rfile.read(size + 2)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _relay(self):
                body = self._body()
                up = http.client.HTTPConnection(upstream.split("//")[1], timeout=30)
                up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    up.putheader(k, v)
                up.endheaders()
                if body:
                    up.send(body)
                answer = up.getresponse()
                data = answer.read()
                up.close()
                if which(self.command, self.path):
                    new = re.sub(
                        rb"<ETag>(?:&quot;|&#34;|\")?([^<&\"]*)(?:&quot;|&#34;|\")?</ETag>",
                        rb"<ETag>\1</ETag>",
                        data,
                    )
                    proxy.rewritten += new != data
                    data = new
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.rewritten = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "which",
    [
        pytest.param(lambda m, p: m == "POST" and "uploadId=" in p, id="complete-unquoted"),
        pytest.param(lambda m, p: m == "GET" and "list-type=2" in p, id="listing-unquoted"),
        pytest.param(lambda m, p: False, id="control-pass-through"),
    ],
)
def test_a_good_backup_is_not_called_damaged_when_the_store_quotes_etags_unevenly(
    made, s3_server, which
):
    proxy = Unquoting(s3_server.endpoint_url, which)
    try:
        app, client, s3, done = made({"endpoint_url": proxy.url})
        listing = app.test_client().get("/backups/", headers=HTML).get_data(as_text=True)
        page = app.test_client().get(f"/backups/{done['id']}", headers=HTML).get_data(as_text=True)
        download = client.get(f"{API}/backups/{done['id']}/download")
    finally:
        proxy.close()
    assert bool(proxy.rewritten) == (which("POST", "?uploadId=") or which("GET", "?list-type=2"))
    seen = (DAMAGED in listing, DAMAGED in page, download.status_code)
    assert seen == (False, False, 302), (seen, download.json)


def test_a_copy_in_place_of_the_same_bytes_is_not_called_damaged(made, s3_bucket):
    # what an operator's re-encryption, storage-class change or bucket migration does: the
    # same bytes and metadata under a new ETag
    app, client, s3, done = made()
    key = f"{PREFIX}/{done['filename']}"
    s3.copy_object(
        Bucket=s3_bucket,
        Key=key,
        CopySource={"Bucket": s3_bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={"sha256": done["sha256"]},
        ServerSideEncryption="AES256",
        ChecksumAlgorithm="SHA256",
    )
    head = s3.head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] == done["size"] and head["Metadata"]["sha256"] == done["sha256"]
    page = app.test_client().get(f"/backups/{done['id']}", headers=HTML).get_data(as_text=True)
    assert DAMAGED not in page


def test_the_list_check_stops_listing_past_the_newest_name_it_asks_for(
    s3_server, s3_bucket, tmp_path
):
    from concurrent.futures import ThreadPoolExecutor

    from flask_backup_manager.state import storage_from_url

    s3 = s3_server.client()
    storage = storage_from_url(
        f"s3://{s3_bucket}/{PREFIX}", {"endpoint_url": s3_server.endpoint_url}, tmp_path / "w"
    )
    ours = [f"hostapp-20260101-00000{i}-{i}.sqlite3" for i in range(3)]
    theirs = [
        f"{PREFIX}/zeta-20260101-{i:06d}.bin" for i in range(2500)
    ]  # another app's, after ours
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda k: s3.put_object(Bucket=s3_bucket, Key=k, Body=b"x"),
                [f"{PREFIX}/{n}" for n in ours] + theirs,
            )
        )
    calls = []
    storage.client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **kw: calls.append(1)
    )
    found = storage.stat_many(ours)
    assert all(found[n] is not None for n in ours)
    assert len(calls) == 1, f"{len(calls)} listings for 3 names"


def test_a_symlink_another_user_planted_is_refused_as_the_work_dir(tmp_path):
    import os

    from flask_backup_manager.storage import StorageError, private_dir

    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    planted = tmp_path / "flask-backup-manager-0"
    planted.symlink_to(ours)
    os.lchown(planted, 65534, 65534)  # nobody's link, to a dir of ours
    with pytest.raises(StorageError):
        private_dir(planted)


def test_the_stale_upload_abort_spares_an_app_whose_name_starts_with_ours(
    s3_server, s3_bucket, tmp_path
):
    from flask_backup_manager.state import storage_from_url

    s3 = s3_server.client()
    storage = storage_from_url(
        f"s3://{s3_bucket}/{PREFIX}", {"endpoint_url": s3_server.endpoint_url}, tmp_path / "w"
    )
    s3.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/shop-20260101-000000-1.sqlite3")
    theirs = f"{PREFIX}/shop-eu-20260101-000000-1.sqlite3"  # app "shop-eu", a longer job timeout
    s3.create_multipart_upload(Bucket=s3_bucket, Key=theirs)
    aborted = storage.abort_stale_uploads(-1, app_name="shop")
    assert aborted == ["shop-20260101-000000-1.sqlite3"]


def test_backups_moved_from_s3_to_a_local_directory_are_not_called_damaged(
    made, s3_bucket, tmp_path
):
    from flask_backup_manager.storage import LocalStorage

    app, client, s3, done = made()
    local = tmp_path / "moved"
    local.mkdir()
    key = f"{PREFIX}/{done['filename']}"
    (local / done["filename"]).write_bytes(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    app.extensions["backup_manager"].storage = LocalStorage(local)  # the operator's new config
    moved = app
    listing = moved.test_client().get("/backups/", headers=HTML).get_data(as_text=True)
    assert done["filename"] in listing or str(done["id"]) in listing
    page = moved.test_client().get(f"/backups/{done['id']}", headers=HTML).get_data(as_text=True)
    assert (DAMAGED in listing, DAMAGED in page) == (False, False)
