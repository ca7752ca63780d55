"""Platform API hardening against a real platform: symlinks out of the storage, XSRF on
cookie-authenticated writes, ``?token=`` in URLs, unknown request fields.

The symlinks are placed directly in the user's storage folder, as a user's own
session or training can do. Every API that reads or writes storage by path is
asked to go through them; each answer is a 4xx naming the reason, and the file
outside (the state folder's secrets.json, a folder next to it) is neither read
nor changed.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_catalog_api import METADATA
from tests.integration.test_trainings import upload_digit_dataset, wait_status
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"
LEAVES = "leaves your storage through a symlink"
PYPROJECT = b'[project]\nname = "sneaky"\nversion = "0.1"\n[project.entry-points."deepaas.v2.model"]\nsneaky = "sneaky.api"\n'


class Outside:
    """Files outside the user's storage, with a fingerprint to prove they were neither read nor changed."""

    def __init__(self, platform: Platform, tmp: Path) -> None:
        self.secrets = platform.state / "secrets.json"
        self.folder = tmp / "outside"
        self.folder.mkdir()
        (self.folder / "data.txt").write_text("outside data")
        (self.folder / "pyproject.toml").write_bytes(PYPROJECT)
        (self.folder / "7").mkdir()
        (self.folder / "7" / "x.png").write_bytes(b"not yours")

    def snapshot(self) -> dict[str, str]:
        files = [self.secrets, *sorted(p for p in self.folder.rglob("*"))]
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in files}

    def secret_values(self) -> list[str]:
        import json

        return [v for v in json.loads(self.secrets.read_text()).values() if isinstance(v, str) and len(v) > 8]


@pytest.fixture(scope="module")
def sly(platform: Platform) -> httpx.Client:
    platform.add_user("sly", "sly-password", role="intermediate")
    return platform.api(platform.token("sly"))


@pytest.fixture(scope="module")
def links(platform: Platform, sly: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outside]:
    """sly's storage with links out: to-secrets.json (file), state (the state folder), escape (a folder)."""
    outside = Outside(platform, tmp_path_factory.mktemp("escape"))
    assert sly.post(f"{API}/storage/inside").status_code == 200  # creates the storage root too
    root = platform.state / "storage" / "sly"
    (root / "to-secrets.json").symlink_to(outside.secrets)
    (root / "state").symlink_to(platform.state)
    (root / "escape").symlink_to(outside.folder)
    before = outside.snapshot()
    yield outside
    assert outside.snapshot() == before, "a file outside the storage was changed"


def refused(r: httpx.Response, outside: Outside, reason: str = LEAVES) -> None:
    assert 400 <= r.status_code < 500, r.text
    detail = r.json()["detail"]
    assert reason in (detail if isinstance(detail, str) else str(detail)), detail
    for value in outside.secret_values():
        assert value not in r.text
    assert "outside data" not in r.text and "not yours" not in r.text


# -- /storage -----------------------------------------------------------------------------


def test_storage_get_does_not_follow_links_out(sly: httpx.Client, links: Outside) -> None:
    for path in ("to-secrets.json", "state/secrets.json", "state", "escape", "escape/data.txt", "escape/7"):
        refused(sly.get(f"{API}/storage/{path}"), links)
    listing = {e["name"]: e for e in sly.get(f"{API}/storage").json()["content"]}
    assert listing["to-secrets.json"]["type"] == "symlink" and listing["to-secrets.json"]["size"] == 0
    assert listing["inside"]["type"] == "directory"


def test_storage_put_post_delete_do_not_follow_links_out(platform: Platform, sly: httpx.Client,
                                                        links: Outside) -> None:
    refused(sly.put(f"{API}/storage/to-secrets.json", content=b'{"admin_password": "mine"}'), links)
    refused(sly.put(f"{API}/storage/escape/data.txt", content=b"overwritten"), links)
    refused(sly.put(f"{API}/storage/escape/planted.txt", content=b"planted"), links)
    refused(sly.put(f"{API}/storage/state/planted.txt", content=b"planted"), links)
    refused(sly.post(f"{API}/storage/escape/newfolder"), links)
    refused(sly.post(f"{API}/storage/escape", files={"files": ("planted.txt", b"planted")}), links)
    refused(sly.delete(f"{API}/storage/escape/data.txt"), links)
    refused(sly.delete(f"{API}/storage/state/secrets.json"), links)
    # deleting the link itself removes the link, never what it points to
    root = platform.state / "storage" / "sly"
    (root / "spare-link").symlink_to(links.folder)
    assert sly.delete(f"{API}/storage/spare-link").status_code == 200
    assert not (root / "spare-link").is_symlink() and (links.folder / "data.txt").is_file()


# -- training dataset and outputs, batch folders, weights ---------------------------------


def test_training_dataset_through_a_link_is_refused(sly: httpx.Client, links: Outside) -> None:
    before = len(sly.get(f"{API}/deployments", params={"kind": "training"}).json())
    for dataset in ("escape", "escape/7", "storage/escape", "state"):
        r = sly.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "dataset": dataset,
                                                 "args": {"epochs": 1}})
        refused(r, links, f"dataset: '{dataset.removeprefix('storage/')}' {LEAVES}")
    assert len(sly.get(f"{API}/deployments", params={"kind": "training"}).json()) == before


def test_training_outputs_through_a_link_fail_the_training(platform: Platform, sly: httpx.Client, links: Outside,
                                                           tmp_path: Path) -> None:
    """models/ replaced by a link elsewhere: the training fails to start, nothing is written there."""
    dataset = upload_digit_dataset(sly, tmp_path, n=20, folder="datasets/tiny")
    models = platform.state / "storage" / "sly" / "models"
    models.symlink_to(links.folder)
    try:
        r = sly.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "dataset": dataset,
                                                 "args": {"epochs": 1}})
        assert r.status_code == 201, r.text
        dep = wait_status(sly, r.json()["id"], ("failed", "succeeded"))
        assert dep["status"] == "failed" and f"outputs: 'models/ai4lab-digits/{dep['id']}' {LEAVES}" in dep["status_reason"]
        assert not (links.folder / "ai4lab-digits").exists()
    finally:
        models.unlink()


def test_batch_folders_through_a_link_are_refused(sly: httpx.Client, links: Outside) -> None:
    post = lambda **b: sly.post(f"{API}/deployments", json={"kind": "batch", "item": "ai4lab-digits", **b})  # noqa: E731
    refused(post(input="escape/7", output="results/x"), links, f"input: 'escape/7' {LEAVES}")
    assert sly.post(f"{API}/storage/inside/7").status_code == 200
    refused(post(input="inside/7", output="escape/out"), links, f"output: 'escape/out' {LEAVES}")
    refused(post(input="inside/7", output="state/out"), links, f"output: 'state/out' {LEAVES}")
    assert not (links.folder / "out").exists()


def test_weights_through_a_link_are_refused(sly: httpx.Client, links: Outside) -> None:
    r = sly.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits", "weights": "to-secrets.json"})
    refused(r, links, f"weights: 'to-secrets.json' {LEAVES}")
    r = sly.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits", "weights": "escape/data.txt"})
    refused(r, links, f"weights: 'escape/data.txt' {LEAVES}")


# -- publish and the package download -------------------------------------------------------


def test_publish_package_through_a_link_is_refused(platform: Platform, sly: httpx.Client, links: Outside) -> None:
    post = lambda path: sly.post(f"{API}/catalog/modules", json={  # noqa: E731
        "id": "sneaky", "metadata": METADATA, "package_path": path})
    refused(post("escape"), links, f"package_path: 'escape' {LEAVES}")
    refused(post("storage/escape"), links, f"package_path: 'escape' {LEAVES}")
    # a real folder with a link inside it, which builds and downloads would read later
    assert sly.put(f"{API}/storage/code/sneaky/pyproject.toml", content=PYPROJECT).status_code == 200
    (platform.state / "storage" / "sly" / "code" / "sneaky" / "secrets.json").symlink_to(links.secrets)
    refused(post("code/sneaky"), links, f"package_path: 'code/sneaky/secrets.json' {LEAVES}")
    assert sly.get(f"{API}/catalog/modules/sneaky").status_code == 404


def test_package_download_after_swapping_the_folder_for_a_link(platform: Platform, sly: httpx.Client,
                                                               links: Outside) -> None:
    assert sly.put(f"{API}/storage/code/honest/pyproject.toml", content=PYPROJECT).status_code == 200
    r = sly.post(f"{API}/catalog/modules", json={"id": "honest-pkg", "metadata": METADATA,
                                                 "package_path": "code/honest"})
    assert r.status_code == 201, r.text
    r = sly.get(f"{API}/catalog/modules/honest-pkg/package")
    assert r.status_code == 200
    assert tarfile.open(fileobj=io.BytesIO(r.content)).getnames() == ["pyproject.toml"]
    folder = platform.state / "storage" / "sly" / "code" / "honest"
    (folder / "pyproject.toml").unlink()
    folder.rmdir()
    folder.symlink_to(links.folder)  # after publishing: the storage folder now points elsewhere
    # the catalog serves the copy taken when it was published, never what the link points at now
    r = sly.get(f"{API}/catalog/modules/honest-pkg/package")
    assert r.status_code == 200
    assert tarfile.open(fileobj=io.BytesIO(r.content)).getnames() == ["pyproject.toml"]
    assert b"outside data" not in r.content
    assert sly.delete(f"{API}/catalog/modules/honest-pkg").status_code == 200


# -- XSRF and ?token= ------------------------------------------------------------------------


def test_cookie_authenticated_writes_need_the_xsrf_token(platform: Platform) -> None:
    platform.add_user("xena", "xena-password")
    browser = platform.login("xena", "xena-password")
    # a page view: the OAuth flow sets the service's login cookie and its _xsrf cookie
    assert browser.get(f"{API}/me", headers={"Accept": "text/html"}).json()["name"] == "xena"
    xsrf = browser.cookies.get("_xsrf", path=f"{API}/")
    assert xsrf
    r = browser.post(f"{API}/storage/made-by-cookie")
    assert r.status_code == 403 and "XSRF token" in r.json()["detail"]
    r = browser.post(f"{API}/storage/made-by-cookie", headers={"X-XSRFToken": "forged"})
    assert r.status_code == 403 and "does not match" in r.json()["detail"]
    r = browser.delete(f"{API}/deployments/nothing")
    assert r.status_code == 403
    assert not (platform.state / "storage" / "xena" / "made-by-cookie").exists()
    r = browser.post(f"{API}/storage/made-by-cookie", headers={"X-XSRFToken": xsrf})
    assert r.status_code == 200, r.text
    assert (platform.state / "storage" / "xena" / "made-by-cookie").is_dir()
    # a token-authenticated write needs none
    with platform.api(platform.token("xena")) as api:
        assert api.post(f"{API}/storage/made-by-token").status_code == 200


def test_token_in_url_is_off_by_default(platform: Platform) -> None:
    token = platform.token("admin")
    r = httpx.get(f"{platform.url}{API}/me", params={"token": token})
    assert r.status_code == 401 and "allow_token_in_url" in r.json()["detail"]
    r = httpx.get(f"{platform.url}/services/mlflow/api/2.0/mlflow/experiments/search",
                  params={"token": token, "max_results": 1})
    assert r.status_code == 401
    with platform.api(token) as api:
        assert api.get(f"{API}/me").json()["name"] == "admin"


# -- unknown fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "loc"), [
    ({"kind": "ide", "colour": "red"}, ["body", "colour"]),
    ({"kind": "ide", "item": "ai4lab-digits"}, ["body", "item"]),
    ({"kind": "ide", "options": {"cpu": 1, "ram": 2}}, ["body", "options", "ram"]),
    ({"kind": "module", "item": "ai4lab-digits", "dataset": "d"}, ["body", "dataset"]),
    ({"kind": "module", "item": "ai4lab-digits", "hardware": {"cpus": 2}}, ["body", "hardware", "cpus"]),
    ({"kind": "training", "item": "ai4lab-digits", "input": "x"}, ["body", "input"]),
    ({"kind": "batch", "item": "ai4lab-digits", "input": "a", "output": "b", "dataset": "d"}, ["body", "dataset"]),
    ({"kind": "serverless", "item": "ai4lab-digits", "hardware": {}}, ["body", "hardware"]),
    ({"kind": "pipeline", "steps": [{"deployment": "a"}, {"deployment": "b", "colour": 1}]},
     ["body", "steps", 1, "colour"]),
    ({"kind": "tool", "item": "ai4lab-flower", "config": {"roundz": 3}}, ["body", "config", "roundz"]),
    ({"kind": "tool", "item": "ai4lab-cvat", "config": {"storage": {}, "db": "x"}}, ["body", "config", "db"]),
    ({"kind": "tool", "item": "ai4lab-flower", "weights": "x"}, ["body", "weights"]),
])
def test_unknown_deployment_fields_are_422_naming_the_field(sly: httpx.Client, body: dict, loc: list) -> None:
    before = len(sly.get(f"{API}/deployments").json())
    r = sly.post(f"{API}/deployments", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert [e["loc"] for e in errors] == [loc]
    assert errors[0]["msg"].startswith(f"unknown field {loc[-1]!r}")
    assert len(sly.get(f"{API}/deployments").json()) == before


def test_unknown_fields_of_other_bodies_are_422(sly: httpx.Client) -> None:
    r = sly.post(f"{API}/catalog/modules", json={"id": "x-typo", "metadata": METADATA, "package_pth": "code"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "package_pth"]
    assert r.json()["detail"][0]["msg"] == "unknown field 'package_pth': this request does not take it"
    r = sly.post(f"{API}/deployments/nothing/cvat/export", json={"task_id": 7, "fromat": "COCO 1.0"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "fromat"]
