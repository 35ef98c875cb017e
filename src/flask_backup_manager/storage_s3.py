"""Backups in S3-compatible object storage (``s3://bucket/prefix``), through boto3, the AWS SDK
(the ``s3`` extra; this module is imported only when such a URL is configured).

A finished file is uploaded by a multipart upload, one part in memory at a time, each part sent
with its SHA-256 so the store checks it; the object carries the whole file's sha256 as metadata.
A failed or cancelled upload is aborted, so no partial object is ever visible. Credentials come
only from boto3's standard chain (environment, config files, instance role)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .engine import ExportCancelled
from .storage import (
    PRESIGNED_SECONDS,
    Stat,
    StorageError,
    is_backup_name,
    private_dir,
    remove_partial_files,
)

MiB = 1024 * 1024
#: S3's bounds: every part but the last at least 5 MiB, at most 5 GiB, at most 10,000 parts
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 16 * MiB

OPTIONS_KEY = "BACKUP_MANAGER_S3_OPTIONS"
ADDRESSING_STYLES = ("path", "virtual", "auto")
ENCRYPTIONS = ("AES256", "aws:kms")
_MISSING = ("404", "NoSuchKey", "NotFound")


def reason(error: BaseException) -> str:
    """The client's own words for ``error``, in one line: ``AccessDenied: Access Denied``, or
    botocore's ``Could not connect to the endpoint URL: ...``."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = info.get("Code") or "Error"
        message = info.get("Message") or error.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", ""
        )
        text = f"{code}: {message}" if message else str(code)
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _option_error(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{OPTIONS_KEY}[{name!r}] must be {expected}, not {value!r}")


def parse_options(options: dict) -> dict[str, Any]:
    """The checked ``BACKUP_MANAGER_S3_OPTIONS``; ValueError naming an unknown or bad one."""
    if not isinstance(options, dict):
        raise ValueError(f"{OPTIONS_KEY} must be a dict, not {options!r}")
    known = {
        "endpoint_url",
        "region_name",
        "addressing_style",
        "server_side_encryption",
        "sse_kms_key_id",
        "part_size",
    }
    unknown = sorted(set(options) - known, key=str)
    if unknown:
        raise ValueError(
            f"{OPTIONS_KEY}: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))};"
            " credentials come from the S3 client's standard places, never from here)"
        )
    out: dict[str, Any] = {
        "endpoint_url": options.get("endpoint_url"),
        "region_name": options.get("region_name"),
        "addressing_style": options.get("addressing_style"),
        "server_side_encryption": options.get("server_side_encryption"),
        "sse_kms_key_id": options.get("sse_kms_key_id"),
        "part_size": options.get("part_size", DEFAULT_PART_SIZE),
    }
    url = out["endpoint_url"]
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise _option_error("endpoint_url", "an http:// or https:// URL", url)
    if isinstance(url, str) and "@" in url.split("/")[2]:
        raise ValueError(
            f"{OPTIONS_KEY}['endpoint_url']: credentials do not go into the URL; the S3 client"
            " reads them from its standard places (environment, config files, instance role)"
        )
    region = out["region_name"]
    if region is not None and not (isinstance(region, str) and region.strip()):
        raise _option_error("region_name", "a region name such as 'eu-west-1'", region)
    style = out["addressing_style"]
    if style is not None and style not in ADDRESSING_STYLES:
        raise _option_error("addressing_style", " or ".join(map(repr, ADDRESSING_STYLES)), style)
    sse = out["server_side_encryption"]
    if sse is not None and sse not in ENCRYPTIONS:
        raise _option_error("server_side_encryption", " or ".join(map(repr, ENCRYPTIONS)), sse)
    key_id = out["sse_kms_key_id"]
    if key_id is not None:
        if not (isinstance(key_id, str) and key_id.strip()):
            raise _option_error("sse_kms_key_id", "a KMS key id or ARN", key_id)
        if sse != "aws:kms":
            raise ValueError(
                f"{OPTIONS_KEY}['sse_kms_key_id'] needs server_side_encryption 'aws:kms', not"
                f" {sse!r}"
            )
    size = out["part_size"]
    if (
        isinstance(size, bool)
        or not isinstance(size, int)
        or not MIN_PART_SIZE <= size <= MAX_PART_SIZE
    ):
        raise _option_error(
            "part_size",
            f"a whole number of bytes from {MIN_PART_SIZE} (5 MiB, S3's least part) to"
            f" {MAX_PART_SIZE} (5 GiB)",
            size,
        )
    return out


def etag(value: str) -> str:
    """An ETag as one value whichever way the store quotes it (MinIO's answer to a completed
    upload and some stores' listings leave the quotes off; a weak one has W/)."""
    return value.strip().removeprefix("W/").strip('"')


def _store_time(answer: dict) -> float:
    """The time an answer of the store's was made (its Date header), else this host's."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return time.time()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _attachment(filename: str) -> str:
    """A Content-Disposition for ``filename``: an ASCII name, plus RFC 5987's UTF-8 one."""
    simple = "".join(c for c in filename if 32 <= ord(c) < 127 and c not in '"\\') or "backup"
    value = f'attachment; filename="{simple}"'
    if simple != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


class S3Storage:
    """The backups' files as objects ``prefix/name`` in one bucket."""

    def __init__(self, bucket: str, prefix: str, options: dict, work_dir: Path) -> None:
        self.options = parse_options(options)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.work_dir = Path(work_dir)
        self.part_size: int = self.options["part_size"]
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._pid = os.getpid()
        self._client_lock = threading.Lock()
        self._client: Any = None

    # -- the client -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """boto3's S3 client, one per process: RQ forks a work horse per job, and a forked
        child must not share the parent's pooled connections."""
        with self._client_lock:
            if self._client is None or self._pid != os.getpid():
                s3_config: dict[str, str] = {}
                if self.options["addressing_style"]:
                    s3_config["addressing_style"] = self.options["addressing_style"]
                config = Config(
                    # presigned URLs signed with SigV4: botocore's default for some regions
                    # is SigV2, which AWS refuses for buckets made since June 2020
                    signature_version="s3v4",
                    s3=s3_config or None,
                    retries={"mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                )
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.options["endpoint_url"],
                    region_name=self.options["region_name"],
                    config=config,
                )
                self._pid = os.getpid()
            return self._client

    def key(self, name: str) -> str:
        name = os.path.basename(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def _encryption(self) -> dict[str, str]:
        out = {}
        if self.options["server_side_encryption"]:
            out["ServerSideEncryption"] = self.options["server_side_encryption"]
        if self.options["sse_kms_key_id"]:
            out["SSEKMSKeyId"] = self.options["sse_kms_key_id"]
        return out

    # -- the Storage interface --------------------------------------------------------------

    def export_path(self, name: str) -> Path:
        private_dir(self.work_dir)
        return self.work_dir / os.path.basename(name)

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
        key = self.key(name)
        upload_id = None
        try:
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ChecksumAlgorithm="SHA256",
                ContentType="application/octet-stream",
                Metadata={"sha256": sha256},
                **self._encryption(),
            )["UploadId"]
            version = self._upload_parts(path, key, upload_id, sha256, size, cancel, progress)
            upload_id = None  # complete: nothing to abort
            return version
        except (ClientError, BotoCoreError, OSError) as e:
            raise StorageError(reason(e)) from None
        finally:
            if upload_id is not None:
                self._abort(key, upload_id)
            path.unlink(missing_ok=True)

    def _upload_parts(
        self,
        path: Path,
        key: str,
        upload_id: str,
        sha256: str,
        size: int,
        cancel: threading.Event | None,
        progress: Callable[[int, int], None] | None,
    ) -> str:
        """Upload the parts and complete the upload; the stored object's ETag."""
        # at most 10,000 parts: a file larger than that many part_size parts gets larger parts
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        whole = hashlib.sha256()
        part_digests = hashlib.sha256()  # S3's composite checksum: sha256 of the parts' digests
        parts = []
        done = 0
        with open(path, "rb") as f:
            while True:
                if cancel is not None and cancel.is_set():
                    raise ExportCancelled()
                data = f.read(part_size)
                if not data and parts:
                    break
                whole.update(data)
                digest = hashlib.sha256(data).digest()
                part_digests.update(digest)
                number = len(parts) + 1
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                )
                parts.append(
                    {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": _b64(digest)}
                )
                done += len(data)
                del data
                if progress is not None:
                    progress(done, size)
                if done >= size and f.read(1) == b"":
                    break
        if done != size or whole.hexdigest() != sha256:
            raise StorageError(
                f"{path} changed after it was checked: {done} bytes with sha256"
                f" {whole.hexdigest()}, not {size} with {sha256}"
            )
        if cancel is not None and cancel.is_set():
            raise ExportCancelled()
        answer = self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        stored = answer.get("ChecksumSHA256")
        expected = _b64(part_digests.digest())
        if stored and stored.split("-")[0] != expected:
            self.delete(self._name(key))
            raise StorageError(
                f"the store's checksum of {key} is {stored}, not the parts' {expected}-{len(parts)}"
            )
        return etag(answer["ETag"])

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass  # best effort: the reaper's abort_stale_uploads tries again

    def stat(self, name: str) -> Stat | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise StorageError(reason(e)) from None
        except BotoCoreError as e:
            raise StorageError(reason(e)) from None
        sha256 = head.get("Metadata", {}).get("sha256")
        if not (isinstance(sha256, str) and len(sha256) == 64):
            sha256 = None
        return Stat(
            size=head["ContentLength"],
            mtime=head["LastModified"].timestamp(),
            version=etag(head["ETag"]),
            sha256=sha256,
        )

    def stat_many(self, names: Sequence[str]) -> dict[str, Stat | None]:
        wanted = {os.path.basename(n): n for n in names}
        found: dict[str, Stat | None] = dict.fromkeys(names)
        if not wanted:
            return found
        try:
            # keys sort by name, names by their time: the listing starts at the oldest one
            # asked for (the list's first page, the newest backups, lists only those)
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=f"{self.prefix}/" if self.prefix else "",
                StartAfter=self.key(min(wanted))[:-1],
            )
            last, left = self.key(max(wanted)), set(wanted)
            for page in pages:
                items = [i for i in page.get("Contents", []) if i["Key"] <= last]
                for item in items:
                    left.discard(self._name(item["Key"]))
                    name = wanted.get(self._name(item["Key"]))
                    if name is not None:
                        found[name] = Stat(
                            size=item["Size"],
                            mtime=item["LastModified"].timestamp(),
                            version=etag(item["ETag"]),
                        )
                if not left or len(items) < len(page.get("Contents", [])):
                    break  # all found, or past the last name asked for: no more pages
        except (ClientError, BotoCoreError) as e:
            raise StorageError(reason(e)) from None
        return found

    def open(self, name: str) -> BinaryIO:
        key = self.key(name)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _MISSING:
                raise FileNotFoundError(f"{self.url}/{os.path.basename(name)}") from None
            raise StorageError(reason(e)) from None
        except BotoCoreError as e:
            raise StorageError(reason(e)) from None
        return S3ObjectReader(self.client, self.bucket, key, head["ContentLength"], head["ETag"])

    def delete(self, name: str) -> None:
        """Remove the object, and on a versioned bucket every version of it (a plain delete
        there only hides the data behind a delete marker)."""
        key = self.key(name)
        try:
            versions = self._versions(key)
            if versions is None:  # listing versions refused: the unversioned bucket's delete
                self.client.delete_object(Bucket=self.bucket, Key=key)
            for version in versions or ():
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in _MISSING:
                raise StorageError(reason(e)) from None
        except BotoCoreError as e:
            raise StorageError(reason(e)) from None

    def _versions(self, key: str) -> list[str] | None:
        """The ids of every version and delete marker of ``key`` (``null`` on a bucket that
        was never versioned), or None when the store refuses to list them."""
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=key
            )
            return [
                v["VersionId"]
                for page in pages
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
                if v["Key"] == key
            ]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("AccessDenied", "NotImplemented"):
                return None
            raise

    def download_url(
        self, name: str, *, filename: str, expires: int = PRESIGNED_SECONDS
    ) -> str | None:
        try:
            return self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.key(name),
                    "ResponseContentDisposition": _attachment(filename),
                },
                ExpiresIn=expires,
            )
        except BotoCoreError as e:  # e.g. no credentials to sign with
            raise StorageError(reason(e)) from None

    def remove_parts(self, name: str) -> None:
        remove_partial_files(self.work_dir, name)
        if name:
            (self.work_dir / os.path.basename(name)).unlink(missing_ok=True)
        key = self.key(name)
        try:
            for upload, _ in self._uploads(key):
                if upload["Key"] == key:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                    )
        except (ClientError, BotoCoreError) as e:
            raise StorageError(reason(e)) from None

    def _uploads(self, prefix: str) -> list[tuple[dict, float]]:
        """The unfinished uploads under ``prefix``, each with the store's time when it listed
        it (its answer's Date: ages are measured by the store's clock, not this host's)."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [(upload, _store_time(page)) for page in pages for upload in page.get("Uploads", [])]

    def abort_stale_uploads(self, older_than: float, app_name: str) -> list[str]:
        names = []
        try:
            for upload, now in self._uploads(f"{self.prefix}/{app_name}-".lstrip("/")):
                name = self._name(upload["Key"])
                if "/" in name or not is_backup_name(name, app_name):  # someone else's
                    continue
                if now - upload["Initiated"].timestamp() > older_than:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    names.append(self._name(upload["Key"]))
        except (ClientError, BotoCoreError) as e:
            raise StorageError(reason(e)) from None
        return names

    def check(self) -> None:
        private_dir(self.work_dir)
        key = self.key(f".check-storage.{os.getpid()}.{time.time_ns()}")
        body = os.urandom(16)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ChecksumAlgorithm="SHA256",
                **self._encryption(),
            )
            try:
                got = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            finally:
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"{self.url}: {reason(e)}") from None
        if got != body:
            raise StorageError(f"{self.url}: an object stored there reads back otherwise")


class S3ObjectReader(io.RawIOBase):
    """A stored object, read-only and seekable: each run of reads streams one ranged GET
    (``bytes=pos-``) and a seek elsewhere ends it; never the whole object in memory. Every GET
    names the ETag seen at open (If-Match), so bytes of a replaced object are never mixed in."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self.name = key
        self.size = size
        self.etag = etag
        self._pos = 0
        self._body: Any = None  # the GET streaming from self._pos, if any

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence!r})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        if pos != self._pos:
            self._end_stream()
            self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        want = min(len(buffer), self.size - self._pos)
        if want <= 0:
            return 0
        if self._body is None:
            self._body = self._get(self._pos)
        try:
            data = self._body.read(want)
        except (BotoCoreError, OSError) as e:
            self._end_stream()
            raise StorageError(reason(e)) from None
        if not data:
            self._end_stream()
            raise StorageError(f"{self._key}: the store ended the object at byte {self._pos}")
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def _get(self, start: int) -> Any:
        try:
            answer = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-", IfMatch=self.etag
            )
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in _MISSING:
                raise FileNotFoundError(self._key) from None
            raise StorageError(reason(e)) from None
        except BotoCoreError as e:
            raise StorageError(reason(e)) from None
        return answer["Body"]

    def _end_stream(self) -> None:
        if self._body is not None:
            body, self._body = self._body, None
            body.close()

    def close(self) -> None:
        if not self.closed:
            self._end_stream()
        super().close()
