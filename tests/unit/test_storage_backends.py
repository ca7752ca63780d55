"""One storage suite, three backends: a local folder, S3 (a real moto server) and WebDAV (a real wsgidav server).

Each backend is set up as the operator configures it (``settings.storage``), and each
user's storage is what ``open_storage`` gives the platform API for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ai4lab.core.db import upgrade
from ai4lab.core.remote_storage import StorageBackend
from ai4lab.core.settings import Settings
from ai4lab.core.storage import StoragePathError, UserStorage, open_storage
from tests.storage_servers import DavServer, S3Server, dav_server, s3_server  # noqa: F401

Opener = Callable[[str], UserStorage]


def migrated(settings: Settings) -> Settings:
    """Settings whose platform database exists (a user's own storage is looked up there)."""
    settings.state.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    return settings


@pytest.fixture(params=["local", "s3", "webdav"])
def open_for(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Open a user's storage on a fresh backend of the kind asked."""
    if request.param == "local":
        backend = StorageBackend()
    elif request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        backend = s3.backend(s3.new_bucket())
    else:
        dav: DavServer = request.getfixturevalue("dav_server")
        backend = dav.backend(dav.new_folder())
    settings = migrated(Settings(state_dir=tmp_path / "state", storage=backend))

    def opener(user: str) -> UserStorage:
        store = open_storage(settings, user)
        store.ensure_root()
        return store

    return opener


def names(entries: list[dict]) -> list[str]:
    return [e["name"] for e in entries]


def test_list_upload_download_rename_delete(open_for: Opener) -> None:
    st = open_for("alice")
    assert st.listdir("") == []
    entry = st.write("datasets/raw/a.csv", b"x,y\n1,2\n")
    assert (entry["path"], entry["name"], entry["type"], entry["size"]) == ("datasets/raw/a.csv", "a.csv", "file", 8)
    assert entry["modified"]
    st.write("top.txt", b"top")
    assert [(e["name"], e["type"]) for e in st.listdir("")] == [("datasets", "directory"), ("top.txt", "file")]
    assert st.read("datasets/raw/a.csv") == b"x,y\n1,2\n"
    assert b"".join(iter(lambda f=st.open("top.txt"): f.read(2), b"")) == b"top"  # type: ignore[misc]

    st.write("top.txt", b"replaced")
    assert st.read("top.txt") == b"replaced"
    assert names(st.listdir("")) == ["datasets", "top.txt"]  # no temporary upload left

    moved = st.move("datasets/raw/a.csv", "datasets/clean/b.csv")
    assert moved["path"] == "datasets/clean/b.csv" and st.read("datasets/clean/b.csv") == b"x,y\n1,2\n"
    with pytest.raises(FileNotFoundError):
        st.read("datasets/raw/a.csv")
    with pytest.raises(FileExistsError):
        st.move("top.txt", "datasets/clean/b.csv")
    st.move("top.txt", "datasets/clean/b.csv", overwrite=True)
    assert st.read("datasets/clean/b.csv") == b"replaced"

    assert st.usage() == len(b"replaced")
    st.delete("datasets")
    assert st.listdir("") == [] or names(st.listdir("")) == []
    assert st.usage() == 0


def test_a_folder_moves_with_everything_in_it(open_for: Opener) -> None:
    st = open_for("alice")
    st.write("d/one.txt", b"1")
    st.write("d/sub/two.txt", b"22")
    st.move("d", "e")
    assert st.read("e/one.txt") == b"1" and st.read("e/sub/two.txt") == b"22"
    with pytest.raises(FileNotFoundError):
        st.listdir("d")
    with pytest.raises(StoragePathError, match="into itself"):
        st.move("e", "e/sub/deeper")


def test_a_refused_upload_leaves_nothing(open_for: Opener) -> None:
    st = open_for("alice")
    st.write("kept.bin", b"the stored version")
    upload = st.upload("kept.bin")
    upload.write(b"half of a new ver")
    upload.abort()
    assert st.read("kept.bin") == b"the stored version"
    assert names(st.listdir("")) == ["kept.bin"]


@pytest.mark.parametrize("bad", ["../bob/secret.txt", "/bob/secret.txt", "a/../../bob/secret.txt", "x\x00y"])
def test_traversal_is_refused_before_the_server_is_asked(open_for: Opener, bad: str) -> None:
    alice, bob = open_for("alice"), open_for("bob")
    bob.write("secret.txt", b"bob's")
    for attempt in (
        lambda: alice.read(bad),
        lambda: alice.write(bad, b"overwritten"),
        lambda: alice.delete(bad),
        lambda: alice.listdir(bad),
        lambda: alice.move("mine.txt", bad),
        lambda: alice.move(bad, "mine.txt"),
    ):
        with pytest.raises(StoragePathError):
            attempt()
    assert bob.read("secret.txt") == b"bob's"


def test_users_do_not_see_each_other(open_for: Opener) -> None:
    alice, bob = open_for("alice"), open_for("bob")
    alice.write("notes/private.txt", b"alice's")
    assert bob.listdir("") == []
    with pytest.raises(FileNotFoundError):
        bob.read("notes/private.txt")
    bob.write("notes/private.txt", b"bob's")
    assert alice.read("notes/private.txt") == b"alice's"
    assert bob.usage() == len(b"bob's") and alice.usage() == len(b"alice's")
    bob.delete("notes")
    assert alice.read("notes/private.txt") == b"alice's"


def test_a_symlink_out_is_refused_on_a_folder(tmp_path: Path) -> None:
    """Only a local folder has symlinks (a user can make one from a session); S3 and WebDAV have none."""
    settings = migrated(Settings(state_dir=tmp_path / "state"))
    st = open_storage(settings, "alice")
    st.ensure_root()
    secret = tmp_path / "secret.txt"
    secret.write_text("not alice's")
    os.symlink(secret, Path(st.root) / "link.txt")
    os.symlink(tmp_path, Path(st.root) / "outside")
    for attempt in (
        lambda: st.read("link.txt"),
        lambda: st.write("outside/planted.txt", b"x"),
        lambda: st.move("outside/secret.txt", "mine.txt"),
        lambda: st.listdir("outside"),
    ):
        with pytest.raises(StoragePathError, match="leaves your storage"):
            attempt()
    st.move("link.txt", "still-a-link.txt")  # the link itself moves, not what it points to
    assert os.readlink(Path(st.root) / "still-a-link.txt") == str(secret)
    assert secret.read_text() == "not alice's" and not (tmp_path / "planted.txt").exists()


def test_credentials_are_not_shown(s3_server: S3Server) -> None:  # noqa: F811
    backend = s3_server.backend("some-bucket")
    assert "test-secret-key" not in repr(backend) and "test-secret-key" not in str(backend.describe())
    env, path = backend.rclone("alice")
    assert path == "ai4lab:some-bucket/alice" and env["RCLONE_CONFIG_AI4LAB_SECRET_ACCESS_KEY"] == "test-secret-key"
    with pytest.raises(ValueError, match="s3://BUCKET"):
        StorageBackend(type="s3", url="bucket")
    with pytest.raises(ValueError, match="https://HOST"):
        StorageBackend(type="webdav", url="nextcloud.example.org")
