"""Where backup files are kept: one small interface, :class:`Storage`, and its two backends, a
local directory (:class:`LocalStorage`, ``file:///abs/path``, the default) and S3-compatible
object storage (:class:`.storage_s3.S3Storage`, ``s3://bucket/prefix``). The rest of the
package does not know which one is configured.

A backup's file is known by its name (``Backup.filename``, made by the server). The worker
writes it at :meth:`Storage.export_path` (the export's own temp file, check and rename happen
there), then :meth:`Storage.put` makes it the stored one: for a local directory the file is
already in place; for an object store it is uploaded and the local file removed."""

from __future__ import annotations

import os
import re
import stat as stat_module
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

#: seconds a presigned URL lives at most (a download link's lives no longer than the link)
PRESIGNED_SECONDS = 300


class StorageError(Exception):
    """The store refused or could not be reached: the message is one line, in the store's
    (or the client library's) own words, never with credentials."""


@dataclass(frozen=True)
class Stat:
    """What the store says of a stored file."""

    size: int
    #: seconds since the epoch (a file's mtime, an object's Last-Modified)
    mtime: float
    #: a value that changes whenever the stored bytes may have (inode, mtime and ctime of a
    #: file; an object's ETag): a full check of the file is kept by it
    version: str
    #: the sha256 (hex) the store holds for it, if it keeps one (an object's metadata, checked
    #: part by part by the store when it was uploaded); None: read the file to know
    sha256: str | None = None


class Storage(Protocol):
    """The backups' files, by name."""

    #: for messages and the start-up log: ``file:///abs/path`` or ``s3://bucket/prefix``
    url: str

    def export_path(self, name: str) -> Path:
        """Where the worker writes the file ``name`` before :meth:`put`; its folder exists."""

    def put(
        self,
        path: Path,
        name: str,
        *,
        sha256: str,
        size: int,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> str | None:
        """Make the finished, checked file at ``path`` (from :meth:`export_path`) the stored
        file ``name``; the store's :attr:`Stat.version` of what it now holds (an object's
        ETag, kept with the backup: a later stat that differs means other bytes), or None
        when a stat cannot tell (a local file: its check reads it). ``path`` is gone
        afterwards, whether it succeeded or not; nothing of a failed or cancelled put stays
        visible in the store. Raises StorageError (the reason) or ExportCancelled when
        ``cancel`` is set, also from ``progress``, which hears bytes stored of ``size``."""

    def stat(self, name: str) -> Stat | None:
        """The stored file ``name``, or None when there is none (a directory, or anything
        else that is not a regular file/object, counts as none). Raises StorageError when the
        store cannot say."""

    def stat_many(self, names: Sequence[str]) -> dict[str, Stat | None]:
        """:meth:`stat` of each name, from one listing where the store has one (the list
        page's check); an object store's listing gives no ``sha256``."""

    def open(self, name: str) -> BinaryIO:
        """The stored file, for reading: ``read(n)``, ``seek``, ``tell``, ``close``.
        Raises FileNotFoundError when it is gone, StorageError when the store refuses."""

    def delete(self, name: str) -> None:
        """Remove the stored file ``name``; one already gone is no error."""

    def download_url(
        self, name: str, *, filename: str, expires: int = PRESIGNED_SECONDS
    ) -> str | None:
        """A short-lived address the client can fetch the file from directly (an object
        store's presigned URL, with ``filename`` as its attachment name), or None: the app
        sends the file itself."""

    def remove_parts(self, name: str) -> None:
        """Remove what a job that died while making ``name`` left: its partial files in
        :meth:`export_path`'s folder, and for an object store its unfinished uploads."""

    def abort_stale_uploads(self, older_than: float, app_name: str) -> list[str]:
        """Abort the store's unfinished uploads of this app's backup names
        (:func:`is_backup_name`) directly under the storage's prefix, begun more than
        ``older_than`` seconds ago by the store's clock (the reaper's: a worker killed
        mid-upload); their names."""

    def check(self) -> None:
        """Raise StorageError unless a file can be stored, read and removed now (the
        worker's start-up check and ``flask backups check-storage``)."""


class LocalStorage:
    """Files in one directory (mode 0700), written there by the export itself: a private temp
    file beside the name, fsynced and renamed into place (see the engine's atomic_output)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = directory.as_uri()

    def path(self, name: str) -> Path:
        return self.directory / os.path.basename(name)

    def export_path(self, name: str) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.path(name)

    def put(self, path, name, *, sha256, size, cancel=None, progress=None) -> None:  # noqa: ANN001
        # already in place: the export renamed it there
        if path != self.path(name):
            raise StorageError(f"{path} is not where {name} is stored")
        if progress is not None:
            progress(size, size)
        return None

    def stat(self, name: str) -> Stat | None:
        try:
            st = self.path(name).stat()
        except OSError:
            return None
        if not stat_module.S_ISREG(st.st_mode):
            return None
        version = f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        return Stat(size=st.st_size, mtime=st.st_mtime, version=version)

    def stat_many(self, names: Sequence[str]) -> dict[str, Stat | None]:
        return {name: self.stat(name) for name in names}

    def open(self, name: str) -> BinaryIO:
        path = self.path(name)
        if path.is_dir():
            raise FileNotFoundError(path)
        return open(path, "rb")  # noqa: SIM115  # the caller closes it

    def delete(self, name: str) -> None:
        try:
            self.path(name).unlink(missing_ok=True)
        except IsADirectoryError:  # not a file of ours: the pages call the file missing
            pass
        except OSError as e:
            raise StorageError(e.strerror or type(e).__name__) from None

    def download_url(
        self, name: str, *, filename: str, expires: int = PRESIGNED_SECONDS
    ) -> str | None:
        return None

    def remove_parts(self, name: str) -> None:
        remove_partial_files(self.directory, name)

    def abort_stale_uploads(self, older_than: float, app_name: str) -> list[str]:
        return []

    def check(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.directory / f".check-storage.{os.getpid()}.{time.time_ns()}.part"
            probe.write_bytes(b"ok")
            ok = probe.read_bytes() == b"ok"
            probe.unlink()
        except OSError as e:
            raise StorageError(f"{self.directory}: {e.strerror or type(e).__name__}") from None
        if not ok:
            raise StorageError(f"{self.directory}: a file written there reads back otherwise")


def remove_partial_files(directory: Path, name: str) -> None:
    """The partial files of the export of ``name`` in ``directory`` (``.<name>.*.part``, and
    the SQLite sidecars of those: VACUUM INTO journals its output)."""
    if name and directory.is_dir():
        for part in directory.glob(f".{os.path.basename(name)}.*.part*"):
            part.unlink(missing_ok=True)


def is_backup_name(name: str, app_name: str) -> bool:
    """Whether ``name`` is (or begins) the name of one of the app ``app_name``'s backup files,
    ``<app name>-YYYYMMDD-HHMMSS-<id>.<extension>`` (not an app "shop-eu"'s for "shop")."""
    return re.match(rf"{re.escape(app_name)}-\d{{8}}-\d{{6}}-\d+\.", name) is not None


def private_dir(path: Path) -> Path:
    """``path``, made (mode 0700) when missing; StorageError unless it is a directory of this
    process's user that no other user may write to (a work dir under a shared /tmp that
    someone else made first would let them replace or block the files built there)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()  # a symbolic link is refused: someone could turn it elsewhere later
    except OSError as e:
        raise StorageError(f"{path}: {e.strerror or type(e).__name__}") from None
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    if not stat_module.S_ISDIR(st.st_mode) or not mine or st.st_mode & 0o022:
        raise StorageError(
            f"{path} is not a private directory (it must belong to this user, and no other user"
            f" may write to it: mode {stat_module.filemode(st.st_mode)})"
        )
    return path
