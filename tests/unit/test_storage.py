"""ai4lab.core.storage: path cleaning and UserStorage on a local folder (file:// URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4lab.core.storage import StoragePathError, UserStorage, clean_relpath, resolve_in_storage

# -- clean_relpath -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("./a//b", "a/b"),
        ("a/b/", "a/b"),
        ("a/./b/.", "a/b"),
        ("a\\b", "a/b"),
        ("", ""),
        (".", ""),
        ("./", ""),
        ("name with spaces.txt", "name with spaces.txt"),
        ("..hidden/x..y", "..hidden/x..y"),  # '..' inside a name is not a parent reference
    ],
)
def test_clean_relpath_normalises(raw: str, expected: str) -> None:
    assert clean_relpath(raw) == expected


@pytest.mark.parametrize("raw", ["..", "../x", "a/../b", "a/..", "a/b/../../..", "a\\..\\b", "./.."])
def test_clean_relpath_refuses_parent(raw: str) -> None:
    with pytest.raises(StoragePathError, match=r"'\.\.' is not allowed"):
        clean_relpath(raw)


@pytest.mark.parametrize("raw", ["/etc/passwd", "/", "\\\\server\\share", "C:\\Windows", "c:/x"])
def test_clean_relpath_refuses_absolute(raw: str) -> None:
    with pytest.raises(StoragePathError, match="absolute paths are not allowed"):
        clean_relpath(raw)


@pytest.mark.parametrize("raw", ["a\x00b", "\x00", "../\x00"])
def test_clean_relpath_refuses_nul(raw: str) -> None:
    with pytest.raises(StoragePathError, match="NUL byte"):
        clean_relpath(raw)


def test_storage_path_error_is_value_error() -> None:
    # callers (the API) map ValueError to 400
    assert issubclass(StoragePathError, ValueError)


# -- UserStorage on a local folder ----------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage" / "alice"


@pytest.fixture
def st(root: Path) -> UserStorage:
    s = UserStorage(f"file://{root}", {})
    s.ensure_root()
    return s


def test_ensure_root_creates_folder(root: Path) -> None:
    s = UserStorage(f"file://{root}", {})
    assert not root.exists()
    s.ensure_root()
    assert root.is_dir()
    assert s.listdir("") == []


def test_listdir_of_missing_root_is_empty(root: Path) -> None:
    s = UserStorage(f"file://{root}", {})
    assert s.listdir("") == []
    assert not root.exists()


def test_write_read_and_info(st: UserStorage, root: Path) -> None:
    entry = st.write("./notes//a.txt", b"hello")
    assert entry["path"] == "notes/a.txt"
    assert entry["name"] == "a.txt"
    assert entry["type"] == "file"
    assert entry["size"] == 5
    assert isinstance(entry["modified"], str) and entry["modified"]
    # really on disk, under the user's root, parent created
    assert (root / "notes" / "a.txt").read_bytes() == b"hello"
    assert st.read("notes/a.txt") == b"hello"
    assert st.info("notes/a.txt") == entry | {"modified": st.info("notes/a.txt")["modified"]}
    folder = st.info("notes")
    assert folder["type"] == "directory"
    assert folder["path"] == "notes"
    assert folder["name"] == "notes"
    top = st.info("")
    assert top["type"] == "directory" and top["path"] == "" and top["name"] == ""


def test_write_replaces_existing_file(st: UserStorage, root: Path) -> None:
    st.write("f.bin", b"a much longer first version")
    entry = st.write("f.bin", b"v2")
    assert entry["size"] == 2
    assert st.read("f.bin") == b"v2"
    # no temporary upload file is left behind
    assert sorted(p.name for p in root.iterdir()) == ["f.bin"]
    assert [e["name"] for e in st.listdir("")] == ["f.bin"]


def test_write_empty_file(st: UserStorage) -> None:
    assert st.write("empty", b"")["size"] == 0
    assert st.read("empty") == b""


def test_write_refuses_root_and_folders(st: UserStorage) -> None:
    with pytest.raises(StoragePathError, match="give a file path"):
        st.write("", b"x")
    with pytest.raises(StoragePathError, match="give a file path"):
        st.write("./", b"x")
    st.mkdir("d")
    with pytest.raises(IsADirectoryError, match="'d' is a folder"):
        st.write("d", b"x")
    assert st.is_dir("d")


def test_listdir_sorts_folders_first(st: UserStorage) -> None:
    st.write("b.txt", b"1")
    st.write("a.txt", b"22")
    st.mkdir("zdir")
    st.write("cdir/inner.txt", b"3")
    entries = st.listdir("")
    assert [(e["name"], e["type"]) for e in entries] == [
        ("cdir", "directory"),
        ("zdir", "directory"),
        ("a.txt", "file"),
        ("b.txt", "file"),
    ]
    assert [e["path"] for e in st.listdir("cdir")] == ["cdir/inner.txt"]
    assert st.listdir("zdir") == []


def test_mkdir_nested_and_idempotent(st: UserStorage, root: Path) -> None:
    entry = st.mkdir("x/y/z")
    assert entry == entry | {"path": "x/y/z", "name": "z", "type": "directory"}
    assert (root / "x" / "y" / "z").is_dir()
    assert st.mkdir("x/y/z")["type"] == "directory"  # exists already: fine


def test_delete_file_and_folder_recursively(st: UserStorage, root: Path) -> None:
    st.write("keep.txt", b"k")
    st.write("d/e/f.txt", b"f")
    st.delete("keep.txt")
    assert not (root / "keep.txt").exists()
    st.delete("d")
    assert not (root / "d").exists()
    assert st.listdir("") == []
    assert root.is_dir()


@pytest.mark.parametrize("rel", ["", ".", "./", ".//."])
def test_delete_refuses_root(st: UserStorage, root: Path, rel: str) -> None:
    st.write("precious.txt", b"p")
    with pytest.raises(StoragePathError, match="refusing to delete the storage root"):
        st.delete(rel)
    assert (root / "precious.txt").read_bytes() == b"p"


def test_not_found_messages_name_the_path(st: UserStorage) -> None:
    with pytest.raises(FileNotFoundError, match=r"^no such file in your storage: 'nope/x\.txt'$"):
        st.read("./nope//x.txt")
    with pytest.raises(FileNotFoundError, match=r"^no such folder in your storage: 'nope'$"):
        st.listdir("nope")
    with pytest.raises(FileNotFoundError, match=r"^no such file or folder in your storage: 'nope'$"):
        st.info("nope")
    with pytest.raises(FileNotFoundError, match=r"^no such file or folder in your storage: 'nope'$"):
        st.delete("nope")


def test_read_of_a_folder_is_not_found(st: UserStorage) -> None:
    st.mkdir("d")
    with pytest.raises(FileNotFoundError, match="no such file in your storage: 'd'"):
        st.read("d")


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/passwd", "a/../../b", "x\x00y"])
def test_every_operation_refuses_escapes(st: UserStorage, tmp_path: Path, bad: str) -> None:
    outside = tmp_path / "storage" / "escape.txt"
    for op in (
        lambda: st.write(bad, b"x"),
        lambda: st.read(bad),
        lambda: st.info(bad),
        lambda: st.listdir(bad),
        lambda: st.mkdir(bad),
        lambda: st.delete(bad),
        lambda: st.is_dir(bad),
        lambda: st.open(bad, "wb"),
    ):
        with pytest.raises(StoragePathError):
            op()
    assert not outside.exists()
    assert sorted(p.name for p in (tmp_path / "storage").iterdir()) == ["alice"]


def test_open_streams_inside_root(st: UserStorage, root: Path) -> None:
    with st.open("s.txt", "wb") as f:
        f.write(b"streamed")
    with st.open("s.txt") as f:
        assert f.read() == b"streamed"
    assert (root / "s.txt").read_bytes() == b"streamed"


def test_users_do_not_see_each_other(tmp_path: Path) -> None:
    alice = UserStorage(f"file://{tmp_path}/alice", {})
    alice2 = UserStorage(f"file://{tmp_path}/alice2", {})
    alice.ensure_root()
    alice2.ensure_root()
    alice2.write("secret.txt", b"s")
    assert alice.listdir("") == []
    with pytest.raises(FileNotFoundError):
        alice.read("secret.txt")


# -- symlinks placed in the storage (from a session, a terminal, a training) -----------


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    """A file outside every user's storage, like the state folder's secrets.json."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "secrets.json").write_text('{"admin_password": "hunter2"}')
    return state / "secrets.json"


def test_resolve_in_storage_refuses_links_that_leave(root: Path, secrets: Path) -> None:
    root.mkdir(parents=True)
    (root / "inside").mkdir()
    (root / "to-secrets").symlink_to(secrets)
    (root / "to-state").symlink_to(secrets.parent)
    (root / "to-inside").symlink_to("inside")
    (root / "dangling-out").symlink_to(secrets.parent / "new.txt")
    (root / "loop").symlink_to("loop")
    assert resolve_in_storage(root, "inside/new.txt") == root.resolve() / "inside" / "new.txt"
    assert resolve_in_storage(root, "to-inside/x") == root.resolve() / "inside" / "x"
    assert resolve_in_storage(root, "") == root.resolve()
    for rel in ("to-secrets", "to-state", "to-state/secrets.json", "to-state/new/deeper.txt", "dangling-out"):
        with pytest.raises(StoragePathError, match=f"^'{rel}' leaves your storage through a symlink$"):
            resolve_in_storage(root, rel)
    with pytest.raises(StoragePathError, match="cannot be resolved"):
        resolve_in_storage(root, "loop/x")


def test_a_symlinked_root_is_fine(tmp_path: Path) -> None:
    """An operator may put a user's storage elsewhere and link it: the real root is the reference."""
    real = tmp_path / "big-disk" / "alice"
    (real / "data").mkdir(parents=True)
    link = tmp_path / "alice"
    link.symlink_to(real)
    assert resolve_in_storage(link, "data/x.csv") == real.resolve() / "data" / "x.csv"
    st = UserStorage(f"file://{link}", {})
    st.write("data/x.csv", b"1,2")
    assert [e["path"] for e in st.listdir("data")] == ["data/x.csv"]


def test_no_operation_follows_a_link_out(st: UserStorage, root: Path, secrets: Path) -> None:
    (root / "to-secrets").symlink_to(secrets)
    (root / "to-state").symlink_to(secrets.parent)
    before = secrets.read_bytes()
    for rel in ("to-secrets", "to-state/secrets.json"):
        for op in (
            lambda: st.read(rel),
            lambda: st.info(rel),
            lambda: st.open(rel),
            lambda: st.open(rel, "wb"),
            lambda: st.write(rel, b"overwritten"),
            lambda: st.is_dir(rel),
        ):
            with pytest.raises(StoragePathError, match="leaves your storage through a symlink"):
                op()
    for op in (lambda: st.listdir("to-state"), lambda: st.mkdir("to-state/x"),
               lambda: st.write("to-state/planted.txt", b"x"), lambda: st.delete("to-state/secrets.json")):
        with pytest.raises(StoragePathError, match="'to-state.*' leaves your storage through a symlink"):
            op()
    assert secrets.read_bytes() == before
    assert sorted(p.name for p in secrets.parent.iterdir()) == ["secrets.json"]


def test_listing_does_not_describe_what_a_link_out_points_to(st: UserStorage, root: Path, secrets: Path) -> None:
    st.write("inside/a.txt", b"abc")
    (root / "to-secrets").symlink_to(secrets)
    (root / "to-inside").symlink_to("inside")
    (root / "to-a").symlink_to("inside/a.txt")
    entries = {e["name"]: e for e in st.listdir("")}
    assert entries["to-secrets"]["type"] == "symlink" and entries["to-secrets"]["size"] == 0
    assert entries["to-inside"]["type"] == "directory"
    assert entries["to-a"]["type"] == "file" and entries["to-a"]["size"] == 3
    assert [e["path"] for e in st.listdir("to-inside")] == ["to-inside/a.txt"]


def test_delete_removes_the_link_not_its_target(st: UserStorage, root: Path, secrets: Path) -> None:
    (root / "to-secrets").symlink_to(secrets)
    (root / "to-state").symlink_to(secrets.parent)
    st.delete("to-secrets")
    st.delete("to-state")
    assert not (root / "to-secrets").is_symlink() and not (root / "to-state").is_symlink()
    assert secrets.is_file() and sorted(p.name for p in secrets.parent.iterdir()) == ["secrets.json"]
