"""Hub tokens given to deployment processes (trainings, Flower servers): MLflow only, revoked when they end.

The token is read where the process has it (its environment), then tried as an
attacker holding it would: MLflow answers, the platform API and the hub's REST
API refuse; once the deployment ends the hub refuses the token altogether.
"""

from __future__ import annotations

import json
import sqlite3

import httpx
import psutil
import pytest

from tests.integration.test_trainings import upload_digit_dataset
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


def process_env(platform: Platform, dep_id: str) -> dict[str, str]:
    """The environment of the deployment's process (its command line names its work folder), {} if none runs."""
    marker = str(platform.state / "deployments" / dep_id) + "/"
    for proc in psutil.process_iter():
        try:
            if any(marker in arg for arg in proc.cmdline()):
                return proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return {}


def deployment_row(platform: Platform, dep_id: str) -> str:
    """The deployment as stored in the platform database, read without the platform's code."""
    with sqlite3.connect(platform.state / "ai4lab.sqlite") as conn:
        return json.dumps(conn.execute("SELECT * FROM deployments WHERE id = ?", (dep_id,)).fetchall())


def hub_refuses(platform: Platform, token: str) -> bool:
    return httpx.get(f"{platform.url}/hub/api/user", headers={"Authorization": f"token {token}"},
                     timeout=10).status_code in (401, 403)


def assert_mlflow_only(platform: Platform, token: str, owner: str) -> None:
    """What a process (or whoever steals its token) can do with it: MLflow as its owner, nothing else."""
    with platform.api(token) as leaked:
        me = leaked.get("/hub/api/user")
        assert me.status_code == 200 and me.json()["name"] == owner
        assert set(me.json()["scopes"]) <= {"access:services!service=mlflow", f"read:users:name!user={owner}",
                                            f"read:users:groups!user={owner}", "read:users:name!user",
                                            "read:users:groups!user"}, me.json()["scopes"]
        platform.wait_mlflow(token)
        r = leaked.get("/services/mlflow/api/2.0/mlflow/experiments/search", params={"max_results": 1})
        assert r.status_code == 200, r.text
        # the platform API: nothing, not even "who am I"
        for method, path in (("GET", f"{API}/me"), ("GET", f"{API}/deployments"), ("GET", f"{API}/storage"),
                             ("POST", f"{API}/deployments")):
            assert leaked.request(method, path, json={} if method == "POST" else None).status_code == 403, path
        # the hub's REST API: no users, no servers, no new tokens
        assert leaked.get("/hub/api/users").status_code == 403
        assert leaked.get(f"/hub/api/users/{owner}/tokens").status_code == 403
        assert leaked.post(f"/hub/api/users/{owner}/tokens", json={"note": "more"}).status_code == 403
        assert leaked.post(f"/hub/api/users/{owner}/server", json={}).status_code == 403
        assert leaked.post("/hub/api/users", json={"usernames": ["mallory"], "admin": True}).status_code == 403


@pytest.fixture(scope="module")
def tess(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    platform.add_user("tess", "tess-password", role="intermediate")
    api = platform.api(platform.token("tess"))
    upload_digit_dataset(api, tmp_path_factory.mktemp("tess-digits"), n=100, folder="datasets/tess")
    return api


def test_training_token_is_mlflow_only_and_revoked_when_cancelled(platform: Platform, tess: httpx.Client) -> None:
    r = tess.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits",
                                              "dataset": "datasets/tess", "args": {"epochs": 1000}})
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    token = wait_until(lambda: process_env(platform, dep_id).get("MLFLOW_TRACKING_TOKEN"), 120,
                       "the training process did not start with an MLflow token")
    assert tess.get(f"{API}/deployments/{dep_id}").json()["status"] == "running"
    assert_mlflow_only(platform, token, "tess")
    # the deployment keeps the token's id, not the token
    row = deployment_row(platform, dep_id)
    assert "hub_token_id" in row and token not in row

    assert tess.delete(f"{API}/deployments/{dep_id}").json()["status"] == "cancelled"
    wait_until(lambda: hub_refuses(platform, token), 15, "the token of a cancelled training still works")
    # the record forgets the id just after the revocation (nothing left to revoke)
    wait_until(lambda: "hub_token_id" not in deployment_row(platform, dep_id), 15, "the revoked token's id is kept")


def test_training_token_is_revoked_when_it_succeeds(platform: Platform, tess: httpx.Client) -> None:
    r = tess.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits",
                                              "dataset": "datasets/tess", "args": {"epochs": 30}})
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    token = wait_until(lambda: process_env(platform, dep_id).get("MLFLOW_TRACKING_TOKEN"), 120,
                       "the training process did not start with an MLflow token")
    dep = wait_until(lambda: (d := tess.get(f"{API}/deployments/{dep_id}").json())["status"]
                     not in ("queued", "starting", "running") and d, 300, "the training did not end")
    assert dep["status"] == "succeeded", dep["status_reason"]
    assert dep["endpoints"].get("mlflow_run_id")  # it did log to MLflow with the token
    wait_until(lambda: hub_refuses(platform, token), 15, "the token of a finished training still works")
    with platform.api(platform.token("admin")) as admin:
        notes = [t["note"] for t in admin.get("/hub/api/users/tess/tokens").json()["api_tokens"]]
    assert f"training {dep_id}" not in notes


def test_flower_server_token_is_mlflow_only_and_revoked_when_stopped(platform: Platform) -> None:
    platform.add_user("fred", "fred-password", role="intermediate")
    with platform.api(platform.token("fred")) as fred:
        r = fred.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-flower",
                                                  "config": {"rounds": 1, "min_fit_clients": 2,
                                                             "min_available_clients": 2}})
        assert r.status_code == 201, r.text
        dep_id = r.json()["id"]
        wait_until(lambda: fred.get(f"{API}/deployments/{dep_id}").json()["status"] == "running", 300,
                   "the Flower server did not start")
        token = process_env(platform, dep_id)["MLFLOW_TRACKING_TOKEN"]
        assert_mlflow_only(platform, token, "fred")
        assert fred.delete(f"{API}/deployments/{dep_id}").json()["status"] == "stopped"
    wait_until(lambda: hub_refuses(platform, token), 15, "the token of a stopped Flower server still works")
