"""The S3 backend (storage_s3.S3Storage) against a real S3 API server over HTTP: moto's
standalone server, started by the fixtures (tests/s3server.py); no stub of boto3."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import threading
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from flask import Flask, request, send_file

from flask_backup_manager.engine import ExportCancelled
from flask_backup_manager.state import storage_from_url
from flask_backup_manager.storage import StorageError

from ..s3server import free_port

MiB = 1024 * 1024
PREFIX = "backups/app"


def make_storage(endpoint_url: str, bucket: str, work_dir: Path, prefix: str = PREFIX, **options):
    url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    return storage_from_url(url, {"endpoint_url": endpoint_url, **options}, work_dir)


def write_export(storage, name: str, size: int) -> tuple[Path, bytes]:
    """A finished export of ``size`` random bytes where the worker writes it."""
    path = storage.export_path(name)
    data = os.urandom(size)
    path.write_bytes(data)
    return path, data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def composite_sha256(data: bytes, part_size: int) -> str:
    """S3's checksum of a multipart object: the sha256 of its parts' sha256 digests."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    return base64.b64encode(
        hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    ).decode()


def objects(client, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(client, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_s3_lifecycle_put_stat_open_presigned_delete(s3_server, s3_bucket, tmp_path):
    work = tmp_path / "work"
    storage = make_storage(
        s3_server.endpoint_url,
        s3_bucket,
        work,
        part_size=5 * MiB,
        server_side_encryption="AES256",
    )
    assert storage.url == f"s3://{s3_bucket}/{PREFIX}"
    name = "backup-1-20261202T051000Z.sql"
    path, data = write_export(storage, name, 12 * MiB + 12345)
    assert path.parent == work and stat.S_IMODE(work.stat().st_mode) == 0o700
    heard = []

    storage.put(
        path, name, sha256=sha256(data), size=len(data), progress=lambda d, t: heard.append((d, t))
    )

    assert not path.exists()
    assert heard == [(5 * MiB, len(data)), (10 * MiB, len(data)), (len(data), len(data))]
    client = s3_server.client()
    key = f"{PREFIX}/{name}"
    assert objects(client, s3_bucket) == [key]
    assert uploads(client, s3_bucket) == []
    # three parts, each checked by its SHA-256: the store's composite checksum says so
    head = client.head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ChecksumSHA256"].split("-")[0] == composite_sha256(data, 5 * MiB)
    assert head["Metadata"]["sha256"] == sha256(data)
    assert head["ServerSideEncryption"] == "AES256"
    assert sha256(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()) == sha256(data)

    found = storage.stat(name)
    assert found.size == len(data)
    assert found.sha256 == sha256(data)
    assert found.version == head["ETag"].strip('"')  # the ETag, without its quotes
    assert found.mtime == head["LastModified"].timestamp()

    with storage.open(name) as f:
        assert f.readable() and f.seekable()
        assert f.seek(5 * MiB - 10) == 5 * MiB - 10
        assert f.read(1000) == data[5 * MiB - 10 : 5 * MiB + 990]
        assert f.tell() == 5 * MiB + 990
        assert f.seek(-100, io.SEEK_END) == len(data) - 100
        assert f.read() == data[-100:]
        assert f.read(10) == b""
        f.seek(10, io.SEEK_SET)
        f.seek(20, io.SEEK_CUR)
        assert f.read(5) == data[30:35]
        f.seek(0)
        whole, chunks = hashlib.sha256(), 0
        while chunk := f.read(MiB):
            whole.update(chunk)
            chunks += 1
        assert whole.hexdigest() == sha256(data) and chunks >= 13

    url = storage.download_url(name, filename=name, expires=300)
    with urllib.request.urlopen(url, timeout=60) as answer:
        assert f'filename="{name}"' in answer.headers["Content-Disposition"]
        assert answer.headers["Content-Disposition"].startswith("attachment")
        assert sha256(answer.read()) == sha256(data)

    storage.delete(name)
    assert storage.stat(name) is None
    assert objects(client, s3_bucket) == []
    with pytest.raises(FileNotFoundError):
        storage.open(name)
    storage.delete(name)  # already gone: no error


def test_s3_object_is_served_by_flask_send_file_with_ranges(s3_server, s3_bucket, tmp_path):
    """What the app's delivery does with a stored file: send_file(fileobj), werkzeug's Range."""
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work")
    name = "backup-2.sqlite3"
    path, data = write_export(storage, name, 3 * MiB + 7)
    storage.put(path, name, sha256=sha256(data), size=len(data))
    app = Flask(__name__)

    @app.get("/file")
    def file():
        size = storage.stat(name).size
        response = send_file(
            storage.open(name), as_attachment=True, download_name=name, conditional=False
        )
        response.content_length = size
        response.make_conditional(request, accept_ranges=True, complete_length=size)
        return response

    client = app.test_client()
    whole = client.get("/file")
    assert whole.status_code == 200 and sha256(whole.data) == sha256(data)
    part = client.get("/file", headers={"Range": "bytes=2000000-2099999"})
    assert part.status_code == 206
    assert part.data == data[2000000:2100000]
    tail = client.get("/file", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == data[-10:]


def test_s3_reader_refuses_bytes_of_a_replaced_object(s3_server, s3_bucket, tmp_path):
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work")
    name = "backup-3.sql"
    path, data = write_export(storage, name, 1000)
    storage.put(path, name, sha256=sha256(data), size=len(data))
    with storage.open(name) as f:
        assert f.read(10) == data[:10]
        s3_server.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{name}", Body=b"other" * 300)
        f.seek(500)
        with pytest.raises(StorageError, match="PreconditionFailed"):
            f.read(10)
    storage.delete(name)
    with pytest.raises(FileNotFoundError):
        storage.open(name)


def test_s3_small_file_without_prefix(s3_server, s3_bucket, tmp_path):
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work", prefix="")
    assert storage.url == f"s3://{s3_bucket}"
    storage.check()
    path, data = write_export(storage, "small.sql", 100)
    storage.put(path, "small.sql", sha256=sha256(data), size=len(data))
    assert objects(s3_server.client(), s3_bucket) == ["small.sql"]
    assert storage.stat("small.sql").sha256 == sha256(data)
    with storage.open("small.sql") as f:
        assert f.read() == data


def test_s3_cancel_after_first_part_leaves_nothing(s3_server, s3_bucket, tmp_path):
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work", part_size=5 * MiB)
    name = "backup-4.sql"
    path, data = write_export(storage, name, 12 * MiB)
    cancel = threading.Event()
    heard = []

    def progress(done, total):
        heard.append(done)
        cancel.set()

    with pytest.raises(ExportCancelled):
        storage.put(
            path, name, sha256=sha256(data), size=len(data), cancel=cancel, progress=progress
        )

    assert heard == [5 * MiB]
    client = s3_server.client()
    assert objects(client, s3_bucket) == []
    assert uploads(client, s3_bucket) == []
    assert not path.exists()
    assert storage.stat(name) is None


def test_s3_put_of_a_file_changed_after_its_check_fails(s3_server, s3_bucket, tmp_path):
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work")
    path, data = write_export(storage, "backup-5.sql", 1000)
    with pytest.raises(StorageError, match="changed after it was checked"):
        storage.put(path, "backup-5.sql", sha256=sha256(b"something else"), size=len(data))
    client = s3_server.client()
    assert objects(client, s3_bucket) == [] and uploads(client, s3_bucket) == []
    assert not path.exists()


def test_s3_server_stopped_mid_upload_fails_with_the_reason(make_s3_server, tmp_path):
    server = make_s3_server()
    bucket = server.create_bucket()
    storage = make_storage(server.endpoint_url, bucket, tmp_path / "work", part_size=5 * MiB)
    name = "backup-6.sql"
    path, data = write_export(storage, name, 12 * MiB)

    def progress(done, total):
        server.kill()  # the store goes away after the first part

    with pytest.raises(StorageError) as caught:
        storage.put(path, name, sha256=sha256(data), size=len(data), progress=progress)

    message = str(caught.value)
    assert "Could not connect to the endpoint URL" in message and "\n" not in message
    assert not path.exists()
    assert list((tmp_path / "work").iterdir()) == []


def test_s3_unreachable_endpoint_fails_check(s3_env, tmp_path):
    storage = make_storage(f"http://127.0.0.1:{free_port()}", "nobody", tmp_path / "work")
    with pytest.raises(StorageError, match="Could not connect to the endpoint URL"):
        storage.check()


def test_s3_missing_bucket_is_reported_by_check_and_put(s3_server, s3_env, tmp_path):
    storage = make_storage(s3_server.endpoint_url, "fbm-never-made", tmp_path / "work")
    with pytest.raises(StorageError) as caught:
        storage.check()
    assert str(caught.value) == (
        f"s3://fbm-never-made/{PREFIX}: NoSuchBucket: The specified bucket does not exist"
    )
    path, data = write_export(storage, "backup-7.sql", 100)
    with pytest.raises(StorageError, match="^NoSuchBucket: The specified bucket does not exist$"):
        storage.put(path, "backup-7.sql", sha256=sha256(data), size=len(data))
    assert not path.exists()


def test_s3_store_that_refuses_writes_is_reported_and_leaves_nothing(
    make_s3_server, tmp_path, monkeypatch
):
    # moto enforcing IAM after the first 4 requests (the setup below): a user who may read and
    # list but not write, as a bucket whose policy refuses this worker
    server = make_s3_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    bucket = server.create_bucket()
    iam = boto3.session.Session().client("iam", endpoint_url=server.endpoint_url)
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": "*",
            }
        ],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    storage = make_storage(server.endpoint_url, bucket, tmp_path / "work")

    with pytest.raises(StorageError) as caught:
        storage.check()
    assert str(caught.value) == f"s3://{bucket}/{PREFIX}: AccessDenied: Access Denied"

    path, data = write_export(storage, "backup-8.sql", 1000)
    with pytest.raises(StorageError) as caught:
        storage.put(path, "backup-8.sql", sha256=sha256(data), size=len(data))
    assert str(caught.value) == "AccessDenied: Access Denied"
    assert not path.exists()
    reader = server.client(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
    )
    assert objects(reader, bucket) == [] and uploads(reader, bucket) == []
    assert key["SecretAccessKey"] not in str(caught.value)


def test_s3_abort_stale_uploads_aborts_those_under_the_prefix(s3_server, s3_bucket, tmp_path):
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work")
    client = s3_server.client()
    # a worker killed mid-upload left these; moto dates every upload in the past (2010)
    name = "app-20260101-000000-9.sql.gz"
    client.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/{name}")
    client.create_multipart_upload(Bucket=s3_bucket, Key=f"elsewhere/{name}")

    assert storage.abort_stale_uploads(3600, app_name="app") == [name]
    assert uploads(client, s3_bucket) == [f"elsewhere/{name}"]
    assert storage.abort_stale_uploads(3600, app_name="app") == []


def test_s3_remove_parts_aborts_the_upload_and_removes_local_files(s3_server, s3_bucket, tmp_path):
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work")
    name = "backup-10.sql"
    client = s3_server.client()
    client.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/{name}")
    client.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/backup-11.sql")
    path = storage.export_path(name)
    path.write_bytes(b"unfinished")
    (path.parent / f".{name}.abc123.part").write_bytes(b"partial")
    (path.parent / "backup-11.sql").write_bytes(b"another job's")

    storage.remove_parts(name)

    assert uploads(client, s3_bucket) == [f"{PREFIX}/backup-11.sql"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["backup-11.sql"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"bogus": 1}, "'bogus'"),
        ({"aws_secret_access_key": "x"}, "'aws_secret_access_key'"),
        ({"part_size": 1024}, "'part_size'"),
        ({"part_size": "16MiB"}, "'part_size'"),
        ({"part_size": True}, "'part_size'"),
        ({"addressing_style": "sideways"}, "'addressing_style'"),
        ({"server_side_encryption": "DES"}, "'server_side_encryption'"),
        ({"sse_kms_key_id": "alias/backups"}, "'sse_kms_key_id'"),
        ({"endpoint_url": "ftp://store"}, "'endpoint_url'"),
        ({"endpoint_url": "https://key:secret@store"}, "'endpoint_url'"),
        ({"region_name": ""}, "'region_name'"),
    ],
)
def test_s3_bad_options_name_the_option(options, named, tmp_path):
    with pytest.raises(ValueError) as caught:
        storage_from_url("s3://bucket/prefix", options, tmp_path)
    assert "BACKUP_MANAGER_S3_OPTIONS" in str(caught.value) and named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_s3_good_options_are_accepted(tmp_path):
    storage = storage_from_url(
        "s3://bucket/prefix/",
        {
            "endpoint_url": "https://minio.example:9000",
            "region_name": "eu-west-1",
            "addressing_style": "path",
            "server_side_encryption": "aws:kms",
            "sse_kms_key_id": "alias/backups",
            "part_size": 64 * MiB,
        },
        tmp_path,
    )
    assert storage.url == "s3://bucket/prefix"
    assert storage.part_size == 64 * MiB


def test_s3_put_holds_one_part_in_memory(s3_server, s3_bucket, tmp_path):
    storage = make_storage(s3_server.endpoint_url, s3_bucket, tmp_path / "work", part_size=5 * MiB)
    path = storage.export_path("backup-12.sql")
    whole = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(40):
            chunk = os.urandom(MiB)
            whole.update(chunk)
            f.write(chunk)
    del chunk
    storage.check()  # the client (its service model) is made before the count starts
    tracemalloc.start()
    try:
        storage.put(path, "backup-12.sql", sha256=whole.hexdigest(), size=40 * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a 40 MiB file through 5 MiB parts: one part in memory at a time (and the client's own)
    assert peak < 2 * 5 * MiB, f"{peak / MiB:.1f} MiB at the peak"

    assert storage.stat("backup-12.sql").size == 40 * MiB


SLOW_DOWN = (
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


class FailingParts:
    """An HTTP proxy in front of an S3 server that answers part uploads with a real 503
    (S3's SlowDown, as an overloaded store sends it) and passes every other request on: a
    store failing mid-upload, over HTTP, with no stub of the client."""

    def __init__(self, upstream: str) -> None:
        import http.server

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: ANN002  (quiet)
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and "partNumber=" in self.path:
                    proxy.refused += 1
                    self.send_response(503)
                    error = SLOW_DOWN
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                ask = urllib.request.Request(
                    upstream + self.path, data=body, headers=headers, method=self.command
                )
                try:
                    answer = urllib.request.urlopen(ask, timeout=30)
                except urllib.error.HTTPError as e:
                    answer = e
                with answer:
                    data = answer.read()
                    self.send_response(answer.status if hasattr(answer, "status") else answer.code)
                    for k, v in answer.headers.items():
                        if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815

        self.refused = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_s3_store_answering_5xx_mid_upload_fails_with_the_reason_and_leaves_nothing(
    s3_server, s3_bucket, tmp_path
):
    proxy = FailingParts(s3_server.endpoint_url)
    try:
        storage = make_storage(proxy.url, s3_bucket, tmp_path / "work", part_size=5 * MiB)
        name = "backup-7.sql"
        path, data = write_export(storage, name, 6 * MiB)
        with pytest.raises(StorageError) as caught:
            storage.put(path, name, sha256=sha256(data), size=len(data))
    finally:
        proxy.close()
    assert str(caught.value).startswith("SlowDown: Please reduce your request rate.")
    assert proxy.refused >= 2  # the client retried the part before it gave up
    client = s3_server.client()
    assert objects(client, s3_bucket) == [] and uploads(client, s3_bucket) == []  # aborted
    assert list((tmp_path / "work").iterdir()) == []
