"""A user logs in, gets a session with storage and MLflow; other users cannot touch it."""

from __future__ import annotations

from contextlib import closing
import time

import httpx
import pytest

from tests.kernel_client import execute_in_session
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]


@pytest.fixture(scope="module")
def alice(platform: Platform) -> dict[str, str]:
    platform.add_user("alice", "alice-password", role="intermediate")
    return {"name": "alice", "password": "alice-password", "token": platform.token("alice")}


@pytest.fixture(scope="module")
def bob(platform: Platform) -> dict[str, str]:
    platform.add_user("bob", "bob-password", role="basic")
    return {"name": "bob", "password": "bob-password", "token": platform.token("bob")}


def spawn_with_form(client: httpx.Client, user: str, **fields: str) -> httpx.Response:
    xsrf = client.cookies.get("_xsrf", path="/hub/") or client.cookies.get("_xsrf")
    return client.post(f"/hub/spawn/{user}", data={"_xsrf": xsrf, **fields})


def test_login_wrong_password_refused(platform: Platform, alice: dict[str, str]) -> None:
    with pytest.raises(AssertionError, match="login of alice failed"):
        platform.login("alice", "not-the-password")


def test_form_shows_quota_and_gpus(platform: Platform, alice: dict[str, str]) -> None:
    with closing(platform.login("alice", alice["password"])) as client:
        page = client.get("/hub/spawn").text
    assert "intermediate" in page
    assert "VS Code (code-server)" in page and "JupyterLab" in page
    assert "2 of 2 free: Tesla T4, Tesla T4" in page


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"profile": "small", "ide": "lab", "cpu": "1", "ram_gb": "2", "gpu": "1"}, "1 GPU(s) is over the basic quota"),
        ({"profile": "small", "ide": "lab", "cpu": "1", "ram_gb": "-3", "gpu": "0"}, "RAM must be positive"),
        ({"profile": "small", "ide": "emacs", "cpu": "1", "ram_gb": "2", "gpu": "0"}, "unknown IDE"),
        ({"profile": "small", "ide": "lab", "cpu": "64", "ram_gb": "2", "gpu": "0"}, "over the basic quota"),
    ],
)
def test_bad_form_values_are_refused(
    platform: Platform, bob: dict[str, str], fields: dict[str, str], message: str
) -> None:
    with closing(platform.login("bob", bob["password"])) as client:
        r = spawn_with_form(client, "bob", **fields)
        assert message in r.text
    model = platform.api(bob["token"]).get("/hub/api/users/bob").json()
    assert model["servers"] == {}, "a refused form must not start a server"


def test_bad_options_over_rest_api_are_400(platform: Platform, bob: dict[str, str]) -> None:
    r = platform.api(bob["token"]).post("/hub/api/users/bob/server", json={"ide": "emacs"})
    assert r.status_code == 400
    assert "unknown IDE" in r.text


def test_session_with_storage_and_mlflow(platform: Platform, alice: dict[str, str], tmp_path) -> None:
    token = alice["token"]
    with closing(platform.login("alice", alice["password"])) as client:
        r = spawn_with_form(client, "alice", profile="small", ide="lab", cpu="1", ram_gb="2", gpu="0")
        assert r.status_code == 200, r.text[-500:]
    srv = platform.wait_server(token, "alice")
    assert srv["user_options"] == {
        "profile": "small", "ide": "lab", "environment": "base", "cpu": 1.0, "ram_gb": 2.0, "gpu": 0
    }
    api = platform.api(token)

    # the session's Contents API lists storage/
    listing = api.get("/user/alice/api/contents/").json()
    assert "storage" in [c["name"] for c in listing["content"]]

    # a file written through the platform storage API is visible in the session
    r = api.put("/services/ai4lab/storage/data/hello.txt", content=b"hello from the platform")
    assert r.status_code == 200, r.text
    seen = api.get("/user/alice/api/contents/storage/data/hello.txt").json()
    assert seen["content"] == "hello from the platform"

    # the deployment record exists, with the chosen values
    mine = api.get("/services/ai4lab/deployments").json()
    ide = [d for d in mine if d["kind"] == "ide" and d["status"] == "running"]
    assert len(ide) == 1 and ide[0]["spec"]["cpu"] == 1.0
    logs = api.get(f"/services/ai4lab/deployments/{ide[0]['id']}/logs").text
    assert "Jupyter" in logs

    # MLflow: a run logged from a kernel of the session appears in the MLflow server
    platform.wait_mlflow(token)
    code = (
        "import os, mlflow\n"
        "print('URI', os.environ['MLFLOW_TRACKING_URI'])\n"
        "print('CPU', os.environ['AI4LAB_CPU'], 'GPU', os.environ['AI4LAB_GPU'], "
        "'CUDA', repr(os.environ['CUDA_VISIBLE_DEVICES']))\n"
        "mlflow.set_experiment('from-session')\n"
        "with mlflow.start_run(run_name='kernel-run') as run:\n"
        "    mlflow.log_param('alpha', 0.5)\n"
        "    mlflow.log_metric('loss', 0.25)\n"
        "print('RUN', run.info.run_id)\n"
    )
    output = execute_in_session(platform.url, "alice", token, code)
    assert f"URI {platform.url}/services/mlflow" in output
    assert "CPU 1 GPU 0 CUDA ''" in output
    run_id = output.split("RUN ")[1].split()[0]
    r = api.get("/services/mlflow/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    assert run["data"]["params"] == [{"key": "alpha", "value": "0.5"}]
    assert run["data"]["metrics"][0]["key"] == "loss"


def test_mlflow_refuses_anonymous(platform: Platform) -> None:
    r = httpx.get(f"{platform.url}/services/mlflow/api/2.0/mlflow/experiments/search?max_results=1")
    assert r.status_code == 401


def test_other_user_cannot_see_or_stop(platform: Platform, alice: dict[str, str], bob: dict[str, str]) -> None:
    alice_api, bob_api = platform.api(alice["token"]), platform.api(bob["token"])
    alice_api.put("/services/ai4lab/storage/private/secret.txt", content=b"alice only")
    r = alice_api.post("/services/ai4lab/deployments", json={"kind": "ide", "name": "iso", "options": {"cpu": 1, "ram_gb": 1}})
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    assert bob_api.get(f"/services/ai4lab/deployments/{dep_id}").status_code == 404
    assert bob_api.get(f"/services/ai4lab/deployments/{dep_id}/logs").status_code == 404
    assert bob_api.delete(f"/services/ai4lab/deployments/{dep_id}").status_code == 404
    assert bob_api.get("/services/ai4lab/deployments", params={"all": True}).status_code == 403
    assert all(d["owner"] == "bob" for d in bob_api.get("/services/ai4lab/deployments").json())
    # bob's storage is his own: alice's file is not there, and paths cannot escape
    assert bob_api.get("/services/ai4lab/storage/private/secret.txt").status_code == 404
    for bad in ("../alice/private/secret.txt", "%2E%2E/alice/private/secret.txt"):
        r = bob_api.get(f"/services/ai4lab/storage/{bad}")
        assert r.status_code in (400, 404), (bad, r.status_code)
        assert b"alice only" not in r.content
    r = bob_api.get("/services/ai4lab/storage/a/../../alice")
    assert r.status_code in (400, 404)
    # nor through the hub: bob's token cannot reach alice's server
    assert bob_api.get("/user/alice/iso/api/contents/").status_code in (403, 404)
    # alice's deployment is still running, and she can stop it
    assert alice_api.get(f"/services/ai4lab/deployments/{dep_id}").json()["status"] == "running"
    assert alice_api.delete(f"/services/ai4lab/deployments/{dep_id}").json()["status"] == "stopped"


def test_storage_api_refuses_escapes_with_400(platform: Platform, bob: dict[str, str]) -> None:
    api = platform.api(bob["token"])
    r = api.put("/services/ai4lab/storage/..%2Fescape.txt", content=b"x")
    assert r.status_code == 400 and "'..' is not allowed" in r.json()["detail"]


def test_admin_sees_all_deployments(platform: Platform, alice: dict[str, str]) -> None:
    alice_api = platform.api(alice["token"])
    mine = alice_api.post("/services/ai4lab/deployments",
                          json={"kind": "ide", "name": "adminview", "options": {"cpu": 1, "ram_gb": 1}})
    assert mine.status_code == 201, mine.text
    token = platform.token("admin")
    r = platform.api(token).get("/services/ai4lab/deployments", params={"all": True})
    assert r.status_code == 200
    assert mine.json()["id"] in [d["id"] for d in r.json() if d["owner"] == "alice"]
    assert platform.api(token).delete(f"/services/ai4lab/deployments/{mine.json()['id']}").json()["status"] == "stopped"
    me = platform.api(token).get("/services/ai4lab/me").json()
    assert me["admin"] is True and me["role"] == "advanced"


def test_me_shows_role(platform: Platform, alice: dict[str, str]) -> None:
    me = platform.api(alice["token"]).get("/services/ai4lab/me").json()
    assert me["role"] == "intermediate" and me["quota"]["gpu"] == 1 and me["admin"] is False


def test_openapi_served(platform: Platform) -> None:
    spec = httpx.get(f"{platform.url}/services/ai4lab/openapi.json").json()
    assert "/services/ai4lab/deployments" in spec["paths"]


def test_gpus_are_exclusive_per_session(platform: Platform) -> None:
    platform.add_user("gina", "gina-password", role="advanced")
    token = platform.token("gina")
    api = platform.api(token)
    seen = []
    for server in ("g1", "g2"):
        r = api.post(f"/hub/api/users/gina/servers/{server}", json={"cpu": 1, "ram_gb": 1, "gpu": 1})
        assert r.status_code in (201, 202), r.text
        platform.wait_server(token, "gina", server)
        out = execute_in_session(platform.url, f"gina/{server}", token,
                                 "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['AI4LAB_GPU'])")
        seen.append(out.split())
    assert sorted(s[0] for s in seen) == ["0", "1"] and all(s[1] == "1" for s in seen)
    r = api.post("/hub/api/users/gina/servers/g3", json={"cpu": 1, "ram_gb": 1, "gpu": 1})
    assert r.status_code == 400 and "0 free" in r.text
    with closing(platform.login("gina", "gina-password")) as client:
        assert "0 of 2 free" in client.get("/hub/spawn").text
    # stopping a session gives its GPU back
    assert api.delete("/hub/api/users/gina/servers/g1").status_code in (202, 204)
    for _ in range(100):
        if "g1" not in api.get("/hub/api/users/gina").json()["servers"]:
            break
        time.sleep(0.2)
    r = api.post("/hub/api/users/gina/servers/g3", json={"cpu": 1, "ram_gb": 1, "gpu": 1})
    assert r.status_code in (201, 202), r.text
    platform.wait_server(token, "gina", "g3")
    for server in ("g2", "g3"):
        api.delete(f"/hub/api/users/gina/servers/{server}")
