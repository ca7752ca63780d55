"""ai4lab-digits behind the real upstream ``deepaas-run``, from its own environment.

Routes (DEEPaaS v2; trailing slashes matter):
``GET /v2/models/``, ``POST /v2/models/ai4lab-digits/predict/`` (multipart
field ``image``, optional ``weights``), ``POST /v2/models/ai4lab-digits/train/``
(returns a uuid at once), ``GET /v2/models/ai4lab-digits/train/<uuid>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import DeepaasServer
from .helpers import env_python, held_out_digits, mlflow_run, wait_training

pytestmark = pytest.mark.xdist_group("modules")
NAME = "ai4lab-digits"


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return (tmp_path_factory.mktemp("mlruns") / "store").as_uri()


@pytest.fixture(scope="module")
def server(deepaas_server: Callable[..., DeepaasServer], tracking_uri: str) -> DeepaasServer:
    # a file store keeps this quick; sessions point MLFLOW_TRACKING_URI at the platform's server
    return deepaas_server(NAME, MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_ALLOW_FILE_STORE="true")


@pytest.fixture(scope="module")
def client(server: DeepaasServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def held_out(server: DeepaasServer, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    """30 PNGs of digits the pretrained model never saw: 20 light ink on dark, 10 dark ink on paper."""
    return held_out_digits(server.env_dir, tmp_path_factory.mktemp("held-out"))


def _accuracy(client: httpx.Client, images: list[tuple[Path, int]], **form: str) -> float:
    hits = 0
    for path, label in images:
        r = client.post(f"/v2/models/{NAME}/predict/", files={"image": (path.name, path.read_bytes(), "image/png")}, data=form)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "OK"
        hits += body["predictions"]["label"] == label
    return hits / len(images)


def test_model_is_listed_with_its_metadata(client: httpx.Client) -> None:
    models = client.get("/v2/models/").json()["models"]
    assert [m["name"] for m in models] == [NAME]
    meta = client.get(f"/v2/models/{NAME}/").json()
    assert meta["id"] == NAME and meta["license"] == "Apache-2.0" and meta["version"] == "0.1.0"


def test_swagger_declares_the_image_upload(client: httpx.Client) -> None:
    spec = client.get("/swagger.json").json()
    params = {p["name"]: p for p in spec["paths"][f"/v2/models/{NAME}/predict/"]["post"]["parameters"]}
    assert params["image"]["in"] == "formData" and params["image"]["type"] == "file" and params["image"]["required"]
    train = {p["name"]: p for p in spec["paths"][f"/v2/models/{NAME}/train/"]["post"]["parameters"]}
    assert {"dataset", "epochs", "learning_rate", "hidden_units", "test_fraction", "output_dir", "init_weights"} <= set(train)
    assert (train["test_fraction"]["minimum"], train["test_fraction"]["maximum"]) == (0.05, 0.5)


def test_predict_held_out_digits(client: httpx.Client, held_out: list[tuple[Path, int]]) -> None:
    r = client.post(f"/v2/models/{NAME}/predict/", files={"image": ("d.png", held_out[0][0].read_bytes(), "image/png")})
    prediction = r.json()["predictions"]
    assert set(prediction) == {"label", "probabilities", "weights"} and prediction["weights"] == "pretrained"
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert _accuracy(client, held_out) > 0.9


def test_predict_bad_requests(client: httpx.Client) -> None:
    r = client.post(f"/v2/models/{NAME}/predict/", files={"image": ("notes.txt", b"not an image", "text/plain")})
    assert r.status_code == 400 and "cannot read 'notes.txt' as an image" in r.text
    r = client.post(f"/v2/models/{NAME}/predict/", data={"weights": ""})
    assert r.status_code == 422 and "image" in r.json()


def test_train_then_predict_with_the_new_weights(
    server: DeepaasServer, client: httpx.Client, held_out: list[tuple[Path, int]], tmp_path: Path, tracking_uri: str
) -> None:
    env_python(server.env_dir, "-m", "ai4lab_digits.data", str(tmp_path / "train"), "--n", "500", "--split", "train")
    form = {"dataset": str(tmp_path / "train"), "epochs": "12", "learning_rate": "0.01", "output_dir": str(tmp_path / "out")}
    r = client.post(f"/v2/models/{NAME}/train/", data=form)
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["status"] in ("running", "done") and started["args"]["epochs"] == 12
    done = wait_training(client, NAME, started["uuid"])
    assert done["status"] == "done", done
    result = done["result"]["output"]
    assert result["accuracy"] > 0.85 and result["epochs"] == 12
    assert Path(result["model_path"]) == tmp_path / "out" / "model.joblib" and Path(result["model_path"]).is_file()
    assert started["uuid"] in [t["uuid"] for t in client.get(f"/v2/models/{NAME}/train/").json()]
    # tracked in MLflow from DEEPaaS's worker process: parameters and one point per epoch
    run, metrics = mlflow_run(tracking_uri, result["mlflow_run_id"])
    assert run.data.params["epochs"] == "12" and run.data.tags["ai4lab.module"] == NAME
    assert [m.step for m in metrics["val_accuracy"]] == list(range(1, 13)) and len(metrics["loss"]) == 12
    # the trained weights serve predictions
    assert _accuracy(client, held_out[:15], weights=result["model_path"]) > 0.85


def test_train_errors(client: httpx.Client, tmp_path: Path) -> None:
    r = client.post(f"/v2/models/{NAME}/train/", data={"dataset": str(tmp_path), "test_fraction": "0.9", "epochs": "0"})
    assert r.status_code == 422 and {"test_fraction", "epochs"} <= set(r.json())
    r = client.post(f"/v2/models/{NAME}/train/", data={"dataset": str(tmp_path / "missing")})
    failed = wait_training(client, NAME, r.json()["uuid"])
    assert failed["status"] == "error" and "dataset not found" in failed["message"]


def test_stop_leaves_no_process(server: DeepaasServer) -> None:
    assert len(server.pids) >= 2  # the server and its pool worker
    server.stop()
    assert server.proc is not None and server.proc.returncode is not None
    assert server.leftovers() == []
