"""Secrets of one platform instance, generated once and kept in the state folder.

Kept across restarts so that cookies, service tokens and the generated admin
password stay valid: the admin password is printed on first start only.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

FILENAME = "secrets.json"
_KEYS = ("cookie_secret", "proxy_auth_token", "api_service_token", "mlflow_service_token")


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
    if changed:
        save(state, data)
    return data, created


def save(state: Path, data: dict[str, Any]) -> None:
    """Write the secrets atomically, readable by this user only."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / FILENAME
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    tmp.replace(path)
