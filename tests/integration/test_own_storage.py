"""Users' own storage on a real platform: one user connects an S3 bucket (a real moto server), another a
WebDAV folder (a real wsgidav server, as Nextcloud speaks it). The platform API, a training and a JupyterLab
session all use it, through fsspec and through an rclone FUSE mount; nobody else sees it, and its password is
never shown again nor kept unsealed.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.test_trainings import upload_digit_dataset, wait_status
from tests.platform_harness import Platform, wait_until
from tests.storage_servers import DavServer, S3Server, dav_server, s3_server  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


def keys(s3: S3Server, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def test_an_s3_bucket_of_my_own_serves_the_api_a_training_and_a_session(
    platform: Platform, s3_server: S3Server, tmp_path: Path  # noqa: F811
) -> None:
    platform.add_user("own-s3", "own-s3-password", role="intermediate")
    token = platform.token("own-s3")
    api = platform.api(token)
    bucket = s3_server.new_bucket()
    body = s3_server.backend(bucket).model_dump(mode="json") | {"password": "wrong-secret", "per_user_folder": False}

    # a wrong key is refused with the server's reason, and nothing is kept
    body["url"] = "s3://no-such-bucket"
    r = api.put(f"{API}/me/storage", json=body)
    assert r.status_code == 400 and "cannot reach your s3 storage" in r.json()["detail"], r.text
    assert api.get(f"{API}/me/storage").json()["source"] == "platform"
    r = api.put(f"{API}/me/storage", json=body | {"url": f"s3://{bucket}", "type": "ftp"})
    assert r.status_code == 422

    body = body | {"url": f"s3://{bucket}", "password": "test-secret-key"}
    where = api.put(f"{API}/me/storage", json=body)
    assert where.status_code == 200, where.text
    assert where.json() | {"endpoint_url": ""} == {
        "source": "own", "type": "s3", "url": f"s3://{bucket}", "endpoint_url": "", "region": "",
        "vendor": "other", "username": "test-access-key", "password": "***", "per_user_folder": False,
    }  # fmt: skip
    me = api.get(f"{API}/me").json()
    assert me["storage"] == {"used_bytes": None, "allowed_bytes": None}  # their own: no platform quota

    # the platform API reads and writes the bucket
    folder = upload_digit_dataset(api, tmp_path / "digits", n=150)
    assert any(k.startswith("datasets/digits/") and k.endswith(".png") for k in keys(s3_server, bucket))
    assert {e["name"] for e in api.get(f"{API}/storage/{folder}").json()["content"]} >= {"0", "9"}

    # a training reads its dataset from the bucket (mounted) and writes its weights there
    r = api.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "dataset": folder,
                                             "args": {"epochs": 2}})  # fmt: skip
    assert r.status_code == 201, r.text
    dep = wait_status(api, r.json()["id"], ("succeeded", "failed"), timeout=240)
    assert dep["status"] == "succeeded", dep["status_reason"]
    wait_until(
        lambda: f"models/ai4lab-digits/{dep['id']}/model.joblib" in keys(s3_server, bucket), 30,
        "the weights reached the bucket",
    )  # fmt: skip
    mount = platform.state / "storage" / "own-s3"
    assert mount.is_mount()

    # a session sees the bucket's files in its file browser (the Jupyter contents API under storage/)
    assert api.post("/hub/api/users/own-s3/server", json={"cpu": 1, "ram_gb": 2}).status_code in (201, 202)
    try:
        platform.wait_server(token, "own-s3")
        contents = api.get("/user/own-s3/api/contents/storage/datasets/digits").json()
        assert {c["name"] for c in contents["content"]} >= {"0", "9"}
        models = api.get(f"/user/own-s3/api/contents/storage/models/ai4lab-digits/{dep['id']}").json()
        assert "model.joblib" in {c["name"] for c in models["content"]}
    finally:
        api.delete("/hub/api/users/own-s3/server")

    # nobody else sees it
    other = platform.new_user_api("own-s3-neighbour", role="intermediate")
    assert other.get(f"{API}/storage/datasets/digits").status_code == 404
    assert other.get(f"{API}/me/storage").json()["source"] == "platform"
    listing = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "ls", str(mount)], capture_output=True
    )
    assert listing.returncode != 0

    # the password is sealed in the database and shown nowhere
    with sqlite3.connect(platform.state / "ai4lab.sqlite") as db:
        dump = "\n".join(db.iterdump())
    assert "test-secret-key" not in dump and "test-secret-key" not in platform.hub_log()
    assert "test-secret-key" not in api.get(f"{API}/me/storage").text

    # back to the platform's storage: the bucket's files stay in the bucket, and are no longer mounted
    assert api.delete(f"{API}/me/storage").json()["source"] == "platform"
    wait_until(lambda: not mount.is_mount(), 15, "the bucket unmounted")
    assert api.get(f"{API}/storage/datasets/digits").status_code == 404
    assert any(k.startswith("datasets/digits/") for k in keys(s3_server, bucket))
    assert api.delete(f"{API}/me/storage").status_code == 404


def test_a_webdav_folder_of_my_own_from_the_cli(platform: Platform, dav_server: DavServer, tmp_path: Path) -> None:  # noqa: F811
    platform.add_user("own-dav", "own-dav-password", role="basic")
    token = platform.token("own-dav")
    folder = dav_server.new_folder()
    env = platform.env | {"AI4LAB_API_URL": platform.url + API, "AI4LAB_API_TOKEN": token}

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(platform.bin_dir / "ai4lab"), "storage", *args], env=env, capture_output=True,
                              text=True, input=stdin, timeout=120)  # fmt: skip

    wrong = cli("connect", "webdav", f"{dav_server.url}/{folder}", "-u", "dav-user", "--password-stdin", stdin="nope\n")
    assert wrong.returncode == 1 and "cannot reach your webdav storage" in wrong.stderr
    done = cli("connect", "webdav", f"{dav_server.url}/{folder}", "-u", "dav-user", "--vendor", "nextcloud",
               "--password-stdin", stdin="dav-password\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"my own webdav storage at {dav_server.url}/{folder}, as dav-user" in done.stdout
    notes = tmp_path / "notes.txt"
    notes.write_text("kept on my Nextcloud")
    assert cli("put", str(notes), "papers/").returncode == 0
    assert (dav_server.root / folder / "papers" / "notes.txt").read_text() == "kept on my Nextcloud"
    assert "notes.txt" in cli("ls", "papers").stdout

    # a job of theirs sees it as a folder: the mount
    api = platform.api(token)
    path = platform.state / "storage" / "own-dav"
    r = api.post(f"{API}/deployments", json={"kind": "batch", "item": "ai4lab-digits", "input": "papers",
                                             "output": "answers"})  # fmt: skip
    assert path.is_mount(), r.text
    assert "dav-password" not in r.text
    assert cli("disconnect").returncode == 0 and "the platform's storage" in cli("where").stdout
    wait_until(lambda: not path.is_mount(), 15, "the WebDAV folder unmounted")


def test_the_storage_settings_page_connects_my_own(platform: Platform, dav_server: DavServer) -> None:  # noqa: F811
    import re

    platform.add_user("own-page", "own-page-password", role="intermediate")
    browser = platform.login("own-page", "own-page-password")
    page = browser.get(f"{API}/settings/storage", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "The platform's storage: 0 B used of 50.0 GB." in page.text
    assert 'id="connect"' in page.text and f'href="{API}/settings/storage">My storage' in page.text
    xsrf = re.search(r'name="ai4lab-xsrf" content="([^"]+)"', page.text)
    assert xsrf, "the page carries the XSRF token its script sends"
    folder = dav_server.new_folder()
    body = {"type": "webdav", "url": f"{dav_server.url}/{folder}", "username": "dav-user", "password": "dav-password",
            "vendor": "nextcloud"}  # fmt: skip
    assert browser.put(f"{API}/me/storage", json=body).status_code == 403  # a cookie alone does not write
    r = browser.put(f"{API}/me/storage", json=body, headers={"X-XSRFToken": xsrf.group(1)})
    assert r.status_code == 200, r.text
    page = browser.get(f"{API}/settings/storage", headers={"Accept": "text/html"})
    assert f"My own webdav storage at <code>{dav_server.url}/{folder}</code>" in page.text
    assert "dav-password" not in page.text and 'id="disconnect"' in page.text
    r = browser.delete(f"{API}/me/storage", headers={"X-XSRFToken": xsrf.group(1)})
    assert r.json()["source"] == "platform"
