"""ai4lab.secrets_store: generated once, kept, private to the owner."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from ai4lab.secrets_store import FILENAME, load_or_create

KEYS = {"cookie_secret", "proxy_auth_token", "api_service_token", "mlflow_service_token"}


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_created_once_and_stable(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"  # created when missing
    data, created = load_or_create(state)
    assert created is True
    assert set(data) == KEYS
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in data.values())
    assert len(set(data.values())) == len(KEYS)  # independent secrets

    path = state / FILENAME
    assert json.loads(path.read_text()) == data
    assert mode(path) == 0o600
    assert not path.with_suffix(".tmp").exists()

    before = path.stat().st_mtime_ns
    again, created_again = load_or_create(state)
    assert created_again is False
    assert again == data
    assert path.stat().st_mtime_ns == before  # not rewritten
    assert mode(path) == 0o600


def test_mode_0600_despite_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        load_or_create(tmp_path)
    finally:
        os.umask(old)
    assert mode(tmp_path / FILENAME) == 0o600


def test_missing_keys_filled_in_existing_kept(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_text(json.dumps({"cookie_secret": "keep-me", "extra": "also-kept"}))
    path.chmod(0o600)
    data, created = load_or_create(tmp_path)
    assert created is False
    assert data["cookie_secret"] == "keep-me"
    assert data["extra"] == "also-kept"
    assert KEYS <= set(data)
    assert json.loads(path.read_text()) == data
    assert mode(path) == 0o600
