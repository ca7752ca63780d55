"""Remote clients with a token only (as VS Code's Jupyter extension), and VS Code sessions."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.kernel_client import execute_in_session
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]


@pytest.fixture(scope="module")
def carol(platform: Platform) -> dict[str, str]:
    platform.add_user("carol", "carol-password", role="advanced")
    return {"name": "carol", "token": platform.token("carol")}


def test_token_only_client_starts_server_and_runs_code(platform: Platform, carol: dict[str, str]) -> None:
    api = platform.api(carol["token"])
    r = api.post("/hub/api/users/carol/servers/remote", json={"ide": "lab", "cpu": 1, "ram_gb": 1})
    assert r.status_code in (201, 202), r.text
    platform.wait_server(carol["token"], "carol", "remote")
    out = execute_in_session(platform.url, "carol/remote", carol["token"], "print(6 * 7)")
    assert out.strip() == "42"
    r = api.delete("/hub/api/users/carol/servers/remote")
    assert r.status_code in (202, 204)


def test_platform_api_starts_and_stops_an_ide_deployment(platform: Platform, carol: dict[str, str]) -> None:
    api = platform.api(carol["token"])
    r = api.post("/services/ai4lab/deployments", json={"kind": "ide", "name": "viaapi",
                                                       "options": {"ide": "lab", "cpu": 1, "ram_gb": 1}})
    assert r.status_code == 201, r.text
    dep = r.json()
    assert dep["kind"] == "ide" and dep["name"] == "viaapi" and dep["owner"] == "carol"
    platform.wait_server(carol["token"], "carol", "viaapi")
    assert api.get(f"/services/ai4lab/deployments/{dep['id']}").json()["status"] == "running"
    r = api.post("/services/ai4lab/deployments", json={"kind": "spaceship"})
    assert r.status_code == 400 and "unknown deployment kind" in r.json()["detail"]
    r = api.post("/services/ai4lab/deployments", json={"kind": "ide", "name": "bad", "options": {"gpu": 5}})
    assert r.status_code == 400 and "quota" in r.json()["detail"]
    r = api.delete(f"/services/ai4lab/deployments/{dep['id']}")
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    pid = api.get(f"/services/ai4lab/deployments/{dep['id']}").json()
    assert pid["status"] == "stopped"


def test_vscode_session_reachable_only_by_its_owner(platform: Platform, carol: dict[str, str]) -> None:
    token = carol["token"]
    api = platform.api(token)
    r = api.post("/hub/api/users/carol/servers/code", json={"ide": "vscode", "cpu": 1, "ram_gb": 1})
    assert r.status_code in (201, 202), r.text
    srv = platform.wait_server(token, "carol", "code")
    assert srv["user_options"]["ide"] == "vscode"
    # code-server is started on first request by jupyter-vscode-proxy: allow it a moment
    deadline = time.monotonic() + 90
    status, body = 0, ""
    while time.monotonic() < deadline:
        r = api.get("/user/carol/code/vscode/", follow_redirects=True)
        status, body = r.status_code, r.text
        if status == 200 and "vscode" in body.lower():
            break
        time.sleep(1)
    assert status == 200, body[:500]
    assert "workbench" in body.lower() or "code-server" in body.lower()
    # another user is refused, and so is nobody
    platform.add_user("dave", "dave-password")
    other = platform.api(platform.token("dave")).get("/user/carol/code/vscode/")
    assert other.status_code in (403, 404)
    anon = httpx.get(f"{platform.url}/user/carol/code/vscode/", follow_redirects=False)
    assert anon.status_code in (302, 401, 403)
    api.delete("/hub/api/users/carol/servers/code")
