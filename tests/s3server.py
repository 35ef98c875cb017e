"""A real S3 API server for the tests: moto's standalone server (the dev extras' ``moto[server]``)
in a subprocess on a free port of 127.0.0.1, spoken to over HTTP like any S3-compatible store.
Each server keeps its buckets in its own memory: a test that must break one starts its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

#: what the test servers accept (moto checks no signature unless told to enforce IAM)
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """``python -m moto.server`` on 127.0.0.1; ``endpoint_url`` once :meth:`start` returned."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_dir / f"moto-{uuid.uuid4().hex[:8]}.log"
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> S3Server:
        for _ in range(3):  # a free port taken by someone else in between: try another
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    env={**os.environ, **self.env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait(timeout):
                return self
            self.stop()
        raise RuntimeError(f"moto's S3 server did not start: {self.log()[-2000:]}")

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=5).close()
                return True
            except urllib.error.HTTPError:
                return True  # it answers: that is all we wait for
            except OSError:
                time.sleep(0.1)
        return False

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crashed or unplugged store."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, **kw):  # noqa: ANN003, ANN201  (a boto3 S3 client on this server)
        import boto3

        return boto3.session.Session(
            aws_access_key_id=kw.pop("aws_access_key_id", TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=kw.pop(
                "aws_secret_access_key", TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
            ),
            region_name=TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint_url, **kw)

    def create_bucket(self, name: str | None = None) -> str:
        """A new, empty bucket; its name."""
        name = name or f"fbm-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name
