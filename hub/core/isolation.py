"""Per-user system accounts, and the one way user code is started with them.

Why: many scientists share one platform. Code a user runs (a notebook cell, a
terminal, a module's ``predict``, a training, a package build) must not be
able to read another user's files or the platform's secrets and databases.
The operating system already enforces that between accounts, so, as
JupyterHub's ``LocalProcessSpawner`` does, each platform account gets its own
system user and every process running user code is started as that user.

Two modes:

* **isolated** (the platform runs as root): accounts are created on first
  use with ``useradd`` (name ``<prefix><account>``, uid in a configured
  range), and children drop privileges before ``exec`` (groups, gid, uid, a
  private umask, a clean environment);
* **single-user** (not root, e.g. one person on a laptop): nothing can be
  isolated, every process runs as the platform's own user, and the platform
  says so (``describe_mode``) and refuses a second non-admin account unless
  the operator acknowledges it.

Everything here is synchronous and cheap after the first lookup; the
``preexec`` closure only makes system calls, because it runs in a forked child
of a threaded process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Account used for code that belongs to no user in particular (reading a module's arguments).
NOBODY = "nobody"
#: Umask of user processes: what they create is theirs alone unless they say otherwise.
USER_UMASK = 0o077
_NAME_OK = re.compile(r"[a-z_][a-z0-9_-]*")
_LOCK = threading.Lock()


class IsolationError(RuntimeError):
    """A user's system account cannot be made or used; the message says what to fix."""


@dataclass(frozen=True)
class Identity:
    """Who a process runs as: the platform account and its system user."""

    account: str
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def can_isolate() -> bool:
    """Only root can start processes as other users."""
    return os.geteuid() == 0


def system_name(account: str, prefix: str) -> str:
    """A valid, unique system user name for a platform account.

    Names that are already valid (lower case, ``[a-z0-9_-]``) keep their
    spelling after the prefix; any other name gets a hash suffix, so that
    ``Alice`` and ``alice`` never share an account.
    """
    clean = re.sub(r"[^a-z0-9_-]+", "-", account.lower()).strip("-") or "user"
    name = prefix + clean
    if clean != account or len(name) > 32 or not _NAME_OK.fullmatch(name):
        digest = hashlib.sha256(account.encode()).hexdigest()[:8]
        name = f"{prefix}{clean[: 32 - len(prefix) - 9]}-{digest}"
    if not _NAME_OK.fullmatch(name):
        raise IsolationError(
            f"the prefix {prefix!r} does not make a valid system user name; use lower case "
            "letters, digits, '-' or '_' and start with a letter"
        )
    return name


@contextlib.contextmanager
def _useradd_lock() -> Iterator[None]:
    """One ``useradd`` at a time on this machine (several platforms or test workers may race)."""
    path = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    fd = os.open(path / "ai4lab-useradd.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def identity_of(account: str, entry: pwd.struct_passwd, home: str | None = None) -> Identity:
    """The identity of a system user (its groups included) acting for ``account``."""
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Identity(
        account=account,
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=groups,
        home=home or entry.pw_dir,
    )


class Accounts:
    """Finds or creates the system user of each platform account.

    ``enabled`` is False in single-user mode: then every account maps to the
    platform's own user and nothing is created.
    """

    def __init__(self, *, enabled: bool, prefix: str = "ai4-", uid_min: int = 20000, uid_max: int = 29999) -> None:
        if enabled and not can_isolate():
            raise IsolationError("per-user accounts need the platform to run as root")
        if uid_min > uid_max:
            raise IsolationError(f"system_uid_min {uid_min} is above system_uid_max {uid_max}")
        self.enabled = enabled
        self.prefix = prefix
        self.uid_min = uid_min
        self.uid_max = uid_max
        self._cache: dict[str, Identity] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> Accounts:
        return cls(
            enabled=settings.isolating,
            prefix=settings.system_user_prefix,
            uid_min=settings.system_uid_min,
            uid_max=settings.system_uid_max,
        )

    def platform_user(self, account: str = "") -> Identity:
        entry = pwd.getpwuid(os.geteuid())
        return identity_of(account or entry.pw_name, entry)

    def nobody(self) -> Identity:
        """The unprivileged account for code that belongs to no user (the platform's user when not isolating)."""
        if not self.enabled:
            return self.platform_user()
        return identity_of(NOBODY, pwd.getpwnam(NOBODY), home="/nonexistent")

    def ensure(self, account: str, home: Path | None = None) -> Identity:
        """The identity of ``account``, creating its system user on first use."""
        if not self.enabled:
            return self.platform_user(account)
        hit = self._cache.get(account)
        if hit is not None:
            return hit
        name = system_name(account, self.prefix)
        with _LOCK, _useradd_lock():
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                entry = self._create(name, account, home)
        if not self.uid_min <= entry.pw_uid <= self.uid_max:
            raise IsolationError(
                f"system user {name} exists with uid {entry.pw_uid}, outside ai4lab's range "
                f"{self.uid_min}-{self.uid_max}: it is not ai4lab's; rename it or change "
                "system_user_prefix"
            )
        ident = identity_of(account, entry)
        self._cache[account] = ident
        return ident

    def _create(self, name: str, account: str, home: Path | None) -> pwd.struct_passwd:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [
            useradd,
            "--no-create-home",
            "--user-group",
            "--shell",
            "/bin/bash",
            "--home-dir",
            str(home or "/nonexistent"),
            "--comment",
            f"ai4lab account {account}"[:60],
            "-K",
            f"UID_MIN={self.uid_min}",
            "-K",
            f"UID_MAX={self.uid_max}",
            "-K",
            f"GID_MIN={self.uid_min}",
            "-K",
            f"GID_MAX={self.uid_max}",
            name,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            with contextlib.suppress(KeyError):  # another process created it meanwhile
                return pwd.getpwnam(name)
            raise IsolationError(
                f"could not create the system user {name} for {account!r}: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return pwd.getpwnam(name)


def describe_mode(settings: Any) -> str:
    """One sentence for the start banner, ``ai4lab status`` and the admin view."""
    if settings.isolating:
        return (
            f"isolated: each account runs as its own system user ({settings.system_user_prefix}<name>, "
            f"uid {settings.system_uid_min}-{settings.system_uid_max})"
        )
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"single-user mode: sessions run as {user}; do not add other users"


def preexec(ident: Identity, before: Callable[[], None] | None = None, nice: int = 0) -> Callable[[], None]:
    """The function a child runs after ``fork``, before ``exec``: join (``before``), then become ``ident``.

    ``before`` runs while still root (e.g. joining the job's cgroup). ``nice``
    lowers the job's CPU priority below the platform's own processes. Only
    system calls from here on: the parent may hold locks in other threads.
    """
    uid, gid, groups, drop = ident.uid, ident.gid, list(ident.groups), not ident.is_current

    def child() -> None:
        if before is not None:
            before()
        if nice:
            os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        os.umask(USER_UMASK)
        if drop:
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)

    return child


def user_env(ident: Identity, home: Path | str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for ``ident``: nothing of the platform's own (tokens, settings) leaks in.

    Only locale and time zone are kept from the platform; everything else is
    what the caller passes in ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ")}
    env.update(
        {
            "HOME": str(home),
            "USER": ident.name,
            "LOGNAME": ident.name,
            "SHELL": "/bin/bash",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
    )
    env.update(extra or {})
    return env


def give(path: Path, ident: Identity, mode: int | None = None) -> None:
    """Make ``path`` (not what is below it) belong to ``ident``; a no-op in single-user mode."""
    if not ident.is_current:
        os.lchown(path, ident.uid, ident.gid)
    if mode is not None and not path.is_symlink():
        os.chmod(path, mode)


def give_tree(path: Path, ident: Identity) -> None:
    """``give`` for a folder and everything in it (small folders the platform prepared for a job)."""
    if not ident.is_current:
        chown_tree(path, ident.uid, ident.gid)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Change the owner of a folder and everything in it, links themselves rather than their targets."""
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def private_dir(path: Path, ident: Identity, base: Path | None = None) -> Path:
    """Create ``path`` (mode 0700) owned by ``ident``; missing folders between ``base`` and it are theirs too."""
    missing: list[Path] = []
    p = path
    while not p.exists() and (base is None or p != base):
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for folder in reversed(missing):
        give(folder, ident, 0o700)
    if path.stat().st_uid != ident.uid:
        give(path, ident, 0o700)
    return path


def run(
    ident: Identity,
    cmd: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a short user-code command as ``ident`` and wait for it (tries, argument descriptions, builds)."""
    return subprocess.run(
        cmd,
        env=dict(env),
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec(ident),
        close_fds=True,
    )


def read_written_by(path: Path, uid: int, max_bytes: int) -> bytes:
    """The content of a regular file that user code wrote (a result, an answer), read with the platform's rights.

    Why: the user owns the folder, so ``path`` may have been replaced by a
    link to a file only the platform can read. The file is opened without
    following links and must be a regular file of ``uid`` (the job's user;
    in single-user mode, the platform's); ``OSError`` otherwise, or when it
    is too large.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            raise PermissionError(f"{path} is not a file written by uid {uid}")
        if st.st_size > max_bytes:
            raise OSError(f"{path} is larger than {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)


def reachable_by_others(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other accounts cannot traverse, or None.

    Why: a runtime or state folder below ``/root`` (mode 0700) looks fine to
    root and fails only when a user's session starts, with an unclear error.
    """
    p = Path(path).resolve()
    for folder in [*reversed(p.parents), p] if p.is_dir() else reversed(p.parents):
        try:
            mode = folder.stat().st_mode
        except OSError:
            return folder
        if not mode & 0o001:
            return folder
    return None
