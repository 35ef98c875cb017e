"""Backups encrypted for the vendor from the web side (issue 14, section 1): the config's keys,
the create page, the API and the CLI, the real worker writing ``.age`` files that Debian's
``age`` decrypts to what an unencrypted backup of the same data holds, and no plaintext left
behind by a worker killed while it encrypts."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flask_backup_manager.engine import FORMATS, parse_recipient

from ..conftest import process_tree, run_psql
from ..engine.test_encryption import CANARY, holds_plaintext
from ..hostapp import create_app, db
from .conftest import apps_on
from .test_pages import HTML, token
from .test_reliability import wait_for

API = "/backups/api"
AGE_MAGIC = b"age-encryption.org/v1\n"
LABEL = "Acme support"


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.run(cmd, capture_output=True, check=False, **kw)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


def keypair(path: Path) -> tuple[Path, str]:
    """A key pair made by Debian's age-keygen: the identity file, and the public key."""
    out = sh(["age-keygen", "-o", str(path)])
    return path, out.stderr.decode().split("Public key: ")[1].strip()


@pytest.fixture
def vendor(tmp_path) -> tuple[Path, str]:
    return keypair(tmp_path / "key.txt")


def recipients(public: str, label: str | None = LABEL) -> dict:
    key = {"label": label, "key": public} if label else public
    return {"BACKUP_MANAGER_RECIPIENTS": [key]}


def create(client, fmt: str = "sqlite3", **body):
    return client.post(f"{API}/backups", json={"format": fmt, **body})


def backup(client, backup_id: int) -> dict:
    return client.get(f"{API}/backups/{backup_id}").json


def logs(client, backup_id: int) -> list[str]:
    return [line["message"] for line in client.get(f"{API}/backups/{backup_id}/logs").json["logs"]]


def stored(app, b: dict) -> Path:
    return Path(app.config["BACKUP_MANAGER_STORAGE_DIR"]) / b["filename"]


def decrypt(path: Path, identity: Path, out: Path) -> Path:
    """``age -d -i IDENTITY -o OUT PATH``, as the vendor runs it."""
    sh(["age", "-d", "-i", str(identity), "-o", str(out), str(path)])
    return out


TABLES = ("customers", "orders")


def sqlite_rows(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TABLES}
    finally:
        con.close()


def pg_rows(psql: Path, url: str) -> dict[str, list[str]]:
    return {
        t: run_psql(psql, url, "-A", "-t", "-c", f"SELECT * FROM {t} ORDER BY id").splitlines()
        for t in TABLES
    }


def loaded(fmt: str, plain: Path, tmp: Path, psql: Path, owner_db: str) -> dict:
    """The rows of a (decrypted) file once loaded the documented way: the sqlite3 shell, psql
    (as the owner of an empty database, emptied again after), or opened as a database."""
    if fmt == "sqlite3":
        db = tmp / f"{plain.name}.db"
        sh(["sqlite3", "-safe", str(db)], input=gzip.decompress(plain.read_bytes()))
        return sqlite_rows(db)
    if fmt == "postgres":
        sql = gzip.decompress(plain.read_bytes())
        run_psql(psql, owner_db, "--single-transaction", stdin=sql)
        rows = pg_rows(psql, owner_db)
        run_psql(psql, owner_db, "-c", "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        return rows
    return sqlite_rows(plain)


# -- the real worker, each format


@pytest.mark.parametrize("fmt", ["sqlite3", "postgres", "sqlite3_db"])
def test_an_encrypted_backup_of_each_format_decrypts_with_age_to_the_rows_of_a_plain_one(
    fmt, vendor, make_app, run_worker, tmp_path, psql, owner_db
):
    key, public = vendor
    app = make_app(**recipients(public))
    client = app.test_client()
    sealed_id = create(client, fmt).json["id"]  # encrypted by default: there is a key
    plain_id = create(client, fmt, encrypt=False).json["id"]
    run_worker()
    sealed, plain = backup(client, sealed_id), backup(client, plain_id)
    assert (sealed["status"], plain["status"]) == ("succeeded", "succeeded"), (sealed, plain)

    fingerprint = parse_recipient(public).fingerprint
    assert sealed["encrypted_for"] == [{"label": LABEL, "fingerprint": fingerprint}]
    assert plain["encrypted_for"] is None
    assert sealed["filename"].endswith(f"-{sealed_id}{FORMATS[fmt].extension}.age")
    assert plain["filename"].endswith(f"-{plain_id}{FORMATS[fmt].extension}")
    path = stored(app, sealed)
    data = path.read_bytes()
    assert data.startswith(AGE_MAGIC) and CANARY.encode() not in data
    # the sha256 and size shown are the stored (encrypted) file's, as downloaded
    assert hashlib.sha256(data).hexdigest() == sealed["sha256"] and len(data) == sealed["size"]
    with client.get(f"{API}/backups/{sealed_id}/download") as download:
        assert download.status_code == 200 and download.data == data
        assert sealed["filename"] in download.headers["Content-Disposition"]
    manifest = client.get(f"{API}/backups/{sealed_id}/manifest").json
    assert manifest["encryption"] == {
        "format": "age",
        "recipients": [{"label": LABEL, "fingerprint": fingerprint}],
    }
    page = client.get(f"/backups/{sealed_id}", headers=HTML).text
    line = re.search(r'data-testid="encrypted-for">(.*?)</dd>', page, re.S).group(1)
    assert LABEL in line and fingerprint in line
    assert (
        'data-testid="encrypted-for"' not in client.get(f"/backups/{plain_id}", headers=HTML).text
    )
    assert any(f"encrypted for {LABEL}" in m for m in logs(client, sealed_id))

    out = decrypt(path, key, tmp_path / sealed["filename"].removesuffix(".age"))
    got = loaded(fmt, out, tmp_path, psql, owner_db)
    want = loaded(fmt, stored(app, plain), tmp_path, psql, owner_db)
    assert got == want and len(got["customers"]) == 50 and len(got["orders"]) == 150


@pytest.fixture
def pg_host(pg_url, host_env, monkeypatch):
    yield from apps_on(pg_url, host_env, monkeypatch)


def test_an_encrypted_backup_of_a_postgresql_host_decrypts_to_its_rows(
    vendor, pg_host, pg_url, run_worker, tmp_path, psql, owner_db
):
    key, public = vendor
    client = pg_host(**recipients(public)).test_client()
    backup_id = create(client, "postgres").json["id"]
    run_worker()
    b = backup(client, backup_id)
    assert b["status"] == "succeeded" and b["filename"].endswith(".postgres.sql.gz.age"), b
    out = decrypt(stored(client.application, b), key, tmp_path / "copy.sql.gz")
    assert loaded("postgres", out, tmp_path, psql, owner_db) == pg_rows(psql, pg_url)


def test_an_ssh_key_without_a_label_is_named_by_its_comment_and_decrypts_with_age(
    make_app, run_worker, tmp_path
):
    ssh = tmp_path / "id_ed25519"
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vendor@acme", "-f", str(ssh)])
    public = (tmp_path / "id_ed25519.pub").read_text().strip()
    app = make_app(BACKUP_MANAGER_RECIPIENTS=[public])
    client = app.test_client()
    assert "Encrypt for vendor@acme" in app.test_client().get("/backups/new", headers=HTML).text
    backup_id = create(client, "sqlite3_db").json["id"]
    run_worker()
    b = backup(client, backup_id)
    assert b["encrypted_for"] == [
        {"label": "vendor@acme", "fingerprint": parse_recipient(public).fingerprint}
    ]
    out = decrypt(stored(app, b), ssh, tmp_path / "copy.db")
    assert len(sqlite_rows(out)["orders"]) == 150


# -- choosing on the page, the API and the CLI


def test_the_create_page_offers_encryption_on_by_default_and_unticked_makes_a_plain_copy(
    vendor, make_app
):
    _, public = vendor
    app = make_app(**recipients(public))
    client, api = app.test_client(), app.test_client()  # a browser, a script (no cookie)
    page = client.get("/backups/new", headers=HTML).text
    box = re.search(r'<input type="checkbox" name="encrypt"[^>]*>', page).group(0)
    assert "checked" in box and f"Encrypt for {LABEL}" in page
    csrf = token(client)

    def post(**form) -> dict:
        answer = client.post("/backups/", data={"csrf_token": csrf, "format": "sqlite3", **form})
        assert answer.status_code == 303, answer.text
        backup_id = int(answer.headers["Location"].rstrip("/").rsplit("/", 1)[1])
        return api.get(f"{API}/backups/{backup_id}").json

    ticked = post(encrypt=["0", "1"])  # the hidden 0, then the ticked box's 1
    assert ticked["filename"].endswith(".sqlite3.sql.gz.age") and ticked["encrypted_for"]
    unticked = post(encrypt="0")
    assert unticked["filename"].endswith(".sql.gz") and unticked["encrypted_for"] is None
    assert post()["encrypted_for"]  # a form without the box: the default, encrypted


def test_a_key_without_a_label_is_offered_by_its_fingerprint(vendor, make_app):
    _, public = vendor
    client = make_app(**recipients(public, label=None)).test_client()
    page = client.get("/backups/new", headers=HTML).text
    assert f"Encrypt for {parse_recipient(public).fingerprint}" in page


def test_without_keys_nothing_is_offered_and_asking_for_encryption_is_400(make_app):
    app = make_app()
    client = app.test_client()
    assert 'data-testid="encryption"' not in app.test_client().get("/backups/new").text
    answer = create(client, encrypt=True)
    assert answer.status_code == 400
    assert answer.json["error"]["code"] == "no_recipients"
    assert "BACKUP_MANAGER_RECIPIENTS" in answer.json["error"]["message"]
    plain = create(client)
    assert plain.status_code == 202 and plain.json["encrypted_for"] is None
    result = client.application.test_cli_runner().invoke(
        args=["backups", "create", "--format", "sqlite3", "--encrypt"]
    )
    assert result.exit_code == 1 and "no public key to encrypt for" in result.output


@pytest.mark.parametrize("required", [False, True])
def test_a_script_learns_who_backups_are_encrypted_for_and_the_list_marks_them(
    required, vendor, make_app
):
    _, public = vendor
    app = make_app(**recipients(public), BACKUP_MANAGER_REQUIRE_ENCRYPTION=required)
    client = app.test_client()
    fingerprint = parse_recipient(public).fingerprint
    assert client.get(f"{API}/formats").json["encryption"] == {
        "recipients": [{"label": LABEL, "fingerprint": fingerprint}],
        "required": required,
    }
    sealed = create(client).json["id"]
    plain = None if required else create(client, encrypt=False).json["id"]
    listed = client.get("/backups/", headers=HTML).text
    rows = dict(re.findall(r'data-backup-id="(\d+)"(.*?)</tr>', listed, re.S))
    assert f'data-testid="encrypted-mark">encrypted for {LABEL}</span>' in rows[str(sealed)]
    if plain is not None:
        assert "encrypted-mark" not in rows[str(plain)]


def test_without_keys_formats_say_no_encryption(make_app):
    assert make_app().test_client().get(f"{API}/formats").json["encryption"] == {
        "recipients": [],
        "required": False,
    }


@pytest.mark.parametrize(("value", "shown"), [("yes", "'yes'"), (1, "<int>"), (None, None)])
def test_encrypt_must_be_true_or_false(value, shown, vendor, make_app):
    _, public = vendor
    client = make_app(**recipients(public)).test_client()
    answer = create(client, encrypt=value)
    if value is None:  # null: the default
        assert answer.status_code == 202 and answer.json["encrypted_for"]
        return
    assert answer.status_code == 400
    assert answer.json["error"] == {
        "code": "bad_encrypt",
        "message": f"encrypt must be true or false, not {shown}.",
    }


def test_required_encryption_refuses_a_plain_copy_on_the_api_the_page_and_the_cli(vendor, make_app):
    _, public = vendor
    app = make_app(**recipients(public), BACKUP_MANAGER_REQUIRE_ENCRYPTION=True)
    client = app.test_client()
    said = f"every backup is encrypted for {LABEL}"

    answer = create(client, encrypt=False)
    assert answer.status_code == 403
    assert answer.json["error"]["code"] == "encryption_required"
    assert said in answer.json["error"]["message"]

    browser = app.test_client()
    page = browser.get("/backups/new", headers=HTML).text
    assert 'name="encrypt"' not in page  # no choice
    assert "Every backup here is encrypted for" in page
    refused = browser.post(
        "/backups/",
        data={"csrf_token": token(browser), "format": "sqlite3", "encrypt": "0"},
        follow_redirects=True,
    )
    assert said in refused.text

    result = app.test_cli_runner().invoke(
        args=["backups", "create", "--format", "sqlite3", "--no-encrypt"]
    )
    assert result.exit_code == 1 and said in result.output

    made = app.test_cli_runner().invoke(args=["backups", "create", "--format", "sqlite3"])
    assert made.exit_code == 0 and f"encrypted for {LABEL}" in made.output
    backup_id = int(re.search(r"Backup (\d+) queued", made.output).group(1))
    shown = app.test_cli_runner().invoke(args=["backups", "show", str(backup_id)])
    fingerprint = parse_recipient(public).fingerprint
    assert f"encrypted_for: {LABEL} ({fingerprint})" in shown.output
    assert create(client).json["filename"].endswith(".age")
    assert all(b["encrypted_for"] for b in client.get(f"{API}/backups").json["backups"])


# -- bad config stops the app


def start(host_env, **config):
    """Build the test host app with ``config`` (``host_env``: its environment is set)."""
    return create_app(config)


SECRET = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (["age1notakey"], "BACKUP_MANAGER_RECIPIENTS[0]: not an age or SSH public key"),
        (
            [{"label": "Acme support", "key": "ssh-ed25519 AAAAnope"}],
            "BACKUP_MANAGER_RECIPIENTS[0] ('Acme support'): not an age or SSH public key",
        ),
        ([{"label": "x", "key": "age1", "secret": 1}], "BACKUP_MANAGER_RECIPIENTS[0] must be"),
        ([{"label": "x"}], "BACKUP_MANAGER_RECIPIENTS[0] must be"),
        ([7], "BACKUP_MANAGER_RECIPIENTS[0] must be a string"),
        (7, "BACKUP_MANAGER_RECIPIENTS must be a list"),
        ([""], "BACKUP_MANAGER_RECIPIENTS[0]: an empty recipient"),
    ],
)
def test_a_bad_recipient_stops_start_up_naming_it(value, says, host_env):
    with pytest.raises(ValueError) as e:
        start(host_env, BACKUP_MANAGER_RECIPIENTS=value)
    assert says in str(e.value)


def test_the_second_bad_key_is_named_by_index_and_label_and_a_secret_is_never_echoed(
    vendor, host_env
):
    _, public = vendor
    with pytest.raises(ValueError) as e:
        start(host_env, BACKUP_MANAGER_RECIPIENTS=[public, {"label": "Ops", "key": SECRET}])
    assert str(e.value).startswith("BACKUP_MANAGER_RECIPIENTS[1] ('Ops'): ")
    assert "secret key" in str(e.value) and "QQQQ" not in str(e.value)
    with pytest.raises(ValueError, match=r"\[1\] \(.again.\) is the same key as .*\[0\]$"):
        start(host_env, BACKUP_MANAGER_RECIPIENTS=[public, {"label": "again", "key": public}])


def test_more_keys_than_a_restore_reads_stop_start_up(host_env):
    """A restore refuses an age header of more than 64 stanzas (a forged one costs minutes):
    an app configured with more keys than that would make files nobody can restore."""
    from flask_backup_manager.engine.encryption import keygen

    keys = [keygen()[1] for _ in range(65)]
    with pytest.raises(ValueError, match=r"^BACKUP_MANAGER_RECIPIENTS names 65 keys: at most 64$"):
        start(host_env, BACKUP_MANAGER_RECIPIENTS=keys)
    assert start(host_env, BACKUP_MANAGER_RECIPIENTS=keys[:64])


def test_required_encryption_without_keys_stops_start_up(host_env):
    with pytest.raises(ValueError, match="REQUIRE_ENCRYPTION is on, but BACKUP_MANAGER_RECIPIENTS"):
        start(host_env, BACKUP_MANAGER_REQUIRE_ENCRYPTION=True)
    with pytest.raises(ValueError, match="REQUIRE_ENCRYPTION must be True or False"):
        start(host_env, BACKUP_MANAGER_REQUIRE_ENCRYPTION="yes")


def test_keys_without_pyrage_stop_start_up_saying_which_extra(vendor, host_env, monkeypatch):
    _, public = vendor
    # the one fault not made for real: pyrage uninstalled (None in sys.modules: ImportError)
    monkeypatch.setitem(sys.modules, "pyrage", None)
    with pytest.raises(ValueError) as e:
        start(host_env, **recipients(public))
    assert "pip install 'flask-backup-manager[encryption]'" in str(e.value)
    assert str(e.value).startswith("BACKUP_MANAGER_RECIPIENTS is set")
    start(host_env)  # no keys: no pyrage needed


# -- the config changing while a backup waits


def test_a_queued_backup_is_encrypted_for_the_keys_of_when_it_runs_and_says_so(
    make_app, run_worker, host_env, tmp_path
):
    old_key, old = keypair(tmp_path / "old.txt")
    new_key, new = keypair(tmp_path / "new.txt")
    client = make_app(**recipients(old, "old key")).test_client()
    backup_id = create(client, "sqlite3_db").json["id"]
    assert backup(client, backup_id)["encrypted_for"][0]["label"] == "old key"
    host_env["HOSTAPP_CONFIG"] = json.dumps(recipients(new, "new key"))  # the worker's config
    run_worker()
    b = backup(client, backup_id)
    assert b["status"] == "succeeded"
    assert b["encrypted_for"] == [
        {"label": "new key", "fingerprint": parse_recipient(new).fingerprint}
    ]
    assert any(
        "the public keys changed since this backup was queued (it was for old key): "
        "encrypting for the current ones, new key" in m
        for m in logs(client, backup_id)
    )
    path = stored(client.application, b)
    out = decrypt(path, new_key, tmp_path / "copy.db")
    assert len(sqlite_rows(out)["customers"]) == 50
    refused = subprocess.run(
        ["age", "-d", "-i", str(old_key), str(path)], capture_output=True, check=False
    )
    assert refused.returncode != 0 and refused.stdout == b""


def test_a_queued_encrypted_backup_fails_when_no_key_is_left_and_a_plain_one_when_required(
    vendor, make_app, run_worker, host_env
):
    _, public = vendor
    app = make_app(**recipients(public))
    client = app.test_client()
    sealed_id = create(client).json["id"]
    host_env["HOSTAPP_CONFIG"] = json.dumps({})
    run_worker()
    sealed = backup(client, sealed_id)
    assert sealed["status"] == "failed"
    assert "BACKUP_MANAGER_RECIPIENTS names no public key any more" in sealed["error"]
    plain_id = create(client, encrypt=False).json["id"]
    host_env["HOSTAPP_CONFIG"] = json.dumps(
        {**recipients(public), "BACKUP_MANAGER_REQUIRE_ENCRYPTION": True}
    )
    run_worker()
    plain = backup(client, plain_id)
    assert plain["status"] == "failed"
    assert "BACKUP_MANAGER_REQUIRE_ENCRYPTION was turned on after" in plain["error"]
    storage = Path(app.config["BACKUP_MANAGER_STORAGE_DIR"])
    assert not storage.exists() or list(storage.iterdir()) == []


# -- a worker killed while it encrypts


def add_big_table(db: Path, rows: int = 150_000) -> None:
    """Orders of random notes (a gzip file of several MB whose read-through, loaded into the
    verification's scratch database as it is read, encrypts for seconds), one the canary."""
    con = sqlite3.connect(db)
    con.execute("INSERT INTO orders (customer_id, total, note) VALUES (1, 1, ?)", (CANARY,))
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO orders (customer_id, total, note) SELECT 1, 2, hex(randomblob(100))"
        " FROM n",
        (rows,),
    )
    con.commit()
    con.close()


def test_a_worker_killed_while_it_encrypts_leaves_no_plaintext_and_the_backup_fails(
    vendor, make_app, worker, host_env, tmp_path
):
    _, public = vendor
    tmp = tmp_path / "worker-tmp"
    tmp.mkdir()
    host_env["TMPDIR"] = str(tmp)  # the worker's temp files: looked at after
    app = make_app(
        **recipients(public), BACKUP_MANAGER_HEARTBEAT=1, BACKUP_MANAGER_WORKER_LOST_AFTER=15
    )
    add_big_table(tmp_path / "host.db")
    client = app.test_client()
    backup_id = create(client, "sqlite3").json["id"]
    storage = Path(app.config["BACKUP_MANAGER_STORAGE_DIR"])
    proc = worker(["setsid"])  # a process group of its own, not the test's
    deadline = time.monotonic() + 240
    sealed = None
    while sealed is None:  # the ciphertext temp file growing: the encryption is under way
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the encryption never started"
        sealed = next(
            (p for p in storage.glob(".*.age.part") if p.exists() and p.stat().st_size > 0), None
        )
        time.sleep(0.005)
    tree = process_tree(proc.pid)  # the worker and its work horse, in a session of its own
    groups = {os.getpgid(pid) for pid in tree}
    assert os.getpgrp() not in groups
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    proc.wait()
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in tree),
        what="the worker's processes to die",
    )
    assert backup(client, backup_id)["status"] == "running"  # nobody knows yet
    left = [p for d in (storage, tmp) for p in d.rglob("*") if p.is_file()]
    assert sealed in left  # killed with its ciphertext half written
    for path in left:
        assert holds_plaintext(path) is None, (path, holds_plaintext(path))

    # the dead worker is found out by its missing heartbeat (any request reaps)
    failed = wait_for(
        lambda: (b := backup(client, backup_id))["status"] == "failed" and b, timeout=60
    )
    assert failed["error"] == "worker lost: no heartbeat for 15 s"
    assert [p for p in storage.iterdir()] == []  # its partial files removed
    for message in logs(client, backup_id):
        assert CANARY not in message and "SQLite format 3" not in message
    assert holds_plaintext(tmp_path / "host.db") == "the canary"  # the scan does see it


def test_a_retried_encrypted_backup_is_encrypted_again(vendor, make_app, host_env):
    _, public = vendor
    app = make_app(**recipients(public))
    api, browser = app.test_client(), app.test_client()
    sealed_id = create(api).json["id"]
    assert api.post(f"{API}/backups/{sealed_id}/cancel").status_code == 200
    again = browser.post(f"/backups/{sealed_id}/retry", data={"csrf_token": token(browser)})
    assert again.status_code == 303
    retried = backup(api, int(again.headers["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert retried["id"] != sealed_id and retried["filename"].endswith(".age")
    assert retried["encrypted_for"] == backup(api, sealed_id)["encrypted_for"]
    # with the keys gone, no plaintext copy takes its place: the retry is refused
    keyless = start(host_env, BACKUP_MANAGER_RECIPIENTS=[])  # the same database, no key
    bare = keyless.test_client()
    refused = bare.post(
        f"/backups/{sealed_id}/retry", data={"csrf_token": token(bare)}, follow_redirects=True
    )
    with keyless.app_context():
        db.engine.dispose()
    assert "no public key to encrypt for" in refused.text
    assert len(app.test_client().get(f"{API}/backups").json["backups"]) == 2
