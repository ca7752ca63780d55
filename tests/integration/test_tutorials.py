"""The PyTorch tutorials (issue 18) run cell by cell in a PyTorch session against the real platform.

What they print is checked, and what they claim is looked up on the platform: the MLflow runs and
their metric steps, the trainings and their results.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.notebook_runner import Run, run_notebook
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
TUTORIALS = Path(__file__).resolve().parents[2] / "notebooks" / "tutorials"
SERVER = "tutor/pytorch"


@pytest.fixture(scope="module")
def tutor(platform: Platform) -> Any:
    platform.add_user("tutor", "tutor-password", role="advanced")
    token = platform.token("tutor")
    api = platform.api(token)
    r = api.post("/hub/api/users/tutor/servers/pytorch", json={"environment": "pytorch", "cpu": 2, "ram_gb": 4})
    assert r.status_code in (201, 202), r.text
    platform.wait_server(token, "tutor", "pytorch", timeout=600)
    platform.wait_mlflow(token)
    yield token
    api.delete("/hub/api/users/tutor/servers/pytorch")


def run_tutorial(platform: Platform, token: str, name: str) -> Run:
    """Every code cell of the tutorial, in order, in one kernel of the PyTorch session."""
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), (
        "outputs are stripped in git"
    )
    run = run_notebook(platform.url, SERVER, token, TUTORIALS / name, timeout=900)
    print(f"{name}: {run.seconds:.0f} s in the kernel")
    return run


def mlflow_history(platform: Platform, token: str, run_id: str, key: str) -> list[tuple[int, float]]:
    r = platform.api(token).get(
        "/services/mlflow/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": key}
    )
    assert r.status_code == 200, r.text
    return sorted((int(m["step"]), float(m["value"])) for m in r.json().get("metrics", []))


def line(run: Run, tag: str) -> str:
    return run.find(rf"{tag} .*$").group(0)


def test_incremental_learning(platform: Platform, tutor: str) -> None:
    out = run_tutorial(platform, tutor, "incremental-learning.ipynb")
    assert line(out, "torch").startswith("torch 2.13.0")
    # plain PyTorch: the continued run's steps follow the first run's, and it learned from the new data
    first = re.search(r"run=(\w+) epochs=1-5 ", line(out, "PLAIN-FIRST"))
    cont = re.search(r"run=(\w+) epochs=6-10 before=([\d.]+) after=([\d.]+)", line(out, "PLAIN-CONTINUED"))
    assert first and cont
    assert [s for s, _ in mlflow_history(platform, tutor, first.group(1), "loss")] == [1, 2, 3, 4, 5]
    assert [s for s, _ in mlflow_history(platform, tutor, cont.group(1), "loss")] == [6, 7, 8, 9, 10]
    assert float(cont.group(3)) >= float(cont.group(2)) - 0.02
    # through the platform: --from continues the module's own checkpoint
    first_line, cont_line = line(out, "PLATFORM-FIRST"), line(out, "PLATFORM-CONTINUED")
    assert " succeeded " in first_line and " succeeded " in cont_line
    assert "steps [6, 7, 8, 9, 10]" in cont_line
    assert "'start_epoch': 5" in cont_line and "'epochs_done': 10" in cont_line
    first_id, cont_id = first_line.split()[1], cont_line.split()[1]
    api = platform.api(tutor)
    continued = api.get(f"/services/ai4lab/deployments/{cont_id}").json()
    assert continued["spec"]["init_weights"] == first_id
    run = api.get("/services/mlflow/api/2.0/mlflow/runs/get",
                  params={"run_id": continued["endpoints"]["mlflow_run_id"]}).json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["ai4lab.parent_run"] == first_id and tags.get("ai4lab.continues_run")


def test_distributed_learning(platform: Platform, tutor: str) -> None:
    out = run_tutorial(platform, tutor, "distributed-learning.ipynb")
    assert "gloo: True" in out.cells[0].output
    # from the notebook: torchrun, 2 gloo workers, per-rank and averaged metrics in one run
    nb_line = line(out, "NOTEBOOK-DDP")
    run_id = nb_line.split()[2]
    for key in ("loss", "loss_rank0", "loss_rank1", "test_accuracy"):
        assert f"'{key}'" in nb_line, nb_line
        assert [s for s, _ in mlflow_history(platform, tutor, run_id, key)] == [1, 2, 3, 4, 5]
    # the averaged loss lies between the two ranks' own losses
    for (_, avg), (_, r0), (_, r1) in zip(*(mlflow_history(platform, tutor, run_id, k)
                                            for k in ("loss", "loss_rank0", "loss_rank1")), strict=True):
        assert min(r0, r1) - 1e-6 <= avg <= max(r0, r1) + 1e-6
    params = platform.api(tutor).get("/services/mlflow/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()
    assert {"key": "backend", "value": "gloo"} in params["run"]["data"]["params"]
    # as a platform training with 2 workers
    job_line = line(out, "PLATFORM-DDP")
    assert " succeeded workers 2" in job_line, job_line
    text = out.output
    for key in ("loss", "loss_rank0", "loss_rank1", "val_accuracy"):
        assert re.search(rf"^  {key}: ([\d.]+ ){{4}}[\d.]+$", text, re.M), text


def test_training_workers_are_checked(platform: Platform, tutor: str) -> None:
    api = platform.api(tutor)
    r = api.post("/services/ai4lab/deployments", json={"kind": "training", "item": "ai4lab-torch-digits",
                                                      "workers": 9, "args": {}})
    assert r.status_code == 422 and "workers" in r.text
    r = api.post("/services/ai4lab/deployments", json={"kind": "training", "item": "ai4lab-torch-digits",
                                                      "workers": 2, "hardware": {"gpu_num": 1}, "args": {}})
    assert r.status_code == 400 and "each worker needs its own GPU" in r.text
