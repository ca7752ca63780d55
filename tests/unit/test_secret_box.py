"""ai4lab.core.secret_box: secrets sealed in the platform database with a private key of the state folder."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.core.secret_box import KEY_FILENAME, PREFIX, SecretBox, SecretBoxError, load_or_create_key


def test_seal_and_open(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "state")
    assert not (tmp_path / "state" / KEY_FILENAME).exists()  # created on first use, not before
    sealed = box.seal("cvat-admin-password")
    key = tmp_path / "state" / KEY_FILENAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sealed.startswith(PREFIX) and "cvat-admin-password" not in sealed
    assert box.seal("cvat-admin-password") != sealed  # a fresh IV each time
    assert box.seal(sealed) == sealed  # never sealed twice
    assert box.open(sealed) == "cvat-admin-password"
    assert SecretBox(tmp_path / "state").open(sealed) == "cvat-admin-password"  # the key is kept
    assert box.open(None) is None
    assert box.open("written-before-sealing") == "written-before-sealing"


def test_another_key_cannot_open(tmp_path: Path) -> None:
    sealed = SecretBox(tmp_path / "a").seal("secret")
    with pytest.raises(SecretBoxError, match="sealed with another key"):
        SecretBox(tmp_path / "b").open(sealed)


def test_key_is_private_even_with_a_loose_umask_and_tightened_when_loosened(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path / KEY_FILENAME)
    finally:
        os.umask(old)
    key = tmp_path / KEY_FILENAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    load_or_create_key(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILENAME
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and keys[0] == path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILENAME]  # no temporary file left


def raw_rows(url: str) -> str:
    """The deployments table as stored on disk, read without the ORM."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return json.dumps(conn.execute("SELECT * FROM deployments").fetchall())


def test_clear_secrets_of_older_rows_are_sealed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ai4lab.sqlite'}"
    db.upgrade(url)
    box = SecretBox(tmp_path)
    flower = deps.create(url, owner="fiona", kind="tool", name="ai4lab-flower")
    deps.set_status(url, flower.id, "running", backend_state={"token": "flower-token-in-clear", "pid": 1})
    cvat = deps.create(url, owner="carl", kind="tool", name="ai4lab-cvat", backend="nomad")
    deps.set_status(url, cvat.id, "running", backend_state={"cvat_user": "admin",
                                                            "cvat_password": box.seal("already-sealed")})
    assert "flower-token-in-clear" in raw_rows(url)

    assert deps.seal_secrets(url, box.seal, box.is_sealed) == 1
    rows = raw_rows(url)
    assert "flower-token-in-clear" not in rows and "already-sealed" not in rows
    state = deps.get(url, flower.id).backend_state  # type: ignore[union-attr]
    assert state["pid"] == 1 and box.open(state["token"]) == "flower-token-in-clear"
    cvat_state = deps.get(url, cvat.id).backend_state  # type: ignore[union-attr]
    assert box.open(cvat_state["cvat_password"]) == "already-sealed"
    assert deps.seal_secrets(url, box.seal, box.is_sealed) == 0
