"""ai4lab.core.secrets_store: generated once, kept, private to the owner."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from ai4lab.core.secrets_store import FILENAME, load_or_create

KEYS = {"cookie_secret", "proxy_auth_token", "api_service_token", "mlflow_service_token", "crypt_key"}


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


def test_stays_0600_after_every_rewrite(tmp_path: Path) -> None:
    """A left-over temporary file with a loose mode, or a file loosened by hand, does not widen the secrets."""
    from ai4lab.core.secrets_store import save

    data, _ = load_or_create(tmp_path)
    stale = (tmp_path / FILENAME).with_suffix(".tmp")
    stale.write_text("{}")
    stale.chmod(0o644)
    save(tmp_path, {**data, "extra": "x"})
    assert mode(tmp_path / FILENAME) == 0o600
    (tmp_path / FILENAME).chmod(0o644)
    again, _ = load_or_create(tmp_path)  # not rewritten, but tightened
    assert again["extra"] == "x"
    assert mode(tmp_path / FILENAME) == 0o600


def test_admin_password_of_older_versions_is_removed(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_text(json.dumps({"cookie_secret": "c", "admin_password": "kept-in-clear"}))
    data, _ = load_or_create(tmp_path)
    assert "admin_password" not in data
    assert "kept-in-clear" not in path.read_text()
    assert mode(path) == 0o600


def test_databases_are_private(tmp_path: Path) -> None:
    """The platform database (password hashes, sealed secrets) and its WAL files are 0600 whoever creates them."""
    import os

    from ai4lab.core import accounts, db

    old = os.umask(0o022)
    try:
        url = f"sqlite:///{tmp_path / 'ai4lab.sqlite'}"
        db.upgrade(url)
        accounts.add_user(url, "alice", "password1")
        hub_db = tmp_path / "jupyterhub.sqlite"
        hub_db.write_text("")
        hub_db.chmod(0o644)
        db.private_sqlite_file(f"sqlite:///{hub_db}")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.iterdir() if p.name.startswith(("ai4lab.sqlite", "jupyterhub.sqlite"))]
    assert {p.name for p in files} >= {"ai4lab.sqlite", "ai4lab.sqlite-wal", "jupyterhub.sqlite"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_admin_password_is_returned_once_and_kept_nowhere(tmp_path: Path) -> None:
    from ai4lab.core import accounts, db
    from ai4lab.jhub.launcher import ensure_admin
    from ai4lab.core.settings import Settings

    settings = Settings(state_dir=tmp_path / "state")
    db.upgrade(settings.db_url)
    load_or_create(settings.state)
    name, password = ensure_admin(settings)
    assert name == "admin" and password and len(password) >= 12
    assert accounts.authenticate(settings.db_url, "admin", password) is not None
    assert ensure_admin(settings) == ("admin", None)  # later starts: not shown again
    for f in settings.state.rglob("*"):
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f
