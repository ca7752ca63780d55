"""Real storage servers on free ports for the tests: S3 (moto's server) and WebDAV (wsgidav, as Nextcloud speaks it).

Each is one process per test session; tests keep apart by using their own bucket or folder.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ai4lab.core.remote_storage import StorageBackend

BIN = Path(sys.executable).parent
S3_KEYS = ("test-access-key", "test-secret-key")
DAV_USER = ("dav-user", "dav-password")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(args: list[str], port: int, what: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a server and wait until it listens; a test fails (never skips) when it cannot start.

    Its output goes to a file: a pipe nobody reads fills up with the request log and stops the server.
    """
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"{what} exited with code {proc.returncode}: {log.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{what} did not listen within 30 s")
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


@dataclass
class S3Server:
    endpoint: str

    def new_bucket(self) -> str:
        import boto3

        name = f"bucket-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        key, secret = S3_KEYS
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=key,
            aws_secret_access_key=secret,
        )  # fmt: skip

    def backend(self, bucket: str, **kw: object) -> StorageBackend:
        key, secret = S3_KEYS
        return StorageBackend.model_validate(
            {"type": "s3", "url": f"s3://{bucket}", "endpoint_url": self.endpoint, "username": key,
             "password": secret, **kw}
        )  # fmt: skip


@dataclass
class DavServer:
    url: str
    root: Path

    def new_folder(self) -> str:
        name = f"dav-{uuid.uuid4().hex[:10]}"
        (self.root / name).mkdir()
        return name

    def backend(self, folder: str, **kw: object) -> StorageBackend:
        user, password = DAV_USER
        return StorageBackend.model_validate(
            {"type": "webdav", "url": f"{self.url}/{folder}", "username": user, "password": password, **kw}
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    proc = serve([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server")
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def dav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    root = tmp_path_factory.mktemp("webdav")
    (root / "files").mkdir()
    port = free_port()
    user, password = DAV_USER
    config = root / "wsgidav.yaml"
    config.write_text(
        f"host: 127.0.0.1\nport: {port}\nprovider_mapping:\n  '/': {root / 'files'}\n"
        "http_authenticator:\n  accept_basic: true\n  accept_digest: false\n  default_to_digest: false\n"
        f"simple_dc:\n  user_mapping:\n    '*':\n      {user}:\n        password: {password}\n"
        "verbose: 0\nlogging:\n  enable_loggers: []\n"
    )
    proc = serve([str(BIN / "wsgidav"), "--config", str(config)], port, "wsgidav")
    try:
        yield DavServer(f"http://127.0.0.1:{port}", root / "files")
    finally:
        stop(proc)
