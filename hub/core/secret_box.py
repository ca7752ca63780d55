"""Secret values kept in the platform database, encrypted with a key kept in the state folder.

Why: the platform database is read by more programs than the API service (the CLI,
backups, ``ai4lab status``, an operator's SQL shell) and a copy of it travels more
easily than the state folder's private files. Tool passwords (CVAT's admin) and
per-deployment tokens (Flower's) are sealed with Fernet (AES-128-CBC + HMAC-SHA256)
before they are written and opened only where they are used: when a process is
configured with them, and by the owner-only endpoints that show them.

The key is created on first use in ``<state>/secret-box.key`` (0600). Losing it
makes the sealed values unreadable: the deployments holding them must be started
again; nothing else (accounts, other deployments) depends on it.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILENAME = "secret-box.key"
PREFIX = "fernet:"


class SecretBoxError(RuntimeError):
    """A sealed value that cannot be opened; the message says what to do."""


class SecretBox:
    """Seal and open secret strings with the state folder's key (one instance per process is enough)."""

    def __init__(self, state: Path) -> None:
        self.key_path = Path(state) / KEY_FILENAME
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    @staticmethod
    def is_sealed(value: object) -> bool:
        return isinstance(value, str) and value.startswith(PREFIX)

    def seal(self, value: str) -> str:
        """``value`` encrypted, as text that says it is sealed; a sealed value is returned as it is."""
        if self.is_sealed(value):
            return value
        return PREFIX + self._key().encrypt(value.encode()).decode()

    def open(self, value: str | None) -> str | None:
        """The clear text of a sealed value; ``None`` stays ``None``.

        A value that is not sealed is returned as it is: rows written before sealing
        existed are sealed at the next start (``deployments.seal_secrets``), and until
        then they must keep working.
        """
        if value is None or not self.is_sealed(value):
            return value
        try:
            return self._key().decrypt(value.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretBoxError(
                f"a secret in the platform database was sealed with another key than {self.key_path}: "
                "restore that key file, or stop and start the deployment again to get a new secret"
            ) from None

    def _key(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(load_or_create_key(self.key_path))
            return self._fernet


@lru_cache(maxsize=8)
def box_for(state: Path) -> SecretBox:
    """The process's box for one state folder: the key file is read once."""
    return SecretBox(state)


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, created 0600 when missing.

    Several processes (hub, API service, CLI) may get here at once: the key is written
    to a private temporary file and linked into place, which fails for all but the first;
    the others read the winner's key.
    """
    if path.exists():
        return _read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, Fernet.generate_key())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # loosened by a copy or by hand: tighten it again
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise SecretBoxError(
            f"{path} is not a Fernet key: restore it from a backup, or delete it and "
            "start the deployments holding secrets again"
        ) from None
    return key
