"""Remote storage (S3, WebDAV) mounted with rclone at each user's storage folder.

Why a mount: sessions, trainings, batch jobs and module servers read and write
``storage/`` as a folder (the link in the workspace, ``/storage`` of a module,
a training's dataset and output paths all point at the user's storage folder
in the state folder). With the remote mounted exactly there, all of them use
S3 or WebDAV unchanged, and so does everything that checks a path against the
user's storage (symlinks, traversal).

The mount belongs to the user's system account (rclone's ``--uid/--gid``,
``--umask 077``) and the kernel checks modes (``--default-permissions``): other
users cannot enter it. rclone runs as the platform's account with the
credentials in its environment (readable by that account only), never on its
command line; its log has no credentials at the level used. One mount per
user, shared by the hub (sessions) and the platform API (jobs): whoever needs
it first starts it, under a lock, and ``ai4lab up`` unmounts all when it stops.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import Identity, private_dir
from ai4lab.core.own_storage import backend_for
from ai4lab.core.secrets_store import make_private
from ai4lab.core.settings import Settings

log = logging.getLogger(__name__)

MOUNT_TIMEOUT = 30.0


def _mounts_dir(settings: Settings) -> Path:
    path = settings.state / "mounts"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)  # caches of users' files and the rclone logs
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_mount(settings: Settings, user: str, ident: Identity) -> Path:
    """The user's storage folder, with their remote storage mounted there (a local storage: the folder as it is).

    Raises PlatformError (502) with rclone's own reason when the remote cannot be mounted.
    """
    path = settings.user_storage(user)
    backend = backend_for(settings, user)
    if not backend.remote:
        return path
    if os.path.ismount(path):
        return path
    state = _mounts_dir(settings)
    with _locked(state / f"{user}.lock"):
        if os.path.ismount(path):  # mounted by the other process meanwhile
            return path
        if path.resolve() in mounted(settings):  # its rclone died: the mount is listed but cannot be entered
            _unmount(path)
        private_dir(path, ident, settings.storage_root)
        env, remote = backend.rclone(user)
        logfile = state / f"rclone-{user}.log"
        make_private(logfile)
        args = [
            "rclone", "mount", remote, str(path), "--config", str(state / "rclone.conf"),
            "--uid", str(ident.uid), "--gid", str(ident.gid), "--umask", "077",
            "--allow-other", "--default-permissions",
            # the platform API writes through fsspec beside the mount: listings are not kept long, and a
            # file written in a session goes to the server 2 s after it is closed (not at once: a program
            # that writes a temporary file and renames it, as savers do, renames it before its upload)
            "--dir-cache-time", "2s", "--vfs-cache-mode", "writes", "--vfs-write-back", "2s",
            "--cache-dir", str(state / "cache" / user), "--log-file", str(logfile), "--log-level", "NOTICE",
        ]  # fmt: skip
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
        proc = subprocess.Popen(
            args, env=clean | env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                reason = _last_error(logfile) or f"rclone exited with code {proc.returncode}"
                raise PlatformError(502, f"your {backend.type} storage could not be mounted: {reason}")
            time.sleep(0.05)
        log.info("mounted the %s storage of %s at %s", backend.type, user, path)
        return path


def _last_error(logfile: Path) -> str:
    lines = [ln for ln in logfile.read_text(errors="replace").splitlines() if "ERROR" in ln or "CRITICAL" in ln]
    return lines[-1].split(": ", 1)[-1] if lines else ""


def mounted(settings: Settings) -> list[Path]:
    """The users' storage folders with a mount on them, also one whose rclone died (the kernel still lists it)."""
    root = str(settings.storage_root.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted(Path(p) for p in points if p.startswith(root) and "/" not in p[len(root) :])


def _unmount(path: Path) -> None:
    subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False, capture_output=True)


def unmount(settings: Settings, user: str) -> None:
    """Unmount ``user``'s storage (they connected another one); sessions still open keep what they opened."""
    path = settings.user_storage(user).resolve()
    if path in mounted(settings):
        _unmount(path)


def unmount_all(settings: Settings) -> list[str]:
    """Unmount every user's remote storage (the platform stops); rclone then exits. Returns who was unmounted."""
    done = []
    for path in mounted(settings):
        _unmount(path)
        done.append(path.name)
    return done
