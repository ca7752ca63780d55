"""The intermediate user's path: retrain a module on own data, tracked in MLflow, then use the result."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from ai4lab.core.envs import ensure_env, env_bin
from ai4lab.core.settings import bundled_catalog_path
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


def wait_status(api: httpx.Client, dep_id: str, wanted: tuple[str, ...], timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = api.get(f"{API}/deployments/{dep_id}").json()
        if dep["status"] in wanted:
            return dep
        time.sleep(0.5)
    raise TimeoutError(f"{dep_id} not in {wanted}: {dep}")


@pytest.fixture(scope="module")
def trainer(platform: Platform) -> httpx.Client:
    platform.add_user("tina", "tina-password", role="intermediate")
    return platform.api(platform.token("tina"))


def upload_digit_dataset(api: httpx.Client, root: Path, n: int = 300, folder: str = "datasets/digits") -> str:
    """A class-subfolder dataset of digit PNGs, written by the module's own helper and uploaded
    into the caller's storage through the API; returns its storage path."""
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits")
    code = ("import json, sys; from ai4lab_digits.data import write_dataset as w; "
            f"print(json.dumps([str(p) for p, _ in w(sys.argv[1], n={n}, split='train')]))")
    paths = json.loads(subprocess.run([str(env_bin(env, "python")), "-c", code, str(root)], capture_output=True,
                                      text=True, check=True).stdout)
    for p in paths:
        rel = Path(p).relative_to(root)
        assert api.put(f"{API}/storage/{folder}/{rel}", content=Path(p).read_bytes()).status_code == 200
    return folder


@pytest.fixture(scope="module")
def dataset(trainer: httpx.Client, platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    """tina's digits dataset in her storage."""
    return upload_digit_dataset(trainer, tmp_path_factory.mktemp("digits-ds"))


def test_train_args_are_described(trainer: httpx.Client) -> None:
    args = trainer.get(f"{API}/catalog/modules/ai4lab-digits/train-args").json()
    assert args["epochs"]["type"] == "Integer" and args["epochs"]["range"] == [1, 1000]
    assert "dataset" in args


def test_bad_hyper_parameters_are_400_and_start_nothing(trainer: httpx.Client, dataset: str) -> None:
    before = len(trainer.get(f"{API}/deployments", params={"kind": "training"}).json())
    post = lambda **b: trainer.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", **b})  # noqa: E731
    r = post(dataset=dataset, args={"epochs": 0})
    assert r.status_code == 400 and r.json()["detail"].startswith("epochs:")
    r = post(dataset=dataset, args={"epochs": "many"})
    assert r.status_code == 400 and "epochs" in r.json()["detail"]
    r = post(dataset=dataset, args={"speed": 3})
    assert r.status_code == 400 and "unknown argument(s) speed" in r.json()["detail"]
    r = post(dataset="../../etc", args={})
    assert r.status_code == 400
    r = post(dataset="nowhere", args={})
    assert r.status_code == 400 and "no 'nowhere'" in r.json()["detail"]
    assert len(trainer.get(f"{API}/deployments", params={"kind": "training"}).json()) == before


def test_basic_users_cannot_train(platform: Platform) -> None:
    platform.add_user("bert", "bert-password", role="basic")
    api = platform.api(platform.token("bert"))
    r = api.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "args": {}})
    assert r.status_code == 403


def test_train_track_store_deploy_publish(platform: Platform, trainer: httpx.Client, dataset: str) -> None:
    r = trainer.post(f"{API}/deployments", json={
        "kind": "training", "item": "ai4lab-digits", "dataset": dataset, "title": "digits on my data",
        "args": {"epochs": 8, "hidden_units": 32}})
    assert r.status_code == 201, r.text
    dep = wait_status(trainer, r.json()["id"], ("succeeded", "failed"))
    assert dep["status"] == "succeeded", dep["status_reason"]
    # MLflow (the real server) has the run, with params, tags and a metric history
    run_id = dep["endpoints"]["mlflow_run_id"]
    run = trainer.get("/services/mlflow/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert params["epochs"] == "8" and tags["ai4lab.deployment"] == dep["id"] and tags["ai4lab.owner"] == "tina"
    assert tags["ai4lab.dataset"] == dataset
    assert dep["endpoints"]["mlflow_run"].endswith(f"/runs/{run_id}") and "/experiments/" in dep["endpoints"]["mlflow_run"]
    metrics = trainer.get(f"{API}/deployments/{dep['id']}/metrics").json()["metrics"]
    assert len(metrics["val_accuracy"]) == 8
    # weights and metrics are in the user's storage
    outputs = trainer.get(f"{API}/storage/models/ai4lab-digits/{dep['id']}").json()["content"]
    names = {e["name"] for e in outputs}
    assert {"model.joblib", "metrics.json"} <= names
    # the logs, followed as server-sent events, end with the final status
    with trainer.stream("GET", f"{API}/deployments/{dep['id']}/logs", params={"follow": 1}) as stream:
        text = "".join(stream.iter_text())
    assert "training done" in text and 'event: end\ndata: {"status": "succeeded"}' in text
    # deploy the retrained model and predict with it
    r = trainer.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits", "weights": dep["id"]})
    assert r.status_code == 201, r.text
    served = wait_status(trainer, r.json()["id"], ("running", "failed"))
    assert served["status"] == "running"
    png = trainer.get(f"{API}/storage/datasets/digits/3").json()["content"][0]["path"]
    image = trainer.get(f"{API}/storage/{png}").content
    r = trainer.post(f"{API}/deployments/{served['id']}/predict", files={"image": ("3.png", image, "image/png")})
    assert r.status_code == 200 and r.json()["predictions"]["weights"].endswith(f"{dep['id']}/model.joblib")
    trainer.delete(f"{API}/deployments/{served['id']}")
    # publish it as a new catalog item with its lineage
    parent = trainer.get(f"{API}/catalog/modules/ai4lab-digits").json()
    metadata = {**parent["metadata"], "title": "Digits retrained on my data", "summary": "retrained"}
    r = trainer.post(f"{API}/catalog/modules", json={
        "id": "my-digits", "metadata": metadata, "docker_image": "tina/my-digits:1",
        "lineage": {"parent": "ai4lab-digits", "dataset": dataset, "mlflow_run": run_id, "training": dep["id"]}})
    assert r.status_code == 201, r.text
    assert r.json()["lineage"]["mlflow_run"] == run_id
    # incremental: a second training starts from the weights of the first
    r = trainer.post(f"{API}/deployments", json={
        "kind": "training", "item": "ai4lab-digits", "dataset": dataset, "init_weights": dep["id"],
        "args": {"epochs": 2, "hidden_units": 32}})
    assert r.status_code == 201, r.text
    second = wait_status(trainer, r.json()["id"], ("succeeded", "failed"))
    assert second["status"] == "succeeded", second["status_reason"]
    assert second["spec"]["init_weights"] == dep["id"]


def test_queue_and_cancel(trainer: httpx.Client, dataset: str) -> None:
    long = {"kind": "training", "item": "ai4lab-digits", "dataset": dataset, "args": {"epochs": 400}}
    first = trainer.post(f"{API}/deployments", json=long).json()
    second = trainer.post(f"{API}/deployments", json={**long, "args": {"epochs": 2}}).json()
    assert first["status"] in ("starting", "running")
    assert second["status"] == "queued"
    assert "quota" in trainer.get(f"{API}/deployments/{second['id']}").json()["status_reason"]
    wait_status(trainer, first["id"], ("running",))
    runners = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and f"deployments/{first['id']}/request.json" in " ".join(p.info["cmdline"])]
    assert runners, "the training process is visible"
    # cancel the first: its process tree goes away and the queued one starts
    r = trainer.delete(f"{API}/deployments/{first['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    _, alive = psutil.wait_procs(runners, timeout=15)
    assert alive == []
    done = wait_status(trainer, second["id"], ("succeeded", "failed"))
    assert done["status"] == "succeeded", done["status_reason"]
    # cancelling a finished training changes nothing
    assert trainer.delete(f"{API}/deployments/{second['id']}").json()["status"] == "succeeded"


def test_other_users_cannot_see_or_cancel(platform: Platform, trainer: httpx.Client, dataset: str) -> None:
    r = trainer.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "dataset": dataset,
                                                 "args": {"epochs": 1}})
    assert r.status_code == 201, r.text
    mine = [r.json()]
    platform.add_user("ursula", "ursula-password", role="advanced")
    other = platform.api(platform.token("ursula"))
    assert other.get(f"{API}/deployments/{mine[0]['id']}/metrics").status_code == 404
    assert other.delete(f"{API}/deployments/{mine[0]['id']}").status_code == 404


def test_cli_train_follow_cancel(platform: Platform, trainer: httpx.Client, dataset: str) -> None:
    import sys

    env = {**platform.env, "AI4LAB_API_URL": f"{platform.url}/services/ai4lab",
           "AI4LAB_API_TOKEN": trainer.headers["Authorization"].split()[1]}
    cli = str(Path(sys.executable).parent / "ai4lab")
    run = lambda *a: subprocess.run([cli, *a], env=env, capture_output=True, text=True, timeout=300)  # noqa: E731
    r = run("train", "ai4lab-digits", "--data", dataset, "--arg", "epochs=3", "--arg", "hidden_units=16")
    assert r.returncode == 0, r.stderr
    dep_id, status = r.stdout.split()[:2]
    assert status in ("running", "starting", "queued")
    r = run("logs", dep_id, "-f")
    assert r.returncode == 0 and "training done" in r.stdout
    assert trainer.get(f"{API}/deployments/{dep_id}").json()["status"] == "succeeded"
    r = run("train", "ai4lab-digits", "--data", dataset, "--arg", "epochs=-1")
    assert r.returncode == 1 and r.stderr.startswith("error: 400: epochs:")
    r = run("train", "ai4lab-digits", "--data", dataset, "--arg", "epochs")
    assert r.returncode == 2 and "name=value" in r.stderr
    r = run("train", "ai4lab-digits", "--data", dataset, "--arg", "epochs=500")
    long_id = r.stdout.split()[0]
    r = run("cancel", long_id)
    assert r.returncode == 0 and "cancelled" in r.stdout


def test_batch_inference_over_a_storage_folder(trainer: httpx.Client, dataset: str) -> None:
    sevens = f"{dataset}/7"
    n = len(trainer.get(f"{API}/storage/{sevens}").json()["content"])
    r = trainer.post(f"{API}/deployments", json={"kind": "batch", "item": "ai4lab-digits", "input": sevens,
                                                 "output": "results/sevens"})
    assert r.status_code == 201, r.text
    dep = wait_status(trainer, r.json()["id"], ("succeeded", "failed"))
    assert dep["status"] == "succeeded", dep["status_reason"]
    assert trainer.get(f"{API}/deployments/{dep['id']}").json()["progress"] == {"done": n, "total": n}
    summary = json.loads(trainer.get(f"{API}/storage/results/sevens/summary.json").content)
    assert summary == {"files": n, "failed": 0, "output": summary["output"]}
    results = [e["path"] for e in trainer.get(f"{API}/storage/results/sevens").json()["content"]
               if e["name"] != "summary.json"]
    labels = [json.loads(trainer.get(f"{API}/storage/{p}").content)["predictions"]["label"] for p in results]
    assert len(labels) == n and labels.count(7) / n > 0.8
    # bad requests: output inside the input, missing input
    post = lambda **b: trainer.post(f"{API}/deployments", json={"kind": "batch", "item": "ai4lab-digits", **b})  # noqa: E731
    assert post(input=sevens, output=f"{sevens}/out").status_code == 400
    assert post(input="nothing-here", output="x").status_code == 400
    r = post(input=sevens)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "output"]
