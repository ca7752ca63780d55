"""Remote storage mounted with rclone (real FUSE mounts) at a user's storage folder: what a session or a job
sees there is what the platform API sees through fsspec, it belongs to the user's system account, other
accounts cannot enter it, and the platform's stop unmounts it.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import Accounts
from ai4lab.core.mounts import ensure_mount, unmount_all
from ai4lab.core.remote_storage import StorageBackend
from ai4lab.core.settings import Settings
from ai4lab.core.storage import open_storage
from tests.unit.test_storage_backends import migrated
from tests.storage_servers import DavServer, S3Server, dav_server, s3_server  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts for other accounts need root (CI runs as root)")


def as_user(uid: int, gid: int, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python as another account (what a session or job of that user can do)."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "/usr/bin/python3", "-c", code],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def wait_for(check, what: str, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.2)


@pytest.mark.parametrize("kind", ["s3", "webdav"])
def test_a_mount_is_the_users_remote_storage(kind: str, request: pytest.FixtureRequest, reachable_tmp: Path) -> None:
    if kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        backend = s3.backend(s3.new_bucket())
    else:
        dav: DavServer = request.getfixturevalue("dav_server")
        backend = dav.backend(dav.new_folder())
    state = reachable_tmp / "state"
    state.mkdir(mode=0o711)
    settings = migrated(Settings(state_dir=state, storage=backend))
    settings.storage_root.mkdir(mode=0o711)
    accounts = Accounts(enabled=True)
    alice, mallory = accounts.ensure("mnt-alice"), accounts.ensure("mnt-mallory")
    api = open_storage(settings, "mnt-alice")
    api.write("datasets/a.csv", b"x,y\n1,2\n")
    try:
        path = ensure_mount(settings, "mnt-alice", alice)
        assert os.path.ismount(path) and ensure_mount(settings, "mnt-alice", alice) == path  # once
        # the user's own processes read and write it as a folder; the platform API sees their writes
        seen = as_user(alice.uid, alice.gid, f"print(open('{path}/datasets/a.csv').read(), end='')\n"
                       f"open('{path}/weights.bin', 'wb').write(b'w' * 1000)")  # fmt: skip
        assert seen.returncode == 0 and seen.stdout == "x,y\n1,2\n", seen.stderr
        wait_for(lambda: api.fs.exists(f"{api.root}/weights.bin"), "a file written in the mount reached the server")
        assert api.read("weights.bin") == b"w" * 1000
        # what the API writes shows in the mount
        api.write("later.txt", b"from the API")
        wait_for(lambda: (path / "later.txt").exists(), "an upload through the API showed in the mount")
        # it is the user's, and nobody else's
        assert path.stat().st_uid == alice.uid
        other = as_user(mallory.uid, mallory.gid, f"import os; print(os.listdir('{path}'))")
        assert other.returncode != 0 and "Permission denied" in other.stderr
        # no credential on rclone's command line
        for proc in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                cmd = proc.read_bytes()
            except OSError:
                continue
            if b"rclone" in cmd and str(path).encode() in cmd:
                assert backend.password.get_secret_value().encode() not in cmd
    finally:
        assert unmount_all(settings) == ["mnt-alice"]
    wait_for(lambda: not os.path.ismount(settings.user_storage("mnt-alice")), "unmounted")


def test_a_storage_that_cannot_be_mounted_says_why(tmp_path: Path, s3_server: S3Server) -> None:  # noqa: F811
    backend = StorageBackend(type="webdav", url="http://127.0.0.1:9/nothing", username="u", password="p")
    settings = migrated(Settings(state_dir=tmp_path / "state", storage=backend))
    alice = Accounts(enabled=True).ensure("mnt-alice")
    with pytest.raises(PlatformError) as refused:
        ensure_mount(settings, "mnt-alice", alice)
    assert refused.value.status == 502 and "your webdav storage could not be mounted" in refused.value.message
    assert not os.path.ismount(settings.user_storage("mnt-alice"))
