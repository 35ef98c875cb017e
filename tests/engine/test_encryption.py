"""Backups encrypted to the vendor's keys (issue 14): the age format, read and written by
Debian's ``age`` command as well as by us; no plaintext left behind by a killed export."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from flask_backup_manager.engine import ExportCancelled, export
from flask_backup_manager.engine.encryption import parse_recipient
from flask_backup_manager.engine.manifest import HEAD_TITLE
from flask_backup_manager.engine.restore import restore

from .test_restore import _rows, pg_source  # noqa: F401  # pg_source: the fixture, reused

AGE = "age"
CANARY = "CANARY-b7e1c0de-plaintext"


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask_backup_manager", *args],
        capture_output=True,
        text=True,
        check=False,
        **kw,
    )


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.run(cmd, capture_output=True, check=False, **kw)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


@pytest.fixture
def age_key(tmp_path) -> tuple[Path, str]:
    """A key pair made by age-keygen: the identity file, and the public key."""
    key = tmp_path / "key.txt"
    out = sh(["age-keygen", "-o", str(key)])
    public = out.stderr.decode().split("Public key: ")[1].strip()
    return key, public


@pytest.fixture
def ssh_key(tmp_path) -> tuple[Path, str]:
    """An ed25519 key made by ssh-keygen: the private key file, and the public key's line."""
    key = tmp_path / "id_ed25519"
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vendor@acme", "-f", str(key)])
    return key, (tmp_path / "id_ed25519.pub").read_text().strip()


def make_sqlite(path: Path, rows: int = 50, filler: int = 20) -> str:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB)")
    con.execute("INSERT INTO notes (body, data) VALUES (?, ?)", (CANARY, CANARY.encode()))
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO notes (body, data) SELECT 'note ' || hex(randomblob(?)), randomblob(8)"
        " FROM n",
        (rows, filler),
    )
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def decrypt(path: Path, identity: Path) -> bytes:
    """The file as ``age -d -i IDENTITY`` decrypts it."""
    return sh([AGE, "-d", "-i", str(identity), str(path)]).stdout


def text_of(sql: bytes) -> list[bytes]:
    """An SQL file's lines but its comments (the manifest, which says when and whether it was
    encrypted) and a postgres file's \\restrict keys (new for every file)."""
    return [
        line
        for line in sql.splitlines()
        if not line.startswith((b"--", b"\\restrict ", b"\\unrestrict "))
    ]


def dump_of(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


# -- recipients


def test_parse_recipient_reads_age_and_ssh_keys_with_their_fingerprints(age_key, ssh_key, tmp_path):
    _, public = age_key
    r = parse_recipient(public, "Acme support")
    assert (r.key, r.label) == (public, "Acme support")
    assert r.fingerprint.startswith("SHA256:") and len(r.fingerprint) == 7 + 43
    assert parse_recipient(f"  {public}\n").fingerprint == r.fingerprint  # stable
    assert parse_recipient(public.upper()).key == public  # bech32 is case-insensitive

    key, line = ssh_key
    s = parse_recipient(line)
    assert s.key == " ".join(line.split()[:2]) and s.label == "vendor@acme"
    openssh = sh(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"]).stdout.decode()
    assert s.fingerprint == openssh.split()[1]  # OpenSSH's own
    assert parse_recipient(line, "Acme").label == "Acme"

    sh(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "rsa")])
    rsa = parse_recipient((tmp_path / "rsa.pub").read_text())
    openssh = sh(["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "rsa.pub")])
    assert rsa.fingerprint == openssh.stdout.decode().split()[1]
    assert len({r.fingerprint, s.fingerprint, rsa.fingerprint}) == 3


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "an empty recipient"),
        ("   \n", "an empty recipient"),
        ("hello world", "not an age or SSH public key: hello world"),
        ("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "not an age or SSH public key: age1"),
        ("ssh-ed25519 AAAAnotbase64!!", "not an age or SSH public key: ssh-ed25519"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "not an age or SSH public key: ssh-dss"),
        ("x" * 500, "not an age or SSH public key: " + "x" * 40 + "..."),
    ],
)
def test_parse_recipient_refuses_what_is_not_a_public_key(text, says):
    with pytest.raises(ValueError) as e:
        parse_recipient(text)
    assert str(e.value).startswith(says)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_a_secret_key_pasted_by_mistake_is_called_one_and_never_echoed(age_key, ssh_key):
    key, _ = age_key
    secret = next(line for line in key.read_text().splitlines() if line.startswith("AGE-"))
    for text in (secret, ssh_key[0].read_text()):
        with pytest.raises(ValueError) as e:
            parse_recipient(text)
        message = str(e.value)
        assert "is a secret key, not a public key" in message, message
        assert secret[20:] not in message and "\n" not in message


# -- interoperability with the age command


def test_our_file_decrypts_with_age_to_what_a_plain_export_holds(age_key, tmp_path):
    key, public = age_key
    source = make_sqlite(tmp_path / "src.db")
    for fmt in ("sqlite3", "postgres"):
        plain = export(source, fmt, tmp_path / f"plain.{fmt}.gz")
        sealed = export(
            source, fmt, tmp_path / f"enc.{fmt}.gz.age", recipients=[parse_recipient(public)]
        )
        ours = gzip.decompress(decrypt(sealed.path, key))
        assert text_of(ours) == text_of(gzip.decompress(plain.path.read_bytes()))
        assert CANARY.encode() in ours and CANARY.encode() not in sealed.path.read_bytes()
    plain = export(source, "sqlite3_db", tmp_path / "plain.sqlite3")
    sealed = export(
        source, "sqlite3_db", tmp_path / "enc.sqlite3.age", recipients=[parse_recipient(public)]
    )
    (tmp_path / "dec.sqlite3").write_bytes(decrypt(sealed.path, key))
    assert dump_of(tmp_path / "dec.sqlite3") == dump_of(plain.path)


def test_a_file_age_encrypted_restores_through_our_restore(age_key, tmp_path):
    key, public = age_key
    source = make_sqlite(tmp_path / "src.db")
    plain = export(source, "sqlite3", tmp_path / "plain.sqlite3.sql.gz")
    sealed = tmp_path / "theirs.sqlite3.sql.gz.age"
    sh([AGE, "-r", public, "-o", str(sealed), str(plain.path)])
    new = tmp_path / "new.db"
    done = run("restore", str(sealed), "--identity", str(key), "--target", f"sqlite:///{new}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 tables, 51 rows"
    with sqlite3.connect(new) as a, sqlite3.connect(tmp_path / "src.db") as b:
        q = "SELECT * FROM notes ORDER BY id"
        assert a.execute(q).fetchall() == b.execute(q).fetchall()
    armored = tmp_path / "armored.age"  # age -a: the same, in ASCII armor
    sh([AGE, "-a", "-r", public, "-o", str(armored), str(plain.path)])
    assert restore(armored, f"sqlite:///{tmp_path / 'new2.db'}", identity=key).rows == 51


def test_an_ssh_ed25519_recipient_decrypts_with_age_and_with_our_restore(ssh_key, tmp_path):
    key, line = ssh_key
    source = make_sqlite(tmp_path / "src.db")
    done = run(
        "export",
        "--source",
        source,
        "--format",
        "sqlite3",
        "--output",
        str(tmp_path / "x.sqlite3.sql.gz"),
        "--encrypt-to",
        line,
    )
    assert done.returncode == 0, done.stderr
    sealed = tmp_path / "x.sqlite3.sql.gz.age"  # the command adds .age
    assert done.stdout.startswith(f"{sealed}: 1 tables, 51 rows")
    assert CANARY.encode() in gzip.decompress(decrypt(sealed, key))
    new = tmp_path / "new.db"
    assert restore(sealed, f"sqlite:///{new}", identity=key).rows == 51


# -- each format: encrypted, decrypted, restored as the vendor would


def test_sqlite3_encrypted_restores_with_the_sqlite3_shell_and_our_restore(age_key, tmp_path):
    key, public = age_key
    source = make_sqlite(tmp_path / "src.db")
    sealed = export(
        source, "sqlite3", tmp_path / "b.sqlite3.sql.gz.age", recipients=[parse_recipient(public)]
    )
    assert sealed.verification.ok and sealed.verification.loaded
    shell = tmp_path / "shell.db"
    sh(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"age -d -i {key} {sealed.path} | gunzip | sqlite3 -safe -bail {shell}",
        ]
    )
    ours = tmp_path / "ours.db"
    assert restore(sealed.path, f"sqlite:///{ours}", identity=key).rows == 51
    assert dump_of(shell) == dump_of(ours)
    assert sqlite3.connect(ours).execute("SELECT body FROM notes WHERE id = 1").fetchone() == (
        CANARY,
    )


def test_sqlite3_db_encrypted_opens_once_decrypted_and_restores(age_key, tmp_path):
    key, public = age_key
    source = make_sqlite(tmp_path / "src.db")
    sealed = export(
        source, "sqlite3_db", tmp_path / "b.sqlite3.age", recipients=[parse_recipient(public)]
    )
    assert sealed.verification.summary() == "verified: 1 table, 51 rows match"
    opened = tmp_path / "opened.sqlite3"
    opened.write_bytes(decrypt(sealed.path, key))
    shell = subprocess.run(
        ["sqlite3", "-safe", str(opened), "PRAGMA integrity_check; SELECT count(*) FROM notes;"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split() == ["ok", "51"]
    ours = tmp_path / "ours.sqlite3"
    done = run("restore", str(sealed.path), "--identity", str(key), "--target", f"sqlite:///{ours}")
    assert (done.returncode, done.stdout.strip()) == (0, "1 tables, 51 rows"), done.stderr
    assert ours.read_bytes() == opened.read_bytes()


def test_postgres_encrypted_restores_with_psql_and_our_restore(
    pg_source,  # noqa: F811
    owner_db,
    make_pg_db,
    verifier,
    psql,
    age_key,
    tmp_path,
):
    key, public = age_key
    url, _ = verifier
    sealed = export(
        pg_source,
        "postgres",
        tmp_path / "b.postgres.sql.gz.age",
        recipients=[parse_recipient(public)],
        verify_postgres_url=url,  # restored on the server after the read-through
    )
    assert sealed.verification.how == "restored into a scratch PostgreSQL database"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.postgres.sql.gz.age", "key.txt"]
    # psql, as the file's header says, as an ordinary owner of the database
    sh(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"age -d -i {key} {sealed.path} | gunzip | {psql} -X -q -v ON_ERROR_STOP=1"
            f" --single-transaction -d '{owner_db}'",
        ]
    )
    assert _rows(owner_db) == _rows(pg_source)
    second = make_pg_db()  # and our restore (its role is the test server's superuser)
    done = run(
        "restore",
        str(sealed.path),
        "--identity",
        str(key),
        "--target",
        second,
        "--as-superuser",
    )
    assert done.returncode == 0, done.stderr
    assert _rows(second) == _rows(pg_source)


# -- what the manifest and the result say


def test_manifest_says_who_can_read_it_and_sha256_is_of_the_file_stored(age_key, ssh_key, tmp_path):
    key, public = age_key
    acme, ops = parse_recipient(public, "Acme support"), parse_recipient(ssh_key[1])
    source = make_sqlite(tmp_path / "src.db")
    result = export(source, "sqlite3", tmp_path / "b.sql.gz.age", recipients=[acme, ops])
    stored = result.path.read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert result.sha256 == hashlib.sha256(stored).hexdigest()
    assert result.size == len(stored)
    assert result.manifest["file"] == {
        "name": "b.sql.gz.age",
        "size": len(stored),
        "sha256": result.sha256,
    }
    block = {
        "format": "age",
        "recipients": [
            {"label": "Acme support", "fingerprint": acme.fingerprint},
            {"label": "vendor@acme", "fingerprint": ops.fingerprint},
        ],
    }
    assert result.manifest["encryption"] == block
    assert result.recipients == (acme, ops)
    # the head comment block inside says it too (plaintext, once decrypted)
    text = gzip.decompress(decrypt(result.path, key)).decode()
    head = text.split(f"-- {HEAD_TITLE}\n")[1].splitlines()
    lines = [line[4:] for line in itertools.takewhile(lambda x: x.startswith("--   "), head)]
    assert json.loads("\n".join(lines))["encryption"] == block
    assert export(source, "sqlite3", tmp_path / "p.sql.gz").manifest["encryption"] is None


# -- a wrong key, a damaged file


@pytest.fixture
def sealed_pg(pg_source, age_key, tmp_path):  # noqa: F811
    key, public = age_key
    return export(
        pg_source, "postgres", tmp_path / "b.sql.gz.age", recipients=[parse_recipient(public)]
    ).path


def _public_tables(url: str) -> int:
    with psycopg.connect(url) as con:
        return con.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ).fetchone()[0]


def test_a_wrong_identity_is_one_line_and_leaves_nothing(sealed_pg, owner_db, tmp_path):
    other = tmp_path / "other.txt"
    sh(["age-keygen", "-o", str(other)])
    done = run("restore", str(sealed_pg), "--identity", str(other), "--target", owner_db)
    assert done.returncode == 1
    assert done.stderr == (
        "error: cannot decrypt the file: it is not encrypted to this identity (no matching key)\n"
    )
    assert _public_tables(owner_db) == 0
    done = run("restore", str(sealed_pg), "--target", owner_db)  # no identity at all
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "the file is encrypted (age): give the key" in done.stderr
    done = run("restore", str(sealed_pg), "--identity", str(sealed_pg), "--target", owner_db)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "is not an age identity file" in done.stderr


@pytest.mark.parametrize("damage", ["truncated", "tampered"])
def test_a_damaged_file_is_one_line_and_leaves_nothing(
    sealed_pg, owner_db, age_key, tmp_path, damage
):
    data = bytearray(sealed_pg.read_bytes())
    if damage == "truncated":
        data = data[:-100]
    else:
        data[len(data) // 2] ^= 0x01
    bad = tmp_path / f"{damage}.age"
    bad.write_bytes(bytes(data))
    done = run("restore", str(bad), "--identity", str(age_key[0]), "--target", owner_db)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot decrypt the file: it is damaged, cut short")
    assert len(done.stderr.splitlines()) == 1
    assert _public_tables(owner_db) == 0
    new = tmp_path / "new.db"  # the same into SQLite: no file at the target, no temp file
    before = sorted(tmp_path.iterdir())
    with pytest.raises(Exception, match="cannot decrypt|loads into"):
        restore(bad, f"sqlite:///{new}", identity=age_key[0])
    assert sorted(tmp_path.iterdir()) == before


# -- the command line


def test_keygen_prints_a_pair_that_age_uses_and_says_where_each_half_goes(tmp_path):
    done = run("keygen")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    public = next(line.split(": ")[1] for line in lines if line.startswith("# public key: "))
    assert "stays with the vendor" in done.stdout and "BACKUP_MANAGER_RECIPIENTS" in done.stdout
    assert lines[-1].startswith("AGE-SECRET-KEY-1")
    said = f"# fingerprint (a backup's page shows it): {parse_recipient(public).fingerprint}"
    assert said in lines
    key = tmp_path / "key.txt"
    key.write_text(done.stdout)  # as `keygen > key.txt`: an identity file age reads
    plain = tmp_path / "m.txt"
    plain.write_text("hello")
    sh([AGE, "-r", public, "-o", str(tmp_path / "m.age"), str(plain)])
    assert decrypt(tmp_path / "m.age", key) == b"hello"
    assert sh(["age-keygen", "-y", str(key)]).stdout.decode().strip() == public

    done = run("keygen", "-o", str(tmp_path / "k2.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "k2.txt").stat().st_mode & 0o777 == 0o600
    assert done.stdout.splitlines()[-1].startswith(
        "its fingerprint, which a backup's page shows: SHA256:"
    )
    again = run("keygen", "-o", str(tmp_path / "k2.txt"))
    assert again.returncode == 1 and again.stderr.startswith("error: cannot create")


def test_encrypt_to_a_file_of_recipients_and_bad_ones(age_key, ssh_key, tmp_path):
    key, public = age_key
    source = make_sqlite(tmp_path / "src.db")
    listed = tmp_path / "recipients.txt"
    listed.write_text(f"# the vendor's keys\n{public}\n\n{ssh_key[1]}\n")
    out = tmp_path / "x.sql.gz.age"
    args = ["export", "--source", source, "--format", "postgres", "--output", str(out)]
    done = run(*args, "--encrypt-to", str(listed))
    assert done.returncode == 0, done.stderr
    assert CANARY.encode() in gzip.decompress(decrypt(out, key))
    assert CANARY.encode() in gzip.decompress(decrypt(out, ssh_key[0]))
    out.unlink()
    for bad, says in [
        ("nonsense", "error: --encrypt-to: not an age or SSH public key: nonsense"),
        (str(key), f"error: --encrypt-to: {key}: line 3: AGE-SECRET-KEY-... is a secret key"),
    ]:
        done = run(*args, "--encrypt-to", bad)
        assert done.returncode == 2
        assert done.stderr.startswith(says), done.stderr
        assert len(done.stderr.splitlines()) == 1
    assert not out.exists()


# -- a process killed while it encrypts leaves no plaintext


def holds_plaintext(path: Path) -> str | None:
    """Why the file at ``path`` holds plaintext: the canary, or gzip's or SQLite's magic."""
    data = path.read_bytes()
    if CANARY.encode() in data:
        return "the canary"
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    if data.startswith(b"SQLite format 3\x00"):
        return "SQLite"
    return None


def test_an_export_killed_while_it_encrypts_leaves_no_plaintext(age_key, tmp_path):
    _, public = age_key
    # random text: a gzip file of several MB, whose read-through (loaded into the scratch
    # database of the verification as it is read) encrypts for seconds
    source = make_sqlite(tmp_path / "big.db", rows=150_000, filler=100)
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    output = out / "b.sqlite3.sql.gz.age"
    child = subprocess.Popen(
        [sys.executable, "-m", "flask_backup_manager", "export", "--source", source]
        + ["--format", "sqlite3", "--output", str(output), "--encrypt-to", public],
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        sealed = None
        while sealed is None:  # the ciphertext temp file growing: the encryption is under way
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the encryption never started"
            sealed = next(
                (p for p in out.glob(".*.age.part") if p.exists() and p.stat().st_size > 0),
                None,
            )
            time.sleep(0.005)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
    deadline = time.monotonic() + 30
    while True:  # its helpers die with it
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not output.exists()
    left = [p for d in (out, tmp) for p in d.rglob("*") if p.is_file()]
    assert sealed in left  # killed with its ciphertext half written
    for path in left:
        assert holds_plaintext(path) is None, (path, holds_plaintext(path))
    assert holds_plaintext(tmp_path / "big.db") == "the canary"  # the scan does see plaintext


def test_an_export_cancelled_while_it_encrypts_leaves_nothing(age_key, tmp_path):
    _, public = age_key
    source = make_sqlite(tmp_path / "big.db", rows=150_000, filler=100)
    out = tmp_path / "out"
    out.mkdir()
    cancel, seen = threading.Event(), []

    def watch() -> None:  # cancels once the ciphertext temp file grows
        deadline = time.monotonic() + 240
        while not cancel.is_set() and time.monotonic() < deadline:
            grown = [p for p in out.glob(".*.age.part") if p.exists() and p.stat().st_size]
            if grown:
                seen.extend(grown)
                cancel.set()
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(ExportCancelled):
            export(
                source,
                "sqlite3",
                out / "b.sql.gz.age",
                recipients=[parse_recipient(public)],
                cancel=cancel,
            )
    finally:
        cancel.set()
        watcher.join()
    assert seen, "cancelled before the encryption began"
    assert list(out.iterdir()) == []


def test_a_file_of_many_chunks_restores_and_its_cut_end_refuses_it_all(age_key, tmp_path):
    key, public = age_key
    source = make_sqlite(tmp_path / "src.db", rows=30_000, filler=100)
    sealed = export(
        source, "sqlite3", tmp_path / "b.sql.gz.age", recipients=[parse_recipient(public)]
    ).path
    assert sealed.stat().st_size > 2 << 20  # more than one chunk of ours (1 MiB), of age (64 KiB)
    assert restore(sealed, f"sqlite:///{tmp_path / 'whole.db'}", identity=key).rows == 30_001
    cut = tmp_path / "cut.age"
    cut.write_bytes(sealed.read_bytes()[:-1000])  # all but its last chunk decrypts
    before = sorted(tmp_path.iterdir())
    done = run(
        "restore", str(cut), "--identity", str(key), "--target", f"sqlite:///{tmp_path}/n.db"
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot decrypt the file: it is damaged, cut short")
    assert sorted(tmp_path.iterdir()) == before  # no n.db, no temp file
