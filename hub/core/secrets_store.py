"""Secrets of one platform instance, generated once and kept in the state folder.

Kept across restarts so that cookies and service tokens stay valid. The file is
readable by the platform's own account only (0600), after every rewrite too:
whoever reads it holds the hub's admin API (``api_service_token``). The admin
password is not kept here: it is printed once, when the account is created
(``ai4lab users password admin`` sets a new one).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

FILENAME = "secrets.json"
#: ``crypt_key`` is the hub's JUPYTERHUB_CRYPT_KEY (32 bytes, hex): it encrypts ``auth_state``, where an
#: OIDC login keeps the user's access and refresh tokens.
_KEYS = ("cookie_secret", "proxy_auth_token", "api_service_token", "mlflow_service_token", "crypt_key")
# keys that older versions kept in the file and that must not stay there
_DROPPED = ("admin_password",)


def make_private(path: Path) -> None:
    """Make ``path`` readable and writable by this account only (0600), creating it empty when missing.

    Why create it: a file that another program creates later (SQLite, the hub) gets the
    process umask, usually 0644; one that exists already keeps the mode set here.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def load_or_create(state: Path) -> tuple[dict[str, Any], bool]:
    """Return the secrets and whether they were created now."""
    path = state / FILENAME
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    created = not data
    changed = False
    for key in _KEYS:
        if key not in data:
            data[key] = secrets.token_hex(32)
            changed = True
    for key in _DROPPED:
        if data.pop(key, None) is not None:
            changed = True
    if changed:
        save(state, data)
    elif stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)  # loosened by hand or by a copy: tighten it again
    return data, created


def save(state: Path, data: dict[str, Any]) -> None:
    """Write the secrets atomically, readable by this user only.

    The temporary file is made 0600 explicitly: ``os.open``'s mode applies only to a
    file it creates, and a left-over temporary file could have any mode.
    """
    state.mkdir(parents=True, exist_ok=True)
    path = state / FILENAME
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    tmp.replace(path)
