"""My storage through the API, the Python client and ``ai4lab storage``, against a real platform:
streamed uploads and downloads, rename, delete, and the role's storage quota.

The quota is tested with the role defaults: a sparse file (no disk space taken)
fills the user's storage up to just below what the role allows.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from ai4lab.client import ApiError, Client
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"
MB = 1_000_000


def client_of(platform: Platform, name: str, role: str = "intermediate") -> Client:
    platform.add_user(name, f"{name}-password", role=role)
    return Client(platform.url + API, platform.token(name))


def cli(platform: Platform, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = platform.env | {"AI4LAB_API_URL": platform.url + API, "AI4LAB_API_TOKEN": token}
    return subprocess.run(
        [str(platform.bin_dir / "ai4lab"), "storage", *args], env=env, capture_output=True, text=True, timeout=120
    )


def fill(platform: Platform, user: str, leave: int) -> Path:
    """A sparse file that takes the user's storage to ``leave`` bytes below their quota."""
    me = Client(platform.url + API, platform.token(user)).me()
    root = platform.state / "storage" / user
    root.mkdir(exist_ok=True)
    big = root / "filler.bin"
    had = big.stat().st_size if big.exists() else 0
    with big.open("ab") as f:
        f.truncate(had + me["storage"]["allowed_bytes"] - me["storage"]["used_bytes"] - leave)
    return big


def test_streamed_upload_download_rename_delete(platform: Platform, tmp_path: Path) -> None:
    alice = client_of(platform, "st-alice")
    data = os.urandom(3 * MB + 17)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    sent: list[int] = []
    entry = alice.upload(local, "datasets/raw/big.bin", progress=sent.append)
    assert entry == {**entry, "path": "datasets/raw/big.bin", "size": len(data), "type": "file"}
    assert len(sent) == 3 and sum(sent) == len(data)  # streamed in parts of 1 MiB
    assert [e["name"] for e in alice.ls("datasets/raw")] == ["big.bin"]
    assert alice.ls("datasets/raw/big.bin")[0]["size"] == len(data)  # a file's own entry, without reading it

    got: list[tuple[int, int]] = []
    alice.get("datasets/raw/big.bin", tmp_path / "back.bin", progress=lambda n, size: got.append((n, size)))
    assert (tmp_path / "back.bin").read_bytes() == data
    assert sum(n for n, _ in got) == len(data) and {size for _, size in got} == {len(data)}

    # a name with spaces and a '#' travels as it is
    alice.upload(local, "notes/a b#1.bin")
    assert alice.download("notes/a b#1.bin") == data

    moved = alice.move("datasets/raw", "datasets/clean")
    assert moved["path"] == "datasets/clean" and moved["type"] == "directory"
    assert [e["name"] for e in alice.ls("datasets")] == ["clean"]
    with pytest.raises(ApiError) as taken:
        alice.move("notes/a b#1.bin", "datasets/clean/big.bin")
    assert taken.value.status == 409 and "already exists" in str(taken.value)
    alice.move("notes/a b#1.bin", "datasets/clean/big.bin", overwrite=True)
    with pytest.raises(ApiError) as inside:
        alice.move("datasets", "datasets/clean/deeper")
    assert inside.value.status == 400 and "into itself" in str(inside.value)
    with pytest.raises(ApiError) as out:
        alice.move("datasets/clean", "../elsewhere")
    assert out.value.status == 400 and "'..' is not allowed" in str(out.value)
    with pytest.raises(ApiError) as missing:
        alice.move("nothing-here", "x")
    assert missing.value.status == 404

    alice.rm("datasets")
    assert [e["name"] for e in alice.ls()] == ["notes"]

    # another user's storage is their own: the same path is not found there
    bob = client_of(platform, "st-bob")
    with pytest.raises(ApiError) as hidden:
        bob.download("notes/x")
    assert hidden.value.status == 404
    alice.upload(local, "notes/x")
    with pytest.raises(ApiError):
        bob.download("notes/x")
    with pytest.raises(ApiError):
        bob.rm("notes/x")
    assert alice.download("notes/x") == data


def test_a_move_keeps_a_link_out_as_a_link(platform: Platform, tmp_path: Path) -> None:
    carol = client_of(platform, "st-carol")
    carol.mkdir("here")
    root = platform.state / "storage" / "st-carol"
    (root / "out").symlink_to(platform.state)
    carol.move("out", "here/still-a-link")
    assert os.readlink(root / "here" / "still-a-link") == str(platform.state)
    assert (platform.state / "secrets.json").exists()  # what it points to did not move
    with pytest.raises(ApiError) as through:
        carol.move("here/still-a-link/secrets.json", "mine.json")
    assert through.value.status == 400 and "leaves your storage" in str(through.value)


def test_the_cli_lists_uploads_downloads_moves_and_deletes(platform: Platform, tmp_path: Path) -> None:
    platform.add_user("st-dave", "st-dave-password", role="intermediate")
    token = platform.token("st-dave")
    folder = tmp_path / "digits"
    (folder / "7").mkdir(parents=True)
    (folder / "7" / "a.png").write_bytes(b"png" * 1000)
    (folder / "labels.csv").write_text("file,label\n7/a.png,7\n")

    refused = cli(platform, token, "put", str(folder))
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert "add --recursive" in refused.stderr

    put = cli(platform, token, "put", "-r", str(folder), "datasets/")
    assert put.returncode == 0, put.stderr
    assert "datasets/digits/7/a.png" in put.stdout and "datasets/digits/labels.csv" in put.stdout

    ls = cli(platform, token, "ls", "datasets/digits")
    assert ls.returncode == 0 and "7/" in ls.stdout and "labels.csv" in ls.stdout

    get = cli(platform, token, "get", "datasets/digits/labels.csv", str(tmp_path))
    assert get.returncode == 0, get.stderr
    assert (tmp_path / "labels.csv").read_text() == "file,label\n7/a.png,7\n"

    missing = cli(platform, token, "get", "datasets/nothing.csv", str(tmp_path))
    assert missing.returncode == 1 and "404" in missing.stderr and not (tmp_path / "nothing.csv").exists()

    assert cli(platform, token, "mv", "datasets/digits", "datasets/mnist").returncode == 0
    folder_rm = cli(platform, token, "rm", "datasets/mnist")
    assert folder_rm.returncode == 2 and "add --recursive" in folder_rm.stderr
    assert cli(platform, token, "rm", "datasets/mnist/labels.csv").returncode == 0
    assert cli(platform, token, "rm", "-r", "datasets/mnist").returncode == 0
    assert "mnist" not in cli(platform, token, "ls", "datasets").stdout


def test_writes_over_the_quota_are_refused_and_leave_nothing(platform: Platform, tmp_path: Path) -> None:
    erin = client_of(platform, "st-erin")
    erin.upload(_file(tmp_path / "keep.txt", b"kept as it was"), "keep.txt")
    me = erin.me()
    assert me["quota"]["storage_gb"] == 50 and me["storage"]["allowed_bytes"] == 50 * 10**9
    assert me["storage"]["used_bytes"] == len(b"kept as it was")
    fill(platform, "st-erin", leave=MB)
    assert erin.me()["storage"]["used_bytes"] == 50 * 10**9 - MB

    big = _file(tmp_path / "two.bin", os.urandom(2 * MB))
    with pytest.raises(ApiError) as over:
        erin.upload(big, "data/two.bin")
    assert over.value.status == 507
    assert "storage quota exceeded" in str(over.value) and "50.0 GB your role allows" in str(over.value)
    with pytest.raises(ApiError) as replace:
        erin.upload(big, "keep.txt")
    assert replace.value.status == 507
    assert erin.download("keep.txt") == b"kept as it was"

    # without a declared length the upload is counted as it arrives, and dropped at the limit
    api = platform.api(platform.token("st-erin"))
    r = api.put(f"{API}/storage/data/streamed.bin", content=iter([os.urandom(MB // 2)] * 4))
    assert r.status_code == 507, r.text
    # several files in one form: all or none
    r = api.post(
        f"{API}/storage/data", files=[("files", ("a.bin", os.urandom(MB // 2))), ("files", ("b.bin", os.urandom(MB)))]
    )
    assert r.status_code == 507 and "used" in r.json()["detail"]
    root = platform.state / "storage" / "st-erin"
    assert sorted(p.name for p in root.rglob("*")) == ["data", "filler.bin", "keep.txt"]
    assert list((root / "data").iterdir()) == []

    small = erin.upload(_file(tmp_path / "small.bin", b"x" * 1000), "data/small.bin")  # what fits still goes
    assert small["size"] == 1000

    # a full storage starts no job that writes to it
    fill(platform, "st-erin", leave=0)
    r = api.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "dataset": "data"})
    assert r.status_code == 507 and "your storage is full" in r.json()["detail"], r.text


def test_admins_see_everyones_storage_use(platform: Platform) -> None:
    admin_api = platform.api(platform.token("admin"))
    frank = client_of(platform, "st-frank", role="basic")
    frank.upload(_file(platform.state.parent / "st-frank.txt", b"y" * 1234), "f.txt")
    usage = admin_api.get(f"{API}/admin/usage").json()
    assert usage["storage"]["st-frank"] == {"used_bytes": 1234, "allowed_bytes": 5 * 10**9}
    assert usage["quotas"]["basic"]["storage_gb"] == 5
    page = admin_api.get(f"{API}/admin")
    assert 'id="storage-usage"' in page.text and "1.2 kB" in page.text
    assert platform.api(platform.token("st-frank")).get(f"{API}/admin/usage").status_code == 403


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
