"""Federated learning through the platform: the Flower tool, its tokens, real clients, per-round results."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from ai4lab.flower.client import join
from tests.flower.data import digit_splits
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"
ROUNDS = 3


@pytest.fixture(scope="module")
def fiona(platform: Platform) -> httpx.Client:
    platform.add_user("fiona", "fiona-password", role="intermediate")
    return platform.api(platform.token("fiona"))


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two different local datasets (CSV) of digits, one per client: the train and the held-out part."""
    return digit_splits(tmp_path_factory.mktemp("flower-data"))


def test_bad_config_is_400_and_starts_nothing(fiona: httpx.Client) -> None:
    before = len(fiona.get(f"{API}/deployments", params={"kind": "tool"}).json())
    post = lambda config: fiona.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-flower",  # noqa: E731
                                                                 "config": config})
    r = post({"min_fit_clients": 1})
    assert r.status_code == 400 and "min_fit_clients" in r.json()["detail"]
    r = post({"strategy": "FedMagic"})
    assert r.status_code == 400 and "unknown strategy 'FedMagic'" in r.json()["detail"]
    r = post({"rounds": 0})
    assert r.status_code == 400 and "rounds" in r.json()["detail"]
    r = post({"strategy": "FedAvg", "strategy_params": {"proximal_mu": 0.1}})
    assert r.status_code == 400 and "do not apply to FedAvg" in r.json()["detail"]
    r = fiona.post(f"{API}/deployments", json={"kind": "tool", "item": "no-such-tool"})
    assert r.status_code == 404
    r = fiona.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-cvat"})  # backend local
    assert r.status_code == 400 and "needs the Nomad backend" in r.json()["detail"]
    assert "AI4LAB_BACKEND=nomad" in r.json()["detail"]
    assert len(fiona.get(f"{API}/deployments", params={"kind": "tool"}).json()) == before


def test_tools_are_checked_against_role_and_quota(platform: Platform, fiona: httpx.Client) -> None:
    """Starting a tool takes the same role and quota checks as any deployment."""
    basic = platform.new_user_api("flower-basic", role="basic")
    r = basic.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-flower"})
    assert r.status_code == 403 and "needs role intermediate or advanced" in r.json()["detail"]
    before = len(fiona.get(f"{API}/deployments", params={"kind": "tool"}).json())
    for hardware, reason in (({"cpu_num": 64}, "cpu_num"), ({"ram": 10**7}, "ram"), ({"gpu_num": 1}, "GPU")):
        r = fiona.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-flower", "hardware": hardware})
        assert r.status_code == 400 and reason in r.json()["detail"], (hardware, r.text)
    assert len(fiona.get(f"{API}/deployments", params={"kind": "tool"}).json()) == before


def test_federated_run_with_token_auth(platform: Platform, fiona: httpx.Client, splits: list[Path],
                                       tmp_path: Path) -> None:
    r = fiona.post(f"{API}/deployments", json={
        "kind": "tool", "item": "ai4lab-flower", "title": "digits federation",
        "config": {"rounds": ROUNDS, "strategy": "FedAvg", "min_fit_clients": 2, "min_available_clients": 2,
                   "metric": "accuracy"}})
    assert r.status_code == 201, r.text
    dep = r.json()
    dep_id = dep["id"]
    assert dep["kind"] == "tool" and "token" not in r.text
    clients: list[subprocess.Popen[bytes]] = []
    try:
        wait_until(lambda: fiona.get(f"{API}/deployments/{dep_id}").json()["status"] == "running", 300,
                   "the Flower server did not start")
        info = fiona.get(f"{API}/deployments/{dep_id}/flower").json()
        address = info["address"]
        assert info["rounds"] == [] and info["rounds_total"] == ROUNDS

        # the token is the owner's: another user gets 404
        platform.add_user("oscar", "oscar-password", role="intermediate")
        other = platform.api(platform.token("oscar"))
        assert other.get(f"{API}/deployments/{dep_id}/flower/token").status_code == 404
        assert other.post(f"{API}/deployments/{dep_id}/flower/token").status_code == 404

        old = fiona.get(f"{API}/deployments/{dep_id}/flower/token").json()
        assert old["token"] and old["token"] in old["snippet"] and address in old["snippet"]
        new = fiona.post(f"{API}/deployments/{dep_id}/flower/token").json()
        assert new["token"] != old["token"]
        cert = new["certificate"]
        assert info["tls"] and cert.startswith("-----BEGIN CERTIFICATE-----")
        # TLS only: plain HTTP gets no answer, and the Control API is not served to clients
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://{address}/health", timeout=5)
        assert httpx.get(f"https://{address}/v1/control/list-runs", verify=False, timeout=5).status_code == 404

        # refused: the rotated-out token, and no token at all; both clients stop by themselves
        refused = [join(address, old["token"], "ai4lab-digits", str(splits[0]), root_certificates=cert,
                        log=tmp_path / "old.log"),
                   _node_without_token(address, splits[0], cert, tmp_path / "none.log")]
        clients += refused
        for proc in refused:
            assert proc.wait(timeout=120) == 3  # ai4lab.flower.node.REFUSED
        assert fiona.get(f"{API}/deployments/{dep_id}/flower").json()["refused"] >= 2

        # two real clients with the valid token, on different data
        clients += [join(address, new["token"], "ai4lab-digits", str(split), root_certificates=cert,
                         log=tmp_path / f"client{i}.log") for i, split in enumerate(splits)]
        dep = wait_until(lambda: (d := fiona.get(f"{API}/deployments/{dep_id}").json())["status"]
                         in ("succeeded", "failed") and d, 600, "the federated run did not end")
        logs = fiona.get(f"{API}/deployments/{dep_id}/logs").text
        assert dep["status"] == "succeeded", f"{dep['status_reason']}\n{logs}"
    finally:
        for proc in clients:
            proc.kill()
            proc.wait()
    assert old["token"] not in logs and new["token"] not in logs

    info = fiona.get(f"{API}/deployments/{dep_id}/flower").json()
    assert [r["round"] for r in info["rounds"]] == list(range(1, ROUNDS + 1))
    assert all(r["clients"] == 2 and 0 <= r["metrics"]["accuracy"] <= 1 and r["loss"] > 0 for r in info["rounds"])
    assert info["rounds"][-1]["metrics"]["accuracy"] > info["rounds"][0]["metrics"]["accuracy"]
    assert info["result"] == info["rounds"][-1]["metrics"]["accuracy"]

    # one MLflow run, a metric per round, tagged with the deployment
    run = fiona.get("/services/mlflow/api/2.0/mlflow/runs/get", params={"run_id": info["mlflow_run_id"]}).json()
    tags = {t["key"]: t["value"] for t in run["run"]["data"]["tags"]}
    assert tags["ai4lab.deployment"] == dep_id and tags["ai4lab.owner"] == "fiona"
    history = fiona.get("/services/mlflow/api/2.0/mlflow/metrics/get-history",
                        params={"run_id": info["mlflow_run_id"], "metric_key": "accuracy"}).json()["metrics"]
    assert sorted(m["step"] for m in history) == list(range(1, ROUNDS + 1))

    # the final global model is in the owner's storage
    listing = fiona.get(f"{API}/storage/models/ai4lab-flower/{dep_id}").json()
    assert {"model.npz", "model.json"} <= {e["name"] for e in listing["content"]}
    assert info["model"] == f"storage/models/ai4lab-flower/{dep_id}/model.npz"


def _node_without_token(address: str, data: Path, cert: str, log: Path) -> subprocess.Popen[bytes]:
    from ai4lab.flower.client import command

    cmd, env = command(address, "ai4lab-digits", str(data), root_certificates=cert)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
