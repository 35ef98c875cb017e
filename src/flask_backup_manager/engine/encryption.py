"""Encryption of a backup to the vendor's public keys, in the age format (https://age-encryption.org),
through pyrage (the Rust ``age`` crate's bindings): no cryptography of our own.

A backup is encrypted as it is read through for its check (:func:`.export.check`): each
plaintext chunk the check reads is handed to a :class:`Sealer`, which encrypts it into the
file that is renamed into place. A restore reads an encrypted file through
:func:`decrypted_chunks`, a stream of the plaintext that never touches the disk.

pyrage streams through file-like objects (``encrypt_io(reader, writer)``), pulling from the
reader itself; the engine pushes chunks instead. Each side therefore runs pyrage in a thread
of its own, joined to the engine's loop by a queue of a few chunks of 1 MiB: memory stays flat
whatever the file's size.

Importing this module does not import pyrage (the ``encryption`` extra): a caller without
recipients never needs it, and one with them without the extra gets a one-line ExportError.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .base import shown
from .model import ExportError

#: the first bytes of an age file (binary), and of one in ASCII armor
MAGIC = b"age-encryption.org/v1\n"
ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"
#: what the manifest's ``encryption.format`` says
FORMAT = "age"
#: the plaintext handed between the engine and pyrage's thread: chunks of about this size...
CHUNK = 1 << 20
#: ... at most this many waiting
DEPTH = 4

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_SSH_TYPES = ("ssh-ed25519", "ssh-rsa")


def pyrage() -> Any:
    """The pyrage module, or ExportError saying which extra brings it."""
    try:
        import pyrage as module
    except ImportError:
        raise ExportError(
            "encryption needs pyrage: pip install 'flask-backup-manager[encryption]'"
        ) from None
    return module


@dataclass(frozen=True)
class Recipient:
    """A public key a backup is encrypted to. ``key``: the key as age reads it (``age1...``, or
    ``ssh-ed25519 AAAA...`` without its comment); ``label``: who it is, for people ("Acme
    support"); ``fingerprint``: ``SHA256:`` and the unpadded base64 of the SHA-256 of the raw
    public key, which is OpenSSH's own fingerprint for an SSH key (``ssh-keygen -lf``) and,
    for an age key, the same digest of its 32-byte X25519 key (the bech32 data of ``age1...``):
    age itself has no fingerprint but the key, so both kinds read alike."""

    key: str
    label: str | None
    fingerprint: str

    def native(self) -> Any:
        """The key as pyrage's recipient object."""
        age = pyrage()
        if self.key.startswith("age1"):
            return age.x25519.Recipient.from_str(self.key)
        return age.ssh.Recipient.from_str(self.key)


def parse_recipient(text: str, label: str | None = None) -> Recipient:
    """The recipient ``text`` names: an age X25519 key (``age1...``) or an SSH public key age
    accepts (``ssh-ed25519 AAAA... [comment]``, ``ssh-rsa ...``); an SSH key's comment is its
    label when ``label`` is None. Anything else raises ValueError, one line naming the key
    (shortened; never a secret key's text)."""
    key = " ".join(str(text).split())
    if not key:
        raise ValueError(
            "an empty recipient: expected an age public key (age1...) or an SSH public key"
            " (ssh-ed25519 AAAA...)"
        )
    # anywhere in the text, not only at its start: a key pasted in quotes or after a name
    # ("key=AGE-SECRET-KEY-1...") is still a secret, and no part of it may be echoed
    upper = key.upper()
    if "AGE-SECRET-KEY-" in upper or "PRIVATE KEY" in upper:
        what = "AGE-SECRET-KEY-..." if "AGE-SECRET-KEY-" in upper else "an SSH private key"
        raise ValueError(
            f"{what} is a secret key, not a public key: give the public key (the age1..."
            " line age-keygen prints, or the .pub file of an SSH key); the secret key stays"
            " with the vendor"
        )
    bad = (
        f"not an age or SSH public key: {shown(key, 40)} (give the whole age1 line keygen"
        " prints, or an SSH .pub line)"
    )
    age = pyrage()
    if key.lower().startswith("age1") and " " not in key:
        key = key.lower()
        try:
            age.x25519.Recipient.from_str(key)
        except age.RecipientError:
            raise ValueError(bad) from None
        return Recipient(key, label, _fingerprint(_bech32_data(key)))
    parts = key.split(" ", 2)
    if len(parts) < 2 or parts[0] not in _SSH_TYPES:
        raise ValueError(bad)
    key = f"{parts[0]} {parts[1]}"
    try:
        age.ssh.Recipient.from_str(key)
        blob = base64.b64decode(parts[1], validate=True)
    except (age.RecipientError, ValueError):
        raise ValueError(bad) from None
    comment = parts[2] if len(parts) == 3 else None
    return Recipient(key, label if label is not None else comment, _fingerprint(blob))


def read_recipients(text: str) -> list[Recipient]:
    """The recipients of a file of them, one a line, as ``age -R`` reads it (blank lines and
    ``#`` comments ignored); ValueError naming the line of a bad one."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                found.append(parse_recipient(line))
            except ValueError as e:
                raise ValueError(f"line {number}: {e}") from None
    if not found:
        raise ValueError("no recipient in the file")
    return found


def _fingerprint(raw: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def _bech32_data(key: str) -> bytes:
    """The bytes an ``age1...`` key encodes (its checksum pyrage checked already)."""
    bits = acc = 0
    out = bytearray()
    for ch in key[key.rindex("1") + 1 : -6]:
        acc = (acc << 5) | _BECH32.index(ch)
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def keygen() -> tuple[str, str]:
    """A new age key pair: the identity (``AGE-SECRET-KEY-1...``, the vendor's secret) and
    its recipient (``age1...``, what the app is configured with)."""
    identity = pyrage().x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def describe(recipients: Sequence[Recipient]) -> dict[str, Any] | None:
    """The manifest's ``encryption``: who can read the copy (labels and fingerprints, never
    more of a key); None for a copy that is not encrypted."""
    if not recipients:
        return None
    return {
        "format": FORMAT,
        "recipients": [{"label": r.label, "fingerprint": r.fingerprint} for r in recipients],
    }


def is_encrypted(head: bytes) -> bool:
    """Whether the first bytes of a file are an age file's (binary or armored)."""
    return head.startswith(MAGIC) or head.lstrip().startswith(ARMOR)


def read_identities(path: str | os.PathLike[str]) -> list[Any]:
    """The identities in the key file ``path``: an age identity file (``AGE-SECRET-KEY-1...``
    lines, ``#`` comments, as age-keygen writes it) or an unencrypted SSH private key
    (OpenSSH's format). ExportError, one line, for anything else (never echoing the file)."""
    age = pyrage()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ExportError(f"cannot read the identity file: {e.strerror}: {path}") from None
    if b"-----BEGIN" in data:
        try:
            return [age.ssh.Identity.from_buffer(data)]
        except age.IdentityError as e:
            raise ExportError(f"the SSH key in {path} cannot be used: {e}") from None
    identities = []
    for line in data.decode(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                identities.append(age.x25519.Identity.from_str(line))
            except age.IdentityError:
                raise ExportError(
                    f"{path} is not an age identity file (AGE-SECRET-KEY-1... lines) nor an"
                    " SSH private key"
                ) from None
    if not identities:
        raise ExportError(f"no identity in {path}")
    return identities


class _Stop(Exception):
    """The engine gave up: the thread running pyrage ends."""


class Sealer:
    """The age encryption of the chunks given to :meth:`write`, written to ``path`` (an
    existing private temp file) by pyrage in a thread; the ciphertext's size and sha256 are
    counted as it is written. :meth:`close` ends the stream and fsyncs the file; on an error
    use :meth:`abort` (the caller removes the file). A context manager doing either.

    pyrage holds the GIL while it encrypts (it never lets go of it): its thread also hashes
    and writes what it encrypted (a second thread for that, tried, waits for the GIL so often
    that it is slower), and a third one flushes the file to disk every few MiB as it grows,
    so that the last fsync has little left to do."""

    #: flush the file to disk, in the background, after each this many bytes written
    SYNC_EVERY = 16 << 20

    def __init__(self, path: Path, recipients: Sequence[Recipient]) -> None:
        if not recipients:
            raise ExportError("encryption needs at least one recipient")
        natives = [r.native() for r in recipients]
        self.path = path
        self.size = 0
        self.sha256 = ""
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(DEPTH)
        self._pending = memoryview(b"")
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._out = open(path, "r+b")  # noqa: SIM115  # closed in close() or abort()
        self._out.truncate()
        self._unsynced = 0
        self._sync = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(natives,), daemon=True)
        self._flusher = threading.Thread(target=self._flush, daemon=True)
        self._thread.start()
        self._flusher.start()

    # -- the engine's side

    def write(self, chunk: bytes) -> None:
        self._put(chunk)

    def close(self) -> None:
        try:
            self._put(None)  # the end of the plaintext
        except BaseException:
            self.abort()
            raise
        self._end()
        if self._error is not None:
            self._out.close()
            raise ExportError(f"encryption failed: {_said(self._error)}")
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        self.sha256 = self._hash.hexdigest()

    def abort(self) -> None:
        self._stop.set()
        self._end()
        self._out.close()

    def _end(self) -> None:
        self._thread.join()
        self._closing.set()
        self._sync.set()
        self._flusher.join()

    def __enter__(self) -> Sealer:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _put(self, item: bytes | None) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise ExportError(f"encryption failed: {_said(self._error)}")

    # -- pyrage's side (the thread): a reader of the queue, a writer of the file

    def _run(self, natives: list[Any]) -> None:
        try:
            pyrage().encrypt_io(self, _Hashed(self), natives)
        except BaseException as e:
            self._error = e

    def read(self, n: int = -1) -> bytes:
        while not self._pending:
            if self._stop.is_set():
                raise _Stop()
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return b""
            self._pending = memoryview(item)
        n = len(self._pending) if n is None or n < 0 else n
        out, self._pending = self._pending[:n], self._pending[n:]
        return bytes(out)

    # -- the flushing thread

    def _flush(self) -> None:
        while True:
            self._sync.wait()
            self._sync.clear()
            if self._closing.is_set():
                return
            try:
                getattr(os, "fdatasync", os.fsync)(self._out.fileno())
            except OSError:
                return  # close()'s fsync says it


class _Hashed:
    """The file pyrage writes the ciphertext to, hashed and counted as it is written."""

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    def write(self, data: bytes) -> int:
        s = self.sealer
        s._hash.update(data)
        s.size += len(data)
        written = s._out.write(data)
        s._unsynced += len(data)
        if s._unsynced >= s.SYNC_EVERY:
            s._out.flush()
            s._sync.set()
            s._unsynced = 0
        return written

    def flush(self) -> None:
        self.sealer._out.flush()


def decrypted_chunks(f: BinaryIO, identities: Sequence[Any]) -> Iterator[bytes]:
    """The plaintext of the age file open as ``f``, in chunks of about 1 MiB, decrypted by
    pyrage in a thread. Every chunk was authenticated before it comes out; a cut or changed
    file raises ExportError when it is reached (a consumer that commits only at the end keeps
    nothing of it), a wrong identity at once. Stopping the iteration early stops the thread.
    A header past :data:`HEADER_MAX` bytes or :data:`STANZAS_MAX` stanzas is refused first
    (:func:`_check_header`)."""
    _check_header(f)
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(DEPTH)
    stop = threading.Event()

    class Writer:
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.size = 0

        def write(self, data: bytes) -> int:
            self.parts.append(bytes(data))
            self.size += len(data)
            if self.size >= CHUNK:
                self.flush()
            return len(data)

        def flush(self) -> None:
            if self.parts:
                put(b"".join(self.parts))
                self.parts, self.size = [], 0

    def put(item: bytes | BaseException | None) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop()

    def run() -> None:
        writer = Writer()
        try:
            pyrage().decrypt_io(f, writer, list(identities))
            writer.flush()
            put(None)
        except _Stop:
            pass
        except BaseException as e:
            try:
                put(e)
            except _Stop:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise ExportError(_decrypt_said(item)) from None
            yield item
    finally:
        stop.set()
        thread.join()


#: the longest age header, and the most stanzas (one per recipient), a file may have: the age
#: crate parses a header again from its start each time it reads more of it, so a file of a
#: few MB of stanzas (made by anyone, no key needed) took minutes to hours of CPU before it
#: said "no matching key". A backup's header has one stanza per configured recipient, each
#: under 1 KiB (an ssh-rsa key's of 4096 bits the longest).
HEADER_MAX = 64 << 10
STANZAS_MAX = 64


def _check_header(f: BinaryIO) -> None:
    """Refuse an age file (open as ``f``, left where it was) whose header, decoded from ASCII
    armor if it is armored, does not end within :data:`HEADER_MAX` bytes or holds more than
    :data:`STANZAS_MAX` stanzas. What is not age at all is left to pyrage to say."""
    start = f.tell()
    head = f.read(HEADER_MAX * 2)
    f.seek(start)
    if head.lstrip().startswith(ARMOR):
        body = b"".join(head.lstrip().split(b"\n", 1)[-1].split())
        body = body.split(b"-----", 1)[0]
        try:
            head = base64.b64decode(body[: len(body) // 4 * 4])
        except ValueError:
            return
    if not head.startswith(MAGIC):
        return
    end = head.find(b"\n--- ", 0, HEADER_MAX)
    if end < 0 and len(head) > HEADER_MAX:
        raise ExportError(
            f"cannot decrypt the file: its age header is longer than {HEADER_MAX >> 10} KiB,"
            " which no backup's is: refusing it"
        )
    if head.count(b"\n-> ", 0, end if end >= 0 else len(head)) > STANZAS_MAX:
        raise ExportError(
            f"cannot decrypt the file: its age header names more than {STANZAS_MAX}"
            " recipients, which no backup's does: refusing it"
        )


def _decrypt_said(e: BaseException) -> str:
    text = _said(e)
    if "No matching keys" in text:
        return "cannot decrypt the file: it is not encrypted to this identity (no matching key)"
    if isinstance(e, ExportError):
        return str(e)
    return (
        "cannot decrypt the file: it is damaged, cut short or was changed after it was"
        f" encrypted ({text})"
    )


def _said(e: BaseException | None) -> str:
    if e is None:
        return "the encrypting thread stopped"
    return " ".join(str(e).split())[:300] or type(e).__name__


__all__ = [
    "Recipient",
    "Sealer",
    "decrypted_chunks",
    "describe",
    "is_encrypted",
    "keygen",
    "parse_recipient",
    "read_identities",
    "read_recipients",
]
