"""The marketplace through the platform API of a running platform (real hub, real token checks)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.ai4os_data import MISSING_REPO, RemoteCatalogs
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab/catalog"


@pytest.fixture(scope="module")
def admin(platform: Platform) -> httpx.Client:
    api = platform.api(platform.token("admin"))
    # the API refreshes stale remote sources in the background at start; wait for it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.get(f"{API}/modules", params={"source": "ai4os-modules"}).json()["total"] > 0:
            break
        time.sleep(0.5)
    return api


@pytest.fixture(scope="module")
def users(platform: Platform) -> dict[str, httpx.Client]:
    platform.add_user("pub-basic", "pub-basic-pw", role="basic")
    platform.add_user("pub-inter", "pub-inter-pw", role="intermediate")
    platform.add_user("pub-other", "pub-other-pw", role="advanced")
    return {n: platform.api(platform.token(n)) for n in ("pub-basic", "pub-inter", "pub-other")}


def ids(result: dict) -> list[str]:
    return [i["id"] for i in result["items"]]


def test_anonymous_can_browse(platform: Platform, admin: httpx.Client) -> None:
    r = httpx.get(f"{platform.url}{API}/modules", params={"per_page": 100})
    assert r.status_code == 200
    body = r.json()
    assert "ai4os-demo-app" in ids(body) and body["total"] == len(body["items"])


def test_every_shared_file_is_reported(admin: httpx.Client, remote_catalogs: RemoteCatalogs) -> None:
    modules = ids(admin.get(f"{API}/modules", params={"per_page": 200}).json())
    tools = ids(admin.get(f"{API}/tools", params={"per_page": 200}).json())
    errors = admin.get(f"{API}/errors").json()
    by_item = {e["item"]: e["reason"] for e in errors}
    for exp in remote_catalogs.expected:
        if exp.valid:
            assert exp.item_id in (modules if exp.kind == "module" else tools), exp
        else:
            assert exp.item_id in by_item, exp
            assert "mapping values are not allowed here" in by_item[exp.item_id]
    assert MISSING_REPO in by_item
    broken = [e for e in errors if e["source"] == "broken"]
    assert broken and broken[0]["item"] == "*" and "nonexistent" in broken[0]["reason"]


def test_errors_and_refresh_are_admin_only(users: dict[str, httpx.Client]) -> None:
    assert users["pub-inter"].get(f"{API}/errors").status_code == 403
    assert users["pub-inter"].post(f"{API}/refresh").status_code == 403


def test_refresh(admin: httpx.Client) -> None:
    r = admin.post(f"{API}/refresh")
    assert r.status_code == 200
    assert r.json()["modules"] >= 14 and r.json()["tools"] == 8  # 6 AI4OS tools + the bundled ai4lab-flower and ai4lab-cvat


def test_search_filters_sort_pages(admin: httpx.Client) -> None:
    get = lambda **p: admin.get(f"{API}/modules", params=p).json()  # noqa: E731
    assert ids(get(q="yolo"))[0] == "ai4os-yolo-torch"
    assert "ai4os-demo-app" in ids(get(gpu=True))
    assert "ai4os-demo-app" not in ids(get(gpu=False, per_page=100))
    tf = get(library="TensorFlow", per_page=100)
    assert tf["total"] > 0 and all("TensorFlow" in i["libraries"] for i in tf["items"])
    vision = get(task="Computer Vision", per_page=100)
    assert all("Computer Vision" in i["tasks"] for i in vision["items"])
    assert all(i["source"] == "ai4os-modules" for i in get(source="ai4os-modules", per_page=100)["items"])
    titles = [i["title"].lower() for i in get(sort="title", per_page=100)["items"]]
    assert titles == sorted(titles)
    page1, page2 = get(per_page=5, page=1, sort="title"), get(per_page=5, page=2, sort="title")
    assert len(page1["items"]) == 5 and not set(ids(page1)) & set(ids(page2)) and page1["pages"] >= 3
    r = admin.get(f"{API}/modules", params={"sort": "random"})
    assert r.status_code == 400 and "unknown sort" in r.json()["detail"]
    assert admin.get(f"{API}/modules", params={"per_page": 0}).status_code == 422
    facets = get(facets=True)["facets"]
    assert "ai4os-modules" in facets["sources"] and "Computer Vision" in facets["tasks"]
    assert get(q="tools", per_page=100)["total"] >= 0
    assert "ai4os-federated-server" in ids(admin.get(f"{API}/tools", params={"q": "federated"}).json())


def test_detail_and_config(admin: httpx.Client, users: dict[str, httpx.Client]) -> None:
    item = admin.get(f"{API}/modules/ai4os-demo-app").json()
    assert item["resources_inference"]["gpu"] == 1 and "<p>" in item["description_html"]
    assert item["run"]["docker_image"] == "ai4oshub/ai4os-demo-app"
    assert admin.get(f"{API}/modules/does-not-exist").status_code == 404
    basic = users["pub-basic"].get(f"{API}/modules/ai4os-demo-app/config").json()
    # AI4OS semantics: the recommended GPU cannot be given to a basic user, who may still deploy, warned
    assert basic["deployable"] is True and basic["problems"] == []
    assert any("recommends 1 GPU; it will run on CPU and may be slow" in w for w in basic["warnings"])
    assert basic["hardware"]["gpu_num"] == {"name": "Number of GPUs", "value": 0, "range": [0, 0]}
    adv = users["pub-other"].get(f"{API}/modules/ai4os-demo-app/config").json()
    assert adv["deployable"] is True and adv["warnings"] == []
    assert adv["hardware"]["cpu_num"]["value"] == 2 and adv["hardware"]["gpu_num"]["value"] == 1
    assert adv["hardware"]["gpu_type"]["options"] == ["", "Tesla T4"]


METADATA = {
    "metadata_version": "2.0.0",
    "title": "My retrained classifier",
    "summary": "A classifier retrained on my data",
    "description": "Retrained from the demo app.",
    "dates": {"created": "2026-11-25", "updated": "2026-11-25"},
    "links": {"source_code": "https://example.org/mine", "docker_image": "me/my-classifier"},
    "tags": ["mine"],
    "tasks": ["Classification"],
    "categories": ["AI4 trainable"],
    "libraries": ["Scikit-learn"],
}


def test_publish_visibility_and_promotion(
    platform: Platform, admin: httpx.Client, users: dict[str, httpx.Client]
) -> None:
    body = {"id": "my-classifier", "metadata": METADATA, "lineage": {"parent": "ai4os-demo-app"}}
    r = users["pub-basic"].post(f"{API}/modules", json=body)
    assert r.status_code == 403 and "intermediate" in r.json()["detail"]
    bad = {**body, "metadata": {**METADATA, "tasks": ["Flying"]}}
    r = users["pub-inter"].post(f"{API}/modules", json=bad)
    assert r.status_code == 400 and "tasks" in r.json()["detail"]
    r = users["pub-inter"].post(f"{API}/modules", json={**body, "id": "ai4os-demo-app"})
    assert r.status_code == 409
    r = users["pub-inter"].post(f"{API}/modules", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["visibility"] == "private" and r.json()["lineage"] == {"parent": "ai4os-demo-app"}
    # private: the owner and admins see it, others do not
    assert "my-classifier" in ids(users["pub-inter"].get(f"{API}/modules", params={"q": "retrained"}).json())
    assert users["pub-other"].get(f"{API}/modules/my-classifier").status_code == 404
    assert "my-classifier" not in ids(users["pub-other"].get(f"{API}/modules", params={"per_page": 200}).json())
    assert httpx.get(f"{platform.url}{API}/modules/my-classifier").status_code == 404
    assert admin.get(f"{API}/modules/my-classifier").status_code == 200
    # someone else cannot take over the id, nor withdraw it
    assert users["pub-other"].post(f"{API}/modules", json=body).status_code == 409
    assert users["pub-other"].delete(f"{API}/modules/my-classifier").status_code == 404
    # promotion makes it public
    assert users["pub-inter"].post(f"{API}/modules/my-classifier/promote").status_code == 403
    assert admin.post(f"{API}/modules/my-classifier/promote").json()["visibility"] == "public"
    assert httpx.get(f"{platform.url}{API}/modules/my-classifier").status_code == 200
    # a catalog item cannot be withdrawn; the publication can, by its owner
    assert admin.delete(f"{API}/modules/ai4os-demo-app").status_code == 400
    assert users["pub-inter"].delete(f"{API}/modules/my-classifier").json() == {"withdrawn": "my-classifier"}
    assert admin.get(f"{API}/modules/my-classifier").status_code == 404


def test_publish_package_from_storage(users: dict[str, httpx.Client]) -> None:
    api = users["pub-inter"]
    r = api.post(f"{API}/modules", json={"id": "pkg-mod", "metadata": METADATA, "package_path": "nothing/here"})
    assert r.status_code == 400 and "no folder" in r.json()["detail"]
    r = api.post(f"{API}/modules", json={"id": "pkg-mod", "metadata": METADATA, "package_path": "../etc"})
    assert r.status_code == 400 and "'..'" in r.json()["detail"]
    api.put("/services/ai4lab/storage/code/mymod/pyproject.toml", content=(
        b'[project]\nname = "mymod"\nversion = "0.1"\n'
        b'[project.entry-points."deepaas.v2.model"]\nmymod = "mymod.api"\n'
    ))
    r = api.post(f"{API}/modules", json={"id": "pkg-mod", "metadata": METADATA, "package_path": "code/mymod"})
    assert r.status_code == 201, r.text
    assert r.json()["run"]["entry_point"] == "mymod" and r.json()["runs_locally"] is True
