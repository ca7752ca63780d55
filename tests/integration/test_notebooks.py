"""Every example notebook runs, cell by cell, in a real session's kernel, as the kind of user it is for.

A notebook runs as JupyterLab runs it: one kernel of the user's own session, its code cells one
after the other over the kernel's websocket, with the session's environment (``AI4LAB_API_URL``,
``AI4LAB_API_TOKEN``, ``MLFLOW_TRACKING_URI``, ``storage/``) and nothing of the test's. Each
notebook prints result lines; the checks read them, and then look up on the platform's API, with
the user's own token, what the notebook says it made: deployments, trainings, MLflow runs, Flower
servers, files in storage, published modules.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
import psutil
import pytest

from tests.notebook_runner import Run, run_notebook
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: The official AI4OS template, as GitHub has it (04 generates a module from it; the tests run offline).
AI4OS_TEMPLATE = ROOT.parent / "shared" / "data" / "ai4-template"
API = "/services/ai4lab"


@contextmanager
def session(platform: Platform, name: str, role: str, cpu: float, ram_gb: float) -> Iterator[dict[str, str]]:
    """A new account of ``role`` with a running session ``notebooks``; the session is stopped at the end."""
    platform.add_user(name, f"{name}-password", role=role)
    token = platform.token(name)
    with platform.api(token) as hub:
        r = hub.post(f"/hub/api/users/{name}/servers/notebooks", json={"cpu": cpu, "ram_gb": ram_gb})
        assert r.status_code in (201, 202), r.text
        try:
            platform.wait_server(token, name, "notebooks")
            platform.wait_mlflow(token)
            yield {"name": name, "token": token}
        finally:
            hub.delete(f"/hub/api/users/{name}/servers/notebooks")


# --- what each notebook must have printed and made ----------------------------------------------
def deployment(api: httpx.Client, dep_id: str) -> dict:
    r = api.get(f"{API}/deployments/{dep_id}")
    assert r.status_code == 200, f"the notebook's deployment {dep_id}: {r.text}"
    return r.json()


def mlflow_run(api: httpx.Client, run_id: str) -> dict:
    r = api.get("/services/mlflow/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert r.status_code == 200, f"MLflow run {run_id}: {r.text}"
    return r.json()["run"]


def in_storage(api: httpx.Client, path: str) -> bytes:
    r = api.get(f"{API}/storage/{path}")
    assert r.status_code == 200, f"{path} is not in the user's storage: {r.text}"
    return r.content


def check_01(run: Run, api: httpx.Client) -> None:
    """Data in storage/, a run logged to the platform's MLflow."""
    run_id = run.find(r"RUN (\w+)").group(1)
    metrics = mlflow_run(api, run_id)["data"]["metrics"]
    assert any(m["key"] == "slope" and abs(m["value"] - 3) < 0.1 for m in metrics), metrics
    listing = api.get(f"{API}/storage/datasets").json()["content"]
    assert "line.csv" in [e["name"] for e in listing]


def check_02(run: Run, api: httpx.Client) -> None:
    """Catalog search, a prediction on a drawn digit, a plot, a 2-step pipeline; everything stopped."""
    assert run.find(r"user: (.*)").group(1) == "nb-basic (role basic)"
    assert run.find(r"module: (\S+)").group(1) == "ai4lab-digits"
    image = in_storage(api, "images/my-four.png")
    assert image.startswith(b"\x89PNG")
    assert in_storage(api, "images/my-four-answer.png").startswith(b"\x89PNG")
    assert run.images >= 2, "the answer and the pipeline's step were not plotted"
    digits_id, prep_id = (m.group(1) for m in run.find_all(r"deployment: (\w+) running$"))
    pred = run.find(r"prediction: (\d) \(probability ([\d.]+)\)$")
    label = int(pred.group(1))
    assert label == 4 and float(pred.group(2)) > 0.5, pred.group(0)
    # the module says the same of the image the notebook left in storage
    again = api.post(f"{API}/catalog/modules/ai4lab-digits/try", files={"image": ("my-four.png", image, "image/png")})
    assert again.status_code == 200 and again.json()["predictions"]["label"] == label, again.text
    pipe_id = run.find(r"pipeline: (\w+) running$").group(1)
    assert int(run.find(r"pipeline prediction: (\d)$").group(1)) == label
    digits, prep, pipe = (deployment(api, i) for i in (digits_id, prep_id, pipe_id))
    assert (digits["kind"], digits["spec"]["item"]) == ("module", "ai4lab-digits")
    assert (prep["kind"], prep["spec"]["item"]) == ("module", "ai4lab-image-prep")
    assert pipe["kind"] == "pipeline"
    assert [s["item"] for s in pipe["spec"]["steps"]] == ["ai4lab-image-prep", "ai4lab-digits"]
    assert [s["deployment"] for s in pipe["spec"]["steps"]] == [prep_id, digits_id]
    stopped = {m.group(1) for m in run.find_all(r"stopped: (\w+) stopped$")}
    assert stopped == {digits_id, prep_id, pipe_id}
    assert {d["status"] for d in (digits, prep, pipe)} == {"stopped"}


def check_03(run: Run, api: httpx.Client) -> None:
    """Dataset uploaded, a training followed epoch by epoch in MLflow, deployed and compared; a Flower run."""
    assert run.find(r"user: (\S+)").group(1) == "nb-inter"
    run.find(r"1000 digits to train on, 100 held out$")
    # the dataset: in storage and in the datasets API
    m = run.find(r"dataset: (\S+) \((\d+) file\(s\), (\d+) bytes\)$")
    listed = {d["path"]: d for d in api.get(f"{API}/datasets").json()}
    assert listed[m.group(1)]["files"] == 1 and listed[m.group(1)]["bytes"] == int(m.group(3))
    rows = in_storage(api, "datasets/upside-down-digits/digits.csv").decode().splitlines()
    assert len(rows) == 1001 and rows[0].endswith(",label")
    # the training, followed live: one line per epoch, in order; the same values as in MLflow
    job_id = run.find(r"training: (\w+) (?:queued|starting|running)$").group(1)
    epochs = run.find_all(r"epoch +(\d+)/30 +loss ([\d.]+) +val_accuracy ([\d.]+)$")
    assert [int(e.group(1)) for e in epochs] == list(range(1, 31))
    run.find(rf"training: {job_id} succeeded \(val_accuracy [\d.]+\)$")
    job = deployment(api, job_id)
    assert job["kind"] == "training" and job["status"] == "succeeded", job["status_reason"]
    assert job["spec"]["dataset"] == "datasets/upside-down-digits/digits.csv"
    run_id = run.find(r"MLflow run: (\w+) \{").group(1)
    assert run_id == job["endpoints"]["mlflow_run_id"]
    mlrun = mlflow_run(api, run_id)
    assert {t["key"]: t["value"] for t in mlrun["data"]["tags"]}["ai4lab.deployment"] == job_id
    last = {m["key"]: m["value"] for m in mlrun["data"]["metrics"]}["val_accuracy"]
    assert abs(last - float(epochs[-1].group(3))) < 1e-3
    assert len(api.get(f"{API}/deployments/{job_id}/metrics").json()["metrics"]["val_accuracy"]) == 30
    model = run.find(r"model: (\S+)$").group(1)
    assert model == f"models/ai4lab-digits/{job_id}/model.joblib"
    assert len(in_storage(api, model)) > 1000
    assert run.images >= 2, "the learning curves and the examples were not plotted"
    # the retrained model deployed beside the original, compared on the same images
    mine = deployment(api, run.find(r"deployment \(retrained\): (\w+) running$").group(1))
    original = deployment(api, run.find(r"deployment \(original\): (\w+) running$").group(1))
    assert job_id in str(mine["spec"]["weights"]) and not original["spec"].get("weights")
    assert {mine["spec"]["item"], original["spec"]["item"]} == {"ai4lab-digits"}
    assert {mine["status"], original["status"]} == {"stopped"}
    acc = run.find(r"accuracy on 100 held-out digits: original ([\d.]+), retrained ([\d.]+)$")
    before, after = float(acc.group(1)), float(acc.group(2))
    assert after >= 0.75 and after > before + 0.2, acc.group(0)  # upside-down digits: retraining is what helps
    # the Flower server: two rounds with two clients, in MLflow, the global model in storage
    server_id = run.find(r"flower server: (\w+) at ").group(1)
    flower = api.get(f"{API}/deployments/{server_id}/flower").json()
    assert flower["status"] == "succeeded" and len(flower["rounds"]) == flower["rounds_total"] == 2, flower
    printed = run.find_all(r"round (\d): accuracy ([\d.]+) +loss [\d.]+ +\((\d) clients")
    assert [(int(p.group(1)), int(p.group(3))) for p in printed] == [(1, 2), (2, 2)]
    for p, r in zip(printed, flower["rounds"], strict=True):
        assert abs(float(p.group(2)) - r["metrics"]["accuracy"]) < 1e-3
    assert run.find(r"flower: (\w+)").group(1) == "succeeded"
    flower_run = run.find(r"MLflow run: (\w+)$").group(1)  # the training's line goes on with its parameters
    assert flower_run == flower["mlflow_run_id"]
    tags = {t["key"]: t["value"] for t in mlflow_run(api, flower_run)["data"]["tags"]}
    assert tags["ai4lab.deployment"] == server_id
    assert run.find(r"global model: (\S+)$").group(1) == f"storage/models/ai4lab-flower/{server_id}/model.npz"
    assert in_storage(api, f"models/ai4lab-flower/{server_id}/model.npz").startswith(b"PK")

    # the clients were stopped with everything they started
    def flower_processes() -> list[str]:
        return [
            " ".join(p.info["cmdline"] or [])
            for p in psutil.process_iter(["username", "cmdline"])
            if p.info["username"] == "ai4-nb-inter" and "flwr" in " ".join(p.info["cmdline"] or [])
        ]

    assert wait_until(lambda: not flower_processes(), 30, f"Flower clients left running: {flower_processes()}")


def check_04(run: Run, api: httpx.Client) -> None:
    """A module from the AI4OS template: tested, served with DEEPaaS, published, deployed, predicting."""
    assert run.find(r"user: (\S+)").group(1) == "nb-adv"
    assert run.find(r"module: (\S+) in (\S+)$").groups() == (
        "temperature-converter",
        "storage/code/temperature-converter",
    )
    code = "code/temperature-converter"
    api_py = in_storage(api, f"{code}/temperature_converter/api.py").decode()
    assert "def get_metadata" in api_py and "def predict" in api_py  # the template's, and the author's
    assert b"test_boiling_water" in in_storage(api, f"{code}/tests/test_predict.py")
    assert int(run.find(r"tests: (\d+) passed(?!.*failed)").group(1)) >= 4
    run.find(r"DEEPaaS serves: temperature_converter \(port \d+\)$")
    run.find(r"local prediction: 37.0 °C = 98.6 °F$")
    run.find(r"local refusal: 422 ")
    assert run.find(r"published: (.*)$").group(1) == (
        "temperature-converter (private, owner nb-adv, entry point temperature_converter)"
    )
    item = api.get(f"{API}/catalog/modules/temperature-converter")
    assert item.status_code == 200, item.text
    assert (item.json()["owner"], item.json()["visibility"], item.json()["source"]) == (
        "nb-adv",
        "private",
        "published",
    )
    assert "temperature" in item.json()["tags"]
    run.find(r"try: \{'celsius': 0.0, 'fahrenheit': 32.0, 'kelvin': 273.15\}$")
    dep_id = run.find(r"deployment: (\w+) running$").group(1)
    dep = deployment(api, dep_id)
    assert (dep["kind"], dep["spec"]["item"], dep["status"]) == ("module", "temperature-converter", "stopped")
    run.find(r"prediction: 100.0 °C = 212.0 °F = 373.15 K$")
    run.find(r"refused: 422")
    run.find(rf"stopped: {dep_id} stopped$")


@dataclass(frozen=True)
class Spec:
    """Who runs a notebook, with which session, and what must hold afterwards."""

    user: str
    role: str
    check: Callable[[Run, httpx.Client], None]
    cpu: float = 1
    ram_gb: float = 2
    #: seconds for the whole test (pytest-timeout), the session's start included
    timeout: float = 600


SPECS = {
    "01-track-an-experiment.ipynb": Spec("nina", "advanced", check_01),
    "02-basic-use-a-model.ipynb": Spec("nb-basic", "basic", check_02),
    # two Flower clients (and their trainings) run in the session itself: room for them
    "03-intermediate-retrain-and-deploy.ipynb": Spec(
        "nb-inter", "intermediate", check_03, cpu=2, ram_gb=4, timeout=900
    ),
    "04-advanced-develop-a-module.ipynb": Spec("nb-adv", "advanced", check_04),
}


@pytest.fixture(scope="module")
def ai4os_template() -> Iterator[Path]:
    """A copy of the AI4OS template that user accounts can read, and whose generated files they can write.

    The notebook's default is the template on GitHub, which the tests cannot reach; the shared copy is
    read-only, and cookiecutter gives generated files the template's modes (its hook edits README.md).
    """
    assert (AI4OS_TEMPLATE / "cookiecutter.json").is_file(), f"no AI4OS template at {AI4OS_TEMPLATE}"
    root = Path(tempfile.mkdtemp(prefix="ai4lab-test-template-", dir="/tmp"))
    copy = root / "ai4-template"
    shutil.copytree(AI4OS_TEMPLATE, copy)
    for path in [root, copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield copy
    shutil.rmtree(root, ignore_errors=True)


def test_every_notebook_is_stored_without_outputs_and_is_checked() -> None:
    """Outputs are not committed (they would go stale), and a new notebook needs its checks here."""
    assert sorted(p.name for p in NOTEBOOKS) == sorted(SPECS)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.timeout(SPECS[p.name].timeout if p.name in SPECS else 300), id=p.name)
        for p in NOTEBOOKS
    ],
)
def test_notebook_runs_in_a_session(platform: Platform, ai4os_template: Path, path: Path) -> None:
    spec = SPECS[path.name]
    # what the notebooks need to know about this test machine: where the AI4OS template is (offline)
    setup = f"import os\nos.environ['AI4OS_TEMPLATE'] = {str(ai4os_template)!r}"
    with session(platform, spec.user, spec.role, spec.cpu, spec.ram_gb) as user:
        run = run_notebook(platform.url, f"{spec.user}/notebooks", user["token"], path, setup)
        slow = sorted(run.cells, key=lambda c: -c.seconds)[:3]
        print(
            f"{path.name}: {run.seconds:.0f} s in the kernel; slowest: "
            + ", ".join(f"{c.label} {c.seconds:.0f} s" for c in slow)
        )
        assert "Traceback" not in run.output
        with platform.api(user["token"]) as api:
            spec.check(run, api)


def test_runner_names_the_failing_cell(platform: Platform, tmp_path: Path) -> None:
    """A failing cell fails the run with its label, its code and the traceback; later cells do not run."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1\nprint('first', x)"),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("print('second')\n1 / 0"),
        nbformat.v4.new_code_cell("print('third')"),
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with session(platform, "nb-runner", "basic", 1, 2) as user, pytest.raises(AssertionError) as failed:
        run_notebook(platform.url, "nb-runner/notebooks", user["token"], path)
    message = str(failed.value)
    assert message.startswith("code cell 2 failed:\nprint('second')\n1 / 0")
    assert "ZeroDivisionError" in message and "--- its output:\nsecond" in message and "third" not in message
