"""The Backup Manager on S3 end to end (issue 15): the host app with
``BACKUP_MANAGER_STORAGE_URL = s3://bucket/backups``, real ``flask backups worker`` processes,
moto's real S3 server over HTTP. What a user checks: the backup succeeds with its object in
the bucket, downloads (presigned or proxied) give the row's sha256, share links work, and
every fault (a worker killed, the store gone, a bucket that does not exist, a full disk)
fails the backup with its reason and leaves no object, no unfinished upload, no local file."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import signal
import subprocess
import urllib.request
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from ..conftest import ROOT, WORKER
from .conftest import apps_on
from .s3_helpers import (
    API,
    PREFIX,
    MiB,
    add_random_notes,
    fetch,
    files_in,
    flask_cli,
    freeze,
    keys,
    kill_tree,
    on_s3,
    sha256,
    signal_tree,
    uploads,
    wait_for,
)

HTML = {"Accept": "text/html"}
SHARE = {"X-Test-Permissions": "view,create,download,delete,share"}


def create(client, fmt: str = "sqlite3") -> dict:
    answer = client.post(f"{API}/backups", json={"format": fmt})
    assert answer.status_code == 202, answer.json
    return answer.json


def backup(client, backup_id: int) -> dict:
    return client.get(f"{API}/backups/{backup_id}").json


def logs(client, backup_id: int) -> list[str]:
    return [line["message"] for line in client.get(f"{API}/backups/{backup_id}/logs").json["logs"]]


def succeeded(client, backup_id: int) -> dict:
    done = backup(client, backup_id)
    assert done["status"] == "succeeded", (done, logs(client, backup_id))
    return done


def presigned(client, backup_id: int, **headers) -> str:
    answer = client.get(f"{API}/backups/{backup_id}/download", headers=headers)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.headers["Location"]


def expires_in(url: str) -> float:
    """Seconds a presigned URL is good for; fails unless it is signed with SigV4 (AWS refuses
    SigV2 for buckets made since June 2020, and botocore picks it for us-east-1 by default)."""
    query = parse_qs(urlsplit(url).query)
    assert "X-Amz-Signature" in query and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"], url
    return int(query["X-Amz-Expires"][0])


@pytest.fixture
def s3_host(make_app, host_env, monkeypatch, tmp_path, s3_server, s3_bucket):
    """``s3_host(**config)``: the host app on the session server's fresh bucket, its work dir
    ``tmp_path/work``; returns (app, client, boto3 client)."""

    def make(options: dict | None = None, **config):
        conf = on_s3(
            host_env, monkeypatch, s3_server, s3_bucket, tmp_path / "work", **(options or {})
        )
        app = make_app(**conf, **config)
        return app, app.test_client(), s3_server.client()

    return make


def test_lifecycle_on_s3_create_upload_list_presigned_download_delete(
    s3_host, s3_bucket, run_worker, tmp_path
):
    app, client, s3 = s3_host()
    backup_id = create(client)["id"]
    run_worker()
    done = succeeded(client, backup_id)
    assert f"uploading the file to s3://{s3_bucket}/{PREFIX}" in logs(client, backup_id)
    key = f"{PREFIX}/{done['filename']}"
    assert keys(s3, s3_bucket) == [key]
    head = s3.head_object(Bucket=s3_bucket, Key=key)
    assert head["Metadata"]["sha256"] == done["sha256"]
    assert head["ContentLength"] == done["size"]
    assert files_in(tmp_path / "work") == []  # uploaded, then removed
    listed = client.get(f"{API}/backups").json["backups"]
    assert [(b["id"], b["status"]) for b in listed] == [(backup_id, "succeeded")]
    page = app.test_client().get("/backups/", headers=HTML).get_data(as_text=True)  # a browser
    assert 'data-testid="file-problem"' not in page and f"/backups/{backup_id}/download" in page

    url = presigned(client, backup_id)
    assert url.startswith(f"{app.config['BACKUP_MANAGER_S3_OPTIONS']['endpoint_url']}/")
    assert expires_in(url) <= 300  # short-lived
    trail = client.get(f"{API}/backups/{backup_id}/audit").json["audit"]
    assert [a["action"] for a in trail] == ["create", "download"]
    status, headers, data = fetch(url)
    assert status == 200 and sha256(data) == done["sha256"] and len(data) == done["size"]
    assert headers["Content-Disposition"] == f'attachment; filename="{done["filename"]}"'
    status, headers, part = fetch(presigned(client, backup_id), Range="bytes=10-109")
    assert status == 206 and part == data[10:110]
    assert headers["Content-Range"] == f"bytes 10-109/{len(data)}"

    assert client.delete(f"{API}/backups/{backup_id}").status_code == 204
    with pytest.raises(Exception) as gone:
        s3.head_object(Bucket=s3_bucket, Key=key)
    assert gone.value.response["Error"]["Code"] == "404"
    assert keys(s3, s3_bucket) == []
    assert client.get(f"{API}/backups/{backup_id}").status_code == 404
    assert client.get(f"{API}/backups/{backup_id}/download").status_code == 404


def test_a_big_file_is_uploaded_in_several_parts_each_checked_by_the_store(
    s3_host, s3_bucket, run_worker, tmp_path
):
    app, client, s3 = s3_host({"part_size": 5 * MiB})
    add_random_notes(tmp_path / "host.db", megabytes=13)
    backup_id = create(client, "sqlite3_db")["id"]
    run_worker()
    done = succeeded(client, backup_id)
    assert done["size"] > 12 * MiB
    key = f"{PREFIX}/{done['filename']}"
    parts = -(-done["size"] // (5 * MiB))
    assert parts >= 3
    first = s3.head_object(Bucket=s3_bucket, Key=key, PartNumber=1)
    assert first["PartsCount"] == parts and first["ContentLength"] == 5 * MiB
    head = s3.head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith(f"-{parts}")
    assert uploads(s3, s3_bucket) == [] and files_in(tmp_path / "work") == []
    _, _, data = fetch(presigned(client, backup_id))
    assert sha256(data) == done["sha256"]
    # each part was sent with its SHA-256: the store's checksum is the sha256 of theirs
    digests = b"".join(
        hashlib.sha256(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)
    )
    composite = base64.b64encode(hashlib.sha256(digests).digest()).decode()
    assert head["ChecksumSHA256"].split("-")[0] == composite


def test_proxied_downloads_stream_check_and_refuse_a_changed_object(s3_host, s3_bucket, run_worker):
    app, client, s3 = s3_host(BACKUP_MANAGER_S3_PROXY_DOWNLOADS=True)
    backup_id = create(client)["id"]
    run_worker()
    done = succeeded(client, backup_id)
    url = f"{API}/backups/{backup_id}/download"

    whole = client.get(url)
    assert whole.status_code == 200
    assert sha256(whole.data) == done["sha256"] and len(whole.data) == done["size"]
    assert whole.headers["ETag"] == f'"{done["sha256"]}"'
    assert whole.headers["Content-Disposition"] == f"attachment; filename={done['filename']}"
    ranged = client.get(url, headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.data == whole.data[100:200]
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{done['size']}"
    audited = client.get(f"{API}/backups/{backup_id}/audit").json["audit"]
    assert [a["action"] for a in audited] == ["create", "download", "download"]

    # another file of the same size put in its place behind the app's back
    other = bytes(b ^ 0xFF for b in whole.data)
    s3.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{done['filename']}", Body=other)
    refused = client.get(url)
    assert refused.status_code == 500
    assert refused.json["error"]["code"] == "checksum_mismatch"
    assert other not in refused.data and other[:64] not in refused.data
    ranged = client.get(url, headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 500 and other[:100] not in ranged.data
    audited = client.get(f"{API}/backups/{backup_id}/audit").json["audit"]
    assert [a["action"] for a in audited] == ["create", "download", "download"]


def test_a_share_link_redirects_each_use_to_a_fresh_presigned_url(s3_host, s3_bucket, run_worker):
    app, client, s3 = s3_host()
    backup_id = create(client)["id"]
    run_worker()
    done = succeeded(client, backup_id)

    made = client.post(f"{API}/backups/{backup_id}/links", json={}, headers=SHARE)
    assert made.status_code == 201, made.json
    path = made.json["url"].removeprefix("http://localhost")
    visitor = app.test_client()  # no session: someone at the vendor
    page = visitor.get(path, headers=HTML)
    assert page.status_code == 200 and done["sha256"] in page.get_data(as_text=True)
    first = visitor.get(path + "?download=1")
    assert first.status_code == 302 and expires_in(first.headers["Location"]) <= 300
    status, headers, data = fetch(first.headers["Location"])
    assert status == 200 and sha256(data) == done["sha256"]
    assert headers["Content-Disposition"] == f'attachment; filename="{done["filename"]}"'

    once = client.post(
        f"{API}/backups/{backup_id}/links", json={"max_downloads": 1}, headers=SHARE
    ).json
    once_path = once["url"].removeprefix("http://localhost")
    used = app.test_client().get(once_path + "?download=1")
    assert used.status_code == 302
    assert sha256(fetch(used.headers["Location"])[2]) == done["sha256"]
    assert app.test_client().get(once_path + "?download=1").status_code == 404
    assert app.test_client().get(once_path).status_code == 404
    again = visitor.get(path + "?download=1")  # the unlimited one still works
    assert again.status_code == 302
    assert sha256(fetch(again.headers["Location"])[2]) == done["sha256"]


def test_an_object_removed_from_the_bucket_shows_the_file_missing(s3_host, s3_bucket, run_worker):
    app, client, s3 = s3_host()
    backup_id = create(client)["id"]
    run_worker()
    done = succeeded(client, backup_id)
    s3.delete_object(Bucket=s3_bucket, Key=f"{PREFIX}/{done['filename']}")

    detail = client.get(f"/backups/{backup_id}", headers=HTML)
    assert detail.status_code == 200
    assert "The file is missing from storage." in detail.get_data(as_text=True)
    listing = client.get("/backups/", headers=HTML).get_data(as_text=True)
    assert "The file is missing from storage." in listing
    answer = client.get(f"{API}/backups/{backup_id}/download")
    assert answer.status_code == 410 and answer.json["error"]["code"] == "file_missing"


def test_the_list_marks_a_missing_object_and_the_page_a_replaced_one(
    s3_host, s3_bucket, run_worker
):
    """The list checks from one listing what a listing tells (gone, another size); bytes
    replaced under the same size and copied metadata take a read, which the backup's page and
    its download make (a new ETag alone may be the same bytes, copied in place)."""
    app, client, s3 = s3_host()
    ids = [create(client)["id"] for _ in range(3)]
    run_worker()
    gone, replaced, good = (succeeded(client, i) for i in ids)
    s3.delete_object(Bucket=s3_bucket, Key=f"{PREFIX}/{gone['filename']}")
    other = os.urandom(replaced["size"])  # the same size, other bytes, the sha256 copied
    s3.put_object(
        Bucket=s3_bucket,
        Key=f"{PREFIX}/{replaced['filename']}",
        Body=other,
        Metadata={"sha256": replaced["sha256"]},
    )
    listing = client.get("/backups/", headers=HTML).get_data(as_text=True)
    rows = dict(re.findall(r'data-backup-id="(\d+)"(.*?)</tr>', listing, re.S))
    assert "The file is missing from storage." in rows[str(gone["id"])]
    assert "file-problem" not in rows[str(good["id"])]
    shown = app.test_cli_runner().invoke(args=["backups", "list"]).output
    assert "! The file is missing from storage." in shown
    page = client.get(f"/backups/{replaced['id']}", headers=HTML).get_data(as_text=True)
    assert "The file no longer matches its checksum." in page
    answer = client.get(f"{API}/backups/{replaced['id']}/download")  # read here, not redirected
    assert answer.status_code == 500 and answer.json["error"]["code"] == "checksum_mismatch"
    good_page = client.get(f"/backups/{good['id']}", headers=HTML).get_data(as_text=True)
    assert "file-problem" not in good_page and "no longer matches" not in good_page


def mid_upload(proc, s3, bucket: str) -> None:
    """Wait until the worker has begun the multipart upload, then freeze its whole process
    tree there: the upload is unfinished, no object yet."""
    wait_for(lambda: uploads(s3, bucket), timeout=300, what="the upload", proc=proc, pause=0.002)
    freeze(proc)
    assert len(uploads(s3, bucket)) == 1 and keys(s3, bucket) == []


def test_a_worker_killed_mid_upload_fails_the_backup_and_leaves_nothing(
    s3_host, s3_bucket, worker, tmp_path
):
    app, client, s3 = s3_host(
        {"part_size": 5 * MiB}, BACKUP_MANAGER_HEARTBEAT=1, BACKUP_MANAGER_WORKER_LOST_AFTER=15
    )
    add_random_notes(tmp_path / "host.db", megabytes=40)
    backup_id = create(client, "sqlite3_db")["id"]
    proc = worker(["setsid"])  # a process group of its own, not the test's
    mid_upload(proc, s3, s3_bucket)
    running = backup(client, backup_id)
    assert running["status"] == "running"
    assert logs(client, backup_id)[-1] == f"uploading the file to s3://{s3_bucket}/{PREFIX}"
    assert files_in(tmp_path / "work") == [running["filename"]]  # what it was uploading
    kill_tree(proc)

    failed = wait_for(  # found out by its missing heartbeat (any request reaps)
        lambda: (b := backup(client, backup_id))["status"] == "failed" and b,
        timeout=120,
        what="the backup to fail",
    )
    assert failed["error"] == "worker lost: no heartbeat for 15 s"
    assert keys(s3, s3_bucket) == []
    assert uploads(s3, s3_bucket) == []  # aborted
    assert files_in(tmp_path / "work") == []


def test_a_worker_host_killed_mid_upload_clears_its_own_disk_at_its_next_job(
    s3_host, s3_bucket, host_env, tmp_path
):
    """Hosts without a shared disk: the web host reaps the dead worker's backup, which aborts
    its upload but cannot reach the worker host's work dir; the worker, restarted there, clears
    it before its next job."""
    app, client, s3 = s3_host(
        {"part_size": 5 * MiB}, BACKUP_MANAGER_HEARTBEAT=1, BACKUP_MANAGER_WORKER_LOST_AFTER=15
    )
    own = tmp_path / "worker-host-work"
    conf = {**json.loads(host_env["HOSTAPP_CONFIG"]), "BACKUP_MANAGER_WORK_DIR": str(own)}
    env = {**os.environ, **host_env, "HOSTAPP_CONFIG": json.dumps(conf)}
    add_random_notes(tmp_path / "host.db", megabytes=40)
    first = create(client, "sqlite3_db")["id"]
    proc = subprocess.Popen(
        ["setsid", *WORKER], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        mid_upload(proc, s3, s3_bucket)
        left = files_in(own)
        assert left == [backup(client, first)["filename"]]
        kill_tree(proc)
    finally:
        proc.stderr.close()
    # restarted at once (as systemd does): its backup is still running, so its start leaves
    # the file alone
    again = subprocess.Popen(
        ["setsid", *WORKER], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(  # the web host reaps it
            lambda: backup(client, first)["status"] == "failed", timeout=120, what="the reaper"
        )
        assert uploads(s3, s3_bucket) == []  # its upload aborted from the web host
        assert files_in(own) == left  # but the worker host's disk is not the web host's
        second = create(client, "sqlite3")["id"]
        wait_for(  # the restarted worker's next job clears it
            lambda: backup(client, second)["status"] not in ("queued", "running"),
            timeout=120,
            what="the second backup",
            proc=again,
        )
        done = succeeded(client, second)
        assert files_in(own) == []
        assert keys(s3, s3_bucket) == [f"{PREFIX}/{done['filename']}"]
    finally:
        signal_tree(again, signal.SIGKILL)
        again.wait()
        again.stderr.close()


def test_the_store_going_away_mid_upload_fails_the_backup_with_the_reason(
    make_app, host_env, monkeypatch, make_s3_server, worker, tmp_path
):
    server = make_s3_server()
    bucket = server.create_bucket()
    s3 = server.client()
    app = make_app(
        **on_s3(host_env, monkeypatch, server, bucket, tmp_path / "work", part_size=5 * MiB)
    )
    add_random_notes(tmp_path / "host.db", megabytes=30)
    client = app.test_client()
    backup_id = create(client, "sqlite3_db")["id"]
    proc = worker(["setsid"])
    mid_upload(proc, s3, bucket)
    server.kill()  # the store unplugged while the upload waits for its next part
    signal_tree(proc, signal.SIGCONT)

    failed = wait_for(
        lambda: (b := backup(client, backup_id))["status"] in ("failed", "succeeded") and b,
        timeout=300,
        what="the backup to finish",
        proc=proc,
    )
    assert failed["status"] == "failed", failed
    endpoint = server.endpoint_url
    assert failed["error"].startswith(f"storing the file in s3://{bucket}/{PREFIX} failed: ")
    assert f'Could not connect to the endpoint URL: "{endpoint}/' in failed["error"]
    assert "\n" not in failed["error"]
    assert files_in(tmp_path / "work") == []
    assert proc.poll() is None  # the worker itself carries on


def test_a_bucket_that_does_not_exist_stops_check_storage_and_the_worker(
    make_app, host_env, monkeypatch, s3_server, s3_bucket, tmp_path
):
    missing = f"fbm-never-made-{uuid.uuid4().hex[:8]}"
    app = make_app(**on_s3(host_env, monkeypatch, s3_server, missing, tmp_path / "work"))
    client = app.test_client()
    backup_id = create(client)["id"]

    checked = flask_cli(host_env, "check-storage")
    assert checked.returncode == 1, checked
    assert checked.stdout == ""
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1, checked.stderr
    assert f"s3://{missing}/{PREFIX}" in lines[0]
    assert "NoSuchBucket: The specified bucket does not exist" in lines[0]

    burst = flask_cli(host_env, "worker", "--burst")
    assert burst.returncode == 1, burst
    assert "NoSuchBucket: The specified bucket does not exist" in burst.stderr
    assert len(burst.stderr.strip().splitlines()) == 1, burst.stderr
    assert backup(client, backup_id)["status"] == "queued"  # it took no job

    good = on_s3(host_env, monkeypatch, s3_server, s3_bucket, tmp_path / "work")
    checked = flask_cli({**host_env, "HOSTAPP_CONFIG": json.dumps(good)}, "check-storage")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == (
        f"storage s3://{s3_bucket}/{PREFIX}: a file was stored, read and removed"
    )
    assert keys(s3_server.client(), s3_bucket) == []  # the probe removed


def test_two_worker_hosts_and_a_web_host_share_one_bucket_and_queue(
    pg_url, host_env, monkeypatch, s3_server, s3_bucket, tmp_path
):
    hosts = apps_on(pg_url, host_env, monkeypatch)  # the host's PostgreSQL database
    make = next(hosts)
    web_conf = on_s3(host_env, monkeypatch, s3_server, s3_bucket, tmp_path / "web-work")
    host_env["HOSTAPP_INSTANCE"] = str(tmp_path / "web-instance")
    monkeypatch.setenv("HOSTAPP_INSTANCE", host_env["HOSTAPP_INSTANCE"])
    try:
        app = make(**web_conf)
        client = app.test_client()

        def host(name: str) -> dict:
            conf = {**web_conf, "BACKUP_MANAGER_WORK_DIR": str(tmp_path / f"{name}-work")}
            return {
                **host_env,
                "HOSTAPP_INSTANCE": str(tmp_path / f"{name}-instance"),
                "HOSTAPP_CONFIG": json.dumps(conf),
            }

        workers = {"alpha": host("alpha"), "beta": host("beta")}
        made = []
        for turn, fmt in enumerate(["sqlite3", "postgres", "sqlite3_db", "postgres"]):
            name = ["alpha", "beta"][turn % 2]
            backup_id = create(client, fmt)["id"]
            out = subprocess.run(
                [*WORKER, "--burst", "--name", f"{name}-{uuid.uuid4().hex[:6]}"],
                cwd=ROOT,
                env={**os.environ, **workers[name]},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert out.returncode == 0, out.stderr[-3000:]
            assert re.search(rf"worker {name}-\w+ on queue", out.stderr), out.stderr
            made.append((name, succeeded(client, backup_id)))
        for name in workers:  # each host built its files in its own work dir and left none
            assert (tmp_path / f"{name}-work").is_dir()
            assert files_in(tmp_path / f"{name}-work") == []
        assert not (tmp_path / "web-work").exists() or files_in(tmp_path / "web-work") == []
        s3 = s3_server.client()
        assert sorted(keys(s3, s3_bucket)) == sorted(f"{PREFIX}/{b['filename']}" for _, b in made)
        for _, done in made:  # every file downloads from the web side, whoever made it
            _, _, data = fetch(presigned(client, done["id"]))
            assert sha256(data) == done["sha256"]
    finally:
        next(hosts, None)  # closes the apps


def mount_namespace_refusal() -> str | None:
    """Why this machine cannot give an unprivileged process a mount namespace of its own
    (Ubuntu's AppArmor refuses them by default since 23.10), or None when it can."""
    tried = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if tried.returncode == 0 else (tried.stderr.strip() or f"exit {tried.returncode}")


def test_a_full_work_directory_fails_the_backup_and_leaves_nothing(
    s3_host, s3_bucket, host_env, tmp_path
):
    refused = mount_namespace_refusal()
    strict = os.environ.get("CI") or os.environ.get("BACKUP_MANAGER_TEST_REQUIRE_SERVICES")
    if refused and strict:  # CI causes the full disk for real, never skips it
        pytest.fail(f"unshare --user --mount is refused here: {refused}")
    if refused:
        pytest.skip(f"a full disk is made with a 1 MiB tmpfs in a user namespace: {refused}")
    work = tmp_path / "work"
    work.mkdir()
    app, client, s3 = s3_host()
    add_random_notes(tmp_path / "host.db", megabytes=3)
    backup_id = create(client, "sqlite3_db")["id"]
    script = (
        f"mount -t tmpfs -o size=1m,mode=0700 tmpfs {work} || exit 99; "
        f"{' '.join(WORKER)} --burst; rc=$?; echo left:; ls -A {work}; exit $rc"
    )
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=ROOT,
        env={**os.environ, **host_env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    assert out.stdout.split("left:", 1)[1].strip() == ""  # nothing in the full tmpfs
    failed = backup(client, backup_id)
    assert failed["status"] == "failed", failed
    assert "No space left on device" in failed["error"]
    assert keys(s3, s3_bucket) == [] and uploads(s3, s3_bucket) == []
    assert files_in(work) == []


def test_a_changed_object_is_refused_before_any_redirect_and_head_is_answered_here(
    s3_host, s3_bucket, run_worker
):
    app, client, s3 = s3_host()
    backup_id = create(client)["id"]
    run_worker()
    done = succeeded(client, backup_id)
    key = f"{PREFIX}/{done['filename']}"
    head = client.head(f"{API}/backups/{backup_id}/download")
    assert head.status_code == 200 and "Location" not in head.headers  # a HEAD is not a GET
    assert head.headers["Content-Length"] == str(done["size"])
    assert head.headers["X-Backup-SHA256"] == done["sha256"]
    audited = client.get(f"{API}/audit").json["audit"]
    assert not [e for e in audited if e["action"] == "download"]  # nothing was sent

    other = os.urandom(done["size"])
    s3.put_object(Bucket=s3_bucket, Key=key, Body=other, Metadata={"sha256": sha256(other)})
    answer = client.get(f"{API}/backups/{backup_id}/download")
    assert answer.status_code == 500 and "Location" not in answer.headers
    assert answer.json["error"]["code"] == "checksum_mismatch"
    s3.put_object(Bucket=s3_bucket, Key=key, Body=b"short", Metadata={"sha256": done["sha256"]})
    assert client.get(f"{API}/backups/{backup_id}/download").status_code == 500


def test_the_example_shop_on_s3_and_the_link_pages_own_curl_line(
    make_demo, s3_server, s3_bucket, tmp_path
):
    """As an operator and a vendor do it: the demo started with a STORAGE_URL in its
    environment, a backup made with the API, a one-download link from the CLI, and the curl
    line of the link page pasted into a shell (it must follow the redirect to the store)."""
    demo = make_demo(
        BACKUP_MANAGER_STORAGE_URL=f"s3://{s3_bucket}/shop",
        BACKUP_MANAGER_S3_OPTIONS=json.dumps(
            {"endpoint_url": s3_server.endpoint_url, "addressing_style": "path"}
        ),
        EXAMPLE_APP_API_TOKEN="t0ken",
    )
    bearer = {"Authorization": "Bearer t0ken", "Content-Type": "application/json"}
    request = urllib.request.Request(
        f"{demo.url}{API}/backups", data=b'{"format": "sqlite3"}', headers=bearer, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        backup_id = json.load(r)["id"]

    def status() -> dict:
        get = urllib.request.Request(f"{demo.url}{API}/backups/{backup_id}", headers=bearer)
        with urllib.request.urlopen(get, timeout=30) as r:
            return json.load(r)

    done = wait_for(
        lambda: (b := status())["status"] in ("succeeded", "failed") and b,
        timeout=120,
        what="the backup",
    )
    assert done["status"] == "succeeded", (done, demo.output())
    assert keys(s3_server.client(), s3_bucket) == [f"shop/{done['filename']}"]
    made = subprocess.run(
        demo.flask(
            "backups", "link", str(backup_id), "--max-downloads", "1", "--base-url", demo.url
        ),
        cwd=ROOT,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with urllib.request.urlopen(made.stdout.strip(), timeout=30) as r:
        page = r.read().decode()
    line = re.search(r'data-testid="link-curl"><code>(curl [^\n]+)', page)[1]
    line = html.unescape(line)
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    got = subprocess.run(line, shell=True, cwd=vendor, capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert sha256((vendor / done["filename"]).read_bytes()) == done["sha256"]
