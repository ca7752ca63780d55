"""ai4lab.core.storage.UserStorage against S3, served by a real moto server on a free port."""

from __future__ import annotations

import uuid

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")

from ai4lab.core.storage import StoragePathError, UserStorage  # noqa: E402
from tests.storage_servers import S3Server, s3_server  # noqa: E402, F401

KEYS = {"aws_access_key_id": "x", "aws_secret_access_key": "y"}


@pytest.fixture(scope="module")
def s3_endpoint(s3_server: S3Server) -> str:  # noqa: F811
    return s3_server.endpoint


@pytest.fixture
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **KEYS)


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    # a fresh bucket per test so that tests (and s3fs' listing cache) do not interfere
    name = f"bucket-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def st(s3_endpoint: str, bucket: str) -> UserStorage:
    s = UserStorage(f"s3://{bucket}/alice", {"endpoint_url": s3_endpoint, "key": "x", "secret": "y"})
    s.ensure_root()  # no-op on S3, must not fail
    return s


def _keys(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_root_is_bucket_prefix(st: UserStorage, bucket: str) -> None:
    assert st.root == f"{bucket}/alice"
    assert st.listdir("") == []


def test_write_read_info(st: UserStorage, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    entry = st.write("./a//b.txt", b"hello")
    assert entry["path"] == "a/b.txt"
    assert entry["name"] == "b.txt"
    assert entry["type"] == "file"
    assert entry["size"] == 5
    assert entry["modified"]
    assert st.read("a/b.txt") == b"hello"
    # really stored in the bucket, under the user's prefix, and nothing else
    assert _keys(s3, bucket) == ["alice/a/b.txt"]
    assert s3.get_object(Bucket=bucket, Key="alice/a/b.txt")["Body"].read() == b"hello"
    assert st.info("a/b.txt")["size"] == 5
    assert st.info("a")["type"] == "directory"
    assert st.is_dir("a")


def test_write_replaces_existing_object(st: UserStorage, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    st.write("a/b.txt", b"first, longer version")
    entry = st.write("a/b.txt", b"v2")
    assert entry["size"] == 2
    assert st.read("a/b.txt") == b"v2"
    # the temporary upload object is gone
    assert _keys(s3, bucket) == ["alice/a/b.txt"]
    assert [e["name"] for e in st.listdir("a")] == ["b.txt"]


def test_listdir(st: UserStorage) -> None:
    st.write("b.txt", b"1")
    st.write("a/inner.txt", b"22")
    entries = st.listdir("")
    assert [(e["path"], e["type"]) for e in entries] == [("a", "directory"), ("b.txt", "file")]
    assert [(e["path"], e["size"]) for e in st.listdir("a")] == [("a/inner.txt", 2)]


def test_delete(st: UserStorage, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    st.write("keep.txt", b"k")
    st.write("a/b/c.txt", b"c")
    st.delete("a")
    assert _keys(s3, bucket) == ["alice/keep.txt"]
    assert [e["path"] for e in st.listdir("")] == ["keep.txt"]
    st.delete("keep.txt")
    assert _keys(s3, bucket) == []


def test_delete_refuses_root(st: UserStorage, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    st.write("precious.txt", b"p")
    with pytest.raises(StoragePathError, match="refusing to delete the storage root"):
        st.delete("")
    assert _keys(s3, bucket) == ["alice/precious.txt"]


def test_not_found_messages(st: UserStorage) -> None:
    with pytest.raises(FileNotFoundError, match=r"^no such file in your storage: 'nope'$"):
        st.read("nope")
    with pytest.raises(FileNotFoundError, match=r"^no such folder in your storage: 'nope'$"):
        st.listdir("nope")
    with pytest.raises(FileNotFoundError, match=r"^no such file or folder in your storage: 'nope'$"):
        st.info("nope")
    with pytest.raises(FileNotFoundError, match=r"^no such file or folder in your storage: 'nope'$"):
        st.delete("nope")


def test_write_over_folder_refused(st: UserStorage) -> None:
    st.write("d/x.txt", b"x")
    with pytest.raises(IsADirectoryError, match="'d' is a folder"):
        st.write("d", b"y")
    assert st.read("d/x.txt") == b"x"


def test_escapes_refused_before_any_s3_call(st: UserStorage, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="bob/secret.txt", Body=b"bob's")
    for bad in ("../bob/secret.txt", "/bob/secret.txt"):
        with pytest.raises(StoragePathError):
            st.read(bad)
        with pytest.raises(StoragePathError):
            st.delete(bad)
        with pytest.raises(StoragePathError):
            st.write(bad, b"overwritten")
    assert _keys(s3, bucket) == ["bob/secret.txt"]
    assert s3.get_object(Bucket=bucket, Key="bob/secret.txt")["Body"].read() == b"bob's"


def test_mkdir_on_s3(st: UserStorage) -> None:
    entry = st.mkdir("x/y")
    assert entry["type"] == "directory"
    assert entry["path"] == "x/y"
